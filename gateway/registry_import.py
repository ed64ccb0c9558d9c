"""Bulk import of locations, beds and residents from CSV (the installer's import route).

Every row is checked first (all errors collected, each with its line), then all are applied
in one transaction, or nothing is. An optional ``phone`` (locations, residents: what
click-to-call dials) is checked like ``safehome user resident-phone``; an empty cell keeps the
current number. The columns and the row-error shape come from
:mod:`gateway.registry_rules`; the rows read and written, from :mod:`gateway.storage.registry`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from gateway.errors import ConflictError, InvalidError
from gateway.registry_rules import (
    CARE_LEVELS,
    IMPORT_COLUMNS,
    LOCATION_KINDS,
    PHONE_RULE,
    RowError,
    is_code,
    is_id,
    is_phone,
    parse_bool,
)
from gateway.storage import registry as repo

Conn = psycopg.Connection[Any]
Rows = list[tuple[int, dict[str, str]]]


@dataclass
class ImportResult:
    dry_run: bool
    rows: int = 0
    created: int = 0
    updated: int = 0
    errors: list[RowError] = field(default_factory=list)
    # "location:ID" / "resident:ID" whose phone the import changed (for the audit entry;
    # never the number, and not in the response).
    phone_changed: list[str] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "rows": self.rows, "created": self.created,
                "updated": self.updated, "errors": [e.to_json() for e in self.errors]}  # fmt: skip


class _Importer:
    """Validates every row (collecting all errors), then applies them in one transaction."""

    def __init__(self, conn: Conn, site_id: str, kind: str) -> None:
        self.conn = conn
        self.site_id = site_id
        self.kind = kind
        self.errors: list[RowError] = []
        self.ops: list[tuple[str, dict[str, Any]]] = []  # ("insert"|"update", values)
        self.phones: dict[str, str] = {}  # location or resident id -> its new number
        self.phone_changed: list[str] = []

    def err(self, line: int, message: str, column: str | None = None) -> None:
        self.errors.append(RowError(line, message, column))

    def _valid(
        self, line: int, row: Mapping[str, str], col: str, ok: Callable[[str], bool], rule: str
    ) -> str | None:
        value = row[col]
        if not ok(value):
            self.err(line, f"{value!r} {rule}", col)
            return None
        return value

    def code(self, line: int, row: Mapping[str, str], col: str) -> str | None:
        return self._valid(line, row, col, is_code, "is not a valid code (3-64 of A-Z a-z 0-9 - _)")

    def ident(self, line: int, row: Mapping[str, str], col: str) -> str | None:
        return self._valid(line, row, col, is_id, "must match [A-Za-z0-9_-]{1,64}")

    def phone(self, line: int, row: Mapping[str, str]) -> bool:
        """The optional ``phone`` column: empty keeps the current number; False (and a row
        error without the value: numbers stay out of responses and logs) when invalid."""
        value = row.get("phone", "")
        if value and not is_phone(value):
            self.err(line, f"phone is {PHONE_RULE}", "phone")
            return False
        return True

    def add(self, op: str, values: dict[str, Any], key: str, row: Mapping[str, str]) -> None:
        self.ops.append((op, values))
        if row.get("phone"):
            self.phones[values[key]] = row["phone"]

    def run(self, rows: Rows) -> None:
        checks: dict[str, Callable[[Rows], None]] = {
            "locations": self._locations, "beds": self._beds, "residents": self._residents,
        }  # fmt: skip
        checks[self.kind](rows)

    def _locations(self, rows: Rows) -> None:
        existing = repo.location_sites(self.conn)
        seen: dict[str, int] = {}
        for line, row in rows:
            lid = self.ident(line, row, "location_id")
            kind = row["kind"].strip()
            if kind not in LOCATION_KINDS:
                self.err(line, f"kind {kind!r} must be 'room' or 'home'", "kind")
            if not row["label"].strip():
                self.err(line, "label is empty", "label")
            if not self.phone(line, row) or lid is None:
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
            self.add("update" if lid in existing else "insert", values, "location_id", row)

    def _beds(self, rows: Rows) -> None:
        beds = [b.model_dump() for b in repo.bed_keys(self.conn)]
        by_code = {b["bed_code"]: b for b in beds}
        by_id = {b["bed_id"]: b for b in beds}
        locations = repo.location_sites(self.conn)
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

    def _residents(self, rows: Rows) -> None:
        residents = [r.model_dump() for r in repo.resident_keys(self.conn)]
        by_code = {r["elder_code"]: r for r in residents}
        by_id = {r["resident_id"]: r for r in residents}
        bed_holder = {r["bed_id"]: r["resident_id"] for r in residents if r["bed_id"]}
        beds = {b.bed_code: b.model_dump() for b in repo.bed_keys(self.conn)}
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
            if level not in CARE_LEVELS:
                self.err(line, f"care_level {row['care_level']!r} must be 0-5", "care_level")
            flags: dict[str, bool] = {}
            for col in ("lives_alone", "high_risk"):
                value = parse_bool(row.get(col, ""))
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
            if not self.phone(line, row) or code is None or rid is None:
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
            if (bed_code and bed is None) or level not in CARE_LEVELS or not name or len(flags) < 2:
                continue
            values = {"resident_id": rid, "elder_code": code, "display_name": name,
                      "care_level": level, "bed_id": bed["bed_id"] if bed else None,
                      **flags}  # fmt: skip
            self.add("update" if current is not None else "insert", values, "resident_id", row)

    def apply(self) -> None:
        conn, site = self.conn, self.site_id
        if self.kind == "residents":
            # Free the beds first so that residents may swap beds within one file.
            repo.free_beds_of(conn, [v["resident_id"] for op, v in self.ops if op == "update"])
        for op, v in self.ops:
            if self.kind == "locations":
                if op == "insert":
                    repo.insert_location(conn, site, v["location_id"], kind=v["kind"],
                                         label=v["label"], address=v["address"])  # fmt: skip
                else:
                    repo.update_location(conn, v.pop("location_id"), v)
            elif self.kind == "beds":
                if op == "insert":
                    repo.insert_bed(conn, site, v["bed_id"], v["bed_code"], v["location_id"])
                else:
                    repo.update_bed(conn, v["bed_id"], {"location_id": v["location_id"]})
            elif op == "insert":
                repo.insert_resident(conn, site, v)
            else:
                rid = v.pop("resident_id")
                v.pop("elder_code")
                repo.update_resident(conn, rid, v)
        what = self.kind.removesuffix("s")
        for ident, phone in self.phones.items():
            if repo.change_phone(conn, what, ident, phone):
                self.phone_changed.append(f"{what}:{ident}")


def import_csv(conn: Conn, site_id: str, kind: str, text: str, *, dry_run: bool) -> ImportResult:
    """Validate a CSV (header = line 1) and, unless ``dry_run``, apply it atomically.

    Rows are upserted by their natural key (location_id, bed_code, elder_code). Any error
    means nothing is written; every bad row is reported with its line number.
    """
    if kind not in IMPORT_COLUMNS:
        raise InvalidError(f"unknown import kind {kind!r}", "use locations, beds or residents")
    required, optional = IMPORT_COLUMNS[kind]
    result = ImportResult(dry_run)
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InvalidError("the CSV is empty", f"the first line is the header: "
                      f"{','.join(required)}") from None  # fmt: skip
    except csv.Error as exc:
        raise InvalidError(f"line 1: {exc}") from None
    missing = [c for c in required if c not in header]
    unknown = [c for c in header if c not in required + optional]
    if missing or unknown:
        parts = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + (
            [f"unknown column(s) {', '.join(unknown)}"] if unknown else [])  # fmt: skip
        result.errors.append(RowError(1, "; ".join(parts)))
        return result
    rows: Rows = []
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
                    result.phone_changed = importer.phone_changed
                except (psycopg.errors.UniqueViolation, psycopg.errors.ForeignKeyViolation):
                    raise ConflictError("the registry changed during the import; nothing was "
                                   "written", "run the import again") from None  # fmt: skip
    return result
