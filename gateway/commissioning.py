"""Registry administration: sites, locations, beds, residents, devices, contacts.

Used by the installer's commissioning flow, the demo and the tests. A site definition (TOML,
see ``config/sites/demo.toml``) is applied idempotently: rows are upserted by id. A device
gets a fresh MQTT password when it is new or when rotation is asked for; the password is
returned once (for the installer to load onto the device) and only its hash is stored.

The installer API's device lifecycle (:func:`register_device`, :func:`rotate_device`,
:func:`decommission`, :func:`bind_device`, :func:`unbind_device`, :func:`replace_device`)
runs each change in one transaction and calls ``apply_broker`` (normally
:meth:`gateway.brokersync.BrokerSync.apply`) inside it, so the broker's accounts change
together with the registry or not at all.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from gateway import audit
from gateway.brokerauth import DeviceAccount, hash_password, new_password
from gateway.facts import DEFAULT_UTC_OFFSET_S_INT
from gateway.kit import hubs as kit
from gateway.kit.hubs import kit_accounts
from gateway.registry_admin import check_id, conflict, invalid, not_found

log = logging.getLogger(__name__)


class CommissioningError(ValueError):
    """A site definition or a registry change is invalid."""


@dataclass(frozen=True, slots=True)
class DeviceCredential:
    device_id: str
    site_id: str
    kind: str
    password: str
    bed_id: str | None
    resident_id: str | None
    location_id: str | None


def load_site_definition(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CommissioningError(f"{path}: {exc}") from exc
    if "site" not in data:
        raise CommissioningError(f"{path}: missing [site] table")
    return data


def _req(entry: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise CommissioningError(f"{where}: missing '{key}'")
    return entry[key]


def apply_site_definition(
    conn: psycopg.Connection[tuple[object, ...]],
    definition: Mapping[str, Any],
    *,
    rotate_passwords: bool = False,
    actor: str = "cli",
) -> list[DeviceCredential]:
    """Upsert everything in the definition in one transaction; return new credentials.

    Audited in the same transaction (``registry.site.apply`` by ``actor``: device ids whose
    credentials were issued, counts; no names)."""
    site = definition["site"]
    site_id = str(_req(site, "id", "site"))
    creds: list[DeviceCredential] = []
    with conn.transaction():
        conn.execute(
            "INSERT INTO sites (site_id, name, kind, utc_offset_s) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (site_id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, "
            "utc_offset_s = EXCLUDED.utc_offset_s",
            (site_id, _req(site, "name", "site"), _req(site, "kind", "site"),
             int(site.get("utc_offset_s", DEFAULT_UTC_OFFSET_S_INT))),
        )  # fmt: skip
        for i, loc in enumerate(definition.get("locations", [])):
            w = f"locations[{i}]"
            conn.execute(
                "INSERT INTO locations (location_id, site_id, kind, label, address) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (location_id) DO UPDATE SET "
                "kind = EXCLUDED.kind, label = EXCLUDED.label, address = EXCLUDED.address",
                (_req(loc, "id", w), site_id, _req(loc, "kind", w), _req(loc, "label", w),
                 loc.get("address")),
            )  # fmt: skip
        for i, bed in enumerate(definition.get("beds", [])):
            w = f"beds[{i}]"
            conn.execute(
                "INSERT INTO beds (bed_id, bed_code, site_id, location_id) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (bed_id) DO UPDATE SET bed_code = EXCLUDED.bed_code, "
                "location_id = EXCLUDED.location_id",
                (_req(bed, "id", w), _req(bed, "code", w), site_id, _req(bed, "location", w)),
            )
        for i, res in enumerate(definition.get("residents", [])):
            w = f"residents[{i}]"
            conn.execute(
                "INSERT INTO residents (resident_id, elder_code, site_id, bed_id, display_name, "
                "care_level, lives_alone, high_risk, consent_family_health, "
                "consent_family_incidents) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (resident_id) DO UPDATE SET elder_code = EXCLUDED.elder_code, "
                "bed_id = EXCLUDED.bed_id, display_name = EXCLUDED.display_name, "
                "care_level = EXCLUDED.care_level, lives_alone = EXCLUDED.lives_alone, "
                "high_risk = EXCLUDED.high_risk, "
                "consent_family_health = EXCLUDED.consent_family_health, "
                "consent_family_incidents = EXCLUDED.consent_family_incidents",
                (_req(res, "id", w), _req(res, "code", w), site_id, res.get("bed"),
                 _req(res, "name", w), int(_req(res, "care_level", w)),
                 bool(res.get("lives_alone", False)), bool(res.get("high_risk", False)),
                 bool(res.get("consent_family_health", False)),
                 bool(res.get("consent_family_incidents", True))),
            )  # fmt: skip
        for i, dev in enumerate(definition.get("devices", [])):
            cred = _upsert_device(conn, site_id, dev, f"devices[{i}]", rotate_passwords)
            if cred is not None:
                creds.append(cred)
        for i, c in enumerate(definition.get("contacts", [])):
            w = f"contacts[{i}]"
            conn.execute(
                "INSERT INTO contacts (contact_id, resident_id, kind, display_name, relation, "
                "phone, email, channels, consent_notify, priority, wechat_openid) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s) "
                "ON CONFLICT (contact_id) DO UPDATE SET kind = EXCLUDED.kind, "
                "display_name = EXCLUDED.display_name, relation = EXCLUDED.relation, "
                "phone = EXCLUDED.phone, email = EXCLUDED.email, channels = EXCLUDED.channels, "
                "consent_notify = EXCLUDED.consent_notify, priority = EXCLUDED.priority, "
                "wechat_openid = EXCLUDED.wechat_openid",
                (_req(c, "id", w), _req(c, "resident", w), c.get("kind", "family"),
                 _req(c, "name", w), c.get("relation"), c.get("phone"), c.get("email"),
                 orjson.dumps(c.get("channels", [])).decode(),
                 bool(c.get("consent_notify", True)), int(c.get("priority", 1)),
                 c.get("wechat_openid")),
            )  # fmt: skip
        audit.append(conn, actor, "registry.site.apply", f"site:{site_id}", {
            "devices": len(definition.get("devices", [])),
            "residents": len(definition.get("residents", [])),
            "credentials_issued": [c.device_id for c in creds],
        })  # fmt: skip
    log.info(
        "site definition applied",
        extra={"site": site_id, "devices": len(definition.get("devices", [])),
               "new_credentials": len(creds)},
    )  # fmt: skip
    return creds


def _upsert_device(
    conn: psycopg.Connection[tuple[object, ...]],
    site_id: str,
    dev: Mapping[str, Any],
    where: str,
    rotate: bool,
) -> DeviceCredential | None:
    device_id = str(_req(dev, "id", where))
    bed, resident, location = dev.get("bed"), dev.get("resident"), dev.get("location")
    exists = conn.execute("SELECT 1 FROM devices WHERE device_id = %s", (device_id,)).fetchone()
    password = new_password() if (rotate or not exists) else None
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
        (device_id, site_id, _req(dev, "kind", where), _req(dev, "model", where),
         _req(dev, "serial", where), dev.get("firmware"), location, bed, resident,
         dev.get("heartbeat_interval_s"), hash_password(password or new_password()),
         password is not None),
    )  # fmt: skip
    if password is None:
        return None
    return DeviceCredential(device_id, site_id, str(dev["kind"]), password, bed, resident, location)


def device_accounts(conn: psycopg.Connection[tuple[object, ...]]) -> list[DeviceAccount]:
    """Broker accounts of every active device (for ``safehome broker sync``)."""
    rows = conn.execute(
        "SELECT device_id, site_id, mqtt_password_hash FROM devices WHERE active ORDER BY device_id"
    ).fetchall()
    return kit_accounts(conn, [DeviceAccount(str(d), str(s), str(h)) for d, s, h in rows])


def decommission_device(conn: psycopg.Connection[tuple[object, ...]], device_id: str) -> bool:
    cur = conn.execute(
        "UPDATE devices SET active = false, decommissioned_at = now() "
        "WHERE device_id = %s AND active",
        (device_id,),
    )
    return cur.rowcount == 1


def credentials_json(creds: Sequence[DeviceCredential]) -> list[dict[str, Any]]:
    return [
        {"id": c.device_id, "site": c.site_id, "kind": c.kind, "password": c.password,
         "bed": c.bed_id, "resident": c.resident_id, "location": c.location_id}
        for c in creds
    ]  # fmt: skip


# -- installer API: the device lifecycle ---------------------------------------------------

Conn = psycopg.Connection[Any]
ApplyBroker = Callable[[Conn], object]
KIND_PREFIX = {"button": "btn", "bed_sensor": "bed", "wearable": "wr", **kit.KIT_PREFIX}

_DEVICE_SQL = """
SELECT d.device_id, d.site_id, d.kind, d.model, d.serial, d.firmware, d.location_id,
       d.bed_id, b.bed_code, d.resident_id, r.elder_code, d.heartbeat_interval_s, d.active,
       d.commissioned_at, d.decommissioned_at, d.decommission_reason, d.replaced_by
FROM devices d
LEFT JOIN beds b ON b.bed_id = d.bed_id
LEFT JOIN residents r ON r.resident_id = d.resident_id
WHERE d.device_id = %s
"""


def find_device(conn: Conn, device_id: str) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_DEVICE_SQL, (device_id,)).fetchone()
    if row is None:
        raise not_found("device", device_id, "list the devices: safehome device list")
    return row


def _require_active(device: Mapping[str, Any]) -> None:
    if not device["active"]:
        raise conflict(f"device {device['device_id']!r} is decommissioned",
                       "register the replacement as a new device") from None  # fmt: skip


def default_device_id(kind: str, serial: str) -> str:
    """``<kind prefix>-<serial>`` with anything outside [A-Za-z0-9_-] turned into '-'."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "-", serial.strip())[:56]
    return f"{KIND_PREFIX[kind]}-{cleaned}"


def _end_tests(conn: Conn, device_id: str) -> None:
    """A device leaving service ends its unfinished acceptance test (aborted)."""
    conn.execute(
        "UPDATE acceptance_tests SET finished_at = now(), result = 'aborted' "
        "WHERE device_id = %s AND finished_at IS NULL",
        (device_id,),
    )


def register_device(
    conn: Conn,
    site_id: str,
    values: Mapping[str, Any],
    apply_broker: ApplyBroker,
    reserved: frozenset[str] = frozenset(),
) -> tuple[str, str]:
    """Create a device with a fresh password; return (device_id, password)."""
    kind = str(values["kind"])
    device_id = check_id(values.get("device_id") or default_device_id(kind, values["serial"]),
                         "device_id")  # fmt: skip
    if device_id in reserved:
        raise conflict(f"device id {device_id!r} is reserved for a gateway account",
                       "choose another device_id")  # fmt: skip
    password = new_password()
    with conn.transaction():
        taken = conn.execute(
            "SELECT device_id FROM devices WHERE device_id = %s OR (model = %s AND serial = %s)",
            (device_id, values["model"], values["serial"]),
        ).fetchone()
        if taken is not None:
            raise conflict(
                f"device {taken[0]!r} is already registered (same id, or same model and serial)",
                f"show it: safehome device show {taken[0]}",
            )
        conn.execute(
            "INSERT INTO devices (device_id, site_id, kind, model, serial, firmware, "
            "heartbeat_interval_s, mqtt_password_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (device_id, site_id, kind, values["model"], values["serial"], values.get("firmware"),
             values.get("heartbeat_interval_s"), hash_password(password)),
        )  # fmt: skip
        kit.attach(conn, device_id, kind, values.get("hub_id"))
        apply_broker(conn)
    log.info("device registered", extra={"device": device_id, "site": site_id, "kind": kind})
    return device_id, password


def rotate_device(conn: Conn, device_id: str, apply_broker: ApplyBroker) -> str:
    """A new password for an active device (the old one stops working); returned once."""
    password = new_password()
    with conn.transaction():
        device = find_device(conn, device_id)
        _require_active(device)
        conn.execute("UPDATE devices SET mqtt_password_hash = %s WHERE device_id = %s",
                     (hash_password(password), device_id))  # fmt: skip
        apply_broker(conn)
    log.info("device credentials rotated", extra={"device": device_id})
    return password


def decommission(conn: Conn, device_id: str, reason: str | None, apply_broker: ApplyBroker) -> None:
    """Take a device out of service: inactive, broker account removed (bindings kept)."""
    with conn.transaction():
        device = find_device(conn, device_id)
        _require_active(device)
        kit.check_retire(conn, device_id)
        decommission_device(conn, device_id)
        conn.execute("UPDATE devices SET decommission_reason = %s WHERE device_id = %s",
                     (reason, device_id))  # fmt: skip
        _end_tests(conn, device_id)
        apply_broker(conn)
    log.info("device decommissioned", extra={"device": device_id})


def bind_device(
    conn: Conn,
    device: Mapping[str, Any],
    bed_id: str | None,
    resident_id: str | None,
    location_id: str | None,
) -> None:
    """Bind an active device to a bed and/or resident (409 when bound elsewhere or taken)."""
    _require_active(device)
    dev, kind = device["device_id"], device["kind"]
    if bed_id is None and resident_id is None and location_id is None:
        raise invalid("nothing to bind to", "give a bed code, an elder code or a location")
    for have, want, what in ((device["bed_id"], bed_id, "bed_code"),
                             (device["resident_id"], resident_id, "elder_code")):  # fmt: skip
        if have is not None and want is not None and have != want:
            raise conflict(f"device {dev!r} is already bound to {device[what]}",
                           f"unbind it first: safehome device unbind {dev}")  # fmt: skip
    bed_id = bed_id or device["bed_id"]
    resident_id = resident_id or device["resident_id"]
    location_id = location_id or (None if bed_id != device["bed_id"] else device["location_id"])
    with conn.transaction():
        if bed_id is not None:
            other = conn.execute(
                "SELECT device_id FROM devices WHERE bed_id = %s AND kind = %s AND active "
                "AND device_id <> %s",
                (bed_id, kind, dev),
            ).fetchone()
            if other is not None:
                raise conflict(f"the bed already has a {kind}: {other[0]}",
                               f"unbind it first (safehome device unbind {other[0]}) or "
                               f"replace it (safehome device replace {other[0]} ...)")  # fmt: skip
            loc = conn.execute("SELECT location_id FROM beds WHERE bed_id = %s",
                               (bed_id,)).fetchone()  # fmt: skip
            location_id = location_id or (None if loc is None else str(loc[0]))
        if resident_id is not None:
            other = conn.execute(
                "SELECT device_id FROM devices WHERE resident_id = %s AND kind = %s AND active "
                "AND device_id <> %s",
                (resident_id, kind, dev),
            ).fetchone()
            if other is not None:
                raise conflict(f"the resident already has a {kind}: {other[0]}",
                               f"unbind it first: safehome device unbind {other[0]}")  # fmt: skip
        conn.execute(
            "UPDATE devices SET bed_id = %s, resident_id = %s, location_id = %s "
            "WHERE device_id = %s",
            (bed_id, resident_id, location_id, dev),
        )
    log.info("device bound", extra={"device": dev})


def unbind_device(conn: Conn, device: Mapping[str, Any]) -> None:
    conn.execute(
        "UPDATE devices SET bed_id = NULL, resident_id = NULL, location_id = NULL "
        "WHERE device_id = %s",
        (device["device_id"],),
    )
    log.info("device unbound", extra={"device": device["device_id"]})


def replace_device(
    conn: Conn,
    old_id: str,
    values: Mapping[str, Any],
    apply_broker: ApplyBroker,
    reserved: frozenset[str] = frozenset(),
) -> tuple[str, str]:
    """A new device of the same kind takes over the old one's binding; the old one leaves.

    Incidents are resident-centred (``incidents.resident_id``), so the resident's open
    incidents and history stay with the resident; the new device's detections join them.
    Returns (new device_id, its password).
    """
    password = new_password()
    with conn.transaction():
        old = find_device(conn, old_id)
        _require_active(old)
        kind = str(old["kind"])
        model = values.get("model") or old["model"]
        new_id = check_id(values.get("device_id") or default_device_id(kind, values["serial"]),
                          "device_id")  # fmt: skip
        if new_id in reserved:
            raise conflict(f"device id {new_id!r} is reserved", "choose another device_id")
        taken = conn.execute(
            "SELECT device_id FROM devices WHERE device_id = %s OR (model = %s AND serial = %s)",
            (new_id, model, values["serial"]),
        ).fetchone()
        if taken is not None:
            raise conflict(f"device {taken[0]!r} is already registered",
                           "a replacement must be a new device")  # fmt: skip
        decommission_device(conn, old_id)
        _end_tests(conn, old_id)
        conn.execute(
            "INSERT INTO devices (device_id, site_id, kind, model, serial, firmware, location_id, "
            "bed_id, resident_id, heartbeat_interval_s, mqtt_password_hash) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (new_id, old["site_id"], kind, model, values["serial"], values.get("firmware"),
             old["location_id"], old["bed_id"], old["resident_id"], old["heartbeat_interval_s"],
             hash_password(password)),
        )  # fmt: skip
        conn.execute(
            "UPDATE devices SET replaced_by = %s, decommission_reason = %s WHERE device_id = %s",
            (new_id, values.get("reason") or f"replaced by {new_id}", old_id),
        )
        kit.inherit(conn, old_id, new_id)
        apply_broker(conn)
    log.info("device replaced", extra={"device": old_id, "new_device": new_id})
    return new_id, password
