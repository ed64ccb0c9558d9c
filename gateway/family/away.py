"""Away mode (随家人外出): the family says the elder is away with them from one date to
another; meanwhile routine findings raise no incident, alarms always do.

Pure rules first (:data:`SUPPRESSIBLE`, :func:`suppresses`, :func:`period_bounds`), then
the edges: :func:`set_away` / :func:`end_away` (the family's actions, audited) and
:func:`suppress` (called by the incident intake for each stored finding: a suppressed one is
recorded in ``away_suppressions``, never silently dropped).

The alarm guarantee: an emergency call, a fall, smoke, gas or a water leak is never
suppressed (:data:`NEVER_SUPPRESSED`; :func:`suppresses` is an allow-list of routine kinds).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final

import psycopg

from analytics.types import HAZARDS, DetectionKind
from gateway import audit
from gateway.errors import ConflictError, InvalidError, NotFoundError
from gateway.settings.family import FamilySettings
from gateway.storage import family_away as store

if TYPE_CHECKING:
    from gateway.analysis import DetectionRecord

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

SUPPRESSIBLE: Final = frozenset(
    {
        DetectionKind.NOT_UP,
        DetectionKind.NO_ACTIVITY,
        DetectionKind.NIGHT_BED_EXIT,
        DetectionKind.NOT_WORN,
        DetectionKind.DOOR_UNUSED,
    }
)
"""Routine findings that mean nothing while the elder is away with the family."""

NEVER_SUPPRESSED: Final = (
    frozenset({DetectionKind.EMERGENCY_CALL, DetectionKind.FALL, DetectionKind.WATER_LEAK})
    | HAZARDS
)
"""Alarms: raised whatever the away mode says."""

assert not SUPPRESSIBLE & NEVER_SUPPRESSED  # the alarm guarantee, checked at import


def suppresses(kind: DetectionKind, resolved: bool = False) -> bool:
    """Whether an away period holds back a finding of ``kind`` (a raise, not a resolution)."""
    return not resolved and kind in SUPPRESSIBLE and kind not in NEVER_SUPPRESSED


@dataclass(frozen=True, slots=True)
class AwayRange:
    starts_at: datetime
    ends_at: datetime


def local_today(now: datetime, utc_offset_s: int) -> date:
    return (now.astimezone(UTC) + timedelta(seconds=utc_offset_s)).date()


def period_bounds(
    start: date, end: date, *, utc_offset_s: int, now: datetime, settings: FamilySettings
) -> AwayRange:
    """The UTC bounds of the local dates ``start`` to ``end`` (inclusive: from the start's
    midnight to the midnight after the end), checked (:class:`InvalidError`)."""
    if end < start:
        raise InvalidError("the away period ends before it starts", hint="结束日期不能早于开始日期")
    today = local_today(now, utc_offset_s)
    if end < today:
        raise InvalidError("the away period is over already", hint="结束日期不能早于今天")
    if start < today - timedelta(days=1):
        raise InvalidError("the away period starts too long ago", hint="开始日期最早为昨天")
    if start > today + timedelta(days=settings.away_max_ahead_days):
        raise InvalidError("the away period starts too far ahead",
                           hint=f"开始日期最多提前 {settings.away_max_ahead_days} 天")  # fmt: skip
    if (end - start).days + 1 > settings.away_max_days:
        raise InvalidError(
            "the away period is too long",
            hint=f"最长 {settings.away_max_days} 天，更长请联系护理中心",
        )
    tz = timezone(timedelta(seconds=utc_offset_s))

    def midnight(d: date) -> datetime:
        return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)

    return AwayRange(midnight(start), midnight(end + timedelta(days=1)))


# -- the family's actions ------------------------------------------------------------------


def set_away(
    conn: Conn,
    user_id: str,
    resident_id: str,
    *,
    start: date,
    end: date,
    note: str | None,
    utc_offset_s: int,
    now: datetime,
    settings: FamilySettings,
) -> int:
    """Record an away period of a resident linked to ``user_id`` (the caller checked the
    link); audited. Refused (:class:`ConflictError`) when it overlaps one in force."""
    span = period_bounds(start, end, utc_offset_s=utc_offset_s, now=now, settings=settings)
    text = (note or "").strip() or None
    if text is not None and "\x00" in text:
        raise InvalidError("the note contains a NUL character")
    if text is not None and len(text) > 200:
        raise InvalidError("the note is at most 200 characters")
    with conn.transaction():
        if store.overlapping(conn, resident_id, span.starts_at, span.ends_at):
            raise ConflictError("an away period already covers these dates",
                                hint="请先取消已有的外出安排")  # fmt: skip
        period_id = store.create(
            conn, resident_id, starts_at=span.starts_at, ends_at=span.ends_at, note=text, by=user_id
        )
        audit.append(conn, user_id, "resident.away_set", f"resident:{resident_id}",
                     {"period": period_id, "start": start.isoformat(), "end": end.isoformat(),
                      "by": "family"})  # fmt: skip
    log.info("away period set", extra={"resident": resident_id, "period": period_id})
    return period_id


def end_away(conn: Conn, user_id: str, resident_id: str, period_id: int, now: datetime) -> None:
    """End (or call off) a period of ``resident_id`` now; audited. :class:`NotFoundError`
    for a period of another resident, :class:`ConflictError` for one already over."""
    with conn.transaction():
        period = store.get(conn, period_id)
        if period is None or period["resident_id"] != resident_id:
            raise NotFoundError("no such away period")
        if period["effective_end"] <= now or period["ended_at"] is not None:
            raise ConflictError("the away period is over already")
        store.end_early(conn, period_id, now)
        audit.append(conn, user_id, "resident.away_ended", f"resident:{resident_id}",
                     {"period": period_id, "by": "family"})  # fmt: skip
    log.info("away period ended early", extra={"resident": resident_id, "period": period_id})


# -- the incident intake's check -----------------------------------------------------------


def suppress(conn: Conn, rec: DetectionRecord) -> bool:
    """Whether ``rec`` is held back by an away period in force at its time; if so it is
    recorded as suppressed (in the caller's transaction)."""
    if rec.resident_id is None or not suppresses(rec.kind, rec.resolved):
        return False
    at = datetime.fromtimestamp(rec.time, UTC)
    period_id = store.active_at(conn, rec.resident_id, at)
    if period_id is None:
        return False
    store.record_suppression(
        conn,
        period_id,
        rec.resident_id,
        kind=rec.kind.value,
        subject=rec.subject,
        condition=rec.condition,
        started=datetime.fromtimestamp(rec.started, UTC),
        detected_at=at,
        reason=rec.reason,
    )
    log.info(
        "routine finding suppressed: resident away with family",
        extra={"kind": rec.kind.value, "resident": rec.resident_id, "period": period_id},
    )
    return True
