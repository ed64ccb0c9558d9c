"""The duty roster's statements (``duty_shifts``) and the user and site reads its checks need.

Every function runs in the caller's transaction (a roster change commits with its audit
entry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]
AsyncConn = psycopg.AsyncConnection[Any]


class DutyRole(StrEnum):
    """The roles a shift is worked in."""

    DUTY_STAFF = "duty_staff"
    SUPERVISOR = "supervisor"


@dataclass(frozen=True, slots=True)
class Shift:
    """One row of ``duty_shifts`` with the user's sign-in name (for the operator's CLI)."""

    id: int
    site_id: str
    user_id: str
    username: str | None
    role: DutyRole
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True, slots=True)
class StaffUser:
    """A user as the roster checks them."""

    user_id: str
    role: str
    site_id: str | None
    active: bool


_ON_DUTY = b"""
SELECT DISTINCT user_id FROM duty_shifts
WHERE site_id = %s AND role = %s AND starts_at <= %s AND ends_at > %s
ORDER BY user_id
"""
_ADD = b"""
INSERT INTO duty_shifts (site_id, user_id, role, starts_at, ends_at)
VALUES (%s, %s, %s, %s, %s) RETURNING id
"""
_SITE_OFFSET = b"SELECT utc_offset_s FROM sites WHERE site_id = %s"
_USER = b"""
SELECT user_id, role, site_id, active FROM users WHERE user_id = %s OR username = %s
ORDER BY (user_id = %s) DESC LIMIT 1
"""
_LOCK_USER = b"SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
_SHIFT_SQL = """
SELECT s.id, s.site_id, s.user_id, u.username, s.role, s.starts_at, s.ends_at
FROM duty_shifts s LEFT JOIN users u ON u.user_id = s.user_id
"""
_CLASH = (
    _SHIFT_SQL + "WHERE s.site_id = %s AND s.user_id = %s "
    "AND s.starts_at < %s AND s.ends_at > %s ORDER BY s.starts_at LIMIT 1"
).encode()
_BY_ID = (_SHIFT_SQL + "WHERE s.id = %s").encode()
_LOCK_SHIFT = (_SHIFT_SQL + "WHERE s.site_id = %s AND s.id = %s FOR UPDATE OF s").encode()
_DELETE = b"DELETE FROM duty_shifts WHERE id = %s"
_AT = (
    _SHIFT_SQL + "WHERE s.site_id = %s AND s.starts_at <= %s AND s.ends_at > %s "
    "ORDER BY s.role DESC, coalesce(u.username, s.user_id), s.starts_at"
).encode()


def _shift(row: tuple[Any, ...]) -> Shift:
    return Shift(int(row[0]), row[1], row[2], row[3], DutyRole(row[4]), row[5], row[6])


async def on_duty_async(conn: AsyncConn, site_id: str, role: DutyRole, at: datetime) -> list[str]:
    """User ids of ``site_id`` on shift in ``role`` at ``at``."""
    cur = await conn.execute(_ON_DUTY, (site_id, role.value, at, at))
    return [str(r[0]) for r in await cur.fetchall()]


def on_duty(conn: Conn, site_id: str, role: DutyRole, at: datetime) -> list[str]:
    """User ids of ``site_id`` on shift in ``role`` at ``at``."""
    return [str(r[0]) for r in conn.execute(_ON_DUTY, (site_id, role.value, at, at)).fetchall()]


def insert(
    conn: Conn, site_id: str, user_id: str, role: DutyRole, *, starts_at: datetime,
    ends_at: datetime,
) -> int:  # fmt: skip
    """Insert one shift; its id."""
    row = conn.execute(_ADD, (site_id, user_id, role.value, starts_at, ends_at)).fetchone()
    assert row is not None
    return int(row[0])


def site_utc_offset_s(conn: Conn, site_id: str) -> int | None:
    """The site's UTC offset in seconds, or None for an unknown site."""
    row = conn.execute(_SITE_OFFSET, (site_id,)).fetchone()
    return None if row is None else int(row[0])


def find_user(conn: Conn, user: str) -> StaffUser | None:
    """A user by id or sign-in name (the id wins), or None."""
    row = conn.execute(_USER, (user, user, user)).fetchone()
    return None if row is None else StaffUser(str(row[0]), str(row[1]), row[2], bool(row[3]))


def lock_user(conn: Conn, user_id: str) -> None:
    """Serialise roster changes of this person until the transaction ends."""
    conn.execute(_LOCK_USER, (user_id,))


def clash(
    conn: Conn, site_id: str, user_id: str, starts_at: datetime, ends_at: datetime
) -> Shift | None:
    """The user's earliest shift at the site overlapping ``[starts_at, ends_at)``, if any."""
    row = conn.execute(_CLASH, (site_id, user_id, ends_at, starts_at)).fetchone()
    return None if row is None else _shift(row)


def get(conn: Conn, shift_id: int) -> Shift | None:
    row = conn.execute(_BY_ID, (shift_id,)).fetchone()
    return None if row is None else _shift(row)


def lock(conn: Conn, site_id: str, shift_id: int) -> Shift | None:
    """Lock shift ``shift_id`` of ``site_id``, or None."""
    row = conn.execute(_LOCK_SHIFT, (site_id, shift_id)).fetchone()
    return None if row is None else _shift(row)


def delete(conn: Conn, shift_id: int) -> None:
    conn.execute(_DELETE, (shift_id,))


def running_at(conn: Conn, site_id: str, at: datetime) -> list[Shift]:
    """The shifts of ``site_id`` running at ``at`` (supervisors first, then by user)."""
    return [_shift(r) for r in conn.execute(_AT, (site_id, at, at)).fetchall()]
