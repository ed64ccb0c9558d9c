"""Heart rate, breathing rate and breathing pauses from a bed sensor's 1 Hz readings.

One :class:`VitalsMonitor` per resident (or per bed sensor). Feed every ``vitals`` reading to
:meth:`VitalsMonitor.on_sample` (O(1), plain arithmetic, no numpy), call
:meth:`VitalsMonitor.check` every few seconds; it returns ``VITALS_ABNORMAL`` and ``APNEA``
detections once per episode, and one ``resolved=True`` detection when each clears.

Rules (all thresholds in :class:`VitalsParams`):

* Values are only used while the resident is in bed (presence), the value is present and
  plausible, and the bed does not report strong movement (``artefact_movement``: readings
  taken while the resident turns over are artefacts). Each value is smoothed with a
  time-aware exponential average (``smoothing_s``), so a spike of a few seconds hardly moves it.
* Absolute limits (per resident; default HR 40-120 bpm, RR 8-28 /min): the smoothed value
  beyond a limit continuously for ``min_duration_s`` raises; it clears once the smoothed value
  is back inside the exit band (limit moved inwards by the hysteresis) for ``recover_s``.
* Own baseline: median +- max(k * 1.4826 * MAD, min band) of the resident's in-bed readings of
  the last days (:class:`Baseline`), with its own minimum duration. Learned live from daily
  histograms, or from stored arrays after a restart (:meth:`VitalsMonitor.load_history`).
* Breathing pauses: breathing rate 0/absent while in bed with the heart rate present and the
  bed still, for at least ``pause_s``, right after a still reading with breathing (so the
  sensor's warm-up after lying down and the dropout after turning over are not pauses).
  ``APNEA`` is raised by one pause reaching ``long_pause_s`` (at that moment, not at its
  end) or by ``pause_count`` pauses within ``pause_window_s``; it clears after
  ``apnea_clear_s`` of breathing without a pause.
* A raised condition whose readings stop altogether (resident left the bed, sensor off) is
  resolved after ``no_data_resolve_s``, saying so.

Each VITALS_ABNORMAL detection names its condition in ``details["condition"]`` (e.g.
``"heart_rate_high"``, ``"breathing_rate_below_baseline"``); a resident may have several open
at once, so match raise and resolve by (kind, subject, condition).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from analytics.routine import (
    day_start,
    format_duration,
    format_time,
    local_day,
)
from analytics.types import DEFAULT_UTC_OFFSET_S, DetailValue, Detection, DetectionKind

MAD_TO_SIGMA: Final = 1.4826
HR_BINS: Final = 256  # histogram bins of 1 bpm
RR_BINS: Final = 64  # histogram bins of 1 /min


@dataclass(frozen=True, slots=True)
class VitalsParams:
    """Thresholds of the vitals monitor; override per resident with ``dataclasses.replace``."""

    utc_offset_s: float = DEFAULT_UTC_OFFSET_S  # local days for the baseline

    # --- absolute limits
    hr_low: float = 40.0
    hr_high: float = 120.0
    hr_hysteresis: float = 5.0  # clears below 115 / above 45
    rr_low: float = 8.0
    rr_high: float = 28.0
    rr_hysteresis: float = 2.0
    min_duration_s: float = 120.0
    recover_s: float = 60.0

    # --- reading quality
    smoothing_s: float = 20.0  # time constant of the exponential average
    max_gap_s: float = 30.0  # readings further apart restart the average and candidates
    artefact_movement: float = 0.5  # readings with movement >= this are ignored
    hr_valid_min: float = 20.0
    hr_valid_max: float = 250.0
    rr_valid_max: float = 70.0  # rr <= 0 is "no breathing detected", not a value
    no_data_resolve_s: float = 600.0

    # --- own baseline
    baseline_enabled: bool = True
    baseline_k: float = 4.0
    baseline_min_band_hr: float = 15.0
    baseline_min_band_rr: float = 5.0
    baseline_min_duration_s: float = 600.0
    baseline_days: int = 14
    baseline_min_days: int = 3
    baseline_min_samples_per_day: int = 1800  # 30 min of in-bed readings

    # --- breathing pauses
    apnea_enabled: bool = True
    pause_s: float = 20.0
    long_pause_s: float = 30.0
    pause_count: int = 5
    pause_window_s: float = 3600.0
    apnea_clear_s: float = 900.0
    pause_gap_s: float = 5.0  # a data gap longer than this ends a pause
    sample_period_s: float = 1.0


# --------------------------------------------------------------------------------------
# baseline
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Baseline:
    """A resident's usual level of one vital sign: robust centre and spread."""

    median: float
    mad: float
    n_days: int

    def band(self, k: float, min_half_width: float) -> tuple[float, float]:
        """(low, high) = median -+ max(k * 1.4826 * MAD, min_half_width)."""
        half = max(k * MAD_TO_SIGMA * self.mad, min_half_width)
        return self.median - half, self.median + half


def daily_histograms(
    times: npt.NDArray[np.float64],
    values: npt.NDArray[np.float64],
    *,
    utc_offset_s: float,
    n_bins: int,
) -> dict[int, npt.NDArray[np.float64]]:
    """Per local day, a histogram of ``values`` in bins of width 1 centred on integers
    (bin i holds [i - 0.5, i + 0.5), so integer readings are not biased).

    NaN and out-of-range values are dropped. This is the representation the monitor keeps
    live (one small histogram per day), so stored history and live data mix freely.
    """
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v) & np.isfinite(t) & (v >= 0) & (v < n_bins - 0.5)
    t, v = t[ok], v[ok]
    if t.size == 0:
        return {}
    days = np.floor((t + utc_offset_s) / 86400.0).astype(np.int64)
    bins = np.floor(v + 0.5).astype(np.int64)
    out: dict[int, npt.NDArray[np.float64]] = {}
    for d in np.unique(days).tolist():
        sel = days == d
        out[int(d)] = np.bincount(bins[sel], minlength=n_bins).astype(np.float64)
    return out


def _weighted_median(values: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]) -> float:
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    idx = int(np.searchsorted(cum, cum[-1] / 2.0))
    return float(values[order][min(idx, values.size - 1)])


def learn_baseline(
    day_histograms: Sequence[npt.NDArray[np.float64]],
    *,
    min_days: int,
    min_samples_per_day: int,
) -> Baseline | None:
    """Pool the days that have enough readings; None if fewer than ``min_days`` such days."""
    usable = [h for h in day_histograms if float(h.sum()) >= min_samples_per_day]
    if len(usable) < min_days:
        return None
    pooled = np.sum(np.stack(usable), axis=0)
    total = float(pooled.sum())
    cum = np.cumsum(pooled)
    i = int(np.searchsorted(cum, total / 2.0))
    before = float(cum[i - 1]) if i > 0 else 0.0
    median = i - 0.5 + (total / 2.0 - before) / float(pooled[i])  # interpolate inside bin i
    centers = np.arange(pooled.size, dtype=np.float64)
    mad = _weighted_median(np.abs(centers - median), pooled)
    return Baseline(median=median, mad=mad, n_days=len(usable))


# --------------------------------------------------------------------------------------
# state machines
# --------------------------------------------------------------------------------------


class _Band:
    """One condition on one smoothed signal: beyond ``enter`` for ``min_duration`` raises,
    back inside ``exit`` for ``recover`` clears."""

    __slots__ = (
        "baseline_label",
        "cand_start",
        "condition",
        "enter",
        "exit",
        "high",
        "is_baseline",
        "min_duration",
        "peak",
        "raised",
        "recover_since",
    )

    def __init__(
        self, condition: str, *, high: bool, is_baseline: bool, min_duration: float
    ) -> None:
        self.condition = condition
        self.high = high
        self.is_baseline = is_baseline
        self.min_duration = min_duration
        self.enter = math.inf if high else -math.inf
        self.exit = self.enter
        self.baseline_label = ""
        self.cand_start: float | None = None
        self.raised: Detection | None = None
        self.recover_since: float | None = None
        self.peak = 0.0

    def set_limits(self, enter: float, exit_: float) -> None:
        self.enter = enter
        self.exit = exit_


class _Metric:
    __slots__ = (
        "abs_high",
        "abs_low",
        "active",
        "bands",
        "baseline",
        "ema",
        "fast_hi",
        "fast_lo",
        "hist",
        "hist_bins",
        "hysteresis",
        "label",
        "last_raw",
        "last_t",
        "min_band",
        "name",
        "unit",
    )

    def __init__(
        self,
        name: str,
        label: str,
        unit: str,
        *,
        low: float,
        high: float,
        hysteresis: float,
        min_band: float,
        min_duration: float,
        baseline_duration: float,
        bins: int,
    ) -> None:
        self.name = name
        self.label = label
        self.unit = unit
        self.hysteresis = hysteresis
        self.min_band = min_band
        self.abs_low = _Band(
            f"{name}_low", high=False, is_baseline=False, min_duration=min_duration
        )
        self.abs_high = _Band(
            f"{name}_high", high=True, is_baseline=False, min_duration=min_duration
        )
        self.abs_low.set_limits(low, low + hysteresis)
        self.abs_high.set_limits(high, high - hysteresis)
        self.bands = [
            self.abs_low,
            self.abs_high,
            _Band(
                f"{name}_below_baseline",
                high=False,
                is_baseline=True,
                min_duration=baseline_duration,
            ),
            _Band(
                f"{name}_above_baseline",
                high=True,
                is_baseline=True,
                min_duration=baseline_duration,
            ),
        ]
        self.baseline: Baseline | None = None
        self.ema = 0.0
        self.last_t = -math.inf
        self.last_raw = 0.0
        self.active = False
        self.hist_bins = bins
        self.hist = [0] * bins
        self.fast_lo = low
        self.fast_hi = high

    def set_baseline(self, baseline: Baseline | None, k: float) -> None:
        self.baseline = baseline
        below, above = self.bands[2], self.bands[3]
        if baseline is None:
            below.set_limits(-math.inf, -math.inf)
            above.set_limits(math.inf, math.inf)
        else:
            lo, hi = baseline.band(k, self.min_band)
            label = f"{lo:.0f}-{hi:.0f} {self.unit} (median {baseline.median:.0f})"
            below.baseline_label = above.baseline_label = label
            if lo > self.abs_low.enter:
                below.set_limits(lo, lo + self.hysteresis)
            else:
                below.set_limits(-math.inf, -math.inf)
            if hi < self.abs_high.enter:
                above.set_limits(hi, hi - self.hysteresis)
            else:
                above.set_limits(math.inf, math.inf)
        self.fast_lo = max(b.enter for b in self.bands if not b.high)
        self.fast_hi = min(b.enter for b in self.bands if b.high)


# --------------------------------------------------------------------------------------
# the monitor
# --------------------------------------------------------------------------------------


class VitalsMonitor:
    """Vital-sign rules for one resident's bed sensor.

    Rebuild after a restart: ``load_history(...)`` with the stored readings of the last
    ``baseline_days`` days (arrays) to restore the baselines; the short-term state (smoothed
    values, ongoing episodes) rebuilds itself from the next minutes of live readings, or
    replay the last ~15 min of readings through :meth:`on_sample` first.
    """

    def __init__(self, subject: str, params: VitalsParams | None = None) -> None:
        self.subject = subject
        self.params = p = params if params is not None else VitalsParams()
        self._hr = _Metric(
            "heart_rate",
            "heart rate",
            "bpm",
            low=p.hr_low,
            high=p.hr_high,
            hysteresis=p.hr_hysteresis,
            min_band=p.baseline_min_band_hr,
            min_duration=p.min_duration_s,
            baseline_duration=p.baseline_min_duration_s,
            bins=HR_BINS,
        )
        self._rr = _Metric(
            "breathing_rate",
            "breathing rate",
            "/min",
            low=p.rr_low,
            high=p.rr_high,
            hysteresis=p.rr_hysteresis,
            min_band=p.baseline_min_band_rr,
            min_duration=p.min_duration_s,
            baseline_duration=p.baseline_min_duration_s,
            bins=RR_BINS,
        )
        # hot-path copies
        self._artefact = p.artefact_movement
        self._hr_min = p.hr_valid_min
        self._hr_max = p.hr_valid_max
        self._rr_max = p.rr_valid_max
        self._tau = p.smoothing_s
        self._max_gap = p.max_gap_s
        self._recover = p.recover_s
        self._apnea_on = p.apnea_enabled
        self._pause_gap = p.pause_gap_s

        self._outbox: list[Detection] = []
        self._last_in_bed = -math.inf
        # baseline history: day -> histogram
        self._hr_days: dict[int, npt.NDArray[np.float64]] = {}
        self._rr_days: dict[int, npt.NDArray[np.float64]] = {}
        self._hist_day: int | None = None
        self._day_end = -math.inf  # end of the local day the live histograms belong to
        # breathing pauses
        self._pause_start: float | None = None
        self._breath_t = -math.inf  # last still reading with breathing detected
        self._pause_last = -math.inf
        self._pauses: deque[tuple[float, float]] = deque()  # (end, duration)
        self._last_pause_end = -math.inf
        self._apnea: Detection | None = None

    # ---------------------------------------------------------------- history / baseline

    @property
    def baselines(self) -> tuple[Baseline | None, Baseline | None]:
        """(heart rate, breathing rate) baselines in force, None where not learned yet."""
        return self._hr.baseline, self._rr.baseline

    def load_history(
        self,
        times: npt.NDArray[np.float64],
        presence: npt.NDArray[np.float64],
        heart_rate: npt.NDArray[np.float64],
        breathing_rate: npt.NDArray[np.float64],
        movement: npt.NDArray[np.float64],
    ) -> None:
        """Restore baselines from stored readings (same fields as :meth:`on_sample`).

        Arrays of equal length; ``presence`` as 0/1, missing values as NaN. Only in-bed,
        still, plausible readings are used, exactly as live. Days already held are replaced.
        """
        p = self.params
        t = np.asarray(times, dtype=np.float64)
        pres = np.asarray(presence, dtype=np.float64) > 0.5
        mov = np.nan_to_num(np.asarray(movement, dtype=np.float64), nan=0.0)
        hr = np.asarray(heart_rate, dtype=np.float64)
        rr = np.asarray(breathing_rate, dtype=np.float64)
        ok = pres & (mov < p.artefact_movement)
        hr_ok = ok & (hr >= p.hr_valid_min) & (hr <= p.hr_valid_max)
        rr_ok = ok & (rr > 0) & (rr <= p.rr_valid_max)
        self._hr_days.update(
            daily_histograms(t[hr_ok], hr[hr_ok], utc_offset_s=p.utc_offset_s, n_bins=HR_BINS)
        )
        self._rr_days.update(
            daily_histograms(t[rr_ok], rr[rr_ok], utc_offset_s=p.utc_offset_s, n_bins=RR_BINS)
        )
        self._relearn()

    def load_histograms(
        self,
        heart_rate: Mapping[int, npt.NDArray[np.float64]],
        breathing_rate: Mapping[int, npt.NDArray[np.float64]],
    ) -> None:
        """Restore baselines from per-day histograms (see :func:`daily_histograms`)."""
        self._hr_days.update(heart_rate)
        self._rr_days.update(breathing_rate)
        self._relearn()

    def _relearn(self) -> None:
        p = self.params
        for metric, days in ((self._hr, self._hr_days), (self._rr, self._rr_days)):
            for old in sorted(days)[: -p.baseline_days] if len(days) > p.baseline_days else []:
                del days[old]
            baseline = None
            if p.baseline_enabled:
                baseline = learn_baseline(
                    [days[d] for d in sorted(days)],
                    min_days=p.baseline_min_days,
                    min_samples_per_day=p.baseline_min_samples_per_day,
                )
            metric.set_baseline(baseline, p.baseline_k)

    def _roll_day(self, now: float) -> None:
        """Close the live histograms of the previous local day and relearn the baselines."""
        off = self.params.utc_offset_s
        day = local_day(now, off)
        self._day_end = day_start(day + 1, off)
        if self._hist_day is None:
            self._hist_day = day
            return
        if day == self._hist_day:
            return
        for metric, days in ((self._hr, self._hr_days), (self._rr, self._rr_days)):
            if any(metric.hist):
                hist = np.asarray(metric.hist, dtype=np.float64)
                prev = days.get(self._hist_day)
                days[self._hist_day] = hist if prev is None else prev + hist
            metric.hist = [0] * metric.hist_bins
        self._hist_day = day
        self._relearn()

    # ---------------------------------------------------------------- per sample

    def on_sample(
        self,
        t: float,
        presence: bool,
        heart_rate: float | None,
        breathing_rate: float | None,
        movement: float,
    ) -> None:
        """One bed-sensor ``vitals`` reading. O(1); detections are collected for :meth:`check`."""
        if not presence:
            if self._pause_start is not None:
                self._end_pause(self._pause_last + self.params.sample_period_s)
            return
        self._last_in_bed = t
        if t >= self._day_end:
            self._roll_day(t)
        still = movement < self._artefact
        hr_ok = heart_rate is not None and self._hr_min <= heart_rate <= self._hr_max
        if still:
            if hr_ok:
                assert heart_rate is not None
                self._value(self._hr, t, heart_rate)
            if breathing_rate is not None and 0.0 < breathing_rate <= self._rr_max:
                self._value(self._rr, t, breathing_rate)
        if not self._apnea_on:
            return
        breathing = breathing_rate is not None and breathing_rate > 0.0
        if hr_ok and still and not breathing:
            start = self._pause_start
            if start is not None and t - self._pause_last > self._pause_gap:
                self._end_pause(self._pause_last + self.params.sample_period_s)
                start = None
            if start is None:
                # a pause is breathing that stops: it must follow a still, breathing reading
                # (not the sensor's warm-up after lying down, nor the dropout after turning)
                if t - self._breath_t > self._pause_gap:
                    return
                start = self._pause_start = t
            self._pause_last = t
            if self._apnea is None:
                length = t - start + self.params.sample_period_s
                if length >= self.params.long_pause_s:
                    self._raise_apnea(t, length, long_pause=True)
            return
        if breathing and still:
            self._breath_t = t
        if self._pause_start is not None:
            end = (
                t
                if t - self._pause_last <= self._pause_gap
                else self._pause_last + self.params.sample_period_s
            )
            self._end_pause(end)
        elif (
            breathing
            and self._apnea is not None
            and t - self._last_pause_end >= self.params.apnea_clear_s
        ):
            self._resolve_apnea(t, breathing_seen=True)

    def _value(self, m: _Metric, t: float, v: float) -> None:
        dt = t - m.last_t
        if dt > self._max_gap:
            m.ema = v
            if m.active:
                for b in m.bands:
                    b.cand_start = None
                    b.recover_since = None
        elif dt > 0.0:
            m.ema += (v - m.ema) * (dt / (self._tau + dt))
        m.last_t = t
        m.last_raw = v
        i = int(v + 0.5)
        if i < m.hist_bins:
            m.hist[i] += 1
        s = m.ema
        if not m.active and m.fast_lo <= s <= m.fast_hi:
            return
        active = False
        for b in m.bands:
            if b.raised is not None:
                if s > b.exit if b.high else s < b.exit:
                    b.recover_since = None
                    if s > b.peak if b.high else s < b.peak:
                        b.peak = s
                elif b.recover_since is None:
                    b.recover_since = t
                elif t - b.recover_since >= self._recover:
                    self._resolve_band(m, b, t)
                    continue
                active = True
            elif s > b.enter if b.high else s < b.enter:
                if b.cand_start is None:
                    b.cand_start = t
                    b.peak = s
                elif s > b.peak if b.high else s < b.peak:
                    b.peak = s
                if t - b.cand_start >= b.min_duration:
                    twin = m.abs_high if b.high else m.abs_low
                    if not (b.is_baseline and twin.raised is not None):
                        self._raise_band(m, b, t, s)
                active = True
            else:
                b.cand_start = None
        m.active = active

    # ---------------------------------------------------------------- band detections

    def _raise_band(self, m: _Metric, b: _Band, t: float, s: float) -> None:
        assert b.cand_start is not None
        started = b.cand_start
        duration = t - started
        direction = "above" if b.high else "below"
        value = f"{s:.0f} {m.unit}"
        if b.is_baseline:
            reason = (
                f"{m.label} {value} for {format_duration(duration)}, {direction} this "
                f"resident's usual range {b.baseline_label}"
            )
        else:
            reason = (
                f"{m.label} {value} for {format_duration(duration)}, {direction} the limit of "
                f"{b.enter:.0f} {m.unit}"
            )
        b.raised = Detection(
            kind=DetectionKind.VITALS_ABNORMAL,
            subject=self.subject,
            time=t,
            reason=reason,
            details={
                "condition": b.condition,
                "metric": m.name,
                "value": round(s, 1),
                "limit": round(b.enter, 1),
                "duration_s": round(duration),
                "baseline": b.is_baseline,
            },
            started=started,
        )
        b.recover_since = None
        self._outbox.append(b.raised)

    def _resolve_band(self, m: _Metric, b: _Band, t: float, *, no_data: bool = False) -> None:
        raised = b.raised
        if raised is None:
            return
        started = raised.started if raised.started is not None else raised.time
        peak = f"{b.peak:.0f} {m.unit}"
        if no_data:
            reason = (
                f"{m.label} no longer measured since {self._clock(m.last_t)} (out of bed or "
                f"sensor off); last value {m.last_raw:.0f} {m.unit}, peak {peak}"
            )
        else:
            side = "below" if b.high else "above"
            reason = (
                f"{m.label} back to {m.ema:.0f} {m.unit} ({side} {b.exit:.0f} {m.unit} for "
                f"{format_duration(self._recover)}); peak {peak}, lasted "
                f"{format_duration(t - started)}"
            )
        details: dict[str, DetailValue] = {
            "condition": b.condition,
            "metric": m.name,
            "value": round(m.ema, 1),
            "peak": round(b.peak, 1),
            "duration_s": round(t - started),
            "no_data": no_data,
        }
        self._outbox.append(
            Detection(
                kind=DetectionKind.VITALS_ABNORMAL,
                subject=self.subject,
                time=t,
                reason=reason,
                details=details,
                started=started,
                resolved=True,
            )
        )
        b.raised = None
        b.cand_start = None
        b.recover_since = None

    # ---------------------------------------------------------------- breathing pauses

    def _end_pause(self, end: float) -> None:
        start = self._pause_start
        self._pause_start = None
        if start is None:
            return
        length = end - start
        if length < self.params.pause_s:
            return
        self._last_pause_end = end
        pauses = self._pauses
        pauses.append((end, length))
        horizon = end - self.params.pause_window_s
        while pauses and pauses[0][0] < horizon:
            pauses.popleft()
        if self._apnea is None and len(pauses) >= self.params.pause_count:
            self._raise_apnea(end, length, long_pause=False)

    def pause_stats(self, now: float) -> tuple[int, float]:
        """(number of pauses >= ``pause_s``, longest pause in s) within ``pause_window_s``."""
        horizon = now - self.params.pause_window_s
        recent = [d for e, d in self._pauses if e >= horizon]
        if self._pause_start is not None:
            ongoing = self._pause_last - self._pause_start + self.params.sample_period_s
            if ongoing >= self.params.pause_s:
                recent.append(ongoing)
        return len(recent), max(recent, default=0.0)

    def _raise_apnea(self, t: float, length: float, *, long_pause: bool) -> None:
        p = self.params
        count, longest = self.pause_stats(t)
        if long_pause:
            started = self._pause_start if self._pause_start is not None else t - length
            reason = (
                f"breathing pause of {length:.0f} s while in bed (heart rate present); "
                f"{count} pause(s) of {p.pause_s:.0f} s or more in the last hour, "
                f"longest {longest:.0f} s"
            )
        else:
            started = self._pauses[0][0] - self._pauses[0][1]
            reason = (
                f"{count} breathing pauses of {p.pause_s:.0f} s or more in the last "
                f"{format_duration(p.pause_window_s)} (longest {longest:.0f} s)"
            )
        self._apnea = Detection(
            kind=DetectionKind.APNEA,
            subject=self.subject,
            time=t,
            reason=reason,
            details={
                "condition": "long_pause" if long_pause else "repeated_pauses",
                "pause_s": round(length, 1),
                "count": count,
                "longest_s": round(longest, 1),
                "long_pause_limit_s": p.long_pause_s,
                "count_limit": p.pause_count,
            },
            started=started,
        )
        self._outbox.append(self._apnea)

    def _resolve_apnea(self, t: float, *, breathing_seen: bool) -> None:
        raised = self._apnea
        if raised is None:
            return
        count, longest = self.pause_stats(t)
        if breathing_seen:
            reason = (
                f"breathing regularly again: no pause for "
                f"{format_duration(t - self._last_pause_end)}"
            )
        else:
            reason = (
                f"breathing no longer measured since {self._clock(self._last_in_bed)} "
                "(out of bed or sensor off)"
            )
        self._outbox.append(
            Detection(
                kind=DetectionKind.APNEA,
                subject=self.subject,
                time=t,
                reason=reason,
                details={
                    "condition": raised.details.get("condition"),
                    "count": count,
                    "longest_s": round(longest, 1),
                    "no_data": not breathing_seen,
                },
                started=raised.started,
                resolved=True,
            )
        )
        self._apnea = None

    # ---------------------------------------------------------------- check

    def check(self, now: float) -> list[Detection]:
        """Detections due at ``now`` (raised/resolved by readings, then no-data resolutions)."""
        p = self.params
        if now >= self._day_end and self._hist_day is not None:
            self._roll_day(now)
        if self._pause_start is not None and now - self._pause_last > self._pause_gap:
            self._end_pause(self._pause_last + p.sample_period_s)
        for m in (self._hr, self._rr):
            if m.active and now - m.last_t >= p.no_data_resolve_s:
                for b in m.bands:
                    b.cand_start = None
                    if b.raised is not None:
                        self._resolve_band(m, b, m.last_t + p.no_data_resolve_s, no_data=True)
                m.active = False
        if (
            self._apnea is not None
            and self._pause_start is None
            and now - max(self._last_in_bed, self._last_pause_end) >= p.no_data_resolve_s
        ):
            self._resolve_apnea(
                max(self._last_in_bed, self._last_pause_end) + p.no_data_resolve_s,
                breathing_seen=False,
            )
        out, self._outbox = self._outbox, []
        return out

    def open_conditions(self) -> list[Detection]:
        """Raise detections of the conditions currently open (for reconciliation)."""
        out = [b.raised for m in (self._hr, self._rr) for b in m.bands if b.raised is not None]
        if self._apnea is not None:
            out.append(self._apnea)
        return out

    def _clock(self, t: float) -> str:
        return format_time(t, self.params.utc_offset_s)
