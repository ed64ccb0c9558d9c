"""Sign-in throttling decisions (pure logic, clocks passed in; the shared counting in the
database is tested in tests/integration/test_login_throttle_shared.py)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from gateway.api.login_throttle import LoginThrottle
from gateway.api.throttle import (
    Lockouts,
    ThrottlePolicy,
    Verdict,
    decide,
    retry_after,
    take_back,
    user_key,
)
from gateway.settings import load_settings

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=60)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_a_key_waits_once_it_reached_its_limit_until_the_oldest_failure_leaves() -> None:
    times = [at(0), at(10), at(20)]
    assert retry_after(times[:2], 3, WINDOW, at(21)) == 0
    assert retry_after(times, 3, WINDOW, at(21)) == 39  # the failure at 0 leaves at 60
    assert retry_after(times, 3, WINDOW, at(59.5)) == 1  # never 0 while still full
    assert retry_after(times, 3, WINDOW, at(60)) == 0
    times.append(at(61))
    assert retry_after(times, 3, WINDOW, at(61)) == 9  # now the one at 10 holds it until 70
    assert retry_after(list(reversed(times)), 3, WINDOW, at(61)) == 9  # order does not matter
    assert retry_after([], 3, WINDOW, at(61)) == 0


def _run(
    policy: ThrottlePolicy,
    attempts: Sequence[tuple[str, str, float]],
    store: dict[str, tuple[datetime, ...]],
) -> list[Verdict]:
    """Decide attempts one after another the way the database serialises them."""
    out = []
    for name, address, t in attempts:
        u, a = "u:" + user_key(name), "a:" + address
        verdict = decide(store.get(u, ()), store.get(a, ()), at(t), policy)
        store[u], store[a] = verdict.user, verdict.address
        out.append(verdict)
    return out


def test_attempts_count_ahead_and_success_takes_its_attempt_back() -> None:
    policy = ThrottlePolicy(timedelta(seconds=300), per_user=3, per_address=5)
    store: dict[str, tuple[datetime, ...]] = {}
    # Three attempts in flight at once: the fourth waits, before any password is checked.
    first = _run(policy, [("Nurse", "10.0.0.1", 0.0)] * 3, store)
    assert [v.wait for v in first] == [0, 0, 0] and all(v.admitted for v in first)
    (fourth,) = _run(policy, [("nurse", "10.0.0.2", 1.0)], store)  # names compare case-blind
    assert (fourth.wait, fourth.user_wait, fourth.address_wait) == (299, 299, 0)
    assert fourth.address == ()  # a refused attempt counts nowhere
    # One of them had the right password: the user's failures cleared, its address count
    # taken back (the others from that address stay).
    store["u:nurse"] = ()
    store["a:10.0.0.1"] = take_back(store["a:10.0.0.1"], first[0].now)
    assert len(store["a:10.0.0.1"]) == 2
    assert _run(policy, [("Nurse", "10.0.0.1", 2.0)], store)[0].admitted
    # The address: 5 failures whatever the names, then every name from it waits.
    _run(policy, [(f"u{i}", "10.0.0.9", 3.0) for i in range(5)], store)
    (other,) = _run(policy, [("someone-else", "10.0.0.9", 4.0)], store)
    assert (other.wait, other.user_wait, other.address_wait) == (299, 0, 299)
    assert "u:someone-else" not in store or store["u:someone-else"] == ()
    assert _run(policy, [("someone-else", "10.0.0.8", 4.0)], store)[0].admitted


def test_stored_times_stay_within_the_window_and_the_limit() -> None:
    policy = ThrottlePolicy(WINDOW, per_user=2, per_address=100)
    store: dict[str, tuple[datetime, ...]] = {}
    verdicts = _run(policy, [("a", "x", t) for t in (0, 1, 70, 71, 200)], store)
    assert [v.admitted for v in verdicts] == [True, True, True, True, True]
    assert store["u:a"] == (at(200),)  # the old ones left the window
    assert len(store["a:x"]) == 1
    # A lowered limit (settings changed) trims what is stored to the limit.
    many = tuple(at(t) for t in range(10))
    trimmed = decide((), many, at(11), ThrottlePolicy(WINDOW, per_user=2, per_address=20))
    assert trimmed.admitted and len(trimmed.address) == 11
    assert decide((), many, at(11), ThrottlePolicy(WINDOW, 2, 4)).address == many


def test_take_back_removes_one_count_at_that_time_only() -> None:
    times = (at(1), at(2), at(2), at(3))
    assert take_back(times, at(2)) == (at(1), at(2), at(3))
    assert take_back(times, at(9)) == times


def test_policy_comes_from_the_api_settings() -> None:
    api = load_settings(environ={}).api
    assert ThrottlePolicy.of(api) == ThrottlePolicy(timedelta(seconds=300), 5, 20)


def test_lockouts_answer_until_they_pass_and_memory_is_bounded() -> None:
    lock = Lockouts(max_keys=100)
    assert lock.wait("k", 0.0) == 0
    assert lock.remember("k", 30.5, 0.0) is True
    assert lock.remember("k", 20.0, 5.0) is False  # already known; never shortened
    assert lock.wait("k", 10.0) == 21
    assert lock.wait("k", 30.5) == 0 and len(lock) == 0
    for i in range(10_000):
        lock.remember(f"key-{i}", 1e9, 0.0)
    assert len(lock) == 100 and lock.wait("key-9999", 0.0) > 0 and lock.wait("key-0", 0.0) == 0
    lock.forget("key-9999")
    assert lock.wait("key-9999", 0.0) == 0


def test_lockouts_ask_the_database_again_after_recheck_s() -> None:
    """A key unlocked through another process is refused from memory for recheck_s at most;
    the renewal after a recheck is not a new lockout (logged once)."""
    lock = Lockouts(recheck_s=10.0)
    assert lock.remember("k", 300.0, 0.0) is True
    assert lock.wait("k", 9.9) == 291
    assert lock.wait("k", 10.0) == 0  # the database decides again
    assert lock.remember("k", 300.0, 10.0) is False
    assert lock.wait("k", 15.0) == 285
    assert lock.remember("k", 400.0, 301.0) is True  # the old lock-out had ended: a new one


def test_keys_are_hmacs_of_the_folded_name_and_the_address() -> None:
    policy = ThrottlePolicy(WINDOW, 5, 20)
    one, other = LoginThrottle(policy, "s" * 32), LoginThrottle(policy, "t" * 32)
    keys = one.keys("Nurse", "10.0.0.1")
    assert keys == one.keys("nurse", "10.0.0.1")  # case-blind names
    assert keys.user != keys.address and one.keys("10.0.0.1", "x").user != keys.address
    assert all(re.fullmatch(r"[0-9a-f]{64}", k) for k in (keys.user, keys.address))
    assert other.keys("Nurse", "10.0.0.1") != keys  # another installation's secret
