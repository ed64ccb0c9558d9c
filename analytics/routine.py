"""A resident's learned daily routine, and the inactivity alerts that rest on it.

What this module gives the analysis runner:

* :class:`RoutineParams`: every threshold, with defaults; :meth:`RoutineParams.for_care_level`
  picks sensible ones for care levels 1 (independent) to 5 (fully dependent).
* :class:`DaySummary`: one local calendar day of one resident, boiled down to a usual rise
  time, bed time, minutes with activity per hour, and whether the resident was away. The
  live monitor produces one per day (:meth:`RoutineMonitor.drain_summaries`), so the runner
  can store them; :func:`summarize_history` computes the same from stored event arrays.
* :class:`Routine`: robust statistics (median and quantiles) over up to 14 such days, or
  cold-start defaults from the care level until enough days are known.
* :class:`RoutineMonitor`: one per resident. Feed it the decoded stream (bed samples, bed
  exit/entry events, steps, button presses...), call :meth:`RoutineMonitor.check` every few
  seconds; it raises ``NOT_UP``, ``NIGHT_BED_EXIT``, ``NO_ACTIVITY`` and
  ``MOTIONLESS_IN_BED`` once per episode and a ``resolved=True`` detection when each clears.

Time is always epoch seconds (UTC, float); local time of day comes from
``RoutineParams.utc_offset_s`` (8 h for China). Nothing here reads a clock or does I/O.

Rebuilding after a restart: construct the monitor with the stored day summaries
(``history=``), then replay the recent raw stream (at least ``max(no_activity_s, 36 h)`` of bed
events, steps and presses; bed samples may be thinned to one a minute, every rule is
time-based, not count-based) through the same feed methods in time order, then call
:meth:`RoutineMonitor.check` with the current time. Detections carry a ``started`` time
derived from the data, so the runner can match them against incidents it already has open;
:meth:`RoutineMonitor.open_conditions` tells which conditions are raised after the replay.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from analytics.types import DEFAULT_UTC_OFFSET_S, DetailValue, Detection, DetectionKind

DAY_S: Final = 86400.0
HOUR_S: Final = 3600.0
MINUTE_S: Final = 60.0

# --------------------------------------------------------------------------------------
# local time helpers (shared with vitals.py and device_health.py)
# --------------------------------------------------------------------------------------


def local_day(t: float, utc_offset_s: float) -> int:
    """Local calendar day number (days since 1970-01-01 in local time) of epoch time ``t``."""
    return math.floor((t + utc_offset_s) / DAY_S)


def day_start(day: int, utc_offset_s: float) -> float:
    """Epoch time of local midnight that starts local day ``day``."""
    return day * DAY_S - utc_offset_s


def days_overlapping(periods: Iterable[tuple[float, float]], utc_offset_s: float) -> frozenset[int]:
    """Local calendar days that overlap any of ``periods`` ((start, end) epoch times, end
    exclusive; empty or reversed periods overlap nothing)."""
    out: set[int] = set()
    for a, b in periods:
        if b > a and math.isfinite(a) and math.isfinite(b):
            first = local_day(a, utc_offset_s)
            last = local_day(b, utc_offset_s)
            if day_start(last, utc_offset_s) >= b:
                last -= 1  # ends at local midnight: that day is not touched
            out.update(range(first, last + 1))
    return frozenset(out)


def local_time_of_day(t: float, utc_offset_s: float) -> float:
    """Seconds after local midnight, in [0, 86400)."""
    return (t + utc_offset_s) % DAY_S


def weekday(day: int) -> int:
    """Weekday of a local day number, Monday = 0 ... Sunday = 6."""
    return (day + 3) % 7


def format_clock(seconds_of_day: float) -> str:
    """'07:10' for 25800 s (seconds dropped, like a clock); 24:30 wraps to '00:30'."""
    minutes = math.floor(seconds_of_day / MINUTE_S + 1e-6) % 1440
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def format_time(t: float, utc_offset_s: float) -> str:
    """Local clock time ('02:10') of epoch time ``t``."""
    return format_clock(local_time_of_day(t, utc_offset_s))


def format_duration(seconds: float) -> str:
    """Short human duration: '40 s', '25 min', '2 h 10 min', '3 h'."""
    s = max(0, round(seconds))
    if s < 90:
        return f"{s} s"
    minutes = round(s / MINUTE_S)
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h" if rest == 0 else f"{hours} h {rest} min"


def in_daily_window(seconds_of_day: float, start_s: float, end_s: float) -> bool:
    """Whether a local time of day lies in the daily window [start_s, end_s).

    Start and end are taken modulo one day, so a window may wrap midnight
    (e.g. 21:30 to 06:00, or a bed time given as 24:30). Equal ends mean an empty window.
    """
    start = start_s % DAY_S
    end = end_s % DAY_S
    if start <= end:
        return start <= seconds_of_day < end
    return seconds_of_day >= start or seconds_of_day < end


def window_overlap_s(
    t0: float, t1: float, start_s: float, end_s: float, utc_offset_s: float
) -> float:
    """Seconds of the interval [t0, t1) that fall inside the daily local window [start_s, end_s).

    The window repeats every local day and may wrap midnight (see :func:`in_daily_window`).
    Cost is O(1) in the length of the interval.
    """
    if t1 <= t0:
        return 0.0
    start = start_s % DAY_S
    end = end_s % DAY_S
    if start == end:
        return 0.0
    # the window as up to two segments within one local day
    segments = [(start, end)] if start < end else [(0.0, end), (start, DAY_S)]
    per_day = sum(b - a for a, b in segments)

    def within_day(day: int, lo: float, hi: float) -> float:
        base = day_start(day, utc_offset_s)
        total = 0.0
        for a, b in segments:
            total += max(0.0, min(hi, base + b) - max(lo, base + a))
        return total

    d0 = local_day(t0, utc_offset_s)
    d1 = local_day(t1, utc_offset_s)
    if d0 == d1:
        return within_day(d0, t0, t1)
    total = within_day(d0, t0, t1) + within_day(d1, t0, t1)
    return total + max(0, d1 - d0 - 1) * per_day


# --------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------

_H = HOUR_S
_M = MINUTE_S


@dataclass(frozen=True, slots=True)
class RoutineParams:
    """Thresholds of the routine monitor. Times of day are seconds after local midnight.

    Use :meth:`for_care_level` for the defaults of a care level and
    ``dataclasses.replace`` (or the ``overrides`` of :meth:`for_care_level`) for a
    resident's own overrides.
    """

    care_level: int = 2
    utc_offset_s: float = DEFAULT_UTC_OFFSET_S

    # --- learning the routine
    learn_days: int = 14  # at most this many most recent non-away days are used
    min_learn_days: int = 5  # fewer than this: cold-start defaults
    rise_window_start_s: float = 3 * _H  # a rise is the first sustained bed exit ...
    rise_window_end_s: float = 13 * _H  # ... starting in this window of the day
    rise_sustain_s: float = 30 * _M  # out of bed at least this long counts as "up"
    bed_window_start_s: float = 18 * _H  # bed time: first bed entry in this window ...
    bed_window_end_s: float = 27 * _H  # ... (27 h = 03:00 the next morning) ...
    bed_sustain_s: float = 2 * _H  # ... after which the resident stays in bed this long
    night_gap_merge_s: float = 20 * _M  # shorter exits (toilet) do not break a night in bed
    rise_late_quantile: float = 0.9  # "usually up by": upper quantile of learned rise times
    rise_early_quantile: float = 0.1
    bed_late_quantile: float = 0.75
    max_spread_s: float = 2.5 * _H  # quantiles are clamped to median +- this (odd days)

    # --- cold start (fewer than min_learn_days learned days)
    default_rise_s: float = 6.5 * _H
    default_bed_s: float = 21 * _H
    cold_start_extra_margin_s: float = 30 * _M  # added to not_up_margin_s while unlearned
    cold_start_not_up: bool = True  # False: no NOT_UP until a routine is learned

    # --- NOT_UP
    not_up_enabled: bool = True
    not_up_margin_s: float = 60 * _M

    # --- NIGHT_BED_EXIT: night is [late bed time, early rise time - slack)
    night_exit_enabled: bool = True
    night_exit_tolerance_s: float = 30 * _M  # out of bed longer than this at night alerts
    night_end_slack_s: float = 30 * _M

    # --- NO_ACTIVITY (meant for home-care beds; disable where staff see the resident)
    no_activity_enabled: bool = True
    no_activity_s: float = 5 * _H  # of waking time without any activity evidence
    activity_movement: float = 0.2  # in-bed movement at least this counts as activity

    # --- MOTIONLESS_IN_BED
    motionless_enabled: bool = True
    motionless_movement: float = 0.05  # movement below this is "no movement"
    motionless_day_s: float = 3 * _H
    motionless_night_s: float = 5 * _H

    # --- bed data handling
    presence_debounce_s: float = 10.0  # a presence change in samples must hold this long
    bed_data_timeout_s: float = 300.0  # no bed data for this long: bed state unknown
    summary_close_s: float = 36 * _H  # day D is summarised at D 00:00 + this (next noon)

    @classmethod
    def for_care_level(cls, care_level: int, **overrides: Any) -> RoutineParams:
        """Defaults for a care level (1 independent ... 5 fully dependent), then overrides.

        Higher levels get a shorter rise margin, a shorter night-exit tolerance and a
        shorter no-activity time; level 5 (usually bedridden) gets no NOT_UP until a
        routine with daily rises is learned.
        """
        level = min(5, max(1, int(care_level)))
        margin, night_tol, no_act, rise = _CARE_LEVEL_DEFAULTS[level]
        base = cls(
            care_level=level,
            not_up_margin_s=margin,
            night_exit_tolerance_s=night_tol,
            no_activity_s=no_act,
            default_rise_s=rise,
            cold_start_not_up=level < 5,
        )
        return replace(base, **overrides) if overrides else base


# care level -> (not-up margin, night-exit tolerance, no-activity time, default rise time)
_CARE_LEVEL_DEFAULTS: Final[dict[int, tuple[float, float, float, float]]] = {
    1: (90 * _M, 40 * _M, 6 * _H, 6.5 * _H),
    2: (60 * _M, 30 * _M, 5 * _H, 6.5 * _H),
    3: (45 * _M, 20 * _M, 4 * _H, 7 * _H),
    4: (30 * _M, 15 * _M, 3 * _H, 7 * _H),
    5: (30 * _M, 10 * _M, 3 * _H, 7 * _H),
}


# --------------------------------------------------------------------------------------
# day summaries and the learned routine
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DaySummary:
    """One local calendar day of one resident, as stored between restarts.

    ``rise_s``: start of the first bed exit of the morning that lasted at least
    ``rise_sustain_s``, seconds after local midnight of ``day``; None if none was seen.
    ``bed_s``: the evening's bed time, seconds after local midnight of ``day`` (may exceed
    86400 for a bed time after midnight); None if none was seen.
    ``active_minutes``: 24 values, minutes of each local hour with any activity evidence.
    ``away``: the resident was away / in hospital during part of the day; such days are
    never learned from. ``bed_data``: the bed sensor delivered data through the morning
    (a day without a rise only says "did not get up" if this is True).
    """

    day: int
    rise_s: float | None
    bed_s: float | None
    active_minutes: tuple[float, ...] = ()
    away: bool = False
    bed_data: bool = True


@dataclass(frozen=True, slots=True)
class Routine:
    """Robust statistics of a resident's days (or cold-start defaults)."""

    n_days: int  # non-away days the statistics come from
    rise_learned: bool
    bed_learned: bool
    rise_median_s: float
    rise_early_s: float
    rise_late_s: float
    bed_median_s: float
    bed_late_s: float
    rises_daily: bool = True  # False: most learned days had no rise (bedridden)
    activity_by_hour: tuple[float, ...] = field(default=(0.0,) * 24)
    # Monday-Friday only, when enough weekdays are known (None: use the overall values).
    # Weekends always use the overall values, which include any weekend lie-ins.
    weekday_rise_median_s: float | None = None
    weekday_rise_late_s: float | None = None

    def rise_for(self, day: int) -> tuple[float, float]:
        """(usual rise, late rise) for local day ``day``, weekday-specific where learned."""
        if weekday(day) < 5 and self.weekday_rise_late_s is not None:
            assert self.weekday_rise_median_s is not None
            return self.weekday_rise_median_s, self.weekday_rise_late_s
        return self.rise_median_s, self.rise_late_s

    @classmethod
    def default(cls, params: RoutineParams) -> Routine:
        """Cold-start routine from the care-level defaults."""
        return cls(
            n_days=0,
            rise_learned=False,
            bed_learned=False,
            rise_median_s=params.default_rise_s,
            rise_early_s=params.default_rise_s - 30 * _M,
            rise_late_s=params.default_rise_s,
            bed_median_s=params.default_bed_s,
            bed_late_s=params.default_bed_s + 30 * _M,
        )

    @classmethod
    def learn(cls, days: Iterable[DaySummary], params: RoutineParams) -> Routine:
        """Learn from day summaries (any order; duplicates of a day: the last one wins).

        Uses the ``learn_days`` most recent days not marked away. Rise and bed times are
        learned separately, each once at least ``min_learn_days`` values are known;
        until then the cold-start defaults stand.
        """
        by_day: dict[int, DaySummary] = {}
        for d in days:
            by_day[d.day] = d
        usable = [by_day[k] for k in sorted(by_day) if not by_day[k].away][-params.learn_days :]
        base = cls.default(params)
        rises = [d.rise_s for d in usable if d.rise_s is not None]
        beds = [d.bed_s for d in usable if d.bed_s is not None]
        spread = params.max_spread_s

        rise_learned = len(rises) >= params.min_learn_days
        if rise_learned:
            r = np.asarray(rises, dtype=np.float64)
            med = float(np.median(r))
            rise_median, rise_early, rise_late = (
                med,
                max(float(np.quantile(r, params.rise_early_quantile)), med - spread),
                min(float(np.quantile(r, params.rise_late_quantile)), med + spread),
            )
        else:
            rise_median, rise_early, rise_late = (
                base.rise_median_s,
                base.rise_early_s,
                base.rise_late_s,
            )

        wd_median: float | None = None
        wd_late: float | None = None
        wd_rises = [d.rise_s for d in usable if d.rise_s is not None and weekday(d.day) < 5]
        if len(wd_rises) >= params.min_learn_days:
            w = np.asarray(wd_rises, dtype=np.float64)
            wd_median = float(np.median(w))
            wd_late = min(float(np.quantile(w, params.rise_late_quantile)), wd_median + spread)

        bed_learned = len(beds) >= params.min_learn_days
        if bed_learned:
            b = np.asarray(beds, dtype=np.float64)
            med = float(np.median(b))
            bed_median, bed_late = (
                med,
                min(float(np.quantile(b, params.bed_late_quantile)), med + spread),
            )
        else:
            bed_median, bed_late = base.bed_median_s, base.bed_late_s

        with_bed = [d for d in usable if d.bed_data]
        rises_daily = True
        if len(with_bed) >= params.min_learn_days:
            rises_daily = 2 * sum(d.rise_s is not None for d in with_bed) >= len(with_bed)

        activity = base.activity_by_hour
        profiles = [d.active_minutes for d in usable if len(d.active_minutes) == 24]
        if len(profiles) >= params.min_learn_days:
            med_profile = np.median(np.asarray(profiles, dtype=np.float64), axis=0)
            activity = tuple(float(x) for x in med_profile)

        return cls(
            n_days=len(usable),
            rise_learned=rise_learned,
            bed_learned=bed_learned,
            rise_median_s=rise_median,
            rise_early_s=rise_early,
            rise_late_s=rise_late,
            bed_median_s=bed_median,
            bed_late_s=bed_late,
            rises_daily=rises_daily,
            activity_by_hour=activity,
            weekday_rise_median_s=wd_median,
            weekday_rise_late_s=wd_late,
        )


Transition = tuple[float, bool]  # (time, in bed after the transition)


def _in_bed_intervals(
    transitions: Sequence[Transition], initial_in_bed: bool | None, end_t: float
) -> list[tuple[float, float]]:
    """In-bed intervals from alternating transitions; an open one ends at ``end_t``."""
    out: list[tuple[float, float]] = []
    start: float | None = -math.inf if initial_in_bed else None
    for t, in_bed in transitions:
        if in_bed and start is None:
            start = t
        elif not in_bed and start is not None:
            out.append((start, t))
            start = None
    if start is not None and end_t > start:
        out.append((start, end_t))
    return out


def summarize_day(
    day: int,
    transitions: Sequence[Transition],
    params: RoutineParams,
    *,
    initial_in_bed: bool | None,
    end_t: float,
    active_minutes: Sequence[float] = (),
    away: bool = False,
    bed_data: bool = True,
) -> DaySummary:
    """Summarise local day ``day`` from bed transitions (time order, alternating).

    ``initial_in_bed`` is the bed state before the first transition (None: unknown),
    ``end_t`` the time up to which the transitions are complete (an ongoing stay in or out
    of bed is counted up to there). Transitions should cover at least
    [day 00:00 - 12 h, day 00:00 + ``bed_window_end_s`` + ``bed_sustain_s``].
    """
    p = params
    base = day_start(day, p.utc_offset_s)
    intervals = _in_bed_intervals(transitions, initial_in_bed, end_t)

    # rise: first out-of-bed gap starting in the morning window lasting >= rise_sustain_s
    rise: float | None = None
    ws, we = base + p.rise_window_start_s, base + p.rise_window_end_s
    for i, (_, gap_start) in enumerate(intervals):
        if gap_start < ws:
            continue
        if gap_start >= we:
            break
        gap_end = intervals[i + 1][0] if i + 1 < len(intervals) else end_t
        if gap_end - gap_start >= p.rise_sustain_s:
            rise = gap_start - base
            break

    # bed time: first entry in the evening window that starts a night in bed (short
    # exits merged) lasting >= bed_sustain_s
    merged: list[tuple[float, float]] = []
    for a, b in intervals:
        if merged and a - merged[-1][1] < p.night_gap_merge_s:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    bed: float | None = None
    bs, be = base + p.bed_window_start_s, base + p.bed_window_end_s
    for a, b in merged:
        if a < bs or a >= be:
            # a night that began before the window (e.g. a long evening nap) still counts
            # from the first entry inside the window
            continue
        if b - a >= p.bed_sustain_s:
            bed = a - base
            break

    profile = tuple(float(x) for x in active_minutes) if len(active_minutes) == 24 else ()
    return DaySummary(
        day=day, rise_s=rise, bed_s=bed, active_minutes=profile, away=away, bed_data=bed_data
    )


def summarize_history(
    bed_exit_times: npt.NDArray[np.float64],
    bed_entry_times: npt.NDArray[np.float64],
    activity_times: npt.NDArray[np.float64],
    params: RoutineParams,
    *,
    first_day: int,
    last_day: int,
    away_intervals: Sequence[tuple[float, float]] = (),
    initial_in_bed: bool | None = None,
    bed_data_days: Iterable[int] | None = None,
) -> list[DaySummary]:
    """Day summaries for local days ``first_day..last_day`` from stored event arrays.

    For rebuilding a routine from the database after a restart (or for back-filling days
    the runner did not store). ``activity_times``: times of all activity evidence other
    than bed transitions (step reports with steps > 0, button presses, minutes with in-bed
    movement >= ``activity_movement``); bed exits/entries count as activity by themselves.
    ``away_intervals``: (start, end) epoch times of away / in-hospital periods.
    ``bed_data_days``: days on which the bed sensor delivered data (default: every day
    from the first to the last bed transition). Pass events up to the end of
    ``last_day + 1`` (the bed time of the last day is only known the next morning).
    """
    p = params
    off = p.utc_offset_s
    exits = np.asarray(bed_exit_times, dtype=np.float64)
    entries = np.asarray(bed_entry_times, dtype=np.float64)
    times = np.concatenate([exits, entries])
    kinds = np.concatenate([np.zeros(exits.size, dtype=bool), np.ones(entries.size, dtype=bool)])
    order = np.argsort(times, kind="stable")
    transitions: list[Transition] = []
    state = initial_in_bed
    for t, k in zip(times[order].tolist(), kinds[order].tolist(), strict=True):
        if state is None and not transitions:
            state = not k
            initial_in_bed = state
        if k != state:
            transitions.append((t, bool(k)))
            state = bool(k)
    end_t = day_start(last_day + 2, off)

    n_days = last_day - first_day + 1
    all_act = np.concatenate([np.asarray(activity_times, dtype=np.float64), times])
    minutes = np.unique(np.floor((all_act + off) / MINUTE_S).astype(np.int64))
    day_idx = minutes // 1440 - first_day
    keep = (day_idx >= 0) & (day_idx < n_days)
    slots = day_idx[keep] * 24 + (minutes[keep] % 1440) // 60
    counts = np.bincount(slots, minlength=max(n_days, 0) * 24).astype(np.float64)

    if bed_data_days is None:
        if transitions:
            lo, hi = local_day(transitions[0][0], off), local_day(transitions[-1][0], off)
            covered = set(range(lo, hi + 1))
        else:
            covered = set()
    else:
        covered = set(bed_data_days)

    out: list[DaySummary] = []
    for i in range(n_days):
        d = first_day + i
        ds = day_start(d, off)
        de = ds + p.summary_close_s
        away = any(a < de and b > ds for a, b in away_intervals)
        out.append(
            summarize_day(
                d,
                transitions,
                p,
                initial_in_bed=initial_in_bed,
                end_t=end_t,
                active_minutes=counts[i * 24 : (i + 1) * 24].tolist(),
                away=away,
                bed_data=d in covered,
            )
        )
    return out


# --------------------------------------------------------------------------------------
# the live monitor
# --------------------------------------------------------------------------------------

_KEEP_TRANSITIONS_S: Final = 3 * DAY_S


class RoutineMonitor:
    """Inactivity and routine alerts for one resident.

    Feed methods (call in time order, with the event's epoch time):

    * :meth:`on_bed_sample` for every bed-sensor ``vitals`` reading (presence, movement);
    * :meth:`on_bed_exit` / :meth:`on_bed_entry` for the bed sensor's events;
    * :meth:`on_bed_heartbeat` for bed-sensor heartbeats (keeps the bed state "fresh" for
      sensors that only send events);
    * :meth:`on_steps` for wearable step reports, :meth:`on_activity` for any other
      activity evidence (button press/long press/cancel, SOS, wearable motion...).
      Heartbeats and battery reports are not activity.
    * :meth:`set_away` when staff mark the resident away / in hospital, or back;
    * :meth:`set_away_periods` with the periods the family set (随家人外出): alerts go on
      (the incident intake holds them back), but those days are not learned from.

    :meth:`check` (every ~10 s) returns the detections due, each exactly once; every raised
    condition is later followed by one ``resolved=True`` detection of the same kind.
    Residents without a bed sensor simply never get the bed-based alerts.
    """

    def __init__(
        self,
        subject: str,
        params: RoutineParams | None = None,
        *,
        history: Iterable[DaySummary] = (),
    ) -> None:
        self.subject = subject
        self.params = params if params is not None else RoutineParams()
        p = self.params
        self._off = p.utc_offset_s
        # hot-path copies of parameters
        self._debounce = p.presence_debounce_s
        self._bed_timeout = p.bed_data_timeout_s
        self._still_thr = p.motionless_movement
        self._act_thr = p.activity_movement

        self._history: dict[int, DaySummary] = {}
        self._routine = Routine.default(p)
        self._refresh_routine()

        # bed state
        self._in_bed: bool | None = None
        self._bed_since = -math.inf  # time of the last bed transition (or first sample)
        self._pending_since: float | None = None
        self._bed_seen = -math.inf  # last bed data of any kind
        self._sample_seen = -math.inf  # last bed sample (movement known)
        self._first_bed_seen: float | None = None
        self._bed_gaps: list[tuple[float, float]] = []  # bed data outages > timeout
        self._last_move = -math.inf
        self._last_up_start = -math.inf  # start of the last sustained stay out of bed
        self._transitions: list[Transition] = []
        self._initial_in_bed: bool | None = None

        # activity
        self._obs_start: float | None = None
        self._last_activity = -math.inf
        self._activity_minute = -1
        self._active_minutes: dict[int, list[int]] = {}

        # away mode
        self._away = False
        self._away_since = 0.0
        self._away_intervals: list[tuple[float, float]] = []
        self._away_periods: tuple[tuple[float, float], ...] = ()  # the family's, as given
        self._away_days: frozenset[int] = frozenset()  # days of the family's away periods
        self._resume_t = -math.inf

        # alerts
        self._open: dict[DetectionKind, Detection] = {}
        self._outbox: list[Detection] = []
        self._not_up_day: int | None = None
        self._night_exit: float | None = None
        self._motionless_episode = -math.inf
        self._no_activity_episode = -math.inf

        # summaries
        self._next_summary_day: int | None = None
        self._new_summaries: list[DaySummary] = []

        self.load_history(history)

    # ---------------------------------------------------------------- routine / history

    @property
    def routine(self) -> Routine:
        """The routine currently in force (learned or cold-start)."""
        return self._routine

    def load_history(self, days: Iterable[DaySummary]) -> None:
        """Add stored day summaries (e.g. from the database after a restart) and relearn."""
        added = False
        for d in days:
            self._history[d.day] = d
            added = True
        if added:
            self._prune_history()
            self._mark_away_days()
            self._refresh_routine()

    def drain_summaries(self) -> list[DaySummary]:
        """Day summaries completed since the last call, for the runner to store (upsert by day)."""
        out, self._new_summaries = self._new_summaries, []
        return out

    def _prune_history(self) -> None:
        keep = sorted(self._history)[-(self.params.learn_days * 3) :]
        if len(keep) < len(self._history):
            self._history = {k: self._history[k] for k in keep}

    def retune(self, params: RoutineParams) -> None:
        """New alert thresholds (the resident's care level or risk categories changed); what
        was learned is kept. The time zone and the bed-data handling must stay the same."""
        old = self.params
        if (params.utc_offset_s, params.presence_debounce_s, params.bed_data_timeout_s,
                params.motionless_movement, params.activity_movement) != (
                old.utc_offset_s, old.presence_debounce_s, old.bed_data_timeout_s,
                old.motionless_movement, old.activity_movement):  # fmt: skip
            raise ValueError("retune changes alert thresholds only")
        self.params = params
        self._refresh_routine()

    def _refresh_routine(self) -> None:
        p = self.params
        r = self._routine = Routine.learn(self._history.values(), p)
        self._margin_s = p.not_up_margin_s + (
            0.0 if r.rise_learned else p.cold_start_extra_margin_s
        )
        self._not_up_on = (
            p.not_up_enabled and r.rises_daily and (r.rise_learned or p.cold_start_not_up)
        )
        self._night_start_s = r.bed_late_s
        self._night_end_s = r.rise_early_s - p.night_end_slack_s
        self._wake_start_s = r.rise_median_s
        self._wake_end_s = r.bed_median_s

    @property
    def in_bed(self) -> bool | None:
        """Current bed state (None: unknown, no bed data yet)."""
        return self._in_bed

    @property
    def bed_since(self) -> float:
        """Time of the last bed exit/entry (or of the first bed data)."""
        return self._bed_since

    # ---------------------------------------------------------------- feed: bed sensor

    def on_bed_sample(self, t: float, presence: bool, movement: float) -> None:
        """One bed-sensor reading (1 Hz). O(1) and cheap; no detection is returned here."""
        if t - self._bed_seen > self._bed_timeout:
            self._bed_resumed(t)
        self._bed_seen = t
        self._sample_seen = t
        in_bed = self._in_bed
        if presence != in_bed:
            if in_bed is None:
                self._set_initial(t, bool(presence))
            elif self._pending_since is None:
                self._pending_since = t
            elif t - self._pending_since >= self._debounce:
                self._transition(self._pending_since, bool(presence))
        elif self._pending_since is not None:
            self._pending_since = None
        if presence and movement >= self._still_thr:
            self._last_move = t
            if self._open and DetectionKind.MOTIONLESS_IN_BED in self._open:
                self._resolve(
                    DetectionKind.MOTIONLESS_IN_BED,
                    t,
                    f"moving in bed again at {self._clock(t)}",
                )
            if movement >= self._act_thr:
                self._activity(t)

    def on_bed_exit(self, t: float) -> None:
        """The bed sensor's ``bed_exit`` event."""
        self._bed_event(t, in_bed=False)

    def on_bed_entry(self, t: float) -> None:
        """The bed sensor's ``bed_entry`` event."""
        self._bed_event(t, in_bed=True)

    def on_bed_heartbeat(self, t: float) -> None:
        """A bed-sensor heartbeat: the bed state stays known (not activity)."""
        if t - self._bed_seen > self._bed_timeout:
            self._bed_resumed(t)
        self._bed_seen = max(self._bed_seen, t)

    def _bed_event(self, t: float, *, in_bed: bool) -> None:
        if t - self._bed_seen > self._bed_timeout:
            self._bed_resumed(t)
        self._bed_seen = max(self._bed_seen, t)
        if self._in_bed is None:
            self._set_initial(t, not in_bed)
        if self._in_bed != in_bed:
            self._transition(t, in_bed)
        else:
            self._pending_since = None

    def _bed_resumed(self, t: float) -> None:
        """Bed data (re)starts after an outage: what happened in between is unknown."""
        if self._first_bed_seen is None:
            self._first_bed_seen = t
            if self._obs_start is None:
                self._obs_start = t
        elif self._bed_seen > -math.inf:
            self._bed_gaps.append((self._bed_seen, t))
            if len(self._bed_gaps) > 64:
                del self._bed_gaps[:32]
        self._last_move = t

    def _set_initial(self, t: float, in_bed: bool) -> None:
        self._in_bed = in_bed
        self._bed_since = t
        self._pending_since = None
        if not self._transitions:
            self._initial_in_bed = in_bed

    def _transition(self, t: float, in_bed: bool) -> None:
        self._pending_since = None
        self._in_bed = in_bed
        trans = self._transitions
        trans.append((t, in_bed))
        if len(trans) > 8 and t - trans[0][0] > _KEEP_TRANSITIONS_S:
            while len(trans) > 8 and t - trans[0][0] > _KEEP_TRANSITIONS_S:
                self._initial_in_bed = trans.pop(0)[1]
        out_since = self._bed_since
        self._bed_since = t
        self._activity(t)
        if in_bed:
            if t - out_since >= self.params.rise_sustain_s:
                self._last_up_start = max(self._last_up_start, out_since)
            self._last_move = max(self._last_move, t)
            if DetectionKind.NIGHT_BED_EXIT in self._open and self._night_exit is not None:
                self._resolve(
                    DetectionKind.NIGHT_BED_EXIT,
                    t,
                    f"back in bed at {self._clock(t)} after "
                    f"{format_duration(t - self._night_exit)} out of bed",
                    duration_s=round(t - self._night_exit),
                )
            self._night_exit = None
        else:
            if DetectionKind.NOT_UP in self._open:
                self._resolve(DetectionKind.NOT_UP, t, f"out of bed at {self._clock(t)}")
            if DetectionKind.MOTIONLESS_IN_BED in self._open:
                self._resolve(
                    DetectionKind.MOTIONLESS_IN_BED, t, f"got out of bed at {self._clock(t)}"
                )
            p = self.params
            if (
                not self._away
                and p.night_exit_enabled
                and in_daily_window(
                    local_time_of_day(t, self._off), self._night_start_s, self._night_end_s
                )
            ):
                self._night_exit = t
            else:
                self._night_exit = None

    # ---------------------------------------------------------------- feed: other activity

    def on_steps(self, t: float, steps: int) -> None:
        """A wearable step report (steps since the previous report); steps > 0 is activity."""
        if steps > 0:
            self._activity(t)

    def on_activity(self, t: float) -> None:
        """Any other activity evidence: button press / long press / cancel, SOS, etc."""
        self._activity(t)

    def _activity(self, t: float) -> None:
        if self._obs_start is None:
            self._obs_start = t
        self._last_activity = max(self._last_activity, t)
        minute = int((t + self._off) // MINUTE_S)
        if minute != self._activity_minute:
            self._activity_minute = minute
            day = minute // 1440
            buckets = self._active_minutes.get(day)
            if buckets is None:
                buckets = self._active_minutes[day] = [0] * 24
                for old in [k for k in self._active_minutes if k < day - 3]:
                    del self._active_minutes[old]
            buckets[(minute % 1440) // 60] += 1
        if self._open and DetectionKind.NO_ACTIVITY in self._open:
            self._resolve(DetectionKind.NO_ACTIVITY, t, f"activity again at {self._clock(t)}")

    # ---------------------------------------------------------------- away mode

    @property
    def away(self) -> bool:
        return self._away

    def set_away(self, t: float, away: bool) -> None:
        """Away / in-hospital mode on or off. While on: no alerts; those days are not learned.

        Switching it on resolves every open condition (reason says so). Switching it off
        restarts the inactivity clocks at ``t`` and skips today's NOT_UP if the resident
        returns after the morning has begun.
        """
        if away == self._away:
            return
        if self._obs_start is None:
            self._obs_start = t
        if away:
            self._away = True
            self._away_since = t
            for kind in list(self._open):
                self._resolve(kind, t, f"monitoring paused at {self._clock(t)}: resident away")
            self._night_exit = None
        else:
            self._away = False
            self._away_intervals.append((self._away_since, t))
            if len(self._away_intervals) > 32:
                del self._away_intervals[:16]
            self._resume_t = t
            self._last_move = max(self._last_move, t)
            day = local_day(t, self._off)
            if t >= day_start(day, self._off) + self.params.rise_window_start_s:
                self._not_up_day = day

    def set_away_periods(self, periods: Iterable[tuple[float, float]]) -> None:
        """The away periods the family set ((start, end) epoch times, e.g. 随家人外出).

        Unlike :meth:`set_away` this pauses no alert (the incident intake holds routine
        findings back); it only keeps every local day overlapping a period out of learning,
        as an away day: not learned from, not counted towards the cold start. Days already
        summarised are marked too and handed out again by :meth:`drain_summaries`, so the
        stored row says away. Cheap when nothing changed (call it at every refresh).
        """
        given = tuple(periods)
        if given == self._away_periods:
            return
        self._away_periods = given
        days = days_overlapping(given, self._off)
        if days == self._away_days:
            return
        self._away_days = days
        if self._mark_away_days():
            self._refresh_routine()

    def _mark_away_days(self) -> bool:
        """Mark stored days of the family's away periods as away; whether any changed."""
        changed = False
        for day in self._away_days:
            d = self._history.get(day)
            if d is not None and not d.away:
                d = self._history[day] = replace(d, away=True)
                self._new_summaries.append(d)
                changed = True
        return changed

    # ---------------------------------------------------------------- check

    def open_conditions(self) -> list[Detection]:
        """The raise detections of the conditions currently open (for reconciliation)."""
        return list(self._open.values())

    def check(self, now: float) -> list[Detection]:
        """Detections due at ``now``: resolutions from the stream, then new conditions."""
        if self._obs_start is None:
            self._obs_start = now
        self._close_summaries(now)
        out, self._outbox = self._outbox, []
        if self._away:
            return out
        fresh = now - self._bed_seen <= self._bed_timeout
        self._check_not_up(now, fresh, out)
        self._check_night_exit(now, fresh, out)
        self._check_motionless(now, out)
        self._check_no_activity(now, out)
        return out

    def not_up_deadline(self, day: int) -> float:
        """NOT_UP deadline of local day ``day``, seconds after local midnight."""
        return self._routine.rise_for(day)[1] + self._margin_s

    def _check_not_up(self, now: float, fresh: bool, out: list[Detection]) -> None:
        if not (self._not_up_on and fresh and self._in_bed is True):
            return
        if DetectionKind.NOT_UP in self._open:
            return
        day = local_day(now, self._off)
        if self._not_up_day == day:
            return
        base = day_start(day, self._off)
        tod = now - base
        deadline_s = self.not_up_deadline(day)
        until = self._wake_end_s if self._wake_end_s > deadline_s else DAY_S
        if not deadline_s <= tod < until:
            return
        window_start = base + self.params.rise_window_start_s
        if self._last_up_start >= window_start:
            return  # already got up this morning (back in bed later: a nap)
        deadline_t = base + deadline_s
        if self._bed_since > deadline_t and (
            self._obs_start is None or self._obs_start > window_start
        ):
            return  # back in bed after the deadline, and the morning was not observed
        self._not_up_day = day
        r = self._routine
        usual_s, late_s = r.rise_for(day)
        usual = format_clock(late_s)
        if r.rise_learned:
            lead = f"usually up by {usual}"
        else:
            lead = (
                f"routine not learned yet ({r.n_days} of {self.params.min_learn_days} days); "
                f"expected up by {usual}"
            )
        brief = ""
        if self._transitions and self._bed_since >= base + self.params.rise_window_start_s:
            # the entry that put the resident back in bed this morning
            brief = f", only up briefly before {self._clock(self._bed_since)}"
        reason = f"{lead}; no bed exit by {format_clock(deadline_s)}{brief}"
        out.append(
            self._raise(
                DetectionKind.NOT_UP,
                max(deadline_t, self._bed_since),
                reason,
                started=deadline_t,
                usual_rise=format_clock(usual_s),
                usual_rise_late=usual,
                deadline=format_clock(deadline_s),
                learned=r.rise_learned,
                learned_days=r.n_days,
                in_bed_since=round(self._bed_since, 1),
            )
        )

    def _check_night_exit(self, now: float, fresh: bool, out: list[Detection]) -> None:
        exit_t = self._night_exit
        if exit_t is None or self._in_bed is not False or not fresh:
            return
        if DetectionKind.NIGHT_BED_EXIT in self._open:
            return
        tol = self.params.night_exit_tolerance_s
        if now - exit_t < tol:
            return
        reason = (
            f"got out of bed at {self._clock(exit_t)} during the night and has not returned "
            f"within {format_duration(tol)} (night is {format_clock(self._night_start_s)}"
            f"-{format_clock(self._night_end_s)})"
        )
        out.append(
            self._raise(
                DetectionKind.NIGHT_BED_EXIT,
                exit_t + tol,
                reason,
                started=exit_t,
                exit_time=format_clock(local_time_of_day(exit_t, self._off)),
                tolerance_s=tol,
            )
        )

    def _check_motionless(self, now: float, out: list[Detection]) -> None:
        p = self.params
        if not (p.motionless_enabled and self._in_bed is True):
            return
        if now - self._sample_seen > self._bed_timeout:
            return
        if DetectionKind.MOTIONLESS_IN_BED in self._open:
            return
        start = max(self._last_move, self._bed_since)
        if start == self._motionless_episode:
            return
        awake = in_daily_window(
            local_time_of_day(now, self._off), self._wake_start_s, self._wake_end_s
        )
        limit = p.motionless_day_s if awake else p.motionless_night_s
        if now - start < limit:
            return
        self._motionless_episode = start
        reason = (
            f"in bed without movement since {self._clock(start)} "
            f"({format_duration(now - start)}; alert after {format_duration(limit)} "
            f"{'in the daytime' if awake else 'at night'})"
        )
        out.append(
            self._raise(
                DetectionKind.MOTIONLESS_IN_BED,
                start + limit,
                reason,
                started=start,
                limit_s=limit,
                daytime=awake,
            )
        )

    def _check_no_activity(self, now: float, out: list[Detection]) -> None:
        p = self.params
        if not p.no_activity_enabled or self._obs_start is None:
            return
        opened = self._open
        if (
            DetectionKind.NO_ACTIVITY in opened
            or DetectionKind.NOT_UP in opened
            or DetectionKind.MOTIONLESS_IN_BED in opened
        ):
            return  # staff are already called to this resident
        base = max(self._last_activity, self._obs_start, self._resume_t)
        if base == self._no_activity_episode or now - base < p.no_activity_s:
            return
        waking = window_overlap_s(base, now, self._wake_start_s, self._wake_end_s, self._off)
        if waking < p.no_activity_s:
            return
        self._no_activity_episode = base
        if base == self._last_activity:
            since = f"last activity at {self._clock(base)}"
        else:
            since = f"none seen since monitoring (re)started at {self._clock(base)}"
        reason = (
            f"no activity (bed exits, movement, steps, button presses) for "
            f"{format_duration(waking)} of waking time ({since}; alert after "
            f"{format_duration(p.no_activity_s)})"
        )
        usual = 0.0
        hour = int(local_time_of_day(now, self._off) // HOUR_S)
        if self._routine.activity_by_hour:
            usual = self._routine.activity_by_hour[hour]
            if usual >= 5:
                reason += f"; usually active about {round(usual)} min an hour at this time"
        out.append(
            self._raise(
                DetectionKind.NO_ACTIVITY,
                now,
                reason,
                started=base,
                inactive_waking_s=round(waking),
                limit_s=p.no_activity_s,
                usual_active_min_per_hour=usual,
            )
        )

    # ---------------------------------------------------------------- day summaries

    def _close_summaries(self, now: float) -> None:
        obs = self._obs_start
        if obs is None:
            return
        off = self._off
        if self._next_summary_day is None:
            first = local_day(obs, off)
            self._next_summary_day = first if day_start(first, off) >= obs else first + 1
        while now >= day_start(self._next_summary_day, off) + self.params.summary_close_s:
            self._emit_summary(self._next_summary_day, now)
            self._next_summary_day += 1

    def _emit_summary(self, day: int, now: float) -> None:
        p = self.params
        off = self._off
        ds = day_start(day, off)
        de = ds + p.summary_close_s
        away = (
            any(a < de and b > ds for a, b in self._away_intervals)
            or (self._away and self._away_since < de)
            or day in self._away_days
        )
        summary = summarize_day(
            day,
            self._transitions,
            p,
            initial_in_bed=self._initial_in_bed,
            end_t=min(now, self._bed_seen),
            active_minutes=self._active_minutes.get(day, [0] * 24),
            away=away,
            bed_data=self._bed_coverage(ds + p.rise_window_start_s, ds + p.rise_window_end_s, now)
            >= 0.5,
        )
        self._history[day] = summary
        self._new_summaries.append(summary)
        self._prune_history()
        self._refresh_routine()

    def _bed_coverage(self, a: float, b: float, now: float) -> float:
        """Fraction of [a, b) during which bed data was flowing."""
        if self._first_bed_seen is None or b <= a:
            return 0.0
        lost = max(0.0, min(b, self._first_bed_seen) - a)
        for g0, g1 in self._bed_gaps:
            lost += max(0.0, min(b, g1) - max(a, g0))
        if now - self._bed_seen > self._bed_timeout:
            lost += max(0.0, b - max(a, self._bed_seen))
        return max(0.0, 1.0 - lost / (b - a))

    # ---------------------------------------------------------------- detections

    def _clock(self, t: float) -> str:
        return format_time(t, self._off)

    def _raise(
        self,
        kind: DetectionKind,
        t: float,
        reason: str,
        *,
        started: float,
        **details: DetailValue,
    ) -> Detection:
        det = Detection(
            kind=kind,
            subject=self.subject,
            time=t,
            reason=reason,
            details=details,
            started=started,
        )
        self._open[kind] = det
        return det

    def _resolve(self, kind: DetectionKind, t: float, reason: str, **details: DetailValue) -> None:
        raised = self._open.pop(kind, None)
        if raised is None:
            return
        self._outbox.append(
            Detection(
                kind=kind,
                subject=self.subject,
                time=t,
                reason=reason,
                details=details,
                started=raised.started,
                resolved=True,
            )
        )
