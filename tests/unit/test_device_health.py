"""Device health: single silent devices vs dead home hubs vs dead sites, batteries, wearing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from analytics.device_health import (
    BED_SENSOR,
    BUTTON,
    WEARABLE,
    DeviceHealthParams,
    DeviceHealthTracker,
)
from analytics.routine import day_start
from analytics.types import Detection, DetectionKind

OFF = 8 * 3600.0
T0 = day_start(19737, OFF) + 10 * 3600.0  # 10:00 local

# the message period of each kind in the simulation: the bed sensor streams at 1 Hz
PERIOD = {BED_SENSOR: 1.0, WEARABLE: 120.0, BUTTON: 300.0}


@dataclass
class Sim:
    """Devices that send on their period until they die, and optionally come back."""

    tracker: DeviceHealthTracker
    devices: dict[str, str] = field(default_factory=dict)  # id -> kind
    dead: dict[str, tuple[float, float]] = field(default_factory=dict)  # id -> (from, until)
    phase: dict[str, float] = field(default_factory=dict)
    detections: list[Detection] = field(default_factory=list)

    def add(self, device_id: str, kind: str, *, site: str, location: str, phase: float) -> None:
        self.devices[device_id] = kind
        self.phase[device_id] = phase
        self.tracker.register(device_id, kind, site=site, location=location, now=T0)

    def kill(self, ids: list[str], start: float, until: float = float("inf")) -> None:
        for i in ids:
            self.dead[i] = (start, until)

    def run(self, t0: float, t1: float, hook: Callable[[float], None] | None = None) -> None:
        t = t0
        while t < t1:
            for dev, kind in self.devices.items():
                a, b = self.dead.get(dev, (float("inf"), float("inf")))
                if a <= t < b:
                    continue
                period = PERIOD[kind]
                if period <= 1.0 or (t - T0 - self.phase[dev]) % period < 1.0:
                    self.tracker.on_seen(dev, t)
            if hook is not None:
                hook(t)
            if int(t) % 10 == 0:
                self.detections.extend(self.tracker.check(t))
            t += 1.0

    def kinds(self) -> list[tuple[DetectionKind, str, bool]]:
        return [(d.kind, d.subject, d.resolved) for d in self.detections]


def nursing_site(tracker: DeviceHealthTracker, homes: int = 3) -> Sim:
    """A site of homes, each with a bed sensor, a wearable and a button (phases spread)."""
    sim = Sim(tracker)
    for h in range(homes):
        loc = f"home-{h}"
        sim.add(f"bed-{h}", BED_SENSOR, site="s1", location=loc, phase=0.0)
        sim.add(f"watch-{h}", WEARABLE, site="s1", location=loc, phase=17.0 + 13 * h)
        sim.add(f"button-{h}", BUTTON, site="s1", location=loc, phase=41.0 + 29 * h)
    return sim


# ----------------------------------------------------------------------------- offline


def test_all_quiet_when_everything_reports() -> None:
    sim = nursing_site(DeviceHealthTracker())
    sim.run(T0, T0 + 3600)
    assert sim.detections == []


def test_single_silent_device_raises_device_offline_once_and_resolves_once() -> None:
    sim = nursing_site(DeviceHealthTracker())
    sim.kill(["button-1"], T0 + 600, T0 + 3000)
    sim.run(T0, T0 + 3600)
    assert sim.kinds() == [
        (DetectionKind.DEVICE_OFFLINE, "button-1", False),
        (DetectionKind.DEVICE_OFFLINE, "button-1", True),
    ]
    raised, resolved = sim.detections
    # last heartbeat before 10:10 was at phase 41 + 29 s -> 10:06:10; deadline 750 s
    assert raised.started == pytest.approx(T0 + 370)
    assert T0 + 370 + 750 < raised.time <= T0 + 370 + 750 + 10  # decided at once: bed alive
    assert "emergency button button-1 at home-1 silent since 10:06" in raised.reason
    assert "expected every 5 min" in raised.reason
    assert resolved.started == raised.started
    assert resolved.time >= T0 + 3000 and "back online" in resolved.reason


def test_silent_bed_sensor_waits_for_evidence_then_alerts_alone() -> None:
    sim = nursing_site(DeviceHealthTracker(), homes=2)
    sim.kill(["bed-0"], T0 + 600)
    sim.run(T0, T0 + 1800)
    assert sim.kinds() == [(DetectionKind.DEVICE_OFFLINE, "bed-0", False)]
    # the bed sensor is late after 150 s; the alert comes as soon as another device of the
    # home has been heard since (the wearable every 120 s), not one per group timeout
    d = sim.detections[0]
    assert T0 + 600 + 150 <= d.time <= T0 + 600 + 150 + 130


def test_whole_home_silent_raises_one_hub_offline_and_no_device_offline() -> None:
    sim = nursing_site(DeviceHealthTracker())
    sim.kill(["bed-2", "watch-2", "button-2"], T0 + 600, T0 + 4000)
    sim.run(T0, T0 + 5000)
    assert sim.kinds() == [
        (DetectionKind.HUB_OFFLINE, "home-2", False),
        (DetectionKind.HUB_OFFLINE, "home-2", True),
    ]
    raised, resolved = sim.detections
    assert raised.started == pytest.approx(T0 + 599)
    assert "all 3 devices at home-2 silent since 10:09" in raised.reason
    assert "hub" in raised.reason
    assert raised.details["devices"] == 3
    assert resolved.time == pytest.approx(T0 + 4000)


def test_whole_site_silent_raises_one_site_offline() -> None:
    sim = nursing_site(DeviceHealthTracker(), homes=4)
    sim.kill(list(sim.devices), T0 + 600, T0 + 4000)
    sim.run(T0, T0 + 5000)
    assert sim.kinds() == [
        (DetectionKind.SITE_OFFLINE, "s1", False),
        (DetectionKind.SITE_OFFLINE, "s1", True),
    ]
    assert "all 12 devices at 4 locations of site s1" in sim.detections[0].reason


def test_site_of_single_device_rooms() -> None:
    """Nursing-home rooms with only a bed sensor each: a room is never a hub incident."""
    sim = Sim(DeviceHealthTracker())
    for r in range(5):
        sim.add(f"bed-{r}", BED_SENSOR, site="nh", location=f"room-{r}", phase=0.0)
    sim.kill(["bed-3"], T0 + 100, T0 + 1000)
    sim.run(T0, T0 + 1500)
    sim.kill(list(sim.devices), T0 + 1600, T0 + 2500)
    sim.run(T0 + 1500, T0 + 3000)
    assert sim.kinds() == [
        (DetectionKind.DEVICE_OFFLINE, "bed-3", False),
        (DetectionKind.DEVICE_OFFLINE, "bed-3", True),
        (DetectionKind.SITE_OFFLINE, "nh", False),
        (DetectionKind.SITE_OFFLINE, "nh", True),
    ]


def test_site_back_but_one_home_still_down_becomes_a_hub_incident() -> None:
    sim = nursing_site(DeviceHealthTracker(), homes=3)
    sim.kill(list(sim.devices), T0 + 600, T0 + 3000)
    sim.kill(["bed-0", "watch-0", "button-0"], T0 + 600, T0 + 6000)
    sim.run(T0, T0 + 7000)
    assert sim.kinds() == [
        (DetectionKind.SITE_OFFLINE, "s1", False),
        (DetectionKind.SITE_OFFLINE, "s1", True),
        (DetectionKind.HUB_OFFLINE, "home-0", False),
        (DetectionKind.HUB_OFFLINE, "home-0", True),
    ]


def test_device_dead_for_days_does_not_turn_a_later_failure_into_a_hub_incident() -> None:
    tracker = DeviceHealthTracker()
    sim = Sim(tracker)
    sim.add("bed-a", BED_SENSOR, site="s1", location="home-a", phase=0.0)
    sim.add("button-a", BUTTON, site="s1", location="home-a", phase=5.0)
    sim.add("bed-b", BED_SENSOR, site="s1", location="home-b", phase=0.0)
    sim.kill(["button-a"], T0)
    sim.run(T0, T0 + 2 * 3600)
    sim.kill(["bed-a"], T0 + 2 * 3600)
    sim.run(T0 + 2 * 3600, T0 + 3 * 3600)
    assert sim.kinds() == [
        (DetectionKind.DEVICE_OFFLINE, "button-a", False),
        (DetectionKind.DEVICE_OFFLINE, "bed-a", False),
    ]


def test_last_will_is_offline_immediately() -> None:
    sim = nursing_site(DeviceHealthTracker(), homes=2)

    def lwt(t: float) -> None:
        if t == T0 + 300:
            sim.tracker.on_state("watch-1", t, online=False)

    sim.kill(["watch-1"], T0 + 290, T0 + 900)
    sim.run(T0, T0 + 1200, hook=lwt)
    assert sim.kinds() == [
        (DetectionKind.DEVICE_OFFLINE, "watch-1", False),
        (DetectionKind.DEVICE_OFFLINE, "watch-1", True),
    ]
    raised = sim.detections[0]
    assert raised.time == pytest.approx(T0 + 300)  # not after the 300 s deadline
    assert "reported offline at 10:05" in raised.reason
    assert raised.details["explicit_offline"] is True


def test_last_wills_of_a_whole_home_make_one_hub_incident() -> None:
    sim = nursing_site(DeviceHealthTracker(), homes=2)
    ids = ["bed-1", "watch-1", "button-1"]

    def lwts(t: float) -> None:
        for k, dev in enumerate(ids):  # the broker's wills trickle in over 70 s
            if t == T0 + 660 + 35 * k:
                sim.tracker.on_state(dev, t, online=False)

    sim.kill(ids, T0 + 600)
    sim.run(T0, T0 + 1500, hook=lwts)
    assert sim.kinds() == [(DetectionKind.HUB_OFFLINE, "home-1", False)]
    assert sim.detections[0].time <= T0 + 740


def test_per_device_heartbeat_interval_override() -> None:
    tracker = DeviceHealthTracker()
    tracker.register("b1", BUTTON, site="s", location="l", now=T0, heartbeat_interval_s=60.0)
    tracker.register("b2", BUTTON, site="s", location="l2", now=T0)
    tracker.on_seen("b1", T0)
    tracker.on_seen("b2", T0)
    for t in range(int(T0), int(T0 + 160), 10):
        tracker.on_seen("b2", float(t))
        assert tracker.check(float(t)) == []
    got = tracker.check(T0 + 160)
    assert [(d.kind, d.subject) for d in got] == [(DetectionKind.DEVICE_OFFLINE, "b1")]


def test_removed_device_stops_being_tracked_and_its_alerts_are_resolved() -> None:
    sim = nursing_site(DeviceHealthTracker())
    sim.kill(["button-0"], T0 + 100)
    sim.run(T0, T0 + 1500)
    assert sim.kinds() == [(DetectionKind.DEVICE_OFFLINE, "button-0", False)]
    sim.tracker.remove("button-0", T0 + 1500)
    del sim.devices["button-0"]
    assert "button-0" not in sim.tracker
    got = sim.tracker.check(T0 + 1500)
    assert [(d.kind, d.subject, d.resolved) for d in got] == [
        (DetectionKind.DEVICE_OFFLINE, "button-0", True)
    ]
    assert "removed" in got[0].reason
    sim.detections.clear()
    sim.run(T0 + 1500, T0 + 3000)
    assert sim.detections == []
    assert sim.tracker.open_conditions() == []


def test_restored_state_after_restart() -> None:
    tracker = DeviceHealthTracker()
    tracker.register(
        "btn", BUTTON, site="s", location="l", now=T0, last_seen=T0 - 3600, battery_pct=9.0
    )
    tracker.register("bed", BED_SENSOR, site="s", location="l2", now=T0, last_seen=T0)
    tracker.on_seen("bed", T0 + 5)
    got = tracker.check(T0 + 10)
    assert sorted((d.kind.value, d.subject) for d in got) == [
        ("device_offline", "btn"),
        ("low_battery", "btn"),
    ]
    assert next(d for d in got if d.kind is DetectionKind.DEVICE_OFFLINE).started == T0 - 3600


# ----------------------------------------------------------------------------- battery


def test_battery_hovering_at_threshold_alerts_once() -> None:
    tracker = DeviceHealthTracker()
    tracker.register("w", WEARABLE, site="s", location="l", now=T0)
    dets: list[Detection] = []
    levels = [40, 30, 16, 15, 16, 14, 15, 17, 13, 16, 20, 24, 22, 25, 60, 30, 16, 15]
    for k, pct in enumerate(levels):
        t = T0 + 60 * k
        tracker.on_heartbeat("w", t, battery_pct=float(pct))
        dets.extend(tracker.check(t))
    assert [(d.kind, d.resolved) for d in dets] == [
        (DetectionKind.LOW_BATTERY, False),
        (DetectionKind.LOW_BATTERY, True),
        (DetectionKind.LOW_BATTERY, False),
    ]
    assert dets[0].time == T0 + 60 * 3 and "battery at 15 %" in dets[0].reason
    assert dets[1].time == T0 + 60 * 13 and "25 %" in dets[1].reason


# ----------------------------------------------------------------------------- not worn


def test_wearable_not_worn_counts_waking_time_and_resolves() -> None:
    tracker = DeviceHealthTracker()
    tracker.register("w", WEARABLE, site="s", location="l", now=T0 - 12 * 3600)
    evening = day_start(19737, OFF) + 20 * 3600.0  # taken off at 20:00
    tracker.on_worn("w", evening, worn=False)
    dets: list[Detection] = []
    t = evening
    while t < evening + 16 * 3600:
        tracker.on_heartbeat("w", t)
        dets.extend(tracker.check(t))
        t += 60.0
    # 1 h of waking time in the evening; the night does not count; 08:00 the next morning
    assert [(d.kind, d.resolved) for d in dets] == [(DetectionKind.NOT_WORN, False)]
    assert dets[0].time == pytest.approx(day_start(19738, OFF) + 8 * 3600.0, abs=60)
    assert "not worn since 20:00" in dets[0].reason
    tracker.on_worn("w", t, worn=True)
    got = tracker.check(t)
    assert [(d.kind, d.resolved) for d in got] == [(DetectionKind.NOT_WORN, True)]


def test_not_worn_paused_while_resident_away() -> None:
    tracker = DeviceHealthTracker(DeviceHealthParams(not_worn_s=3600.0))
    tracker.register("w", WEARABLE, site="s", location="l", now=T0)
    tracker.on_worn("w", T0, worn=False)
    tracker.set_care_paused("w", T0 + 60, True)
    dets: list[Detection] = []
    for k in range(0, 4 * 3600, 60):
        tracker.on_heartbeat("w", T0 + k)
        dets.extend(tracker.check(T0 + k))
    assert dets == []


def test_gateway_restart_does_not_look_like_sites_going_offline() -> None:
    tracker = DeviceHealthTracker()
    for k in range(3):
        tracker.register(f"bed-{k}", BED_SENSOR, site="s", location=f"r{k}", now=T0, last_seen=T0)
    restart = T0 + 1800  # the gateway was down for 30 min
    tracker.resume(restart)
    dets: list[Detection] = []
    for i in range(600):
        for k in range(2):  # bed-2 never comes back
            tracker.on_seen(f"bed-{k}", restart + 5 + i)
        dets.extend(tracker.check(restart + i))
    assert [(d.kind, d.subject) for d in dets] == [(DetectionKind.DEVICE_OFFLINE, "bed-2")]
    assert dets[0].time == pytest.approx(restart + 151)
    assert dets[0].started == T0  # the real last message
    # without resume() the same restart raises a site-wide incident at once
    other = DeviceHealthTracker()
    for k in range(3):
        other.register(f"bed-{k}", BED_SENSOR, site="s", location=f"r{k}", now=T0, last_seen=T0)
    assert [d.kind for d in other.check(restart)] == [DetectionKind.SITE_OFFLINE]


def test_not_worn_waking_time_is_the_sites_local_time() -> None:
    """Two wearables taken off at the same instant, one at a UTC+8 site, one at a UTC+1
    site: waking time (07:00-21:00) is counted in each site's own local time."""
    tracker = DeviceHealthTracker()
    berlin = 1 * 3600.0
    tracker.register("cn", WEARABLE, site="cn", location="l1", now=T0 - 12 * 3600)
    tracker.register(
        "eu", WEARABLE, site="eu", location="l2", now=T0 - 12 * 3600, utc_offset_s=berlin
    )
    off_at = day_start(19737, OFF) + 20 * 3600.0  # 20:00 in China, 13:00 at UTC+1
    for dev in ("cn", "eu"):
        tracker.on_worn(dev, off_at, worn=False)
    raised: dict[str, Detection] = {}
    t = off_at
    while t < off_at + 16 * 3600 and len(raised) < 2:
        for dev in ("cn", "eu"):
            tracker.on_heartbeat(dev, t)
        for d in tracker.check(t):
            raised.setdefault(d.subject, d)
        t += 60.0
    # UTC+1: 13:00 + 2 h of waking time -> 15:00 local; China: 1 h in the evening, the
    # rest the next morning -> 08:00 local
    assert raised["eu"].time == pytest.approx(off_at + 2 * 3600.0, abs=60)
    assert "not worn since 13:00" in raised["eu"].reason
    assert raised["cn"].time == pytest.approx(day_start(19738, OFF) + 8 * 3600.0, abs=60)
    assert "not worn since 20:00" in raised["cn"].reason


def test_offline_reasons_tell_the_time_at_the_devices_site() -> None:
    tracker = DeviceHealthTracker()
    tracker.register("b-eu", BUTTON, site="eu", location="l", now=T0, utc_offset_s=0.0)
    tracker.register("b-cn", BUTTON, site="cn", location="m", now=T0)
    dets: list[Detection] = []
    t = T0
    while len(dets) < 2 and t < T0 + 3600:
        t += 60.0
        dets.extend(tracker.check(t))
    by = {d.subject: d for d in dets}
    assert "silent since 02:00" in by["b-eu"].reason  # 10:00 at UTC+8 is 02:00 UTC
    assert "silent since 10:00" in by["b-cn"].reason
