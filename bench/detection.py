"""Detection benchmark: how many devices one core analyses in real time through the runner.

Everything runs in this process on one thread, on a virtual clock, with the in-memory store:
``AnalysisRunner.feed`` gets every device's messages of one second as ingest would hand them
over, then ``advance`` runs whatever is due (the periodic checks every ``--check-interval``
seconds of device time: fall windows, routine, vitals, device health; writing detections).
Only those two calls are timed, with the CPU time of the process (``time.process_time``), so
building the messages does not count. A result of *N per core* means one core would keep up
with N such devices streaming in real time.

Signals are realistic and cheap to make up front: each wearable replays one of 64 motion
templates of the simulator's :class:`~devices.signals.MotionModel` (walking, standing, sitting,
lying in bed; 1 s batches of 50 samples at 50 Hz), and ``--falls`` of them carry a fall (a
walking fall backwards, impact about 5 g, then lying still). Bed sensors send 1 Hz ``vitals``
from the simulator's :class:`~devices.signals.VitalsModel` (in bed asleep or awake, or out of
bed).

Baseline, measured in the same run on the same batches: the bare
:class:`~analytics.falls.FallDetector` per wearable without the runner
(``baseline_detector_only_wearables_per_core``); ``ratio_to_baseline`` is the runner's rate
over it (the share of the bare detector's throughput the full path keeps).

Safe-home kit homes (hub, door contact, PIR, smoke detector; ``--kit-homes``) send about 60
messages an hour each (PIR triggers, door events, every device's 5-minute heartbeat), fed the
same way: ``kit_homes_per_core`` (target 50,000).

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analytics.falls import FallDetector, FallParams
from analytics.types import DetectionKind
from devices.protocol import AccelBatch, Channel, DeviceKind, Envelope, Event, Reading
from devices.signals import Activity, MotionModel, VitalsModel
from gateway.analysis import AnalysisRunner, MemoryStore, RegistrySnapshot, ResidentInfo
from gateway.ingest import StoredMessage
from gateway.registry import DeviceInfo
from gateway.replay import VirtualClock
from gateway.settings import AnalysisSettings

FS = 50
TEMPLATES = 64
SITE = "bench"
START = 1_705_284_000.0  # 2024-01-15 10:00 in China: daytime
TARGET_WEARABLES_PER_CORE = 10_000

Signal = npt.NDArray[np.float32]


def motion_template(seed: int, seconds: int) -> Signal:
    """``seconds`` of one wearer's everyday motion, shape (seconds * 50, 3), in g."""
    rng = random.Random(seed)
    model = MotionModel(rng, np.random.default_rng(seed))
    in_bed = seed % 4 == 0  # a quarter lie in bed (daytime nap, bedridden)
    model.activity = (Activity.WALKING, Activity.STANDING, Activity.SITTING)[seed % 3]
    chunks = [
        model.batch(START + s, FS, float(FS), in_bed=in_bed, on_floor=False)[0].T
        for s in range(seconds)
    ]
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)


def fall_template(seed: int, seconds: int, fall_at: float) -> Signal:
    """Standing still, then from ``fall_at`` s: 6 s walking, a fall backwards, lying still."""
    rng = np.random.default_rng(seed)
    n = seconds * FS
    up = np.array([0.0, 1.0, 0.0])
    supine = np.array([0.0, 0.0, 1.0])
    side = np.array([1.0, 0.0, 0.0])
    out = np.tile(up, (n, 1))
    a = round(fall_at * FS)
    t = np.arange(6 * FS) / FS
    walk = (1.0 + 0.3 * np.sin(2 * np.pi * 2.0 * t))[:, None] * up
    out[a : a + len(t)] = walk + (0.15 * np.sin(2 * np.pi * t))[:, None] * side
    w = np.linspace(0.0, 1.0, round(0.6 * FS))[:, None]
    path = (1 - w) * up + w * supine
    b = a + len(t)
    out[b : b + len(w)] = 0.5 * path / np.linalg.norm(path, axis=1, keepdims=True)
    out[b + len(w) :] = supine
    i = np.arange(n)
    out += (4.0 * np.exp(-0.5 * ((i - (b + len(w))) / (0.04 * FS)) ** 2))[:, None] * supine
    noisy: npt.NDArray[np.float64] = out + rng.normal(0.0, 0.01, out.shape)
    return noisy.astype(np.float32)


@dataclass(frozen=True, slots=True)
class Fleet:
    """Devices, their registry and their signals."""

    registry: RegistrySnapshot
    infos: list[DeviceInfo]
    signals: list[Signal]  # per wearable (shared templates), empty for beds
    vitals: list[list[tuple[bool, float | None, float | None, float]]]  # per bed template


def wearable_fleet(n: int, seconds: int, falls: int) -> Fleet:
    templates = [motion_template(k, seconds) for k in range(TEMPLATES)]
    signals = [templates[w % TEMPLATES] for w in range(n)]
    step = max(1, n // max(falls, 1))
    for k, w in enumerate(range(0, step * falls, step)):
        signals[w] = fall_template(1000 + k, seconds, fall_at=2.0 + (1.5 * k) % 10)
    infos = [
        DeviceInfo(f"wr{w}", SITE, DeviceKind.WEARABLE, f"home{w}", None, f"r{w}", None)
        for w in range(n)
    ]
    return Fleet(_registry(infos), infos, signals, [])


def bed_fleet(n: int, seconds: int) -> Fleet:
    templates = []
    for k in range(TEMPLATES):
        model = VitalsModel(random.Random(k))
        in_bed, asleep = k % 5 != 0, k % 5 in (1, 2, 3)  # most in bed, some awake, some out
        samples = []
        for _ in range(seconds):
            s = model.step(in_bed=in_bed, asleep=asleep)
            samples.append((s.presence, s.hr, s.rr, s.movement))
        templates.append(samples)
    infos = [
        DeviceInfo(f"bs{b}", SITE, DeviceKind.BED_SENSOR, f"home{b}", f"bed{b}", f"r{b}", None)
        for b in range(n)
    ]
    return Fleet(_registry(infos), infos, [], [templates[b % TEMPLATES] for b in range(n)])


def _registry(infos: Sequence[DeviceInfo]) -> RegistrySnapshot:
    residents = {i.resident_id: ResidentInfo(i.resident_id, SITE) for i in infos if i.resident_id}
    return RegistrySnapshot({i.device_id: i for i in infos}, residents, {SITE: 8 * 3600.0})


def accel_second(fleet: Fleet, second: int) -> list[StoredMessage]:
    t = START + second
    out = []
    for w, info in enumerate(fleet.infos):
        env = Envelope(SITE, info.device_id, Channel.TELEMETRY, f"a{second}", second, t, "accel")
        samples = fleet.signals[w][second * FS : (second + 1) * FS]
        out.append(StoredMessage(info, AccelBatch(env, float(FS), samples), t + 1.05))
    return out


def vitals_second(fleet: Fleet, second: int) -> list[StoredMessage]:
    t = START + second
    out = []
    for b, info in enumerate(fleet.infos):
        presence, hr, rr, movement = fleet.vitals[b][second]
        env = Envelope(SITE, info.device_id, Channel.TELEMETRY, f"v{second}", second, t, "vitals")
        out.append(StoredMessage(info, Reading(env, presence, hr, rr, movement), t + 0.05))
    return out


@dataclass(frozen=True, slots=True)
class RunResult:
    cpu_s: float
    detections: dict[str, int]


def run_runner(
    fleet: Fleet,
    seconds: int,
    make: Callable[[Fleet, int], list[StoredMessage]],
    settings: AnalysisSettings,
) -> RunResult:
    """Feed ``seconds`` of the fleet's messages through a runner; CPU time of feed+advance."""
    store = MemoryStore(fleet.registry)
    clock = VirtualClock(START)
    runner = AnalysisRunner(settings, store, clock=clock)
    runner.rebuild()
    cpu = 0.0
    for second in range(seconds):
        batch = make(fleet, second)
        clock.now = START + second + 1.05
        c0 = time.process_time()
        runner.feed(batch)
        runner.advance()
        cpu += time.process_time() - c0
    counts: dict[str, int] = {}
    for rec in store.detections:
        if not rec.resolved:
            counts[rec.kind.value] = counts.get(rec.kind.value, 0) + 1
    return RunResult(cpu, counts)


KIT_MSGS_PER_HOUR = 60.0
"""A kit home (hub, door contact, PIR, smoke detector): about 10 PIR triggers and 1 door
event an hour over the day, and each device's 5-minute heartbeat (4 x 12 an hour)."""
TARGET_KIT_HOMES_PER_CORE = 50_000


def kit_fleet(n: int) -> Fleet:
    """``n`` kit homes, each with a resident: hub, door contact, PIR and smoke detector."""
    infos = []
    for h in range(n):
        for prefix, kind in (("hub", DeviceKind.HOME_HUB), ("door", DeviceKind.DOOR_CONTACT),
                             ("pir", DeviceKind.MOTION_SENSOR),
                             ("smoke", DeviceKind.SMOKE_DETECTOR)):  # fmt: skip
            infos.append(DeviceInfo(f"{prefix}{h}", SITE, kind, f"home{h}", None, f"r{h}", None))
    return Fleet(_registry(infos), infos, [], [])


def kit_second(fleet: Fleet, second: int) -> list[StoredMessage]:
    """The kit messages of one second: each home sends one with probability
    ``KIT_MSGS_PER_HOUR / 3600`` (PIR motion 1/6, door 1/60, heartbeats the rest)."""
    rng = random.Random(second)
    t = START + second
    out = []
    n = len(fleet.infos) // 4
    k = max(0, round(n * KIT_MSGS_PER_HOUR / 3600.0 + rng.gauss(0.0, 1.0)))
    for h in rng.sample(range(n), min(n, k)):
        r = rng.random()
        if r < 1 / 6:
            info = fleet.infos[4 * h + 2]
            env = Envelope(SITE, info.device_id, Channel.EVENT, f"k{second}", second, t, "motion")
            msg: Reading | Event = Event(env, {"holdoff_s": 60})
        elif r < 1 / 6 + 1 / 60:
            info = fleet.infos[4 * h + 1]
            kind = "open" if rng.random() < 0.5 else "close"
            env = Envelope(SITE, info.device_id, Channel.EVENT, f"k{second}", second, t, kind)
            msg = Event(env, {})
        else:
            info = fleet.infos[4 * h + rng.randrange(4)]
            env = Envelope(SITE, info.device_id, Channel.TELEMETRY, f"k{second}", second, t,
                           "heartbeat")  # fmt: skip
            msg = Reading(env, battery=90)
        out.append(StoredMessage(info, msg, t + 0.05))
    return out


def run_baseline(fleet: Fleet, seconds: int) -> float:
    """The bare fall detector on the same batches: CPU seconds."""
    detectors = [FallDetector(FallParams()) for _ in fleet.infos]
    cpu = 0.0
    for second in range(seconds):
        batch = accel_second(fleet, second)
        c0 = time.process_time()
        for det, sm in zip(detectors, batch, strict=True):
            msg = sm.message
            assert isinstance(msg, AccelBatch)
            det.update(msg.envelope.ts, msg.samples)
        cpu += time.process_time() - c0
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wearables", type=int, default=5000)
    parser.add_argument("--beds", type=int, default=5000)
    parser.add_argument("--seconds", type=int, default=60, help="device time simulated")
    parser.add_argument("--falls", type=int, default=5, help="wearables that fall (early on)")
    parser.add_argument("--check-interval", type=float, default=5.0)
    parser.add_argument("--kit-homes", type=int, default=5000, help="safe-home kit homes")
    args = parser.parse_args()
    if args.seconds < 50:
        parser.error("--seconds must be at least 50 (falls are confirmed after 30 s)")
    settings = AnalysisSettings(check_interval_s=args.check_interval)
    started = time.perf_counter()

    wearables = wearable_fleet(args.wearables, args.seconds, args.falls)
    run_baseline(wearables, 2)  # warm-up (numpy and allocator caches)
    baseline_cpu = run_baseline(wearables, args.seconds)
    worn = run_runner(wearables, args.seconds, accel_second, settings)
    beds = bed_fleet(args.beds, args.seconds)
    bed = run_runner(beds, args.seconds, vitals_second, settings)
    kit = run_runner(kit_fleet(args.kit_homes), args.seconds, kit_second, settings)
    kit_homes_per_core = args.kit_homes * args.seconds / kit.cpu_s

    device_s_w = args.wearables * args.seconds
    device_s_b = args.beds * args.seconds
    wearables_per_core = device_s_w / worn.cpu_s
    baseline_per_core = device_s_w / baseline_cpu
    beds_per_core = device_s_b / bed.cpu_s
    falls_found = worn.detections.get(DetectionKind.FALL.value, 0)
    false_alarms = sum(v for k, v in worn.detections.items() if k != DetectionKind.FALL.value)
    print(f"wearables: {args.wearables} x {args.seconds} s at 50 Hz ({device_s_w} batches)")
    print(
        f"  runner          {worn.cpu_s:7.2f} s CPU  -> {wearables_per_core:9,.0f} wearables/core"
    )
    print(
        f"  detector only   {baseline_cpu:7.2f} s CPU  -> {baseline_per_core:9,.0f} wearables/core"
    )
    print(f"  per batch       {worn.cpu_s / device_s_w * 1e6:7.1f} µs (detector only "
          f"{baseline_cpu / device_s_w * 1e6:.1f} µs)")  # fmt: skip
    print(f"  falls injected {args.falls}, FALL detections {falls_found}, "
          f"other detections {false_alarms}")  # fmt: skip
    print(f"bed sensors: {args.beds} x {args.seconds} s at 1 Hz ({device_s_b} readings)")
    print(f"  runner          {bed.cpu_s:7.2f} s CPU  -> {beds_per_core:9,.0f} bed sensors/core")
    print(f"  per reading     {bed.cpu_s / device_s_b * 1e6:7.1f} µs; detections {bed.detections}")
    print(f"kit homes: {args.kit_homes} x {args.seconds} s at {KIT_MSGS_PER_HOUR:g} messages/h "
          f"(hub, door, PIR, smoke)")  # fmt: skip
    print(f"  runner          {kit.cpu_s:7.2f} s CPU  -> {kit_homes_per_core:9,.0f} kit homes/core")
    print(f"wall time {time.perf_counter() - started:.1f} s")
    print(
        json.dumps(
            {
                "wearables_per_core": round(wearables_per_core),
                "bed_sensors_per_core": round(beds_per_core),
                "kit_homes_per_core": round(kit_homes_per_core),
                "target_kit_homes_per_core": TARGET_KIT_HOMES_PER_CORE,
                "kit_meets_target": kit_homes_per_core >= TARGET_KIT_HOMES_PER_CORE,
                "kit_detections": kit.detections,
                "samples_per_s": round(wearables_per_core * FS),
                "baseline_detector_only_wearables_per_core": round(baseline_per_core),
                "ratio_to_baseline": round(wearables_per_core / baseline_per_core, 3),
                "target_wearables_per_core": TARGET_WEARABLES_PER_CORE,
                "meets_target": wearables_per_core >= TARGET_WEARABLES_PER_CORE,
                "wearables": args.wearables,
                "bed_sensors": args.beds,
                "seconds": args.seconds,
                "check_interval_s": args.check_interval,
                "falls_injected": args.falls,
                "falls_detected": falls_found,
                "other_wearable_detections": false_alarms,
                "bed_detections": bed.detections,
                "cpu_s": {
                    "runner_wearables": round(worn.cpu_s, 3),
                    "detector_only": round(baseline_cpu, 3),
                    "runner_beds": round(bed.cpu_s, 3),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
