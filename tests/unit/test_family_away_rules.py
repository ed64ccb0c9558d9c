"""Pure rules of away mode (随家人外出): which findings it holds back, and the date range."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from analytics.types import HAZARDS, DetectionKind
from gateway.errors import InvalidError
from gateway.family.away import NEVER_SUPPRESSED, SUPPRESSIBLE, period_bounds, suppresses
from gateway.settings.family import FamilySettings


def test_alarms_are_never_suppressed() -> None:
    for kind in DetectionKind:
        if kind in {DetectionKind.EMERGENCY_CALL, DetectionKind.FALL} or kind in HAZARDS:
            assert not suppresses(kind), kind
        if kind.technical:
            assert not suppresses(kind), kind  # device problems are the staff's business
    assert not SUPPRESSIBLE & NEVER_SUPPRESSED
    assert {k for k in DetectionKind if suppresses(k)} == {
        DetectionKind.NOT_UP, DetectionKind.NO_ACTIVITY, DetectionKind.NIGHT_BED_EXIT,
        DetectionKind.NOT_WORN, DetectionKind.DOOR_UNUSED,
    }  # fmt: skip
    assert not suppresses(DetectionKind.NO_ACTIVITY, resolved=True)


NOW = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)  # 2026-12-05 04:00 at UTC+8


def test_period_bounds_are_local_midnights() -> None:
    span = period_bounds(date(2026, 12, 5), date(2026, 12, 7), utc_offset_s=28800, now=NOW,
                         settings=FamilySettings())  # fmt: skip
    assert span.starts_at == datetime(2026, 12, 4, 16, 0, tzinfo=UTC)
    assert span.ends_at == datetime(2026, 12, 7, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "hint"),
    [
        (date(2026, 12, 6), date(2026, 12, 5), "结束日期不能早于开始日期"),
        (date(2026, 12, 1), date(2026, 12, 4), "结束日期不能早于今天"),
        (date(2026, 12, 3), date(2026, 12, 6), "开始日期最早为昨天"),
        (date(2026, 12, 5), date(2027, 2, 3), "最长 60 天"),
        (date(2027, 3, 6), date(2027, 3, 7), "最多提前 90 天"),
    ],
)
def test_period_bounds_refused(start: date, end: date, hint: str) -> None:
    with pytest.raises(InvalidError) as err:
        period_bounds(start, end, utc_offset_s=28800, now=NOW, settings=FamilySettings())
    assert err.value.hint is not None and hint in err.value.hint
