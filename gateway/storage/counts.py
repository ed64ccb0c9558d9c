"""Row counts the demo prints at the end (what was stored, by table and event type)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql


def row_counts(conn: psycopg.Connection[Any], tables: Iterable[str]) -> dict[str, int]:
    """Rows of each table (names are the caller's constants, quoted as identifiers)."""
    out: dict[str, int] = {}
    for table in tables:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        ).fetchone()
        out[table] = int(row[0]) if row else 0
    return out


def event_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Stored device events by type."""
    rows = conn.execute(
        "SELECT type, count(*) FROM device_events GROUP BY type ORDER BY type"
    ).fetchall()
    return {str(kind): int(n) for kind, n in rows}
