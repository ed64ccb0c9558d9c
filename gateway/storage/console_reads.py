"""SQL of the duty console's read models (issue 11): the open-incident rows with the names a
nurse works with (the resident's name and bed, the device and where it is, who took it),
the names of a site's staff, and the site's clock.

Read-only; the API route (``gateway.api.routes_console``) audits the reads of residents'
names once per user and shift (``audit.ReadLedger``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
from psycopg.rows import dict_row

from gateway.facts import OPEN_STATES
from gateway.storage.demo_sites import DEMO_CLOCK_SQL
from gateway.workflow.service import Incident

Conn = psycopg.Connection[Any]


_INCIDENT_COLUMNS = ", ".join(f"i.{f.name}" for f in dataclasses.fields(Incident))
# The device of a technical incident is its subject (device_offline, low_battery, ...); a
# hub or site incident names a location or the site. The bed and room are the resident's
# (care) or the device's.
_ROWS_SQL = f"""
SELECT {_INCIDENT_COLUMNS},
       r.display_name AS resident_name,
       b.bed_code, l.kind AS location_kind, l.label AS location_label,
       d.kind AS device_kind, d.model AS device_model,
       dl.label AS device_location_label,
       au.display_name AS acknowledged_by_name, au.role AS acknowledged_by_role,
       s.utc_offset_s, s.name AS site_name
FROM incidents i
JOIN sites s ON s.site_id = i.site_id
LEFT JOIN residents r ON r.resident_id = i.resident_id
LEFT JOIN devices d ON i.technical AND d.device_id = i.subject
LEFT JOIN beds b ON b.bed_id = coalesce(d.bed_id, r.bed_id) AND b.site_id = i.site_id
LEFT JOIN locations dl ON dl.location_id = d.location_id
LEFT JOIN locations l
       ON l.location_id = coalesce(
              b.location_id, d.location_id, CASE WHEN i.resident_id IS NULL THEN i.subject END)
      AND l.site_id = i.site_id
LEFT JOIN users au ON au.user_id = i.acknowledged_by
WHERE (%(site)s::text IS NULL OR i.site_id = %(site)s)
  AND i.state = ANY(%(states)s)
ORDER BY i.technical, i.priority, i.raised_at
LIMIT %(limit)s
"""  # noqa: S608 (only the dataclass's field names are spliced in)

EXTRA_FIELDS = (
    "resident_name", "bed_code", "location_kind", "location_label", "device_kind",
    "device_model", "device_location_label", "acknowledged_by_name", "acknowledged_by_role",
    "utc_offset_s", "site_name",
)  # fmt: skip


def incident_rows(
    conn: Conn, site_id: str | None, states: tuple[str, ...] = OPEN_STATES, limit: int = 200
) -> list[tuple[Incident, dict[str, Any]]]:
    """Incidents of ``site_id`` (None: every site) in ``states``: care first, then technical,
    each by priority and age; each with its names and places (:data:`EXTRA_FIELDS`)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _ROWS_SQL, {"site": site_id, "states": list(states), "limit": limit}
        ).fetchall()
    out = []
    for row in rows:
        extra = {name: row.pop(name) for name in EXTRA_FIELDS}
        out.append((Incident(**row), extra))
    return out


def staff_names(conn: Conn, site_id: str | None) -> list[dict[str, Any]]:
    """Display names and roles of the users who act on a site's incidents (its staff, the
    admins, and the community workers of its residents, who record door-knock results and
    call from their tasks): what the console shows instead of user ids."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT user_id, display_name, role FROM users "
            "WHERE (role IN ('duty_staff', 'supervisor', 'admin', 'installer') "
            "AND (%(site)s::text IS NULL OR site_id = %(site)s OR site_id IS NULL)) "
            "OR (role = 'community_worker' AND user_id IN (SELECT w.user_id "
            "FROM worker_assignments w JOIN residents r USING (resident_id) "
            "WHERE %(site)s::text IS NULL OR r.site_id = %(site)s)) "
            "ORDER BY user_id",
            {"site": site_id},
        ).fetchall()


def site_clock(conn: Conn, site_id: str) -> dict[str, Any] | None:
    """A site's name, UTC offset (seconds) and care centre phone."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT site_id, name, utc_offset_s, care_phone, {DEMO_CLOCK_SQL} AS demo_clock "  # noqa: S608
            "FROM sites s WHERE site_id = %s",
            (site_id,),
        ).fetchone()


# Residents with care incidents raised since a time (the shift): what, how many, how ended.
_FLAGGED_SQL = """
SELECT r.resident_id, r.display_name AS resident_name, b.bed_code, l.label AS location_label,
       array_agg(i.type ORDER BY i.raised_at) AS types, count(*) AS incidents,
       count(*) FILTER (WHERE i.state IN ('raised', 'acknowledged', 'dispatched', 'on_scene'))
           AS still_open,
       max(i.raised_at) AS last_raised_at
FROM incidents i
JOIN residents r ON r.resident_id = i.resident_id
LEFT JOIN beds b ON b.bed_id = r.bed_id
LEFT JOIN locations l ON l.location_id = b.location_id
WHERE (%(site)s::text IS NULL OR i.site_id = %(site)s)
  AND NOT i.technical AND i.raised_at >= %(since)s
GROUP BY r.resident_id, r.display_name, b.bed_code, l.label
ORDER BY still_open DESC, last_raised_at DESC
"""

_SHIFT_COUNTS_SQL = """
SELECT count(*) FILTER (WHERE raised_at >= %(since)s) AS raised,
       count(*) FILTER (WHERE resolved_at >= %(since)s) AS resolved,
       count(*) FILTER (WHERE resolved_at >= %(since)s AND outcome = 'false_alarm')
           AS false_alarms,
       count(*) FILTER (WHERE cancelled_at >= %(since)s) AS cancelled
FROM incidents
WHERE (%(site)s::text IS NULL OR site_id = %(site)s)
  AND (raised_at >= %(since)s OR resolved_at >= %(since)s OR cancelled_at >= %(since)s)
"""


def flagged_residents(conn: Conn, site_id: str | None, since: Any) -> list[dict[str, Any]]:
    """Residents with care incidents raised since ``since``, those still open first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_FLAGGED_SQL, {"site": site_id, "since": since}).fetchall()


def shift_counts(conn: Conn, site_id: str | None, since: Any) -> dict[str, int]:
    """Incidents raised, resolved (of which false alarms) and cancelled since ``since``."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SHIFT_COUNTS_SQL, {"site": site_id, "since": since}).fetchone()
    return {k: int(v or 0) for k, v in (row or {}).items()}


# The live board: every bed of a site with its resident, the bed sensor's latest presence
# (last 5 minutes), the latest message of any of its devices, open technical incidents of
# its devices, and the resident's most urgent open care incident.
_BOARD_SQL = """
SELECT b.bed_id, b.bed_code, l.label AS location_label, l.kind AS location_kind,
       r.resident_id, r.display_name AS resident_name,
       CASE WHEN r.status = 'home' AND EXISTS (  -- 随家人外出 (family away mode, 0034)
                SELECT 1 FROM away_periods p WHERE p.resident_id = r.resident_id
                AND p.starts_at <= now()
                AND least(p.ends_at, coalesce(p.ended_at, p.ends_at)) > now())
            THEN 'away' ELSE r.status END AS resident_status,
       (SELECT rd.presence FROM readings rd JOIN devices d ON d.device_id = rd.device_id
         WHERE d.bed_id = b.bed_id AND d.active AND rd.presence IS NOT NULL
           AND rd.time > now() - interval '5 minutes'
         ORDER BY rd.time DESC LIMIT 1) AS presence,
       (SELECT max(rd.time) FROM readings rd
         WHERE rd.time > now() - interval '30 minutes'
           AND rd.device_id IN (SELECT d.device_id FROM devices d WHERE d.active
                                AND (d.bed_id = b.bed_id OR d.resident_id = r.resident_id)))
           AS last_message_at,
       (SELECT count(*) FROM incidents i JOIN devices d ON d.device_id = i.subject
         WHERE i.technical AND i.state IN ('raised', 'acknowledged', 'dispatched', 'on_scene')
           AND (d.bed_id = b.bed_id OR d.resident_id = r.resident_id)) AS device_problems,
       oi.id AS incident_id, oi.type AS incident_type, oi.state AS incident_state
FROM beds b
JOIN locations l ON l.location_id = b.location_id
LEFT JOIN residents r ON r.bed_id = b.bed_id
LEFT JOIN LATERAL (
    SELECT i.id, i.type, i.state FROM incidents i
    WHERE i.resident_id = r.resident_id AND NOT i.technical
      AND i.state IN ('raised', 'acknowledged', 'dispatched', 'on_scene')
    ORDER BY i.priority, i.raised_at LIMIT 1) oi ON true
WHERE (%(site)s::text IS NULL OR b.site_id = %(site)s)
ORDER BY l.label, b.bed_code
"""


def board(conn: Conn, site_id: str | None) -> list[dict[str, Any]]:
    """Every bed of ``site_id`` (None: every site) with what the live board shows."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_BOARD_SQL, {"site": site_id}).fetchall()
