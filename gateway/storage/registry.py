"""The registry repository: sites, locations, beds, residents (and their contacts).

Functions take a psycopg connection (the caller owns the transaction) and return typed
models; a missing row is :class:`~gateway.errors.NotFoundError`, a clash with a unique key
:class:`~gateway.errors.ConflictError`. Checking codes and deciding what may change is the
callers' job (``gateway.registry_admin``, ``gateway.registry_import``,
``gateway.commissioning``); SQL is here only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel

from gateway.errors import ConflictError, NotFoundError

Conn = psycopg.Connection[Any]

BED_HINT = "check the code on the bed's label, or list the beds: safehome bed list"


def not_found(what: str, key: str, hint: str | None = None) -> NotFoundError:
    return NotFoundError(f"unknown {what} {key!r}", hint)


def one(conn: Conn, sql: str, params: Any) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.encode(), params).fetchone()


def rows(conn: Conn, sql: str, params: Any) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.encode(), params).fetchall()


def update(conn: Conn, table: str, key_col: str, key: str, changes: Mapping[str, Any]) -> None:
    """UPDATE ``table`` SET the given columns (names from our own models, never from input)."""
    if not changes:
        return
    sets = ", ".join(f"{col} = %({col})s" for col in changes)
    conn.execute(
        f"UPDATE {table} SET {sets} WHERE {key_col} = %(_key)s".encode(),  # noqa: S608
        {**changes, "_key": key},
    )


# -- models ----------------------------------------------------------------------------


class SiteCounts(BaseModel):
    locations: int
    beds: int
    residents: int
    devices: int


class Site(BaseModel):
    """A site with how many locations, beds, residents and active devices it has."""

    site_id: str
    name: str
    kind: str
    utc_offset_s: int
    created_at: datetime
    counts: SiteCounts


class Location(BaseModel):
    """A room (nursing home) or home (home care), with its number of beds."""

    location_id: str
    site_id: str
    kind: str
    label: str
    address: str | None
    created_at: datetime
    beds: int


class BedDevice(BaseModel):
    device_id: str
    kind: str
    model: str
    serial: str


class Bed(BaseModel):
    """A bed with its room and its resident (if any)."""

    bed_id: str
    bed_code: str
    site_id: str
    location_id: str
    location_label: str
    location_kind: str
    resident_id: str | None
    elder_code: str | None
    created_at: datetime


class BedRecord(Bed):
    """One bed with its active devices."""

    devices: list[BedDevice]


class ResidentDevice(BaseModel):
    device_id: str
    kind: str


class Resident(BaseModel):
    """A resident's registry record (no contacts, no health data)."""

    resident_id: str
    elder_code: str
    site_id: str
    display_name: str
    care_level: int
    status: str
    lives_alone: bool
    high_risk: bool
    consent_family_health: bool
    consent_family_incidents: bool
    bed_id: str | None
    bed_code: str | None
    location_id: str | None
    created_at: datetime


class ResidentRecord(Resident):
    """One resident's record with the active devices bound to them or their bed."""

    devices: list[ResidentDevice]


class BedKey(BaseModel):
    bed_id: str
    bed_code: str
    site_id: str


class ResidentKey(BaseModel):
    resident_id: str
    elder_code: str
    site_id: str
    bed_id: str | None


# -- sites -----------------------------------------------------------------------------

_SITE_SQL = """
SELECT s.site_id, s.name, s.kind, s.utc_offset_s, s.created_at,
       (SELECT count(*) FROM locations l WHERE l.site_id = s.site_id) AS locations,
       (SELECT count(*) FROM beds b WHERE b.site_id = s.site_id) AS beds,
       (SELECT count(*) FROM residents r WHERE r.site_id = s.site_id) AS residents,
       (SELECT count(*) FROM devices d WHERE d.site_id = s.site_id AND d.active) AS devices
FROM sites s
WHERE (%(site)s::text IS NULL OR s.site_id = %(site)s)
ORDER BY s.site_id
"""


def _site(row: dict[str, Any]) -> Site:
    counts = SiteCounts(**{k: int(row.pop(k)) for k in SiteCounts.model_fields})
    return Site(**row, counts=counts)


def list_sites(conn: Conn, site_id: str | None) -> list[Site]:
    return [_site(r) for r in rows(conn, _SITE_SQL, {"site": site_id})]


def get_site(conn: Conn, site_id: str) -> Site:
    found = rows(conn, _SITE_SQL, {"site": site_id})
    if not found:
        raise not_found("site", site_id, "list the sites you may see: safehome site list")
    return _site(found[0])


def insert_site(conn: Conn, site_id: str, name: str, kind: str, utc_offset_s: int) -> None:
    try:
        conn.execute(
            "INSERT INTO sites (site_id, name, kind, utc_offset_s) VALUES (%s, %s, %s, %s)",
            (site_id, name, kind, utc_offset_s),
        )
    except psycopg.errors.UniqueViolation:
        raise ConflictError(f"site {site_id!r} already exists",
                            f"show it: safehome site show {site_id}") from None  # fmt: skip


def update_site(conn: Conn, site_id: str, changes: Mapping[str, Any]) -> None:
    update(conn, "sites", "site_id", site_id, changes)


def upsert_site(conn: Conn, site_id: str, name: str, kind: str, utc_offset_s: int) -> None:
    conn.execute(
        "INSERT INTO sites (site_id, name, kind, utc_offset_s) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (site_id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, "
        "utc_offset_s = EXCLUDED.utc_offset_s",
        (site_id, name, kind, utc_offset_s),
    )


# -- locations -------------------------------------------------------------------------

_LOCATION_SQL = """
SELECT l.location_id, l.site_id, l.kind, l.label, l.address, l.created_at,
       (SELECT count(*) FROM beds b WHERE b.location_id = l.location_id) AS beds
FROM locations l
"""


def list_locations(conn: Conn, site_id: str) -> list[Location]:
    found = rows(conn, _LOCATION_SQL + "WHERE l.site_id = %s ORDER BY l.location_id", (site_id,))
    return [Location(**r) for r in found]


def find_location(conn: Conn, location_id: str) -> Location:
    row = one(conn, _LOCATION_SQL + "WHERE l.location_id = %s", (location_id,))
    if row is None:
        raise not_found("location", location_id, "list them: safehome location list")
    return Location(**row)


def location_sites(conn: Conn) -> dict[str, str]:
    """location_id -> site_id of every location."""
    return {r["location_id"]: r["site_id"] for r in rows(
        conn, "SELECT location_id, site_id FROM locations", ())}  # fmt: skip


def site_of_location(conn: Conn, location_id: str) -> str | None:
    row = one(conn, "SELECT site_id FROM locations WHERE location_id = %s", (location_id,))
    return None if row is None else str(row["site_id"])


def insert_location(
    conn: Conn, site_id: str, location_id: str, *, kind: str, label: str, address: str | None
) -> None:
    conn.execute(
        "INSERT INTO locations (location_id, site_id, kind, label, address) "
        "VALUES (%s, %s, %s, %s, %s)",
        (location_id, site_id, kind, label, address),
    )


def update_location(conn: Conn, location_id: str, changes: Mapping[str, Any]) -> None:
    update(conn, "locations", "location_id", location_id, changes)


def upsert_location(
    conn: Conn, site_id: str, location_id: str, *, kind: str, label: str, address: str | None
) -> None:
    conn.execute(
        "INSERT INTO locations (location_id, site_id, kind, label, address) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (location_id) DO UPDATE SET "
        "kind = EXCLUDED.kind, label = EXCLUDED.label, address = EXCLUDED.address",
        (location_id, site_id, kind, label, address),
    )


_CHANGE_PHONE = {
    "location": "UPDATE locations SET phone = %s WHERE location_id = %s "
                "AND phone IS DISTINCT FROM %s",
    "resident": "UPDATE residents SET phone = %s WHERE resident_id = %s "
                "AND phone IS DISTINCT FROM %s",
}  # fmt: skip


def change_phone(conn: Conn, what: str, ident: str, phone: str | None) -> bool:
    """Set (None: clear) the landline of location ``ident`` or the own phone of resident
    ``ident`` (``what``), after its upsert; True when the number changed. The caller checks
    the number (:func:`gateway.registry_rules.clean_phone`)."""
    return conn.execute(_CHANGE_PHONE[what], (phone, ident, phone)).rowcount > 0


def _by_id_or_code(
    conn: Conn, select: str, id_col: str, code_col: str, key: str
) -> dict[str, Any] | None:
    """The row of ``select`` whose id or code is ``key`` (an id match wins: a code may look
    like another object's id). The column names are this module's constants."""
    where = (f"WHERE {id_col} = %(k)s OR {code_col} = %(k)s "
             f"ORDER BY ({id_col} = %(k)s) DESC LIMIT 1")  # fmt: skip
    return one(conn, select + where, {"k": key})


# -- beds ------------------------------------------------------------------------------

_BED_SQL = """
SELECT b.bed_id, b.bed_code, b.site_id, b.location_id, l.label AS location_label,
       l.kind AS location_kind, r.resident_id, r.elder_code, b.created_at
FROM beds b
JOIN locations l ON l.location_id = b.location_id
LEFT JOIN residents r ON r.bed_id = b.bed_id
"""


def list_beds(conn: Conn, site_id: str) -> list[Bed]:
    found = rows(conn, _BED_SQL + "WHERE b.site_id = %s ORDER BY b.bed_code", (site_id,))
    return [Bed(**r) for r in found]


def find_bed(conn: Conn, key: str) -> BedRecord:
    """A bed by bed_id or bed_code (an id match wins), with its active devices."""
    row = _by_id_or_code(conn, _BED_SQL, "b.bed_id", "b.bed_code", key)
    if row is None:
        raise not_found("bed", key, BED_HINT)
    devices = rows(
        conn,
        "SELECT device_id, kind, model, serial FROM devices WHERE bed_id = %s AND active "
        "ORDER BY device_id",
        (row["bed_id"],),
    )
    return BedRecord(**row, devices=[BedDevice(**d) for d in devices])


def bed_site(conn: Conn, key: str) -> tuple[str, str] | None:
    """(bed_id, site_id) of the bed ``key`` (id or code; an id match wins), if any."""
    row = one(
        conn,
        "SELECT bed_id, site_id FROM beds WHERE bed_id = %(k)s OR bed_code = %(k)s "
        "ORDER BY (bed_id = %(k)s) DESC LIMIT 1",
        {"k": key},
    )
    return None if row is None else (str(row["bed_id"]), str(row["site_id"]))


def bed_taken(conn: Conn, bed_code: str, bed_id: str) -> bool:
    """Whether ``bed_code`` or ``bed_id`` is used by a bed."""
    return one(conn, "SELECT bed_id FROM beds WHERE bed_code = %s OR bed_id = %s",
               (bed_code, bed_id)) is not None  # fmt: skip


def bed_code_used_elsewhere(conn: Conn, bed_code: str, bed_id: str) -> bool:
    return one(conn, "SELECT bed_id FROM beds WHERE bed_code = %s AND bed_id <> %s",
               (bed_code, bed_id)) is not None  # fmt: skip


def bed_keys(conn: Conn) -> list[BedKey]:
    return [BedKey(**r) for r in rows(conn, "SELECT bed_id, bed_code, site_id FROM beds", ())]


def insert_bed(conn: Conn, site_id: str, bed_id: str, bed_code: str, location_id: str) -> None:
    conn.execute(
        "INSERT INTO beds (bed_id, bed_code, site_id, location_id) VALUES (%s, %s, %s, %s)",
        (bed_id, bed_code, site_id, location_id),
    )


def update_bed(conn: Conn, bed_id: str, changes: Mapping[str, Any]) -> None:
    update(conn, "beds", "bed_id", bed_id, changes)


def upsert_bed(conn: Conn, site_id: str, bed_id: str, bed_code: str, location_id: str) -> None:
    conn.execute(
        "INSERT INTO beds (bed_id, bed_code, site_id, location_id) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (bed_id) DO UPDATE SET bed_code = EXCLUDED.bed_code, "
        "location_id = EXCLUDED.location_id",
        (bed_id, bed_code, site_id, location_id),
    )


def bed_location(conn: Conn, bed_id: str) -> str | None:
    row = one(conn, "SELECT location_id FROM beds WHERE bed_id = %s", (bed_id,))
    return None if row is None else str(row["location_id"])


# -- residents -------------------------------------------------------------------------

_RESIDENT_SQL = """
SELECT r.resident_id, r.elder_code, r.site_id, r.display_name, r.care_level, r.status,
       r.lives_alone, r.high_risk, r.consent_family_health, r.consent_family_incidents,
       r.bed_id, b.bed_code, b.location_id, r.created_at
FROM residents r
LEFT JOIN beds b ON b.bed_id = r.bed_id
"""


def list_residents(conn: Conn, site_id: str) -> list[Resident]:
    found = rows(conn, _RESIDENT_SQL + "WHERE r.site_id = %s ORDER BY r.elder_code", (site_id,))
    return [Resident(**r) for r in found]


def find_resident(conn: Conn, key: str) -> ResidentRecord:
    """A resident by resident_id or elder_code (an id match wins), with devices bound."""
    row = _by_id_or_code(conn, _RESIDENT_SQL, "r.resident_id", "r.elder_code", key)
    if row is None:
        raise not_found("resident", key, "check the elder code, or list the residents: "
                        "safehome resident list")  # fmt: skip
    devices = rows(
        conn,
        "SELECT d.device_id, d.kind FROM devices d WHERE d.active AND "
        "(d.resident_id = %s OR (d.bed_id IS NOT NULL AND d.bed_id = %s)) ORDER BY d.device_id",
        (row["resident_id"], row["bed_id"]),
    )
    return ResidentRecord(**row, devices=[ResidentDevice(**d) for d in devices])


def resident_in_bed(conn: Conn, bed_id: str) -> tuple[str, str] | None:
    """(resident_id, elder_code) of the resident in ``bed_id``, if any."""
    row = one(conn, "SELECT resident_id, elder_code FROM residents WHERE bed_id = %s", (bed_id,))
    return None if row is None else (str(row["resident_id"]), str(row["elder_code"]))


def resident_taken(conn: Conn, elder_code: str, resident_id: str) -> bool:
    return one(conn, "SELECT resident_id FROM residents WHERE elder_code = %s "
               "OR resident_id = %s", (elder_code, resident_id)) is not None  # fmt: skip


def elder_code_used_elsewhere(conn: Conn, elder_code: str, resident_id: str) -> bool:
    return one(conn, "SELECT 1 AS x FROM residents WHERE elder_code = %s AND resident_id <> %s",
               (elder_code, resident_id)) is not None  # fmt: skip


def resident_keys(conn: Conn) -> list[ResidentKey]:
    found = rows(conn, "SELECT resident_id, elder_code, site_id, bed_id FROM residents", ())
    return [ResidentKey(**r) for r in found]


_INSERT_RESIDENT = (
    "INSERT INTO residents (resident_id, elder_code, site_id, bed_id, display_name, "
    "care_level, lives_alone, high_risk, consent_family_health, "
    "consent_family_incidents) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_UPSERT_RESIDENT = _INSERT_RESIDENT + (
    " ON CONFLICT (resident_id) DO UPDATE SET elder_code = EXCLUDED.elder_code, "
    "bed_id = EXCLUDED.bed_id, display_name = EXCLUDED.display_name, "
    "care_level = EXCLUDED.care_level, lives_alone = EXCLUDED.lives_alone, "
    "high_risk = EXCLUDED.high_risk, "
    "consent_family_health = EXCLUDED.consent_family_health, "
    "consent_family_incidents = EXCLUDED.consent_family_incidents"
)


def _resident_params(site_id: str, values: Mapping[str, Any]) -> tuple[Any, ...]:
    """The columns of a resident, the flags defaulting as in the schema."""
    return (values["resident_id"], values["elder_code"], site_id, values.get("bed_id"),
            values["display_name"], values["care_level"],
            bool(values.get("lives_alone", False)), bool(values.get("high_risk", False)),
            bool(values.get("consent_family_health", False)),
            bool(values.get("consent_family_incidents", True)))  # fmt: skip


def insert_resident(conn: Conn, site_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(_INSERT_RESIDENT.encode(), _resident_params(site_id, values))


def update_resident(conn: Conn, resident_id: str, changes: Mapping[str, Any]) -> None:
    update(conn, "residents", "resident_id", resident_id, changes)


def free_beds_of(conn: Conn, resident_ids: Sequence[str]) -> None:
    """Take the residents out of their beds (so that an import may swap beds)."""
    conn.execute("UPDATE residents SET bed_id = NULL WHERE resident_id = ANY(%s)",
                 (list(resident_ids),))  # fmt: skip


def upsert_resident(conn: Conn, site_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(_UPSERT_RESIDENT.encode(), _resident_params(site_id, values))


def upsert_contact(conn: Conn, values: Mapping[str, Any]) -> None:
    """Insert or update a contact of a resident (keyed by contact_id)."""
    conn.execute(
        "INSERT INTO contacts (contact_id, resident_id, kind, display_name, relation, "
        "phone, email, channels, consent_notify, priority, wechat_openid, language) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, COALESCE(%s, 'zh-CN')) "
        "ON CONFLICT (contact_id) DO UPDATE SET kind = EXCLUDED.kind, "
        "display_name = EXCLUDED.display_name, relation = EXCLUDED.relation, "
        "phone = EXCLUDED.phone, email = EXCLUDED.email, channels = EXCLUDED.channels, "
        "consent_notify = EXCLUDED.consent_notify, priority = EXCLUDED.priority, "
        "wechat_openid = EXCLUDED.wechat_openid, "
        "language = COALESCE(%s, contacts.language)",
        (values["contact_id"], values["resident_id"], values["kind"], values["display_name"],
         values.get("relation"), values.get("phone"), values.get("email"),
         orjson.dumps(values.get("channels", [])).decode(),
         bool(values.get("consent_notify", True)), int(values.get("priority", 1)),
         values.get("wechat_openid"), values.get("language"), values.get("language")),
    )  # fmt: skip
