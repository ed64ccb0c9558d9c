"""The escalation timers' statements (``incident_escalations``, one row per incident).

The escalation worker (:mod:`gateway.escalation.worker`) claims due rows and moves them in
one transaction per row together with the tier's pages, outbox rows and audit entry; the
intake starts a timer in the transaction that raises the incident; a page acknowledgement
makes the timer due now. Every function runs in the caller's transaction. Times come from
the database clock (``now()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row, dict_row

Conn = psycopg.Connection[Any]
AsyncConn = psycopg.AsyncConnection[Any]

_START = b"""
INSERT INTO incident_escalations (incident_id, site_id, next_at)
VALUES (%s, %s, now())
ON CONFLICT (incident_id) DO NOTHING
"""
_CLAIM = b"""
SELECT e.incident_id, e.site_id, e.tier, e.tier_started_at, e.reminders_sent, e.advance_early,
       i.state, i.priority, i.type, i.resident_id, i.raised_at, now(), i.technical
FROM incident_escalations e JOIN incidents i ON i.id = e.incident_id
WHERE e.stopped_at IS NULL AND e.next_at <= now()
  AND (%(sites)s::text[] IS NULL OR e.site_id = ANY(%(sites)s::text[]))
ORDER BY e.next_at
LIMIT 1
FOR UPDATE OF e SKIP LOCKED
"""
_ADVANCE = b"""
UPDATE incident_escalations
SET tier = %s, tier_started_at = %s, next_at = %s, reminders_sent = 0, advance_early = false
WHERE incident_id = %s
"""
_REMIND = b"""
UPDATE incident_escalations
SET next_at = %s, reminders_sent = reminders_sent + 1, advance_early = false
WHERE incident_id = %s
"""
_STOP = b"""
UPDATE incident_escalations SET stopped_at = now(), stop_reason = %s WHERE incident_id = %s
"""
_POSTPONE = b"""
UPDATE incident_escalations SET next_at = now() + make_interval(secs => %s)
WHERE incident_id = %s AND stopped_at IS NULL
"""
_EARLY = b"""
UPDATE incident_escalations SET advance_early = true, next_at = now()
WHERE incident_id = %s AND stopped_at IS NULL AND tier = %s
"""
_ROW_FOR_EARLY = b"""
SELECT e.site_id, e.tier, i.type FROM incident_escalations e
JOIN incidents i ON i.id = e.incident_id
WHERE e.incident_id = %s AND e.stopped_at IS NULL
FOR UPDATE OF e
"""
_DUE_NOW = b"""
UPDATE incident_escalations SET next_at = now()
WHERE incident_id = %s AND stopped_at IS NULL
"""
_WAKE = b"SELECT pg_notify('incident_escalations', %s)"
_STATUS = b"""
SELECT tier, tier_started_at, next_at, reminders_sent, stopped_at, stop_reason
FROM incident_escalations WHERE incident_id = %s
"""

# -- the escalation timeline's reads (gateway.escalation.timeline) ------------------------
# The outbox columns of migration 0016 (recipient_kind, user_id, page_id) and a
# users.display_name column are read through to_jsonb(row): the queries work before and
# after those migrations.

_STEPS_SQL = b"""
SELECT time, action, data FROM audit_log
WHERE target = %s AND action = ANY(%s)
ORDER BY seq
"""

_PAGES_SQL = b"""
SELECT p.id, p.created_at, p.tier, p.tier_name, p.sequence, p.kind, p.role,
       p.user_id, to_jsonb(u) ->> 'display_name' AS display_name
FROM staff_pages p
LEFT JOIN users u ON u.user_id = p.user_id
WHERE p.incident_id = %s
ORDER BY p.created_at, p.id
"""

_OUTBOX_SQL = b"""
SELECT o.id, o.created_at, o.channel, o.channel_index, o.state, o.attempts, o.last_error,
       o.delivered_at,
       coalesce(to_jsonb(o) ->> 'recipient_kind', 'contact') AS recipient_kind,
       (to_jsonb(o) ->> 'page_id')::bigint AS page_id,
       c.kind AS contact_kind, c.relation,
       CASE WHEN sp.role IN ('duty_staff', 'supervisor') THEN sp.role ELSE u.role END
           AS staff_role, to_jsonb(u) ->> 'display_name' AS display_name,
       sp.tier, sp.tier_name, sp.sequence
FROM notification_outbox o
LEFT JOIN contacts c ON c.contact_id = o.contact_id
LEFT JOIN users u ON u.user_id = to_jsonb(o) ->> 'user_id'
LEFT JOIN staff_pages sp ON sp.id = (to_jsonb(o) ->> 'page_id')::bigint
WHERE o.incident_id = %s
ORDER BY o.created_at, o.id
"""

# Acknowledgements from a page's link or SMS reply code (staff_page_acks, migration 0016).
_PAGE_ACKS_SQL = b"""
SELECT a.used_at, a.via, a.result, p.tier, p.tier_name,
       CASE WHEN p.role IN ('duty_staff', 'supervisor') THEN p.role ELSE u.role END AS role,
       to_jsonb(u) ->> 'display_name' AS display_name
FROM staff_page_acks a
JOIN staff_pages p ON p.id = a.page_id
LEFT JOIN users u ON u.user_id = a.user_id
WHERE a.incident_id = %s
ORDER BY a.used_at
"""

_ATTEMPTS_SQL = b"""
SELECT outbox_id, attempt, attempted_at, result, detail
FROM notification_attempts WHERE incident_id = %s
ORDER BY attempted_at, id
"""
_HAS_PAGE_ACKS = b"SELECT to_regclass('staff_page_acks') IS NOT NULL"


@dataclass(frozen=True, slots=True)
class Due:
    """A claimed due timer with its incident."""

    incident_id: int
    site_id: str
    tier: int
    tier_started_at: datetime | None
    reminders_sent: int
    advance_early: bool
    state: str
    priority: int
    type: str
    resident_id: str | None
    raised_at: datetime
    now: datetime
    technical: bool


@dataclass(frozen=True, slots=True)
class PageEntry:
    """A page of the incident (``user_id`` '' for the instruction to everyone)."""

    id: int
    created_at: datetime
    tier: int
    tier_name: str
    sequence: int
    kind: str
    role: str
    user_id: str
    display_name: str | None


@dataclass(frozen=True, slots=True)
class NotificationEntry:
    """An outbox row of the incident, with its recipient by kind, relation or role."""

    id: int
    created_at: datetime
    channel: str
    channel_index: int
    state: str
    attempts: int
    last_error: str | None
    delivered_at: datetime | None
    recipient_kind: str
    page_id: int | None
    contact_kind: str | None
    relation: str | None
    staff_role: str | None
    display_name: str | None
    tier: int | None
    tier_name: str | None
    sequence: int | None


@dataclass(frozen=True, slots=True)
class PageAckEntry:
    """A page acknowledged from its link or SMS reply code."""

    used_at: datetime
    via: str
    result: str
    tier: int
    tier_name: str
    role: str | None
    display_name: str | None


@dataclass(frozen=True, slots=True)
class EscalationStatus:
    """The incident's escalation timer now (``tier`` -1: not started)."""

    tier: int
    tier_started_at: datetime | None
    next_at: datetime
    reminders_sent: int
    stopped_at: datetime | None
    stop_reason: str | None


def start(conn: Conn, incident_id: int, site_id: str) -> None:
    """Start the escalation timer of a new incident (due now)."""
    conn.execute(_START, (incident_id, site_id))


async def claim(conn: AsyncConn, sites: Sequence[str] | None = None) -> Due | None:
    """Lock the most overdue running timer no other worker holds, or None; only timers of
    ``sites`` when given (a cell's gateway, :mod:`gateway.cells`)."""
    cur = await conn.execute(_CLAIM, {"sites": None if sites is None else list(sites)})
    row = await cur.fetchone()
    if row is None:
        return None
    return Due(
        int(row[0]), str(row[1]), int(row[2]), row[3], int(row[4]), bool(row[5]),
        str(row[6]), int(row[7]), str(row[8]), row[9], row[10], row[11], bool(row[12]),
    )  # fmt: skip


async def advance(
    conn: AsyncConn, incident_id: int, tier: int, started: datetime, next_at: datetime
) -> None:
    """The timer reached ``tier`` at ``started``; next step at ``next_at``."""
    await conn.execute(_ADVANCE, (tier, started, next_at, incident_id))


async def remind(conn: AsyncConn, incident_id: int, next_at: datetime) -> None:
    """One more reminder sent at the current tier; next step at ``next_at``."""
    await conn.execute(_REMIND, (next_at, incident_id))


async def stop(conn: AsyncConn, incident_id: int, reason: str) -> None:
    await conn.execute(_STOP, (reason, incident_id))


async def postpone(conn: AsyncConn, incident_id: int, seconds: float) -> None:
    """Set a running timer aside for ``seconds``."""
    await conn.execute(_POSTPONE, (seconds, incident_id))


async def lock_running(conn: AsyncConn, incident_id: int) -> tuple[str, int, str] | None:
    """Lock the incident's running timer: its ``(site_id, tier, incident type)``, or None."""
    cur = await conn.execute(_ROW_FOR_EARLY, (incident_id,))
    row = await cur.fetchone()
    return None if row is None else (str(row[0]), int(row[1]), str(row[2]))


async def advance_early(conn: AsyncConn, incident_id: int, tier: int) -> None:
    """The next tier is due now (the timer still at ``tier``)."""
    await conn.execute(_EARLY, (incident_id, tier))


def due_now(conn: Conn, incident_id: int) -> None:
    """Make the incident's running timer due now and wake the workers (after commit)."""
    conn.execute(_DUE_NOW, (incident_id,))
    conn.execute(_WAKE, (str(incident_id),))


def status(conn: Conn, incident_id: int) -> EscalationStatus | None:
    """The incident's escalation timer, or None when it never had one."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_STATUS, (incident_id,)).fetchone()
    return None if row is None else EscalationStatus(**row)


async def listen(conn: AsyncConn) -> None:
    """Subscribe ``conn`` to new timers (``NOTIFY incident_escalations``, migration 0016)."""
    await conn.execute(b"LISTEN incident_escalations")


def audit_steps(
    conn: Conn, incident_id: int, actions: list[str]
) -> list[tuple[datetime, str, dict[str, Any]]]:
    """The incident's escalation audit entries of ``actions``: (time, action, data)."""
    rows = conn.execute(_STEPS_SQL, (f"incident:{incident_id}", actions)).fetchall()
    return [(r[0], str(r[1]), r[2]) for r in rows]


def pages_of(conn: Conn, incident_id: int) -> list[PageEntry]:
    """The incident's pages with the paged user's role and display name, oldest first."""
    with conn.cursor(row_factory=class_row(PageEntry)) as cur:
        return cur.execute(_PAGES_SQL, (incident_id,)).fetchall()


def attempts_of(conn: Conn, incident_id: int) -> list[tuple[int, int, datetime, str, str | None]]:
    """The incident's delivery attempts: (outbox id, attempt, time, result, detail)."""
    return [
        (int(r[0]), int(r[1]), r[2], str(r[3]), r[4])
        for r in conn.execute(_ATTEMPTS_SQL, (incident_id,)).fetchall()
    ]


def notifications_of(conn: Conn, incident_id: int) -> list[NotificationEntry]:
    """The incident's outbox rows with their recipient (by kind, relation, role), oldest
    first."""
    with conn.cursor(row_factory=class_row(NotificationEntry)) as cur:
        return cur.execute(_OUTBOX_SQL, (incident_id,)).fetchall()


def page_acks_of(conn: Conn, incident_id: int) -> list[PageAckEntry]:
    """Acknowledgements from a page's link or SMS reply code ([] before migration 0016)."""
    row = conn.execute(_HAS_PAGE_ACKS).fetchone()
    if row is None or not row[0]:  # staff paging (migration 0016) not installed
        return []
    with conn.cursor(row_factory=class_row(PageAckEntry)) as cur:
        return cur.execute(_PAGE_ACKS_SQL, (incident_id,)).fetchall()
