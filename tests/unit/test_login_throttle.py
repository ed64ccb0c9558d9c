"""Sign-in throttling windows (pure logic, clock passed in)."""

from __future__ import annotations

from gateway.api.throttle import FailureWindows, LoginThrottle


def test_a_key_waits_once_it_reached_its_limit_until_the_oldest_failure_leaves() -> None:
    w = FailureWindows(limit=3, window_s=60)
    for t in (0.0, 10.0, 20.0):
        assert w.retry_after("k", t) == 0
        w.fail("k", t)
    assert w.retry_after("k", 21.0) == 39  # the failure at 0 leaves the window at 60
    assert w.retry_after("k", 60.0) == 0
    w.fail("k", 61.0)
    assert w.retry_after("k", 61.0) == 9  # now the one at 10 holds it full until 70
    assert w.retry_after("other", 61.0) == 0


def test_memory_is_bounded_whatever_the_keys() -> None:
    w = FailureWindows(limit=2, window_s=60, max_keys=100)
    for i in range(10_000):
        w.fail(f"user-{i}", float(i) / 1000)
    assert len(w._keys) == 100
    assert all(len(v) <= 2 for v in w._keys.values())


def test_attempts_count_ahead_and_success_takes_its_attempt_back() -> None:
    th = LoginThrottle(window_s=300, per_user=3, per_address=5)
    # Three attempts in flight at once: the fourth waits, before any password is checked.
    assert [th.begin("Nurse", "10.0.0.1", 0.0) for _ in range(3)] == [0, 0, 0]
    assert th.begin("nurse", "10.0.0.2", 1.0) == 299  # user names compare case-blind
    th.succeeded("Nurse", "10.0.0.1")  # one of them had the right password
    assert th.begin("Nurse", "10.0.0.1", 2.0) == 0
    # The address: 5 failures whatever the names, then every name from it waits.
    for i in range(3):
        th.begin(f"u{i}", "10.0.0.9", 3.0)
    th.begin("u3", "10.0.0.9", 3.0)
    th.begin("u4", "10.0.0.9", 3.0)
    assert th.begin("someone-else", "10.0.0.9", 4.0) == 299
    assert th.begin("someone-else", "10.0.0.8", 4.0) == 0
