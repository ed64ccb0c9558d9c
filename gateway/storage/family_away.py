"""SQL of away mode (随家人外出, issue 13 §7, migration 0034): periods when the elder is away
with the family, and the routine findings not raised because of one.

A period is in force from ``starts_at`` until ``ends_at``, or until ``ended_at`` when the
family ended it early: its effective end is ``least(ends_at, coalesce(ended_at, ends_at))``
(a period called off before it started never is in force)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.Connection[Any]

_GET_SQL = """
SELECT p.id, p.resident_id, p.starts_at, p.ends_at, p.ended_at, p.note, p.created_at,
       least(p.ends_at, coalesce(p.ended_at, p.ends_at)) AS effective_end,
       (SELECT count(*) FROM away_suppressions s WHERE s.away_period_id = p.id) AS suppressed
FROM away_periods p
WHERE p.id = %s
"""

_OF_RESIDENT_SQL = """
SELECT p.id, p.resident_id, p.starts_at, p.ends_at, p.ended_at, p.note, p.created_at,
       least(p.ends_at, coalesce(p.ended_at, p.ends_at)) AS effective_end,
       (SELECT count(*) FROM away_suppressions s WHERE s.away_period_id = p.id) AS suppressed
FROM away_periods p
WHERE p.resident_id = %(rid)s
  AND least(p.ends_at, coalesce(p.ended_at, p.ends_at)) > %(since)s
  AND least(p.ends_at, coalesce(p.ended_at, p.ends_at)) > p.starts_at
ORDER BY p.starts_at
LIMIT 20
"""

_OVERLAP_SQL = """
SELECT 1 FROM away_periods p
WHERE p.resident_id = %(rid)s AND p.starts_at < %(end)s
  AND least(p.ends_at, coalesce(p.ended_at, p.ends_at)) > %(start)s
  AND least(p.ends_at, coalesce(p.ended_at, p.ends_at)) > p.starts_at
LIMIT 1
"""

_ACTIVE_SQL = """
SELECT p.id FROM away_periods p
WHERE p.resident_id = %(rid)s AND p.starts_at <= %(at)s
  AND least(p.ends_at, coalesce(p.ended_at, p.ends_at)) > %(at)s
ORDER BY p.starts_at DESC
LIMIT 1
"""


def create(
    conn: Conn,
    resident_id: str,
    *,
    starts_at: datetime,
    ends_at: datetime,
    note: str | None,
    by: str,
) -> int:
    row = conn.execute(
        "INSERT INTO away_periods (resident_id, starts_at, ends_at, note, created_by) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (resident_id, starts_at, ends_at, note, by),
    ).fetchone()
    assert row is not None
    return int(row[0])


def get(conn: Conn, period_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_GET_SQL, (period_id,)).fetchone()


def of_resident(conn: Conn, resident_id: str, since: datetime) -> list[dict[str, Any]]:
    """The resident's periods in force at or after ``since`` (current and coming)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_OF_RESIDENT_SQL, {"rid": resident_id, "since": since}).fetchall()


def overlapping(conn: Conn, resident_id: str, starts_at: datetime, ends_at: datetime) -> bool:
    """Whether a period of the resident still in force overlaps [starts_at, ends_at)."""
    params = {"rid": resident_id, "start": starts_at, "end": ends_at}
    return conn.execute(_OVERLAP_SQL, params).fetchone() is not None


def end_early(conn: Conn, period_id: int, at: datetime) -> None:
    conn.execute("UPDATE away_periods SET ended_at = %s WHERE id = %s", (at, period_id))


def active_at(conn: Conn, resident_id: str, at: datetime) -> int | None:
    """The id of the resident's period in force at ``at``, or None."""
    row = conn.execute(_ACTIVE_SQL, {"rid": resident_id, "at": at}).fetchone()
    return None if row is None else int(row[0])


def record_suppression(
    conn: Conn,
    period_id: int,
    resident_id: str,
    *,
    kind: str,
    subject: str,
    condition: str,
    started: datetime,
    detected_at: datetime,
    reason: str,
) -> None:
    conn.execute(
        "INSERT INTO away_suppressions (away_period_id, resident_id, kind, subject, condition, "
        "started, detected_at, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (period_id, resident_id, kind, subject, condition, started, detected_at, reason),
    )


# Suppressed findings of periods over by now, not looked at again yet, whose condition is
# still going on (its detection neither resolved nor closed): they raise their incident now.
_UNRELEASED_OPEN_SQL = """
SELECT s.id AS suppression_id, d.kind, d.subject, d.condition, d.site_id, d.resident_id,
       d.device_id, d.location_id, extract(epoch FROM d.time)::float8 AS time,
       extract(epoch FROM d.started)::float8 AS started, d.reason, d.details
FROM away_suppressions s
JOIN away_periods p ON p.id = s.away_period_id
JOIN detections d ON d.kind = s.kind AND d.subject = s.subject AND d.condition = s.condition
                 AND d.started = s.started AND NOT d.resolved
WHERE s.released_at IS NULL AND d.closed_at IS NULL
  AND least(p.ends_at, coalesce(p.ended_at, p.ends_at)) <= %(now)s
  AND (%(sites)s::text[] IS NULL OR d.site_id = ANY(%(sites)s::text[]))
ORDER BY s.id
FOR UPDATE OF s SKIP LOCKED
"""

_RELEASE_SQL = """
UPDATE away_suppressions s SET released_at = %(now)s
FROM away_periods p
WHERE p.id = s.away_period_id AND s.released_at IS NULL
  AND least(p.ends_at, coalesce(p.ended_at, p.ends_at)) <= %(now)s
  AND (s.id = ANY(%(ids)s) OR NOT EXISTS (
      SELECT 1 FROM detections d WHERE d.kind = s.kind AND d.subject = s.subject
        AND d.condition = s.condition AND d.started = s.started AND NOT d.resolved
        AND d.closed_at IS NULL))
"""


def unreleased_open(
    conn: Conn, now: datetime, sites: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Suppressed findings of ended periods still going on (locked until the transaction
    ends), with their detection; only ``sites``' findings when given (a cell's)."""
    params = {"now": now, "sites": list(sites) if sites is not None else None}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_UNRELEASED_OPEN_SQL, params).fetchall()


def mark_released(conn: Conn, ids: list[int], now: datetime) -> int:
    """Mark ``ids`` and every suppression of an ended period whose condition is over as
    looked at again; how many rows."""
    return conn.execute(_RELEASE_SQL, {"now": now, "ids": ids}).rowcount


def suppressions(conn: Conn, resident_id: str, limit: int = 50) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT away_period_id, kind, detected_at, reason FROM away_suppressions "
            "WHERE resident_id = %s ORDER BY detected_at DESC LIMIT %s",
            (resident_id, limit),
        ).fetchall()
