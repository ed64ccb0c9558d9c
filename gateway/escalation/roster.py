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

from datetime import datetime
from typing import Any

import psycopg

from gateway import audit
from gateway.errors import ConflictError, InvalidError, NotFoundError, SafehomeError
from gateway.storage import roster
from gateway.storage.roster import DutyRole, Shift, on_duty, on_duty_async

__all__ = [
    "DutyRole",
    "RosterConflictError",
    "RosterError",
    "RosterInvalidError",
    "RosterNotFoundError",
    "Shift",
    "add_roster_shift",
    "add_shift",
    "on_duty",
    "on_duty_async",
    "remove_roster_shift",
    "shifts_at",
    "site_utc_offset_s",
]


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
    return roster.insert(conn, site_id, user_id, role, starts_at=starts_at, ends_at=ends_at)


class RosterError(SafehomeError, ValueError):
    """A roster change refused; the message says why (and how to fix it)."""


class RosterInvalidError(RosterError, InvalidError):
    """The shift itself is wrong (times, or a user who may not work it)."""


class RosterNotFoundError(RosterError, NotFoundError):
    """The site, user or shift named does not exist."""


class RosterConflictError(RosterError, ConflictError):
    """The shift overlaps another shift of the same person."""


# The roles allowed to work a shift of each duty role: a supervisor may cover a staff shift.
_MAY_WORK: dict[DutyRole, frozenset[str]] = {
    DutyRole.DUTY_STAFF: frozenset({"duty_staff", "supervisor"}),
    DutyRole.SUPERVISOR: frozenset({"supervisor"}),
}


def site_utc_offset_s(conn: psycopg.Connection[Any], site_id: str) -> int:
    """The site's UTC offset in seconds; :class:`RosterError` for an unknown site."""
    offset = roster.site_utc_offset_s(conn, site_id)
    if offset is None:
        raise RosterNotFoundError(f"unknown site: {site_id}")
    return offset


def _staff_user(conn: psycopg.Connection[Any], site_id: str, user: str, role: DutyRole) -> str:
    found = roster.find_user(conn, user)
    if found is None:
        raise RosterNotFoundError(f"unknown user: {user} (create it with `safehome user add`)")
    user_id, user_role, user_site, active = (
        found.user_id, found.role, found.site_id, found.active
    )  # fmt: skip
    if not active:
        raise RosterInvalidError(f"user {user} is deactivated")
    if user_role not in _MAY_WORK[role]:
        raise RosterInvalidError(
            f"user {user} is a {user_role} user and cannot work a {role.value} shift "
            f"(allowed: {', '.join(sorted(_MAY_WORK[role]))})"
        )
    if user_site != site_id:
        raise RosterInvalidError(f"user {user} works at site {user_site}, not {site_id}")
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
            raise RosterInvalidError("shift times need a time zone")
        if ends_at <= starts_at:
            raise RosterInvalidError(
                f"the shift must end after it starts (start {starts_at.isoformat()}, "
                f"end {ends_at.isoformat()})"
            )
        # Serialise roster changes of this person so two concurrent adds cannot both pass.
        roster.lock_user(conn, user_id)
        other = roster.clash(conn, site_id, user_id, starts_at=starts_at, ends_at=ends_at)
        if other is not None:
            raise RosterConflictError(
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
        added = roster.get(conn, shift_id)
    assert added is not None
    return added


def remove_roster_shift(
    conn: psycopg.Connection[Any], site_id: str, shift_id: int, *, actor: str
) -> Shift:
    """Delete one shift of ``site_id``; audited as ``actor``."""
    with conn.transaction():
        shift = roster.lock(conn, site_id, shift_id)
        if shift is None:
            raise RosterNotFoundError(f"no shift #{shift_id} at site {site_id}")
        roster.delete(conn, shift_id)
        audit.append(conn, actor, "roster.remove", f"shift:{shift_id}", {
            "site_id": site_id, "user_id": shift.user_id, "role": shift.role.value,
            "starts_at": shift.starts_at.isoformat(), "ends_at": shift.ends_at.isoformat(),
        })  # fmt: skip
    return shift


def shifts_at(conn: psycopg.Connection[Any], site_id: str, at: datetime) -> list[Shift]:
    """The shifts of ``site_id`` running at ``at`` (supervisors first, then by user)."""
    site_utc_offset_s(conn, site_id)
    return roster.running_at(conn, site_id, at)
