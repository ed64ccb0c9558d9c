"""Risk categories change detection sensitivity (issue 13 §1: "risk categories set the visit
frequency, the detection sensitivity and the staffing group").

``config/visits.toml`` ``[sensitivity.<category>]`` gives factors on the inactivity rules:

* ``no_activity_factor``: the no-activity window: the bed routine's ``no_activity_s`` and the
  home-activity gaps (``cold_gap_s``, ``min_gap_s``, ``max_gap_s``, and ``gap_factor``, never
  below 1: an elder is not alerted inside gaps they usually have);
* ``not_up_margin_factor``: the margin after the usual rise time before "not up"
  (``not_up_margin_s`` of both detectors).

1.0 leaves a rule as the care level set it; smaller alerts sooner (0.6: a 5 h no-activity
window becomes 3 h). An elder in several categories gets the smallest factor of each (the
strictest, as for visit plans). Categories come from ``resident_risks`` and the registry's
``high_risk`` and ``lives_alone`` flags. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from analytics.home_activity import HomeActivityParams
from analytics.routine import RoutineParams
from gateway.errors import InvalidError

FACTOR_MIN: Final = 0.25
FACTOR_MAX: Final = 2.0
FACTORS: Final = ("no_activity_factor", "not_up_margin_factor")


@dataclass(frozen=True, slots=True)
class Sensitivity:
    """Factors on the inactivity rules (1.0: unchanged; smaller: sooner)."""

    no_activity_factor: float = 1.0
    not_up_margin_factor: float = 1.0

    @property
    def neutral(self) -> bool:
        return self.no_activity_factor == 1.0 and self.not_up_margin_factor == 1.0


NEUTRAL: Final = Sensitivity()


def parse_sensitivity(raw: Any, categories: Iterable[str]) -> dict[str, Sensitivity]:
    """The ``[sensitivity]`` table of the config file, checked (InvalidError names the key)."""
    known = tuple(categories)
    if not isinstance(raw, dict):
        raise InvalidError("sensitivity: a table of risk categories is required")
    out: dict[str, Sensitivity] = {}
    for cat, table in raw.items():
        where = f"sensitivity.{cat}"
        if cat not in known:
            raise InvalidError(f"{where}: unknown risk category (known: {known})")
        if not isinstance(table, dict) or set(table) - set(FACTORS):
            raise InvalidError(f"{where}: a table with {' and/or '.join(FACTORS)}")
        values: dict[str, float] = {}
        for key, value in table.items():
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not FACTOR_MIN <= value <= FACTOR_MAX:
                raise InvalidError(f"{where}.{key}: a number from {FACTOR_MIN} to {FACTOR_MAX}, "
                                   f"not {value!r}")  # fmt: skip
            values[key] = float(value)
        out[cat] = Sensitivity(**values)
    return out


def for_categories(categories: Iterable[str], table: Mapping[str, Sensitivity]) -> Sensitivity:
    """The strictest (smallest) factor of each kind over ``categories``; neutral for none."""
    found = [table[c] for c in categories if c in table]
    if not found:
        return NEUTRAL
    return Sensitivity(
        no_activity_factor=min(s.no_activity_factor for s in found),
        not_up_margin_factor=min(s.not_up_margin_factor for s in found),
    )


def tune_routine(params: RoutineParams, s: Sensitivity) -> RoutineParams:
    """The bed routine's thresholds under ``s``."""
    if s.neutral:
        return params
    return replace(
        params,
        no_activity_s=params.no_activity_s * s.no_activity_factor,
        not_up_margin_s=params.not_up_margin_s * s.not_up_margin_factor,
    )


def tune_home_activity(params: HomeActivityParams, s: Sensitivity) -> HomeActivityParams:
    """The home-activity (door and motion) thresholds under ``s``."""
    if s.neutral:
        return params
    f = s.no_activity_factor
    return replace(
        params,
        cold_gap_s=params.cold_gap_s * f,
        min_gap_s=params.min_gap_s * f,
        max_gap_s=params.max_gap_s * f,
        gap_factor=max(1.0, params.gap_factor * f),
        not_up_margin_s=params.not_up_margin_s * s.not_up_margin_factor,
    )
