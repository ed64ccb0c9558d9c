"""Streaming fall detection on a wearable's tri-axial accelerometer.

Input is the raw acceleration in g with gravity included, sampled at a fixed rate
(50 Hz by default), in the device's own axes. Those axes are arbitrary: the device may
be worn at the waist, as a pendant or on the wrist, in any orientation. Every feature
used here is therefore invariant to a rotation of the device frame: magnitudes of
acceleration, and angles between two orientations measured in the same frame.

The physics of a fall, and the test that follows from each stage:

1. **Impact.** The body hits the floor and stops: the acceleration magnitude ``|a|``
   shows a sharp peak well above 1 g. A peak is considered when ``|a|`` reaches
   ``impact_g`` and is the largest value within ``± peak_window_s``.
2. **Impact impulse.** The area of ``|a|`` above ``impulse_floor_g`` around the peak,
   times g, is the velocity change the impact absorbed (m/s). A fall from standing or
   sitting height reaches the floor at 1.5–3 m/s; sitting down hard, lying down
   quickly onto a mattress or rolling over in bed absorbs well under 1 m/s even when
   the peak is high. The floor of 1.2 g (rather than 1 g) keeps sensor offset
   (resting ``|a|`` reads 0.9–1.1 g depending on orientation) and ordinary movement
   from accumulating into the integral. This is the strongest single discriminator
   between soft falls and brisk daily activities.
3. **Not a dropped device.** A dropped or thrown device falls freely (``|a|`` near 0)
   for as long as the drop lasts: 0.4 s from 0.8 m. A falling body does not: legs,
   hands and the rotation of the trunk brake it, and the waist never stays near
   0 g for more than about 0.2 s. A long free fall just before the impact vetoes the
   candidate.
4. **Posture change.** After the fall the trunk lies roughly horizontal. Without a
   known "up" axis, the test compares orientations within the signal: the mean
   acceleration direction shortly after the impact (gravity in the lying posture)
   against every 0.5 s mean orientation in the seconds before the impact. The
   largest angle is the posture change; it must reach ``min_posture_change_deg``.
   Looking back a few seconds rather than just before the impact matters for falls
   that start from a bent posture (trying to get up, bending forward). The look-back
   stays short (3 s) so that an earlier, unrelated posture (lying in bed before
   getting up) is not taken for the pre-fall posture. Angles cannot tell standing →
   lying from lying → standing, so the fall itself must also have turned the trunk:
   the posture just before the fall (the last 0.5 s of the look-back) must differ
   from the posture after it by ``min_fall_turn_deg``. Someone who got up and then
   landed hard on their feet passes the first test but not this one.
5. **Stillness.** A wearer who walks on after a stumble, or keeps exercising, moves
   vigorously after the impact. The residual motion (RMS distance of the
   acceleration vector from its mean in the after-window) must stay low.

Thresholds are round, physically motivated values chosen with a margin. On the
SisFall-derived development set (waist-worn, 50 Hz), the shipped defaults reach a
sensitivity of about 0.99 and a specificity of about 0.999. On subject halves not used
for choosing them they stay within about 0.01 of those figures.

Streaming: :class:`FallDetector` keeps a ring buffer of the recent signal. Every
decision is made on absolute sample indices once all samples it needs have arrived.
Results are therefore identical whatever the batch sizes, and identical to one-batch
processing (:func:`detect_falls`). A candidate is reported ``after_end_s`` (2.5 s)
after its impact. The common path (no sample above ``impact_g`` in a batch) costs one
vectorised magnitude computation and a copy into the ring buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["FallCandidate", "FallDetector", "FallParams", "clock_time", "detect_falls"]

STANDARD_GRAVITY = 9.80665
"""m/s² per g."""

_CHUNK = 256
"""Large batches are processed in chunks of at most this many samples (bounds memory)."""


@dataclass(frozen=True, slots=True)
class FallParams:
    """Thresholds and windows of the fall detector. Times in seconds, accelerations in g.

    Windows are durations before or after the impact peak, as their names say.
    """

    fs: float = 50.0
    """Sample rate (Hz)."""

    impact_g: float = 1.6
    """A peak of ``|a|`` at least this high is examined as a possible impact."""
    peak_window_s: float = 1.0
    """The impact is the largest ``|a|`` within ± this; smaller peaks nearby belong to it."""

    impulse_floor_g: float = 1.2
    """Only the part of ``|a|`` above this counts towards the impact impulse."""
    impulse_window_s: float = 0.5
    """The impulse is integrated over the impact peak ± this."""
    min_impulse_mps: float = 1.0
    """Velocity change (m/s) the impact must absorb: a fall, not sitting or lying down."""

    free_fall_g: float = 0.3
    """``|a|`` below this is free fall."""
    free_fall_search_s: float = 1.0
    """Free fall is looked for in this span before the impact."""
    max_free_fall_s: float = 0.4
    """A longer continuous free fall means a dropped device, not a falling body."""

    before_start_s: float = 4.0
    """The pre-fall posture is looked for from this long before the impact ..."""
    before_end_s: float = 1.0
    """... until this long before it (the fall itself is excluded)."""
    posture_average_s: float = 0.5
    """Orientations are averaged over this span (removes movement, keeps gravity)."""
    after_start_s: float = 1.5
    """The after-window (posture and stillness after the fall) starts this long after the
    impact (the body has come to rest) ..."""
    after_end_s: float = 2.5
    """... and ends this long after it; a candidate is reported at this delay."""
    min_posture_change_deg: float = 60.0
    """The trunk must have turned at least this much: upright or sitting to lying."""
    min_fall_turn_deg: float = 15.0
    """The posture just before the fall must differ from the one after it at least this much."""
    max_after_motion_g: float = 0.5
    """Residual motion (RMS, g) allowed in the after-window; walking on or running exceeds it."""

    refractory_s: float = 10.0
    """Impacts within this time after a reported fall belong to that fall."""
    max_gap_s: float = 1.0
    """A batch whose ``t0`` is further than this from the expected time restarts the stream."""
    utc_offset_s: float = 0.0
    """Offset of local time from UTC, used only to write local clock times in explanations."""

    def __post_init__(self) -> None:
        if not (self.fs > 0 and math.isfinite(self.fs)):
            raise ValueError(f"fs must be a positive finite rate, got {self.fs}")
        non_negative = {
            "peak_window_s": self.peak_window_s,
            "impulse_window_s": self.impulse_window_s,
            "free_fall_search_s": self.free_fall_search_s,
            "before_end_s": self.before_end_s,
            "after_start_s": self.after_start_s,
            "refractory_s": self.refractory_s,
            "max_gap_s": self.max_gap_s,
            "max_free_fall_s": self.max_free_fall_s,
            "min_impulse_mps": self.min_impulse_mps,
        }
        for name, value in non_negative.items():
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not self.impact_g > 0:
            raise ValueError(f"impact_g must be > 0, got {self.impact_g}")
        if not self.posture_average_s > 0:
            raise ValueError(f"posture_average_s must be > 0, got {self.posture_average_s}")
        if not self.before_start_s - self.before_end_s >= self.posture_average_s:
            raise ValueError("the before-window must be at least posture_average_s long")
        if not self.after_end_s > self.after_start_s:
            raise ValueError("after_end_s must be greater than after_start_s")
        for name, angle in (
            ("min_posture_change_deg", self.min_posture_change_deg),
            ("min_fall_turn_deg", self.min_fall_turn_deg),
        ):
            if not 0 <= angle <= 180:
                raise ValueError(f"{name} must be within 0..180, got {angle}")


@dataclass(frozen=True, slots=True)
class FallCandidate:
    """A fall found in the accelerometer signal, with the evidence for it."""

    time: float
    """Epoch seconds of the impact peak."""
    peak_g: float
    """Peak acceleration magnitude of the impact (g, gravity included)."""
    impact_mps: float
    """Velocity change absorbed by the impact (m/s): area of ``|a|`` above the impulse floor."""
    free_fall_s: float
    """Longest continuous free fall in the second before the impact (s)."""
    posture_change_deg: float
    """Angle between the posture after the impact and the most different pre-fall posture."""
    stillness: float
    """Residual motion after the impact: RMS distance of the acceleration vector from its
    mean over the after-window (g). About 0.01 g lying still, 0.3 g or more walking."""
    lying: bool
    """The wearer ended in a new posture (turned by at least the posture threshold) and
    held it without vigorous movement: the orientation-agnostic lying test. The detector
    reports only candidates that pass it; the field carries that evidence to consumers."""
    reason: str
    """Plain-language explanation."""


def clock_time(epoch_s: float, utc_offset_s: float) -> str:
    """Local wall-clock time (HH:MM:SS) of an epoch time, for explanations."""
    return datetime.fromtimestamp(epoch_s + utc_offset_s, tz=UTC).strftime("%H:%M:%S")


def _longest_run_s(below: npt.NDArray[np.bool_], fs: float) -> float:
    """Duration (s) of the longest run of consecutive True values."""
    if not below.any():
        return 0.0
    edges = np.diff(np.concatenate(([0], below.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    return float((stops - starts).max()) / fs


@dataclass(frozen=True, slots=True)
class _Impact:
    """An impact that passed the impulse and free-fall tests, awaiting its after-window."""

    index: int
    peak_g: float
    impact_mps: float
    free_fall_s: float


class FallDetector:
    """Streaming fall detector for one wearable.

    Feed contiguous batches with :meth:`update`; each call returns the falls whose
    after-window completed within that batch. Results do not depend on how the signal
    is cut into batches.
    """

    def __init__(self, params: FallParams | None = None) -> None:
        self.params = params or FallParams()
        p = self.params
        fs = p.fs
        self._peak_half = max(1, round(p.peak_window_s * fs))
        self._impulse_half = round(p.impulse_window_s * fs)
        self._free_fall_span = round(p.free_fall_search_s * fs)
        self._before_start = round(p.before_start_s * fs)
        self._before_end = round(p.before_end_s * fs)
        self._average = max(1, round(p.posture_average_s * fs))
        self._after_start = round(p.after_start_s * fs)
        self._after_end = max(self._after_start + 1, round(p.after_end_s * fs))
        self._refractory = round(p.refractory_s * fs)
        self._min_posture_cos = math.cos(math.radians(p.min_posture_change_deg))
        self._min_turn_cos = math.cos(math.radians(p.min_fall_turn_deg))
        # A peak is judged once its peak and impulse windows have fully arrived.
        self._scan_lag = max(self._peak_half, self._impulse_half)
        # The ring holds every sample a pending decision may read, plus one chunk: peaks
        # are at most scan_lag (scan) or after_end (confirmation) behind the newest
        # sample and read up to before_start, peak, impulse or free-fall spans before.
        reach_back = max(
            self._before_start, self._peak_half, self._impulse_half, self._free_fall_span
        )
        self._capacity = _CHUNK + max(self._scan_lag, self._after_end) + reach_back + 1
        self._acc: npt.NDArray[np.float64] = np.zeros((self._capacity, 3))
        self._mag: npt.NDArray[np.float64] = np.zeros(self._capacity)
        self.reset()

    def reset(self) -> None:
        """Forget all history (a new stream starts with the next batch)."""
        self._count = 0  # samples received since reset; absolute index of the next sample
        self._origin = 0.0  # epoch time of sample 0
        self._next_scan = 0  # first sample not yet examined as a possible impact peak
        self._last_hot = -1  # newest sample with |a| >= impact_g
        self._awaiting: list[_Impact] = []
        self._last_reported = -(10**18)  # index of the last reported impact

    def update(self, t0: float, samples: npt.NDArray[np.floating[Any]]) -> list[FallCandidate]:
        """Add a batch of samples (shape (n, 3), g) starting at epoch time ``t0``.

        Sample ``i`` is at ``t0 + i / fs``; float32 input is converted to float64.
        Consecutive batches must be contiguous; a batch whose ``t0`` is more than
        ``max_gap_s`` away from where the previous one ended starts a new stream
        (windows never span a gap in the data).
        """
        data = np.asarray(samples, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != 3:
            raise ValueError(f"samples must have shape (n, 3), got {data.shape}")
        if data.shape[0] == 0:
            return []
        if self._count == 0:
            self._origin = float(t0)
        elif abs(t0 - (self._origin + self._count / self.params.fs)) > self.params.max_gap_s:
            self.reset()
            self._origin = float(t0)
        found: list[FallCandidate] = []
        for start in range(0, data.shape[0], _CHUNK):
            found.extend(self._process(data[start : start + _CHUNK]))
        return found

    # -- internals ---------------------------------------------------------------------

    def _process(self, chunk: npt.NDArray[np.float64]) -> list[FallCandidate]:
        n = chunk.shape[0]
        mag = np.sqrt(chunk[:, 0] ** 2 + chunk[:, 1] ** 2 + chunk[:, 2] ** 2)
        first = self._count % self._capacity
        head = min(n, self._capacity - first)
        self._acc[first : first + head] = chunk[:head]
        self._mag[first : first + head] = mag[:head]
        if head < n:
            self._acc[: n - head] = chunk[head:]
            self._mag[: n - head] = mag[head:]
        hot = np.flatnonzero(mag >= self.params.impact_g)
        if hot.size:
            self._last_hot = self._count + int(hot[-1])
        self._count += n

        decidable = self._count - 1 - self._scan_lag
        if decidable >= self._next_scan:
            if self._last_hot >= self._next_scan:
                self._scan(self._next_scan, decidable)
            self._next_scan = decidable + 1

        found: list[FallCandidate] = []
        while self._awaiting and self._awaiting[0].index + self._after_end <= self._count:
            candidate = self._confirm(self._awaiting.pop(0))
            if candidate is not None:
                found.append(candidate)
        return found

    def _rows(self, start: int, stop: int) -> npt.NDArray[np.float64]:
        """Acceleration rows for absolute sample indices ``start`` .. ``stop - 1``."""
        a = start % self._capacity
        b = a + (stop - start)
        if b <= self._capacity:
            return self._acc[a:b]
        return np.concatenate((self._acc[a:], self._acc[: b - self._capacity]))

    def _mags(self, start: int, stop: int) -> npt.NDArray[np.float64]:
        """``|a|`` for absolute sample indices ``start`` .. ``stop - 1``."""
        a = start % self._capacity
        b = a + (stop - start)
        if b <= self._capacity:
            return self._mag[a:b]
        return np.concatenate((self._mag[a:], self._mag[: b - self._capacity]))

    def _scan(self, first: int, last: int) -> None:
        """Find impact peaks among samples ``first`` .. ``last`` and test their impulse."""
        half = self._peak_half
        lo = max(0, first - half)
        seg = self._mags(lo, last + half + 1)
        pos = np.arange(first - lo, last - lo + 1)
        value = seg[pos]
        # Cheap necessary conditions of a local maximum, exact: >= threshold, strictly
        # above the previous sample, not below the next one.
        previous = seg[np.maximum(pos - 1, 0)]
        is_peak = (value >= self.params.impact_g) & (seg[pos + 1] <= value)
        is_peak &= (previous < value) | (pos + lo == 0)
        for p in pos[is_peak]:
            peak = float(seg[p])
            before = seg[max(0, p - half) : p]
            if before.size and before.max() >= peak:
                continue  # an earlier sample within the window is at least as high
            if seg[p + 1 : p + half + 1].max() > peak:
                continue  # a later sample within the window is higher
            self._test_impact(int(p) + lo, peak)

    def _test_impact(self, index: int, peak: float) -> None:
        p = self.params
        window = self._mags(max(0, index - self._impulse_half), index + self._impulse_half + 1)
        excess = np.maximum(window - p.impulse_floor_g, 0.0)
        impact_mps = float(excess.sum()) / p.fs * STANDARD_GRAVITY
        if impact_mps < p.min_impulse_mps:
            return
        lead_in = self._mags(max(0, index - self._free_fall_span), index)
        free_fall_s = _longest_run_s(lead_in < p.free_fall_g, p.fs)
        if free_fall_s >= p.max_free_fall_s:
            return  # the device fell freely: dropped or thrown, not a falling body
        self._awaiting.append(_Impact(index, peak, impact_mps, free_fall_s))

    def _confirm(self, impact: _Impact) -> FallCandidate | None:
        """Posture and stillness tests once the after-window is complete."""
        p = self.params
        index = impact.index
        if index - self._last_reported < self._refractory:
            return None
        after = self._rows(index + self._after_start, index + self._after_end)
        gravity_after = after.mean(axis=0)
        motion = float(np.sqrt(((after - gravity_after) ** 2).sum(axis=1).mean()))
        if motion > p.max_after_motion_g:
            return None
        before_first = max(0, index - self._before_start)
        before_stop = index - self._before_end
        if before_stop - before_first < self._average:
            return None  # too close to the start of the stream to know the prior posture
        before = self._rows(before_first, before_stop)
        sums = np.cumsum(before, axis=0)
        sums = np.concatenate((np.zeros((1, 3)), sums))
        postures = sums[self._average :] - sums[: -self._average]  # moving sums, 0.5 s
        norms = np.linalg.norm(postures, axis=1) * float(np.linalg.norm(gravity_after))
        if not np.all(norms > 0):
            return None
        cosines = (postures @ gravity_after) / norms
        if cosines[-1] > self._min_turn_cos:
            return None  # no turn during the fall itself (e.g. got up, then landed on feet)
        lowest = float(np.clip(cosines.min(), -1.0, 1.0))
        if lowest > self._min_posture_cos:
            return None
        posture_change = math.degrees(math.acos(lowest))
        self._last_reported = index
        time = self._origin + index / p.fs
        reason = (
            f"impact {impact.peak_g:.1f} g at {clock_time(time, p.utc_offset_s)} absorbing "
            f"{impact.impact_mps:.1f} m/s, posture turned {posture_change:.0f}° from before "
            f"the fall, and {'still' if motion < 0.05 else 'little movement'} afterwards "
            f"(residual motion {motion:.2f} g over "
            f"{p.after_start_s:g}–{p.after_end_s:g} s after the impact)"
        )
        return FallCandidate(
            time=time,
            peak_g=impact.peak_g,
            impact_mps=impact.impact_mps,
            free_fall_s=impact.free_fall_s,
            posture_change_deg=posture_change,
            stillness=motion,
            lying=True,
            reason=reason,
        )


def detect_falls(
    samples: npt.NDArray[np.floating[Any]],
    fs: float = 50.0,
    t0: float = 0.0,
    params: FallParams | None = None,
) -> list[FallCandidate]:
    """Run :class:`FallDetector` over a whole recording in one batch.

    ``samples`` has shape (n, 3) in g; sample ``i`` is at ``t0 + i / fs``.
    """
    if params is None:
        params = FallParams(fs=fs)
    elif params.fs != fs:
        raise ValueError(f"params.fs ({params.fs}) differs from fs ({fs})")
    return FallDetector(params).update(t0, samples)
