"""The analysis runner on synthetic streams, with the in-memory store and a virtual clock.

Messages are built as ingest hands them over (``StoredMessage``: registry entry, decoded
message, receive time); the clock is advanced in steps as replay does, so hours of a
resident's day run in a fraction of a second.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client import CollectorRegistry

from analytics.routine import DaySummary, day_start, weekday
from analytics.types import Detection, DetectionKind
from devices.protocol import (
    AccelBatch,
    Channel,
    DeviceKind,
    Envelope,
    Event,
    Reading,
    State,
)
from gateway.analysis import (
    AnalysisError,
    AnalysisRunner,
    DetectionRecord,
    MemoryStore,
    RegistrySnapshot,
    ResidentInfo,
    RoutineDay,
    VitalsDay,
)
from gateway.ingest import StoredMessage
from gateway.registry import DeviceInfo
from gateway.replay import VirtualClock
from gateway.settings import AnalysisSettings

OFF = 8 * 3600.0
H = 3600.0
MONDAY = 19737  # 2024-01-15, local day number
SITE = "s1"
FS = 50.0

# --------------------------------------------------------------------------------------------
# synthetic signals and messages (shared with test_replay and the integration test)
# --------------------------------------------------------------------------------------------

UP = np.array([0.0, 1.0, 0.0])
SUPINE = np.array([0.0, 0.0, 1.0])
SIDE = np.array([1.0, 0.0, 0.0])


def fall_signal(
    seconds_before: float = 6.0, seconds_after: float = 8.0, seed: int = 0
) -> npt.NDArray[np.float32]:
    """50 Hz, g: walking, a backward fall (impact ~5 g) at ``seconds_before + 0.6``, then
    lying still. The impact is at sample ``round((seconds_before + 0.6) * 50)``."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds_before * FS)) / FS
    bounce = 1.0 + 0.3 * np.sin(2 * np.pi * 2.0 * t)  # two steps a second
    sway = 0.15 * np.sin(2 * np.pi * t)
    walk = bounce[:, None] * UP + sway[:, None] * SIDE
    w = np.linspace(0.0, 1.0, round(0.6 * FS))[:, None]
    path = (1 - w) * UP + w * SUPINE
    turn = 0.5 * path / np.linalg.norm(path, axis=1, keepdims=True)
    lying = np.tile(SUPINE, (round(seconds_after * FS), 1))
    signal = np.concatenate([walk, turn, lying])
    i = np.arange(len(signal))
    impact = len(walk) + len(turn)
    signal = signal + (4.0 * np.exp(-0.5 * ((i - impact) / (0.04 * FS)) ** 2))[:, None] * SUPINE
    noisy: npt.NDArray[np.float64] = signal + rng.normal(0.0, 0.01, signal.shape)
    return noisy.astype(np.float32)


def still_signal(
    seconds: float, up: npt.NDArray[np.float64] = UP, seed: int = 1
) -> npt.NDArray[np.float32]:
    """Sitting or standing still: gravity along ``up`` plus sensor noise."""
    rng = np.random.default_rng(seed)
    n = round(seconds * FS)
    return (np.tile(up, (n, 1)) + rng.normal(0.0, 0.01, (n, 3))).astype(np.float32)


@dataclass
class Stream:
    """Builds stored messages for the devices of a registry, with ids and sequence numbers."""

    registry: RegistrySnapshot
    seq: itertools.count[int] = field(default_factory=itertools.count)

    def _env(self, device: str, channel: Channel, t: float, type_: str) -> Envelope:
        n = next(self.seq)
        info = self.registry.devices[device]
        return Envelope(info.site_id, device, channel, f"m{n}", n, round(t, 3), type_)

    def _stored(self, device: str, message: object, t: float) -> StoredMessage:
        assert isinstance(message, Reading | AccelBatch | Event | State)
        return StoredMessage(self.registry.devices[device], message, t + 0.05)

    def accel(
        self, device: str, t0: float, samples: npt.NDArray[np.float32]
    ) -> list[StoredMessage]:
        """1 s batches of 50 samples from ``t0``; each received at the end of its second."""
        out = []
        for k in range(0, len(samples), 50):
            t = t0 + k / FS
            env = self._env(device, Channel.TELEMETRY, t, "accel")
            msg = AccelBatch(env, FS, samples[k : k + 50])
            out.append(StoredMessage(self.registry.devices[device], msg, t + 1.0))
        return out

    def vitals(
        self, device: str, t: float, *, presence: bool = True, hr: float | None = 62.0,
        rr: float | None = 14.0, movement: float = 0.05,
    ) -> StoredMessage:  # fmt: skip
        env = self._env(device, Channel.TELEMETRY, t, "vitals")
        return self._stored(device, Reading(env, presence, hr, rr, movement), t)

    def heartbeat(self, device: str, t: float, battery: int | None = None) -> StoredMessage:
        env = self._env(device, Channel.TELEMETRY, t, "heartbeat")
        return self._stored(device, Reading(env, battery=battery), t)

    def event(self, device: str, t: float, type_: str, **data: object) -> StoredMessage:
        env = self._env(device, Channel.EVENT, t, type_)
        return self._stored(device, Event(env, dict(data)), t)


def site_registry(homes: int = 1, *, care_level: int = 2) -> RegistrySnapshot:
    """``homes`` locations l<i>, each with resident r<i>: bed sensor bs<i>, wearable wr<i>,
    button bt<i> (all bound to the resident)."""
    devices: dict[str, DeviceInfo] = {}
    residents: dict[str, ResidentInfo] = {}
    for i in range(1, homes + 1):
        loc, res, bed = f"l{i}", f"r{i}", f"b{i}"
        residents[res] = ResidentInfo(res, SITE, care_level)
        for prefix, kind in (
            ("bs", DeviceKind.BED_SENSOR),
            ("wr", DeviceKind.WEARABLE),
            ("bt", DeviceKind.BUTTON),
        ):
            dev = f"{prefix}{i}"
            devices[dev] = DeviceInfo(dev, SITE, kind, loc, bed, res, None)
    return RegistrySnapshot(devices, residents, {SITE: OFF})


def settings(**overrides: float) -> AnalysisSettings:
    return AnalysisSettings.model_validate(overrides)


@dataclass
class Rig:
    """A runner on a virtual clock, fed in time order."""

    runner: AnalysisRunner
    store: MemoryStore
    clock: VirtualClock
    stream: Stream
    metrics: CollectorRegistry

    def run(self, until: float, messages: Iterable[StoredMessage] = (), step: float = 1.0) -> None:
        """Advance the clock to ``until`` in ``step``s, feeding each message once it is due."""
        pending = sorted(messages, key=lambda m: m.received_at)
        i = 0
        while True:
            while i < len(pending) and pending[i].received_at <= self.clock.now:
                self.runner.feed([pending[i]])
                i += 1
            self.runner.advance()
            if self.clock.now >= until:
                break
            self.clock.now = min(until, self.clock.now + step)

    def of(self, kind: DetectionKind) -> tuple[list[DetectionRecord], list[DetectionRecord]]:
        recs = [r for r in self.store.detections if r.kind is kind]
        return [r for r in recs if not r.resolved], [r for r in recs if r.resolved]

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.get_sample_value(name, labels) or 0.0


def make_rig(
    start: float,
    *,
    registry: RegistrySnapshot | None = None,
    store: MemoryStore | None = None,
    tune: Mapping[str, float] | None = None,
) -> Rig:
    """A rebuilt runner at ``start`` (1 s checks unless ``tune``d)."""
    reg = registry or site_registry()
    store = store or MemoryStore(reg)
    clock = VirtualClock(start)
    metrics = CollectorRegistry()
    runner = AnalysisRunner(
        settings(**({"check_interval_s": 1.0} | dict(tune or {}))),
        store,
        clock=clock,
        metrics_registry=metrics,
    )
    runner.rebuild()
    return Rig(runner, store, clock, Stream(reg), metrics)


T_DAY = day_start(MONDAY, OFF) + 10 * H  # 10:00 local


# --------------------------------------------------------------------------------------------
# falls and alarms
# --------------------------------------------------------------------------------------------


def test_fall_becomes_one_detection_after_the_confirmation_window() -> None:
    rig = make_rig(T_DAY)
    signal = np.concatenate([still_signal(10.0), fall_signal(), still_signal(20.0, SUPINE)])
    impact = T_DAY + 10.0 + 6.6
    rig.run(impact + 29.0, rig.stream.accel("wr1", T_DAY, signal))
    assert rig.of(DetectionKind.FALL) == ([], [])  # the resident may still cancel
    assert rig.metric("safehome_analysis_fall_candidates_total") == 1.0
    rig.run(impact + 60.0)
    raised, resolved = rig.of(DetectionKind.FALL)
    assert len(raised) == 1 and resolved == []
    fall = raised[0]
    assert fall.subject == "r1" and fall.resident_id == "r1"
    assert fall.device_id == "wr1" and fall.location_id == "l1" and fall.site_id == SITE
    assert fall.started == pytest.approx(impact, abs=0.05)
    assert fall.time == pytest.approx(impact + 30.0, abs=0.05)
    assert "not cancelled within 30 s" in fall.reason
    assert fall.details["accelerometer"] is True
    assert [r.kind for r in rig.store.detections] == [DetectionKind.FALL]


def test_cancel_within_the_window_suppresses_the_fall() -> None:
    rig = make_rig(T_DAY)
    signal = np.concatenate([still_signal(10.0), fall_signal(), still_signal(40.0, SUPINE)])
    impact = T_DAY + 10.0 + 6.6
    messages = rig.stream.accel("wr1", T_DAY, signal)
    messages.append(rig.stream.event("bt1", impact + 12.0, "cancel"))
    rig.run(impact + 60.0, messages)
    assert rig.of(DetectionKind.FALL) == ([], [])
    assert rig.metric("safehome_analysis_falls_cancelled_total") == 1.0
    assert rig.store.detections == []


def test_button_press_is_one_emergency_call_at_once() -> None:
    rig = make_rig(T_DAY, tune={"check_interval_s": 60.0})
    press = rig.stream.event("bt1", T_DAY + 5.0, "press")
    rig.run(T_DAY + 5.1, [press])  # well before the next periodic check
    raised, _ = rig.of(DetectionKind.EMERGENCY_CALL)
    assert len(raised) == 1
    call = raised[0]
    assert call.subject == "r1" and call.device_id == "bt1" and call.location_id == "l1"
    assert call.started == pytest.approx(T_DAY + 5.0)
    assert call.reason == "emergency call button pressed at 10:00:05"
    assert call.details["source"] == "button" and call.details["event"] == "press"
    sos = rig.stream.event("wr1", T_DAY + 200.0, "sos")
    rig.run(T_DAY + 300.0, [sos])
    raised, resolved = rig.of(DetectionKind.EMERGENCY_CALL)
    assert len(raised) == 2 and resolved == []
    assert raised[1].device_id == "wr1" and raised[1].reason.startswith("SOS button pressed")
    assert (
        rig.metric("safehome_analysis_detections_total", kind="emergency_call", state="raised")
        == 2.0
    )


# --------------------------------------------------------------------------------------------
# vitals
# --------------------------------------------------------------------------------------------


def test_abnormal_vitals_are_raised_once_and_resolved_once() -> None:
    night = day_start(MONDAY, OFF) + 23 * H
    rig = make_rig(night)
    s = rig.stream
    rng = random.Random(3)
    messages = []
    for i in range(1800):
        hr = 135.0 + rng.uniform(-3, 3) if 600 <= i < 900 else 62.0 + rng.uniform(-3, 3)
        messages.append(s.vitals("bs1", night + i, hr=hr, rr=14.0 + rng.uniform(-1, 1)))
    rig.run(night + 1800.0, messages)
    raised, resolved = rig.of(DetectionKind.VITALS_ABNORMAL)
    assert len(raised) == 1 and len(resolved) == 1
    assert raised[0].condition == "heart_rate_high"
    assert raised[0].device_id == "bs1" and raised[0].subject == "r1"
    assert night + 600 + 120 <= raised[0].time <= night + 600 + 200
    assert resolved[0].started == raised[0].started
    assert resolved[0].time > night + 900
    care = [r.kind for r in rig.store.detections if not r.technical]  # (wearable, button silent)
    assert care == [DetectionKind.VITALS_ABNORMAL] * 2


# --------------------------------------------------------------------------------------------
# device health
# --------------------------------------------------------------------------------------------

SHORT_HEARTBEATS = {
    "heartbeat_button_s": 10.0,
    "heartbeat_bed_sensor_s": 4.0,
    "heartbeat_wearable_s": 10.0,
    "heartbeat_kit_s": 10.0,
    "group_hold_s": 60.0,
}


def keep_alive(
    stream: Stream, devices: Iterable[str], t0: float, t1: float, every: float = 2.0
) -> list[StoredMessage]:
    out = []
    for dev in devices:
        t = t0
        while t < t1:
            out.append(stream.heartbeat(dev, t))
            t += every
    return out


def test_silent_device_is_one_device_offline_then_back_online() -> None:
    rig = make_rig(T_DAY, tune=SHORT_HEARTBEATS)
    s = rig.stream
    messages = keep_alive(s, ["bs1", "wr1"], T_DAY, T_DAY + 300)
    messages += keep_alive(s, ["bt1"], T_DAY, T_DAY + 20)  # then silent
    messages += keep_alive(s, ["bt1"], T_DAY + 200, T_DAY + 300)  # and back
    rig.run(T_DAY + 300, messages)
    raised, resolved = rig.of(DetectionKind.DEVICE_OFFLINE)
    assert len(raised) == 1 and len(resolved) == 1
    assert raised[0].subject == "bt1" and raised[0].device_id == "bt1"
    assert raised[0].resident_id == "r1" and raised[0].location_id == "l1"
    assert raised[0].technical
    last_heard = T_DAY + 18  # deadline: 2.5 x 10 s
    assert last_heard + 25 <= raised[0].time <= last_heard + 27
    assert resolved[0].started == raised[0].started
    assert {r.kind for r in rig.store.detections} == {DetectionKind.DEVICE_OFFLINE}


def test_whole_home_silent_is_one_hub_offline_not_one_per_device() -> None:
    rig = make_rig(T_DAY, registry=site_registry(homes=2), tune=SHORT_HEARTBEATS)
    s = rig.stream
    messages = keep_alive(s, ["bs1", "wr1", "bt1"], T_DAY, T_DAY + 30)  # home 1 dies at +30
    messages += keep_alive(s, ["bs2", "wr2", "bt2"], T_DAY, T_DAY + 400)
    rig.run(T_DAY + 400, messages)
    raised, resolved = rig.of(DetectionKind.HUB_OFFLINE)
    assert len(raised) == 1 and resolved == []
    hub = raised[0]
    assert hub.subject == "l1" and hub.location_id == "l1" and hub.site_id == SITE
    assert hub.details["devices"] == 3
    assert rig.of(DetectionKind.DEVICE_OFFLINE) == ([], [])
    assert rig.of(DetectionKind.SITE_OFFLINE) == ([], [])


def test_explicit_offline_state_and_low_battery() -> None:
    rig = make_rig(T_DAY, tune=SHORT_HEARTBEATS)
    s = rig.stream
    messages = keep_alive(s, ["bs1", "wr1"], T_DAY, T_DAY + 60)
    env = s._env("bt1", Channel.STATE, T_DAY + 5, "offline")
    messages.append(StoredMessage(s.registry.devices["bt1"], State(env, False), T_DAY + 5))
    messages.append(s.event("wr1", T_DAY + 6, "low_battery", battery=9))
    rig.run(T_DAY + 60, messages)
    offline, _ = rig.of(DetectionKind.DEVICE_OFFLINE)
    assert [r.subject for r in offline] == ["bt1"]
    assert "reported offline" in offline[0].reason
    assert offline[0].time <= T_DAY + 8
    battery, _ = rig.of(DetectionKind.LOW_BATTERY)
    assert [r.subject for r in battery] == ["wr1"]


# --------------------------------------------------------------------------------------------
# routine
# --------------------------------------------------------------------------------------------


def learned_days(first: int, n: int = 14) -> list[DaySummary]:
    """Up between 06:40 and 07:00 on weekdays, 08:00-08:20 at weekends; bed ~21:30."""
    rng = random.Random(7)
    out = []
    for d in range(first, first + n):
        late = 8 * H if weekday(d) >= 5 else 6 * H + 40 * 60
        out.append(DaySummary(d, late + rng.uniform(0, 20) * 60, 21.5 * H, (5.0,) * 24))
    return out


def test_not_up_with_a_learned_routine_on_a_virtual_clock() -> None:
    reg = site_registry()
    store = MemoryStore(reg)
    store.write([], [], [])
    for summary in learned_days(MONDAY - 14):
        store.routine_days[("r1", summary.day)] = summary
    morning = day_start(MONDAY, OFF) + 5 * H  # Monday 05:00
    rig = make_rig(morning, store=store, tune={"check_interval_s": 10.0})
    s = rig.stream
    messages = [s.event("bs1", morning + 60, "bed_entry")]
    messages += [s.heartbeat("bs1", morning + 60 * k) for k in range(2, 4 * 60)]  # till 09:00
    messages.append(s.event("bs1", morning + 3.75 * H, "bed_exit"))  # up at 08:45
    rig.run(morning + 4 * H, messages, step=10.0)
    raised, resolved = rig.of(DetectionKind.NOT_UP)
    assert len(raised) == 1 and len(resolved) == 1
    not_up = raised[0]
    assert not_up.subject == "r1" and not_up.device_id == "bs1"
    assert not_up.details["learned"] is True
    assert "usually up by 07:0" in not_up.reason or "usually up by 06:5" in not_up.reason
    # weekday routine: late rise ~07:00, care level 2 margin 60 min -> about 08:00
    deadline = day_start(MONDAY, OFF) + 7.8 * H
    assert deadline <= not_up.time <= deadline + 0.4 * H
    assert resolved[0].time == pytest.approx(morning + 3.75 * H, abs=1.0)
    assert {r.kind for r in rig.store.detections if not r.technical} == {DetectionKind.NOT_UP}


# --------------------------------------------------------------------------------------------
# restart, persistence rules, threading
# --------------------------------------------------------------------------------------------


def test_restart_does_not_duplicate_open_conditions_or_alarms() -> None:
    rig = make_rig(T_DAY, tune=SHORT_HEARTBEATS)
    s = rig.stream
    press = s.event("bt1", T_DAY + 1, "press")
    messages = [press, *keep_alive(s, ["bs1", "wr1"], T_DAY, T_DAY + 100)]
    rig.run(T_DAY + 100, messages)  # the button falls silent after its press
    assert len(rig.of(DetectionKind.DEVICE_OFFLINE)[0]) == 1
    assert len(rig.store.detections) == 2
    # a new runner on the same store: the condition is restored as open; the button is still
    # silent, so it is raised again (continuation, not a new row); the press computed again
    # (as the start-up catch-up does) is the same row
    again = make_rig(
        T_DAY + 150, registry=rig.store.registry(), store=rig.store, tune=SHORT_HEARTBEATS
    )
    again.stream = s
    again.run(T_DAY + 250, [*keep_alive(s, ["bs1", "wr1"], T_DAY + 150, T_DAY + 250)])
    again.runner.feed([press])
    again.runner.flush()
    assert len(again.store.detections) == 2
    assert again.metric("safehome_analysis_continued_total") == 1.0
    assert again.metric("safehome_analysis_duplicates_total") == 1.0
    # back online: the resolution closes the raise stored before the restart
    again.run(T_DAY + 300, keep_alive(s, ["bs1", "wr1", "bt1"], T_DAY + 250, T_DAY + 300))
    raised, resolved = again.of(DetectionKind.DEVICE_OFFLINE)
    assert len(raised) == 1 and len(resolved) == 1
    assert resolved[0].started == raised[0].started


def test_restored_condition_not_raised_again_is_reconciled() -> None:
    rig = make_rig(T_DAY, tune=SHORT_HEARTBEATS)
    s = rig.stream
    rig.run(T_DAY + 100, keep_alive(s, ["bs1", "wr1"], T_DAY, T_DAY + 100))
    assert len(rig.of(DetectionKind.DEVICE_OFFLINE)[0]) == 1  # bt1 never reported
    # the button spoke during the downtime but the memory store keeps no raw stream: after
    # the grace period the restored condition is closed as not re-established
    again = make_rig(
        T_DAY + 150,
        registry=rig.store.registry(),
        store=rig.store,
        tune={**SHORT_HEARTBEATS, "reconcile_after_s": 100.0},
    )
    again.run(T_DAY + 400, keep_alive(s, ["bs1", "wr1", "bt1"], T_DAY + 150, T_DAY + 400))
    raised, resolved = again.of(DetectionKind.DEVICE_OFFLINE)
    assert len(raised) == 1 and len(resolved) == 1
    assert resolved[0].details["reconciled"] is True
    assert "not re-established" in resolved[0].reason


def running(runner: AnalysisRunner) -> bool:
    return runner.alive


def test_threaded_runner_takes_batches_and_refuses_them_once_stopped() -> None:
    reg = site_registry()
    store = MemoryStore(reg)
    runner = AnalysisRunner(settings(check_interval_s=0.1), store)
    runner.start()
    try:
        now = time.time()
        runner.submit([Stream(reg).event("bt1", now, "press")])
        deadline = time.monotonic() + 5.0
        while not store.detections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [r.kind for r in store.detections] == [DetectionKind.EMERGENCY_CALL]
        assert running(runner) and runner.failed is None
    finally:
        runner.stop()
    assert not running(runner)
    with pytest.raises(AnalysisError):
        runner.submit([Stream(reg).event("bt1", 0.0, "press")])


def test_day_rows_are_written_and_restored() -> None:
    """Routine day summaries and vitals day histograms go to the store; a new runner on the
    store learns from them and goes on counting the current day."""
    monday = day_start(MONDAY, OFF)
    rig = make_rig(monday, tune={"check_interval_s": 60.0, "state_save_interval_s": 600.0})
    s = rig.stream
    messages = []
    for d in range(2):
        base = monday + d * 86400.0
        messages += [
            s.event("bs1", base + 6.75 * H, "bed_exit"),
            s.event("bs1", base + 21.5 * H, "bed_entry"),
        ]
        messages += [s.heartbeat("bs1", base + 300.0 * k) for k in range(288)]
    night = monday + 23 * H
    messages += [s.vitals("bs1", night + i, hr=60.0 + i % 5, rr=15.0) for i in range(900)]
    rig.run(monday + 38 * H, messages, step=60.0)
    monday_row = rig.store.routine_days[("r1", MONDAY)]
    assert monday_row.rise_s == pytest.approx(6.75 * H)
    assert monday_row.bed_s == pytest.approx(21.5 * H)
    vitals = rig.store.vitals_days[("r1", MONDAY)]
    assert sum(vitals.heart_rate) == 900 and sum(vitals.breathing_rate) == 900
    assert vitals.heart_rate[60:65] == (180,) * 5 and vitals.breathing_rate[15] == 900
    # restart on the same store: the day summaries are history again, the day in progress
    # goes on counting where it stopped
    again = make_rig(monday + 23.5 * H, registry=rig.store.registry(), store=rig.store)
    again.run(monday + 23.6 * H, [s.vitals("bs1", monday + 23.55 * H, hr=61.0)])
    again.runner.advance(monday + 23.7 * H)  # the next save writes the day's running total
    assert sum(again.store.vitals_days[("r1", MONDAY)].heart_rate) == 901


class GatedStore(MemoryStore):
    """A memory store whose writes wait for a gate: a slow database."""

    def __init__(self, registry: RegistrySnapshot) -> None:
        super().__init__(registry)
        self.gate = threading.Event()

    def write(
        self,
        detections: Sequence[DetectionRecord],
        routine_days: Sequence[RoutineDay],
        vitals_days: Sequence[VitalsDay],
    ) -> int:
        assert self.gate.wait(10.0)
        return super().write(detections, routine_days, vitals_days)


def test_full_queue_makes_ingest_wait_and_nothing_is_dropped() -> None:
    reg = site_registry()
    store = GatedStore(reg)
    metrics = CollectorRegistry()
    runner = AnalysisRunner(
        settings(queue_size=1, check_interval_s=60.0), store, metrics_registry=metrics
    )
    runner.start()
    stream = Stream(reg)
    now = time.time()
    presses = [[stream.event("bt1", now + i, "press")] for i in range(3)]
    try:
        runner.submit(presses[0])  # analysed; its write hangs on the gate
        time.sleep(0.3)
        runner.submit(presses[1])  # waits in the queue (one batch)
        done = threading.Event()

        def ingest() -> None:
            runner.submit(presses[2])
            done.set()

        waiter = threading.Thread(target=ingest)
        waiter.start()
        assert not done.wait(0.5), "submit must wait while the queue is full"
        assert metrics.get_sample_value("safehome_analysis_backpressure_total") == 1.0
        store.gate.set()
        assert done.wait(5.0)
        waiter.join()
    finally:
        store.gate.set()
        runner.stop()
    assert [r.started for r in store.detections] == [round(now + i, 3) for i in range(3)]


def test_detail_values_are_stored_as_plain_json() -> None:
    det = Detection(
        DetectionKind.FALL,
        "r1",
        1.0,
        "x",
        details={"a": np.float64(1.5), "b": np.bool_(True), "c": float("nan"), "d": 3},  # type: ignore[dict-item]
    )
    rec = DetectionRecord.of(det, site_id=None, resident_id=None, device_id=None, location_id=None)
    assert rec.details == {"a": 1.5, "b": True, "c": None, "d": 3}
    assert type(rec.details["a"]) is float and type(rec.details["b"]) is bool


def test_urgent_batch_never_waits_and_is_written_before_queued_batches() -> None:
    """The ingest event lane's alarms pass a full queue: analysed and written first."""
    reg = site_registry()
    store = GatedStore(reg)
    runner = AnalysisRunner(settings(queue_size=1, check_interval_s=60.0), store)
    runner.start()
    stream = Stream(reg)
    now = time.time()
    presses = [[stream.event("bt1", now + i, "press")] for i in range(3)]
    try:
        runner.submit(presses[0])  # analysed; its write hangs on the gate
        time.sleep(0.3)
        runner.submit(presses[1])  # the queue is full now
        done = threading.Event()

        def event_lane() -> None:
            runner.submit_urgent(presses[2])
            done.set()

        threading.Thread(target=event_lane).start()
        assert done.wait(2.0), "submit_urgent must not wait for room in the queue"
        store.gate.set()
        deadline = time.monotonic() + 5.0
        while len(store.detections) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        store.gate.set()
        runner.stop()
    assert [r.started for r in store.detections] == [round(now + i, 3) for i in (0, 2, 1)]
