"""Days away with the family (随家人外出) are not learned from (pure; no database).

The family's away periods reach the learners as data (``set_away_periods``): the bed
routine marks every site-local day overlapping one as an away day (not learned from, not a
cold-start day, the stored row rewritten), the home-activity routine drops those days."""

from __future__ import annotations

from analytics.home_activity import HomeActivity, HomeActivityParams
from analytics.routine import (
    DaySummary,
    RoutineMonitor,
    RoutineParams,
    day_start,
    days_overlapping,
)
from tests.unit.test_home_activity import day, routine_day, run

OFF = 8 * 3600.0
H = 3600.0
FIRST = 20_400  # a local day number (2025-11-09)


def history(n_home: int, away: range) -> list[DaySummary]:
    """``n_home`` days up at 07:00-07:09, then the ``away`` days up at 10:00."""
    days = [DaySummary(day=FIRST + i, rise_s=7 * H + i * 60, bed_s=21.5 * H) for i in range(n_home)]
    days += [DaySummary(day=d, rise_s=10 * H, bed_s=23.5 * H) for d in away]
    return days


def test_days_overlapping_are_site_local_days_end_exclusive() -> None:
    start, end = day_start(FIRST, OFF), day_start(FIRST + 2, OFF)  # two whole local days
    assert days_overlapping([(start, end)], OFF) == {FIRST, FIRST + 1}
    assert days_overlapping([(start + 23 * H, start + 25 * H)], OFF) == {FIRST, FIRST + 1}
    assert days_overlapping([(end, start), (start, start)], OFF) == frozenset()


def test_family_away_days_are_left_out_of_the_learned_rise_time() -> None:
    p = RoutineParams.for_care_level(2, utc_offset_s=OFF)
    away = range(FIRST + 6, FIRST + 14)  # eight days away, the most recent ones
    skewed = RoutineMonitor("r0", p, history=history(6, away))
    assert skewed.routine.rise_median_s >= 9 * H  # what the learner did before

    mon = RoutineMonitor("r0", p, history=history(6, away))
    period = (day_start(away[0], OFF), day_start(away[-1] + 1, OFF))
    mon.set_away_periods([period])
    r = mon.routine
    assert r.rise_learned and r.n_days == 6  # the away days are not counted either
    assert 7 * H <= r.rise_median_s <= 7.1 * H
    assert r.rise_late_s < 7.2 * H
    rewritten = mon.drain_summaries()  # the stored rows are rewritten as away days
    assert sorted(d.day for d in rewritten) == list(away)
    assert all(d.away for d in rewritten)
    mon.set_away_periods([period])  # unchanged: nothing again
    assert mon.drain_summaries() == []


def test_away_days_do_not_count_towards_the_cold_start() -> None:
    p = RoutineParams.for_care_level(2, utc_offset_s=OFF)
    away = range(FIRST + 3, FIRST + 7)
    mon = RoutineMonitor("r0", p)
    mon.set_away_periods([(day_start(away[0], OFF), day_start(away[-1] + 1, OFF))])
    mon.load_history(history(3, away))  # 3 days at home + 4 away: still not learned
    assert not mon.routine.rise_learned and mon.routine.n_days == 3


def test_a_live_day_summary_overlapping_a_family_period_is_an_away_day() -> None:
    p = RoutineParams.for_care_level(2, utc_offset_s=OFF)
    mon = RoutineMonitor("r0", p)
    d = FIRST + 1
    mon.set_away_periods([(day_start(d, OFF) + 20 * H, day_start(d + 3, OFF))])
    mon.on_activity(day_start(FIRST, OFF))
    mon.check(day_start(d + 1, OFF) + 13 * H)  # days FIRST and d summarised
    summaries = {s.day: s.away for s in mon.drain_summaries()}
    assert summaries == {FIRST: False, d: True}
    assert not mon.away  # alerts are not paused by a family period (the intake holds them)


def test_home_activity_does_not_learn_from_days_away_with_the_family() -> None:
    away = (day(6, 0), day(16, 0))  # local days 6-15 with the family

    def home(periods: list[tuple[float, float]]) -> HomeActivity:
        ha = HomeActivity("r1", HomeActivityParams.for_care_level(2, utc_offset_s=OFF))
        ha.set_away_periods(periods)
        for d in range(16):
            up = 10.0 if d >= 6 else 7.0  # up at 10:00 at the family's
            run(ha, day(d + 1, 0) - 1, day(d, 0), routine_day(d, up=up))
        return ha

    skewed = home([])
    assert skewed.routine()[0] == 10 * H  # what the learner did before
    assert home([away]).routine()[0] == 7 * H  # days 1-5 only
    skewed.set_away_periods([away])  # set later: the days learned already are dropped
    assert skewed.routine()[0] == 7 * H
    cold = HomeActivity("r1", HomeActivityParams.for_care_level(2, utc_offset_s=OFF))
    cold.set_away_periods([(day(3, 0), day(16, 0))])
    for d in range(16):
        run(cold, day(d + 1, 0) - 1, day(d, 0), routine_day(d))
    assert cold.routine()[0] == cold.p.default_up_s  # 2 days at home: still the cold start
