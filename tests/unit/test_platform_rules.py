"""Pure rules of the platform push and overdue notices: the due month, the signature, the
retry policy, the notice text (no I/O)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest
from pydantic import SecretStr, ValidationError

from gateway.notify.messaging import RetryPolicy
from gateway.platform.push import body_of, due_month
from gateway.platform.receiver import stored_name
from gateway.platform.settings import PlatformSettings
from gateway.platform.signing import sign, verify
from gateway.visits.notices import OverdueItem, render

SETTINGS = PlatformSettings()  # day 1, 02:00, UTC+8


@pytest.mark.parametrize(
    ("now", "month"),
    [
        (datetime(2026, 12, 1, 17, 59, tzinfo=UTC), "2026-11"),  # 2 Dec 01:59 local
        (datetime(2026, 11, 30, 17, 59, tzinfo=UTC), "2026-10"),  # 1 Dec 01:59 local
        (datetime(2026, 11, 30, 18, 0, tzinfo=UTC), "2026-11"),  # 1 Dec 02:00 local
        (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), "2025-12"),  # 1 Jan 08:00 local
    ],
)
def test_due_month(now: datetime, month: str) -> None:
    assert due_month(now, SETTINGS) == month


def test_due_month_on_a_later_day() -> None:
    s = PlatformSettings(push_day=5, push_hour=0, utc_offset_s=0)
    assert due_month(datetime(2026, 3, 4, 23, tzinfo=UTC), s) == "2026-01"
    assert due_month(datetime(2026, 3, 5, 0, tzinfo=UTC), s) == "2026-02"


def test_signature_checks() -> None:
    body = body_of({"b": 1, "a": "长者"})
    assert body == '{"a":"长者","b":1}'.encode()
    sig = sign(b"k", "1000", body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify(b"k", "1000", body, sig, now=1100, max_skew_s=300) is None
    assert verify(b"x", "1000", body, sig, now=1100, max_skew_s=300) == "bad signature"
    assert verify(b"k", "1000", body + b" ", sig, now=1100, max_skew_s=300) == "bad signature"
    assert verify(b"k", "1000", body, sig, now=1400, max_skew_s=300) == "stale timestamp"
    assert verify(b"k", None, body, sig, now=1000, max_skew_s=300) == "missing signature"
    assert verify(b"k", "soon", body, sig, now=1000, max_skew_s=300) == "bad timestamp"


def test_settings_need_url_and_secret_when_enabled() -> None:
    with pytest.raises(ValidationError):
        PlatformSettings(enabled=True, url="http://x/push")
    with pytest.raises(ValidationError):
        PlatformSettings(url="ftp://x/push")
    assert PlatformSettings(enabled=True, url="https://x/push", secret=SecretStr("s")).enabled


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(backoff_base_s=10, backoff_max_s=60, backoff_jitter=0)
    rng = random.Random(1)
    assert [policy.delay(n, rng) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]


def test_stored_names_are_safe() -> None:
    name = stored_name("safehome:monthly:../../etc:2026-11")
    assert "/" not in name and name.endswith(".json")
    assert stored_name("a:b") != stored_name("a_b")


def test_notice_is_chinese_and_carries_codes_only() -> None:
    item = OverdueItem(
        "r1", "s1", "home", date(2026, 11, 20), date(2026, 11, 23), "ELD-1", "BED-0301"
    )
    message = render(item)
    assert message["title"] == "【安居守护】上门探访逾期提醒"
    assert "ELD-1" in message["body"] and "BED-0301" in message["body"]
    assert "已逾期 3 天" in message["body"]
    assert message["sms"]["type"] == "上门探访逾期"
