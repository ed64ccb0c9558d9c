"""Message rendering, redaction and the pure helpers of the notification channels."""

from __future__ import annotations

import hashlib
import hmac
import random
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr, ValidationError

from gateway.notify.channels import (
    Outcome,
    aliyun_percent_encode,
    aliyun_signature,
    classify_http,
    webhook_signature,
)
from gateway.notify.messages import Audience, IncidentFacts, render, sms_params
from gateway.notify.outbox import backoff_delay, usable_channels
from gateway.notify.settings import NotifySettings

NAME = "王秀英"
FACTS = IncidentFacts(
    incident_id=42,
    incident_type="fall",
    bed_code="BED-0301",
    room="Room 301",
    raised_at=datetime(2026, 11, 23, 1, 5, tzinfo=UTC),
    resident_name=NAME,
)


def test_private_family_message_names_the_resident() -> None:
    msg = render(FACTS, Audience.PRIVATE_FAMILY)
    assert NAME in msg.body
    assert msg.fields["resident_name"] == NAME
    assert "跌倒" in msg.title


@pytest.mark.parametrize("audience", [Audience.GROUP, Audience.PRIVATE])
def test_other_audiences_get_bed_room_and_type_only(audience: Audience) -> None:
    msg = render(FACTS, audience)
    everything = msg.title + msg.body + repr(msg.fields)
    assert NAME not in everything
    assert "BED-0301" in msg.body and "Room 301" in msg.body and "跌倒" in msg.body
    assert "resident_name" not in msg.fields


def test_time_is_rendered_in_site_local_time() -> None:
    msg = render(FACTS, Audience.GROUP)
    assert "2026-11-23 09:05" in msg.body  # UTC+8


def test_unknown_incident_type_is_sanitised() -> None:
    facts = IncidentFacts(1, "weird type<script>", None, None, FACTS.raised_at)
    msg = render(facts, Audience.GROUP)
    assert "<" not in msg.body and "weird_type_script_" in msg.body


def test_sms_params_are_template_variables_without_a_name() -> None:
    params = sms_params(FACTS)
    assert set(params) == {"place", "time", "type"}
    assert NAME not in repr(params)
    assert params == {
        "place": "Room 301 / BED-0301",
        "time": "2026-11-23 09:05",
        "type": "跌倒",
    }


def test_aliyun_signature_matches_the_published_example() -> None:
    # The example of Aliyun's SMS "HTTP protocol and signature" documentation (GET).
    params = {
        "AccessKeyId": "testId",
        "Action": "SendSms",
        "Format": "XML",
        "OutId": "123",
        "PhoneNumbers": "15300000001",
        "RegionId": "cn-hangzhou",
        "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0",
        "TemplateCode": "SMS_71390007",
        "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z",
        "Version": "2017-05-25",
    }
    assert aliyun_signature(params, "testSecret", method="GET") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    # The Signature parameter itself never takes part.
    signed = {**params, "Signature": "x"}
    assert aliyun_signature(signed, "testSecret", "GET") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_aliyun_percent_encoding_rules() -> None:
    assert aliyun_percent_encode("a b*~") == "a%20b%2A~"
    assert aliyun_percent_encode("/=&+") == "%2F%3D%26%2B"


def test_webhook_signature_is_hmac_sha256_of_timestamp_and_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhook_signature("k", "1700000000", body) == "sha256=" + expected


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (301, Outcome.PERMANENT),
        (400, Outcome.PERMANENT),
        (404, Outcome.PERMANENT),
        (408, Outcome.TRANSIENT),
        (429, Outcome.TRANSIENT),
        (500, Outcome.TRANSIENT),
        (503, Outcome.TRANSIENT),
    ],
)
def test_http_status_classification(status: int, outcome: Outcome) -> None:
    assert classify_http(status).outcome is outcome


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    settings = NotifySettings(backoff_base_s=1.0, backoff_max_s=8.0, backoff_jitter=0.2)
    rng = random.Random(1)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delay = backoff_delay(attempt, settings, rng)
        assert base * 0.8 <= delay <= base * 1.2


def test_usable_channels_keeps_order_and_drops_junk() -> None:
    raw = ["webhook", "email", 3, "fax", "email", "wecom:ward3", "sms"]
    assert usable_channels(raw) == ["webhook", "email", "wecom:ward3", "sms"]
    assert usable_channels({"not": "a list"}) == []


def test_bot_settings_check_the_scheme_without_echoing_the_url() -> None:
    with pytest.raises(ValidationError) as err:
        NotifySettings(bots={"wecom": SecretStr("dingtalk://SECRETKEY/")})
    assert "SECRETKEY" not in str(err.value)
    ok = NotifySettings(bots={"wecom:ward3": SecretStr("wecombot://KEY")})
    assert "wecom:ward3" in ok.bots
    with pytest.raises(ValidationError):
        NotifySettings.model_validate({"webhooks": {"hook": {"url": "http://x"}}})
