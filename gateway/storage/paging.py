"""Staff paging's statements: ``staff_pages``, their single-use acknowledgements
(``staff_page_acks``) and each staff user's ordered paging channels (``staff_channels``).

Every function runs in the caller's transaction: the escalation worker writes a tier's pages
with the tier's advance, an acknowledgement records its use with the incident's
acknowledgement, and a channel change with its audit entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from gateway.facts import DEFAULT_UTC_OFFSET_S_INT

Conn = psycopg.Connection[Any]
AsyncConn = psycopg.AsyncConnection[Any]

_INSERT_PAGE = b"""
INSERT INTO staff_pages (incident_id, site_id, tier, tier_name, sequence, user_id, role, kind,
                         message, ack_code)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (incident_id, tier, sequence, user_id) DO NOTHING
RETURNING id
"""

# A page and its user: the page's own user, or (for the emergency instruction, addressed to
# everyone: user_id '') any staff user of the page's site or an admin.
_PAGE = b"""
SELECT p.id, p.incident_id, u.user_id, p.created_at, u.role, u.active, i.state, i.type,
       i.raised_at,
       EXISTS (SELECT 1 FROM staff_page_acks a WHERE a.page_id = p.id AND a.user_id = u.user_id),
       s.utc_offset_s
FROM staff_pages p
JOIN incidents i ON i.id = p.incident_id
JOIN sites s ON s.site_id = i.site_id
JOIN users u ON u.user_id = %s
WHERE p.id = %s
  AND (p.user_id = u.user_id
       OR (p.user_id = '' AND (u.site_id = p.site_id OR u.role = 'admin')))
"""
_PAGE_FOR_UPDATE = _PAGE + b" FOR UPDATE OF p"

_PAGE_BY_REPLY = b"""
SELECT p.id, u.user_id FROM staff_pages p
JOIN staff_channels sc ON sc.address = %s  AND split_part(sc.channel, ':', 1) IN ('sms', 'voice')
JOIN users u ON u.user_id = sc.user_id
WHERE p.ack_code = %s AND (p.user_id = u.user_id OR (p.user_id = ''
  AND (u.site_id = p.site_id OR u.role = 'admin')))
ORDER BY p.id DESC LIMIT 1
"""
_NOW = b"SELECT now()"
_INSERT_ACK = b"""
INSERT INTO staff_page_acks (page_id, incident_id, user_id, via, result)
VALUES (%s, %s, %s, %s, %s) ON CONFLICT (page_id, user_id) DO NOTHING
RETURNING page_id
"""
_SET_ACK_RESULT = b"UPDATE staff_page_acks SET result = %s WHERE page_id = %s AND user_id = %s"

_USER = b"""
SELECT user_id, role FROM users WHERE user_id = %s OR username = %s
ORDER BY user_id = %s DESC LIMIT 1
"""
_CHANNEL_COLUMNS = "id, user_id, position, channel, address"
_LIST_CHANNELS = (
    f"SELECT {_CHANNEL_COLUMNS} FROM staff_channels WHERE user_id = %s ORDER BY position"  # noqa: S608
).encode()
_LOCK_USER_CHANNELS = b"SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))"
_COUNT_CHANNELS = b"SELECT count(*) FROM staff_channels WHERE user_id = %s"
_CHANNELS_FROM = b"""
SELECT id FROM staff_channels WHERE user_id = %s AND position >= %s ORDER BY position DESC
"""
_CHANNELS_AFTER = b"""
SELECT id FROM staff_channels WHERE user_id = %s AND position > %s ORDER BY position
"""
_MOVE_CHANNEL = b"UPDATE staff_channels SET position = position + %s WHERE id = %s"
_INSERT_CHANNEL = (
    "INSERT INTO staff_channels (user_id, position, channel, address) "  # noqa: S608
    f"VALUES (%s, %s, %s, %s) RETURNING {_CHANNEL_COLUMNS}"
).encode()
_DELETE_CHANNEL = b"""
DELETE FROM staff_channels WHERE id = %s AND user_id = %s RETURNING position, channel
"""
_PAGING_CHANNELS = b"""
SELECT sc.id, sc.channel FROM staff_channels sc JOIN users u ON u.user_id = sc.user_id
WHERE sc.user_id = %s AND u.active
ORDER BY sc.position
"""
_TARGET = b"""
SELECT sc.id, sc.address, u.active, i.state, u.language
FROM staff_channels sc
JOIN users u ON u.user_id = sc.user_id
JOIN incidents i ON i.id = %s
WHERE sc.id = %s
"""


@dataclass(frozen=True, slots=True)
class PageRow:
    """A page as seen by one user (who may acknowledge it)."""

    page_id: int
    incident_id: int
    user_id: str
    created_at: datetime
    role: str
    active: bool
    incident_state: str
    incident_type: str
    raised_at: datetime
    used: bool
    utc_offset_s: int = DEFAULT_UTC_OFFSET_S_INT  # the site's, for times shown to the user


@dataclass(frozen=True, slots=True)
class StaffChannel:
    """One paging channel of a staff user (``address`` is personal data)."""

    id: int
    user_id: str
    position: int
    channel: str
    address: str | None

    def masked(self) -> str | None:
        """The address for display: the middle of a number or the mailbox name hidden."""
        if self.address is None:
            return None
        if "@" in self.address:
            local, _, domain = self.address.partition("@")
            return f"{local[:1]}***@{domain}"
        return f"{self.address[:6]}****{self.address[-4:]}"

    def as_json(self, *, reveal: bool = False) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "position": self.position,
            "channel": self.channel,
            "address": self.address if reveal else self.masked(),
        }


@dataclass(frozen=True, slots=True)
class PageTarget:
    """Where a page goes on one channel, and whether it is still wanted."""

    address: str | None
    user_active: bool
    incident_state: str
    language: str = "zh-CN"  # the user's choice: zh-CN or en


# -- pages ------------------------------------------------------------------------------


async def insert_page(
    conn: AsyncConn,
    incident_id: int,
    site_id: str,
    *,
    tier: int,
    tier_name: str,
    sequence: int,
    user_id: str,
    role: str,
    kind: str,
    message: str,
    ack_code: str,
) -> int | None:
    """Post one page; its id, or None when this tier step already paged that user."""
    cur = await conn.execute(
        _INSERT_PAGE,
        (incident_id, site_id, tier, tier_name, sequence, user_id, role, kind, message, ack_code),
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


def page_for(conn: Conn, page_id: int, user_id: str, *, lock: bool = False) -> PageRow | None:
    """Page ``page_id`` if ``user_id`` may acknowledge it (locked with ``lock``)."""
    row = conn.execute(_PAGE_FOR_UPDATE if lock else _PAGE, (user_id, page_id)).fetchone()
    if row is None:
        return None
    return PageRow(
        int(row[0]), int(row[1]), str(row[2]), row[3], str(row[4]), bool(row[5]), str(row[6]),
        str(row[7]), row[8], bool(row[9]), int(row[10]),
    )  # fmt: skip


def page_by_reply(conn: Conn, phone: str, code: str) -> tuple[int, str] | None:
    """The newest page with reply ``code`` whose user has ``phone`` as an SMS or voice
    channel: ``(page id, user id)``, or None."""
    row = conn.execute(_PAGE_BY_REPLY, (phone, code)).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def db_now(conn: Conn) -> datetime | None:
    """The database clock (the transaction's start)."""
    row = conn.execute(_NOW).fetchone()
    return None if row is None else row[0]


def record_ack(
    conn: Conn, page_id: int, incident_id: int, user_id: str, *, via: str, result: str
) -> bool:
    """Record the page's single use by ``user_id``; False when it was used already."""
    row = conn.execute(_INSERT_ACK, (page_id, incident_id, user_id, via, result)).fetchone()
    return row is not None


def set_ack_result(conn: Conn, page_id: int, user_id: str, result: str) -> None:
    conn.execute(_SET_ACK_RESULT, (result, page_id, user_id))


# -- staff channels ---------------------------------------------------------------------


def find_user(conn: Conn, user: str) -> tuple[str, str] | None:
    """``(user id, role)`` of a user id or sign-in name (the id wins), or None."""
    row = conn.execute(_USER, (user, user, user)).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def _channel(row: tuple[Any, ...]) -> StaffChannel:
    return StaffChannel(int(row[0]), str(row[1]), int(row[2]), str(row[3]), row[4])


def channels_of(conn: Conn, user_id: str) -> list[StaffChannel]:
    """The user's channels, in paging order."""
    return [_channel(r) for r in conn.execute(_LIST_CHANNELS, (user_id,)).fetchall()]


def lock_channels(conn: Conn, user_id: str) -> None:
    """Serialise changes of the user's channel list until the transaction ends."""
    conn.execute(_LOCK_USER_CHANNELS, (user_id,))


def count_channels(conn: Conn, user_id: str) -> int:
    row = conn.execute(_COUNT_CHANNELS, (user_id,)).fetchone()
    return int(row[0]) if row else 0


def insert_channel(
    conn: Conn, user_id: str, position: int, channel: str, address: str | None
) -> StaffChannel:
    """Insert a channel at ``position``, moving the later ones down (highest first, so the
    unique key holds)."""
    for (cid,) in conn.execute(_CHANNELS_FROM, (user_id, position)).fetchall():
        conn.execute(_MOVE_CHANNEL, (1, cid))
    row = conn.execute(_INSERT_CHANNEL, (user_id, position, channel, address)).fetchone()
    assert row is not None
    return _channel(row)


def delete_channel(conn: Conn, user_id: str, channel_id: int) -> str | None:
    """Delete one channel of the user, moving the later ones up; its channel name, or None
    when the user has no such channel."""
    row = conn.execute(_DELETE_CHANNEL, (channel_id, user_id)).fetchone()
    if row is None:
        return None
    for (cid,) in conn.execute(_CHANNELS_AFTER, (user_id, int(row[0]))).fetchall():
        conn.execute(_MOVE_CHANNEL, (-1, cid))
    return str(row[1])


async def paging_channels(conn: AsyncConn, user_id: str) -> list[tuple[int, str]]:
    """An active user's channels in paging order: ``(channel id, channel name)``."""
    cur = await conn.execute(_PAGING_CHANNELS, (user_id,))
    return [(int(r[0]), str(r[1])) for r in await cur.fetchall()]


async def page_target(conn: AsyncConn, incident_id: int, channel_id: int) -> PageTarget | None:
    """The address of staff channel ``channel_id``, its user's state and the incident's
    state; None when the channel is gone."""
    cur = await conn.execute(_TARGET, (incident_id, channel_id))
    row = await cur.fetchone()
    return None if row is None else PageTarget(row[1], bool(row[2]), str(row[3]), str(row[4]))
