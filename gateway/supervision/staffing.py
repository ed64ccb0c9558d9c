"""The staffing-ratio check (pure): care staff on duty against residents by group.

Nursing homes must staff 1:3 for fully dependent, 1:6 for partly dependent and 1:15 for
independent residents (the ratios are configuration). The staff a shift needs is
``ceil(fully/3 + partly/6 + independent/15)``: the groups share the staff, so the fractions
add up before rounding. A care worker counts for a shift when their roster shift covers at
least half of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

from gateway.visits.config import GROUPS, Shift


@dataclass(frozen=True, slots=True)
class ShiftCheck:
    """One shift of one site: residents by group, staff needed, on duty, shortfall."""

    site_id: str
    day: date  # site-local date the shift starts on
    shift: str
    label: str
    starts_at: datetime
    ends_at: datetime
    residents: dict[str, int]
    required: int
    on_duty: int
    shortfall: int
    compliant: bool


def required_staff(residents: Mapping[str, int], ratios: Mapping[str, int]) -> int:
    """Care staff needed for ``residents`` (count per group) under ``ratios``."""
    need = sum(residents.get(g, 0) / ratios[g] for g in GROUPS)
    return math.ceil(need - 1e-9)


def shift_window(day: date, shift: Shift, utc_offset_s: int) -> tuple[datetime, datetime]:
    """The UTC start and end of ``shift`` on the site-local ``day``."""
    tz = timezone(timedelta(seconds=utc_offset_s))
    start = datetime(day.year, day.month, day.day, shift.start_hour, tzinfo=tz).astimezone(UTC)
    return start, start + timedelta(hours=shift.hours)


def on_duty(rota: Iterable[tuple[str, datetime, datetime]], start: datetime, end: datetime) -> int:
    """Distinct staff whose roster shifts cover at least half of ``start``–``end``."""
    covered: dict[str, float] = {}
    for user_id, s, e in rota:
        overlap = (min(e, end) - max(s, start)).total_seconds()
        if overlap > 0:
            covered[user_id] = covered.get(user_id, 0.0) + overlap
    half = (end - start).total_seconds() / 2
    return sum(1 for seconds in covered.values() if seconds >= half)


def check_shifts(
    site_id: str,
    residents: Mapping[str, int],
    rota: list[tuple[str, datetime, datetime]],
    *,
    shifts: Iterable[Shift],
    ratios: Mapping[str, int],
    days: Iterable[date],
    utc_offset_s: int,
) -> list[ShiftCheck]:
    """The check of every shift of every day in ``days``, in time order."""
    required = required_staff(residents, ratios)
    out = []
    for day in days:
        for shift in shifts:
            start, end = shift_window(day, shift, utc_offset_s)
            staff = on_duty(rota, start, end)
            short = max(0, required - staff)
            out.append(ShiftCheck(site_id, day, shift.name, shift.label, start, end,
                                  dict(residents), required, staff, short, short == 0))  # fmt: skip
    out.sort(key=lambda c: c.starts_at)
    return out
