"""SQL of the API's user accounts (table ``users``) and family links (``family_links``).

Sign-in sessions and user management live in :mod:`gateway.storage.auth_sessions`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg


def insert_user(
    conn: psycopg.Connection[Any],
    user_id: str,
    *,
    username: str,
    role: str,
    site_id: str | None,
    password_hash: str,
    residents: Iterable[str] = (),
) -> None:
    """Insert a user and their family links (in the caller's transaction)."""
    conn.execute(
        "INSERT INTO users (user_id, username, role, site_id, password_hash) "
        "VALUES (%s, %s, %s, %s, %s)",
        (user_id, username, role, site_id, password_hash),
    )
    for resident_id in residents:
        conn.execute(
            "INSERT INTO family_links (user_id, resident_id) VALUES (%s, %s)",
            (user_id, resident_id),
        )


def user_id_of(conn: psycopg.Connection[Any], username: str) -> str | None:
    """The user id of ``username``, or None."""
    row = conn.execute("SELECT user_id FROM users WHERE username = %s", (username,)).fetchone()
    return None if row is None else str(row[0])


def sign_in_name(conn: psycopg.Connection[Any], user_id: str) -> tuple[str, str | None] | None:
    """``(username, site_id)`` of the user ``user_id``, or None."""
    row = conn.execute(
        "SELECT username, site_id FROM users WHERE user_id = %s", (user_id,)
    ).fetchone()
    return None if row is None else (str(row[0]), None if row[1] is None else str(row[1]))


def set_password_hash(conn: psycopg.Connection[Any], user_id: str, password_hash: str) -> None:
    conn.execute("UPDATE users SET password_hash = %s WHERE user_id = %s", (password_hash, user_id))
