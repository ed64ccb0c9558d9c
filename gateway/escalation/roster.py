"""The duty roster (``duty_shifts``): who of a site is on shift now, per role.

A shift covers ``[starts_at, ends_at)``. User ids are opaque (users live in another
migration); nothing here reads names.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg


class DutyRole(StrEnum):
    """The roles a shift is worked in."""

    DUTY_STAFF = "duty_staff"
    SUPERVISOR = "supervisor"


_ON_DUTY = b"""
SELECT DISTINCT user_id FROM duty_shifts
WHERE site_id = %s AND role = %s AND starts_at <= %s AND ends_at > %s
ORDER BY user_id
"""

_ADD = b"""
INSERT INTO duty_shifts (site_id, user_id, role, starts_at, ends_at)
VALUES (%s, %s, %s, %s, %s) RETURNING id
"""


async def on_duty_async(
    conn: psycopg.AsyncConnection[Any], site_id: str, role: DutyRole, at: datetime
) -> list[str]:
    """User ids of ``site_id`` on shift in ``role`` at ``at``."""
    cur = await conn.execute(_ON_DUTY, (site_id, role.value, at, at))
    return [str(r[0]) for r in await cur.fetchall()]


def on_duty(conn: psycopg.Connection[Any], site_id: str, role: DutyRole, at: datetime) -> list[str]:
    """User ids of ``site_id`` on shift in ``role`` at ``at``."""
    return [str(r[0]) for r in conn.execute(_ON_DUTY, (site_id, role.value, at, at)).fetchall()]


def add_shift(
    conn: psycopg.Connection[Any],
    site_id: str,
    *,
    user_id: str,
    role: DutyRole,
    starts_at: datetime,
    ends_at: datetime,
) -> int:
    """Add one shift; return its id. Raises ``ValueError`` for an empty or reversed span."""
    if ends_at <= starts_at:
        raise ValueError("a shift must end after it starts")
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise ValueError("shift times need a time zone")
    row = conn.execute(_ADD, (site_id, user_id, role.value, starts_at, ends_at)).fetchone()
    assert row is not None
    return int(row[0])
