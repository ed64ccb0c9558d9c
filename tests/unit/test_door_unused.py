"""Door not opened for days (多日未开门): the pure detector, then through the runner on a
virtual clock with the threshold from the injected ``kit`` settings (a fraction of a day)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from analytics.door_unused import CONDITION, DAY_S, DoorUnused, DoorUnusedParams
from analytics.types import Detection, DetectionKind
from gateway.analysis import AnalysisRunner, MemoryStore, RegistrySnapshot, ResidentInfo
from gateway.replay import VirtualClock
from gateway.settings.kit import KitSettings
from tests.unit.test_analysis_runner import OFF, SITE, Rig, Stream, settings
from tests.unit.test_home_activity import day, kit_registry

H = 3600.0
P = DoorUnusedParams(unused_s=3 * DAY_S, alive_s=H, utc_offset_s=OFF)


def alive_run(door: DoorUnused, start: float, end: float, step: float = 600.0) -> list[Detection]:
    """Heartbeats of the door contact and a check every ``step`` from ``start`` to ``end``."""
    found: list[Detection] = []
    t = start
    while t <= end:
        door.on_alive(t)
        found += door.check(t)
        t += step
    return found


def test_three_days_without_an_opening_raise_once_and_an_opening_resolves() -> None:
    t0 = day(0, 9)
    door = DoorUnused("r1", P)
    door.on_door(t0, True, "door1")
    door.on_door(t0 + 60, False, "door1")
    found = alive_run(door, t0, t0 + 3 * DAY_S + 2 * H)
    assert [(d.kind, d.resolved) for d in found] == [(DetectionKind.DOOR_UNUSED, False)]
    det = found[0]
    assert det.started == t0 and t0 + 3 * DAY_S <= det.time < t0 + 3 * DAY_S + 600
    assert det.details["condition"] == CONDITION and det.details["last_opened"] == t0
    assert det.details["unused_days"] == 3.0
    assert "3 天未开门" in det.reason and "door not opened for 3 days" in det.reason
    assert door.raised
    door.on_door(t0 + 3 * DAY_S + 3 * H, True, "door1")
    resolved = door.check(t0 + 3 * DAY_S + 3 * H + 1)
    assert [(d.kind, d.resolved) for d in resolved] == [(DetectionKind.DOOR_UNUSED, True)]
    assert not door.raised


def test_an_open_door_a_silent_sensor_and_an_away_period_raise_nothing() -> None:
    t0 = day(0, 9)
    open_now = DoorUnused("r1", P)
    open_now.on_door(t0, True, "door1")  # opened, never closed: not "unused"
    assert alive_run(open_now, t0, t0 + 4 * DAY_S) == []
    # Two doors: the back door closing does not close the front door.
    two = DoorUnused("r1", P)
    two.on_door(t0, True, "front")
    two.on_door(t0 + 10, True, "back")
    two.on_door(t0 + 20, False, "back")
    assert alive_run(two, t0, t0 + 4 * DAY_S) == []

    silent = DoorUnused("r1", P)
    silent.on_door(t0, True, "door1")
    silent.on_door(t0 + 60, False, "door1")
    assert silent.check(t0 + 4 * DAY_S) == []  # no sign of life for days: cannot tell

    away = DoorUnused("r1", P)
    away.on_door(t0, True, "door1")
    away.on_door(t0 + 60, False, "door1")
    back = t0 + 4 * DAY_S
    away.set_away_periods([(t0 + H, back)])  # with the family, then home again
    assert alive_run(away, t0, back + 2 * DAY_S) == []  # counted again from the return
    late = alive_run(away, back + 2 * DAY_S + 600, back + 3 * DAY_S + 600)
    assert [d.started for d in late] == [back]

    staff = DoorUnused("r1", P)
    staff.on_door(t0, False, "door1")
    staff.check(t0)
    staff.set_away(t0 + H, True)
    assert alive_run(staff, t0 + H, t0 + 5 * DAY_S) == []
    staff.set_away(t0 + 5 * DAY_S, False)
    assert alive_run(staff, t0 + 5 * DAY_S, t0 + 7 * DAY_S) == []
    assert len(alive_run(staff, t0 + 7 * DAY_S, t0 + 8 * DAY_S + H)) == 1


def test_the_last_opening_before_a_restart_is_restored() -> None:
    t0 = day(0, 9)
    door = DoorUnused("r1", P)
    door.restore(t0 - 2 * DAY_S)  # from the store: opened two days before the start
    found = alive_run(door, t0, t0 + 1 * DAY_S + H)
    assert [d.started for d in found] == [t0 - 2 * DAY_S]


def _rig(start: float, registry: RegistrySnapshot, days: float) -> Rig:
    store = MemoryStore(registry)
    clock = VirtualClock(start)
    metrics = CollectorRegistry()
    runner = AnalysisRunner(
        settings(check_interval_s=60.0, heartbeat_kit_s=300.0),
        store,
        clock=clock,
        metrics_registry=metrics,
        kit=KitSettings(door_unused_days=days),
    )
    runner.rebuild()
    return Rig(runner, store, clock, Stream(registry), metrics)


def test_runner_raises_door_unused_with_the_injected_threshold_and_clears_on_open() -> None:
    t0 = day(3, 9)
    reg = kit_registry()
    rig = _rig(t0, reg, days=2 / 24)  # two hours
    s = rig.stream
    msgs = [s.event("door1", t0 + 30, "open"), s.event("door1", t0 + 40, "close")]
    msgs += [s.heartbeat("door1", t0 + k * 300.0) for k in range(1, 36)]
    msgs.append(s.event("door1", t0 + 3 * H, "open"))
    rig.run(t0 + 3 * H + 120, msgs, step=60.0)
    raised, resolved = rig.of(DetectionKind.DOOR_UNUSED)
    assert len(raised) == 1 and len(resolved) == 1
    rec = raised[0]
    assert rec.subject == "r1" and rec.resident_id == "r1" and rec.condition == CONDITION
    assert rec.started == t0 + 30 and t0 + 30 + 2 * H <= rec.time <= t0 + 30 + 2 * H + 60
    assert not rec.technical
    assert resolved[0].started == rec.started and resolved[0].time == t0 + 3 * H


def test_runner_raises_nothing_while_the_family_has_the_elder_away() -> None:
    t0 = day(3, 9)
    reg = kit_registry()
    away = RegistrySnapshot(
        reg.devices,
        {"r1": ResidentInfo("r1", SITE, 2, away_periods=((t0 - DAY_S, t0 + 10 * H),))},
        reg.utc_offsets,
    )
    rig = _rig(t0, away, days=2 / 24)
    s = rig.stream
    msgs = [s.event("door1", t0 + 30, "open"), s.event("door1", t0 + 40, "close")]
    msgs += [s.heartbeat("door1", t0 + k * 300.0) for k in range(1, 12 * 12)]
    rig.run(t0 + 11 * H, msgs, step=60.0)
    assert rig.of(DetectionKind.DOOR_UNUSED) == ([], [])
    rig.run(t0 + 12 * H + 120, [s.heartbeat("door1", t0 + 11 * H + k * 300.0)
                                for k in range(1, 14)], step=60.0)  # fmt: skip
    raised, _ = rig.of(DetectionKind.DOOR_UNUSED)
    assert [r.started for r in raised] == [t0 + 10 * H]  # counted from the return
