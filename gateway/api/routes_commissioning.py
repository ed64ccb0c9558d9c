"""Installer routes over devices: register, credentials, bind, replace, decommission,
acceptance tests in TEST MODE and commissioning records (docs/installer-api.md).

Registering, rotating, replacing and decommissioning change the broker's accounts in the
same transaction as the registry (:class:`gateway.brokersync.BrokerSync`): the API answers
only once the broker has loaded the new password file and ACL. A device's password is in
the answer once (``config``), never stored (only its ``$7$`` hash) and never logged.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, Field

from devices.protocol import device_topic_prefix
from gateway import acceptance, audit
from gateway import commissioning as com
from gateway import registry_admin as reg
from gateway.api.deps import (
    ApiHost,
    CurrentUser,
    DbConn,
    HostDep,
    Principal,
    UserRole,
    allow,
    registry_writes,
)
from gateway.api.routes_devices import heartbeat_interval_s, visible_device
from gateway.api.routes_registry import site_of
from gateway.api.schemas import ApiModel, DeviceOut
from gateway.brokersync import BrokerSyncError
from gateway.errors import UnavailableError
from gateway.registry_rules import ID_PATTERN
from gateway.settings import Settings
from gateway.storage.acceptance import CommissioningRecord

INSTALLERS = (UserRole.INSTALLER, UserRole.ADMIN)
Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
Short = Annotated[str, Field(min_length=1, max_length=64)]
NO_STORE = {"Cache-Control": "no-store"}


class DeviceIn(BaseModel):
    kind: Literal["button", "bed_sensor", "wearable", "home_hub", "door_contact",
                  "motion_sensor", "smoke_detector", "gas_detector", "water_leak"]  # fmt: skip
    model: Short
    serial: Short
    device_id: Ident | None = None
    firmware: Short | None = None
    heartbeat_interval_s: int | None = Field(None, ge=5, le=86400)
    hub_id: Ident | None = Field(None, description="the home hub it reports through (kit)")


class DecommissionIn(BaseModel):
    reason: Annotated[str, Field(max_length=500)] | None = None


class BindIn(BaseModel):
    bed: Short | None = Field(None, description="bed_id or bed_code")
    resident: Short | None = Field(None, description="resident_id or elder_code")
    location_id: Ident | None = None


class ReplaceIn(BaseModel):
    serial: Short
    model: Short | None = None
    device_id: Ident | None = None
    firmware: Short | None = None
    reason: Annotated[str, Field(max_length=500)] | None = None


class AcceptanceIn(BaseModel):
    timeout_s: float | None = None


class FinishIn(BaseModel):
    notes: Annotated[str, Field(max_length=2000)] | None = None
    abort: bool = False


# -- response models -------------------------------------------------------------------


class MqttConfig(ApiModel):
    host: str
    port: int
    tls: bool
    username: str
    password: str
    client_id: str
    topic_prefix: str


class DeviceConfig(ApiModel):
    """What the installer loads onto the device: shown once, never stored."""

    device_id: str
    site_id: str
    mqtt: MqttConfig
    protocol: int
    heartbeat_interval_s: int


class DeviceWithConfig(ApiModel):
    """A device just registered or given a new password, with its configuration (once)."""

    device: DeviceOut
    config: DeviceConfig


class Replacement(ApiModel):
    """The decommissioned device, the one that took over its binding, and its config."""

    old: DeviceOut
    new: DeviceOut
    config: DeviceConfig


class Step(ApiModel):
    name: str
    prompt: str


class AcceptanceStarted(ApiModel):
    """A test just started: the device is in TEST MODE until it finishes or expires."""

    test_id: str
    device_id: str
    kind: str
    started_at: datetime
    expires_at: datetime
    steps: list[Step]


class StepProgress(ApiModel):
    """A step: ``status`` passed, failed or waiting; what was observed (and its latency)."""

    name: str
    prompt: str
    status: str
    observed: Any


class Observation(ApiModel):
    kind: str
    time: datetime
    stored_at: datetime | None
    reason: str | None


class AcceptanceProgress(ApiModel):
    """An acceptance test: status (running, passed, failed, expired, aborted) and steps."""

    test_id: str
    device_id: str
    site_id: str
    kind: str
    bed_code: str | None
    resident_id: str | None
    installer: str
    started_at: datetime
    expires_at: datetime
    finished_at: datetime | None
    status: str
    test_mode: bool
    steps_done_at: datetime | None
    steps: list[StepProgress]
    family_notified: bool
    observations: list[Observation]


_FILES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}},
                      "application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
}  # fmt: skip


def device_config(settings: Settings, device: dict[str, Any], password: str) -> dict[str, Any]:
    """What the installer loads onto the device (printed once)."""
    b, dev, site = settings.broker, str(device["device_id"]), str(device["site_id"])
    return {
        "device_id": dev,
        "site_id": site,
        "mqtt": {
            "host": b.public_host, "port": b.public_port, "tls": b.public_tls,
            "username": dev, "password": password, "client_id": dev,
            "topic_prefix": device_topic_prefix(settings.mqtt.prefix, site, dev),
        },
        "protocol": 1,
        "heartbeat_interval_s": heartbeat_interval_s(
            settings.analysis, str(device["kind"]), device["heartbeat_interval_s"]
        ),
    }  # fmt: skip


router = APIRouter(tags=["commissioning"], dependencies=[Depends(registry_writes)])


def _broker(host: ApiHost) -> Callable[[DbConn], object]:
    """The broker hook for a change; 503 with a hint when the broker is not managed."""
    sync = host.broker_sync
    if not sync.managed:
        raise UnavailableError(
            "this gateway does not manage the broker's accounts",
            "set broker.passwd_path, broker.acl_path and broker.pid_path",
        )  # fmt: skip
    return sync.apply


def _change(host: ApiHost, fn: Callable[[], Any]) -> Any:
    """Run a change that touches the broker; on a broker failure restore its files."""
    sync = host.broker_sync
    try:
        return fn()
    except BrokerSyncError as exc:
        sync.resync(host.settings.database.conninfo())
        raise UnavailableError(
            f"the broker was not updated, nothing changed: {exc}",
            "check that the broker is running, then try again",
        ) from None  # fmt: skip


def _device(host: ApiHost, user: Principal, conn: DbConn, device_id: str) -> dict[str, Any]:
    return visible_device(conn, host.settings.analysis, user, device_id)


# -- lifecycle -------------------------------------------------------------------------


@router.post("/sites/{site_id}/devices", summary="Register a device; its config once",
             status_code=status.HTTP_201_CREATED, response_model=DeviceWithConfig,
             **allow(*INSTALLERS))  # fmt: skip
def register(
    site_id: str, body: DeviceIn, host: HostDep, user: CurrentUser, conn: DbConn
) -> Response:
    site_of(conn, user, site_id)
    apply = _broker(host)
    sync = host.broker_sync
    with conn.transaction():
        dev, password = _change(host, lambda: com.register_device(
            conn, site_id, body.model_dump(), apply, sync.reserved_usernames))  # fmt: skip
        audit.append(
            conn,
            user.user_id,
            "device.register",
            f"device:{dev}",
            {"site_id": site_id, "kind": body.kind, "credentials": "issued"},
        )
    device = _device(host, user, conn, dev)
    out = {"device": device, "config": device_config(host.settings, device, password)}
    return _json(out, status.HTTP_201_CREATED)


@router.post("/devices/{device_id}/credentials/rotate",
             summary="New device password (the old one is refused); config once",
             response_model=DeviceWithConfig,
             **allow(*INSTALLERS))  # fmt: skip
def rotate(device_id: str, host: HostDep, user: CurrentUser, conn: DbConn) -> Response:
    _device(host, user, conn, device_id)
    apply = _broker(host)
    with conn.transaction():
        password = _change(host, lambda: com.rotate_device(conn, device_id, apply))
        audit.append(
            conn,
            user.user_id,
            "device.credentials.rotate",
            f"device:{device_id}",
            {"credentials": "issued; the old password is refused"},
        )
    device = _device(host, user, conn, device_id)
    return _json({"device": device,
                  "config": device_config(host.settings, device, password)})  # fmt: skip


@router.post("/devices/{device_id}/decommission",
             summary="Take a device out of service; the broker refuses it",
             response_model=DeviceOut,
             **allow(*INSTALLERS))  # fmt: skip
def decommission(
    device_id: str, host: HostDep, user: CurrentUser, conn: DbConn,
    body: DecommissionIn | None = None,
) -> dict[str, Any]:  # fmt: skip
    _device(host, user, conn, device_id)
    apply = _broker(host)
    reason = body.reason if body else None
    with conn.transaction():
        _change(host, lambda: com.decommission(conn, device_id, reason, apply))
        audit.append(
            conn,
            user.user_id,
            "device.decommission",
            f"device:{device_id}",
            {"credentials": "revoked"},
        )
    return _device(host, user, conn, device_id)


@router.post("/devices/{device_id}/bind", summary="Bind to a bed and/or resident",
             response_model=DeviceOut,
             **allow(*INSTALLERS))  # fmt: skip
def bind(
    device_id: str, body: BindIn, host: HostDep, user: CurrentUser, conn: DbConn
) -> dict[str, Any]:
    _device(host, user, conn, device_id)
    device = com.find_device(conn, device_id)
    site = str(device["site_id"])
    bed_id = None if body.bed is None else reg.resolve_bed(conn, site, body.bed)
    resident_id = None
    if body.resident is not None:
        res = reg.find_resident(conn, body.resident)
        if res["site_id"] != site:
            raise reg.not_found("resident", body.resident)
        resident_id = str(res["resident_id"])
    if body.location_id is not None:
        loc = reg.find_location(conn, body.location_id)
        if loc["site_id"] != site:
            raise reg.not_found("location", body.location_id)
    with conn.transaction():
        com.bind_device(conn, device, bed_id, resident_id, body.location_id)
        audit.append(conn, user.user_id, "device.bind", f"device:{device_id}",
                     {"bed_id": bed_id, "resident_id": resident_id,
                      "location_id": body.location_id})  # fmt: skip
    return _device(host, user, conn, device_id)


@router.post("/devices/{device_id}/unbind", summary="Remove a device's binding",
             response_model=DeviceOut,
             **allow(*INSTALLERS))  # fmt: skip
def unbind(device_id: str, host: HostDep, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    _device(host, user, conn, device_id)
    with conn.transaction():
        device = com.find_device(conn, device_id)
        com.unbind_device(conn, device)
        audit.append(
            conn,
            user.user_id,
            "device.unbind",
            f"device:{device_id}",
            {"bed_id": device["bed_id"], "resident_id": device["resident_id"]},
        )
    return _device(host, user, conn, device_id)


@router.post("/devices/{device_id}/replace",
             summary="A new device takes over the binding; the old one is decommissioned",
             status_code=status.HTTP_201_CREATED, response_model=Replacement,
             **allow(*INSTALLERS))  # fmt: skip
def replace(
    device_id: str, body: ReplaceIn, host: HostDep, user: CurrentUser, conn: DbConn
) -> Response:
    _device(host, user, conn, device_id)
    apply = _broker(host)
    sync = host.broker_sync
    with conn.transaction():
        new_id, password = _change(host, lambda: com.replace_device(
            conn, device_id, body.model_dump(), apply, sync.reserved_usernames))  # fmt: skip
        audit.append(conn, user.user_id, "device.replace", f"device:{device_id}",
                     {"new_device_id": new_id, "credentials": "issued to the new device; "
                      "the old device's revoked"})  # fmt: skip
    new = _device(host, user, conn, new_id)
    out = {"old": _device(host, user, conn, device_id), "new": new,
           "config": device_config(host.settings, new, password)}  # fmt: skip
    return _json(out, status.HTTP_201_CREATED)


# -- acceptance tests ------------------------------------------------------------------


def _test(user: Principal, conn: DbConn, test_id: str) -> dict[str, Any]:
    test = acceptance.find_test(conn, test_id)
    if not (user.is_admin or user.site_id == test["site_id"]):
        raise reg.not_found("acceptance test", test_id)
    return test


@router.post("/devices/{device_id}/acceptance",
             summary="Start an acceptance test: the device is in TEST MODE until finished",
             status_code=status.HTTP_201_CREATED, response_model=AcceptanceStarted,
             **allow(*INSTALLERS))  # fmt: skip
def start(
    device_id: str, host: HostDep, user: CurrentUser, conn: DbConn,
    body: AcceptanceIn | None = None,
) -> dict[str, Any]:  # fmt: skip
    _device(host, user, conn, device_id)
    c = host.settings.commissioning
    timeout = acceptance.check_timeout(
        body.timeout_s if body else None, c.acceptance_timeout_s, c.acceptance_max_timeout_s
    )
    test_id = acceptance.start_test(conn, com.find_device(conn, device_id), user.user_id,
                                    timeout)  # fmt: skip
    test = acceptance.find_test(conn, test_id)
    return {"test_id": test_id, "device_id": device_id, "kind": test["kind"],
            "started_at": test["started_at"], "expires_at": test["expires_at"],
            "steps": acceptance.steps_of(str(test["kind"]))}  # fmt: skip


@router.get("/acceptance/{test_id}", summary="Progress of an acceptance test",
            response_model=AcceptanceProgress,
             **allow(*INSTALLERS))  # fmt: skip
def progress(test_id: str, host: HostDep, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    test = _test(user, conn, test_id)
    view = acceptance.evaluate(conn, test, host.settings.commissioning.clock_slack_s)
    acceptance.note_progress(conn, test, view)
    return view


@router.post("/acceptance/{test_id}/finish",
             summary="End test mode and store the commissioning record",
             response_model=CommissioningRecord,
             **allow(*INSTALLERS))  # fmt: skip
def finish(
    test_id: str, host: HostDep, user: CurrentUser, conn: DbConn,
    body: FinishIn | None = None,
) -> dict[str, Any]:  # fmt: skip
    _test(user, conn, test_id)
    b = body or FinishIn()
    slack = host.settings.commissioning.clock_slack_s
    return acceptance.finish(
        conn, test_id, b.notes, abort=b.abort, slack_s=slack, actor=user.user_id
    )


@router.get("/sites/{site_id}/commissioning",
            summary="Commissioning records of a site as JSON, CSV or PDF",
            response_model=list[CommissioningRecord], responses=_FILES,
             **allow(*INSTALLERS))  # fmt: skip
def records(
    site_id: str, user: CurrentUser, conn: DbConn,
    format: Literal["json", "csv", "pdf"] = "json", lang: Literal["zh-CN", "en"] = "zh-CN",
) -> Any:  # fmt: skip
    site_of(conn, user, site_id)
    rows = acceptance.list_records(conn, site_id)
    name = f"commissioning-{site_id}"
    if format == "json":
        return rows
    disposition = {"Content-Disposition": f'attachment; filename="{name}.{format}"'}
    if format == "csv":
        body = acceptance.records_csv(rows).encode()
        return Response(body, media_type="text/csv; charset=utf-8", headers=disposition)
    body = acceptance.site_records_pdf(conn, site_id, lang)
    return Response(body, media_type="application/pdf", headers=disposition)


def _json(content: Any, status_code: int = 200) -> Response:
    """A JSON answer that caches must not keep (it holds a device password)."""
    from fastapi.encoders import jsonable_encoder  # noqa: PLC0415
    from fastapi.responses import JSONResponse  # noqa: PLC0415

    return JSONResponse(jsonable_encoder(content), status_code=status_code, headers=NO_STORE)
