"""Virtual devices: protocol v1 messages from the signal models, without any I/O.

A virtual device is advanced by :meth:`VirtualDevice.tick` once per stream period (1 s by
default) with the current time, and returns the messages it would publish: its stream
(``vitals`` or an ``accel`` batch), the readings that fall due (``hr``, ``steps``,
``heartbeat``) and the events its state changes raise (``bed_exit``/``bed_entry``, ``fall``,
``low_battery``). Incidents (a button press, a fall, …) are method calls. The simulator
publishes the messages; tests inspect them directly.

Message ids are ``<boot id>-<seq in hex>``: the boot id is random per run, so ids never repeat
across runs, and a retried event keeps its id and seq. Sequence numbers start from
``seq_start`` (the simulator uses the start time in milliseconds, like a device that persists
its counter, so consecutive runs stay monotonic).
"""

from __future__ import annotations

import hashlib
import math
import random
import secrets
from typing import Any, ClassVar, Final, NamedTuple

import numpy as np

from devices.household import DEV as HOUSEHOLD
from devices.household import generate_home
from devices.protocol import (
    ACCEL_FS,
    KIT_KINDS,
    Channel,
    DeviceKind,
    RowKind,
    encode_accel,
    encode_event,
    encode_heartbeat,
    encode_hr,
    encode_state,
    encode_steps,
    encode_vitals,
)
from devices.signals import MotionModel, ResidentModel, VitalsModel

__all__ = [
    "BedSensorDevice",
    "ButtonDevice",
    "Outgoing",
    "VirtualDevice",
    "WearableDevice",
    "make_virtual_device",
]

FIRMWARE: Final = "sim-1.0"
LOW_BATTERY_LEVEL: Final = 15
STEPS_INTERVAL_S: Final = 60.0


class Outgoing(NamedTuple):
    """One message a device publishes (the topic follows from ``channel``)."""

    channel: Channel
    type: str
    msg_id: str
    seq: int
    ts_ms: int
    payload: bytes
    row: RowKind

    @property
    def retain(self) -> bool:
        return self.channel is Channel.STATE

    @property
    def is_event(self) -> bool:
        return self.channel is Channel.EVENT


def _ms(t: float) -> int:
    return int(t * 1000.0)


class VirtualDevice:
    """Common behaviour: ids, sequence numbers, heartbeats, state messages, events."""

    kind: ClassVar[DeviceKind]

    def __init__(
        self,
        device_id: str,
        *,
        rng: random.Random,
        resident: ResidentModel,
        now: float,
        heartbeat_s: float = 300.0,
        period_s: float = 1.0,
        seq_start: int = 0,
        boot_id: str | None = None,
    ) -> None:
        self.id = device_id
        self.rng = rng
        self.resident = resident
        self.period_s = period_s
        self.heartbeat_s = heartbeat_s
        self._boot = (boot_id or secrets.token_hex(4)) + "-"
        self._seq = seq_start
        self._next_heartbeat = now + rng.uniform(0.0, heartbeat_s)
        self.battery: float | None = None

    # -- identifiers --------------------------------------------------------------------------

    def next_id(self) -> tuple[str, int]:
        """A fresh (message id, seq) pair."""
        seq = self._seq
        self._seq = seq + 1
        return f"{self._boot}{seq:x}", seq

    @property
    def next_seq(self) -> int:
        return self._seq

    # -- messages -----------------------------------------------------------------------------

    def state(self, now: float, *, online: bool) -> Outgoing:
        """``online`` (published after connecting) or ``offline`` (the will, or a clean stop)."""
        msg_id, seq = self.next_id()
        ts = _ms(now)
        battery = None if self.battery is None else round(self.battery)
        payload = encode_state(
            self.id, msg_id, seq, ts, online=online, battery=battery, fw=FIRMWARE, rssi=-55
        )
        return Outgoing(
            Channel.STATE,
            "online" if online else "offline",
            msg_id,
            seq,
            ts,
            payload,
            RowKind.STATE,
        )

    def event(self, now: float, type_: str, data: dict[str, Any] | None = None) -> Outgoing:
        msg_id, seq = self.next_id()
        ts = _ms(now)
        payload = encode_event(self.id, msg_id, seq, ts, event=type_, data=data)
        return Outgoing(Channel.EVENT, type_, msg_id, seq, ts, payload, RowKind.EVENTS)

    def _reading(self, type_: str, ts: int, payload: bytes, msg_id: str, seq: int) -> Outgoing:
        return Outgoing(Channel.TELEMETRY, type_, msg_id, seq, ts, payload, RowKind.READINGS)

    def heartbeat_now(self, now: float) -> Outgoing:
        """A heartbeat now (e.g. right after connecting); the next one is an interval away."""
        self._next_heartbeat = now + self.heartbeat_s
        return self.heartbeat(now)

    def heartbeat(self, now: float) -> Outgoing:
        msg_id, seq = self.next_id()
        ts = _ms(now)
        payload = encode_heartbeat(self.id, msg_id, seq, ts, **self._heartbeat_fields())
        return self._reading("heartbeat", ts, payload, msg_id, seq)

    def _heartbeat_fields(self) -> dict[str, Any]:
        return {"battery": None if self.battery is None else round(self.battery)}

    def set_heartbeat_interval(self, seconds: float, now: float) -> None:
        """Apply a receiver-set interval (``config``); the next heartbeat is due within it."""
        self.heartbeat_s = seconds
        self._next_heartbeat = min(self._next_heartbeat, now + seconds)

    def low_battery(self, now: float, level: int) -> Outgoing:
        """Battery drops to ``level`` % and the device says so."""
        self.battery = float(level)
        return self.event(now, "low_battery", {"battery": level})

    # -- time ---------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Outgoing]:
        """Advance to ``now`` (called once per period) and return the messages to publish."""
        out: list[Outgoing] = []
        self._stream(now, out)
        if now >= self._next_heartbeat:
            out.append(self.heartbeat(now))
            self._next_heartbeat = now + self.heartbeat_s
        return out

    def _stream(self, now: float, out: list[Outgoing]) -> None:
        """Kind-specific messages of one period."""


class ButtonDevice(VirtualDevice):
    """An emergency call button: heartbeats, and the presses an incident makes."""

    kind = DeviceKind.BUTTON

    def __init__(self, device_id: str, **kwargs: Any) -> None:
        super().__init__(device_id, **kwargs)
        self.battery = float(self.rng.randint(60, 100))

    def press(self, now: float, *, long: bool = False) -> Outgoing:
        return self.event(now, "long_press" if long else "press")

    def cancel(self, now: float) -> Outgoing:
        """The resident's "I'm OK"."""
        return self.event(now, "cancel")


class BedSensorDevice(VirtualDevice):
    """An under-mattress sensor: ``vitals`` every period, ``bed_exit``/``bed_entry`` events."""

    kind = DeviceKind.BED_SENSOR

    def __init__(self, device_id: str, **kwargs: Any) -> None:
        super().__init__(device_id, **kwargs)
        self.vitals = VitalsModel(self.rng)
        self._presence: bool | None = None  # mains powered: no battery

    def _stream(self, now: float, out: list[Outgoing]) -> None:
        resident = self.resident
        in_bed = resident.in_bed(now)
        sample = self.vitals.step(
            in_bed=in_bed, asleep=in_bed and resident.asleep(now), dt=self.period_s
        )
        ts = _ms(now)
        if self._presence is not None and sample.presence != self._presence:
            out.append(self.event(now, "bed_entry" if sample.presence else "bed_exit"))
        self._presence = sample.presence
        msg_id, seq = self.next_id()
        payload = encode_vitals(
            self.id,
            msg_id,
            seq,
            ts,
            presence=sample.presence,
            hr=sample.hr,
            rr=sample.rr,
            movement=sample.movement,
        )
        out.append(self._reading("vitals", ts, payload, msg_id, seq))


class WearableDevice(VirtualDevice):
    """A wrist/pendant wearable: ``accel`` batches every period at 50 Hz, ``hr`` every
    10–30 s, ``steps`` every minute, heartbeats; ``fall`` and ``sos`` events."""

    kind = DeviceKind.WEARABLE

    def __init__(self, device_id: str, *, noise: np.random.Generator, **kwargs: Any) -> None:
        super().__init__(device_id, **kwargs)
        rng = self.rng
        self.motion = MotionModel(rng, noise)
        self.hr_base = rng.uniform(62.0, 82.0)
        self.battery = rng.uniform(50.0, 100.0)
        self.worn = True
        self._samples = max(1, round(ACCEL_FS * self.period_s))
        self._next_t0: float | None = None
        self._now = 0.0
        self._next_hr = 0.0
        self._next_steps = 0.0
        self._steps_reported = 0
        self._fall_flag = False
        self._low_reported = False

    def sos(self, now: float) -> Outgoing:
        return self.event(now, "sos")

    def cancel(self, now: float) -> Outgoing:
        return self.event(now, "cancel")

    def put_on(self, now: float) -> Outgoing:
        """The wearer puts the device on: ``worn``, and a heart rate at the next period."""
        self.worn = True
        self.motion.rewear()
        self._next_hr = now
        return self.event(now, "worn")

    def take_off(self, now: float) -> Outgoing:
        """The wearer takes the device off: ``not_worn``, and no heart rate until worn."""
        self.worn = False
        return self.event(now, "not_worn")

    def shake(self, now: float, *, seconds: float, peak_g: float) -> None:
        """The device is shaken by hand from ``now`` (the next ``accel`` batches show it)."""
        self.motion.plan_shake(now, seconds, peak_g)

    def start_fall(self, now: float, *, peak_g: float, floor_s: float | None, flag: bool) -> float:
        """Fall during the next period; returns the impact time. ``flag``: the device raises
        its own ``fall`` event after the impact."""
        start = now + 0.3 * self.period_s
        plan = self.motion.plan_fall(start, peak_g)
        self.resident.fall(start + 1.2, floor_s)
        self._fall_flag = flag
        return plan.impact_time

    def _heartbeat_fields(self) -> dict[str, Any]:
        return {"battery": round(self.battery or 0.0), "worn": self.worn}

    def _stream(self, now: float, out: list[Outgoing]) -> None:
        period = self.period_s
        t0 = now - period
        nxt = self._next_t0
        if nxt is not None and abs(nxt - t0) < 0.5 * period:
            t0 = nxt
        n = self._samples
        self._next_t0 = t0 + n / ACCEL_FS
        resident = self.resident
        axes, impact = self.motion.batch(
            t0,
            n,
            ACCEL_FS,
            in_bed=resident.in_bed(t0),
            on_floor=resident.on_floor(t0),
        )
        msg_id, seq = self.next_id()
        ts = _ms(t0)
        payload = encode_accel(self.id, msg_id, seq, ts, samples=axes.T)
        out.append(Outgoing(Channel.TELEMETRY, "accel", msg_id, seq, ts, payload, RowKind.ACCEL))
        plan = self.motion.fall
        if impact and self._fall_flag and plan is not None:
            self._fall_flag = False
            peak = float(np.sqrt((axes * axes).sum(axis=0)).max())
            out.append(self.event(plan.impact_time, "fall", {"peak_g": round(peak, 2)}))
        if self.worn and now >= self._next_hr:
            msg_id, seq = self.next_id()
            ts = _ms(now)
            payload = encode_hr(self.id, msg_id, seq, ts, hr=self.motion.heart_rate(self.hr_base))
            out.append(self._reading("hr", ts, payload, msg_id, seq))
            self._next_hr = now + self.rng.uniform(10.0, 30.0)
        if now >= self._next_steps:
            if self._next_steps:  # not at start-up: nothing counted yet
                total = math.floor(self.motion.steps_total)
                steps = min(total - self._steps_reported, 10000)
                self._steps_reported = total
                msg_id, seq = self.next_id()
                ts = _ms(now)
                payload = encode_steps(self.id, msg_id, seq, ts, steps=steps)
                out.append(self._reading("steps", ts, payload, msg_id, seq))
            self._next_steps = now + STEPS_INTERVAL_S
        battery = self.battery
        if battery is not None:
            battery = max(0.0, battery - period / 7200.0)  # 1 % per two hours
            self.battery = battery
            if battery <= LOW_BATTERY_LEVEL and not self._low_reported:
                self._low_reported = True
                out.append(self.event(now, "low_battery", {"battery": round(battery)}))

    def low_battery(self, now: float, level: int) -> Outgoing:
        self._low_reported = True
        return super().low_battery(now, level)


class _Household:
    """One home's door and motion stream (:mod:`devices.household`), shared by the home's
    door contact and motion sensor, generated two weeks at a time."""

    CHUNK_DAYS = 14

    def __init__(self, seed: int, now: float, utc_offset_s: float) -> None:
        self.seed = seed
        local_midnight = (now + utc_offset_s) // 86400.0 * 86400.0 - utc_offset_s
        self.start = local_midnight
        self.chunks: list[list[tuple[float, str]]] = []

    def events(self, chunk: int) -> list[tuple[float, str]]:
        while len(self.chunks) <= chunk:
            n = len(self.chunks)
            home = generate_home(self.seed + n, self.CHUNK_DAYS, HOUSEHOLD,
                                 epoch=self.start + n * self.CHUNK_DAYS * 86400.0)  # fmt: skip
            self.chunks.append([(e.t, e.kind) for e in home.events if e.kind != "alive"])
        return self.chunks[chunk]


_HOUSEHOLDS: dict[int, tuple[ResidentModel, _Household]] = {}
_KIT_STREAM: dict[DeviceKind, dict[str, str]] = {
    DeviceKind.DOOR_CONTACT: {"door_open": "open", "door_close": "close"},
    DeviceKind.MOTION_SENSOR: {"motion": "motion"},
}


class KitSensorDevice(VirtualDevice):
    """A safe-home kit device (hub, door contact, PIR, smoke, gas, water leak): battery
    heartbeats, the events its actions make (:meth:`VirtualDevice.event`), and for a door
    contact or motion sensor the home's household stream (:mod:`devices.household`: a routine
    with day-to-day variation, outings, visitors, nights away) as it happens."""

    def __init__(self, device_id: str, **kwargs: Any) -> None:
        super().__init__(device_id, **kwargs)
        self.battery = float(self.rng.randint(60, 100))
        self._household: _Household | None = None
        self._cursor = (0, 0)
        self._since = float(kwargs["now"])

    def play_household(self) -> None:
        """Play the home's household stream (door contact, motion sensor; the simulator)."""
        if self.kind in _KIT_STREAM and self._household is None:
            entry = _HOUSEHOLDS.get(id(self.resident))
            if entry is None or entry[0] is not self.resident:
                home = _Household(self.rng.getrandbits(31), self._since,
                                  self.resident.utc_offset_s)  # fmt: skip
                entry = _HOUSEHOLDS[id(self.resident)] = (self.resident, home)
            self._household = entry[1]

    def _stream(self, now: float, out: list[Outgoing]) -> None:
        home = self._household
        if home is None:
            return
        mine = _KIT_STREAM[self.kind]
        chunk, i = self._cursor
        while True:
            events = home.events(chunk)
            while i < len(events) and events[i][0] <= now:
                t, what = events[i]
                i += 1
                if t > self._since and what in mine:
                    data = {"holdoff_s": int(HOUSEHOLD.holdoff_s)} if what == "motion" else None
                    out.append(self.event(t, mine[what], data))
            if i < len(events) or now < home.start + (chunk + 1) * _Household.CHUNK_DAYS * 86400:
                break
            chunk, i = chunk + 1, 0
        self._cursor = (chunk, i)
        self._since = now


def _kit_class(kind: DeviceKind) -> type[KitSensorDevice]:
    return type(f"{kind.value.title().replace('_', '')}Device", (KitSensorDevice,), {"kind": kind})


KIT_DEVICE_CLASSES: dict[DeviceKind, type[KitSensorDevice]] = {k: _kit_class(k) for k in KIT_KINDS}


def make_virtual_device(
    kind: DeviceKind,
    device_id: str,
    *,
    seed: int,
    resident: ResidentModel,
    now: float,
    heartbeat_s: float = 300.0,
    period_s: float = 1.0,
    seq_start: int = 0,
    boot_id: str | None = None,
) -> VirtualDevice:
    """A virtual device of ``kind`` whose randomness derives from ``seed`` and its id."""
    digest = hashlib.blake2b(f"{seed}:{device_id}".encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    common: dict[str, Any] = {
        "rng": rng,
        "resident": resident,
        "now": now,
        "heartbeat_s": heartbeat_s,
        "period_s": period_s,
        "seq_start": seq_start,
        "boot_id": boot_id,
    }
    if kind is DeviceKind.BUTTON:
        return ButtonDevice(device_id, **common)
    if kind is DeviceKind.BED_SENSOR:
        return BedSensorDevice(device_id, **common)
    if kind in KIT_KINDS:
        return KIT_DEVICE_CLASSES[kind](device_id, **common)
    noise = np.random.default_rng(rng.getrandbits(64))
    return WearableDevice(device_id, noise=noise, **common)
