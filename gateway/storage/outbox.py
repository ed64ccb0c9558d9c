"""The notification outbox's statements (``notification_outbox``, ``notification_attempts``).

Rows are queued in the caller's transaction (a transactional outbox: the escalation tier
that queues them commits with them); the outbox worker (:mod:`gateway.notify.outbox`)
claims due rows with ``FOR UPDATE SKIP LOCKED``, records each attempt and moves the row on
(and queues the next channel) in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import psycopg
from psycopg.types.json import Jsonb

AsyncConn = psycopg.AsyncConnection[Any]

_CONTACTS = b"""
SELECT c.contact_id, c.channels, b.bed_code, l.label, s.utc_offset_s
FROM contacts c
JOIN residents r ON r.resident_id = c.resident_id
JOIN sites s ON s.site_id = r.site_id
LEFT JOIN beds b ON b.bed_id = r.bed_id
LEFT JOIN locations l ON l.location_id = b.location_id
WHERE c.resident_id = %s
  AND c.consent_notify
  AND (c.kind = 'community_worker' OR r.consent_family_incidents)
ORDER BY c.priority, c.contact_id
"""
_INSERT = b"""
INSERT INTO notification_outbox (incident_id, contact_id, channel, channel_index, payload)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (incident_id, contact_id, channel) DO NOTHING
RETURNING id
"""
_STAFF_INSERT = b"""
INSERT INTO notification_outbox (incident_id, recipient_kind, user_id, page_id, channel,
                                 channel_index, payload)
VALUES (%s, 'staff', %s, %s, %s, %s, %s)
ON CONFLICT (page_id, user_id, channel_index) WHERE page_id IS NOT NULL DO NOTHING
RETURNING id
"""
_PAGE_FACTS = b"""
SELECT i.type, i.raised_at, b.bed_code, l.label, s.utc_offset_s, i.details
FROM incidents i
JOIN sites s ON s.site_id = i.site_id
LEFT JOIN residents r ON r.resident_id = i.resident_id
LEFT JOIN beds b ON b.bed_id = r.bed_id
LEFT JOIN locations l ON l.location_id = b.location_id
WHERE i.id = %s
"""
_DETAILS = b"SELECT details FROM incidents WHERE id = %s"
_CLAIM = b"""
WITH due AS (
    SELECT id FROM notification_outbox
    WHERE kind = 'incident'  -- other kinds: gateway.storage.messages (migration 0032)
      AND ((state = 'pending' AND next_attempt_at <= now())
           OR (state = 'sending' AND lease_until < now()))
      AND (%(sites)s::text[] IS NULL
           OR incident_id IN (SELECT i.id FROM incidents i
                              WHERE i.site_id = ANY(%(sites)s::text[])))
    ORDER BY next_attempt_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE notification_outbox o
SET state = 'sending', attempts = o.attempts + 1,
    lease_until = now() + make_interval(secs => %(lease)s)
FROM due
WHERE o.id = due.id
RETURNING o.id, o.incident_id, o.contact_id, o.channel, o.channel_index, o.payload, o.attempts,
          o.created_at, o.recipient_kind, o.user_id, o.page_id
"""
_RECIPIENTS = b"""
SELECT c.contact_id, c.kind, c.email, c.phone, c.consent_notify,
       r.display_name, r.consent_family_incidents, c.wechat_openid, c.language
FROM contacts c JOIN residents r ON r.resident_id = c.resident_id
WHERE c.contact_id = ANY(%s)
"""
_GROUP_DONE = b"""
SELECT 1 FROM notification_outbox
WHERE incident_id = %s AND channel = %s AND state = 'delivered' AND id <> %s
  AND recipient_kind = 'contact'
LIMIT 1
"""
_ATTEMPT = b"""
INSERT INTO notification_attempts
    (outbox_id, incident_id, contact_id, channel, attempt, result, detail, duration_ms,
     recipient_kind, user_id, page_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
_GUARD = b" WHERE id = %s AND state = 'sending' AND attempts = %s"
_DELIVERED = (
    b"UPDATE notification_outbox SET state = 'delivered', delivered_at = now(),"
    b" lease_until = NULL, last_error = NULL" + _GUARD
)
_RETRY = (
    b"UPDATE notification_outbox SET state = 'pending', lease_until = NULL,"
    b" last_error = %s, next_attempt_at = now() + make_interval(secs => %s)" + _GUARD
)
_FAILED = (
    b"UPDATE notification_outbox SET state = 'failed', lease_until = NULL, last_error = %s" + _GUARD
)
_CONTACT_STATUS = b"""
SELECT contact_id,
       bool_or(state = 'delivered') AS delivered,
       bool_or(state IN ('pending', 'sending')) AS in_progress
FROM notification_outbox
WHERE incident_id = %s AND recipient_kind = 'contact'
GROUP BY contact_id
ORDER BY contact_id
"""
_PAGE_STATUS = b"""
SELECT p.user_id,
       bool_or(o.state = 'delivered') AS delivered,
       bool_or(o.state IN ('pending', 'sending')) AS in_progress,
       count(o.id) AS rows
FROM staff_pages p
LEFT JOIN notification_outbox o ON o.page_id = p.id
WHERE p.incident_id = %s AND p.tier = %s AND p.user_id <> ''
GROUP BY p.user_id
ORDER BY p.user_id
"""


@dataclass(frozen=True, slots=True)
class ContactTarget:
    """A consented contact of a resident, with the redacted facts of the resident's bed."""

    contact_id: str
    channels: Any  # the stored preference list, as stored (checked by the caller)
    bed_code: str | None
    room: str | None
    utc_offset_s: int


@dataclass(frozen=True, slots=True)
class IncidentPlace:
    """The redacted facts of an incident a page names."""

    incident_type: str
    raised_at: datetime
    bed_code: str | None
    room: str | None
    utc_offset_s: int
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claimed outbox row (``attempt``: this attempt's number)."""

    outbox_id: int
    incident_id: int
    contact_id: str | None
    channel: str
    channel_index: int
    payload: dict[str, Any]
    attempt: int
    queued_at: datetime
    recipient_kind: str = "contact"
    user_id: str | None = None
    page_id: int | None = None

    @property
    def staff(self) -> bool:
        return self.recipient_kind == "staff"


@dataclass(frozen=True, slots=True)
class Recipient:
    """A contact as read at send time (address, consents, the resident's name)."""

    kind: str
    email: str | None
    phone: str | None
    consent_notify: bool
    resident_name: str
    consent_family_incidents: bool
    openid: str | None = None
    language: str = "zh-CN"  # the contact's choice: zh-CN or en


async def consented_contacts(conn: AsyncConn, resident_id: str) -> list[ContactTarget]:
    """The resident's contacts who consent to incident notices (family members only when
    the resident consents to family notices), by priority."""
    cur = await conn.execute(_CONTACTS, (resident_id,))
    return [ContactTarget(str(r[0]), r[1], r[2], r[3], int(r[4])) for r in await cur.fetchall()]


async def insert_contact_row(
    conn: AsyncConn, incident_id: int, contact_id: str | None, channel: str, *, index: int,
    payload: Mapping[str, Any],
) -> int | None:  # fmt: skip
    """Queue a contact's message on one channel (due now); its id, or None when queued
    already."""
    cur = await conn.execute(
        _INSERT, (incident_id, contact_id, channel, index, Jsonb(dict(payload)))
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def insert_staff_row(
    conn: AsyncConn, incident_id: int, user_id: str | None, page_id: int | None, channel: str,
    *, index: int, payload: Mapping[str, Any],
) -> int | None:  # fmt: skip
    """Queue a staff page on its user's channel number ``index``; its id, or None when
    queued already."""
    cur = await conn.execute(
        _STAFF_INSERT, (incident_id, user_id, page_id, channel, index, Jsonb(dict(payload)))
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def incident_place(conn: AsyncConn, incident_id: int) -> IncidentPlace | None:
    cur = await conn.execute(_PAGE_FACTS, (incident_id,))
    row = await cur.fetchone()
    if row is None:
        return None
    return IncidentPlace(str(row[0]), row[1], row[2], row[3], int(row[4]), dict(row[5] or {}))


async def incident_details(conn: AsyncConn, incident_id: int) -> dict[str, Any]:
    """The incident's detection details (for the reason sentence; no names)."""
    cur = await conn.execute(_DETAILS, (incident_id,))
    row = await cur.fetchone()
    return {} if row is None or not isinstance(row[0], dict) else dict(row[0])


async def claim(
    conn: AsyncConn, limit: int, lease_s: float, sites: Sequence[str] | None = None
) -> list[Claimed]:
    """Lease up to ``limit`` due rows (pending and due, or sending with a lapsed lease); only
    rows of ``sites``' incidents when given (a cell's gateway, :mod:`gateway.cells`)."""
    only = None if sites is None else list(sites)
    cur = await conn.execute(_CLAIM, {"limit": limit, "lease": lease_s, "sites": only})
    out = []
    for r in await cur.fetchall():
        contact = None if r[2] is None else str(r[2])
        page = None if r[10] is None else int(r[10])
        out.append(
            Claimed(int(r[0]), int(r[1]), contact, str(r[3]), int(r[4]), dict(r[5]),
                    int(r[6]), r[7], str(r[8]), r[9], page)
        )  # fmt: skip
    return out


async def recipients(conn: AsyncConn, contact_ids: Iterable[str]) -> dict[str, Recipient]:
    cur = await conn.execute(_RECIPIENTS, (sorted(contact_ids),))
    return {
        str(r[0]): Recipient(
            str(r[1]), r[2], r[3], bool(r[4]), str(r[5]), bool(r[6]), r[7], str(r[8])
        )
        for r in await cur.fetchall()
    }


async def group_done(conn: AsyncConn, incident_id: int, channel: str, outbox_id: int) -> bool:
    """Whether another contact's row already delivered this incident on ``channel``."""
    cur = await conn.execute(_GROUP_DONE, (incident_id, channel, outbox_id))
    return await cur.fetchone() is not None


async def record_attempt(
    conn: AsyncConn, item: Claimed, result: str, detail: str, duration_ms: int
) -> None:
    await conn.execute(
        _ATTEMPT,
        (item.outbox_id, item.incident_id, item.contact_id, item.channel, item.attempt,
         result, detail, duration_ms, item.recipient_kind, item.user_id, item.page_id),
    )  # fmt: skip


class Leased(Protocol):
    """A claimed row of ``notification_outbox``, incident or not (gateway.storage.messages)."""

    @property
    def outbox_id(self) -> int: ...
    @property
    def attempt(self) -> int: ...


async def mark_delivered(conn: AsyncConn, item: Leased) -> bool:
    """Delivered; False when the lease was lost (another worker owns the row now)."""
    cur = await conn.execute(_DELIVERED, (item.outbox_id, item.attempt))
    return cur.rowcount != 0


async def mark_retry(conn: AsyncConn, item: Leased, detail: str, delay_s: float) -> bool:
    """Pending again, due in ``delay_s``; False when the lease was lost."""
    cur = await conn.execute(_RETRY, (detail, delay_s, item.outbox_id, item.attempt))
    return cur.rowcount != 0


async def mark_failed(conn: AsyncConn, item: Leased, detail: str) -> bool:
    """Failed on this channel (the dead letter: kept with its attempts and last error);
    False when the lease was lost."""
    cur = await conn.execute(_FAILED, (detail, item.outbox_id, item.attempt))
    return cur.rowcount != 0


def _status(delivered: bool, in_progress: bool) -> str:
    return "delivered" if delivered else "in_progress" if in_progress else "failed"


async def contact_status(conn: AsyncConn, incident_id: int) -> dict[str, str]:
    """Per contact of an incident: ``delivered``, ``in_progress`` or ``failed`` (all channels).

    The durable counterpart of the outbox's ``on_exhausted`` hook (lost if the process dies
    between the commit and the call): escalation can poll this after a restart.
    """
    cur = await conn.execute(_CONTACT_STATUS, (incident_id,))
    return {
        str(contact_id): _status(delivered, in_progress)
        for contact_id, delivered, in_progress in await cur.fetchall()
    }


async def page_status(conn: AsyncConn, incident_id: int, tier: int) -> dict[str, str]:
    """Per paged user of an incident's tier: ``delivered``, ``in_progress``, ``failed`` (every
    channel of every page failed) or ``console`` (the user has no paging channel)."""
    cur = await conn.execute(_PAGE_STATUS, (incident_id, tier))
    return {
        str(user_id): "console" if not rows else _status(delivered, in_progress)
        for user_id, delivered, in_progress, rows in await cur.fetchall()
    }
