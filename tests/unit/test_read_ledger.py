"""Reads of care data are audited once per actor, target and window (gateway.audit.ReadLedger)."""

from __future__ import annotations

from gateway.audit import ReadLedger


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_read_is_due_again_only_after_the_window() -> None:
    clock = Clock()
    ledger = ReadLedger(3600, clock=clock)
    assert ledger.due("u-1", "incident:7")
    ledger.recorded("u-1", "incident:7")
    assert not ledger.due("u-1", "incident:7")
    assert ledger.due("u-2", "incident:7")  # another person
    assert ledger.due("u-1", "incident:8")  # another incident
    clock.now += 3599
    assert not ledger.due("u-1", "incident:7")
    clock.now += 1
    assert ledger.due("u-1", "incident:7")


def test_not_recorded_means_still_due() -> None:
    """A read whose audit entry did not commit (the caller never calls ``recorded``) is
    audited on the next read."""
    ledger = ReadLedger(3600, clock=Clock())
    assert ledger.due("u-1", "incident:7")
    assert ledger.due("u-1", "incident:7")


def test_the_ledger_is_bounded_and_forgets_the_oldest_first() -> None:
    clock = Clock()
    ledger = ReadLedger(3600, max_entries=2, clock=clock)
    for target in ("a", "b", "c"):
        ledger.recorded("u-1", target)
    assert ledger.due("u-1", "a")  # forgotten: audited again, never fewer
    assert not ledger.due("u-1", "b") and not ledger.due("u-1", "c")


def test_a_zero_window_audits_every_read() -> None:
    ledger = ReadLedger(0, clock=Clock())
    ledger.recorded("u-1", "incident:7")
    assert ledger.due("u-1", "incident:7")
