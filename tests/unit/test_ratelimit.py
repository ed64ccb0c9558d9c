"""The per-device token bucket (time passed in)."""

from __future__ import annotations

import pytest

from gateway.ratelimit import DeviceRateLimiter


def test_burst_then_the_sustained_rate_per_device() -> None:
    lim = DeviceRateLimiter(rate_per_s=4, burst=5)
    assert [lim.allow("a", 100.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert lim.allow("b", 100.0)  # another device has its own bucket
    assert lim.allow("a", 100.25) and not lim.allow("a", 100.25)  # 0.25 s buys one message
    # 100 messages in the next second: 3 tokens refilled by then, about 4 during it
    allowed = sum(lim.allow("a", 101.0 + i / 100) for i in range(100))
    assert 6 <= allowed <= 7


def test_refill_is_capped_at_the_burst_and_a_clock_step_back_is_harmless() -> None:
    lim = DeviceRateLimiter(rate_per_s=1, burst=3)
    for _ in range(3):
        assert lim.allow("a", 0.0)
    assert sum(lim.allow("a", 1000.0) for _ in range(10)) == 3  # idle long: only the burst
    assert not lim.allow("a", 500.0)  # the wall clock stepped back: no free tokens
    lim.forget("a")
    assert lim.allow("a", 500.0)


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        DeviceRateLimiter(rate_per_s=1, burst=1, bytes_per_s=0)
    with pytest.raises(ValueError):
        DeviceRateLimiter(rate_per_s=0, burst=1)
    with pytest.raises(ValueError):
        DeviceRateLimiter(rate_per_s=1, burst=0)


def test_bytes_are_limited_too_with_debt_for_a_large_message() -> None:
    lim = DeviceRateLimiter(rate_per_s=100, burst=100, bytes_per_s=1000, burst_bytes=2000)
    assert lim.allow("a", 0.0, 1500)  # 500 left
    assert lim.allow("a", 0.0, 5000)  # not empty: passes, 4500 in debt
    assert not lim.allow("a", 0.0, 10)
    assert not lim.allow("a", 4.0, 10)  # 4 s pay back 4000: still 500 in debt
    assert lim.allow("a", 5.0, 10)  # 1 s more: out of debt
    assert lim.allow("b", 5.0, 10)
    assert "1000 B/s" in lim.describe()
