"""Signal models of the simulator: daily routine, bed vitals and wearable motion.

Pure and deterministic: no I/O, no clock reads (times are passed in as epoch seconds), all
randomness from generators handed in by the caller. The virtual devices in
:mod:`devices.virtual` turn these samples into protocol messages.

Body frame of the wearer: x anterior (forward), y left, z up along the trunk. An accelerometer
at rest reads the reaction to gravity, +1 g pointing up, so an upright wearer reads (0, 0, 1)
in the body frame; lying on the back reads (1, 0, 0). The device frame is the body frame
rotated by the way the device is worn (a per-device "mount" rotation that changes when the
device is put on again).
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Final

import numpy as np
import numpy.typing as npt

from analytics.types import DEFAULT_UTC_OFFSET_S

__all__ = [
    "DAY_S",
    "Activity",
    "DailyRoutine",
    "FallPlan",
    "MotionModel",
    "ResidentModel",
    "ShakePlan",
    "VitalsModel",
    "VitalsSample",
    "random_rotation",
]

DAY_S: Final = 86400.0
_HOUR: Final = 3600.0

FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# Daily routine and resident
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DailyRoutine:
    """When a resident is in bed, in local seconds after midnight.

    In bed from ``bedtime_s`` to ``rise_s`` (over midnight), except a toilet trip at
    ``night_trip_s`` lasting ``night_trip_len_s``; and during an afternoon nap.
    Asleep from ``sleep_latency_s`` after going to bed until shortly before rising.
    """

    bedtime_s: float = 21.75 * _HOUR
    rise_s: float = 6.5 * _HOUR
    nap_start_s: float | None = 13.0 * _HOUR
    nap_len_s: float = 2700.0
    night_trip_s: float | None = 2.5 * _HOUR
    night_trip_len_s: float = 420.0
    sleep_latency_s: float = 1200.0

    @classmethod
    def sample(cls, rng: random.Random) -> DailyRoutine:
        """A plausible routine for an elderly resident."""
        return cls(
            bedtime_s=rng.uniform(20.5, 22.5) * _HOUR,
            rise_s=rng.uniform(5.75, 7.25) * _HOUR,
            nap_start_s=rng.uniform(12.5, 14.0) * _HOUR if rng.random() < 0.6 else None,
            nap_len_s=rng.uniform(1200.0, 4800.0),
            night_trip_s=rng.uniform(0.5, 4.5) * _HOUR if rng.random() < 0.7 else None,
            night_trip_len_s=rng.uniform(180.0, 720.0),
            sleep_latency_s=rng.uniform(600.0, 2400.0),
        )

    def _night(self, t: float) -> bool:
        return t >= self.bedtime_s or t < self.rise_s

    def in_bed(self, local_s: float) -> bool:
        t = local_s % DAY_S
        trip = self.night_trip_s
        if trip is not None and trip <= t < trip + self.night_trip_len_s:
            return False
        if self._night(t):
            return True
        nap = self.nap_start_s
        return nap is not None and nap <= t < nap + self.nap_len_s

    def asleep(self, local_s: float) -> bool:
        if not self.in_bed(local_s):
            return False
        t = local_s % DAY_S
        if self._night(t):
            since_bed = (t - self.bedtime_s) % DAY_S
            until_rise = (self.rise_s - t) % DAY_S
            return since_bed >= self.sleep_latency_s and until_rise >= 900.0
        nap = self.nap_start_s
        return nap is not None and t - nap >= 300.0


@dataclass(slots=True)
class _Override:
    start: float
    end: float | None
    in_bed: bool


@dataclass(slots=True)
class ResidentModel:
    """Where a resident is, shared by that resident's devices (bed sensor and wearable).

    Scripted incidents override the routine for a time window; the latest override wins.
    While ``on_floor_until`` is in the future (or None after a fall without getting up) the
    resident lies on the floor: out of bed.
    """

    routine: DailyRoutine
    utc_offset_s: float = DEFAULT_UTC_OFFSET_S
    overrides: list[_Override] = field(default_factory=list)
    fallen_at: float | None = None
    on_floor_until: float | None = None

    def local_s(self, t: float) -> float:
        return (t + self.utc_offset_s) % DAY_S

    def override(self, start: float, end: float | None, *, in_bed: bool) -> None:
        """Force in-bed (or out-of-bed) from ``start`` until ``end`` (None: for good)."""
        self.overrides.append(_Override(start, end, in_bed))

    def fall(self, t: float, floor_s: float | None) -> None:
        self.fallen_at = t
        self.on_floor_until = None if floor_s is None else t + floor_s

    def get_up(self, t: float) -> None:
        """Get up off the floor at ``t`` (after a fall); nothing if not on the floor."""
        if self.on_floor(t):
            self.on_floor_until = t

    def on_floor(self, t: float) -> bool:
        if self.fallen_at is None or t < self.fallen_at:
            return False
        return self.on_floor_until is None or t < self.on_floor_until

    def in_bed(self, t: float) -> bool:
        if self.on_floor(t):
            return False
        for ov in reversed(self.overrides):
            if ov.start <= t and (ov.end is None or t < ov.end):
                return ov.in_bed
        return self.routine.in_bed(self.local_s(t))

    def asleep(self, t: float) -> bool:
        if not self.in_bed(t):
            return False
        for ov in reversed(self.overrides):
            if ov.start <= t and (ov.end is None or t < ov.end):
                return True  # kept in bed by an incident: lying quietly
        return self.routine.asleep(self.local_s(t))


# --------------------------------------------------------------------------------------------
# Bed vitals
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VitalsSample:
    presence: bool
    hr: float | None
    rr: float | None
    movement: float


class VitalsModel:
    """Heart rate, breathing rate and movement under a bed sensor, one sample per step.

    Heart and breathing rates drift slowly around the resident's baseline (mean-reverting
    random walks) with beat-to-beat noise, lower during sleep. Movement is low in sleep with
    occasional turns (during which the sensor cannot read vitals), higher when awake in bed,
    zero with nobody in bed (and then no vitals at all).
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        hr_base: float | None = None,
        rr_base: float | None = None,
    ) -> None:
        self._rng = rng
        self.hr_base = hr_base if hr_base is not None else rng.uniform(58.0, 80.0)
        self.rr_base = rr_base if rr_base is not None else rng.uniform(13.0, 18.0)
        self._hr_drift = 0.0
        self._rr_drift = 0.0
        self._turn_left = 0.0

    def step(self, *, in_bed: bool, asleep: bool, dt: float = 1.0) -> VitalsSample:
        rng = self._rng
        gauss = rng.gauss
        # Ornstein-Uhlenbeck drifts: time constants 10 and 15 minutes
        sq = math.sqrt(dt)
        self._hr_drift += -self._hr_drift * dt / 600.0 + gauss(0.0, 0.35) * sq
        self._rr_drift += -self._rr_drift * dt / 900.0 + gauss(0.0, 0.08) * sq
        if not in_bed:
            self._turn_left = 0.0
            return VitalsSample(False, None, None, 0.0)
        if self._turn_left > 0.0:
            self._turn_left -= dt
            movement = rng.uniform(0.45, 0.85)
            return VitalsSample(True, None, None, round(movement, 3))
        if asleep:
            if rng.random() < dt / 1200.0:  # a turn every ~20 minutes
                self._turn_left = rng.uniform(3.0, 10.0)
            movement = abs(gauss(0.04, 0.02))
            hr = self.hr_base - 6.0 + self._hr_drift + gauss(0.0, 0.8)
            rr = self.rr_base - 1.5 + self._rr_drift + gauss(0.0, 0.3)
        else:
            movement = abs(gauss(0.2, 0.08))
            hr = self.hr_base + self._hr_drift + gauss(0.0, 1.2)
            rr = self.rr_base + self._rr_drift + gauss(0.0, 0.5)
        return VitalsSample(
            True,
            round(min(max(hr, 40.0), 130.0), 1),
            round(min(max(rr, 8.0), 28.0), 1),
            round(min(movement, 1.0), 3),
        )


# --------------------------------------------------------------------------------------------
# Wearable motion
# --------------------------------------------------------------------------------------------


class Activity(IntEnum):
    LYING = 0  # in bed
    SITTING = 1
    STANDING = 2
    WALKING = 3
    FLOOR = 4  # lying on the floor after a fall


_UP: Final = np.array([0.0, 0.0, 1.0])
_SIT: Final = np.array([math.sin(math.radians(20.0)), 0.0, math.cos(math.radians(20.0))])
_MEAN_BOUT_S: Final = {Activity.SITTING: 900.0, Activity.STANDING: 150.0, Activity.WALKING: 120.0}
_NEXT_ACTIVITY: Final = {
    Activity.SITTING: ((Activity.STANDING, 0.6), (Activity.WALKING, 0.4)),
    Activity.STANDING: ((Activity.WALKING, 0.6), (Activity.SITTING, 0.4)),
    Activity.WALKING: ((Activity.STANDING, 0.5), (Activity.SITTING, 0.5)),
}
_NOISE_G: Final = 0.01


def random_rotation(rng: random.Random, max_tilt_deg: float = 35.0) -> FloatArray:
    """A device mount: any rotation about the body's vertical, then a tilt up to ``max_tilt``."""
    yaw = rng.uniform(-math.pi, math.pi)
    tilt = math.radians(rng.uniform(0.0, max_tilt_deg))
    axis_angle = rng.uniform(-math.pi, math.pi)
    cy, sy = math.cos(yaw), math.sin(yaw)
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    ax = np.array([math.cos(axis_angle), math.sin(axis_angle), 0.0])
    k = np.array([[0.0, -ax[2], ax[1]], [ax[2], 0.0, -ax[0]], [-ax[1], ax[0], 0.0]])
    tilt_m = np.eye(3) + math.sin(tilt) * k + (1.0 - math.cos(tilt)) * (k @ k)
    return np.asarray(tilt_m @ rz, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class FallPlan:
    """A scripted fall: starts at ``start`` (epoch s), impact ``peak_g`` at ``start + 0.42 s``.

    Phases (seconds after ``start``): 0–0.33 falling (the measured acceleration drops to about
    0.5 g: a body falls partly supported, not freely like a dropped device), 0.33–0.51 impact
    (a peak of ``peak_g`` that absorbs about 1.3 m/s of velocity above 1.2 g, like the falls
    of the SisFall recordings), 0.51–1.2 settling, then lying still on the floor.
    """

    start: float
    peak_g: float
    direction: tuple[float, float, float]  # body-frame unit vector of the floor posture

    IMPACT_AT: ClassVar[float] = 0.42
    IMPACT_HALF_WIDTH: ClassVar[float] = 0.09
    IMPACT_START: ClassVar[float] = IMPACT_AT - IMPACT_HALF_WIDTH
    IMPACT_END: ClassVar[float] = IMPACT_AT + IMPACT_HALF_WIDTH

    @property
    def impact_time(self) -> float:
        return self.start + self.IMPACT_AT


@dataclass(frozen=True, slots=True)
class ShakePlan:
    """The device shaken by hand (an installer's motion check): from ``start`` (epoch s) for
    ``seconds``, an oscillation at ``hz`` mostly along ``axis`` (device frame) whose peak
    acceleration, gravity included, reaches at least ``peak_g``."""

    start: float
    seconds: float
    peak_g: float
    axis: tuple[float, ...]
    side: tuple[float, ...]
    hz: float


_TEMPLATE_S: Final = 20
_MAX_BATCH: Final = 256
_POOL: Final = 1 << 16


@functools.lru_cache(maxsize=1)
def _noise_pool() -> FloatArray:
    """Sensor noise (σ = 0.01 g), axes first, shared by all wearables at random offsets:
    slicing it is much cheaper than drawing fresh normals for every batch."""
    pool = np.random.default_rng(0x5A6E).normal(0.0, _NOISE_G, (3, _POOL + _MAX_BATCH))
    pool.setflags(write=False)
    return pool


@functools.lru_cache(maxsize=32)
def _gait_template(step_tenths: int, fs: float) -> FloatArray:
    """Body-frame walking acceleration, axes first (3, L + _MAX_BATCH), periodic in L.

    Steps at ``step_tenths / 10`` Hz: a whole number of steps (and strides) fits in 20 s, so
    the template repeats seamlessly and any batch is one slice of it.
    """
    length = round(_TEMPLATE_S * fs)
    t = np.arange(length + _MAX_BATCH) / fs
    ph = 2.0 * math.pi * (step_tenths / 10.0) * t
    out = np.empty((3, t.shape[0]))
    out[0] = 0.12 * np.sin(ph + 1.2)  # forward
    out[1] = 0.08 * np.sin(0.5 * ph)  # sideways, at the stride frequency
    out[2] = 1.0 + 0.25 * np.sin(ph) + 0.08 * np.sin(2.0 * ph + 0.5)  # vertical
    out.setflags(write=False)
    return out


class MotionModel:
    """Accelerometer samples of one wearable, generated batch by batch.

    Out of bed the wearer alternates sitting, standing and walking (about 1.6–2.0 steps per
    second, with the vertical, forward and sideways oscillations of gait). In bed the wearer
    lies on the back or a side, chosen per night. A :class:`FallPlan` inserts the fall
    signature, then the wearer lies still on the floor while the resident is on the floor.

    Batches are returned axes first, shape (3, n) (x, y and z rows), which is how the
    protocol sends them; ``batch(...)[0].T`` is the (n, 3) view.
    """

    def __init__(self, rng: random.Random, noise: np.random.Generator) -> None:
        self._rng = rng
        self._noise = noise
        self.mount = random_rotation(rng)
        self._step_tenths = rng.randint(16, 20)
        self._gait_offset = rng.randrange(1 << 16)  # wearers do not walk in step
        self.activity = Activity.SITTING
        self._bout_end = -math.inf
        self._lying = np.array([1.0, 0.0, 0.0])
        self._floor = np.array([0.0, 1.0, 0.0])
        self._was_in_bed = False
        self.steps_total = 0.0
        self.fall: FallPlan | None = None
        self.shake: ShakePlan | None = None
        self._static: tuple[Activity, FloatArray, float] | None = None  # device-frame posture

    @property
    def step_hz(self) -> float:
        return self._step_tenths / 10.0

    def rewear(self) -> None:
        """The device was taken off and put on again: new mount orientation."""
        self.mount = random_rotation(self._rng)
        self._static = None

    def plan_fall(self, start: float, peak_g: float) -> FallPlan:
        """Schedule a fall beginning at ``start`` and return its plan."""
        rng = self._rng
        choice = rng.choice(((1.0, 0.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, -1.0, 0.0)))
        self.fall = FallPlan(start, peak_g, choice)
        self._floor = np.array(choice)
        return self.fall

    def plan_shake(self, start: float, seconds: float, peak_g: float) -> ShakePlan:
        """Schedule the device being shaken hard by hand from ``start`` for ``seconds``."""
        rng = self._rng
        axis = np.array([rng.gauss(0.0, 1.0) for _ in range(3)])
        side = np.cross(axis, (1.0, 0.0, 0.0) if abs(axis[0]) < 0.9 else (0.0, 1.0, 0.0))
        self.shake = ShakePlan(
            start, seconds, peak_g, tuple(axis / np.linalg.norm(axis)),
            tuple(side / np.linalg.norm(side)), rng.uniform(4.0, 6.0),
        )  # fmt: skip
        return self.shake

    def _shaken(self, t0: float, n: int, fs: float, axes: FloatArray) -> FloatArray:
        """Add the hand's shaking (device frame) to a batch overlapping a :class:`ShakePlan`."""
        plan = self.shake
        if plan is None or t0 >= plan.start + plan.seconds or t0 + n / fs <= plan.start:
            return axes
        rel = t0 + np.arange(n) / fs - plan.start
        ramp = min(0.15, plan.seconds / 4.0)
        env = np.clip(np.minimum(rel, plan.seconds - rel) / ramp, 0.0, 1.0)
        ph = 2.0 * math.pi * plan.hz * rel
        main = plan.peak_g * 1.05 * env * np.sin(ph)
        cross = 0.3 * plan.peak_g * env * np.sin(ph + math.pi / 2.0)
        axes += np.outer(plan.axis, main) + np.outer(plan.side, cross)
        np.clip(axes, -16.0, 16.0, out=axes)
        return axes

    def _choose_activity(self, t: float, in_bed: bool, on_floor: bool) -> None:
        rng = self._rng
        if on_floor:
            self.activity = Activity.FLOOR
            return
        if in_bed:
            if not self._was_in_bed:
                side = rng.choice(((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, -1.0, 0.0)))
                self._lying = np.array(side)
            self._was_in_bed = True
            self.activity = Activity.LYING
            return
        if self._was_in_bed or self.activity in (Activity.LYING, Activity.FLOOR):
            self._was_in_bed = False
            self.activity = Activity.STANDING
            self._bout_end = t + rng.expovariate(1.0 / _MEAN_BOUT_S[Activity.STANDING])
            return
        if t >= self._bout_end:
            options = _NEXT_ACTIVITY[self.activity]
            self.activity = options[0][0] if rng.random() < options[0][1] else options[1][0]
            self._bout_end = t + rng.expovariate(1.0 / _MEAN_BOUT_S[self.activity])

    def _static_base(self) -> tuple[FloatArray, float]:
        act = self.activity
        if act is Activity.STANDING:
            return _UP, 0.02
        if act is Activity.SITTING:
            return _SIT, 0.015
        if act is Activity.LYING:
            return self._lying, 0.004
        return self._floor, 0.0

    def _body(self, tt: FloatArray) -> FloatArray:
        """Body-frame acceleration (n, 3) at sample times ``tt`` (general, slower path)."""
        n = tt.shape[0]
        if self.activity is Activity.WALKING:
            w = 2.0 * math.pi * self.step_hz
            ph = w * tt
            out = np.empty((n, 3))
            out[:, 0] = 0.12 * np.sin(ph + 1.2)
            out[:, 1] = 0.08 * np.sin(0.5 * ph)
            out[:, 2] = 1.0 + 0.25 * np.sin(ph) + 0.08 * np.sin(2.0 * ph + 0.5)
            return out
        base, _ = self._static_base()
        return np.broadcast_to(base, (n, 3)).copy()

    def _apply_fall(self, tt: FloatArray, body: FloatArray, plan: FallPlan) -> None:
        rel = tt - plan.start
        floor = np.array(plan.direction)
        mid = _UP + floor
        impact_dir = mid / np.linalg.norm(mid)
        start, end = FallPlan.IMPACT_START, FallPlan.IMPACT_END
        falling = (rel >= 0.0) & (rel < start)
        if falling.any():
            r = rel[falling]
            scale = 1.0 - 0.5 * np.minimum(r / 0.15, 1.0)  # towards ~0.5 g
            body[falling] = _UP * scale[:, None]
        impact = (rel >= start) & (rel < end)
        if impact.any():
            r = rel[impact]
            width = FallPlan.IMPACT_HALF_WIDTH
            shape = np.maximum(0.0, 1.0 - np.abs(r - FallPlan.IMPACT_AT) / width)
            body[impact] = impact_dir * (0.5 + (plan.peak_g - 0.5) * shape)[:, None]
        settle = (rel >= end) & (rel < 1.2)
        if settle.any():
            r = rel[settle] - end
            ring = 0.8 * np.exp(-r / 0.1) * np.cos(2.0 * math.pi * 6.0 * r)
            body[settle] = floor + impact_dir * ring[:, None]
        after = rel >= 1.2
        if after.any():
            body[after] = floor

    def batch(
        self,
        t0: float,
        n: int,
        fs: float,
        *,
        in_bed: bool,
        on_floor: bool,
    ) -> tuple[FloatArray, bool]:
        """Samples for ``[t0, t0 + n/fs)`` in the device frame, axes first: shape (3, n), g.

        Returns the samples and whether the batch contains a fall impact.
        """
        if not 1 <= n <= _MAX_BATCH:
            raise ValueError(f"n must be within 1..{_MAX_BATCH}")
        plan = self.fall
        falling_now = plan is not None and t0 <= plan.start + 1.2 and t0 + n / fs > plan.start
        # Before the fall completes, the wearer keeps the activity they had.
        self._choose_activity(t0, in_bed, on_floor and not falling_now)
        noise = self._noise
        has_impact = False
        if plan is not None and falling_now:
            tt = t0 + np.arange(n) / fs
            body = self._body(tt)
            self._apply_fall(tt, body, plan)
            rel = tt - plan.start
            has_impact = bool(((rel >= FallPlan.IMPACT_START) & (rel < FallPlan.IMPACT_END)).any())
            if t0 + n / fs >= plan.start + 1.2:
                self.activity = Activity.FLOOR
            axes = self.mount @ body.T
            axes += noise.normal(0.0, _NOISE_G, (3, n))
            np.clip(axes, -16.0, 16.0, out=axes)
            return axes, has_impact
        off = self._rng.randrange(_POOL)
        pool = _noise_pool()[:, off : off + n]
        if self.activity is Activity.WALKING:
            template = _gait_template(self._step_tenths, fs)
            start = (round(t0 * fs) + self._gait_offset) % (template.shape[1] - _MAX_BATCH)
            axes = self.mount @ template[:, start : start + n]
            axes += pool
            self.steps_total += self.step_hz * n / fs
            return self._shaken(t0, n, fs, axes), False
        static = self._static
        if static is None or static[0] is not self.activity or t0 >= static[2]:
            # posture in the device frame, with a small shift every half minute or so
            base, sway = self._static_base()
            if sway:
                rng = self._rng
                base = base + np.array((rng.gauss(0.0, sway), rng.gauss(0.0, sway), 0.0))
            vec = (self.mount @ base)[:, None]
            static = self._static = (self.activity, vec, t0 + self._rng.uniform(15.0, 45.0))
        return self._shaken(t0, n, fs, pool + static[1]), False

    def heart_rate(self, base: float) -> float:
        """A wrist heart rate for the current activity."""
        extra = {
            Activity.WALKING: 18.0,
            Activity.STANDING: 6.0,
            Activity.SITTING: 0.0,
            Activity.LYING: -5.0,
            Activity.FLOOR: 15.0,
        }[self.activity]
        return round(min(max(base + extra + self._rng.gauss(0.0, 2.0), 40.0), 160.0), 1)
