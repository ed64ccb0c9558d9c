"""The device repository: the ``devices`` table (registry, credentials' hashes, bindings).

Functions take a psycopg connection (the caller owns the transaction) and return typed
models. The lifecycle rules (what may be bound, replaced, decommissioned) are
``gateway.commissioning``'s; the ingest snapshot is ``gateway.registry``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel

from gateway.brokerauth import DeviceAccount
from gateway.errors import NotFoundError

Conn = psycopg.Connection[Any]


class Device(BaseModel):
    """A device's registry record, with the codes of the bed and resident it is bound to."""

    device_id: str
    site_id: str
    kind: str
    model: str
    serial: str
    firmware: str | None
    location_id: str | None
    bed_id: str | None
    bed_code: str | None
    resident_id: str | None
    elder_code: str | None
    heartbeat_interval_s: int | None
    active: bool
    commissioned_at: datetime
    decommissioned_at: datetime | None
    decommission_reason: str | None
    replaced_by: str | None


class ActiveDevice(BaseModel):
    """What ingest needs of an active device (location and resident through its bed)."""

    device_id: str
    site_id: str
    kind: str
    location_id: str | None
    bed_id: str | None
    resident_id: str | None
    heartbeat_interval_s: int | None


_DEVICE_SQL = """
SELECT d.device_id, d.site_id, d.kind, d.model, d.serial, d.firmware, d.location_id,
       d.bed_id, b.bed_code, d.resident_id, r.elder_code, d.heartbeat_interval_s, d.active,
       d.commissioned_at, d.decommissioned_at, d.decommission_reason, d.replaced_by
FROM devices d
LEFT JOIN beds b ON b.bed_id = d.bed_id
LEFT JOIN residents r ON r.resident_id = d.resident_id
WHERE d.device_id = %s
"""

_ACTIVE_SQL = """
SELECT d.device_id, d.site_id, d.kind, coalesce(d.location_id, b.location_id) AS location_id,
       d.bed_id, coalesce(d.resident_id, r.resident_id) AS resident_id, d.heartbeat_interval_s
FROM devices d
LEFT JOIN beds b ON b.bed_id = d.bed_id
LEFT JOIN residents r ON r.bed_id = d.bed_id
WHERE d.active
"""


def find_device(conn: Conn, device_id: str) -> Device:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_DEVICE_SQL, (device_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"unknown device {device_id!r}",
                            "list the devices: safehome device list")  # fmt: skip
    return Device(**row)


def active_devices(conn: psycopg.Connection[Any]) -> list[ActiveDevice]:
    with conn.cursor(row_factory=dict_row) as cur:
        return [ActiveDevice(**r) for r in cur.execute(_ACTIVE_SQL).fetchall()]


def decommissioned_ids(conn: psycopg.Connection[Any]) -> frozenset[str]:
    return frozenset(
        str(r[0]) for r in conn.execute("SELECT device_id FROM devices WHERE NOT active")
    )


def device_accounts(conn: psycopg.Connection[Any]) -> list[DeviceAccount]:
    """Broker accounts of every active device."""
    rows = conn.execute(
        "SELECT device_id, site_id, mqtt_password_hash FROM devices WHERE active ORDER BY device_id"
    ).fetchall()
    return [DeviceAccount(str(d), str(s), str(h)) for d, s, h in rows]


def exists(conn: Conn, device_id: str) -> bool:
    return conn.execute("SELECT 1 FROM devices WHERE device_id = %s", (device_id,)).fetchone() \
        is not None  # fmt: skip


def taken_by(conn: Conn, device_id: str, model: str, serial: str) -> str | None:
    """The device that has ``device_id`` or the same model and serial, if any."""
    row = conn.execute(
        "SELECT device_id FROM devices WHERE device_id = %s OR (model = %s AND serial = %s)",
        (device_id, model, serial),
    ).fetchone()
    return None if row is None else str(row[0])


def upsert(conn: Conn, site_id: str, values: Mapping[str, Any], password_hash: str,
           new_password: bool) -> None:  # fmt: skip
    """Insert or update a device of a site definition (active again; the password hash
    replaced only when ``new_password``)."""
    conn.execute(
        "INSERT INTO devices (device_id, site_id, kind, model, serial, firmware, location_id, "
        "bed_id, resident_id, heartbeat_interval_s, mqtt_password_hash) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (device_id) DO UPDATE SET site_id = EXCLUDED.site_id, kind = EXCLUDED.kind, "
        "model = EXCLUDED.model, serial = EXCLUDED.serial, firmware = EXCLUDED.firmware, "
        "location_id = EXCLUDED.location_id, bed_id = EXCLUDED.bed_id, "
        "resident_id = EXCLUDED.resident_id, "
        "heartbeat_interval_s = EXCLUDED.heartbeat_interval_s, active = true, "
        "decommissioned_at = NULL, mqtt_password_hash = "
        "CASE WHEN %s THEN EXCLUDED.mqtt_password_hash ELSE devices.mqtt_password_hash END",
        (values["device_id"], site_id, values["kind"], values["model"], values["serial"],
         values.get("firmware"), values.get("location_id"), values.get("bed_id"),
         values.get("resident_id"), values.get("heartbeat_interval_s"), password_hash,
         new_password),
    )  # fmt: skip


def insert(conn: Conn, site_id: str, values: Mapping[str, Any], password_hash: str) -> None:
    """A new device (bound when ``values`` has location_id, bed_id or resident_id)."""
    conn.execute(
        "INSERT INTO devices (device_id, site_id, kind, model, serial, firmware, location_id, "
        "bed_id, resident_id, heartbeat_interval_s, mqtt_password_hash) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (values["device_id"], site_id, values["kind"], values["model"], values["serial"],
         values.get("firmware"), values.get("location_id"), values.get("bed_id"),
         values.get("resident_id"), values.get("heartbeat_interval_s"), password_hash),
    )  # fmt: skip


def set_password_hash(conn: Conn, device_id: str, password_hash: str) -> None:
    conn.execute("UPDATE devices SET mqtt_password_hash = %s WHERE device_id = %s",
                 (password_hash, device_id))  # fmt: skip


def deactivate(conn: Conn, device_id: str) -> bool:
    """Mark an active device decommissioned (now); False when it was not active."""
    cur = conn.execute(
        "UPDATE devices SET active = false, decommissioned_at = now() "
        "WHERE device_id = %s AND active",
        (device_id,),
    )
    return cur.rowcount == 1


def set_decommission_reason(conn: Conn, device_id: str, reason: str | None,
                            replaced_by: str | None = None) -> None:  # fmt: skip
    if replaced_by is None:
        conn.execute("UPDATE devices SET decommission_reason = %s WHERE device_id = %s",
                     (reason, device_id))  # fmt: skip
    else:
        conn.execute(
            "UPDATE devices SET replaced_by = %s, decommission_reason = %s WHERE device_id = %s",
            (replaced_by, reason, device_id),
        )


def holder_of_kind(conn: Conn, column: str, value: str, kind: str, device_id: str) -> str | None:
    """Another active device of ``kind`` bound to the same bed or resident (``column`` is
    ``bed_id`` or ``resident_id``), if any."""
    sql = {
        "bed_id": "SELECT device_id FROM devices WHERE bed_id = %s AND kind = %s AND active "
                  "AND device_id <> %s",
        "resident_id": "SELECT device_id FROM devices WHERE resident_id = %s AND kind = %s "
                       "AND active AND device_id <> %s",
    }[column]  # fmt: skip
    row = conn.execute(sql, (value, kind, device_id)).fetchone()
    return None if row is None else str(row[0])


def set_binding(conn: Conn, device_id: str, bed_id: str | None, resident_id: str | None,
                location_id: str | None) -> None:  # fmt: skip
    conn.execute(
        "UPDATE devices SET bed_id = %s, resident_id = %s, location_id = %s WHERE device_id = %s",
        (bed_id, resident_id, location_id, device_id),
    )


def lock_accounts(conn: Conn, key: int) -> None:
    """Serialise writers of the broker's account files (transaction-scoped advisory lock)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
