"""The outbox's messages that are not tied to an incident (migration 0032).

Same tables as the incident outbox (:mod:`gateway.storage.outbox`): ``notification_outbox``
rows with ``kind`` other than ``'incident'`` (``visit_overdue``, ``platform_push``), a
``dedupe_key`` (unique per channel number: queuing is idempotent, also across two processes)
and ``recipient_kind`` ``'user'`` (a staff user's channels) or ``'platform'`` (the
configured endpoint). Attempts go to ``notification_attempts`` with the row's ``kind``.
The incident outbox's claim never takes these rows and the message worker
(:mod:`gateway.notify.messaging`) never takes incident rows; a claimed row of either kind is
marked delivered, due again or failed by the same updates (``gateway.storage.outbox.mark_*``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]
AsyncConn = psycopg.AsyncConnection[Any]

_INSERT = b"""
INSERT INTO notification_outbox (kind, subject, dedupe_key, recipient_kind, user_id, channel,
                                 channel_index, payload)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (dedupe_key, channel_index) WHERE dedupe_key IS NOT NULL DO NOTHING
RETURNING id
"""
_CLAIM = b"""
WITH due AS (
    SELECT id FROM notification_outbox
    WHERE kind <> 'incident' AND kind = ANY(%s)
      AND ((state = 'pending' AND next_attempt_at <= now())
           OR (state = 'sending' AND lease_until < now()))
    ORDER BY next_attempt_at, id
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
UPDATE notification_outbox o
SET state = 'sending', attempts = o.attempts + 1,
    lease_until = now() + make_interval(secs => %s)
FROM due
WHERE o.id = due.id
RETURNING o.id, o.kind, o.subject, o.dedupe_key, o.recipient_kind, o.user_id, o.channel,
          o.channel_index, o.payload, o.attempts, o.created_at
"""
_ATTEMPT = b"""
INSERT INTO notification_attempts
    (outbox_id, incident_id, contact_id, channel, attempt, result, detail, duration_ms,
     recipient_kind, user_id, kind)
VALUES (%s, NULL, NULL, %s, %s, %s, %s, %s, %s, %s, %s)
"""
_TARGET = b"""
SELECT sc.address, u.active FROM staff_channels sc JOIN users u ON u.user_id = sc.user_id
WHERE sc.id = %s AND sc.user_id = %s
"""
_USER_CHANNELS = b"""
SELECT sc.id, sc.channel FROM staff_channels sc JOIN users u ON u.user_id = sc.user_id
WHERE sc.user_id = %s AND u.active
ORDER BY sc.position
"""
# The supervisors told of an overdue item of a site: the site's supervisors and the
# district supervisors of its district.
_SUPERVISORS = b"""
SELECT u.user_id FROM users u
WHERE u.active AND (
    (u.role = 'supervisor' AND u.site_id = %(s)s)
    OR (u.role = 'district_supervisor' AND EXISTS (
        SELECT 1 FROM user_districts ud JOIN site_districts sd
            ON sd.district_id = ud.district_id
        WHERE ud.user_id = u.user_id AND sd.site_id = %(s)s)))
ORDER BY u.user_id
"""
_BY_KEY = b"""
SELECT id, state, attempts, channel_index, last_error FROM notification_outbox
WHERE dedupe_key = %s ORDER BY channel_index
"""
_SITES = b"SELECT site_id FROM sites ORDER BY site_id"
_CODES = b"""
SELECT r.resident_id, r.elder_code, b.bed_code FROM residents r
LEFT JOIN beds b ON b.bed_id = r.bed_id
WHERE r.site_id = %s
"""


@dataclass(frozen=True, slots=True)
class Message:
    """A claimed non-incident row (``attempt``: this attempt's number)."""

    outbox_id: int
    kind: str
    subject: str | None
    dedupe_key: str
    recipient_kind: str  # user | platform
    user_id: str | None
    channel: str
    channel_index: int
    payload: dict[str, Any]
    attempt: int
    queued_at: datetime


@dataclass(frozen=True, slots=True)
class QueuedRow:
    outbox_id: int
    state: str
    attempts: int
    channel_index: int
    last_error: str | None


def _insert_params(  # noqa: PLR0917 - one row's columns, in order
    kind: str,
    subject: str | None,
    dedupe_key: str,
    recipient_kind: str,
    user_id: str | None,
    channel: str,
    channel_index: int,
    payload: Mapping[str, Any],
) -> tuple[Any, ...]:
    return (
        kind,
        subject,
        dedupe_key,
        recipient_kind,
        user_id,
        channel,
        channel_index,
        Jsonb(dict(payload)),
    )


def insert_message(
    conn: Conn,
    *,
    kind: str,
    subject: str | None,
    dedupe_key: str,
    recipient_kind: str,
    user_id: str | None,
    channel: str,
    payload: Mapping[str, Any],
    channel_index: int = 0,
) -> int | None:
    """Queue a message (due now); its id, or None when that key is queued already."""
    row = conn.execute(
        _INSERT,
        _insert_params(
            kind, subject, dedupe_key, recipient_kind, user_id, channel, channel_index, payload
        ),
    ).fetchone()
    return None if row is None else int(row[0])


async def insert_next_channel(
    conn: AsyncConn, item: Message, channel: str, index: int
) -> int | None:
    """Queue ``item`` on its recipient's channel number ``index`` (due now)."""
    cur = await conn.execute(
        _INSERT,
        _insert_params(
            item.kind,
            item.subject,
            item.dedupe_key,
            item.recipient_kind,
            item.user_id,
            channel,
            index,
            item.payload,
        ),
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def claim(conn: AsyncConn, kinds: list[str], limit: int, lease_s: float) -> list[Message]:
    """Lease up to ``limit`` due rows of ``kinds`` (never incident rows)."""
    cur = await conn.execute(_CLAIM, (kinds, limit, lease_s))
    return [
        Message(
            int(r[0]),
            str(r[1]),
            r[2],
            str(r[3]),
            str(r[4]),
            r[5],
            str(r[6]),
            int(r[7]),
            dict(r[8]),
            int(r[9]),
            r[10],
        )
        for r in await cur.fetchall()
    ]


async def record_attempt(
    conn: AsyncConn, item: Message, result: str, detail: str, duration_ms: int
) -> None:
    await conn.execute(
        _ATTEMPT,
        (
            item.outbox_id,
            item.channel,
            item.attempt,
            result,
            detail,
            duration_ms,
            item.recipient_kind,
            item.user_id,
            item.kind,
        ),
    )


async def channel_target(
    conn: AsyncConn, channel_id: int, user_id: str
) -> tuple[str | None, bool] | None:
    """(address, user active) of a staff channel of ``user_id``; None when it is gone."""
    cur = await conn.execute(_TARGET, (channel_id, user_id))
    row = await cur.fetchone()
    return None if row is None else (row[0], bool(row[1]))


def user_channels(conn: Conn, user_id: str) -> list[tuple[int, str]]:
    """An active user's staff channels in order: ``(channel id, channel name)``."""
    return [(int(r[0]), str(r[1])) for r in conn.execute(_USER_CHANNELS, (user_id,)).fetchall()]


def site_supervisors(conn: Conn, site_id: str) -> list[str]:
    """Active supervisors of the site and district supervisors of its district."""
    return [str(r[0]) for r in conn.execute(_SUPERVISORS, {"s": site_id}).fetchall()]


def queued(conn: Conn, dedupe_key: str) -> list[QueuedRow]:
    """The rows of one message (one per channel tried), by channel number."""
    return [
        QueuedRow(int(r[0]), str(r[1]), int(r[2]), int(r[3]), r[4])
        for r in conn.execute(_BY_KEY, (dedupe_key,)).fetchall()
    ]


def site_ids(conn: Conn) -> list[str]:
    return [str(r[0]) for r in conn.execute(_SITES).fetchall()]


def resident_codes(conn: Conn, site_id: str) -> dict[str, tuple[str | None, str | None]]:
    """resident id -> (elder code, bed code) of the site's residents (一人一床一码)."""
    return {str(r[0]): (r[1], r[2]) for r in conn.execute(_CODES, (site_id,)).fetchall()}
