"""SQL of API sign-in sessions and user management (table ``auth_sessions``, migration 0018).

A session is opened at sign-in and named in every access token (claim ``sid``);
:func:`session_valid` is the per-request revocation check. Refresh tokens are opaque random
strings stored only as sha256 hashes and rotated on every use (:func:`rotate`); presenting
a rotated-away token again revokes the session (a stolen copy was used).

User management (:func:`set_active`, :func:`set_password_hash`) revokes the user's sessions
in the same transaction and appends an audit entry there, so the change and its record
commit together.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg

from gateway import audit

Conn = psycopg.Connection[Any]
RevokeReason = Literal["logout", "deactivated", "password_changed", "refresh_reuse"]


def new_refresh_token() -> tuple[str, str]:
    """A fresh refresh token and its stored hash."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    """sha256 hex of a refresh token (what the database keeps)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class UserRow:
    """A user as sign-in needs it."""

    user_id: str
    role: str
    site_id: str | None
    password_hash: str
    active: bool


def find_user(conn: Conn, username: str) -> UserRow | None:
    """The user with that sign-in name (active or not), or None."""
    row = conn.execute(
        "SELECT user_id, role, site_id, password_hash, active FROM users WHERE username = %s",
        (username,),
    ).fetchone()
    return None if row is None else UserRow(*row)


def resolve_user(conn: Conn, ref: str) -> str | None:
    """The user id of ``ref`` (a user id or a sign-in name), or None."""
    row = conn.execute(
        "SELECT user_id FROM users WHERE user_id = %s OR username = %s ORDER BY user_id = %s DESC",
        (ref, ref, ref),
    ).fetchone()
    return None if row is None else str(row[0])


def open_session(conn: Conn, user_id: str, max_s: int, idle_s: int) -> tuple[str, str, datetime]:
    """Open a session for ``user_id``; return its id, the refresh token and its end."""
    session_id = secrets.token_urlsafe(18)
    token, digest = new_refresh_token()
    with conn.transaction():
        # Housekeeping: this user's sessions that ended more than a day ago.
        conn.execute(
            "DELETE FROM auth_sessions "
            "WHERE user_id = %s AND expires_at < now() - interval '1 day'",
            (user_id,),
        )
        row = conn.execute(
            "INSERT INTO auth_sessions "
            "(session_id, user_id, expires_at, idle_until, refresh_hash) "
            "VALUES (%(sid)s, %(uid)s, now() + make_interval(secs => %(max)s), "
            "        now() + make_interval(secs => least(%(idle)s, %(max)s)), %(hash)s) "
            "RETURNING expires_at",
            {"sid": session_id, "uid": user_id, "max": max_s, "idle": idle_s, "hash": digest},
        ).fetchone()
    assert row is not None
    return session_id, token, row[0]


def session_valid(conn: Conn, session_id: str, user_id: str) -> bool:
    """Whether the session is open and its user exists and is active (one PK lookup)."""
    row = conn.execute(
        "SELECT 1 FROM auth_sessions s JOIN users u ON u.user_id = s.user_id "
        "WHERE s.session_id = %s AND s.user_id = %s AND s.revoked_at IS NULL "
        "AND s.expires_at > now() AND u.active",
        (session_id, user_id),
    ).fetchone()
    return row is not None


@dataclass(frozen=True, slots=True)
class Rotated:
    """The outcome of a refresh: the session's user and the new refresh token."""

    session_id: str
    user_id: str
    role: str
    site_id: str | None
    refresh_token: str
    expires_at: datetime


def rotate(conn: Conn, presented: str, idle_s: int) -> Rotated | None:
    """Exchange a refresh token for a new one; None if it is unknown, used, revoked or
    expired, or its user is inactive. Reuse of a rotated-away token revokes the session."""
    digest = hash_refresh_token(presented)
    token, new_digest = new_refresh_token()
    with conn.transaction():
        row = conn.execute(
            "UPDATE auth_sessions s SET refresh_hash = %s, prev_refresh_hash = s.refresh_hash, "
            "       refreshed_at = now(), "
            "       idle_until = least(s.expires_at, now() + make_interval(secs => %s)) "
            "FROM users u "
            "WHERE s.refresh_hash = %s AND u.user_id = s.user_id AND u.active "
            "  AND s.revoked_at IS NULL AND s.expires_at > now() AND s.idle_until > now() "
            "RETURNING s.session_id, s.user_id, u.role, u.site_id, s.expires_at",
            (new_digest, idle_s, digest),
        ).fetchone()
        if row is not None:
            return Rotated(row[0], row[1], row[2], row[3], token, row[4])
        conn.execute(
            "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = 'refresh_reuse' "
            "WHERE prev_refresh_hash = %s AND revoked_at IS NULL",
            (digest,),
        )
    return None


def revoke_session(conn: Conn, session_id: str, reason: RevokeReason) -> bool:
    """Revoke one session (logout); whether it was open."""
    cur = conn.execute(
        "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = %s "
        "WHERE session_id = %s AND revoked_at IS NULL",
        (reason, session_id),
    )
    return cur.rowcount > 0


def revoke_user_sessions(conn: Conn, user_id: str, reason: RevokeReason) -> int:
    """Revoke every open session of ``user_id``; how many."""
    cur = conn.execute(
        "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = %s "
        "WHERE user_id = %s AND revoked_at IS NULL",
        (reason, user_id),
    )
    return cur.rowcount


class UserNotFoundError(LookupError):
    """No user with that id or name."""


def set_active(conn: Conn, user_id: str, active: bool, actor: str) -> bool:
    """Deactivate (revoking every session) or reactivate a user, audited; whether the flag
    changed. Raises :class:`UserNotFoundError`."""
    with conn.transaction():
        row = conn.execute(
            "SELECT active FROM users WHERE user_id = %s FOR UPDATE", (user_id,)
        ).fetchone()
        if row is None:
            raise UserNotFoundError(user_id)
        changed = bool(row[0]) != active
        revoked = 0
        if changed:
            conn.execute("UPDATE users SET active = %s WHERE user_id = %s", (active, user_id))
        if not active:
            revoked = revoke_user_sessions(conn, user_id, "deactivated")
        action = "user.reactivate" if active else "user.deactivate"
        details = {"changed": changed, "sessions_revoked": revoked}
        audit.append(conn, actor, action, f"user:{user_id}", details)
    return changed


def set_password_hash(conn: Conn, user_id: str, password_hash: str, actor: str) -> int:
    """Replace a user's password hash and revoke their sessions, audited; how many sessions
    were revoked. Raises :class:`UserNotFoundError`."""
    with conn.transaction():
        cur = conn.execute(
            "UPDATE users SET password_hash = %s WHERE user_id = %s", (password_hash, user_id)
        )
        if cur.rowcount == 0:
            raise UserNotFoundError(user_id)
        revoked = revoke_user_sessions(conn, user_id, "password_changed")
        audit.append(conn, actor, "user.password", f"user:{user_id}", {"sessions_revoked": revoked})
    return revoked
