"""The SLA report's read-only queries (``incidents``, ``devices``, ``detections``, ``sites``).

Every function takes the caller's connection and reads with tuple rows, whatever the
connection's default row factory (the API's pool may differ).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from gateway.reports.sla_math import DeviceRow, Episode, IncidentRow

Conn = psycopg.Connection[Any]

_SITE_OFFSET_SQL = b"SELECT utc_offset_s FROM sites WHERE site_id = %s"

_INCIDENTS_SQL = b"""
SELECT id, type, technical, priority, subject, resident_id, state, raised_at,
       acknowledged_at, on_scene_at, resolved_at, outcome, cancelled_at, cancel_source,
       dispatched_at
FROM incidents
WHERE site_id = %s AND raised_at >= %s AND raised_at < %s
ORDER BY raised_at, id
"""

_DEVICES_SQL = b"""
SELECT device_id, location_id, commissioned_at, decommissioned_at, active
FROM devices
WHERE site_id = %s AND commissioned_at < %s
  AND (decommissioned_at IS NULL OR decommissioned_at > %s)
ORDER BY device_id
"""

# Raise rows of the offline kinds for the site's devices, locations and the site itself,
# with the time of their resolved row (same identity) when there is one.
_EPISODES_SQL = b"""
SELECT r.kind, r.subject, r.started,
       coalesce((SELECT min(x.time) FROM detections x
                 WHERE x.kind = r.kind AND x.subject = r.subject
                   AND x.condition = r.condition AND x.started = r.started AND x.resolved),
                r.closed_at) AS ended
FROM detections r
WHERE NOT r.resolved AND r.started < %(end)s
  AND ((r.kind = 'device_offline' AND r.subject = ANY(%(devices)s))
    OR (r.kind = 'hub_offline' AND r.subject = ANY(%(locations)s))
    OR (r.kind = 'site_offline' AND r.subject = %(site)s))
"""


def site_utc_offset(conn: Conn, site_id: str) -> int | None:
    """The site's UTC offset in seconds (its time zone), or None for an unknown site."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(_SITE_OFFSET_SQL, (site_id,)).fetchone()
    return None if row is None else int(row[0])


def month_incidents(conn: Conn, site_id: str, start: datetime, end: datetime) -> list[IncidentRow]:
    """The site's incidents raised in ``[start, end)``, in raise order."""
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(_INCIDENTS_SQL, (site_id, start, end))
        return [IncidentRow(*r) for r in cur.fetchall()]


def devices_in_service(conn: Conn, site_id: str, start: datetime, end: datetime) -> list[DeviceRow]:
    """The site's devices commissioned before ``end`` and not decommissioned by ``start``."""
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(_DEVICES_SQL, (site_id, end, start))
        return [DeviceRow(*r) for r in cur.fetchall()]


def offline_episodes(
    conn: Conn, site_id: str, devices: list[DeviceRow], *, until: datetime
) -> list[Episode]:
    """Offline episodes started before ``until`` of ``devices``, their locations and the site."""
    params = {
        "end": until,
        "devices": [d.device_id for d in devices],
        "locations": sorted({d.location_id for d in devices if d.location_id}),
        "site": site_id,
    }
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(_EPISODES_SQL, params)
        return [Episode(*r) for r in cur.fetchall()]
