"""SQL of people's names (issue 11 §3): users' display names (migration 0024) and a site's
care centre phone (migration 0025). Every change is audited in its own transaction."""

from __future__ import annotations

from typing import Any

import psycopg

from gateway import audit
from gateway.errors import InvalidError, NotFoundError

Conn = psycopg.Connection[Any]
MAX_NAME = 64


def clean_display_name(name: str) -> str:
    """``name`` trimmed; :class:`InvalidError` when empty or longer than 64 characters."""
    cleaned = " ".join(name.split())
    if not 1 <= len(cleaned) <= MAX_NAME:
        raise InvalidError(f"a display name has 1 to {MAX_NAME} characters")
    return cleaned


def set_display_name(conn: Conn, user_id: str, name: str, *, actor: str) -> bool:
    """Set a user's display name; whether it changed. Audited (``user.display_name``; the
    entry names the user id only, not the name)."""
    cleaned = clean_display_name(name)
    with conn.transaction():
        row = conn.execute(
            "SELECT display_name FROM users WHERE user_id = %s FOR UPDATE", (user_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no user {user_id}")
        if row[0] == cleaned:
            return False
        conn.execute("UPDATE users SET display_name = %s WHERE user_id = %s", (cleaned, user_id))
        audit.append(conn, actor, "user.display_name", f"user:{user_id}", {})
    return True


def user_id_of(conn: Conn, username: str) -> str | None:
    """The user id of a login name, or None."""
    row = conn.execute("SELECT user_id FROM users WHERE username = %s", (username,)).fetchone()
    return None if row is None else str(row[0])


def set_care_phone(conn: Conn, site_id: str, phone: str | None, *, actor: str) -> None:
    """Set (or clear) a site's care centre phone. Audited (``site.care_phone``)."""
    with conn.transaction():
        cur = conn.execute("UPDATE sites SET care_phone = %s WHERE site_id = %s", (phone, site_id))
        if cur.rowcount == 0:
            raise NotFoundError(f"no site {site_id}")
        audit.append(conn, actor, "site.care_phone", f"site:{site_id}", {})
