"""Registry administration for installers: sites, locations, beds, residents and CSV import.

The API's installer routes (``gateway.api.routes_registry``) call these functions with a
pooled autocommit connection; each change runs in its own transaction. Problems are raised
as :class:`RegistryError` with an HTTP status, a ``detail`` and, where the user can do
something about it, a ``hint`` (the API returns both).

Codes follow 一人一床一码: every bed has a bed code and every resident an elder code,
both matching :data:`CODE_PATTERN`, unique across the whole registry. Site scoping (an
installer sees only their own site) is the routes' job; functions here take the site.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$"
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_CODE = re.compile(CODE_PATTERN)
_ID = re.compile(ID_PATTERN)
Conn = psycopg.Connection[Any]


class RegistryError(Exception):
    """A registry request that cannot be done: HTTP ``status``, ``detail``, optional ``hint``."""

    def __init__(self, status: int, detail: str, hint: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.hint = hint


def not_found(what: str, key: str, hint: str | None = None) -> RegistryError:
    return RegistryError(404, f"unknown {what} {key!r}", hint)


def conflict(detail: str, hint: str | None = None) -> RegistryError:
    return RegistryError(409, detail, hint)


def invalid(detail: str, hint: str | None = None) -> RegistryError:
    return RegistryError(422, detail, hint)


def check_code(value: str, what: str) -> str:
    if not _CODE.fullmatch(value):
        raise invalid(
            f"{what} {value!r} is not a valid code",
            "codes are 3-64 characters: letters, digits, '-' or '_', starting with a letter "
            "or digit",
        )
    return value


def check_id(value: str, what: str) -> str:
    if not _ID.fullmatch(value):
        raise invalid(f"{what} {value!r} must match [A-Za-z0-9_-]{{1,64}}")
    return value


def _one(conn: Conn, sql: str, params: Any) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.encode(), params).fetchone()


def _all(conn: Conn, sql: str, params: Any) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.encode(), params).fetchall()


def _update(conn: Conn, table: str, key_col: str, key: str, changes: Mapping[str, Any]) -> None:
    """UPDATE ``table`` SET the given columns (names from our own models, never from input)."""
    if not changes:
        return
    sets = ", ".join(f"{col} = %({col})s" for col in changes)
    conn.execute(
        f"UPDATE {table} SET {sets} WHERE {key_col} = %(_key)s".encode(),  # noqa: S608
        {**changes, "_key": key},
    )


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


def _site_json(row: dict[str, Any]) -> dict[str, Any]:
    counts = {k: int(row.pop(k)) for k in ("locations", "beds", "residents", "devices")}
    return {**row, "counts": counts}


def list_sites(conn: Conn, site_id: str | None) -> list[dict[str, Any]]:
    return [_site_json(r) for r in _all(conn, _SITE_SQL, {"site": site_id})]


def get_site(conn: Conn, site_id: str) -> dict[str, Any]:
    rows = _all(conn, _SITE_SQL, {"site": site_id})
    if not rows:
        raise not_found("site", site_id, "list the sites you may see: safehome site list")
    return _site_json(rows[0])


def create_site(conn: Conn, site_id: str, name: str, kind: str, utc_offset_s: int) -> None:
    check_id(site_id, "site_id")
    try:
        conn.execute(
            "INSERT INTO sites (site_id, name, kind, utc_offset_s) VALUES (%s, %s, %s, %s)",
            (site_id, name, kind, utc_offset_s),
        )
    except psycopg.errors.UniqueViolation:
        raise conflict(f"site {site_id!r} already exists",
                       f"show it: safehome site show {site_id}") from None  # fmt: skip


def patch_site(conn: Conn, site_id: str, changes: Mapping[str, Any]) -> None:
    _update(conn, "sites", "site_id", site_id, changes)


# -- locations -------------------------------------------------------------------------

_LOCATION_SQL = """
SELECT l.location_id, l.site_id, l.kind, l.label, l.address, l.created_at,
       (SELECT count(*) FROM beds b WHERE b.location_id = l.location_id) AS beds
FROM locations l
"""


def list_locations(conn: Conn, site_id: str) -> list[dict[str, Any]]:
    return _all(conn, _LOCATION_SQL + "WHERE l.site_id = %s ORDER BY l.location_id", (site_id,))


def find_location(conn: Conn, location_id: str) -> dict[str, Any]:
    row = _one(conn, _LOCATION_SQL + "WHERE l.location_id = %s", (location_id,))
    if row is None:
        raise not_found("location", location_id, "list them: safehome location list")
    return row


def create_location(
    conn: Conn, site_id: str, location_id: str, *, kind: str, label: str, address: str | None
) -> None:
    check_id(location_id, "location_id")
    try:
        conn.execute(
            "INSERT INTO locations (location_id, site_id, kind, label, address) "
            "VALUES (%s, %s, %s, %s, %s)",
            (location_id, site_id, kind, label, address),
        )
    except psycopg.errors.UniqueViolation:
        raise conflict(f"location {location_id!r} already exists",
                       "choose another location_id, or edit it with PATCH") from None  # fmt: skip


def patch_location(conn: Conn, location_id: str, changes: Mapping[str, Any]) -> None:
    _update(conn, "locations", "location_id", location_id, changes)


# -- beds ------------------------------------------------------------------------------

_BED_SQL = """
SELECT b.bed_id, b.bed_code, b.site_id, b.location_id, l.label AS location_label,
       l.kind AS location_kind, r.resident_id, r.elder_code, b.created_at
FROM beds b
JOIN locations l ON l.location_id = b.location_id
LEFT JOIN residents r ON r.bed_id = b.bed_id
"""


def list_beds(conn: Conn, site_id: str) -> list[dict[str, Any]]:
    return _all(conn, _BED_SQL + "WHERE b.site_id = %s ORDER BY b.bed_code", (site_id,))


def find_bed(conn: Conn, key: str) -> dict[str, Any]:
    """A bed by bed_id or bed_code (an id match wins), with its active devices."""
    row = _one(
        conn,
        _BED_SQL + "WHERE b.bed_id = %(k)s OR b.bed_code = %(k)s "
        "ORDER BY (b.bed_id = %(k)s) DESC LIMIT 1",
        {"k": key},
    )
    if row is None:
        raise not_found("bed", key, "check the code on the bed's label, or list the beds: "
                        "safehome bed list")  # fmt: skip
    row["devices"] = _all(
        conn,
        "SELECT device_id, kind, model, serial FROM devices WHERE bed_id = %s AND active "
        "ORDER BY device_id",
        (row["bed_id"],),
    )
    return row


def _location_of_site(conn: Conn, site_id: str, location_id: str) -> None:
    row = _one(conn, "SELECT site_id FROM locations WHERE location_id = %s", (location_id,))
    if row is None or row["site_id"] != site_id:
        raise not_found("location", location_id,
                        f"create it first: safehome location create {location_id} ...")  # fmt: skip


def create_bed(
    conn: Conn, site_id: str, bed_code: str, location_id: str, bed_id: str | None
) -> str:
    check_code(bed_code, "bed_code")
    bid = check_id(bed_id or bed_code, "bed_id")
    with conn.transaction():
        _location_of_site(conn, site_id, location_id)
        taken = _one(conn, "SELECT bed_id FROM beds WHERE bed_code = %s OR bed_id = %s",
                     (bed_code, bid))  # fmt: skip
        if taken is not None:
            raise conflict(f"bed code {bed_code!r} or bed id {bid!r} is already in use",
                           f"show it: safehome bed show {bed_code}")  # fmt: skip
        conn.execute(
            "INSERT INTO beds (bed_id, bed_code, site_id, location_id) VALUES (%s, %s, %s, %s)",
            (bid, bed_code, site_id, location_id),
        )
    return bid


def patch_bed(conn: Conn, bed: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
    with conn.transaction():
        if "bed_code" in changes:
            check_code(changes["bed_code"], "bed_code")
            other = _one(conn, "SELECT bed_id FROM beds WHERE bed_code = %s AND bed_id <> %s",
                         (changes["bed_code"], bed["bed_id"]))  # fmt: skip
            if other is not None:
                raise conflict(f"bed code {changes['bed_code']!r} is already in use")
        if "location_id" in changes:
            _location_of_site(conn, bed["site_id"], changes["location_id"])
        _update(conn, "beds", "bed_id", bed["bed_id"], changes)


# -- residents -------------------------------------------------------------------------

_RESIDENT_SQL = """
SELECT r.resident_id, r.elder_code, r.site_id, r.display_name, r.care_level, r.status,
       r.lives_alone, r.high_risk, r.consent_family_health, r.consent_family_incidents,
       r.bed_id, b.bed_code, b.location_id, r.created_at
FROM residents r
LEFT JOIN beds b ON b.bed_id = r.bed_id
"""


def list_residents(conn: Conn, site_id: str) -> list[dict[str, Any]]:
    return _all(conn, _RESIDENT_SQL + "WHERE r.site_id = %s ORDER BY r.elder_code", (site_id,))


def find_resident(conn: Conn, key: str) -> dict[str, Any]:
    """A resident by resident_id or elder_code (an id match wins), with devices bound."""
    row = _one(
        conn,
        _RESIDENT_SQL + "WHERE r.resident_id = %(k)s OR r.elder_code = %(k)s "
        "ORDER BY (r.resident_id = %(k)s) DESC LIMIT 1",
        {"k": key},
    )
    if row is None:
        raise not_found("resident", key, "check the elder code, or list the residents: "
                        "safehome resident list")  # fmt: skip
    row["devices"] = _all(
        conn,
        "SELECT d.device_id, d.kind FROM devices d WHERE d.active AND "
        "(d.resident_id = %s OR (d.bed_id IS NOT NULL AND d.bed_id = %s)) ORDER BY d.device_id",
        (row["resident_id"], row["bed_id"]),
    )
    return row


def resolve_bed(conn: Conn, site_id: str, key: str) -> str:
    """The bed_id of bed ``key`` (id or code) at ``site_id``; 404 with a hint otherwise."""
    row = _one(
        conn,
        "SELECT bed_id, site_id FROM beds WHERE bed_id = %(k)s OR bed_code = %(k)s "
        "ORDER BY (bed_id = %(k)s) DESC LIMIT 1",
        {"k": key},
    )
    if row is None or row["site_id"] != site_id:
        raise not_found("bed", key, "check the code on the bed's label, or list the beds: "
                        "safehome bed list")  # fmt: skip
    return str(row["bed_id"])


def _bed_free(conn: Conn, bed_id: str, resident_id: str | None) -> None:
    row = _one(conn, "SELECT resident_id, elder_code FROM residents WHERE bed_id = %s", (bed_id,))
    if row is not None and row["resident_id"] != resident_id:
        raise conflict(
            f"bed {bed_id!r} is already assigned to resident {row['elder_code']}",
            f"move that resident first: safehome resident edit {row['elder_code']} --bed ...",
        )


def create_resident(conn: Conn, site_id: str, values: Mapping[str, Any]) -> str:
    elder_code = check_code(str(values["elder_code"]), "elder_code")
    rid = check_id(str(values.get("resident_id") or elder_code), "resident_id")
    with conn.transaction():
        taken = _one(conn, "SELECT resident_id FROM residents WHERE elder_code = %s "
                     "OR resident_id = %s", (elder_code, rid))  # fmt: skip
        if taken is not None:
            raise conflict(f"elder code {elder_code!r} or resident id {rid!r} is already in use",
                           f"show it: safehome resident show {elder_code}")  # fmt: skip
        bed_id = None
        if values.get("bed"):
            bed_id = resolve_bed(conn, site_id, str(values["bed"]))
            _bed_free(conn, bed_id, None)
        conn.execute(
            "INSERT INTO residents (resident_id, elder_code, site_id, bed_id, display_name, "
            "care_level, lives_alone, high_risk, consent_family_health, "
            "consent_family_incidents) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (rid, elder_code, site_id, bed_id, values["display_name"], values["care_level"],
             bool(values.get("lives_alone", False)), bool(values.get("high_risk", False)),
             bool(values.get("consent_family_health", False)),
             bool(values.get("consent_family_incidents", True))),
        )  # fmt: skip
    return rid


def patch_resident(conn: Conn, resident: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
    cols = dict(changes)
    with conn.transaction():
        if "elder_code" in cols:
            check_code(cols["elder_code"], "elder_code")
            other = _one(
                conn,
                "SELECT 1 AS x FROM residents WHERE elder_code = %s AND resident_id <> %s",
                (cols["elder_code"], resident["resident_id"]),
            )
            if other is not None:
                raise conflict(f"elder code {cols['elder_code']!r} is already in use")
        if "bed" in cols:
            key = cols.pop("bed")
            bed_id = None if key is None else resolve_bed(conn, resident["site_id"], str(key))
            if bed_id is not None:
                _bed_free(conn, bed_id, str(resident["resident_id"]))
            cols["bed_id"] = bed_id
        _update(conn, "residents", "resident_id", resident["resident_id"], cols)


# -- bulk import -----------------------------------------------------------------------

IMPORT_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # kind: (required columns, optional columns)
    "locations": (("location_id", "kind", "label"), ("address",)),
    "beds": (("bed_code", "location_id"), ("bed_id",)),
    "residents": (
        ("elder_code", "display_name", "care_level", "bed_code"),
        ("resident_id", "lives_alone", "high_risk"),
    ),
}
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"", "0", "false", "no", "n", "f"}


@dataclass
class RowError:
    line: int
    message: str
    column: str | None = None

    def json(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "message": self.message}


@dataclass
class ImportResult:
    dry_run: bool
    rows: int = 0
    created: int = 0
    updated: int = 0
    errors: list[RowError] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "rows": self.rows, "created": self.created,
                "updated": self.updated, "errors": [e.json() for e in self.errors]}  # fmt: skip


def _bool(value: str) -> bool | None:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return None


class _Importer:
    """Validates every row (collecting all errors), then applies them in one transaction."""

    def __init__(self, conn: Conn, site_id: str, kind: str) -> None:
        self.conn = conn
        self.site_id = site_id
        self.kind = kind
        self.errors: list[RowError] = []
        self.ops: list[tuple[str, dict[str, Any]]] = []  # ("insert"|"update", values)

    def err(self, line: int, message: str, column: str | None = None) -> None:
        self.errors.append(RowError(line, message, column))

    def code(self, line: int, row: Mapping[str, str], col: str) -> str | None:
        value = row[col]
        if not _CODE.fullmatch(value):
            self.err(line, f"{value!r} is not a valid code (3-64 of A-Z a-z 0-9 - _)", col)
            return None
        return value

    def ident(self, line: int, row: Mapping[str, str], col: str) -> str | None:
        value = row[col]
        if not _ID.fullmatch(value):
            self.err(line, f"{value!r} must match [A-Za-z0-9_-]{{1,64}}", col)
            return None
        return value

    def run(self, rows: list[tuple[int, dict[str, str]]]) -> None:
        getattr(self, f"_{self.kind}")(rows)

    def _locations(self, rows: list[tuple[int, dict[str, str]]]) -> None:
        existing = {r["location_id"]: r["site_id"] for r in _all(
            self.conn, "SELECT location_id, site_id FROM locations", ())}  # fmt: skip
        seen: dict[str, int] = {}
        for line, row in rows:
            lid = self.ident(line, row, "location_id")
            kind = row["kind"].strip()
            if kind not in ("room", "home"):
                self.err(line, f"kind {kind!r} must be 'room' or 'home'", "kind")
            if not row["label"].strip():
                self.err(line, "label is empty", "label")
            if lid is None:
                continue
            if lid in seen:
                self.err(line, f"location_id {lid!r} repeats line {seen[lid]}", "location_id")
                continue
            seen[lid] = line
            if lid in existing and existing[lid] != self.site_id:
                self.err(line, f"location_id {lid!r} belongs to another site", "location_id")
                continue
            values = {"location_id": lid, "kind": kind, "label": row["label"].strip(),
                      "address": row.get("address", "").strip() or None}  # fmt: skip
            self.ops.append(("update" if lid in existing else "insert", values))

    def _beds(self, rows: list[tuple[int, dict[str, str]]]) -> None:
        beds = _all(self.conn, "SELECT bed_id, bed_code, site_id FROM beds", ())
        by_code = {b["bed_code"]: b for b in beds}
        by_id = {b["bed_id"]: b for b in beds}
        locations = {r["location_id"]: r["site_id"] for r in _all(
            self.conn, "SELECT location_id, site_id FROM locations", ())}  # fmt: skip
        seen_codes: dict[str, int] = {}
        seen_ids: dict[str, int] = {}
        for line, row in rows:
            code = self.code(line, row, "bed_code")
            bed_id = row.get("bed_id", "").strip() or (code or "")
            if row.get("bed_id", "").strip():
                bed_id = self.ident(line, row, "bed_id") or ""
            loc = row["location_id"].strip()
            if locations.get(loc) != self.site_id:
                self.err(line, f"unknown location {loc!r} at this site (import locations "
                         "first)", "location_id")  # fmt: skip
            if code is None or not bed_id:
                continue
            if code in seen_codes:
                self.err(line, f"bed_code {code!r} repeats line {seen_codes[code]}", "bed_code")
                continue
            if bed_id in seen_ids:
                self.err(line, f"bed_id {bed_id!r} repeats line {seen_ids[bed_id]}", "bed_id")
                continue
            seen_codes[code], seen_ids[bed_id] = line, line
            current = by_code.get(code)
            if current is not None and current["site_id"] != self.site_id:
                self.err(line, f"bed_code {code!r} belongs to another site", "bed_code")
                continue
            if current is not None and current["bed_id"] != bed_id:
                self.err(line, f"bed_code {code!r} is bed {current['bed_id']!r}, not "
                         f"{bed_id!r}", "bed_id")  # fmt: skip
                continue
            if current is None and bed_id in by_id:
                self.err(line, f"bed_id {bed_id!r} is already used by bed code "
                         f"{by_id[bed_id]['bed_code']!r}", "bed_id")  # fmt: skip
                continue
            if locations.get(loc) != self.site_id:
                continue
            values = {"bed_id": bed_id, "bed_code": code, "location_id": loc}
            self.ops.append(("update" if current is not None else "insert", values))

    def _residents(self, rows: list[tuple[int, dict[str, str]]]) -> None:
        residents = _all(self.conn, "SELECT resident_id, elder_code, site_id, bed_id "
                         "FROM residents", ())  # fmt: skip
        by_code = {r["elder_code"]: r for r in residents}
        by_id = {r["resident_id"]: r for r in residents}
        bed_holder = {r["bed_id"]: r["resident_id"] for r in residents if r["bed_id"]}
        beds = {b["bed_code"]: b for b in _all(
            self.conn, "SELECT bed_id, bed_code, site_id FROM beds", ())}  # fmt: skip
        seen_codes: dict[str, int] = {}
        seen_beds: dict[str, int] = {}
        # Residents named in this file get their beds re-assigned by it (see apply).
        file_codes = {row["elder_code"] for _, row in rows}
        for line, row in rows:
            code = self.code(line, row, "elder_code")
            rid = code
            if row.get("resident_id", "").strip():
                rid = self.ident(line, row, "resident_id")
            name = row["display_name"].strip()
            if not name:
                self.err(line, "display_name is empty", "display_name")
            level = int(row["care_level"]) if row["care_level"].isdigit() else -1
            if not 0 <= level <= 5:
                self.err(line, f"care_level {row['care_level']!r} must be 0-5", "care_level")
            flags: dict[str, bool] = {}
            for col in ("lives_alone", "high_risk"):
                value = _bool(row.get(col, ""))
                if value is None:
                    self.err(line, f"{col} {row[col]!r} must be true/false", col)
                else:
                    flags[col] = value
            bed_code = row["bed_code"].strip()
            bed = beds.get(bed_code) if bed_code else None
            if bed_code and (bed is None or bed["site_id"] != self.site_id):
                self.err(line, f"unknown bed code {bed_code!r} at this site (import beds "
                         "first)", "bed_code")  # fmt: skip
                bed = None
            if code is None or rid is None:
                continue
            if code in seen_codes:
                self.err(line, f"elder_code {code!r} repeats line {seen_codes[code]}",
                         "elder_code")  # fmt: skip
                continue
            seen_codes[code] = line
            current = by_code.get(code)
            if current is not None and current["site_id"] != self.site_id:
                self.err(line, f"elder_code {code!r} belongs to another site", "elder_code")
                continue
            if current is not None and current["resident_id"] != rid:
                self.err(line, f"elder_code {code!r} is resident {current['resident_id']!r}",
                         "resident_id")  # fmt: skip
                continue
            if current is None and rid in by_id:
                self.err(line, f"resident_id {rid!r} is already used", "resident_id")
                continue
            if bed is not None:
                bid = bed["bed_id"]
                if bid in seen_beds:
                    self.err(line, f"bed {bed_code!r} is also given to line {seen_beds[bid]}",
                             "bed_code")  # fmt: skip
                    continue
                seen_beds[bid] = line
                holder = bed_holder.get(bid)
                if (holder is not None and holder != rid
                        and by_id[holder]["elder_code"] not in file_codes):  # fmt: skip
                    self.err(line, f"bed {bed_code!r} is assigned to another resident",
                             "bed_code")  # fmt: skip
                    continue
            if (bed_code and bed is None) or not 0 <= level <= 5 or not name or len(flags) < 2:
                continue
            values = {"resident_id": rid, "elder_code": code, "display_name": name,
                      "care_level": level, "bed_id": bed["bed_id"] if bed else None,
                      **flags}  # fmt: skip
            self.ops.append(("update" if current is not None else "insert", values))

    def apply(self) -> None:
        conn, site = self.conn, self.site_id
        if self.kind == "residents":
            # Free the beds first so that residents may swap beds within one file.
            ids = [v["resident_id"] for op, v in self.ops if op == "update"]
            conn.execute("UPDATE residents SET bed_id = NULL WHERE resident_id = ANY(%s)", (ids,))
        for op, v in self.ops:
            if self.kind == "locations":
                if op == "insert":
                    conn.execute(
                        "INSERT INTO locations (location_id, site_id, kind, label, address) "
                        "VALUES (%s, %s, %s, %s, %s)",
                        (v["location_id"], site, v["kind"], v["label"], v["address"]),
                    )
                else:
                    _update(conn, "locations", "location_id", v.pop("location_id"), v)
            elif self.kind == "beds":
                if op == "insert":
                    conn.execute(
                        "INSERT INTO beds (bed_id, bed_code, site_id, location_id) "
                        "VALUES (%s, %s, %s, %s)",
                        (v["bed_id"], v["bed_code"], site, v["location_id"]),
                    )
                else:
                    _update(conn, "beds", "bed_id", v["bed_id"], {"location_id": v["location_id"]})
            elif op == "insert":
                conn.execute(
                    "INSERT INTO residents (resident_id, elder_code, site_id, bed_id, "
                    "display_name, care_level, lives_alone, high_risk) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (v["resident_id"], v["elder_code"], site, v["bed_id"], v["display_name"],
                     v["care_level"], v["lives_alone"], v["high_risk"]),
                )  # fmt: skip
            else:
                rid = v.pop("resident_id")
                v.pop("elder_code")
                _update(conn, "residents", "resident_id", rid, v)


def import_csv(conn: Conn, site_id: str, kind: str, text: str, *, dry_run: bool) -> ImportResult:
    """Validate a CSV (header = line 1) and, unless ``dry_run``, apply it atomically.

    Rows are upserted by their natural key (location_id, bed_code, elder_code). Any error
    means nothing is written; every bad row is reported with its line number.
    """
    if kind not in IMPORT_COLUMNS:
        raise invalid(f"unknown import kind {kind!r}", "use locations, beds or residents")
    required, optional = IMPORT_COLUMNS[kind]
    result = ImportResult(dry_run)
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise invalid("the CSV is empty", f"the first line is the header: "
                      f"{','.join(required)}") from None  # fmt: skip
    except csv.Error as exc:
        raise invalid(f"line 1: {exc}") from None
    missing = [c for c in required if c not in header]
    unknown = [c for c in header if c not in required + optional]
    if missing or unknown:
        parts = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + (
            [f"unknown column(s) {', '.join(unknown)}"] if unknown else [])  # fmt: skip
        result.errors.append(RowError(1, "; ".join(parts)))
        return result
    rows: list[tuple[int, dict[str, str]]] = []
    importer = _Importer(conn, site_id, kind)
    try:
        ended = reader.line_num
        for fields in reader:
            # A row is numbered by the line it starts on (a quoted field may span lines).
            line, ended = ended + 1, reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                importer.err(line, f"{len(fields)} fields, the header has {len(header)}")
                continue
            row = {h: f.strip() for h, f in zip(header, fields, strict=True)}
            for col in optional:
                row.setdefault(col, "")
            rows.append((line, row))
    except csv.Error as exc:
        importer.err(reader.line_num, f"unreadable CSV: {exc}")
    result.rows = len(rows) + len({e.line for e in importer.errors})
    with conn.transaction():
        importer.run(rows)
        result.errors = sorted(importer.errors, key=lambda e: e.line)
        if not result.errors:
            result.created = sum(1 for op, _ in importer.ops if op == "insert")
            result.updated = sum(1 for op, _ in importer.ops if op == "update")
            if not dry_run:
                try:
                    importer.apply()
                except (psycopg.errors.UniqueViolation, psycopg.errors.ForeignKeyViolation):
                    raise conflict("the registry changed during the import; nothing was "
                                   "written", "run the import again") from None  # fmt: skip
    return result
