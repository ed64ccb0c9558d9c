"""Reads of the staff live feed: timeline events in commit order (``feed_seq``, migration
0021) and the ``incident_events`` notification channel (migration 0012)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

_EVENTS_SQL = """
SELECT e.feed_seq AS seq, e.id, e.incident_id, e.time, e.kind, e.actor, e.data,
       i.site_id, i.resident_id, i.subject, i.type, i.priority, i.technical,
       i.state AS incident_state
FROM incident_events e JOIN incidents i ON i.id = e.incident_id
WHERE e.feed_seq > %(after)s AND (%(site)s::text IS NULL OR i.site_id = %(site)s)
ORDER BY e.feed_seq
LIMIT %(limit)s
"""


def events_after(
    conn: psycopg.Connection[Any], after: int, site_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """Events with feed_seq > ``after`` (of ``site_id``, or every site), in commit order: the
    SSE frame's fields (``seq`` is the event id)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            _EVENTS_SQL, {"after": after, "site": site_id, "limit": limit}
        ).fetchall()


def feed_head(conn: psycopg.Connection[Any]) -> int:
    """The latest feed_seq committed (0 before the first event)."""
    row = conn.execute("SELECT coalesce(max(feed_seq), 0) FROM incident_events").fetchone()
    return int(row[0]) if row else 0


async def listen(conn: psycopg.AsyncConnection[Any]) -> None:
    """Subscribe ``conn`` to the notifications of new timeline events."""
    await conn.execute("LISTEN incident_events")
