"""Simulator without a broker: signal models, virtual devices, scenarios, manifests, MQTT bytes."""

from __future__ import annotations

import dataclasses
import os
import random
import stat
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson
import pytest

from devices.errors import ManifestError, ScenarioError
from devices.manifest import (
    BrokerEndpoint,
    ManifestDevice,
    SiteManifest,
    load_manifest,
    manifest_from_dict,
    manifest_to_dict,
    save_manifest,
)
from devices.mqtt311 import connect_packet
from devices.protocol import (
    AccelBatch,
    Channel,
    DeviceKind,
    Event,
    Message,
    Reading,
    RowKind,
    State,
    Topic,
    decode,
)
from devices.scenario import (
    Incident,
    IncidentKind,
    Scenario,
    SilenceMode,
    bind_scenario,
    default_scenario,
    load_scenario,
    scenario_from_dict,
)
from devices.signals import (
    Activity,
    DailyRoutine,
    MotionModel,
    ResidentModel,
    VitalsModel,
    VitalsSample,
)
from devices.simulator import SimulationConfig, SimulationReport
from devices.transport import LinkSpec
from devices.virtual import (
    BedSensorDevice,
    ButtonDevice,
    Outgoing,
    VirtualDevice,
    WearableDevice,
    make_virtual_device,
)

H = 3600.0
# 2026-01-01 00:00 local time in UTC+8, as epoch seconds
MIDNIGHT = 1_767_196_800.0
OFFSET = 8 * 3600


def at(hours: float) -> float:
    return MIDNIGHT + hours * H


ROUTINE = DailyRoutine(
    bedtime_s=22 * H,
    rise_s=6.5 * H,
    nap_start_s=13 * H,
    nap_len_s=1800.0,
    night_trip_s=2 * H,
    night_trip_len_s=600.0,
    sleep_latency_s=1200.0,
)


def resident(routine: DailyRoutine = ROUTINE) -> ResidentModel:
    return ResidentModel(routine, utc_offset_s=OFFSET)


def device(
    kind: DeviceKind, now: float, res: ResidentModel | None = None, **kw: float
) -> VirtualDevice:
    return make_virtual_device(
        kind,
        f"{kind.value}-1",
        seed=1,
        resident=res or resident(),
        now=now,
        boot_id="b00710ad",
        seq_start=1000,
        **kw,
    )


def decode_all(dev: VirtualDevice, messages: list[Outgoing], now: float) -> list[Message]:
    out: list[Message] = []
    for m in messages:
        t = Topic("shg", "site", dev.id, m.channel)
        msg = decode(t, m.payload, dev.kind, now=now)
        assert msg.envelope.msg_id == m.msg_id
        assert msg.envelope.seq == m.seq
        assert msg.envelope.type == m.type
        out.append(msg)
    return out


# --------------------------------------------------------------------------------------------
# Routine and resident
# --------------------------------------------------------------------------------------------


def test_daily_routine_presence() -> None:
    local = [h * H for h in (23.0, 1.0, 6.0)]
    assert all(ROUTINE.in_bed(t) for t in local)
    assert not ROUTINE.in_bed(2.05 * H)  # toilet trip
    assert not ROUTINE.in_bed(7.0 * H)  # up in the morning
    assert not ROUTINE.in_bed(10.0 * H)
    assert ROUTINE.in_bed(13.2 * H)  # nap
    assert not ROUTINE.in_bed(14.0 * H)
    assert ROUTINE.asleep(1.0 * H)
    assert not ROUTINE.asleep(22.1 * H)  # still falling asleep
    assert not ROUTINE.asleep(6.4 * H)  # about to rise


def test_sampled_routines_are_plausible() -> None:
    rng = random.Random(5)
    for _ in range(100):
        r = DailyRoutine.sample(rng)
        assert 20.5 * H <= r.bedtime_s <= 22.5 * H
        assert 5.75 * H <= r.rise_s <= 7.25 * H
        assert r.in_bed(4.9 * H) or (r.night_trip_s is not None)
        assert not r.in_bed(10 * H)


def test_resident_uses_local_time_and_overrides() -> None:
    res = resident()
    assert res.in_bed(at(23))  # 23:00 local = 15:00 UTC
    assert not res.in_bed(at(9))
    # not getting up: kept in bed past the rise time
    res.override(at(6), at(9), in_bed=True)
    assert res.in_bed(at(7.5))
    assert res.asleep(at(7.5))
    assert not res.in_bed(at(9.5))
    # night bed exit without return
    res.override(at(24 + 1), None, in_bed=False)
    assert not res.in_bed(at(24 + 3))
    assert not res.in_bed(at(24 + 23))


def test_resident_on_floor_after_fall() -> None:
    res = resident()
    res.fall(at(10), 600.0)
    assert res.on_floor(at(10) + 1)
    assert not res.in_bed(at(10) + 1)
    assert not res.on_floor(at(10) + 601)
    res.fall(at(23), None)  # does not get up
    assert res.on_floor(at(30))
    assert not res.in_bed(at(30))


# --------------------------------------------------------------------------------------------
# Bed vitals
# --------------------------------------------------------------------------------------------


def test_vitals_ranges_in_bed() -> None:
    model = VitalsModel(random.Random(7), hr_base=68.0, rr_base=15.0)
    samples = [model.step(in_bed=True, asleep=i < 3600) for i in range(7200)]
    hrs = [s.hr for s in samples if s.hr is not None]
    rrs = [s.rr for s in samples if s.rr is not None]
    assert all(s.presence for s in samples)
    assert len(hrs) > 0.9 * len(samples)  # vitals missing only during turns
    assert all(40.0 <= h <= 130.0 for h in hrs)
    assert 55.0 <= float(np.mean(hrs)) <= 85.0
    assert all(8.0 <= r <= 28.0 for r in rrs)
    assert 12.0 <= float(np.mean(rrs)) <= 20.0
    assert all(0.0 <= s.movement <= 1.0 for s in samples)
    # slow drift and noise: not constant, but no jumps of more than a few bpm between seconds
    steps = np.abs(np.diff(hrs))
    assert 0.3 < float(np.median(steps)) < 4.0


def test_vitals_sleep_lower_and_quieter_than_awake() -> None:
    model = VitalsModel(random.Random(8), hr_base=70.0, rr_base=16.0)
    asleep = [model.step(in_bed=True, asleep=True) for _ in range(3600)]
    awake = [model.step(in_bed=True, asleep=False) for _ in range(3600)]

    def mean_hr(xs: list[VitalsSample]) -> float:
        return float(np.mean([s.hr for s in xs if s.hr is not None]))

    assert mean_hr(asleep) < mean_hr(awake)
    assert float(np.median([s.movement for s in asleep])) < 0.1
    assert float(np.median([s.movement for s in awake])) > 0.1


def test_vitals_without_presence_have_no_heart_or_breathing_rate() -> None:
    model = VitalsModel(random.Random(9))
    for _ in range(100):
        s = model.step(in_bed=False, asleep=False)
        assert (s.presence, s.hr, s.rr, s.movement) == (False, None, None, 0.0)


def test_bed_sensor_messages_and_transitions() -> None:
    res = resident()
    start = at(21.9)  # a few minutes before bedtime
    dev = device(DeviceKind.BED_SENSOR, start, res, heartbeat_s=60.0)
    assert isinstance(dev, BedSensorDevice)
    messages: list[Outgoing] = []
    for i in range(600):
        messages += dev.tick(start + i)
    decoded = decode_all(dev, messages, start + 600)
    vitals = [m for m in decoded if isinstance(m, Reading) and m.envelope.type == "vitals"]
    assert len(vitals) == 600
    assert [v.presence for v in vitals[:300]] == [False] * 300  # 21:54 .. 21:59
    assert all(v.presence for v in vitals[-200:])  # in bed from 22:00
    events = [m for m in decoded if isinstance(m, Event)]
    assert [e.envelope.type for e in events] == ["bed_entry"]
    heartbeats = [m for m in decoded if isinstance(m, Reading) and m.envelope.type == "heartbeat"]
    assert 9 <= len(heartbeats) <= 11
    assert all(h.battery is None for h in heartbeats)  # mains powered
    seqs = [m.seq for m in messages]
    assert seqs == list(range(1000, 1000 + len(messages)))  # monotonic, no gaps
    assert len({m.msg_id for m in messages}) == len(messages)
    assert all(m.msg_id.startswith("b00710ad-") for m in messages)
    assert {m.row for m in messages} == {RowKind.READINGS, RowKind.EVENTS}


def test_night_bed_exit_produces_one_exit_event() -> None:
    res = resident()
    start = at(24 + 3)  # 03:00, asleep
    dev = device(DeviceKind.BED_SENSOR, start, res)
    res.override(start + 30, None, in_bed=False)
    messages = [m for i in range(300) for m in dev.tick(start + i)]
    events = [m.type for m in messages if m.channel is Channel.EVENT]
    assert events == ["bed_exit"]


# --------------------------------------------------------------------------------------------
# Wearable motion
# --------------------------------------------------------------------------------------------


def motion(seed: int = 1) -> MotionModel:
    return MotionModel(random.Random(seed), np.random.default_rng(seed))


def magnitudes(axes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = np.sqrt((axes * axes).sum(axis=0))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_accel_at_rest_is_one_g_in_a_worn_orientation(seed: int) -> None:
    m = motion(seed)
    t = at(23.5)
    axes, impact = m.batch(t, 50, 50.0, in_bed=True, on_floor=False)
    assert axes.shape == (3, 50)
    assert not impact
    assert m.activity is Activity.LYING
    mag = magnitudes(axes)
    assert abs(float(mag.mean()) - 1.0) < 0.05
    assert float(mag.std()) < 0.03
    # the gravity direction in the device frame depends on how the device is worn
    assert float(np.abs(axes.mean(axis=1)).max()) < 0.999


def test_orientation_differs_between_devices() -> None:
    means = []
    for seed in range(4):
        m = motion(seed)
        m.activity = Activity.STANDING
        m._bout_end = float("inf")
        axes, _ = m.batch(at(10), 50, 50.0, in_bed=False, on_floor=False)
        means.append(axes.mean(axis=1))
    angles = [
        np.degrees(np.arccos(np.clip(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))
        for i, a in enumerate(means)
        for b in means[i + 1 :]
    ]
    assert max(angles) > 5.0


def test_walking_has_steps_at_about_1_8_hz() -> None:
    m = motion(3)
    m.activity = Activity.WALKING
    m._bout_end = float("inf")
    t = at(10)
    batches = [m.batch(t + i, 50, 50.0, in_bed=False, on_floor=False)[0] for i in range(20)]
    axes = np.concatenate(batches, axis=1)
    mag = magnitudes(axes)
    assert abs(float(mag.mean()) - 1.0) < 0.1
    assert float(mag.std()) > 0.1  # clearly moving
    spectrum = np.abs(np.fft.rfft(mag - mag.mean()))
    freqs = np.fft.rfftfreq(mag.shape[0], 1 / 50.0)
    peak = float(freqs[int(np.argmax(spectrum))])
    assert abs(peak - m.step_hz) < 0.1
    assert 1.6 <= m.step_hz <= 2.0
    assert abs(m.steps_total - 20 * m.step_hz) < 1e-6
    # batches join without a seam: the gait continues across batch boundaries
    jump = float(np.abs(axes[:, 50] - axes[:, 49]).max())
    typical = float(np.median(np.abs(np.diff(axes, axis=1))))
    assert jump < 10 * typical + 0.1


def test_fall_signature_impact_then_lying_still() -> None:
    m = motion(4)
    m.activity = Activity.STANDING
    m._bout_end = float("inf")
    t = at(10)
    before, _ = m.batch(t, 50, 50.0, in_bed=False, on_floor=False)
    plan = m.plan_fall(t + 1.3, 3.6)
    fall_axes, impact = m.batch(t + 1, 50, 50.0, in_bed=False, on_floor=False)
    assert impact
    mag = magnitudes(fall_axes)
    assert abs(float(mag.max()) - 3.6) < 0.3
    peak_index = int(np.argmax(mag))
    assert abs((t + 1 + peak_index / 50.0) - plan.impact_time) < 0.03
    assert float(mag[: peak_index - 5].min()) < 0.6  # partly supported fall before the impact
    _, impact_after = m.batch(t + 2, 50, 50.0, in_bed=False, on_floor=True)
    assert not impact_after
    assert m.activity is Activity.FLOOR
    later, _ = m.batch(t + 3, 50, 50.0, in_bed=False, on_floor=True)
    mag_later = magnitudes(later)
    assert abs(float(mag_later.mean()) - 1.0) < 0.05
    assert float(mag_later.std()) < 0.02  # lying still
    g_before = before.mean(axis=1)
    g_after = later.mean(axis=1)
    cos = float(np.dot(g_before, g_after) / np.linalg.norm(g_before) / np.linalg.norm(g_after))
    assert np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))) > 45.0  # posture changed


def test_simulated_fall_is_seen_by_the_production_fall_detector() -> None:
    from analytics.falls import FallDetector

    m = motion(7)
    m.activity = Activity.WALKING
    m._bout_end = float("inf")
    t = at(10)
    detector = FallDetector()
    m.plan_fall(t + 10.3, 3.5)
    candidates = []
    for k in range(30):
        axes, _ = m.batch(t + k, 50, 50.0, in_bed=False, on_floor=k > 11)
        candidates += detector.update(t + k, np.asarray(axes, dtype=np.float64).T)
    assert len(candidates) == 1
    assert abs(candidates[0].time - (t + 10.3 + 0.42)) < 0.1


def test_wearable_messages_and_fall_event() -> None:
    res = resident()
    start = at(10)
    dev = device(DeviceKind.WEARABLE, start, res, heartbeat_s=30.0)
    assert isinstance(dev, WearableDevice)
    messages: list[Outgoing] = []
    for i in range(1, 121):
        if i == 90:
            impact = dev.start_fall(start + i, peak_g=3.4, floor_s=None, flag=True)
        messages += dev.tick(start + i)
    decoded = decode_all(dev, messages, start + 121)
    accel = [m for m in decoded if isinstance(m, AccelBatch)]
    assert len(accel) == 120
    assert all(a.samples.shape == (50, 3) for a in accel)
    ts = [a.envelope.ts for a in accel]
    assert np.allclose(np.diff(ts), 1.0, atol=0.0015)  # contiguous 1 s batches
    types = [m.envelope.type for m in decoded]
    assert 4 <= types.count("hr") <= 13
    assert types.count("steps") == 1  # every 60 s, the first one a minute after start
    assert 3 <= types.count("heartbeat") <= 5
    falls = [m for m in decoded if isinstance(m, Event) and m.envelope.type == "fall"]
    assert len(falls) == 1
    assert abs(falls[0].envelope.ts - impact) < 0.002
    assert abs(float(falls[0].data["peak_g"]) - 3.4) < 0.3
    assert res.on_floor(start + 100)
    hb = [m for m in decoded if isinstance(m, Reading) and m.envelope.type == "heartbeat"]
    assert all(h.worn is True and h.battery is not None for h in hb)


def test_button_messages() -> None:
    start = at(10)
    dev = device(DeviceKind.BUTTON, start, heartbeat_s=10.0)
    assert isinstance(dev, ButtonDevice)
    messages = [m for i in range(60) for m in dev.tick(start + i)]
    assert {m.type for m in messages} == {"heartbeat"}
    assert 5 <= len(messages) <= 7
    press = dev.press(start + 61)
    long_press = dev.press(start + 62, long=True)
    cancel = dev.cancel(start + 63)
    low = dev.low_battery(start + 64, 7)
    online = dev.state(start + 65, online=True)
    will = dev.state(start + 65, online=False)
    decoded = decode_all(dev, [press, long_press, cancel, low, online, will], start + 66)
    assert [d.envelope.type for d in decoded] == [
        "press",
        "long_press",
        "cancel",
        "low_battery",
        "online",
        "offline",
    ]
    assert isinstance(decoded[3], Event)
    assert decoded[3].data == {"battery": 7}
    assert isinstance(decoded[5], State)
    assert decoded[5].online is False
    assert will.retain and online.retain and not press.retain
    assert press.is_event and not online.is_event


def test_config_changes_heartbeat_interval() -> None:
    start = at(10)
    dev = device(DeviceKind.BUTTON, start, heartbeat_s=300.0)
    dev.set_heartbeat_interval(15.0, start)
    count = sum(len(dev.tick(start + i)) for i in range(1, 61))
    assert 4 <= count <= 5


def test_same_seed_same_signals_different_boot_ids() -> None:
    res_a, res_b = resident(), resident()
    a = make_virtual_device(DeviceKind.BED_SENSOR, "bed-9", seed=3, resident=res_a, now=at(23))
    b = make_virtual_device(DeviceKind.BED_SENSOR, "bed-9", seed=3, resident=res_b, now=at(23))
    ma = a.tick(at(23) + 1)
    mb = b.tick(at(23) + 1)
    pa, pb = orjson.loads(ma[0].payload), orjson.loads(mb[0].payload)
    assert pa["hr"] == pb["hr"]
    assert pa["id"] != pb["id"]  # a new boot id every run: ids never repeat across runs


# --------------------------------------------------------------------------------------------
# Scenario
# --------------------------------------------------------------------------------------------


def manifest(n_each: int = 2) -> SiteManifest:
    devices: list[ManifestDevice] = []
    for i in range(n_each):
        r = f"R{i:04d}"
        devices += [
            ManifestDevice(f"bed-{i}", DeviceKind.BED_SENSOR, "pw", bed=f"B{i}", resident=r),
            ManifestDevice(f"wr-{i}", DeviceKind.WEARABLE, "pw", resident=r),
            ManifestDevice(f"btn-{i}", DeviceKind.BUTTON, "pw", resident=r),
        ]
    return SiteManifest("site-1", tuple(devices))


def test_scenario_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        """
name = "night"
duration_s = 900

[[incident]]
at_s = 120
kind = "fall"
device = "wr-1"
peak_g = 3.8
duration_s = 600

[[incident]]
at_s = 30
kind = "button_press"
cancel_after_s = 12

[[incident]]
at_s = 200
kind = "device_silent"
mode = "disconnect"
"""
    )
    sc = load_scenario(path)
    assert sc.name == "night"
    assert sc.duration_s == 900.0
    assert [i.kind for i in sc.incidents] == [
        IncidentKind.BUTTON_PRESS,
        IncidentKind.FALL,
        IncidentKind.DEVICE_SILENT,
    ]
    assert sc.incidents[0].cancel_after_s == 12.0
    assert sc.incidents[1] == Incident(
        at_s=120.0, kind=IncidentKind.FALL, device="wr-1", peak_g=3.8, duration_s=600.0
    )
    assert sc.incidents[2].mode is SilenceMode.DISCONNECT


def test_scenario_from_json(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(orjson.dumps({"incidents": [{"at_s": 5, "kind": "not_up", "duration_s": 60}]}))
    sc = load_scenario(path)
    assert sc.incidents == (Incident(at_s=5.0, kind=IncidentKind.NOT_UP, duration_s=60.0),)
    assert sc.duration_s is None


@pytest.mark.parametrize(
    "raw",
    [
        {"incident": [{"at_s": 1, "kind": "explode"}]},
        {"incident": [{"kind": "fall"}]},
        {"incident": [{"at_s": -1, "kind": "fall"}]},
        {"incident": [{"at_s": 1, "kind": "fall", "cancel_after_s": 3}]},  # not a fall parameter
        {"incident": [{"at_s": 1, "kind": "device_silent", "mode": "explode"}]},
        {"incident": [{"at_s": 1, "kind": "low_battery", "battery": 120}]},
        {"incident": [{"at_s": 1, "kind": "fall", "peak_g": 99}]},
        {"incident": [{"at_s": 1, "kind": "button_press", "long_press": "yes"}]},
        {"incident": {"at_s": 1}},
        {"duration_s": -3},
    ],
)
def test_scenario_errors(raw: dict[str, object]) -> None:
    with pytest.raises(ScenarioError):
        scenario_from_dict(raw)


def test_scenario_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[incident]\n")
    with pytest.raises(ScenarioError, match="cannot parse"):
        load_scenario(bad)


def test_bind_default_scenario_covers_every_incident_on_distinct_residents() -> None:
    m = manifest(4)
    sc = default_scenario()
    assert {i.kind for i in sc.incidents} == set(IncidentKind)
    bound = bind_scenario(sc, m)
    assert [b.at_s for b in bound] == sorted(b.at_s for b in bound)
    kinds = {d.id: d for d in m.devices}
    for b in bound:
        assert b.incident.fits(kinds[b.device].kind)
        assert b.device_kind is kinds[b.device].kind
    presses = [b for b in bound if b.incident.kind is IncidentKind.BUTTON_PRESS]
    assert presses[0].device != presses[1].device
    fall = next(b for b in bound if b.incident.kind is IncidentKind.FALL)
    not_up = next(b for b in bound if b.incident.kind is IncidentKind.NOT_UP)
    assert kinds[fall.device].resident != kinds[not_up.device].resident
    silenced = {b.device for b in bound if b.incident.kind is IncidentKind.DEVICE_SILENT}
    others = {b.device for b in bound if b.incident.kind is not IncidentKind.DEVICE_SILENT}
    assert not silenced & others


def test_bind_scenario_errors() -> None:
    m = manifest(1)
    with pytest.raises(ScenarioError, match="not in the manifest"):
        bind_scenario(Scenario(incidents=(Incident(1.0, IncidentKind.FALL, device="nope"),)), m)
    with pytest.raises(ScenarioError, match="does not apply"):
        bind_scenario(Scenario(incidents=(Incident(1.0, IncidentKind.FALL, device="bed-0"),)), m)
    only_beds = SiteManifest("s", (ManifestDevice("bed-0", DeviceKind.BED_SENSOR, "pw"),))
    with pytest.raises(ScenarioError, match="no device fits"):
        bind_scenario(Scenario(incidents=(Incident(1.0, IncidentKind.SOS),)), only_beds)


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


def test_manifest_round_trip(tmp_path: Path) -> None:
    m = dataclasses.replace(manifest(2), broker=BrokerEndpoint("10.0.0.5", 8883, True, "/ca.pem"))
    path = tmp_path / "site.json"
    save_manifest(m, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # holds device passwords
    assert load_manifest(path) == m
    assert manifest_from_dict(manifest_to_dict(m)) == m
    assert "pw" not in repr(m.devices[0])
    assert m.device("wr-1").kind is DeviceKind.WEARABLE
    assert len(m.of_kind(DeviceKind.BUTTON)) == 2


def test_manifest_defaults_and_unknown_keys() -> None:
    m = manifest_from_dict(
        {
            "site": "s1",
            "comment": "ignored",
            "devices": [{"id": "d1", "kind": "button", "password": "p", "model": "X1"}],
        }
    )
    assert m.prefix == "shg"
    assert m.utc_offset_s == 8 * 3600
    assert m.broker == BrokerEndpoint()
    assert m.devices == (ManifestDevice("d1", DeviceKind.BUTTON, "p"),)


@pytest.mark.parametrize(
    "raw",
    [
        {"devices": []},
        {"site": "a/b", "devices": []},
        {"site": "s", "prefix": "a/+", "devices": []},
        {"site": "s", "utc_offset_s": 99999, "devices": []},
        {"site": "s", "devices": {}},
        {"site": "s", "broker": {"port": 0}, "devices": []},
        {"site": "s", "broker": {"tls": "yes"}, "devices": []},
        {"site": "s", "devices": [{"id": "d 1", "kind": "button", "password": "p"}]},
        {"site": "s", "devices": [{"id": "d1", "kind": "toaster", "password": "p"}]},
        {"site": "s", "devices": [{"id": "d1", "kind": "button"}]},
        {
            "site": "s",
            "devices": [
                {"id": "d1", "kind": "button", "password": "p"},
                {"id": "d1", "kind": "wearable", "password": "p"},
            ],
        },
    ],
)
def test_manifest_errors(raw: dict[str, object]) -> None:
    with pytest.raises(ManifestError):
        manifest_from_dict(raw)


def test_manifest_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ManifestError, match="invalid JSON"):
        load_manifest(bad)


# --------------------------------------------------------------------------------------------
# Configuration, report and wire bytes
# --------------------------------------------------------------------------------------------


def test_simulation_config_defaults() -> None:
    cfg = SimulationConfig(manifest=manifest(1))
    assert cfg.heartbeat_s == 300.0
    assert cfg.stream_rate_hz == 1.0
    assert cfg.scenario is None


def test_empty_report_totals() -> None:
    report = SimulationReport("s", 0.0, 0.0, 1.0, {}, (), (), 0.0)
    assert report.expected_rows == dict.fromkeys(RowKind, 0)
    assert report.to_dict()["published"] == {"readings": 0, "accel": 0, "events": 0, "state": 0}


def test_mqtt311_connect_packet() -> None:
    spec = LinkSpec("dev-1", "dev-1", "pw", "shg/v1/s/dev-1/state", ())
    packet = connect_packet(spec, b"W", 60)
    body = (
        b"\x00\x04MQTT\x04"
        + bytes([0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02])
        + b"\x00\x3c"
        + b"\x00\x05dev-1"
        + b"\x00\x14shg/v1/s/dev-1/state"
        + b"\x00\x01W"
        + b"\x00\x05dev-1"
        + b"\x00\x02pw"
    )
    assert packet == bytes([0x10, len(body)]) + body
    long_will = connect_packet(spec, b"x" * 200, 60)
    assert long_will[0] == 0x10
    assert long_will[1] & 0x80  # two-byte remaining length
    assert (long_will[1] & 0x7F) + (long_will[2] << 7) == len(long_will) - 3
