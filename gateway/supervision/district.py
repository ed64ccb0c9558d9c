"""The district supervisor's monthly figures and the staffing-ratio table (no personal data:
counts, rates and site ids only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import psycopg

from gateway.errors import InvalidError
from gateway.family import ratings as family_ratings
from gateway.storage import supervision as store
from gateway.storage import visits as visits_store
from gateway.supervision.staffing import ShiftCheck, check_shifts
from gateway.visits.config import GROUPS, VisitsConfig
from gateway.visits.plans import assessment_overdue
from gateway.visits.service import due_for, local_date

Conn = psycopg.Connection[Any]
ANSWER_TARGET_S = 60  # alarms answered within 60 s (the SLA report's first target)
CHINA_OFFSET_S = 28800


def month_bounds(month: str, utc_offset_s: int = CHINA_OFFSET_S) -> tuple[datetime, datetime]:
    """UTC start and end of the local month ``YYYY-MM``."""
    try:
        year, mon = (int(x) for x in month.split("-"))
        first = date(year, mon, 1)
    except ValueError:
        raise InvalidError(f"not a month: {month!r}", hint="YYYY-MM") from None
    if not 2000 <= year <= 2100:
        raise InvalidError(f"month out of range: {month!r}", hint="2000-01 … 2100-12")
    nxt = date(year + mon // 12, mon % 12 + 1, 1)
    tz = timezone(timedelta(seconds=utc_offset_s))

    def at(d: date) -> datetime:
        return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)

    return at(first), at(nxt)


@dataclass(frozen=True, slots=True)
class DistrictReport:
    district_id: str
    month: str
    sites: list[str]
    totals: dict[str, Any]


def district_report(
    conn: Conn, cfg: VisitsConfig, district_id: str, month: str, now: datetime
) -> DistrictReport:
    """The month's figures of every site of ``district_id``."""
    start, end = month_bounds(month)
    sites = visits_store.district_site_ids(conn, district_id)
    totals = store.district_totals(conn, sites, start, end, ANSWER_TARGET_S)
    totals["device_online_rate"] = (
        round(totals["devices_online"] / totals["devices"], 4) if totals["devices"] else None
    )
    totals["answer_target_s"] = ANSWER_TARGET_S
    due = overdue = reassess = needs_home = 0
    needing: set[str] = set()
    for card in visits_store.resident_cards(conn, district_id=district_id):
        for visit in due_for(cfg, card, now):
            due += 1
            overdue += visit.overdue
            if visit.kind == "home":
                needing.add(card["resident_id"])
        today = local_date(now, int(card["utc_offset_s"]))
        reassess += assessment_overdue(card["next_due"], today)
    needs_home = len(needing)
    visited = store.home_visited_residents(conn, sites, start, end) & needing
    totals.update(
        visits_due=due, visits_overdue=overdue, reassessments_due=reassess,
        home_visit_required=needs_home, home_visit_done=len(visited),
        home_visit_rate=round(len(visited) / needs_home, 4) if needs_home else None,
    )  # fmt: skip
    shifts = staffing_table(conn, cfg, sites, start_day=local_date(now, CHINA_OFFSET_S), days=7)
    totals["short_shifts_next_week"] = sum(not c.compliant for c in shifts)
    rated = family_ratings.site_month(conn, sites, start, end)  # family ratings (issue 13 §7)
    totals.update(
        family_ratings=rated["family_ratings"], family_rating_avg=rated["family_rating_avg"]
    )
    return DistrictReport(district_id, month, sites, totals)


def staffing_table(
    conn: Conn, cfg: VisitsConfig, site_ids: list[str] | None, *, start_day: date, days: int
) -> list[ShiftCheck]:
    """The staffing check of every shift of every nursing home in ``site_ids`` (all when
    None) for ``days`` days from ``start_day``."""
    out: list[ShiftCheck] = []
    day_list = [start_day + timedelta(days=i) for i in range(days)]
    for site_id in store.nursing_homes(conn, site_ids):
        info = store.site_info(conn, site_id)
        assert info is not None
        offset = info[1]
        counts = dict.fromkeys(GROUPS, 0)
        for level in store.resident_levels(conn, site_id):
            counts[cfg.group_of(level)] += 1
        tz = timezone(timedelta(seconds=offset))
        window_start = datetime(start_day.year, start_day.month, start_day.day, tzinfo=tz)
        rota = store.care_rota(conn, site_id, window_start - timedelta(days=1),
                               window_start + timedelta(days=days + 1))  # fmt: skip
        out += check_shifts(site_id, counts, rota, shifts=cfg.shifts, ratios=cfg.ratios,
                            days=day_list, utc_offset_s=offset)  # fmt: skip
    return out
