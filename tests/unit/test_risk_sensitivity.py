"""Risk categories -> detection sensitivity (pure): the ``[sensitivity]`` table of
``config/visits.toml``, the strictest factor over an elder's categories, and the thresholds
of the bed routine and the home-activity detector it gives."""

from __future__ import annotations

import pytest

from analytics.home_activity import HomeActivityParams
from analytics.routine import RoutineParams
from gateway.errors import InvalidError
from gateway.visits.config import CATEGORIES, load_visits_config
from gateway.visits.sensitivity import (
    NEUTRAL,
    Sensitivity,
    for_categories,
    parse_sensitivity,
    tune_home_activity,
    tune_routine,
)

TABLE = {
    "high_risk": Sensitivity(no_activity_factor=0.6, not_up_margin_factor=0.5),
    "living_alone": Sensitivity(no_activity_factor=0.8, not_up_margin_factor=0.75),
    "very_old": Sensitivity(not_up_margin_factor=0.4),
}


def test_the_shipped_file_makes_high_risk_and_living_alone_more_sensitive() -> None:
    table = load_visits_config().sensitivity
    assert table["high_risk"].no_activity_factor < table["living_alone"].no_activity_factor < 1
    assert "empty_nest" not in table  # unnamed categories leave the rules as they are


def test_parse_checks_categories_keys_and_ranges() -> None:
    raw = {"high_risk": {"no_activity_factor": 0.5}, "very_old": {"not_up_margin_factor": 1}}
    parsed = parse_sensitivity(raw, CATEGORIES)
    assert parsed["high_risk"] == Sensitivity(0.5, 1.0)
    assert parsed["very_old"] == Sensitivity(1.0, 1.0)
    for bad, key in [
        ({"rich": {"no_activity_factor": 0.5}}, "sensitivity.rich"),
        ({"high_risk": {"no_activity_factor": 0.1}}, "sensitivity.high_risk.no_activity_factor"),
        ({"high_risk": {"no_activity_factor": True}}, "no_activity_factor"),
        ({"high_risk": {"no_activity_factor": "0.5"}}, "no_activity_factor"),
        ({"high_risk": {"motionless_factor": 0.5}}, "sensitivity.high_risk"),
        ({"high_risk": 0.5}, "sensitivity.high_risk"),
        ([], "sensitivity"),
    ]:
        with pytest.raises(InvalidError, match=key):
            parse_sensitivity(bad, CATEGORIES)


def test_the_strictest_factor_of_each_kind_wins() -> None:
    assert for_categories([], TABLE) is NEUTRAL
    assert for_categories(["empty_nest"], TABLE) is NEUTRAL
    assert for_categories(["living_alone", "very_old"], TABLE) == Sensitivity(0.8, 0.4)
    assert for_categories(["high_risk", "living_alone"], TABLE) == Sensitivity(0.6, 0.5)


def test_routine_thresholds_shrink_by_the_factors() -> None:
    base = RoutineParams.for_care_level(2)
    assert tune_routine(base, NEUTRAL) is base
    tuned = tune_routine(base, TABLE["high_risk"])
    assert tuned.no_activity_s == pytest.approx(0.6 * base.no_activity_s)  # 5 h -> 3 h
    assert tuned.not_up_margin_s == pytest.approx(0.5 * base.not_up_margin_s)
    assert tuned.night_exit_tolerance_s == base.night_exit_tolerance_s  # other rules untouched


def test_home_activity_gaps_shrink_but_never_below_the_usual_gaps() -> None:
    base = HomeActivityParams.for_care_level(2)
    assert tune_home_activity(base, NEUTRAL) is base
    tuned = tune_home_activity(base, TABLE["high_risk"])
    assert tuned.cold_gap_s == pytest.approx(0.6 * base.cold_gap_s)
    assert (tuned.min_gap_s, tuned.max_gap_s) == pytest.approx(
        (0.6 * base.min_gap_s, 0.6 * base.max_gap_s)
    )
    assert tuned.gap_factor == 1.0  # 1.5 x 0.6 = 0.9, floored: not inside the usual gaps
    assert tuned.not_up_margin_s == pytest.approx(0.5 * base.not_up_margin_s)
    mild = tune_home_activity(base, TABLE["living_alone"])
    assert mild.gap_factor == pytest.approx(1.2)
