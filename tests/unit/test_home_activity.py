"""Home activity from door and motion (analytics.home_activity), the kit's runner hooks and
the inactivity evaluation on generated households."""

from __future__ import annotations

import itertools
import json

import pytest

from analytics.home_activity import CONDITION, HomeActivity, HomeActivityParams
from analytics.types import Detection, DetectionKind
from devices.household import DEV, HELDOUT, Injected, generate_home
from devices.protocol import DeviceKind
from gateway.analysis import RegistrySnapshot, ResidentInfo
from gateway.kit.cli import add_eval_parser
from gateway.kit.evaluation import evaluate_inactivity
from gateway.registry import DeviceInfo
from tests.unit.test_analysis_runner import OFF, SITE, make_rig

H, M = 3600.0, 60.0
DAY0 = 1_767_196_800.0  # 2026-01-01 00:00 local (UTC+8)


def day(d: int, hour: float) -> float:
    return DAY0 + d * 86400.0 + hour * H


Feed = list[tuple[float, str]]


def routine_day(d: int, up: float = 7.0, bed: float = 21.5) -> Feed:
    """Motion every 20 minutes from ``up`` to ``bed`` (local hours)."""
    out: Feed = []
    t = day(d, up)
    while t <= day(d, bed):
        out.append((t, "motion"))
        t += 20 * M
    return out


def run(
    ha: HomeActivity,
    until: float,
    start: float,
    feed: Feed = (),  # type: ignore[assignment]
    step: float = 300.0,
    *,
    alive: bool = True,
) -> list[Detection]:
    """Check every ``step`` from ``start``, feeding ``feed`` (time, motion | open | close |
    bed_ok | bed_left) in time order; the sensors' heartbeats arrive unless not ``alive``."""
    out: list[Detection] = []
    pending = sorted(feed)
    i = 0
    t = start
    while t <= until:
        while i < len(pending) and pending[i][0] <= t:
            at, what = pending[i]
            if what == "motion":
                ha.on_motion(at)
            elif what in ("open", "close"):
                ha.on_door(at, what == "open")
            else:
                ha.on_bed(at, what == "bed_ok", what == "bed_ok")
            i += 1
        if alive:
            ha.on_alive(t)
        out += ha.check(t)
        t += step
    return out


def raised(found: list[Detection]) -> list[Detection]:
    return [d for d in found if not d.resolved]


def learned(days: int = 8) -> HomeActivity:
    ha = HomeActivity("r1", HomeActivityParams.for_care_level(2))
    for d in range(days):
        assert raised(run(ha, day(d + 1, 0) - 1, day(d, 0), routine_day(d))) == []
    return ha


def test_not_up_in_plain_words_then_resolved_by_motion() -> None:
    ha = learned()
    found = raised(run(ha, day(8, 11), day(8, 0)))
    assert [d.kind for d in found] == [DetectionKind.NOT_UP]
    assert "not up by 08:00; usually 07:00" in found[0].reason
    assert found[0].reason.startswith("未起床：08:00 仍未检测到活动；平时约 07:00 起床")
    assert found[0].details["condition"] == CONDITION
    cleared = run(ha, day(8, 11.5), day(8, 11.05), [(day(8, 11.1), "motion")])
    assert [(d.kind, d.resolved) for d in cleared] == [(DetectionKind.NOT_UP, True)]


def test_no_movement_since_in_the_evening_and_not_at_night() -> None:
    ha = learned()
    # the last movement at 17:00, then nothing (a collapse)
    found = raised(run(ha, day(8, 23), day(8, 0), routine_day(8, bed=17.0)))
    assert [d.kind for d in found] == [DetectionKind.NO_ACTIVITY]
    assert found[0].reason.startswith("无活动：自 17:00 起未检测到活动；")
    assert "no movement since 17:00; usually movement every" in found[0].reason
    assert found[0].started == pytest.approx(day(8, 17))
    ha2 = learned()
    # an ordinary evening, a little early: bed time is not inactivity
    assert raised(run(ha2, day(9, 6.5), day(8, 0), routine_day(8, bed=21.0))) == []


def test_a_bed_sensor_showing_a_person_breathing_keeps_no_activity_off() -> None:
    ha = learned()
    # resting in bed all afternoon, then up in the evening
    feed = [*routine_day(8, bed=12.0), (day(8, 12.1), "bed_ok")]
    feed += [(day(8, 12.1) + k * 60, "bed_ok") for k in range(1, 300)]
    feed += [(day(8, 17.2), "bed_left"), *routine_day(8, up=17.3, bed=21.5)]
    assert raised(run(ha, day(8, 23), day(8, 0), feed, step=60.0)) == []
    ha2 = learned()  # the same afternoon without the bed sensor: "no activity"
    found = raised(run(ha2, day(8, 23), day(8, 0), routine_day(8, bed=12.0), step=60.0))
    assert [d.kind for d in found] == [DetectionKind.NO_ACTIVITY]


def test_door_open_at_night_and_leaving_at_night() -> None:
    ha = learned()
    feed = [*routine_day(8), (day(9, 2) + 14 * M, "open")]
    found = raised(run(ha, day(9, 3), day(8, 0), feed))
    assert [d.kind for d in found] == [DetectionKind.DOOR_OPEN_AT_NIGHT]
    assert "front door opened at 02:14 and not closed" in found[0].reason
    closed = run(ha, day(9, 3.2), day(9, 3.05), [(day(9, 3.1), "close")])
    assert [(d.kind, d.resolved) for d in closed] == [(DetectionKind.DOOR_OPEN_AT_NIGHT, True)]
    ha2 = learned()
    # out at 01:00, the door shut behind, nobody moves inside
    feed = [*routine_day(8), (day(9, 1), "open"), (day(9, 1) + 30, "close")]
    left = raised(run(ha2, day(9, 2), day(8, 0), feed))
    assert [d.kind for d in left] == [DetectionKind.DOOR_OPEN_AT_NIGHT]
    assert "left home at 01:00 at night" in left[0].reason


def test_away_from_the_door_sequence_suppresses_not_up_until_motion() -> None:
    ha = learned()
    # left in the evening for a night away
    feed = [*routine_day(8, bed=18.0), (day(8, 18.1), "open"), (day(8, 18.1) + 30, "close")]
    assert raised(run(ha, day(9, 14), day(8, 0), feed)) == []
    away_then = ha.away
    run(ha, day(9, 14.3), day(9, 14.05), [(day(9, 14.1), "open"), (day(9, 14.1) + 20, "motion")])
    assert (away_then, ha.away) == (True, False)
    ha.set_away(day(9, 15), True)  # staff set away: nothing until they unset it
    assert raised(run(ha, day(10, 14), day(9, 15))) == []


def test_a_sensor_dropout_alerts_nothing() -> None:
    ha = learned()
    run(ha, day(8, 9), day(8, 0), routine_day(8, bed=9.0))
    # then the hub goes silent: no motion, no heartbeat
    assert raised(run(ha, day(8, 14), day(8, 9.1), alive=False)) == []


def test_care_level_sets_the_margins() -> None:
    one, five = HomeActivityParams.for_care_level(1), HomeActivityParams.for_care_level(5)
    assert one.not_up_margin_s > five.not_up_margin_s and one.gap_factor > five.gap_factor


def test_generator_is_reproducible_and_its_held_out_set_differs() -> None:
    a, b = generate_home(3, 10, DEV), generate_home(3, 10, DEV)
    assert a.events == b.events and len(a.events) > 500
    assert HELDOUT != DEV
    times = [e.t for e in a.events if e.kind == "motion"]
    assert min(y - x for x, y in itertools.pairwise(times)) >= DEV.holdoff_s
    c = generate_home(3, 30, DEV, incident=Injected.COLLAPSE, incident_day=25)
    assert c.incident is not None and c.incident.kind is Injected.COLLAPSE
    assert not [e for e in c.events if e.kind == "motion" and e.t > c.incident.t]


def test_evaluation_within_targets_on_held_out_homes() -> None:
    ev = evaluate_inactivity(homes=12, days=35, seed=20_000)
    assert ev.homes == 12 and ev.incidents == 9
    assert ev.missed_events == 0
    assert ev.false_alerts_per_home_month < 1.0
    assert ev.median_delay_min is not None and ev.p90_delay_min is not None
    assert json.loads(json.dumps(ev.to_json()))["home_days"] == ev.home_days


def test_eval_cli_prints_a_json_last_line(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers())
    args = parser.parse_args(["inactivity", "--homes", "2", "--days", "24", "--json"])
    assert args.func(args) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("homes", "home_days", "false_alerts_per_home_month", "missed_events",
                "median_delay_min", "p90_delay_min"):  # fmt: skip
        assert key in last


# -- through the analysis runner --------------------------------------------------------------


def kit_registry() -> RegistrySnapshot:
    devices = {
        dev: DeviceInfo(dev, SITE, kind, "home1", None, "r1", None)
        for dev, kind in (
            ("hub1", DeviceKind.HOME_HUB),
            ("door1", DeviceKind.DOOR_CONTACT),
            ("pir1", DeviceKind.MOTION_SENSOR),
            ("smoke1", DeviceKind.SMOKE_DETECTOR),
            ("gas1", DeviceKind.GAS_DETECTOR),
            ("leak1", DeviceKind.WATER_LEAK),
        )
    }
    return RegistrySnapshot(devices, {"r1": ResidentInfo("r1", SITE, 2)}, {SITE: OFF})


def test_runner_routes_kit_events_hazards_first_and_test_presses_raise_nothing() -> None:
    t0 = day(3, 10)
    rig = make_rig(t0, registry=kit_registry())
    s = rig.stream
    rig.run(
        t0 + 120,
        [
            s.event("smoke1", t0 + 5, "test"),
            s.event("gas1", t0 + 10, "test"),
            s.event("door1", t0 + 15, "tamper"),
            s.event("leak1", t0 + 20, "leak"),
            s.event("gas1", t0 + 30, "alarm", level="high"),
            s.event("gas1", t0 + 60, "clear"),
            s.event("leak1", t0 + 90, "low_battery", battery=8),
        ],
    )
    kinds = [(r.kind, r.resolved, r.subject) for r in rig.store.detections]
    assert (DetectionKind.SMOKE_ALARM, False, "r1") not in kinds  # a test press: recorded only
    assert kinds == [
        (DetectionKind.DEVICE_TAMPERED, False, "door1"),
        (DetectionKind.WATER_LEAK, False, "r1"),
        (DetectionKind.GAS_ALARM, False, "r1"),
        (DetectionKind.GAS_ALARM, True, "r1"),
        (DetectionKind.LOW_BATTERY, False, "leak1"),  # the runner's own path, as for all kinds
    ]
    gas = rig.store.detections[2]
    assert gas.resident_id == "r1" and gas.device_id == "gas1" and gas.details["level"] == "high"
    assert "119" in gas.reason


def test_runner_raises_not_up_for_a_kit_home_without_a_bed_sensor() -> None:
    t0 = day(0, 6)
    full = kit_registry()
    reg = RegistrySnapshot(
        {k: v for k, v in full.devices.items() if k in ("hub1", "pir1")},
        full.residents,
        full.utc_offsets,
    )
    rig = make_rig(t0, registry=reg, tune={"check_interval_s": 60.0})
    msgs = []
    for d in range(7):
        t = day(d, 7)
        while t <= day(d, 21.5):
            msgs.append(rig.stream.event("pir1", t, "motion", holdoff_s=60))
            t += 30 * M
    t = t0
    while t < day(7, 12):
        msgs += [rig.stream.heartbeat("hub1", t), rig.stream.heartbeat("pir1", t + 1)]
        t += 5 * M
    rig.run(day(7, 12), msgs, step=60.0)
    care = [r for r in rig.store.detections if not r.resolved and not r.technical]
    assert [r.kind for r in care] == [DetectionKind.NOT_UP], [
        (r.condition, r.reason, r.started) for r in care
    ]
    assert care[0].subject == "r1" and "usually 07:00" in care[0].reason


def test_simulated_kit_sensors_play_one_shared_household_stream() -> None:
    from devices.signals import DailyRoutine, ResidentModel
    from devices.virtual import KitSensorDevice, make_virtual_device

    resident = ResidentModel(DailyRoutine())
    start = DAY0 + 3 * H
    door, pir, smoke = (
        make_virtual_device(kind, dev, seed=5, resident=resident, now=start)
        for kind, dev in (
            (DeviceKind.DOOR_CONTACT, "door1"),
            (DeviceKind.MOTION_SENSOR, "pir1"),
            (DeviceKind.SMOKE_DETECTOR, "smoke1"),
        )
    )
    for dev in (door, pir, smoke):
        assert isinstance(dev, KitSensorDevice)
        dev.play_household()
    sent: dict[str, list[str]] = {"door1": [], "pir1": [], "smoke1": []}
    t = start
    while t < start + 3 * 86400:  # three days, a minute at a time
        t += 60.0
        for dev in (door, pir, smoke):
            sent[dev.id] += [o.type for o in dev.tick(t) if o.type != "heartbeat"]
    assert sent["smoke1"] == []
    assert set(sent["door1"]) == {"open", "close"}
    assert set(sent["pir1"]) == {"motion"} and len(sent["pir1"]) > 3 * 40
    quiet = make_virtual_device(DeviceKind.MOTION_SENSOR, "pir2", seed=5, resident=resident,
                                now=start)  # fmt: skip
    assert [o for o in quiet.tick(start + 86400) if o.type != "heartbeat"] == []
