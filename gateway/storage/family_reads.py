"""Reads of the family view: the residents linked to a family user, and a resident's recent
care incidents (technical ones are the staff's business)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.Connection[Any]

_LINKED_SQL = """
SELECT r.resident_id, r.display_name, r.status, r.consent_family_health,
       r.consent_family_incidents
FROM family_links f JOIN residents r ON r.resident_id = f.resident_id
WHERE f.user_id = %s AND (%s::text IS NULL OR r.resident_id = %s)
ORDER BY r.resident_id
"""

# Care incidents only (technical ones are the staff's business), newest first; who handles
# it is the acknowledging user's name or the dispatched responder.
_INCIDENTS_SQL = """
SELECT i.id, i.type, i.state, i.raised_at, i.acknowledged_at, i.on_scene_at, i.resolved_at,
       i.outcome, u.display_name AS handled_by, u.role AS handled_by_role, i.responder
FROM incidents i LEFT JOIN users u ON u.user_id = i.acknowledged_by
WHERE i.resident_id = %s AND NOT i.technical
ORDER BY i.raised_at DESC
LIMIT %s
"""


def linked_residents(
    conn: Conn, user_id: str, resident_id: str | None = None
) -> list[dict[str, Any]]:
    """The residents linked to ``user_id`` (only ``resident_id`` if given), with status and
    consents."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LINKED_SQL, (user_id, resident_id, resident_id)).fetchall()


def care_incidents(conn: Conn, resident_id: str, limit: int = 10) -> list[dict[str, Any]]:
    """The resident's latest care incidents, newest first, with who handles each."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_INCIDENTS_SQL, (resident_id, limit)).fetchall()
