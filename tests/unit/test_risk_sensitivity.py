"""Risk categories -> detection sensitivity (pure): the ``[sensitivity]`` table of
``config/visits.toml``, the strictest factor over an elder's categories, and the thresholds
of the bed routine and the home-activity detector it gives."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analytics.home_activity import HomeActivity, HomeActivityParams
from analytics.routine import RoutineMonitor, RoutineParams, day_start
from analytics.types import DetectionKind
from gateway.analysis import AnalysisRunner, MemoryStore, RegistrySnapshot
from gateway.errors import InvalidError
from gateway.replay import VirtualClock
from gateway.settings import AnalysisSettings
from gateway.visits.config import CATEGORIES, load_visits_config
from gateway.visits.sensitivity import (
    NEUTRAL,
    Sensitivity,
    for_categories,
    parse_sensitivity,
    tune_home_activity,
    tune_routine,
)
from tests.unit.test_analysis_runner import MONDAY, OFF, Stream, site_registry

H = 3600.0

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


class _Registry(MemoryStore):
    """The in-memory store whose registry a test changes (as a supervisor's edit would)."""

    def __init__(self, registry: RegistrySnapshot) -> None:
        super().__init__(registry)
        self.current = registry

    def registry(self) -> RegistrySnapshot:
        return self.current


def _no_activity_limits(change_at_h: float | None) -> list[float]:
    """The no-activity limits raised for r1 (care level 2, up at 06:00, then nothing), made
    high-risk ``change_at_h`` hours after 05:00 (None: never)."""
    reg = site_registry()
    store = _Registry(reg)
    morning = day_start(MONDAY, OFF) + 5 * H
    clock = VirtualClock(morning)
    settings = AnalysisSettings.model_validate(
        {"check_interval_s": 60.0, "registry_refresh_s": 60.0}
    )
    runner = AnalysisRunner(settings, store, clock=clock, sensitivity=TABLE)
    runner.rebuild()
    s = Stream(reg)
    messages = [s.event("bs1", morning + 60, "bed_entry"), s.event("bs1", morning + H, "bed_exit")]
    messages += [s.heartbeat("bs1", morning + 60 * k) for k in range(2, 8 * 60)]
    high_risk = replace(reg.residents["r1"], categories=frozenset({"high_risk"}))
    i = 0
    while clock.now < morning + 8 * H:
        clock.now += 60.0
        if change_at_h is not None and clock.now >= morning + change_at_h * H:
            store.current = replace(reg, residents={"r1": high_risk})
        while i < len(messages) and messages[i].received_at <= clock.now:
            runner.feed([messages[i]])
            i += 1
        runner.advance()
    limits = [
        d.details["limit_s"]
        for d in store.detections
        if d.kind is DetectionKind.NO_ACTIVITY and not d.resolved
    ]
    return [float(x) for x in limits if isinstance(x, int | float)]


def test_a_category_set_while_running_applies_at_the_next_registry_refresh() -> None:
    assert _no_activity_limits(None) == [5 * H]
    assert _no_activity_limits(1.5) == [pytest.approx(0.6 * 5 * H)]  # marked at 06:30


def test_retune_changes_thresholds_only() -> None:
    routine = RoutineMonitor("r1", RoutineParams.for_care_level(2))
    routine.retune(tune_routine(routine.params, TABLE["high_risk"]))
    assert routine.params.no_activity_s == pytest.approx(3 * H)
    with pytest.raises(ValueError, match="thresholds only"):
        routine.retune(replace(routine.params, utc_offset_s=0.0))
    home = HomeActivity("r1", HomeActivityParams.for_care_level(2))
    home.retune(tune_home_activity(home.p, TABLE["high_risk"]))
    assert home.routine()[3][0] == pytest.approx(0.6 * 4 * H)  # cold start: 4 h -> 2.4 h
    with pytest.raises(ValueError, match="thresholds only"):
        home.retune(replace(home.p, history_days=7))
