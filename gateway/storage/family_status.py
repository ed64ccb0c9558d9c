"""SQL of the family view's status line (issue 11 §6): for a resident linked to a family
member, the care incident in progress and who handles it (by display name and role, never a
login name or id), or when the resident got up today; with the site's clock and phone."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from gateway.storage.demo_sites import DEMO_CLOCK_SQL

Conn = psycopg.Connection[Any]

_LINKED_SQL = """
SELECT r.resident_id, r.bed_id, r.consent_family_incidents, r.consent_family_health,
       s.site_id, s.name AS site_name, s.utc_offset_s, s.care_phone,
       {demo_clock} AS demo_clock
FROM family_links f
JOIN residents r ON r.resident_id = f.resident_id
JOIN sites s ON s.site_id = r.site_id
WHERE f.user_id = %s AND r.resident_id = %s
""".replace("{demo_clock}", DEMO_CLOCK_SQL)

# The newest open care incident; who took it (display name and role); whether the
# escalation has reached beyond the duty staff (the family tier is being alerted).
_OPEN_SQL = """
SELECT i.id, i.type, i.state, i.raised_at, i.acknowledged_at, i.on_scene_at, i.responder,
       u.display_name AS handler_name, u.role AS handler_role
FROM incidents i LEFT JOIN users u ON u.user_id = i.acknowledged_by
WHERE i.resident_id = %s AND NOT i.technical
  AND i.state IN ('raised', 'acknowledged', 'dispatched', 'on_scene')
ORDER BY i.priority, i.raised_at DESC
LIMIT 1
"""

# Today's first time out of bed after the rise window opens (site local time), from the
# bed sensor of the resident's bed.
_RISE_SQL = """
SELECT min(rd.time)
FROM readings rd
WHERE rd.device_id IN (SELECT d.device_id FROM devices d
                       WHERE d.active AND d.kind = 'bed_sensor' AND d.bed_id = %(bed)s)
  AND rd.presence = false
  AND rd.time >= %(since)s
"""

_LAST_READING_SQL = """
SELECT max(rd.time)
FROM readings rd
WHERE rd.device_id IN (SELECT d.device_id FROM devices d
                       WHERE d.active AND (d.bed_id = %(bed)s OR d.resident_id = %(rid)s))
  AND rd.time > now() - interval '24 hours'
"""


def linked(conn: Conn, user_id: str, resident_id: str) -> dict[str, Any] | None:
    """The resident (consents, site clock and phone) if linked to ``user_id``, else None."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LINKED_SQL, (user_id, resident_id)).fetchone()


def open_care_incident(conn: Conn, resident_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_OPEN_SQL, (resident_id,)).fetchone()


def first_rise(conn: Conn, bed_id: str | None, since: datetime) -> datetime | None:
    """The first reading out of bed since ``since`` of the bed's sensor, or None."""
    if bed_id is None:
        return None
    row = conn.execute(_RISE_SQL, {"bed": bed_id, "since": since}).fetchone()
    return None if row is None else row[0]


def last_reading(conn: Conn, resident_id: str, bed_id: str | None) -> datetime | None:
    """When a device of the resident or their bed last reported (last 24 h), or None."""
    row = conn.execute(_LAST_READING_SQL, {"bed": bed_id, "rid": resident_id}).fetchone()
    return None if row is None else row[0]
