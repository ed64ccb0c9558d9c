"""Reads of the staff views over incidents and residents: the incident list with where to go
(bed code and room or household label) and the resident context card (registry row,
contacts, latest vitals, recent incidents). Rows are returned as dicts keyed by column."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
from psycopg.rows import dict_row

from gateway.workflow.service import Incident

Conn = psycopg.Connection[Any]

_INCIDENT_COLUMNS = ", ".join(f"i.{f.name}" for f in dataclasses.fields(Incident))
# Where to go, without opening the (audited) resident card: the bed code and the room label
# (nursing home) or household label (home care) of the resident's bed; for a technical
# incident without a resident, those of the device (subject) or the location (subject of
# ``hub_offline``). Names and home addresses stay in the card.
LOCATION_FIELDS = ("bed_code", "location_kind", "location_label")
_LIST_SQL = f"""
SELECT {_INCIDENT_COLUMNS},
       b.bed_code, l.kind AS location_kind, l.label AS location_label
FROM incidents i
LEFT JOIN residents r ON r.resident_id = i.resident_id
LEFT JOIN devices d ON i.resident_id IS NULL AND d.device_id = i.subject
LEFT JOIN beds b ON b.bed_id = coalesce(r.bed_id, d.bed_id) AND b.site_id = i.site_id
LEFT JOIN locations l
       ON l.location_id = coalesce(
              b.location_id, d.location_id, CASE WHEN i.resident_id IS NULL THEN i.subject END)
      AND l.site_id = i.site_id
WHERE (%(site)s::text IS NULL OR i.site_id = %(site)s)
  AND (%(states)s::text[] IS NULL OR i.state = ANY(%(states)s))
ORDER BY i.priority, i.raised_at
LIMIT %(limit)s
"""  # noqa: S608 (only the dataclass's field names are spliced in)


def incident_rows(
    conn: Conn, site_id: str | None, states: list[str] | None, limit: int
) -> list[dict[str, Any]]:
    """Incidents (of ``site_id``, or every site; in ``states``, or any), most urgent and
    oldest first: the columns of :class:`Incident` and :data:`LOCATION_FIELDS`."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            _LIST_SQL, {"site": site_id, "states": states, "limit": limit}
        ).fetchall()


_RESIDENT_SQL = """
SELECT r.resident_id, r.elder_code, r.display_name, r.site_id, r.care_level, r.status,
       r.lives_alone, r.high_risk, r.consent_family_health, r.consent_family_incidents,
       b.bed_code, l.kind AS location_kind, l.label AS room, l.address
FROM residents r
LEFT JOIN beds b ON b.bed_id = r.bed_id
LEFT JOIN locations l ON l.location_id = b.location_id
WHERE r.resident_id = %s
"""

# The latest vitals sample of a device bound to the resident or to their bed (last 24 h).
_VITALS_SQL = """
SELECT rd.time, rd.device_id, rd.heart_rate, rd.breathing_rate, rd.presence
FROM readings rd
WHERE rd.device_id IN (
        SELECT d.device_id FROM devices d JOIN residents r ON r.resident_id = %(rid)s
        WHERE d.active AND (d.resident_id = r.resident_id OR d.bed_id = r.bed_id))
  AND rd.time > now() - interval '24 hours'
  AND (rd.heart_rate IS NOT NULL OR rd.breathing_rate IS NOT NULL OR rd.presence IS NOT NULL)
ORDER BY rd.time DESC
LIMIT 1
"""


def load_resident(conn: Conn, resident_id: str) -> dict[str, Any] | None:
    """The resident's registry row with bed code and room (nursing home) or address (home)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_RESIDENT_SQL, (resident_id,)).fetchone()
    if row is None:
        return None
    if row["location_kind"] != "home":
        row["address"] = None
    return dict(row)


def load_contacts(conn: Conn, resident_id: str) -> list[dict[str, Any]]:
    """The resident's contacts, by priority."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT contact_id, kind, display_name, relation, phone, email, priority "
            "FROM contacts WHERE resident_id = %s ORDER BY priority, contact_id",
            (resident_id,),
        ).fetchall()


def load_last_vitals(conn: Conn, resident_id: str) -> dict[str, Any] | None:
    """The resident's latest vitals sample of the last 24 hours, or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_VITALS_SQL, {"rid": resident_id}).fetchone()


def load_recent_incidents(conn: Conn, resident_id: str, limit: int = 10) -> list[dict[str, Any]]:
    """The resident's latest incidents, newest first (summary columns)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, type, priority, state, raised_at, acknowledged_by, responder, "
            "resolved_at, outcome FROM incidents WHERE resident_id = %s "
            "ORDER BY raised_at DESC LIMIT %s",
            (resident_id, limit),
        ).fetchall()
