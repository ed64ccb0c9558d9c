"""Reads of the installers' device views: every device with its binding (location, bed,
resident), what it last reported (time, state, battery, signal, firmware) and its latest
commissioning record and running acceptance test."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

_DEVICES_SQL = """
SELECT d.device_id, d.site_id, d.kind, d.model, d.serial, d.firmware, d.location_id,
       l.label AS location_label, d.bed_id, b.bed_code, d.resident_id, r.elder_code,
       d.heartbeat_interval_s, d.active, d.commissioned_at, d.decommissioned_at, d.replaced_by,
       greatest(rd.time, ev.time, st.time) AS last_seen,
       st.time AS state_time, st.online AS reported_online,
       CASE WHEN hb.time IS NOT NULL AND (st.battery IS NULL OR hb.time > st.time)
            THEN hb.battery ELSE st.battery END AS battery,
       st.rssi AS signal, coalesce(st.firmware, d.firmware) AS reported_firmware,
       cr.result AS commissioning_result, cr.finished_at AS commissioning_at,
       cr.test_id AS commissioning_test_id, rt.test_id AS running_test
FROM devices d
LEFT JOIN beds b ON b.bed_id = d.bed_id
LEFT JOIN locations l ON l.location_id = coalesce(d.location_id, b.location_id)
LEFT JOIN residents r ON r.resident_id = d.resident_id
LEFT JOIN LATERAL (SELECT time FROM readings WHERE device_id = d.device_id
                   ORDER BY time DESC LIMIT 1) rd ON true
LEFT JOIN LATERAL (SELECT time FROM device_events WHERE device_id = d.device_id
                   ORDER BY time DESC LIMIT 1) ev ON true
LEFT JOIN LATERAL (SELECT time, online, battery, rssi, firmware FROM device_state
                   WHERE device_id = d.device_id ORDER BY time DESC LIMIT 1) st ON true
LEFT JOIN LATERAL (SELECT time, battery FROM readings
                   WHERE device_id = d.device_id AND type = 'heartbeat' AND battery IS NOT NULL
                     AND time > now() - interval '1 day'
                   ORDER BY time DESC LIMIT 1) hb ON true
LEFT JOIN LATERAL (SELECT result, finished_at, test_id FROM commissioning_records
                   WHERE device_id = d.device_id ORDER BY finished_at DESC LIMIT 1) cr ON true
LEFT JOIN LATERAL (SELECT test_id FROM acceptance_tests WHERE device_id = d.device_id
                     AND finished_at IS NULL AND expires_at > now()) rt ON true
WHERE (%(site)s::text IS NULL OR d.site_id = %(site)s)
  AND (%(device)s::text IS NULL OR d.device_id = %(device)s)
  AND (%(location)s::text IS NULL OR l.location_id = %(location)s)
  AND (%(bed)s::text IS NULL OR d.bed_id = %(bed)s OR b.bed_code = %(bed)s)
  AND (%(active)s::boolean IS NULL OR d.active = %(active)s)
ORDER BY d.site_id, d.device_id
"""


def device_rows(
    conn: psycopg.Connection[Any],
    *,
    site: str | None = None,
    device: str | None = None,
    location: str | None = None,
    bed: str | None = None,
    active: bool | None = None,
) -> list[dict[str, Any]]:
    """Devices matching every filter given (bed: bed_id or bed_code), by site and id."""
    params = {"site": site, "device": device, "location": location, "bed": bed,
              "active": active}  # fmt: skip
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_DEVICES_SQL, params).fetchall()
