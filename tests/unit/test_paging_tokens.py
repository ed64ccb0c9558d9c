"""Pure parts of staff paging: one-time link tokens, reply codes, phone numbers, the voice
call's signed request and the page text."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr, ValidationError

from gateway.notify.channels import AliyunVoiceNotifier
from gateway.notify.messages import IncidentFacts, PageFacts, page_params, render_page
from gateway.notify.settings import AliyunVoiceSettings
from gateway.paging.settings import PagingSettings
from gateway.paging.tokens import (
    AckResult,
    LinkError,
    find_code,
    inbound_signature,
    inbound_signature_ok,
    link_builder,
    new_code,
    normalise_phone,
    sign_link,
    verify_link,
)

SECRET = "s" * 40
NOW = 1_790_000_000


def test_a_link_names_its_page_and_user_until_it_expires() -> None:
    token = sign_link(SECRET, 42, "u-1", NOW + 60)
    claims = verify_link(SECRET, token, NOW)
    assert (claims.page_id, claims.user_id, claims.expires_at) == (42, "u-1", NOW + 60)
    with pytest.raises(LinkError) as err:
        verify_link(SECRET, token, NOW + 60)
    assert err.value.result is AckResult.EXPIRED


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
    lambda t: "x" + t,
    lambda t: "",
])  # fmt: skip
def test_a_forged_or_damaged_link_is_unknown(mutate: object) -> None:
    token = sign_link(SECRET, 42, "u-1", NOW + 60)
    with pytest.raises(LinkError) as err:
        verify_link(SECRET, mutate(token), NOW)  # type: ignore[operator]
    assert err.value.result is AckResult.UNKNOWN
    with pytest.raises(LinkError):
        verify_link("t" * 40, token, NOW)  # another gateway's key


def test_link_builder_needs_a_base_and_a_key() -> None:
    assert link_builder(None, SECRET) is None
    assert link_builder("https://a.example", None) is None
    build = link_builder("https://a.example/", SECRET)
    assert build is not None
    url = build(7, "u-2", NOW + 5)
    assert url.startswith("https://a.example/ack/")
    assert verify_link(SECRET, url.rsplit("/", 1)[1], NOW).page_id == 7


def test_reply_codes() -> None:
    codes = {new_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes) and len(codes) > 150
    assert find_code("123456") == "123456"
    assert find_code("确认 654321，谢谢") == "654321"
    assert find_code("123456 123456") == "123456"
    assert find_code("1234567") is None  # not a six-digit code
    assert find_code("111111 222222") is None  # ambiguous
    assert find_code("ok") is None


@pytest.mark.parametrize("raw", [
    "13800138000", "138 0013 8000", "+86 138-0013-8000", "008613800138000", "8613800138000",
])  # fmt: skip
def test_mainland_numbers_normalise_to_e164(raw: str) -> None:
    assert normalise_phone(raw) == "+8613800138000"


@pytest.mark.parametrize("raw", ["12", "abc", "+0123456", ""])
def test_bad_numbers_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="not a phone number"):
        normalise_phone(raw)


def test_inbound_signature_checks_key_body_and_freshness() -> None:
    body = b'{"from":"13800138000","text":"123456"}'
    sig = inbound_signature("k", str(NOW), body)
    expected = hmac.new(b"k", f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
    assert sig == "sha256=" + expected
    ok = {"now": NOW + 10, "max_skew_s": 300}
    assert inbound_signature_ok("k", str(NOW), body, sig, **ok)
    assert not inbound_signature_ok("k", str(NOW), body + b" ", sig, **ok)
    assert not inbound_signature_ok("other", str(NOW), body, sig, **ok)
    assert not inbound_signature_ok("k", str(NOW), body, sig, now=NOW + 301, max_skew_s=300)
    assert not inbound_signature_ok("k", "yesterday", body, sig, **ok)


def test_paging_settings_refuse_a_short_key_and_a_non_http_base() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        PagingSettings(ack_secret=SecretStr("short"))
    with pytest.raises(ValidationError, match="http"):
        PagingSettings(public_base_url="ftp://x")
    assert PagingSettings(public_base_url="https://x/").public_base_url == "https://x"


def _reference(form: dict[str, str], secret: str) -> str:
    def enc(s: str) -> str:
        return urllib.parse.quote_plus(s, safe="").replace("+", "%20").replace("*", "%2A")

    canon = "&".join(f"{enc(k)}={enc(form[k])}" for k in sorted(form) if k != "Signature")
    mac = hmac.new((secret + "&").encode(), ("POST&%2F&" + enc(canon)).encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def test_voice_call_request_is_a_signed_single_call_by_tts() -> None:
    notifier = AliyunVoiceNotifier(AliyunVoiceSettings(
        access_key_id="testId", access_key_secret=SecretStr("testSecret"), tts_code="TTS_1",
        called_show_number="057188880000",
    ))  # fmt: skip
    form = notifier.request_params(
        "+8613800138000", {"place": "Room 1", "code": "123456"}, out_id="9",
        nonce="n-1", timestamp=datetime(2026, 11, 23, 1, 5, tzinfo=UTC),
    )  # fmt: skip
    assert form["Action"] == "SingleCallByTts" and form["Version"] == "2017-05-25"
    assert form["CalledNumber"] == "13800138000" and form["CalledShowNumber"] == "057188880000"
    assert form["TtsCode"] == "TTS_1" and form["OutId"] == "9" and form["PlayTimes"] == "2"
    assert json.loads(form["TtsParam"]) == {"place": "Room 1", "code": "123456"}
    assert form["Timestamp"] == "2026-11-23T01:05:00Z" and form["SignatureVersion"] == "1.0"
    assert form["Signature"] == _reference(form, "testSecret")


def test_a_page_says_where_what_and_how_to_acknowledge_without_a_name() -> None:
    facts = IncidentFacts(5, "fall", "BED-1", "Room 1", datetime(2026, 11, 23, 1, 5, tzinfo=UTC),
                          resident_name="王芳")  # fmt: skip
    page = PageFacts("duty_staff", "page", "123456", "https://x/ack/t")
    message = render_page(facts, page)
    assert message.title.startswith("【安居守护】请确认")
    assert "https://x/ack/t" in message.body and "123456" in message.body
    assert "王芳" not in message.body + json.dumps(message.fields, ensure_ascii=False)
    assert page_params(facts, page) == {
        "place": "Room 1 / BED-1", "time": "2026-11-23 09:05", "type": "跌倒",
        "code": "123456",
    }  # fmt: skip
