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

import psycopg

from gateway import audit
from gateway.brokerauth import DeviceAccount, hash_password, new_password
from gateway.errors import ConflictError, InvalidError
from gateway.facts import DEFAULT_UTC_OFFSET_S_INT
from gateway.kit import hubs as kit
from gateway.kit.hubs import kit_accounts
from gateway.registry_rules import check_id, clean_phone
from gateway.storage import acceptance as tests_repo
from gateway.storage import devices as repo
from gateway.storage import registry as registry_repo

log = logging.getLogger(__name__)


class CommissioningError(InvalidError, ValueError):
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
    phone_changed: list[str] = []  # "location:ID" / "resident:ID" (never the number)
    with conn.transaction():
        registry_repo.upsert_site(
            conn, site_id, _req(site, "name", "site"), _req(site, "kind", "site"),
            int(site.get("utc_offset_s", DEFAULT_UTC_OFFSET_S_INT)),
        )  # fmt: skip
        for i, loc in enumerate(definition.get("locations", [])):
            w = f"locations[{i}]"
            registry_repo.upsert_location(
                conn, site_id, _req(loc, "id", w), kind=_req(loc, "kind", w),
                label=_req(loc, "label", w), address=loc.get("address"),
            )  # fmt: skip
            _phone(conn, "location", str(loc["id"]), loc, w, changed=phone_changed)
        for i, bed in enumerate(definition.get("beds", [])):
            w = f"beds[{i}]"
            registry_repo.upsert_bed(conn, site_id, _req(bed, "id", w), _req(bed, "code", w),
                                     _req(bed, "location", w))  # fmt: skip
        for i, res in enumerate(definition.get("residents", [])):
            w = f"residents[{i}]"
            registry_repo.upsert_resident(conn, site_id, {
                "resident_id": _req(res, "id", w), "elder_code": _req(res, "code", w),
                "bed_id": res.get("bed"), "display_name": _req(res, "name", w),
                "care_level": int(_req(res, "care_level", w)),
                "lives_alone": res.get("lives_alone", False),
                "high_risk": res.get("high_risk", False),
                "consent_family_health": res.get("consent_family_health", False),
                "consent_family_incidents": res.get("consent_family_incidents", True),
            })  # fmt: skip
            _phone(conn, "resident", str(res["id"]), res, w, changed=phone_changed)
        for i, dev in enumerate(definition.get("devices", [])):
            cred = _upsert_device(conn, site_id, dev, f"devices[{i}]", rotate_passwords)
            if cred is not None:
                creds.append(cred)
        for i, c in enumerate(definition.get("contacts", [])):
            w = f"contacts[{i}]"
            registry_repo.upsert_contact(conn, {
                "contact_id": _req(c, "id", w), "resident_id": _req(c, "resident", w),
                "kind": c.get("kind", "family"), "display_name": _req(c, "name", w),
                "relation": c.get("relation"), "phone": c.get("phone"), "email": c.get("email"),
                "channels": c.get("channels", []), "consent_notify": c.get("consent_notify", True),
                "priority": c.get("priority", 1), "wechat_openid": c.get("wechat_openid"),
                "language": c.get("language"),  # zh-CN (default) or en
            })  # fmt: skip
        audit.append(conn, actor, "registry.site.apply", f"site:{site_id}", {
            "devices": len(definition.get("devices", [])),
            "residents": len(definition.get("residents", [])),
            "credentials_issued": [c.device_id for c in creds],
            "phone_changed": phone_changed,
        })  # fmt: skip
    log.info(
        "site definition applied",
        extra={"site": site_id, "devices": len(definition.get("devices", [])),
               "new_credentials": len(creds), "phones_changed": len(phone_changed)},
    )  # fmt: skip
    return creds


def _phone(
    conn: psycopg.Connection[tuple[object, ...]],
    what: str,
    ident: str,
    entry: Mapping[str, Any],
    where: str,
    *,
    changed: list[str],
) -> None:
    """An entry's optional ``phone`` (click-to-call, docs/telephony.md): left out keeps the
    number, ``""`` clears it; checked like ``safehome user resident-phone``."""
    if "phone" not in entry:
        return
    if not isinstance(entry["phone"], str):
        raise CommissioningError(f"{where}: 'phone' must be a quoted string")
    try:
        phone = clean_phone(entry["phone"])
    except InvalidError as exc:
        raise CommissioningError(f"{where}: 'phone' is {exc.detail}") from None
    if registry_repo.change_phone(conn, what, ident, phone):
        changed.append(f"{what}:{ident}")


def _upsert_device(
    conn: psycopg.Connection[tuple[object, ...]],
    site_id: str,
    dev: Mapping[str, Any],
    where: str,
    rotate: bool,
) -> DeviceCredential | None:
    device_id = str(_req(dev, "id", where))
    bed, resident, location = dev.get("bed"), dev.get("resident"), dev.get("location")
    exists = repo.exists(conn, device_id)
    password = new_password() if (rotate or not exists) else None
    repo.upsert(
        conn, site_id,
        {"device_id": device_id, "kind": _req(dev, "kind", where),
         "model": _req(dev, "model", where), "serial": _req(dev, "serial", where),
         "firmware": dev.get("firmware"), "location_id": location, "bed_id": bed,
         "resident_id": resident, "heartbeat_interval_s": dev.get("heartbeat_interval_s")},
        hash_password(password or new_password()), password is not None,
    )  # fmt: skip
    if password is None:
        return None
    return DeviceCredential(device_id, site_id, str(dev["kind"]), password, bed, resident, location)


def device_accounts(conn: psycopg.Connection[Any]) -> list[DeviceAccount]:
    """Broker accounts of every active device (for ``safehome broker sync``)."""
    return kit_accounts(conn, repo.device_accounts(conn))


def decommission_device(conn: psycopg.Connection[Any], device_id: str) -> bool:
    return repo.deactivate(conn, device_id)


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
SEVERAL_PER_HOME = frozenset({"motion_sensor", "door_contact"})
"""Kinds a bed or resident may have several of (a PIR per room, a front and a back door):
the home-activity model takes any of them as activity and tracks each door. Every other
kind stays one per bed and per resident: the analysis keeps one wearable and one bed sensor
slot per resident, and a second button, hub or detector has not been needed."""


def find_device(conn: Conn, device_id: str) -> dict[str, Any]:
    return repo.find_device(conn, device_id).model_dump()


def _require_active(device: Mapping[str, Any]) -> None:
    if not device["active"]:
        raise ConflictError(f"device {device['device_id']!r} is decommissioned",
                       "register the replacement as a new device") from None  # fmt: skip


def default_device_id(kind: str, serial: str) -> str:
    """``<kind prefix>-<serial>`` with anything outside [A-Za-z0-9_-] turned into '-'."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "-", serial.strip())[:56]
    return f"{KIND_PREFIX[kind]}-{cleaned}"


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
        raise ConflictError(f"device id {device_id!r} is reserved for a gateway account",
                       "choose another device_id")  # fmt: skip
    password = new_password()
    with conn.transaction():
        taken = repo.taken_by(conn, device_id, values["model"], values["serial"])
        if taken is not None:
            raise ConflictError(
                f"device {taken!r} is already registered (same id, or same model and serial)",
                f"show it: safehome device show {taken}",
            )
        repo.insert(
            conn, site_id,
            {"device_id": device_id, "kind": kind, "model": values["model"],
             "serial": values["serial"], "firmware": values.get("firmware"),
             "heartbeat_interval_s": values.get("heartbeat_interval_s")},
            hash_password(password),
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
        repo.set_password_hash(conn, device_id, hash_password(password))
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
        repo.set_decommission_reason(conn, device_id, reason)
        tests_repo.abort_running(conn, device_id)
        apply_broker(conn)
    log.info("device decommissioned", extra={"device": device_id})


def bind_device(
    conn: Conn,
    device: Mapping[str, Any],
    bed_id: str | None,
    resident_id: str | None,
    location_id: str | None,
) -> None:
    """Bind an active device to a bed and/or resident (409 when bound elsewhere, or when the
    bed or resident already has a device of its kind, except :data:`SEVERAL_PER_HOME`)."""
    _require_active(device)
    dev, kind = device["device_id"], device["kind"]
    if bed_id is None and resident_id is None and location_id is None:
        raise InvalidError("nothing to bind to", "give a bed code, an elder code or a location")
    for have, want, what in ((device["bed_id"], bed_id, "bed_code"),
                             (device["resident_id"], resident_id, "elder_code")):  # fmt: skip
        if have is not None and want is not None and have != want:
            raise ConflictError(f"device {dev!r} is already bound to {device[what]}",
                           f"unbind it first: safehome device unbind {dev}")  # fmt: skip
    bed_id = bed_id or device["bed_id"]
    resident_id = resident_id or device["resident_id"]
    location_id = location_id or (None if bed_id != device["bed_id"] else device["location_id"])
    several = kind in SEVERAL_PER_HOME
    with conn.transaction():
        if bed_id is not None:
            other = None if several else repo.holder_of_kind(conn, "bed_id", bed_id, kind, dev)
            if other is not None:
                raise ConflictError(
                    f"the bed already has a {kind}: {other}",
                    f"unbind it first (safehome device unbind {other}) or "
                    f"replace it (safehome device replace {other} ...)",
                )
            location_id = location_id or registry_repo.bed_location(conn, bed_id)
        if resident_id is not None and not several:
            other = repo.holder_of_kind(conn, "resident_id", resident_id, kind, dev)
            if other is not None:
                raise ConflictError(f"the resident already has a {kind}: {other}",
                                    f"unbind it first: safehome device unbind {other}")  # fmt: skip
        repo.set_binding(conn, dev, bed_id, resident_id, location_id)
    log.info("device bound", extra={"device": dev})


def unbind_device(conn: Conn, device: Mapping[str, Any]) -> None:
    repo.set_binding(conn, device["device_id"], None, None, None)
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
            raise ConflictError(f"device id {new_id!r} is reserved", "choose another device_id")
        taken = repo.taken_by(conn, new_id, model, values["serial"])
        if taken is not None:
            raise ConflictError(f"device {taken!r} is already registered",
                                "a replacement must be a new device")  # fmt: skip
        decommission_device(conn, old_id)
        tests_repo.abort_running(conn, old_id)
        repo.insert(
            conn, str(old["site_id"]),
            {"device_id": new_id, "kind": kind, "model": model, "serial": values["serial"],
             "firmware": values.get("firmware"), "location_id": old["location_id"],
             "bed_id": old["bed_id"], "resident_id": old["resident_id"],
             "heartbeat_interval_s": old["heartbeat_interval_s"]},
            hash_password(password),
        )  # fmt: skip
        repo.set_decommission_reason(conn, old_id, values.get("reason") or f"replaced by {new_id}",
                                     replaced_by=new_id)  # fmt: skip
        kit.inherit(conn, old_id, new_id)
        apply_broker(conn)
    log.info("device replaced", extra={"device": old_id, "new_device": new_id})
    return new_id, password
