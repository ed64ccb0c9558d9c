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
