"""Smoke and gas alarms of a home with more than one detector (the pure path, no I/O).

One condition per detector: a second detector alarming while the first still sounds, or a
detector alarming again after its ``clear``, is a new raise (the intake joins it to the open
incident as a trigger at once); a detector's repeated ``alarm`` while it still sounds is the
continuation of its open condition: not stored again, handed on marked ``continued`` so the
intake gives its alarm marker to the open incident without a new trigger.
"""

from __future__ import annotations

from collections.abc import Sequence

from analytics.types import DetectionKind
from devices.protocol import DeviceKind
from gateway.analysis import (
    DetectionRecord,
    MemoryStore,
    RegistrySnapshot,
    RoutineDay,
    VitalsDay,
)
from gateway.analysis.conditions import OpenConditions
from gateway.kit.runner import alarm_detection, hazard_alarm
from gateway.registry import DeviceInfo
from tests.unit.test_analysis_runner import OFF, SITE, make_rig
from tests.unit.test_home_activity import day, kit_registry


class HandedStore(MemoryStore):
    """The in-memory store, also keeping every record the runner handed over."""

    def __init__(self, registry: RegistrySnapshot) -> None:
        super().__init__(registry)
        self.handed: list[DetectionRecord] = []

    def write(
        self,
        detections: Sequence[DetectionRecord],
        routine_days: Sequence[RoutineDay],
        vitals_days: Sequence[VitalsDay],
    ) -> int:
        self.handed.extend(detections)
        return super().write(detections, routine_days, vitals_days)


def two_smoke_registry() -> RegistrySnapshot:
    reg = kit_registry()
    devices = dict(reg.devices)
    devices["smoke2"] = DeviceInfo("smoke2", SITE, DeviceKind.SMOKE_DETECTOR, "home1", None,
                                   "r1", None)  # fmt: skip
    return RegistrySnapshot(devices, reg.residents, reg.utc_offsets)


def _record(device: str, t: float, *, alarms: bool = True) -> DetectionRecord:
    det = hazard_alarm(DeviceKind.SMOKE_DETECTOR, "r1", t=t, utc_offset=OFF, device_id=device,
                       data={})  # fmt: skip
    keys = ((device, f"m{t:.0f}"),) if alarms else ()
    return DetectionRecord.of(det, site_id=SITE, resident_id="r1", device_id=device,
                              location_id="home1", alarms=keys)  # fmt: skip


def test_each_detector_is_its_own_condition_and_the_recovery_builds_the_same_one() -> None:
    a, b = _record("smoke1", 100.0), _record("smoke2", 100.0)
    assert a.condition == "smoke1" and b.condition == "smoke2"
    assert a.key != b.key
    recovered = alarm_detection("smoke_detector", "alarm", subject="r1", t=100.0,
                                utc_offset=OFF, device_id="smoke1", data={})  # fmt: skip
    assert recovered is not None
    rec = DetectionRecord.of(recovered, site_id=SITE, resident_id="r1", device_id="smoke1",
                             location_id="home1")  # fmt: skip
    assert rec.identity == a.identity  # the recovery and the live path store one row


def test_a_repeat_with_alarm_events_is_handed_on_as_a_continuation() -> None:
    continued: list[int] = []
    conditions = OpenConditions(on_continued=lambda: continued.append(1))
    first = _record("smoke1", 100.0)
    assert conditions.admit(first) == first
    repeat = conditions.admit(_record("smoke1", 130.0))
    assert repeat is not None and repeat.continued
    assert repeat.started == first.started and repeat.alarms == (("smoke1", "m130"),)
    assert conditions.admit(_record("smoke1", 160.0, alarms=False)) is None  # nothing to hand
    other = conditions.admit(_record("smoke2", 140.0))
    assert other is not None and not other.continued  # another detector: a new raise
    assert continued == [1, 1]


def test_a_second_detector_and_a_re_alarm_after_a_clear_are_raised_at_once() -> None:
    t0 = day(3, 10)
    reg = two_smoke_registry()
    store = HandedStore(reg)
    rig = make_rig(t0, registry=reg, store=store)
    s = rig.stream
    rig.run(
        t0 + 60,
        [
            s.event("smoke1", t0 + 5, "alarm"),
            s.event("smoke2", t0 + 10, "alarm"),  # the fire spreads: a second detector
            s.event("smoke1", t0 + 15, "alarm"),  # smoke1 still sounding: its repeat
            s.event("smoke1", t0 + 20, "clear"),
            s.event("smoke1", t0 + 30, "alarm"),  # smoke1 alarms again after its clear
            s.event("smoke2", t0 + 40, "clear"),
        ],
    )
    got = [(r.device_id, r.resolved, r.started - t0) for r in store.detections]
    assert got == [
        ("smoke1", False, 5.0),
        ("smoke2", False, 10.0),
        ("smoke1", True, 5.0),  # smoke1's clear resolves smoke1's condition only
        ("smoke1", False, 30.0),
        ("smoke2", True, 10.0),
    ]
    assert all(r.kind is DetectionKind.SMOKE_ALARM and r.subject == "r1"
               for r in store.detections)  # fmt: skip
    assert all(r.alarms for r in store.detections if not r.resolved)
    repeats = [r for r in store.handed if r.continued]
    assert [(r.device_id, r.started - t0, r.alarms) for r in repeats] == [
        ("smoke1", 5.0, (("smoke1", "m2"),))
    ]
    # Not a new finding: no "raised" count for it, and not counted as a duplicate either.
    assert rig.metric("safehome_analysis_detections_total", kind="smoke_alarm",
                      state="raised") == 3.0  # fmt: skip
    assert rig.metric("safehome_analysis_duplicates_total") == 0.0


def test_a_second_water_sensor_is_a_new_raise_and_each_dries_on_its_own() -> None:
    t0 = day(3, 10)
    reg = kit_registry()
    devices = dict(reg.devices)
    devices["leak2"] = DeviceInfo("leak2", SITE, DeviceKind.WATER_LEAK, "home1", None, "r1", None)
    reg = RegistrySnapshot(devices, reg.residents, reg.utc_offsets)
    store = HandedStore(reg)
    rig = make_rig(t0, registry=reg, store=store)
    s = rig.stream
    rig.run(
        t0 + 60,
        [
            s.event("leak1", t0 + 5, "leak"),
            s.event("leak2", t0 + 10, "leak"),
            s.event("leak1", t0 + 20, "dry"),
            s.event("leak2", t0 + 25, "leak"),  # still wet: its repeat
        ],
    )
    got = [(r.kind, r.device_id, r.resolved, r.started - t0) for r in store.detections]
    assert got == [
        (DetectionKind.WATER_LEAK, "leak1", False, 5.0),
        (DetectionKind.WATER_LEAK, "leak2", False, 10.0),
        (DetectionKind.WATER_LEAK, "leak1", True, 5.0),
    ]
    assert [(r.device_id, r.continued) for r in store.handed if r.continued] == [("leak2", True)]
