"""The visiting-care configuration (``config/visits.toml``): assessment levels and their
staffing groups, visit plans per district, the door-knock deadline and the staffing rule.

Loaded and checked once (:func:`load_visits_config`); a bad file raises
:class:`gateway.errors.InvalidError` naming the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import InvalidError
from gateway.visits.sensitivity import Sensitivity, parse_sensitivity

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "config" / "visits.toml"

CATEGORIES = (
    "living_alone", "empty_nest", "very_old", "dependent", "extreme_poverty", "high_risk",
)  # fmt: skip
CATEGORY_LABELS = {
    "living_alone": "独居", "empty_nest": "空巢", "very_old": "高龄", "dependent": "失能",
    "extreme_poverty": "特困", "high_risk": "高风险",
}  # fmt: skip
GROUPS = ("fully", "partly", "independent")
VISIT_KINDS = ("phone", "home")


@dataclass(frozen=True, slots=True)
class Plan:
    """Days between visits of each kind (0: none of that kind)."""

    phone_days: int
    home_days: int

    def days(self, kind: str) -> int:
        return self.phone_days if kind == "phone" else self.home_days


@dataclass(frozen=True, slots=True)
class Shift:
    """A shift in site-local time."""

    name: str
    label: str
    start_hour: int
    hours: int


@dataclass(frozen=True, slots=True)
class VisitsConfig:
    """The whole file, checked."""

    levels: tuple[str, ...]
    level_groups: dict[str, str]
    unassessed_group: str
    interval_days: int
    ratios: dict[str, int]
    shifts: tuple[Shift, ...]
    door_knock_minutes: int
    door_knock_auto_minutes: int
    """An open inactivity alert opens a door-knock task by itself after this long (0: never)."""
    default_plans: dict[str, Plan]
    district_plans: dict[str, dict[str, Plan]] = field(default_factory=dict)
    sensitivity: dict[str, Sensitivity] = field(default_factory=dict)  # per risk category

    def plans_for(self, district: str | None) -> dict[str, Plan]:
        """The plans of ``district``: the defaults with the district's overrides."""
        return self.default_plans | self.district_plans.get(district or "", {})

    def group_of(self, level: str | None) -> str:
        """The staffing group of an assessment level (``unassessed_group`` for none)."""
        if level is None:
            return self.unassessed_group
        return self.level_groups.get(level, self.unassessed_group)


def _int(data: dict[str, Any], key: str, where: str, minimum: int = 0) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidError(f"{where}.{key}: an integer ≥ {minimum} is required, not {value!r}")
    return value


def _plans(raw: Any, where: str) -> dict[str, Plan]:
    if not isinstance(raw, dict):
        raise InvalidError(f"{where}: a table of categories is required")
    out = {}
    for cat, plan in raw.items():
        if cat not in CATEGORIES:
            raise InvalidError(f"{where}.{cat}: unknown risk category (known: {CATEGORIES})")
        if not isinstance(plan, dict):
            raise InvalidError(f"{where}.{cat}: a table with phone_days and home_days")
        out[cat] = Plan(_int(plan, "phone_days", f"{where}.{cat}"),
                        _int(plan, "home_days", f"{where}.{cat}"))  # fmt: skip
    return out


def parse_visits_config(data: dict[str, Any]) -> VisitsConfig:
    """Check a parsed file; raise :class:`InvalidError` on the first bad key."""
    assessment = data.get("assessment", {})
    levels = assessment.get("levels")
    if not isinstance(levels, list) or not levels or not all(isinstance(x, str) for x in levels):
        raise InvalidError("assessment.levels: a non-empty list of level names is required")
    groups = assessment.get("groups", {})
    for level, group in groups.items():
        if level not in levels or group not in GROUPS:
            raise InvalidError(f"assessment.groups.{level}: a known level and one of {GROUPS}")
    unassessed = assessment.get("unassessed_group", "partly")
    if unassessed not in GROUPS:
        raise InvalidError(f"assessment.unassessed_group: one of {GROUPS}")
    staffing = data.get("staffing", {})
    ratios = {g: _int(staffing, g, "staffing", 1) for g in GROUPS}
    shifts = []
    for i, raw in enumerate(staffing.get("shifts", [])):
        name, label = raw.get("name"), raw.get("label")
        if not isinstance(name, str) or not isinstance(label, str):
            raise InvalidError(f"staffing.shifts[{i}]: name and label are required")
        start = _int(raw, "start_hour", "staffing.shifts")
        hours = _int(raw, "hours", "staffing.shifts", 1)
        if start > 23 or hours > 24:
            raise InvalidError(f"staffing.shifts[{i}]: start_hour 0–23 and hours 1–24")
        shifts.append(Shift(name, label, start, hours))
    plans = data.get("plans", {})
    districts = {d: _plans(p, f"plans.districts.{d}")
                 for d, p in plans.get("districts", {}).items()}  # fmt: skip
    return VisitsConfig(
        levels=tuple(levels),
        level_groups=dict(groups),
        unassessed_group=unassessed,
        interval_days=_int(assessment, "interval_days", "assessment", 1),
        ratios=ratios,
        shifts=tuple(shifts),
        door_knock_minutes=_int(data.get("door_knock", {}), "deadline_minutes", "door_knock", 1),
        door_knock_auto_minutes=_int(
            {"auto_after_minutes": 0, **data.get("door_knock", {})},
            "auto_after_minutes",
            "door_knock",
        ),
        default_plans=_plans(plans.get("default", {}), "plans.default"),
        district_plans=districts,
        sensitivity=parse_sensitivity(data.get("sensitivity", {}), CATEGORIES),
    )


def load_visits_config(path: Path = DEFAULT_PATH) -> VisitsConfig:
    """Read and check ``path`` (default: the shipped ``config/visits.toml``)."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidError(f"cannot read {path}: {exc}") from None
    return parse_visits_config(data)
