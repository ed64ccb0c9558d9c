"""Pure rules of visiting care: which visits an elder is due, and when an assessment is due.

An elder in several risk categories follows the strictest plan of each kind (the shortest
non-zero interval). A visit kind is due ``interval`` days after the last visit of that kind;
an elder never visited is due from the day the plan started (``since``). Overdue means the
due date has passed (``due_on < today``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from gateway.visits.config import VISIT_KINDS, Plan


@dataclass(frozen=True, slots=True)
class DueVisit:
    """One visit kind of one elder: when it is due and whether that has passed."""

    resident_id: str
    kind: str  # phone | home
    interval_days: int
    last_at: datetime | None
    due_on: date
    overdue: bool


def intervals(categories: Iterable[str], plans: Mapping[str, Plan]) -> dict[str, int]:
    """The strictest interval of each visit kind over ``categories`` (kinds without a plan
    are left out)."""
    out: dict[str, int] = {}
    for cat in categories:
        plan = plans.get(cat)
        if plan is None:
            continue
        for kind in VISIT_KINDS:
            days = plan.days(kind)
            if days > 0 and (kind not in out or days < out[kind]):
                out[kind] = days
    return out


def due_visits(
    resident_id: str,
    categories: Iterable[str],
    plans: Mapping[str, Plan],
    *,
    last: Mapping[str, datetime | None],
    since: date,
    today: date,
    local_date: Callable[[datetime], date],
) -> list[DueVisit]:
    """The visits ``resident_id`` is due (one per kind with a plan), phone first.

    ``last`` maps a kind to the last visit of that kind; ``local_date`` turns a time into the
    site's local date.
    """
    out = []
    for kind, days in sorted(intervals(categories, plans).items(), key=lambda kv: kv[0] != "phone"):
        last_at = last.get(kind)
        due_on = since if last_at is None else local_date(last_at) + timedelta(days=days)
        out.append(DueVisit(resident_id, kind, days, last_at, due_on, due_on < today))
    return out


def assessment_overdue(next_due: date | None, today: date) -> bool:
    """Whether a re-assessment is overdue (an elder never assessed counts as overdue)."""
    return next_due is None or next_due < today
