"""Client-side checks of import CSV files, before anything is sent to the gateway.

What the CLI can check on its own (the gateway checks again, plus references such as "this
location exists", in its dry run): the file is UTF-8 (a BOM is accepted), the header names
the required columns and no unknown ones, every row has as many fields as the header,
required fields are filled, codes and ids follow :mod:`gateway.registry_rules` (一人一床一码),
enumerations and numbers are in range, and no code or id appears twice in the file. Every
problem is reported with its line number (the header is line 1; a row is numbered by the
line it starts on, which matters for quoted fields that span lines) — every bad row, not
just the first.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass

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

__all__ = ["KINDS", "SCHEMAS", "CheckResult", "RowError", "Schema", "check_csv"]


Check = Callable[[str], str | None]  # value -> error message or None


def _code(value: str) -> str | None:
    if is_code(value):
        return None
    return (
        f"{value!r} is not a valid code: 3-64 letters, digits, '-' or '_', "
        "starting with a letter or digit"
    )


def _id(value: str) -> str | None:
    return None if is_id(value) else f"{value!r} is not a valid id (A-Z a-z 0-9 _ -)"


def _phone(value: str) -> str | None:
    return None if is_phone(value) else f"phone is {PHONE_RULE}"  # never repeats the number


def _one_of(*allowed: str) -> Check:
    def check(value: str) -> str | None:
        return None if value in allowed else f"{value!r} is not one of {', '.join(allowed)}"

    return check


def _int_range(lo: int, hi: int) -> Check:
    def check(value: str) -> str | None:
        try:
            n = int(value)
        except ValueError:
            return f"{value!r} is not a whole number"
        return None if lo <= n <= hi else f"{n} is outside {lo}..{hi}"

    return check


def _bool(value: str) -> str | None:
    return None if parse_bool(value) is not None else f"{value!r} is not true/false"


def _text(max_len: int) -> Check:
    def check(value: str) -> str | None:
        return None if len(value) <= max_len else f"longer than {max_len} characters"

    return check


@dataclass(frozen=True, slots=True)
class Schema:
    """The columns of one import kind: required, optional, checks, and unique keys."""

    required: tuple[str, ...]
    optional: tuple[str, ...]
    checks: dict[str, Check]
    unique: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


SCHEMAS: dict[str, Schema] = {
    "locations": Schema(
        *IMPORT_COLUMNS["locations"],
        checks={
            "location_id": _id,
            "kind": _one_of(*LOCATION_KINDS),
            "label": _text(200),
            "address": _text(500),
            "phone": _phone,
        },
        unique=("location_id",),
    ),
    "beds": Schema(
        *IMPORT_COLUMNS["beds"],
        checks={"bed_code": _code, "location_id": _id, "bed_id": _id},
        unique=("bed_code", "bed_id"),
    ),
    "residents": Schema(
        *IMPORT_COLUMNS["residents"],
        checks={
            "elder_code": _code,
            "display_name": _text(200),
            "care_level": _int_range(CARE_LEVELS.start, CARE_LEVELS.stop - 1),
            "bed_code": _code,
            "resident_id": _id,
            "lives_alone": _bool,
            "high_risk": _bool,
            "phone": _phone,
        },
        unique=("elder_code", "resident_id", "bed_code"),
    ),
}
KINDS = tuple(SCHEMAS)
# A required column that may be left empty in a row (a resident not yet in a bed).
OPTIONAL_VALUES = {("residents", "bed_code")}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of a local check: data rows seen and every problem found."""

    rows: int
    errors: list[RowError]
    text: str  # the file as UTF-8 text without BOM (what is sent to the gateway)


def check_csv(kind: str, data: bytes) -> CheckResult:
    """Check an import file of ``kind`` (locations, beds, residents)."""
    schema = SCHEMAS[kind]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return CheckResult(0, [RowError(line, "not UTF-8 text (save the file as CSV UTF-8)")], "")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    errors: list[RowError] = []
    try:
        header = next(reader)
    except StopIteration:
        return CheckResult(0, [RowError(1, "the file is empty: a header row is required")], text)
    except csv.Error as exc:
        return CheckResult(0, [RowError(1, f"unreadable header: {exc}")], text)
    header = [h.strip() for h in header]
    missing = [c for c in schema.required if c not in header]
    unknown = [c for c in header if c not in schema.columns]
    if missing:
        errors.append(RowError(1, f"missing column(s): {', '.join(missing)}"))
    if unknown:
        errors.append(RowError(1, f"unknown column(s): {', '.join(unknown)} "
                                  f"(allowed: {', '.join(schema.columns)})"))  # fmt: skip
    if len(set(header)) != len(header):
        errors.append(RowError(1, "a column appears twice in the header"))
    if errors:
        return CheckResult(0, errors, text)
    seen: dict[str, dict[str, int]] = {col: {} for col in schema.unique}
    rows = 0
    end = reader.line_num
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(start, f"malformed CSV: {exc}"))
            break
        end = reader.line_num
        if not any(field.strip() for field in row):
            continue  # blank line
        rows += 1
        if len(row) != len(header):
            errors.append(
                RowError(start, f"{len(row)} field(s) where the header has {len(header)}")
            )
            continue
        values = {h: v.strip() for h, v in zip(header, row, strict=True)}
        for col in header:
            value = values[col]
            if not value:
                if col in schema.required and (kind, col) not in OPTIONAL_VALUES:
                    errors.append(RowError(start, "required value is empty", col))
                continue
            problem = schema.checks[col](value)
            if problem:
                errors.append(RowError(start, problem, col))
            elif col in seen:
                first = seen[col].setdefault(value, start)
                if first != start:
                    errors.append(RowError(start, f"{value!r} already used on line {first}", col))
    return CheckResult(rows, errors, text)
