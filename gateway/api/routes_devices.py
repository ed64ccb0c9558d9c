"""Installer routes: the devices of a site, their binding and whether they are online.

A device is online when its last message (reading, event or state report, by device time)
is within ``deadline_factor`` heartbeat intervals: the device's own interval from the
registry, else its kind's default from ``analysis`` settings (the same rule the analysis
runner uses for "device offline"). Installers see their own site; admins any site.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from psycopg.rows import dict_row

from gateway.api.auth import CurrentUser, DbConn, UserRole, allow
from gateway.api.routes_incidents import scope_site
from gateway.settings import AnalysisSettings

_DEVICES_SQL = """
SELECT d.device_id, d.site_id, d.kind, d.model, d.firmware, d.location_id, d.bed_id,
       d.resident_id, d.heartbeat_interval_s, d.active, d.commissioned_at,
       greatest(rd.time, ev.time, st.time) AS last_seen,
       st.time AS state_time, st.online AS reported_online, st.battery
FROM devices d
LEFT JOIN LATERAL (SELECT time FROM readings WHERE device_id = d.device_id
                   ORDER BY time DESC LIMIT 1) rd ON true
LEFT JOIN LATERAL (SELECT time FROM device_events WHERE device_id = d.device_id
                   ORDER BY time DESC LIMIT 1) ev ON true
LEFT JOIN LATERAL (SELECT time, online, battery FROM device_state WHERE device_id = d.device_id
                   ORDER BY time DESC LIMIT 1) st ON true
WHERE (%(site)s::text IS NULL OR d.site_id = %(site)s)
ORDER BY d.site_id, d.device_id
"""


def _interval_s(analysis: AnalysisSettings, kind: str, own: int | None) -> float:
    if own:
        return float(own)
    defaults = {
        "button": analysis.heartbeat_button_s,
        "bed_sensor": analysis.heartbeat_bed_sensor_s,
        "wearable": analysis.heartbeat_wearable_s,
    }
    return defaults.get(kind, analysis.heartbeat_button_s)


def build_devices_router() -> APIRouter:
    """``GET /devices?site=``."""
    router = APIRouter(tags=["devices"])

    @router.get("/devices", summary="Devices, binding and online state",
                **allow(UserRole.INSTALLER, UserRole.ADMIN))  # fmt: skip
    def list_devices(
        request: Request, user: CurrentUser, conn: DbConn, site: str | None = None
    ) -> list[dict[str, Any]]:
        analysis: AnalysisSettings = request.app.state.analysis_settings
        site_id = scope_site(user, site)
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(_DEVICES_SQL, {"site": site_id}).fetchall()
        now = datetime.now(UTC)
        for row in rows:
            deadline = analysis.deadline_factor * _interval_s(
                analysis, row["kind"], row["heartbeat_interval_s"]
            )
            seen = row["last_seen"]
            row["online"] = bool(
                row["active"]
                and seen is not None
                and (now - seen).total_seconds() <= deadline
                # a device's own "going offline" report counts while it is the latest news
                and not (row["reported_online"] is False and row.pop("state_time") == seen)
            )
            row.pop("state_time", None)
        return rows

    return router
