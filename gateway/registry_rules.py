"""The registry's rules, defined once: id, code and phone patterns, site and location kinds,
the columns of the CSV imports and the shape of a CSV row error.

Pure (no I/O): the API's request models, the installer CLI (its argument choices and its
local CSV check), the storage repositories, broker sync and the import all take them from
here. Codes follow 一人一床一码: every bed has a bed code and every resident an elder code,
both matching :data:`CODE_PATTERN`. Ids (sites, locations, beds, residents, devices) match
:data:`ID_PATTERN`, the protocol's id rule (``devices.protocol`` keeps its own copy: the
device side never imports the gateway).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal, get_args

from gateway.errors import InvalidError

CODE_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$"
ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
CODE_RE: Final = re.compile(CODE_PATTERN)
ID_RE: Final = re.compile(ID_PATTERN)
CODE_HINT: Final = (
    "codes are 3-64 characters: letters, digits, '-' or '_', starting with a letter or digit"
)

# The numbers click-to-call dials (residents.phone, locations.phone): the CHECK of migration
# 0031. ``safehome user resident-phone``, the site definition and the CSV imports use it.
PHONE_PATTERN: Final = r"^[0-9+() -]{3,32}$"
PHONE_RE: Final = re.compile(PHONE_PATTERN)
PHONE_RULE: Final = "not a phone number (3-32 characters: digits, +, (), - and spaces)"

SiteKind = Literal["nursing_home", "home_care_centre"]
LocationKind = Literal["room", "home"]
SITE_KINDS: Final[tuple[str, ...]] = get_args(SiteKind)
LOCATION_KINDS: Final[tuple[str, ...]] = get_args(LocationKind)

# The CSV imports: kind -> (required columns, optional columns).
ImportKind = Literal["locations", "beds", "residents"]
IMPORT_COLUMNS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "locations": (("location_id", "kind", "label"), ("address", "phone")),
    "beds": (("bed_code", "location_id"), ("bed_id",)),
    "residents": (
        ("elder_code", "display_name", "care_level", "bed_code"),
        ("resident_id", "lives_alone", "high_risk", "phone"),
    ),
}
IMPORT_KINDS: Final[tuple[str, ...]] = get_args(ImportKind)
CARE_LEVELS: Final = range(0, 6)  # care_level 0-5
TRUE: Final = frozenset({"1", "true", "yes", "y", "t"})
FALSE: Final = frozenset({"", "0", "false", "no", "n", "f"})


def parse_bool(value: str) -> bool | None:
    """A CSV truth value (``yes``, ``0``, empty = false...), or None when it is none."""
    v = value.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    return None


def is_code(value: str) -> bool:
    return CODE_RE.fullmatch(value) is not None


def is_id(value: str) -> bool:
    return ID_RE.fullmatch(value) is not None


def is_phone(value: str) -> bool:
    return PHONE_RE.fullmatch(value) is not None


def clean_phone(value: str | None) -> str | None:
    """A number as stored: stripped; None (no number) when empty; :class:`InvalidError` when it
    breaks :data:`PHONE_PATTERN`. The error never repeats the number (it may be logged)."""
    phone = (value or "").strip() or None
    if phone is not None and not is_phone(phone):
        raise InvalidError(PHONE_RULE)
    return phone


def check_code(value: str, what: str) -> str:
    """``value`` when it is a valid code; :class:`InvalidError` otherwise."""
    if not is_code(value):
        raise InvalidError(f"{what} {value!r} is not a valid code", CODE_HINT)
    return value


def check_id(value: str, what: str) -> str:
    """``value`` when it is a valid id; :class:`InvalidError` otherwise."""
    if not is_id(value):
        raise InvalidError(f"{what} {value!r} must match [A-Za-z0-9_-]{{1,64}}")
    return value


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem in an import file: its line (the header is line 1), what, and where."""

    line: int
    message: str
    column: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"line": self.line, "column": self.column, "message": self.message}
