"""IdCursor: counting identity-keyed rows that become visible out of id order."""

from __future__ import annotations

from gateway.carepath_metrics import IdCursor


def test_ids_are_counted_once_and_the_floor_follows() -> None:
    c = IdCursor(10, gap_timeout_s=60)
    assert c.take([11, 12], now=0) == [11, 12]
    c.advance(0)
    assert c.floor == 12 and not c.seen
    assert c.take([12, 13], now=1) == [13]  # 12 is below the floor now


def test_a_gap_holds_the_floor_until_the_row_appears() -> None:
    c = IdCursor(0, gap_timeout_s=60)
    assert c.take([1, 3], now=0) == [1, 3]
    c.advance(0)
    assert c.floor == 1  # 2 is not visible yet
    assert c.take([3], now=5) == []  # re-read above the floor, not counted twice
    c.advance(5)
    assert c.take([2, 3], now=10) == [2]  # the late commit is counted
    c.advance(10)
    assert c.floor == 3 and not c.seen


def test_a_gap_that_never_fills_is_given_up_after_the_timeout() -> None:
    c = IdCursor(0, gap_timeout_s=60)
    c.take([1, 3, 4], now=0)
    c.advance(0)
    c.advance(59)
    assert c.floor == 1
    c.advance(60)
    assert c.floor == 4 and not c.seen


def test_far_behind_the_floor_jumps() -> None:
    c = IdCursor(0, gap_timeout_s=60, max_gap_span=10)
    c.take([100], now=0)
    c.advance(0)
    assert c.floor == 90
