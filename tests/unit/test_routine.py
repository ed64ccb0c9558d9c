"""Learned routine and inactivity alerts, on synthetic days of bed and activity data."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pytest

from analytics.routine import (
    DaySummary,
    Routine,
    RoutineMonitor,
    RoutineParams,
    day_start,
    format_clock,
    format_duration,
    in_daily_window,
    local_day,
    summarize_history,
    weekday,
    window_overlap_s,
)
from analytics.types import Detection, DetectionKind

OFF = 8 * 3600.0
H = 3600.0
M = 60.0
MONDAY = 19737  # 2024-01-15, a Monday (local day number)


def at(day: int, hh: float, mm: float = 0.0) -> float:
    """Epoch time of local hh:mm on local day ``day`` (hh may exceed 24)."""
    return day_start(day, OFF) + hh * H + mm * M


def learned_history(first: int = MONDAY - 14, n: int = 14) -> list[DaySummary]:
    """Two weeks: weekdays up 06:40-07:00, weekends lie in until 08:00-08:20, bed ~21:30."""
    rng = np.random.default_rng(7)
    days = []
    for d in range(first, first + n):
        if weekday(d) >= 5:
            rise = 8 * H + float(rng.uniform(0, 20)) * M
        else:
            rise = 6 * H + 40 * M + float(rng.uniform(0, 20)) * M
        bed = 21 * H + 30 * M + float(rng.uniform(-15, 15)) * M
        days.append(DaySummary(day=d, rise_s=rise, bed_s=bed))
    return days


Event = tuple[float, Callable[[], None]]


def drive(
    mon: RoutineMonitor,
    t0: float,
    t1: float,
    events: Iterable[Event] = (),
    *,
    step: float = 10.0,
    bed_heartbeat: bool = True,
) -> list[Detection]:
    """Run the monitor from t0 to t1: events in time order, check() every ``step`` seconds,
    bed heartbeats every minute (so the bed state stays known)."""
    pending = sorted(events, key=lambda e: e[0])
    out: list[Detection] = []
    i = 0
    t = t0
    while t <= t1:
        while i < len(pending) and pending[i][0] <= t:
            pending[i][1]()
            i += 1
        if bed_heartbeat and int(t - t0) % 60 == 0:
            mon.on_bed_heartbeat(t)
        out.extend(mon.check(t))
        t += step
    return out


def of_kind(dets: list[Detection], kind: DetectionKind) -> tuple[list[Detection], list[Detection]]:
    raised = [d for d in dets if d.kind is kind and not d.resolved]
    resolved = [d for d in dets if d.kind is kind and d.resolved]
    return raised, resolved


def _call(fn: Callable[[float], None], t: float) -> Callable[[], None]:
    return lambda: fn(t)


def _steps(mon: RoutineMonitor, t: float, n: int) -> Callable[[], None]:
    return lambda: mon.on_steps(t, n)


def in_bed_since(mon: RoutineMonitor, t: float) -> None:
    mon.on_bed_exit(t - 1.0)  # sets the state cleanly: out, then in
    mon.on_bed_entry(t)


# ----------------------------------------------------------------------------- helpers


def test_local_time_helpers() -> None:
    assert weekday(MONDAY) == 0
    assert local_day(at(MONDAY, 0, 0), OFF) == MONDAY
    assert local_day(at(MONDAY, 23, 59), OFF) == MONDAY
    assert format_clock(7 * H + 10 * M) == "07:10"
    assert format_clock(24 * H + 30 * M) == "00:30"
    assert format_duration(40) == "40 s"
    assert format_duration(25 * M) == "25 min"
    assert format_duration(2 * H + 10 * M) == "2 h 10 min"
    assert in_daily_window(23 * H, 21 * H, 6 * H)
    assert in_daily_window(2 * H, 21 * H, 6 * H)
    assert not in_daily_window(12 * H, 21 * H, 6 * H)
    # 07:00-21:00 window over 3 days from noon of day 0 to noon of day 3: 9 + 14 + 14 + 5 h
    got = window_overlap_s(at(MONDAY, 12), at(MONDAY + 3, 12), 7 * H, 21 * H, OFF)
    assert got == pytest.approx((9 + 14 + 14 + 5) * H)
    # wrapping window 21:00-06:00 over one full day
    assert window_overlap_s(at(MONDAY, 0), at(MONDAY + 1, 0), 21 * H, 6 * H, OFF) == pytest.approx(
        9 * H
    )


# ----------------------------------------------------------------------------- learning


def test_learned_routine_is_robust_and_ignores_away_days() -> None:
    p = RoutineParams.for_care_level(2)
    days = learned_history()
    # an odd sick day and an away day with absurd times
    days[3] = DaySummary(day=days[3].day, rise_s=11 * H, bed_s=21 * H)
    days.append(DaySummary(day=MONDAY, rise_s=12.5 * H, bed_s=26 * H, away=True))
    r = Routine.learn(days, p)
    assert r.rise_learned and r.bed_learned and r.rises_daily
    assert r.n_days == 14
    assert 6.6 * H <= r.rise_median_s <= 7.1 * H
    assert r.rise_late_s <= 8.4 * H  # the 11:00 day does not drag the deadline
    assert 21 * H <= r.bed_median_s <= 22 * H
    assert r.weekday_rise_late_s is not None and r.weekday_rise_late_s < 7.5 * H
    # the weekend uses the overall spread, which includes the lie-ins
    saturday = MONDAY + 5
    assert r.rise_for(saturday)[1] > 8 * H


def test_cold_start_defaults_depend_on_care_level() -> None:
    few = learned_history(n=3)
    p1, p4, p5 = (RoutineParams.for_care_level(k) for k in (1, 4, 5))
    r1 = Routine.learn(few, p1)
    assert not r1.rise_learned and r1.rise_median_s == p1.default_rise_s
    assert p4.not_up_margin_s < p1.not_up_margin_s
    assert p4.night_exit_tolerance_s < p1.night_exit_tolerance_s
    assert p4.no_activity_s < p1.no_activity_s
    assert not p5.cold_start_not_up
    # overrides per resident
    assert RoutineParams.for_care_level(3, not_up_margin_s=123.0).not_up_margin_s == 123.0


# ----------------------------------------------------------------------------- NOT_UP


def test_not_up_raised_once_with_plain_reason_and_resolved_once() -> None:
    p = RoutineParams.for_care_level(2)
    mon = RoutineMonitor("r1", p, history=learned_history())
    wed = MONDAY + 2
    in_bed_since(mon, at(wed - 1, 21, 30))
    deadline = mon.not_up_deadline(wed)
    assert 7.5 * H < deadline < 8.6 * H  # weekday: ~07:00 + 60 min margin
    dets = drive(
        mon,
        at(wed - 1, 21, 31),
        at(wed, 12),
        [(at(wed, 10, 30), lambda: mon.on_bed_exit(at(wed, 10, 30)))],
    )
    raised, resolved = of_kind(dets, DetectionKind.NOT_UP)
    assert len(raised) == 1 and len(resolved) == 1
    assert raised[0].time == pytest.approx(at(wed, 0) + deadline)
    assert raised[0].reason.startswith("usually up by ")
    assert f"no bed exit by {format_clock(deadline)}" in raised[0].reason
    assert resolved[0].time == at(wed, 10, 30)
    assert resolved[0].started == raised[0].started
    assert mon.open_conditions() == []
    # nothing else fired: the night had no exit, activity was in bed
    assert {d.kind for d in dets} == {DetectionKind.NOT_UP}


def test_weekend_lie_in_within_learned_spread_does_not_alarm() -> None:
    mon = RoutineMonitor("r1", RoutineParams.for_care_level(2), history=learned_history())
    sat = MONDAY + 5
    in_bed_since(mon, at(sat - 1, 21, 30))
    dets = drive(
        mon,
        at(sat - 1, 21, 31),
        at(sat, 12),
        [(at(sat, 8, 40), lambda: mon.on_bed_exit(at(sat, 8, 40)))],
    )
    assert of_kind(dets, DetectionKind.NOT_UP) == ([], [])
    # the same lie-in on a weekday does alarm
    mon2 = RoutineMonitor("r1", RoutineParams.for_care_level(2), history=learned_history())
    tue = MONDAY + 1
    in_bed_since(mon2, at(tue - 1, 21, 30))
    dets2 = drive(
        mon2,
        at(tue - 1, 21, 31),
        at(tue, 12),
        [(at(tue, 8, 40), lambda: mon2.on_bed_exit(at(tue, 8, 40)))],
    )
    assert len(of_kind(dets2, DetectionKind.NOT_UP)[0]) == 1


def test_brief_morning_exit_does_not_count_as_up() -> None:
    mon = RoutineMonitor("r1", RoutineParams.for_care_level(2), history=learned_history())
    wed = MONDAY + 2
    in_bed_since(mon, at(wed - 1, 21, 30))
    dets = drive(
        mon,
        at(wed - 1, 21, 31),
        at(wed, 11),
        [
            (at(wed, 6, 50), lambda: mon.on_bed_exit(at(wed, 6, 50))),
            (at(wed, 6, 58), lambda: mon.on_bed_entry(at(wed, 6, 58))),
        ],
    )
    raised, _ = of_kind(dets, DetectionKind.NOT_UP)
    assert len(raised) == 1
    assert "only up briefly" in raised[0].reason


def test_not_up_needs_fresh_bed_data_and_respects_care_level_5() -> None:
    wed = MONDAY + 2
    # bed sensor silent since the evening: the bed state is unknown, no NOT_UP
    mon = RoutineMonitor("r1", RoutineParams.for_care_level(2), history=learned_history())
    in_bed_since(mon, at(wed - 1, 21, 30))
    dets = drive(mon, at(wed - 1, 21, 31), at(wed, 12), bed_heartbeat=False)
    assert of_kind(dets, DetectionKind.NOT_UP) == ([], [])
    # care level 5 without a learned routine (likely bedridden): no NOT_UP
    mon5 = RoutineMonitor("r5", RoutineParams.for_care_level(5))
    in_bed_since(mon5, at(wed - 1, 21, 30))
    dets5 = drive(mon5, at(wed - 1, 21, 31), at(wed, 12))
    assert of_kind(dets5, DetectionKind.NOT_UP) == ([], [])
    # care level 2 cold start: alarms with the default rise time and says it is not learned
    mon2 = RoutineMonitor("r2", RoutineParams.for_care_level(2))
    in_bed_since(mon2, at(wed - 1, 21, 30))
    dets2 = drive(mon2, at(wed - 1, 21, 31), at(wed, 12))
    raised, _ = of_kind(dets2, DetectionKind.NOT_UP)
    assert len(raised) == 1 and "not learned yet" in raised[0].reason


# ----------------------------------------------------------------------------- night exits


def _night(mon: RoutineMonitor, day: int, events: list[Event]) -> list[Detection]:
    in_bed_since(mon, at(day, 21, 30))
    return drive(mon, at(day, 21, 31), at(day + 1, 6, 0), events)


def test_night_toilet_visit_returning_in_time_does_not_alarm() -> None:
    mon = RoutineMonitor("r1", RoutineParams.for_care_level(4), history=learned_history())
    d = MONDAY + 1
    tol = mon.params.night_exit_tolerance_s
    back = at(d + 1, 2) + tol - 2 * M
    dets = _night(
        mon,
        d,
        [
            (at(d + 1, 2), lambda: mon.on_bed_exit(at(d + 1, 2))),
            (back, lambda: mon.on_bed_entry(back)),
        ],
    )
    assert dets == []


def test_night_exit_not_back_raised_once_and_resolved_on_return() -> None:
    mon = RoutineMonitor("r1", RoutineParams.for_care_level(4), history=learned_history())
    d = MONDAY + 1
    tol = mon.params.night_exit_tolerance_s
    dets = _night(
        mon,
        d,
        [
            (at(d + 1, 2), lambda: mon.on_bed_exit(at(d + 1, 2))),
            (at(d + 1, 3), lambda: mon.on_bed_entry(at(d + 1, 3))),
        ],
    )
    raised, resolved = of_kind(dets, DetectionKind.NIGHT_BED_EXIT)
    assert len(raised) == 1 and len(resolved) == 1
    assert raised[0].time == pytest.approx(at(d + 1, 2) + tol)
    assert raised[0].started == at(d + 1, 2)
    assert "02:00" in raised[0].reason and "night" in raised[0].reason
    assert resolved[0].time == at(d + 1, 3) and "back in bed" in resolved[0].reason


def test_usual_morning_rise_is_not_a_night_exit() -> None:
    mon = RoutineMonitor("r1", RoutineParams.for_care_level(4), history=learned_history())
    d = MONDAY + 1
    in_bed_since(mon, at(d, 21, 30))
    rise = at(d + 1, 6, 45)
    dets = drive(mon, at(d, 21, 31), at(d + 1, 9), [(rise, lambda: mon.on_bed_exit(rise))])
    assert dets == []


def test_presence_flicker_in_samples_is_not_a_bed_exit() -> None:
    mon = RoutineMonitor("r1", RoutineParams.for_care_level(4), history=learned_history())
    d = MONDAY + 1
    t0 = at(d + 1, 1)
    dets: list[Detection] = []
    for i in range(3 * 3600):
        t = t0 + i
        # presence drops for 4 s every 10 min (sensor artefact), movement small
        present = not (i % 600 < 4 and i > 0)
        mon.on_bed_sample(t, present, 0.1 if i % 300 == 0 else 0.0)
        if i % 10 == 0:
            dets.extend(mon.check(t))
    assert dets == []
    assert mon.in_bed is True and mon.bed_since == t0  # no exit/entry was made of it
    # a real exit in samples is seen (after the debounce) and alarms at night
    t1 = t0 + 3 * 3600
    for i in range(3600):
        mon.on_bed_sample(t1 + i, False, 0.0)
        if i % 10 == 0:
            dets.extend(mon.check(t1 + i))
    raised, _ = of_kind(dets, DetectionKind.NIGHT_BED_EXIT)
    assert len(raised) == 1
    assert raised[0].started == pytest.approx(t1)


# ----------------------------------------------------------------------------- no activity


def test_no_activity_counts_waking_time_only_raised_once_resolved_by_steps() -> None:
    p = RoutineParams.for_care_level(2)  # 5 h of waking time
    mon = RoutineMonitor("home-7", p, history=learned_history())
    d = MONDAY + 1
    last = at(d, 19)
    wake = mon.routine.rise_median_s
    # a wearable-only resident: last steps at 19:00, nothing overnight
    dets = drive(
        mon,
        at(d, 18),
        at(d + 1, 12),
        [(at(d, 18), lambda: mon.on_steps(at(d, 18), 30)), (last, lambda: mon.on_steps(last, 12))],
        bed_heartbeat=False,
    )
    raised, resolved = of_kind(dets, DetectionKind.NO_ACTIVITY)
    assert len(raised) == 1 and resolved == []
    waking_before_night = mon.routine.bed_median_s - 19 * H
    expected = at(d + 1, 0) + wake + (p.no_activity_s - waking_before_night)
    assert raised[0].time == pytest.approx(expected, abs=11)
    assert raised[0].started == last
    assert "19:00" in raised[0].reason
    # steps resolve it once; zero-step reports are not activity
    t = at(d + 1, 12, 5)
    mon.on_steps(t - 60, 0)
    assert mon.check(t - 60) == []
    mon.on_steps(t, 25)
    after = mon.check(t)
    assert [(x.kind, x.resolved) for x in after] == [(DetectionKind.NO_ACTIVITY, True)]
    assert drive(mon, t + 10, t + 2 * H, bed_heartbeat=False) == []


def test_heartbeats_are_not_activity_but_button_presses_are() -> None:
    p = RoutineParams.for_care_level(3, no_activity_s=2 * H)
    mon = RoutineMonitor("home-8", p, history=learned_history())
    d = MONDAY + 2
    presses = [at(d, 9) + k * 90 * M for k in range(5)]
    dets = drive(
        mon,
        at(d, 9),
        at(d, 16),
        [(t, _call(mon.on_activity, t)) for t in presses],
        bed_heartbeat=True,
    )
    assert dets == []  # a press every 90 min keeps a 2 h limit quiet
    dets = drive(mon, at(d, 16), at(d, 20), bed_heartbeat=True)
    assert len(of_kind(dets, DetectionKind.NO_ACTIVITY)[0]) == 1


# ----------------------------------------------------------------------------- motionless


def _bed_samples(
    mon: RoutineMonitor, t0: float, seconds: int, movement: Callable[[int], float]
) -> list[Detection]:
    out: list[Detection] = []
    for i in range(seconds):
        t = t0 + i
        mon.on_bed_sample(t, True, movement(i))
        if i % 10 == 0:
            out.extend(mon.check(t))
    return out


def test_motionless_in_bed_daytime_raised_once_and_resolved_once() -> None:
    p = RoutineParams.for_care_level(2, no_activity_enabled=False)
    mon = RoutineMonitor("r1", p, history=learned_history())
    d = MONDAY + 2
    t0 = at(d, 13)
    dets = _bed_samples(mon, t0, 4 * 3600, lambda i: 0.3 if i < 20 else 0.01)
    dets += _bed_samples(mon, t0 + 4 * 3600, 600, lambda i: 0.3 if i == 100 else 0.0)
    raised, resolved = of_kind(dets, DetectionKind.MOTIONLESS_IN_BED)
    assert len(raised) == 1 and len(resolved) == 1
    assert raised[0].started == pytest.approx(t0 + 19)
    assert raised[0].time == pytest.approx(t0 + 19 + p.motionless_day_s)
    assert "without movement since 13:00" in raised[0].reason
    assert resolved[0].time == pytest.approx(t0 + 4 * 3600 + 100)


def test_small_regular_movements_keep_motionless_quiet() -> None:
    p = RoutineParams.for_care_level(2, no_activity_enabled=False)
    mon = RoutineMonitor("r1", p, history=learned_history())
    d = MONDAY + 2
    # sleeping: a small movement (0.1) every 20 minutes through the night
    dets = _bed_samples(mon, at(d, 22), 8 * 3600, lambda i: 0.1 if i % 1200 == 0 else 0.0)
    assert dets == []


# ----------------------------------------------------------------------------- away mode


def test_away_mode_pauses_alerts_resolves_open_ones_and_is_not_learned() -> None:
    p = RoutineParams.for_care_level(2)
    mon = RoutineMonitor("r1", p, history=learned_history())
    wed = MONDAY + 2
    in_bed_since(mon, at(wed - 1, 21, 30))
    dets = drive(mon, at(wed - 1, 21, 31), at(wed, 9, 30))
    assert len(of_kind(dets, DetectionKind.NOT_UP)[0]) == 1
    # staff mark the resident in hospital: the open NOT_UP is resolved, nothing else fires
    mon.set_away(at(wed, 9, 31), True)
    dets = drive(mon, at(wed, 9, 31), at(wed + 3, 12))
    assert [(x.kind, x.resolved) for x in dets] == [(DetectionKind.NOT_UP, True)]
    assert "away" in dets[0].reason
    summaries = mon.drain_summaries()
    assert summaries and all(s.away for s in summaries if s.day >= wed)
    before = mon.routine
    assert before.n_days == 14
    mon.set_away(at(wed + 3, 12, 1), False)
    # back home at noon: no NOT_UP for today, inactivity clock restarts at return
    dets = drive(mon, at(wed + 3, 12, 1), at(wed + 3, 15))
    assert dets == []


# ----------------------------------------------------------------------------- summaries


def _week_of_events(first: int, n: int) -> tuple[list[float], list[float]]:
    exits, entries = [], []
    for k in range(n):
        d = first + k
        entries.append(at(d - 1, 21, 30 + k))
        exits.append(at(d, 2, 10))  # toilet
        entries.append(at(d, 2, 18))
        exits.append(at(d, 6, 45 + k))  # rise
        entries.append(at(d, 13))  # nap
        exits.append(at(d, 13, 40))
    return exits, entries


def test_live_summaries_match_batch_summaries_and_relearn() -> None:
    p = RoutineParams.for_care_level(2)
    first = MONDAY
    exits, entries = _week_of_events(first, 8)
    mon = RoutineMonitor("r1", p)
    events: list[Event] = [(t, _call(mon.on_bed_exit, t)) for t in exits]
    events += [(t, _call(mon.on_bed_entry, t)) for t in entries]
    events += [(at(first + k, 10), _steps(mon, at(first + k, 10), 40)) for k in range(8)]
    drive(mon, at(first - 1, 21), at(first + 7, 18), events, step=60.0)
    live = {s.day: s for s in mon.drain_summaries()}
    assert set(live) == set(range(first, first + 7))
    batch = summarize_history(
        np.array(exits),
        np.array(entries),
        np.array([at(first + k, 10) for k in range(8)]),
        p,
        first_day=first,
        last_day=first + 6,
        initial_in_bed=False,
    )
    for s in batch:
        got = live[s.day]
        k = s.day - first
        assert s.rise_s == pytest.approx(6 * H + (45 + k) * M)
        assert got.rise_s == pytest.approx(s.rise_s)
        assert s.bed_s == pytest.approx(21 * H + (31 + k) * M)  # the next evening's entry
        assert got.bed_s == pytest.approx(s.bed_s)
        assert sum(got.active_minutes) == sum(s.active_minutes) > 0
    # seven learned days: the live monitor now uses its own routine
    assert mon.routine.rise_learned
    assert mon.routine.rise_median_s == pytest.approx(6 * H + 48 * M)
    # a monitor rebuilt from the stored summaries has the same routine
    rebuilt = RoutineMonitor("r1", p, history=batch)
    assert rebuilt.routine == Routine.learn(batch, p)
    assert rebuilt.not_up_deadline(first + 9) == pytest.approx(mon.not_up_deadline(first + 9))
