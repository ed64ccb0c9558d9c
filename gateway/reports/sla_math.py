"""The SLA report's maths: targets, local months and days, shares, percentiles, incident
times and device availability (pure; the definitions are in :mod:`gateway.reports.sla`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from gateway import l10n
from gateway.l10n import DEFAULT_LANGUAGE, Lang

# -- targets -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A target: ``share`` of incidents answered (``measure = "answer"``) or attended
    (``measure = "on_scene"``) within ``within_s`` of the raise. ``scope`` says whose it is:
    ``local`` (the operator's contract, or the Chinese standard it follows: configured per
    site, see :mod:`gateway.reports.sla_targets`) or ``international`` (a published
    telecare code, cited for comparison). ``standard`` names it (``standard_en`` in
    English, when it differs)."""

    name: str
    within_s: int
    share: float
    standard: str
    measure: str = "answer"
    scope: str = "international"  # local | international
    standard_en: str | None = None

    def label(self, lang: Lang = DEFAULT_LANGUAGE) -> str:
        """Human label, e.g. ``60 秒内应答（国际参考：TSA 英国行业规范）`` or ``answered within
        60 s (contract target)``."""
        source = self.standard if lang == "zh-CN" else (self.standard_en or self.standard)
        key = "international" if self.scope == "international" else "local"
        source = l10n.t(lang, f"sla.source.{key}", source=source)
        if self.measure == "answer":
            return l10n.t(lang, "sla.target.answer", s=self.within_s, source=source)
        return l10n.t(lang, "sla.target.on_scene", m=self.within_s // 60, source=source)


# International references (telecare codes of practice), cited next to the local target.
TARGETS: tuple[Target, ...] = (
    Target("answered_60s_tsa", 60, 0.975, "TSA 英国远程照护行业规范", standard_en="TSA code (UK)"),
    Target("answered_60s_en", 60, 0.985, "BS/EN 英欧标准", standard_en="BS/EN standard"),
    Target("answered_180s_tsa", 180, 0.99, "TSA 英国远程照护行业规范", standard_en="TSA code (UK)"),
    Target("on_scene_45min", 2700, 0.90, "TSA 上门响应", "on_scene", standard_en="TSA attendance"),
    Target("on_scene_60min", 3600, 1.0, "TSA 上门响应", "on_scene", standard_en="TSA attendance"),
)
THRESHOLDS_S: tuple[int, ...] = (60, 180)
ATTENDANCE_S: tuple[int, ...] = (2700, 3600)


# -- pure maths ----------------------------------------------------------------------------


def month_window(month: str, utc_offset_s: int) -> tuple[datetime, datetime]:
    """The UTC ``[start, end)`` of the local calendar month ``YYYY-MM`` at ``utc_offset_s``."""
    try:
        year_s, mon_s = month.split("-")
        year, mon = int(year_s), int(mon_s)
        if len(year_s) != 4 or len(mon_s) != 2 or not 1 <= mon <= 12:
            raise ValueError
    except ValueError:
        raise ValueError(f"month must be YYYY-MM, not {month!r}") from None
    nxt = (year + 1, 1) if mon == 12 else (year, mon + 1)
    shift = timedelta(seconds=utc_offset_s)
    start = datetime(year, mon, 1, tzinfo=UTC) - shift
    end = datetime(nxt[0], nxt[1], 1, tzinfo=UTC) - shift
    return start, end


def local_day(t: datetime, utc_offset_s: int) -> date:
    """The site-local calendar day of ``t``."""
    return (t.astimezone(UTC) + timedelta(seconds=utc_offset_s)).date()


def percentile(values: Iterable[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``p`` % of values <= it.

    ``None`` for no values. ``p`` in (0, 100]; p = 50 is the (lower) median.
    """
    if not 0 < p <= 100:
        raise ValueError(f"percentile p must be in (0, 100], not {p}")
    ordered = sorted(values)
    if not ordered:
        return None
    rank = math.ceil(p / 100 * len(ordered) - 1e-9)
    return ordered[max(rank, 1) - 1]


@dataclass(frozen=True, slots=True)
class Share:
    """``hits`` of ``counted`` (incidents that count for a threshold); ``value`` is None at 0."""

    hits: int
    counted: int

    @property
    def value(self) -> float | None:
        """hits / counted, or None when nothing was counted."""
        return self.hits / self.counted if self.counted else None

    @classmethod
    def of(cls, flags: Iterable[bool | None]) -> Share:
        """Count ``True`` as a hit, ``False`` as a miss and skip ``None`` (not counted)."""
        hits = counted = 0
        for flag in flags:
            if flag is None:
                continue
            counted += 1
            hits += flag
        return cls(hits, counted)


@dataclass(frozen=True, slots=True)
class Stats:
    """Count, nearest-rank median and p90 of a set of durations (seconds)."""

    count: int
    median_s: float | None
    p90_s: float | None

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stats:
        """Statistics of the values that are not None."""
        vals = [v for v in values if v is not None]
        return cls(len(vals), percentile(vals, 50), percentile(vals, 90))


Interval = tuple[datetime, datetime]


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of ``[start, end)`` intervals, as sorted disjoint intervals (empty dropped)."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def covered_seconds(intervals: Iterable[Interval], window: Interval) -> float:
    """Seconds of ``window`` covered by the union of ``intervals``."""
    lo, hi = window
    clipped = ((max(s, lo), min(e, hi)) for s, e in intervals)
    return sum((e - s).total_seconds() for s, e in merge_intervals(clipped))


# -- rows ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncidentRow:
    """The columns of ``incidents`` the report needs."""

    id: int
    type: str
    technical: bool
    priority: int
    subject: str
    resident_id: str | None
    state: str
    raised_at: datetime
    acknowledged_at: datetime | None = None
    on_scene_at: datetime | None = None
    resolved_at: datetime | None = None
    outcome: str | None = None
    cancelled_at: datetime | None = None
    cancel_source: str | None = None
    dispatched_at: datetime | None = None


def _secs(later: datetime | None, earlier: datetime) -> float | None:
    return None if later is None else (later - earlier).total_seconds()


@dataclass(frozen=True, slots=True)
class IncidentTimes:
    """One incident with its SLA times (seconds from ``raised_at``) and threshold verdicts.

    ``within`` maps 60 and 180 to True (answered in time), False (missed) or None (not
    counted: withdrawn by the resident before the deadline, or deadline still ahead).
    """

    row: IncidentRow
    ack_s: float | None
    answer_s: float | None
    on_scene_s: float | None
    resolve_s: float | None
    within: dict[int, bool | None]
    attended: dict[int, bool | None] = field(default_factory=dict)

    @classmethod
    def of(cls, row: IncidentRow, as_of: datetime) -> IncidentTimes:
        """Derive the times of ``row`` and judge its deadlines at ``as_of``."""
        answer_s = _secs(row.acknowledged_at, row.raised_at)
        if answer_s is None and row.cancel_source == "staff":
            answer_s = _secs(row.cancelled_at, row.raised_at)
        # Withdrawn without an answer: the resident's cancel, or the system clearing a
        # technical condition (nothing left to answer from then on).
        withdrawn_at: datetime | None = None
        if answer_s is None:
            if row.cancel_source == "resident":
                withdrawn_at = row.cancelled_at
            elif row.outcome == "condition_cleared":
                withdrawn_at = row.resolved_at
        within: dict[int, bool | None] = {}
        for limit in THRESHOLDS_S:
            deadline = row.raised_at + timedelta(seconds=limit)
            verdict: bool | None
            if answer_s is not None:
                verdict = answer_s <= limit
            elif withdrawn_at is not None and withdrawn_at <= deadline:
                verdict = None
            elif deadline <= as_of or withdrawn_at is not None:
                verdict = False
            else:
                verdict = None
            within[limit] = verdict
        return cls(
            row=row,
            ack_s=_secs(row.acknowledged_at, row.raised_at),
            answer_s=answer_s,
            on_scene_s=_secs(row.on_scene_at, row.raised_at),
            resolve_s=_secs(row.resolved_at, row.raised_at),
            within=within,
            attended=_attended(row, as_of),
        )

    @property
    def late(self) -> bool:
        """Answered after 180 s, or not answered with the 180 s deadline passed."""
        return self.within[180] is False


def _attended(row: IncidentRow, as_of: datetime) -> dict[int, bool | None]:
    """Attendance verdicts (45 / 60 min) of a care incident a responder was sent to.

    Counted only once dispatched: on scene within the limit -> True; on scene later, or
    still not on scene with the limit passed at ``as_of`` while the incident is still
    open -> False; resolved or cancelled without attendance, or limit still ahead -> None.
    """
    out: dict[int, bool | None] = {}
    for limit in ATTENDANCE_S:
        verdict: bool | None = None
        if row.dispatched_at is not None and not row.technical:
            deadline = row.raised_at + timedelta(seconds=limit)
            if row.on_scene_at is not None:
                verdict = row.on_scene_at <= deadline
            elif row.state == "dispatched" and deadline <= as_of:
                verdict = False
        out[limit] = verdict
    return out


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """The columns of ``devices`` the online rate needs."""

    device_id: str
    location_id: str | None
    commissioned_at: datetime
    decommissioned_at: datetime | None = None
    active: bool = True


@dataclass(frozen=True, slots=True)
class Episode:
    """One offline episode from ``detections``: kind, subject, ``[start, end)`` (end None: open)."""

    kind: str
    subject: str
    start: datetime
    end: datetime | None


@dataclass(frozen=True, slots=True)
class DeviceAvailability:
    """One device's in-service and offline seconds in the month (see the module docstring)."""

    device_id: str
    location_id: str | None
    in_service_s: float
    offline_s: float

    @property
    def online_rate(self) -> float | None:
        """Online share of the in-service time (None when not in service)."""
        if self.in_service_s <= 0:
            return None
        return (self.in_service_s - self.offline_s) / self.in_service_s


def device_availability(
    device: DeviceRow,
    site_id: str,
    episodes: Sequence[Episode],
    window: Interval,
) -> DeviceAvailability:
    """In-service and offline seconds of ``device`` within ``window`` (month clipped to as_of)."""
    lo, hi = window
    start = max(lo, device.commissioned_at)
    end = hi if device.decommissioned_at is None else min(hi, device.decommissioned_at)
    if not device.active and device.decommissioned_at is None:
        end = start  # deactivated without a date: not in service
    if end <= start:
        return DeviceAvailability(device.device_id, device.location_id, 0.0, 0.0)
    mine = []
    for ep in episodes:
        if (
            (ep.kind == "device_offline" and ep.subject == device.device_id)
            or (ep.kind == "hub_offline" and ep.subject == device.location_id)
            or (ep.kind == "site_offline" and ep.subject == site_id)
        ):
            mine.append((ep.start, end if ep.end is None else ep.end))
    offline = covered_seconds(mine, (start, end))
    return DeviceAvailability(
        device.device_id, device.location_id, (end - start).total_seconds(), offline
    )


# -- the report ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TargetResult:
    """A target of :data:`TARGETS` against the month's share."""

    target: Target
    share: Share

    @property
    def met(self) -> bool | None:
        """share >= target; None when nothing was counted."""
        value = self.share.value
        return None if value is None else value >= self.target.share


@dataclass(frozen=True, slots=True)
class FalseAlarmRate:
    """Per incident type: resolved with outcome ``false_alarm`` over resolved."""

    type: str
    resolved: int
    false_alarms: int

    @property
    def rate(self) -> float | None:
        """false_alarms / resolved, or None when none was resolved."""
        return self.false_alarms / self.resolved if self.resolved else None


@dataclass(frozen=True, slots=True)
class DailyShare:
    """Share answered within 60 s of the care incidents raised on one local day."""

    day: date
    share: Share


def cdf_points(times: list[float], counted: int, x_max: float) -> tuple[list[float], list[float]]:
    """The answer-time curve as step points: from (0, 0), a step up by 1/counted at each
    answer time (sorted), then flat to ``x_max``, so one incident draws a visible step and
    many draw the staircase (issue 11: a single incident drew nothing)."""
    xs = [0.0, *times, max(x_max, times[-1])]
    ys = [0.0, *((k + 1) / counted for k in range(len(times)))]
    return xs, [*ys, ys[-1]]
