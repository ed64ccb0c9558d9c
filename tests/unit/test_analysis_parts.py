"""The analysis runner's parts on their own: saving day rows, dedupe/reconcile of
conditions, and the routing tables (the runner's behaviour is in test_analysis_runner)."""

from __future__ import annotations

import math

import pytest

from analytics.routine import DaySummary
from analytics.types import Detection, DetectionKind
from analytics.vitals import HR_BINS, RR_BINS
from devices.protocol import KIT_KINDS, AccelBatch, DeviceKind, Event, Reading, State
from gateway.analysis import DetectionRecord, VitalsDay
from gateway.analysis.conditions import OpenConditions
from gateway.analysis.dayrows import DayRows
from gateway.analysis.routing import (
    DEVICE_KINDS,
    EVENT_ROUTES,
    HEALTH_ONLY,
    MESSAGE_ROUTES,
    READING_ROUTES,
    role,
)
from gateway.settings import AnalysisSettings

OFF = 8 * 3600.0
DAY = 19737  # 2024-01-15, local day number at UTC+8
NOON = DAY * 86400.0 - OFF + 12 * 3600.0  # 12:00 local


# -------------------------------------------------------------------------- day rows


def test_vitals_counter_counts_usable_readings_of_the_local_day() -> None:
    rows = DayRows()
    c = rows.counter("r1", OFF)
    c.count(NOON, 61.6, 14.2)
    c.count(NOON + 1, 300.0, None)  # heart rate out of the valid range: not counted
    c.count(NOON + 2, None, 99.0)  # breathing rate beyond the histogram: not counted
    assert not rows  # nothing queued before a save or a new day
    rows.save_vitals()
    [day] = rows.vitals
    assert (day.subject, day.day) == ("r1", DAY)
    assert len(day.heart_rate) == HR_BINS and len(day.breathing_rate) == RR_BINS
    assert day.heart_rate[62] == 1 and sum(day.heart_rate) == 1
    assert day.breathing_rate[14] == 1 and sum(day.breathing_rate) == 1


def test_a_new_local_day_closes_the_last_and_late_readings_are_dropped() -> None:
    rows = DayRows()
    c = rows.counter("r1", OFF)
    c.count(NOON, 60.0, 15.0)
    c.count(NOON + 86400.0, 70.0, 16.0)  # the next local day: the first is queued
    c.count(NOON, 80.0, 17.0)  # a late reading of the closed day
    assert [(v.day, v.heart_rate[60]) for v in rows.vitals] == [(DAY, 1)]
    rows.save_vitals()
    by_day = {v.day: v for v in rows.vitals}
    assert by_day[DAY + 1].heart_rate[70] == 1
    assert by_day[DAY + 1].heart_rate[80] == 0
    assert by_day[DAY].heart_rate[80] == 0


def test_a_later_row_of_the_same_day_replaces_an_unwritten_one_and_clear_empties() -> None:
    rows = DayRows()
    c = rows.counter("r1", OFF)
    c.count(NOON, 60.0, 15.0)
    rows.save_vitals()
    c.count(NOON + 1, 60.0, 15.0)
    rows.save_vitals()
    [day] = rows.vitals
    assert day.heart_rate[60] == 2
    summary = DaySummary(DAY, 7 * 3600.0, 22 * 3600.0, (0.0,) * 24, False, True)
    rows.add_routine("r1", summary)
    rows.add_routine("r1", summary)
    assert [d.summary for d in rows.routine] == [summary]
    rows.clear()
    assert not rows and rows.vitals == [] and rows.routine == []
    rows.save_vitals()  # nothing new since the last save
    assert rows.vitals == []


def test_counting_resumes_from_todays_stored_row() -> None:
    rows = DayRows()
    c = rows.counter("r1", OFF)
    hr = [0] * 100
    hr[60] = 5
    stored = [VitalsDay("r1", DAY - 1, (1,) * 10, ()), VitalsDay("r1", DAY, tuple(hr), ())]
    c.resume(stored, NOON)
    c.count(NOON + 10, 60.0, None)
    rows.save_vitals()
    [day] = rows.vitals
    assert day.day == DAY and day.heart_rate[60] == 6
    assert dict(DayRows.by_subject(stored)) == {"r1": stored}


def test_the_local_day_follows_the_subjects_site_offset() -> None:
    rows = DayRows()
    utc_midnight = DAY * 86400.0
    rows.counter("cn", OFF).count(utc_midnight - 3600.0, 60.0, None)  # 07:00 local, DAY
    rows.counter("uk", 0.0).count(utc_midnight - 3600.0, 60.0, None)  # 23:00, DAY - 1
    rows.save_vitals()
    assert {(v.subject, v.day) for v in rows.vitals} == {("cn", DAY), ("uk", DAY - 1)}


# -------------------------------------------------------------------- open conditions


def _rec(
    kind: DetectionKind = DetectionKind.LOW_BATTERY,
    *,
    t: float = 1000.0,
    started: float | None = None,
    resolved: bool = False,
) -> DetectionRecord:
    det = Detection(kind, "dev-1", t, "why", {"battery": 10}, started, resolved)
    return DetectionRecord.of(det, site_id="s", resident_id=None, device_id="dev-1",
                              location_id=None)  # fmt: skip


def test_a_second_raise_of_an_open_condition_is_its_continuation() -> None:
    continued: list[int] = []
    cond = OpenConditions(on_continued=lambda: continued.append(1))
    first = _rec(started=900.0)
    assert cond.admit(first) == first
    assert cond.admit(_rec(t=2000.0, started=1900.0)) is None
    assert continued == [1] and len(cond) == 1 and cond.is_open(first.key)


def test_a_resolution_is_written_against_its_raise_and_without_one_dropped() -> None:
    cond = OpenConditions()
    assert cond.admit(_rec(resolved=True)) is None  # nothing open
    cond.admit(_rec(started=900.0))
    out = cond.admit(_rec(t=3000.0, started=2500.0, resolved=True))
    assert out is not None and out.resolved and out.started == 900.0 and out.time == 3000.0
    assert len(cond) == 0


def test_instants_pass_through_every_time() -> None:
    cond = OpenConditions()
    fall = _rec(DetectionKind.FALL)
    assert cond.admit(fall) == fall and cond.admit(fall) == fall
    assert len(cond) == 0


def test_reconcile_resolves_restored_conditions_not_raised_again() -> None:
    cond = OpenConditions()
    stale = _rec(started=100.0)
    again = DetectionRecord.of(
        Detection(DetectionKind.DEVICE_OFFLINE, "dev-2", 200.0, "silent", {}, 150.0),
        site_id="s", resident_id=None, device_id="dev-2", location_id=None,
    )  # fmt: skip
    cond.restore([stale, again])
    assert cond.admit(again) is None  # re-established after the restart
    [out] = cond.reconcile(5000.0, 1800.0)
    assert out.key == stale.key and out.resolved and out.time == 5000.0
    assert out.started == 100.0 and out.details["reconciled"] is True
    assert "not re-established within 30 min after the gateway restarted" in out.reason
    assert cond.admit(out) == out and not cond.is_open(stale.key)
    assert cond.reconcile(6000.0, 1800.0) == []  # `again` was raised in this run


# ---------------------------------------------------------------------------- routing


def test_every_device_kind_has_one_role_and_its_heartbeat_setting() -> None:
    s = AnalysisSettings()
    assert set(DEVICE_KINDS) == set(DeviceKind)
    assert role(DeviceKind.WEARABLE).wearable and not role(DeviceKind.WEARABLE).bed
    assert role(DeviceKind.BED_SENSOR).bed and not role(DeviceKind.BED_SENSOR).wearable
    assert role(DeviceKind.BUTTON) is not HEALTH_ONLY
    heartbeats = {k: r.heartbeat_s(s) for k, r in DEVICE_KINDS.items()}
    assert heartbeats == {
        DeviceKind.BUTTON: s.heartbeat_button_s,
        DeviceKind.BED_SENSOR: s.heartbeat_bed_sensor_s,
        DeviceKind.WEARABLE: s.heartbeat_wearable_s,
        # the safe-home kit: a heartbeat setting of its own, its events seen by the kit first
        **{kind: s.heartbeat_kit_s for kind in KIT_KINDS},
    }
    assert {k for k, r in DEVICE_KINDS.items() if r.kit} == KIT_KINDS


def test_every_message_class_and_known_type_has_a_handler() -> None:
    assert set(MESSAGE_ROUTES) == {AccelBatch, Reading, Event, State}
    assert set(READING_ROUTES) == {"vitals", "steps", "heartbeat"}
    alarms = {"press", "long_press", "sos"}
    assert {EVENT_ROUTES[t] for t in alarms} == {EVENT_ROUTES["press"]}
    assert alarms | {"cancel", "fall", "bed_exit", "bed_entry", "worn", "not_worn",
                     "low_battery"} == set(EVENT_ROUTES)  # fmt: skip


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_records_store_non_finite_details_as_null(value: float) -> None:
    det = Detection(DetectionKind.VITALS_ABNORMAL, "r1", 1.0, "x", {"hr": value})
    rec = DetectionRecord.of(det, site_id=None, resident_id="r1", device_id=None,
                             location_id=None)  # fmt: skip
    assert rec.details["hr"] is None
