"""Registry administration: sites, locations, beds, residents, devices, contacts.

Used by the installer's commissioning flow, the demo and the tests. A site definition (TOML,
see ``config/sites/demo.toml``) is applied idempotently: rows are upserted by id. A device
gets a fresh MQTT password when it is new or when rotation is asked for; the password is
returned once (for the installer to load onto the device) and only its hash is stored.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg

from gateway.brokerauth import DeviceAccount, hash_password, new_password

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
) -> list[DeviceCredential]:
    """Upsert everything in the definition in one transaction; return new credentials."""
    site = definition["site"]
    site_id = str(_req(site, "id", "site"))
    creds: list[DeviceCredential] = []
    with conn.transaction():
        conn.execute(
            "INSERT INTO sites (site_id, name, kind, utc_offset_s) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (site_id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, "
            "utc_offset_s = EXCLUDED.utc_offset_s",
            (site_id, _req(site, "name", "site"), _req(site, "kind", "site"),
             int(site.get("utc_offset_s", 28800))),
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
                "phone, email, channels, consent_notify, priority) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s) "
                "ON CONFLICT (contact_id) DO UPDATE SET kind = EXCLUDED.kind, "
                "display_name = EXCLUDED.display_name, relation = EXCLUDED.relation, "
                "phone = EXCLUDED.phone, email = EXCLUDED.email, channels = EXCLUDED.channels, "
                "consent_notify = EXCLUDED.consent_notify, priority = EXCLUDED.priority",
                (_req(c, "id", w), _req(c, "resident", w), c.get("kind", "family"),
                 _req(c, "name", w), c.get("relation"), c.get("phone"), c.get("email"),
                 orjson.dumps(c.get("channels", [])).decode(),
                 bool(c.get("consent_notify", True)), int(c.get("priority", 1))),
            )  # fmt: skip
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
    return [DeviceAccount(str(d), str(s), str(h)) for d, s, h in rows]


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
