"""Installer routes: the devices of a site, their binding, whether they are online, status.

A device is online when its last message (reading, event or state report, by device time)
is within ``deadline_factor`` heartbeat intervals: the device's own interval from the
registry, else its kind's default from ``analysis`` settings (the same rule the analysis
runner uses for "device offline"). Installers see their own site; admins any site.

Status fields come from what devices report (docs/device-protocol.md): battery from the
latest ``state`` report or ``heartbeat`` reading (whichever is newer), signal = the
``rssi`` and firmware = the ``fw`` of the latest state report (else the registry's
firmware), and the result of the device's latest commissioning record.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, status

from gateway.analysis.routing import default_heartbeat_s
from gateway.api.deps import (
    CurrentUser,
    DbConn,
    HostDep,
    UserRole,
    allow,
    may_see_site,
    scope_site,
)
from gateway.api.schemas import ApiModel, DeviceOut, LastCommissioning
from gateway.settings import AnalysisSettings
from gateway.storage import device_reads

INSTALLERS = (UserRole.INSTALLER, UserRole.ADMIN)


def _interval_s(analysis: AnalysisSettings, kind: str, own: int | None) -> float:
    return float(own) if own else default_heartbeat_s(analysis, kind)


def heartbeat_interval_s(analysis: AnalysisSettings, kind: str, own: int | None) -> int:
    """The heartbeat interval a device is expected to keep (its own, else its kind's)."""
    return round(_interval_s(analysis, kind, own))


def device_rows(
    conn: DbConn,
    analysis: AnalysisSettings,
    *,
    site: str | None = None,
    device: str | None = None,
    location: str | None = None,
    bed: str | None = None,
    active: bool | None = None,
) -> list[dict[str, Any]]:
    """Devices with binding and status (``online``, ``last_seen``, battery, signal, ...)."""
    rows = device_reads.device_rows(
        conn, site=site, device=device, location=location, bed=bed, active=active
    )
    now = datetime.now(UTC)
    for row in rows:
        deadline = analysis.deadline_factor * _interval_s(
            analysis, row["kind"], row["heartbeat_interval_s"]
        )
        seen = row["last_seen"]
        state_time = row.pop("state_time")
        row["online"] = bool(
            row["active"]
            and seen is not None
            and (now - seen).total_seconds() <= deadline
            # a device's own "going offline" report counts while it is the latest news
            and not (row["reported_online"] is False and state_time == seen)
        )
        result, at, test = (row.pop(k) for k in ("commissioning_result", "commissioning_at",
                                                  "commissioning_test_id"))  # fmt: skip
        row["last_commissioning"] = (
            None if result is None else {"result": result, "at": at, "test_id": test}
        )
    return rows


def visible_device(
    conn: DbConn, analysis: AnalysisSettings, user: CurrentUser, device_id: str
) -> dict[str, Any]:
    """One device with status, if ``user`` may see it (404 otherwise)."""
    rows = device_rows(conn, analysis, device=device_id)
    if not rows or not may_see_site(user, rows[0]["site_id"]):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown device {device_id!r}")
    return rows[0]


class DeviceStatus(ApiModel):
    """What a device reports: online, last seen, battery, signal, firmware (reported, else
    the registry's) and its latest commissioning result."""

    device_id: str
    site_id: str
    kind: str
    bed_code: str | None
    location_id: str | None
    location_label: str | None
    elder_code: str | None
    active: bool
    online: bool
    last_seen: datetime | None
    battery: float | None
    signal: float | None
    last_commissioning: LastCommissioning | None
    firmware: str | None


router = APIRouter(tags=["devices"])


@router.get("/devices", summary="Devices, binding and online state",
            response_model=list[DeviceOut], **allow(*INSTALLERS))  # fmt: skip
def list_devices(
    host: HostDep,
    user: CurrentUser,
    conn: DbConn,
    *,
    site: str | None = None,
    location: str | None = None,
    bed: str | None = None,
) -> list[dict[str, Any]]:
    analysis: AnalysisSettings = host.settings.analysis
    site_id = scope_site(user, site)
    return device_rows(conn, analysis, site=site_id, location=location, bed=bed)


@router.get("/devices/{device_id}", summary="One device: binding and status",
            response_model=DeviceOut, **allow(*INSTALLERS))  # fmt: skip
def get_device(device_id: str, host: HostDep, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    return visible_device(conn, host.settings.analysis, user, device_id)


@router.get("/status", summary="Status of the devices of a site, location, bed or device",
            response_model=list[DeviceStatus], **allow(*INSTALLERS))  # fmt: skip
def device_status(
    host: HostDep,
    user: CurrentUser,
    conn: DbConn,
    *,
    site: str | None = None,
    location: str | None = None,
    bed: str | None = None,
    device: str | None = None,
) -> list[dict[str, Any]]:
    analysis: AnalysisSettings = host.settings.analysis
    site_id = scope_site(user, site)
    rows = device_rows(conn, analysis, site=site_id, location=location, bed=bed,
                       device=device, active=None if device else True)  # fmt: skip
    keys = ("device_id", "site_id", "kind", "bed_code", "location_id", "location_label",
            "elder_code", "active", "online", "last_seen", "battery", "signal",
            "reported_firmware", "last_commissioning")  # fmt: skip
    out = []
    for row in rows:
        item = {k: row[k] for k in keys}
        item["firmware"] = item.pop("reported_firmware")
        out.append(item)
    return out
