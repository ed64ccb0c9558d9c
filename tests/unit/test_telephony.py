"""Pure parts of the call-centre tools: masking, dial digits, the desk-phone URI, the
classification of Aliyun's answers, the signed ClickToDial form and the settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr, ValidationError

from gateway.notify.aliyun import aliyun_signature
from gateway.settings import Settings, load_settings, secret_paths
from gateway.telephony import build_adapter
from gateway.telephony.adapter import CallRequest
from gateway.telephony.aliyun import AliyunClickToDial, classify
from gateway.telephony.phones import CallOutcome, dial_digits, mask_phone
from gateway.telephony.settings import AliyunCallSettings, SipSettings, TelephonySettings
from gateway.telephony.sip import SipLinkAdapter


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("13812341234", "138****1234"),
        ("+86 138-1234-1234", "138****1234"),
        ("021-5555-0199", "021****0199"),
        ("12345", "***45"),
        ("12", "**"),
        (None, None),
        ("", None),
    ],
)
def test_mask_phone(phone: str | None, masked: str | None) -> None:
    assert mask_phone(phone) == masked


def test_dial_digits_keeps_a_leading_plus_only() -> None:
    assert dial_digits("+86 (138) 1234-1234") == "+8613812341234"
    assert dial_digits("021 5555+0199") == "02155550199"


def test_desk_phone_uris() -> None:
    req = CallRequest("138 1234 1234", None, "inc1-x")
    assert SipLinkAdapter(SipSettings()).place(req).dial_uri == "tel:13812341234"
    sip = SipSettings(scheme="sip", domain="pbx.local:5060", dial_prefix="9")
    placed = SipLinkAdapter(sip).place(req)
    assert (placed.status, placed.dial_uri) == ("placed", "sip:913812341234@pbx.local:5060")
    with pytest.raises(ValidationError):
        SipSettings(scheme="sip")
    with pytest.raises(ValidationError):
        SipSettings(scheme="sip", domain="pbx.local;x=evil")


def test_classify_aliyun_answers() -> None:
    ok = classify(200, json.dumps({"Code": "OK", "CallId": "c-1"}).encode())
    assert (ok.status, ok.provider_call_id, ok.outcome) == ("placed", "c-1", None)
    bad = classify(200, b'{"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "13812341234"}')
    assert (bad.status, bad.outcome) == ("failed", CallOutcome.INVALID_NUMBER)
    assert "13812341234" not in (bad.detail or "")
    assert classify(503, b"<html>").detail == "http_503"
    assert classify(500, b'{"Code": "InternalError"}').detail == "http_500"
    assert classify(200, b"[1]").detail == "http_200"
    assert classify(403, b'{"Code": "Forbidden<script>"}').detail == "aliyun Forbiddenscript"


def _aliyun(**kw: object) -> AliyunCallSettings:
    base: dict[str, object] = {
        "endpoint": "http://127.0.0.1:1/", "access_key_id": "id",
        "access_key_secret": SecretStr("s3cret"), "caller_show_number": "0571",
        "called_show_number": "0572",
    }  # fmt: skip
    return AliyunCallSettings.model_validate(base | kw)


def test_click_to_dial_form_is_signed_with_the_notify_signature() -> None:
    adapter = AliyunClickToDial(_aliyun(caller_number="0571-8888-0000", record=True))
    at = datetime(2026, 12, 4, 21, 0, tzinfo=UTC)
    form = adapter.request_params(CallRequest("+8613812341234", None, "inc7-a"), nonce="n",
                                  timestamp=at)  # fmt: skip
    assert form["Action"] == "ClickToDial" and form["CalledNumber"] == "13812341234"
    assert form["CallerNumber"] == "057188880000"  # the desk line: no phone channel
    assert (form["RecordFlag"], form["SessionTimeout"], form["OutId"]) == ("true", "600", "inc7-a")
    assert form["Timestamp"] == "2026-12-04T21:00:00Z"
    assert form["Signature"] == aliyun_signature(form, "s3cret")
    own = adapter.request_params(CallRequest("13812341234", "13700001111", "o"))
    assert own["CallerNumber"] == "13700001111"


def test_unreachable_endpoint_is_a_failed_placement() -> None:
    placed = AliyunClickToDial(_aliyun(timeout_s=2)).place(CallRequest("138", None, "o"))
    assert (placed.status, placed.detail) == ("failed", "network")


def test_settings_section() -> None:
    s = load_settings(environ={})
    assert isinstance(build_adapter(s.telephony), SipLinkAdapter)
    assert build_adapter(TelephonySettings(adapter="none")) is None
    assert ("telephony", "aliyun", "access_key_secret") in secret_paths(Settings)
    with pytest.raises(ValidationError):
        TelephonySettings(adapter="aliyun")
    with pytest.raises(ValidationError):
        _aliyun(endpoint="file:///etc/passwd")
    env = {
        "SAFEHOME_TELEPHONY__ADAPTER": "aliyun",
        "SAFEHOME_TELEPHONY__ALIYUN__ACCESS_KEY_ID": "id",
        "SAFEHOME_TELEPHONY__ALIYUN__ACCESS_KEY_SECRET": "s",
        "SAFEHOME_TELEPHONY__ALIYUN__CALLER_SHOW_NUMBER": "1",
        "SAFEHOME_TELEPHONY__ALIYUN__CALLED_SHOW_NUMBER": "2",
        "SAFEHOME_TELEPHONY__REVEAL_ROLES": "admin, supervisor",
    }
    s = load_settings(environ=env)
    assert isinstance(build_adapter(s.telephony), AliyunClickToDial)
    assert s.telephony.reveal_roles == ("admin", "supervisor")
