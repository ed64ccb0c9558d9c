"""SQL of the call-centre tools (migration 0031): whom an incident's caller can phone (the
resident, family contacts, the elder's community worker) with their numbers, the staff
member's own number for a two-leg call, and the ``incident_calls`` rows (attempts and the
outcomes staff record).

Phone numbers are personal data: they are read here at the moment a call is placed or the
callee list is shown, and never copied into another table, the timeline, the audit log or
a log line. Functions run in the caller's transaction and return plain rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class CalleeRow:
    """Someone an incident's caller can phone: ``kind`` resident, family or
    community_worker; ``ref`` the resident, contact or user id; ``phone`` may be None."""

    kind: str
    ref: str
    display_name: str | None
    relation: str | None
    phone: str | None


@dataclass(frozen=True, slots=True)
class CallFields:
    """What every ``incident_calls`` row holds: the attempt and its outcome (no number).
    :class:`CallRow` (a console call, about an incident) and
    :class:`gateway.storage.worker_calls.WorkerCallRow` (a worker's, about an elder) add
    what they are about."""

    id: int
    caller_id: str
    callee_kind: str
    callee_ref: str
    channel: str
    status: str
    detail: str | None
    provider_call_id: str | None
    placed_at: datetime
    outcome: str | None
    outcome_note: str | None
    outcome_by: str | None
    outcome_at: datetime | None


@dataclass(frozen=True, slots=True)
class CallRow(CallFields):
    """One call attempt about an incident and the outcome recorded for it (no number)."""

    incident_id: int


@dataclass(frozen=True, slots=True)
class StaffRow:
    """A staff member as the timeline names them: role and display name."""

    user_id: str
    role: str
    display_name: str | None
    site_id: str | None


# The resident's own phone, else the landline of their room or home.
_RESIDENT = """
SELECT 'resident' AS kind, r.resident_id AS ref, r.display_name, NULL::text AS relation,
       coalesce(r.phone, l.phone) AS phone
FROM residents r
LEFT JOIN beds b ON b.bed_id = r.bed_id
LEFT JOIN locations l ON l.location_id = b.location_id
WHERE r.resident_id = %s
"""
_CONTACTS = """
SELECT kind, contact_id AS ref, display_name, relation, phone
FROM contacts WHERE resident_id = %s ORDER BY priority, contact_id
"""
# The elder's assigned community worker (visits): their first phone paging channel.
_WORKER = """
SELECT 'community_worker' AS kind, u.user_id AS ref, u.display_name, NULL::text AS relation,
       (SELECT sc.address FROM staff_channels sc
        WHERE sc.user_id = u.user_id AND split_part(sc.channel, ':', 1) IN ('voice', 'sms')
        ORDER BY sc.position LIMIT 1) AS phone
FROM worker_assignments w JOIN users u ON u.user_id = w.user_id
WHERE w.resident_id = %s AND u.active
"""


def callees(conn: Conn, resident_id: str) -> list[CalleeRow]:
    """Whom staff can phone about ``resident_id``: the resident, their contacts by priority,
    then the assigned community worker."""
    out: list[CalleeRow] = []
    with conn.cursor(row_factory=class_row(CalleeRow)) as cur:
        for sql in (_RESIDENT, _CONTACTS, _WORKER):
            out.extend(cur.execute(sql, (resident_id,)).fetchall())
    return out


def staff_phone(conn: Conn, user_id: str) -> str | None:
    """The staff member's first phone channel (voice or SMS), for the first leg of a call."""
    row = conn.execute(
        "SELECT address FROM staff_channels WHERE user_id = %s "
        "AND split_part(channel, ':', 1) IN ('voice', 'sms') ORDER BY position LIMIT 1",
        (user_id,),
    ).fetchone()
    return None if row is None else str(row[0])


def staff(conn: Conn, user_id: str) -> StaffRow | None:
    """A user's role, display name and site."""
    with conn.cursor(row_factory=class_row(StaffRow)) as cur:
        return cur.execute(
            "SELECT user_id, role, display_name, site_id FROM users WHERE user_id = %s",
            (user_id,),
        ).fetchone()


_CALL_COLUMNS = (
    "id, incident_id, caller_id, callee_kind, callee_ref, channel, status, detail, "
    "provider_call_id, placed_at, outcome, outcome_note, outcome_by, outcome_at"
)
# The f-strings below splice the column list (a constant), never input.
_INSERT = (
    "INSERT INTO incident_calls (incident_id, caller_id, callee_kind, callee_ref, channel, "  # noqa: S608
    "status, detail, provider_call_id, placed_at, outcome, outcome_by, outcome_at) "
    f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_CALL_COLUMNS}"
)
_SET_OUTCOME = (
    "UPDATE incident_calls SET outcome = %s, outcome_note = %s, outcome_by = %s, "  # noqa: S608
    f"outcome_at = %s WHERE id = %s RETURNING {_CALL_COLUMNS}"
)
_SELECT_CALL = f"SELECT {_CALL_COLUMNS} FROM incident_calls WHERE incident_id = %s"  # noqa: S608


def insert_call(
    conn: Conn,
    incident_id: int,
    *,
    caller_id: str,
    callee_kind: str,
    callee_ref: str,
    channel: str,
    status: str,
    detail: str | None,
    provider_call_id: str | None,
    placed_at: datetime,
    outcome: str | None = None,
) -> CallRow:
    """Store one call attempt (an outcome only when the adapter already knows it)."""
    with conn.cursor(row_factory=class_row(CallRow)) as cur:
        row = cur.execute(
            _INSERT,
            (incident_id, caller_id, callee_kind, callee_ref, channel, status, detail,
             provider_call_id, placed_at, outcome, None if outcome is None else "system",
             None if outcome is None else placed_at),
        ).fetchone()  # fmt: skip
    assert row is not None
    return row


def get_call(
    conn: Conn, incident_id: int, call_id: int, *, for_update: bool = False
) -> CallRow | None:
    """One call of the incident."""
    lock = " FOR UPDATE" if for_update else ""
    with conn.cursor(row_factory=class_row(CallRow)) as cur:
        return cur.execute(
            _SELECT_CALL + " AND id = %s" + lock,
            (incident_id, call_id),
        ).fetchone()


def set_outcome(
    conn: Conn, call_id: int, *, outcome: str, note: str | None, by: str, at: datetime
) -> CallRow:
    """Record what came of a call."""
    with conn.cursor(row_factory=class_row(CallRow)) as cur:
        row = cur.execute(
            _SET_OUTCOME,
            (outcome, note, by, at, call_id),
        ).fetchone()
    assert row is not None
    return row


def calls_of(conn: Conn, incident_id: int) -> list[CallRow]:
    """The incident's calls, oldest first."""
    with conn.cursor(row_factory=class_row(CallRow)) as cur:
        return cur.execute(
            _SELECT_CALL + " ORDER BY id",
            (incident_id,),
        ).fetchall()


# -- the numbers dialled for "call the resident" ------------------------------------------

_SET_PHONE = {
    "resident": "UPDATE residents SET phone = %s WHERE resident_id = %s",
    "location": "UPDATE locations SET phone = %s WHERE location_id = %s",
}


def set_phone(conn: Conn, what: str, ident: str, phone: str | None) -> bool:
    """Set (or clear) a resident's own phone or a room's / home's landline (``what``
    resident or location); False when there is no such row."""
    return conn.execute(_SET_PHONE[what], (phone, ident)).rowcount > 0
