"""The duty roster (``duty_shifts``): who of a site is on shift now, per role.

A shift covers ``[starts_at, ends_at)``. User ids are opaque (users live in another
migration); the escalation path (:func:`on_duty`) reads no names.

:func:`add_roster_shift` / :func:`remove_roster_shift` / :func:`shifts_at` back the
``safehome roster`` commands: they check the user (exists, active, staff of that site, allowed
to work the role), refuse a shift overlapping another shift of the same person at the site
(one person works one shift at a time; several people may share a time), and record each
change in the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg

from gateway import audit


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


class RosterError(ValueError):
    """A roster change refused; the message says why (and how to fix it)."""


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


_SHIFT_SQL = """
SELECT s.id, s.site_id, s.user_id, u.username, s.role, s.starts_at, s.ends_at
FROM duty_shifts s LEFT JOIN users u ON u.user_id = s.user_id
"""
# The roles allowed to work a shift of each duty role: a supervisor may cover a staff shift.
_MAY_WORK: dict[DutyRole, frozenset[str]] = {
    DutyRole.DUTY_STAFF: frozenset({"duty_staff", "supervisor"}),
    DutyRole.SUPERVISOR: frozenset({"supervisor"}),
}


def _shift(row: tuple[Any, ...]) -> Shift:
    return Shift(int(row[0]), row[1], row[2], row[3], DutyRole(row[4]), row[5], row[6])


def site_utc_offset_s(conn: psycopg.Connection[Any], site_id: str) -> int:
    """The site's UTC offset in seconds; :class:`RosterError` for an unknown site."""
    row = conn.execute("SELECT utc_offset_s FROM sites WHERE site_id = %s", (site_id,)).fetchone()
    if row is None:
        raise RosterError(f"unknown site: {site_id}")
    return int(row[0])


def _staff_user(conn: psycopg.Connection[Any], site_id: str, user: str, role: DutyRole) -> str:
    row = conn.execute(
        "SELECT user_id, role, site_id, active FROM users WHERE user_id = %s OR username = %s "
        "ORDER BY (user_id = %s) DESC LIMIT 1",
        (user, user, user),
    ).fetchone()
    if row is None:
        raise RosterError(f"unknown user: {user} (create it with `safehome user add`)")
    user_id, user_role, user_site, active = row
    if not active:
        raise RosterError(f"user {user} is deactivated")
    if user_role not in _MAY_WORK[role]:
        raise RosterError(
            f"user {user} is a {user_role} user and cannot work a {role.value} shift "
            f"(allowed: {', '.join(sorted(_MAY_WORK[role]))})"
        )
    if user_site != site_id:
        raise RosterError(f"user {user} works at site {user_site}, not {site_id}")
    return str(user_id)


def add_roster_shift(
    conn: psycopg.Connection[Any],
    site_id: str,
    *,
    user: str,
    role: DutyRole,
    starts_at: datetime,
    ends_at: datetime,
    actor: str,
) -> Shift:
    """Check and add a shift of ``user`` (user id or sign-in name); audited as ``actor``."""
    with conn.transaction():
        site_utc_offset_s(conn, site_id)
        user_id = _staff_user(conn, site_id, user, role)
        if starts_at.tzinfo is None or ends_at.tzinfo is None:
            raise RosterError("shift times need a time zone")
        if ends_at <= starts_at:
            raise RosterError(
                f"the shift must end after it starts (start {starts_at.isoformat()}, "
                f"end {ends_at.isoformat()})"
            )
        # Serialise roster changes of this person so two concurrent adds cannot both pass.
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (user_id,))
        clash = conn.execute(
            (_SHIFT_SQL + "WHERE s.site_id = %s AND s.user_id = %s "
             "AND s.starts_at < %s AND s.ends_at > %s ORDER BY s.starts_at LIMIT 1").encode(),
            (site_id, user_id, ends_at, starts_at),
        ).fetchone()  # fmt: skip
        if clash is not None:
            other = _shift(clash)
            raise RosterError(
                f"overlaps shift #{other.id} of the same user ({other.role.value}, "
                f"{other.starts_at.isoformat()} to {other.ends_at.isoformat()}); "
                f"remove it first with `safehome roster remove --site {site_id} --id {other.id}`"
            )
        shift_id = add_shift(
            conn, site_id, user_id=user_id, role=role, starts_at=starts_at, ends_at=ends_at
        )
        audit.append(conn, actor, "roster.add", f"shift:{shift_id}", {
            "site_id": site_id, "user_id": user_id, "role": role.value,
            "starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat(),
        })  # fmt: skip
        row = conn.execute((_SHIFT_SQL + "WHERE s.id = %s").encode(), (shift_id,)).fetchone()
    assert row is not None
    return _shift(row)


def remove_roster_shift(
    conn: psycopg.Connection[Any], site_id: str, shift_id: int, *, actor: str
) -> Shift:
    """Delete one shift of ``site_id``; audited as ``actor``."""
    with conn.transaction():
        row = conn.execute(
            (_SHIFT_SQL + "WHERE s.site_id = %s AND s.id = %s FOR UPDATE OF s").encode(),
            (site_id, shift_id),
        ).fetchone()
        if row is None:
            raise RosterError(f"no shift #{shift_id} at site {site_id}")
        shift = _shift(row)
        conn.execute("DELETE FROM duty_shifts WHERE id = %s", (shift_id,))
        audit.append(conn, actor, "roster.remove", f"shift:{shift_id}", {
            "site_id": site_id, "user_id": shift.user_id, "role": shift.role.value,
            "starts_at": shift.starts_at.isoformat(), "ends_at": shift.ends_at.isoformat(),
        })  # fmt: skip
    return shift


def shifts_at(conn: psycopg.Connection[Any], site_id: str, at: datetime) -> list[Shift]:
    """The shifts of ``site_id`` running at ``at`` (supervisors first, then by user)."""
    site_utc_offset_s(conn, site_id)
    rows = conn.execute(
        (_SHIFT_SQL + "WHERE s.site_id = %s AND s.starts_at <= %s AND s.ends_at > %s "
         "ORDER BY s.role DESC, coalesce(u.username, s.user_id), s.starts_at").encode(),
        (site_id, at, at),
    ).fetchall()  # fmt: skip
    return [_shift(r) for r in rows]
