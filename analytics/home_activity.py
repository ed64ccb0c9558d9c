"""Home activity from door contacts and motion sensors: a home's routine, and plain alerts.

For an elder living alone with the safe-home kit (door contact, PIR motion sensor, call
button) and perhaps no bed sensor or wearable. One :class:`HomeActivity` per home learns:

* the **first activity of the day** (getting up), per day, over the last ``history_days``;
* the **last activity of the evening** (going to bed): the start of the night's long gap;
* the **usual gaps between motion** during waking time, per band of hours of the day;
* activity per hour of the day (minutes with motion), for the plain-words explanation.

and raises (``check``), each once per episode, resolved when it clears:

* ``NO_ACTIVITY``: no motion in waking time for longer than the home's usual gaps at that
  time of day allow ("无活动：自 21:40 起未检测到活动；晚间通常每 2 小时有活动");
* ``NOT_UP``: no activity by the usual first activity plus a margin ("not up by 09:30;
  usually 07:10");
* ``DOOR_OPEN_AT_NIGHT``: the door opened at night and not closed, or opened and closed with
  no motion inside afterwards (left home at night): wandering risk.

Away mode: the door opened and closed and no motion inside follows within ``away_after_s``
(the resident left); the next motion inside ends it. Staff, family or the grid worker may
also set it (:meth:`HomeActivity.set_away`). No alert while away.

Fusion: while a bed sensor shows the resident in bed breathing normally (fed with
:meth:`HomeActivity.on_bed`), there is no "no activity" (resting in bed is not inactivity;
the bed sensor's own detectors watch for trouble in bed).

Sensor dropouts: the motion sensor's heartbeats (:meth:`HomeActivity.on_alive`) show it is
working; without a sign for ``stale_s`` nothing is alerted (the device-offline incident
covers that) and the gap restarts when it comes back.

Pure: numpy and the standard library, epoch seconds in, no clock, no I/O. Local time comes
from ``utc_offset_s``. The assumptions are written down in ``docs/home-activity.md``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np

from analytics.routine import days_overlapping
from analytics.types import DetailValue, Detection, DetectionKind

DAY_S: Final = 86400.0
HOUR_S: Final = 3600.0
MIN_S: Final = 60.0
CONDITION: Final = "home_activity"
"""``details["condition"]`` of this detector's findings (distinct from the bed routine's)."""
_BANDS: Final = 8  # 3-hour bands of the day for the usual gaps


@dataclass(frozen=True, slots=True)
class HomeActivityParams:
    """Thresholds; :meth:`for_care_level` scales them with the resident's care level."""

    utc_offset_s: float = 8 * HOUR_S
    history_days: int = 28
    min_days: int = 5  # learned routine used from this many usable days on
    # NOT_UP: deadline = late first activity (q90) + margin; cold start: default_up + margin
    not_up_margin_s: float = 60 * MIN_S
    default_up_s: float = 8.5 * HOUR_S  # cold start: the usual first activity taken as 08:30
    up_not_before_s: float = 4 * HOUR_S  # motion before 04:00 is a night trip, not getting up
    # NO_ACTIVITY: allowed gap = max(min, factor x the band's long gaps) capped at max
    gap_factor: float = 1.5
    gap_quantile: float = 0.95
    longest_factor: float = 1.1  # ... and never below the band's longest gap seen, plus 10 %
    min_gap_s: float = 2.5 * HOUR_S
    max_gap_s: float = 6 * HOUR_S
    cold_gap_s: float = 4 * HOUR_S
    night_margin_s: float = 45 * MIN_S  # a gap starting this close to the usual bed time
    default_bed_s: float = 20 * HOUR_S  # cold start: evenings from 19:15 count as night
    # door at night
    night_start_s: float = 23 * HOUR_S
    night_end_s: float = 5 * HOUR_S
    door_open_tolerance_s: float = 10 * MIN_S
    left_check_s: float = 15 * MIN_S  # after a night door close, motion inside within this
    # away inference from the door sequence
    away_after_s: float = 20 * MIN_S
    # sensor liveness and bed fusion
    stale_s: float = 45 * MIN_S
    bed_fresh_s: float = 10 * MIN_S

    @classmethod
    def for_care_level(cls, care_level: int, **overrides: Any) -> HomeActivityParams:
        """Level 1 (independent) waits longest; level 5 alerts soonest."""
        level = min(5, max(1, int(care_level)))
        margin = {1: 90, 2: 60, 3: 45, 4: 40, 5: 30}[level] * MIN_S
        factor = {1: 1.7, 2: 1.5, 3: 1.4, 4: 1.3, 5: 1.2}[level]
        base = cls(not_up_margin_s=margin, gap_factor=factor)
        return replace(base, **overrides) if overrides else base


@dataclass(slots=True)
class DayRecord:
    """One learned day: first activity, evening last activity (seconds of local day; the
    last may exceed 86400 when after midnight) and its waking gaps (start sod, length)."""

    day: int
    first_s: float
    last_s: float
    gaps: list[tuple[float, float]] = field(default_factory=list)


def _clock(sod: float) -> str:
    sod %= DAY_S
    return f"{int(sod // HOUR_S):02d}:{int(sod % HOUR_S // MIN_S):02d}"


def _hours(seconds: float) -> str:
    h = seconds / HOUR_S
    return f"{h:.0f}" if abs(h - round(h)) < 0.05 else f"{h:.1f}"


_BAND_ZH: Final = ("凌晨", "凌晨", "早上", "上午", "中午", "下午", "傍晚", "晚间")
_BAND_EN: Final = (
    "at night",
    "early morning",
    "in the morning",
    "in the late morning",
    "around noon",
    "in the afternoon",
    "in the early evening",
    "in the evening",
)


class HomeActivity:
    """One home's routine and alerts. Feed events in time order; call :meth:`check`."""

    def __init__(self, subject: str, params: HomeActivityParams | None = None) -> None:
        self.subject = subject
        self.p = params or HomeActivityParams()
        self._off = self.p.utc_offset_s
        self._events: deque[float] = deque()  # motion (and door) times, last ~40 h
        self._last_activity: float | None = None
        self._start: float | None = None  # first check: monitoring start
        self._resume: float = -math.inf  # sensor back / away ended / bed left
        self._alive: float | None = None
        self._door_open_at: float | None = None  # the earliest of the doors open now
        self._doors_open: dict[str, float] = {}  # door contact -> opened at (several doors)
        self._door_closed_at: float | None = None
        self._door_close_checked = True
        self._away_auto = False
        self._away_set = False
        self._bed_in = False
        self._bed_ok_at = -math.inf
        self._history: deque[DayRecord] = deque(maxlen=self.p.history_days)
        self._summarised_through: int | None = None
        # Absences and dropouts (start, end): gaps over them are not learned from.
        self._absent: deque[tuple[float, float]] = deque()
        self._away_since: float | None = None
        self._away_periods: tuple[tuple[float, float], ...] = ()  # the family's, as given
        self._away_days: frozenset[int] = frozenset()  # days of the family's away periods
        self._dropout_end = -math.inf
        self._open: dict[DetectionKind, float] = {}
        self._out: list[Detection] = []
        self._learned: tuple[float, float, float, np.ndarray] | None = None

    def retune(self, params: HomeActivityParams) -> None:
        """New thresholds (the resident's care level or risk categories changed); what was
        learned is kept. The time zone and the history length must stay the same."""
        if (params.utc_offset_s, params.history_days) != (self.p.utc_offset_s,
                                                          self.p.history_days):  # fmt: skip
            raise ValueError("retune changes alert thresholds only")
        self.p = params
        self._learned = None  # the allowed gaps are recomputed with the new thresholds

    # -- input ----------------------------------------------------------------------------

    def on_motion(self, t: float) -> None:
        self._activity(t)
        if self._away_auto:
            self._away_auto = False
            self._resume = t
            self._end_absence(t)
        self._door_close_checked = True
        if self._door_open_at is None and DetectionKind.DOOR_OPEN_AT_NIGHT in self._open:
            del self._open[DetectionKind.DOOR_OPEN_AT_NIGHT]
            self._resolve(
                DetectionKind.DOOR_OPEN_AT_NIGHT, t, "屋内又有活动 / movement inside again"
            )

    def on_door(self, t: float, opened: bool, door: str = "") -> None:
        """An opening or closing of the door contact ``door`` (a home may have several: a
        door still open keeps the home's door open when another one closes)."""
        if opened:
            self._doors_open[door] = t
            self._door_open_at = min(self._doors_open.values())
            self._activity(t)
            return
        self.on_alive(t)
        self._doors_open.pop(door, None)
        if self._doors_open:
            self._door_open_at = min(self._doors_open.values())
            return
        self._door_open_at = None
        self._door_closed_at = t
        self._door_close_checked = False
        if DetectionKind.DOOR_OPEN_AT_NIGHT in self._open:
            del self._open[DetectionKind.DOOR_OPEN_AT_NIGHT]
            self._resolve(DetectionKind.DOOR_OPEN_AT_NIGHT, t, "门已关 / door closed")
            self._door_close_checked = True

    def on_alive(self, t: float) -> None:
        """Any sign of life from the home's sensors (heartbeat, state online, any event)."""
        if self._alive is not None and t - self._alive > self.p.stale_s:
            self._resume = t
            self._dropout_end = t
            self._absent.append((self._alive, t))
        self._alive = t if self._alive is None else max(self._alive, t)

    def on_bed(self, t: float, in_bed: bool, breathing_normal: bool) -> None:
        """A bed sensor's state: in bed and breathing normally keeps "no activity" off."""
        if in_bed and breathing_normal:
            self._bed_ok_at = t
        elif self._bed_in and not in_bed:
            self._activity(t)  # getting out of bed is activity
        self._bed_in = in_bed

    def set_away(self, t: float, away: bool) -> None:
        """Set by staff, the family or the grid worker (also ends an inferred absence)."""
        if self._away_set and not away:
            self._resume = t
            self._end_absence(t)
        if away and not self.away:
            self._away_since = t
        self._away_set = away
        self._away_auto = False

    def set_away_periods(self, periods: Iterable[tuple[float, float]]) -> None:
        """The away periods the family set ((start, end) epoch times): no alert is paused
        here (the incident intake holds findings back), but a local day overlapping one is
        not learned from (nor counted towards ``min_days``); days learned already are
        dropped. Cheap when nothing changed."""
        given = tuple(periods)
        if given == self._away_periods:
            return
        self._away_periods = given
        days = days_overlapping(given, self._off)
        if days == self._away_days:
            return
        self._away_days = days
        kept = [r for r in self._history if r.day not in days]
        if len(kept) != len(self._history):
            self._history = deque(kept, maxlen=self.p.history_days)
            self._learned = None

    def _end_absence(self, t: float) -> None:
        if self._away_since is not None:
            self._absent.append((self._away_since, t))
            self._away_since = None

    @property
    def away_set(self) -> bool:
        """Away as set by people (registry status), not inferred from the door."""
        return self._away_set

    @property
    def away(self) -> bool:
        return self._away_set or self._away_auto

    def _activity(self, t: float) -> None:
        self.on_alive(t)
        self._events.append(t)
        if self._last_activity is None or t > self._last_activity:
            self._last_activity = t
        for kind in (DetectionKind.NO_ACTIVITY, DetectionKind.NOT_UP):
            if kind in self._open:
                del self._open[kind]
                self._resolve(kind, t, f"{_clock(self._sod(t))} 检测到活动 / activity again")

    # -- time helpers -----------------------------------------------------------------------

    def _day(self, t: float) -> int:
        return math.floor((t + self._off) / DAY_S)

    def _sod(self, t: float) -> float:
        return (t + self._off) % DAY_S

    def _midnight(self, day: int) -> float:
        return day * DAY_S - self._off

    def _at_night(self, t: float) -> bool:
        sod = self._sod(t)
        return sod >= self.p.night_start_s or sod < self.p.night_end_s

    # -- learning ---------------------------------------------------------------------------

    def routine(self) -> tuple[float, float, float, np.ndarray]:
        """(usual first activity, late first activity, usual last activity, allowed gap per
        3-hour band), all seconds; cold-start defaults until ``min_days`` days are known."""
        if self._learned is not None:
            return self._learned
        p = self.p
        days = list(self._history)
        if len(days) < p.min_days:
            gaps = np.full(_BANDS, p.cold_gap_s)
            self._learned = (p.default_up_s, p.default_up_s + HOUR_S, p.default_bed_s, gaps)
            return self._learned
        first = np.array([d.first_s for d in days])
        last = np.array([d.last_s for d in days])
        allowed = np.empty(_BANDS)
        starts = np.array([g[0] for d in days for g in d.gaps] or [0.0])
        lengths = np.array([g[1] for d in days for g in d.gaps] or [0.0])
        band_of = (starts // (3 * HOUR_S)).astype(int) % _BANDS
        for b in range(_BANDS):
            near = (band_of == b) | (band_of == (b - 1) % _BANDS) | (band_of == (b + 1) % _BANDS)
            sample = lengths[near] if np.count_nonzero(near) >= 10 else lengths
            long_gap = float(np.quantile(sample, p.gap_quantile)) if sample.size >= 5 else 0.0
            longest = float(sample.max()) if sample.size else 0.0
            wanted = max(p.gap_factor * long_gap, p.longest_factor * longest)
            allowed[b] = min(p.max_gap_s, max(p.min_gap_s, wanted))
        self._learned = (
            float(np.median(first)),
            float(np.quantile(first, 0.9)),
            float(np.quantile(last, 0.05)),
            allowed,
        )
        return self._learned

    def _summarise(self, now: float) -> None:
        """Learn day D once its night is over (at D+1 14:00 local)."""
        ready = self._day(now - 14 * HOUR_S) - 1
        if self._summarised_through is None:
            self._summarised_through = ready
            return
        while self._summarised_through < ready:
            self._summarised_through += 1
            day = self._summarised_through
            record = self._day_record(day)
            if record is not None:
                self._history.append(record)
                self._learned = None
        horizon = now - 44 * HOUR_S
        while self._events and self._events[0] < horizon:
            self._events.popleft()
        while self._absent and self._absent[0][1] < now - 4 * DAY_S:
            self._absent.popleft()

    def _day_record(self, day: int) -> DayRecord | None:
        if day in self._away_days:
            return None  # away with the family: nothing to learn about the routine
        m = self._midnight(day)
        times = np.array([t for t in self._events if m - 12 * HOUR_S <= t < m + 36 * HOUR_S])
        if times.size < 4:
            return None
        night_before = self._night_gap(times, m - 6 * HOUR_S, m + 12 * HOUR_S)
        night_after = self._night_gap(times, m + 18 * HOUR_S, m + 36 * HOUR_S)
        if night_before is None or night_after is None:
            return None
        absent = list(self._absent)
        if self._away_since is not None:
            absent.append((self._away_since, math.inf))

        def overlaps(a: float, b: float) -> bool:
            return any(x < b and a < y for x, y in absent)

        if overlaps(*night_before) or overlaps(*night_after):
            return None  # a night away or without sensors: nothing to learn about the routine
        after = times[(times >= max(night_before[1], m + self.p.up_not_before_s))]
        if after.size == 0:
            return None
        up, bed = float(after[0]), night_after[0]
        if not up < bed:
            return None
        waking = times[(times >= up) & (times <= bed)]
        diffs = np.diff(waking)
        keep = diffs >= 20 * MIN_S
        starts = waking[:-1][keep]
        gaps = [
            (self._sod(float(a)), float(g))
            for a, g in zip(starts, diffs[keep], strict=True)
            if not overlaps(float(a), float(a + g))
        ]
        return DayRecord(day, up - m, bed - m, gaps)

    @staticmethod
    def _night_gap(times: np.ndarray, lo: float, hi: float) -> tuple[float, float] | None:
        """The longest gap between consecutive events that overlaps [lo, hi]: (start, end)."""
        if times.size < 2:
            return None
        starts, ends = times[:-1], times[1:]
        mask = (ends > lo) & (starts < hi)
        if not mask.any():
            return None
        lengths = np.where(mask, ends - starts, -1.0)
        i = int(np.argmax(lengths))
        if lengths[i] < 3 * HOUR_S:
            return None
        return float(starts[i]), float(ends[i])

    # -- checking ---------------------------------------------------------------------------

    def check(self, now: float) -> list[Detection]:
        """Findings due at ``now`` (resolutions first)."""
        if self._start is None:
            self._start = now
        self._summarise(now)
        out, self._out = self._out, []
        self._check_door(now, out)
        if self.away or self._alive is None or now - self._alive > self.p.stale_s:
            return out
        self._check_not_up(now, out)
        self._check_no_activity(now, out)
        return out

    def _check_door(self, now: float, out: list[Detection]) -> None:
        p = self.p
        night_open = DetectionKind.DOOR_OPEN_AT_NIGHT in self._open
        opened = self._door_open_at
        if opened is not None:
            if (
                self._at_night(opened)
                and now - opened >= p.door_open_tolerance_s
                and not night_open
            ):
                clock = _clock(self._sod(opened))
                out.append(self._raise(
                    DetectionKind.DOOR_OPEN_AT_NIGHT, now, opened,
                    f"夜间开门未关：{clock} 打开大门，至今未关 / front door opened at {clock} "
                    "and not closed",
                ))  # fmt: skip
            return
        closed = self._door_closed_at
        if closed is None or self._door_close_checked:
            return
        if self._at_night(closed) and now - closed >= p.left_check_s and not night_open:
            clock = _clock(self._sod(closed))
            out.append(self._raise(
                DetectionKind.DOOR_OPEN_AT_NIGHT, now, closed,
                f"夜间外出未归：{clock} 开门离家，此后屋内无活动 / left home at {clock} at "
                "night: no movement inside since",
                left=True,
            ))  # fmt: skip
        if now - closed >= p.away_after_s:
            self._door_close_checked = True
            self._away_auto = True
            if self._away_since is None:
                self._away_since = closed

    def _check_not_up(self, now: float, out: list[Detection]) -> None:
        if DetectionKind.NOT_UP in self._open or DetectionKind.NO_ACTIVITY in self._open:
            return
        usual, late, _, _ = self.routine()
        day = self._day(now)
        m = self._midnight(day)
        deadline = m + late + self.p.not_up_margin_s
        if now < deadline or now - deadline > 6 * HOUR_S:
            return
        up_from = m + self._up_from(usual)
        last = self._last_activity
        if last is not None and last >= up_from:
            return
        if self._resume >= up_from or (self._start is not None and self._start > m + usual):
            return  # monitoring (re)started this morning: cannot tell
        clock, usual_c = _clock(self._sod(deadline)), _clock(usual)
        out.append(self._raise(
            DetectionKind.NOT_UP, now, deadline,
            f"未起床：{clock} 仍未检测到活动；平时约 {usual_c} 起床 / not up by {clock}; "
            f"usually {usual_c}",
            usual_first_activity=usual_c,
        ))  # fmt: skip

    def _check_no_activity(self, now: float, out: list[Detection]) -> None:
        if DetectionKind.NO_ACTIVITY in self._open or DetectionKind.NOT_UP in self._open:
            return
        if now - self._bed_ok_at <= self.p.bed_fresh_s:
            return  # in bed, breathing normally
        start = self._start if self._start is not None else now
        base = max(self._last_activity or -math.inf, self._resume, start)
        usual, _, bed, allowed = self.routine()
        sod = self._sod(base)
        # A gap that starts near or after the usual bed time, or before getting up, is the
        # night: NOT_UP covers it.
        up_from = self._up_from(usual)
        rel = sod if sod >= up_from else sod + DAY_S
        if rel >= bed - self.p.night_margin_s:
            return
        band = int(sod // (3 * HOUR_S)) % _BANDS
        limit = float(allowed[band])
        if base == self._resume and self._resume == self._dropout_end:
            limit = self.p.max_gap_s  # after a dropout the state is unknown (gone out?)
        if now - base < limit:
            return
        clock, every = _clock(sod), _hours(limit / self.p.gap_factor)
        out.append(self._raise(
            DetectionKind.NO_ACTIVITY, now, base,
            f"无活动：自 {clock} 起未检测到活动；{_BAND_ZH[band]}通常每 {every} 小时内有活动"
            f" / no movement since {clock}; usually movement every {every} h {_BAND_EN[band]}",
            allowed_gap_s=round(limit),
        ))  # fmt: skip

    def _up_from(self, usual: float) -> float:
        """Seconds of day from which motion counts as getting up (before: a night trip)."""
        return max(self.p.up_not_before_s, usual - 1.5 * HOUR_S)

    # -- findings ---------------------------------------------------------------------------

    def _raise(
        self, kind: DetectionKind, now: float, started: float, reason: str, **extra: DetailValue
    ) -> Detection:
        self._open[kind] = started
        details: dict[str, DetailValue] = {"condition": CONDITION, **extra}
        return Detection(kind, self.subject, now, reason, details, started=started)

    def _resolve(self, kind: DetectionKind, t: float, reason: str) -> None:
        self._out.append(
            Detection(kind, self.subject, t, reason, {"condition": CONDITION}, resolved=True)
        )

    def open_conditions(self) -> list[DetectionKind]:
        return sorted(self._open)
