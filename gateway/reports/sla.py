"""Monthly SLA report of one site: answer times against the telecare standards, and more.

:func:`sla_report` reads ``incidents``, ``devices`` and ``detections`` for one site and one
*local* calendar month (the site's ``utc_offset_s``) and returns an :class:`SlaReport`
with text, CSV, JSON and PNG outputs. :func:`build_report` is the same computation on rows
already loaded (pure, no I/O): the unit tests drive it directly.

Definitions (every figure of the report, precisely)
---------------------------------------------------

Month
    ``[YYYY-MM-01 00:00, first day of next month 00:00)`` in the site's local time, i.e.
    shifted by ``-utc_offset_s`` in UTC. An incident belongs to the month of its
    ``raised_at`` (when the gateway raised it; the clock of every SLA figure starts there,
    as the ``incidents`` migration documents).

Report time (``as_of``)
    When the report is computed (``now``). Deadlines are judged at ``as_of``: an incident
    raised in the month and still not answered counts as *missed* once its deadline
    (``raised_at`` + 60 s or + 180 s) is at or before ``as_of``, even if the month has ended.

Care / technical
    Care incidents (``technical = false``: emergency calls, falls, vitals, routine ...) are
    the alarms of the telecare standards; every answer-time KPI covers them only. Technical
    incidents (device, hub, site offline, low battery) are counted separately.

Time to acknowledge (answer time)
    ``acknowledged_at - raised_at``. An incident that staff cancelled straight from
    ``raised`` (no acknowledgement; the cancel is a human decision that stops escalation,
    see ``gateway.workflow.transitions``) is answered at ``cancelled_at``.

Share answered within T (T = 60 s, 180 s)
    hits / counted over care incidents of the month, where per incident:
    answered within T -> hit; answered later -> miss; not answered and the deadline passed
    before ``as_of`` -> miss (still open, or withdrawn only after its deadline);
    not answered and *withdrawn before its deadline* (the resident's own "I'm OK" cancel)
    -> not counted (there was nothing left to answer); not answered and the deadline still
    in the future at ``as_of`` -> not counted (pending). The denominators of the 60 s and
    180 s shares may therefore differ slightly.

Targets (DESIGN.md §7)
    within 60 s: 97.5 % (UK TSA) and 98.5 % (British/European standard); within 180 s:
    99 % (UK TSA); attendance: 90 % on scene within 45 min and all within 60 min.
    ``met`` is ``share >= target``; ``None`` when nothing was counted.

Share on scene within 45 / 60 min (attendance)
    Over care incidents a responder was dispatched to (``dispatched_at`` set): on scene
    (``on_scene_at - raised_at``) within the limit -> hit; on scene later, or still
    dispatched and not on scene with the limit passed at ``as_of`` -> miss; resolved or
    cancelled without anyone on scene (called back), or limit still ahead -> not counted.

Median / p90 time to acknowledge, on scene, resolve
    Over care incidents of the month that reached that step (``acknowledged_at``,
    ``on_scene_at``, ``resolved_at`` minus ``raised_at``). Percentiles are *nearest rank*:
    the smallest observed time such that at least p % of the values are at or below it
    (always an observed time; "90 % of incidents were acknowledged within X s"). Incidents
    that never reached the step are not in these statistics: the shares above and the late
    list account for them.

Late list
    Care incidents answered after 180 s, or not answered with the 180 s deadline passed at
    ``as_of`` (open ones included; resident-withdrawn before 180 s excluded).

False-alarm rate per type
    Per incident type (care and technical) of the month: incidents resolved with outcome
    ``false_alarm`` / incidents resolved (``resolved_at`` set: states resolved or closed).
    Cancelled incidents are not resolved and are not in the denominator.

Resident cancellations
    Care incidents of the month cancelled by the resident (``cancel_source = 'resident'``);
    staff cancellations are reported next to them.

Device online rate
    ``sum(online seconds) / sum(in-service seconds)`` over the site's devices in service
    during the month. A device's in-service window is ``[max(month start, commissioned_at),
    min(month end, decommissioned_at, as_of))``; devices deactivated without a
    ``decommissioned_at`` are not in service. The device is offline during the union of
    its own ``device_offline`` episodes, the ``hub_offline`` episodes of its location and
    the ``site_offline`` episodes of its site (while a hub or site is down the detectors
    raise no per-device detection, so the group episodes stand for their devices). An
    episode runs from its ``started`` (the last message heard: the data-derived start of
    the silence) to the ``time`` of its resolved row; without one, to its ``closed_at``;
    still open, to the end of the window. Online = in service and not offline.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import tuple_row

# -- targets -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A published standard: ``share`` of incidents answered (``measure = "answer"``) or
    attended (``measure = "on_scene"``) within ``within_s`` of the raise."""

    name: str
    within_s: int
    share: float
    standard: str
    measure: str = "answer"

    @property
    def label(self) -> str:
        """Human label, e.g. ``within 60 s (UK TSA)``, ``on scene within 45 min (attendance)``."""
        if self.measure == "answer":
            return f"within {self.within_s} s ({self.standard})"
        return f"on scene within {self.within_s // 60} min ({self.standard})"


TARGETS: tuple[Target, ...] = (
    Target("answered_60s_tsa", 60, 0.975, "UK TSA"),
    Target("answered_60s_en", 60, 0.985, "BS/EN"),
    Target("answered_180s_tsa", 180, 0.99, "UK TSA"),
    Target("on_scene_45min", 2700, 0.90, "attendance", "on_scene"),
    Target("on_scene_60min", 3600, 1.0, "attendance", "on_scene"),
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


@dataclass(frozen=True, slots=True)
class SlaReport:
    """The SLA report of one site and local month; see the module docstring for every KPI."""

    site_id: str
    month: str
    utc_offset_s: int
    period_start: datetime
    period_end: datetime
    as_of: datetime
    incidents: list[IncidentTimes]
    within: dict[int, Share]
    attendance: dict[int, Share]
    targets: list[TargetResult]
    acknowledge: Stats
    on_scene: Stats
    resolve: Stats
    false_alarms: list[FalseAlarmRate]
    resident_cancellations: int
    staff_cancellations: int
    devices: list[DeviceAvailability]
    daily: list[DailyShare] = field(default_factory=list)

    # -- derived KPIs --------------------------------------------------------------------

    @property
    def care(self) -> list[IncidentTimes]:
        """Care incidents of the month (the alarms of the answer-time standards)."""
        return [i for i in self.incidents if not i.row.technical]

    @property
    def care_count(self) -> int:
        """Number of care incidents raised in the month."""
        return len(self.care)

    @property
    def technical_count(self) -> int:
        """Number of technical incidents raised in the month."""
        return len(self.incidents) - self.care_count

    @property
    def late(self) -> list[IncidentTimes]:
        """Care incidents answered after 180 s or not answered by their 180 s deadline."""
        return [i for i in self.care if i.late]

    @property
    def device_online_rate(self) -> float | None:
        """Online device-seconds over in-service device-seconds (None: no device in service)."""
        total = sum(d.in_service_s for d in self.devices)
        if total <= 0:
            return None
        return (total - sum(d.offline_s for d in self.devices)) / total

    # -- outputs -------------------------------------------------------------------------

    def kpis(self) -> dict[str, Any]:
        """The KPIs as one flat-ish dict (JSON-ready values)."""
        return {
            "care_incidents": self.care_count,
            "technical_incidents": self.technical_count,
            "answered_within_60s": _share_dict(self.within[60]),
            "answered_within_180s": _share_dict(self.within[180]),
            "on_scene_within_45min": _share_dict(self.attendance[2700]),
            "on_scene_within_60min": _share_dict(self.attendance[3600]),
            "targets": [
                {
                    "name": t.target.name,
                    "within_s": t.target.within_s,
                    "target": t.target.share,
                    "standard": t.target.standard,
                    "measure": t.target.measure,
                    "share": t.share.value,
                    "met": t.met,
                }
                for t in self.targets
            ],
            "time_to_acknowledge": _stats_dict(self.acknowledge),
            "time_to_on_scene": _stats_dict(self.on_scene),
            "time_to_resolve": _stats_dict(self.resolve),
            "late_incidents": [i.row.id for i in self.late],
            "false_alarm_rate": {
                f.type: {"resolved": f.resolved, "false_alarms": f.false_alarms, "rate": f.rate}
                for f in self.false_alarms
            },
            "resident_cancellations": self.resident_cancellations,
            "staff_cancellations": self.staff_cancellations,
            "device_online_rate": self.device_online_rate,
            "devices_in_service": sum(1 for d in self.devices if d.in_service_s > 0),
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready data (what ``GET /reports/sla`` should return)."""
        return {
            "site_id": self.site_id,
            "month": self.month,
            "utc_offset_s": self.utc_offset_s,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "as_of": self.as_of.isoformat(),
            "kpis": self.kpis(),
            "incidents": [_incident_dict(i) for i in self.incidents],
            "devices": [
                {
                    "device_id": d.device_id,
                    "location_id": d.location_id,
                    "in_service_s": d.in_service_s,
                    "offline_s": d.offline_s,
                    "online_rate": d.online_rate,
                }
                for d in self.devices
            ],
            "daily_within_60s": [
                {"day": d.day.isoformat(), **_share_dict(d.share)} for d in self.daily
            ],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON document."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def to_csv(self) -> str:
        """One row per incident of the month (times in seconds from the raise, UTC ISO times).

        The KPIs are a second CSV, :meth:`kpis_csv` (two files keep both machine-readable);
        the CLI writes ``FILE`` and ``FILE``'s stem + ``-kpis.csv``.
        """
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(INCIDENT_CSV_COLUMNS)
        for i in self.incidents:
            d = _incident_dict(i)
            writer.writerow(["" if d[c] is None else d[c] for c in INCIDENT_CSV_COLUMNS])
        return buf.getvalue()

    def kpis_csv(self) -> str:
        """The KPIs as ``kpi,value,target,met`` rows (empty cells where not applicable)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["kpi", "value", "target", "met"])
        for kpi, value, target, met in self._kpi_rows():
            writer.writerow([kpi, _csv(value), _csv(target), _csv(met)])
        return buf.getvalue()

    def _kpi_rows(self) -> list[tuple[str, Any, Any, Any]]:
        rows: list[tuple[str, Any, Any, Any]] = [
            ("care_incidents", self.care_count, None, None),
            ("technical_incidents", self.technical_count, None, None),
        ]
        for limit in THRESHOLDS_S:
            share = self.within[limit]
            rows.append((f"answered_within_{limit}s", share.value, None, None))
            rows.append((f"answered_within_{limit}s_hits", share.hits, None, None))
            rows.append((f"answered_within_{limit}s_counted", share.counted, None, None))
        for limit in ATTENDANCE_S:
            share = self.attendance[limit]
            name = f"on_scene_within_{limit // 60}min"
            rows.append((name, share.value, None, None))
            rows.append((f"{name}_hits", share.hits, None, None))
            rows.append((f"{name}_counted", share.counted, None, None))
        for t in self.targets:
            rows.append((f"target_{t.target.name}", t.share.value, t.target.share, t.met))
        for name, stats in (
            ("acknowledge", self.acknowledge),
            ("on_scene", self.on_scene),
            ("resolve", self.resolve),
        ):
            rows.append((f"time_to_{name}_count", stats.count, None, None))
            rows.append((f"time_to_{name}_median_s", stats.median_s, None, None))
            rows.append((f"time_to_{name}_p90_s", stats.p90_s, None, None))
        rows.append(("late_incidents", len(self.late), None, None))
        for f in self.false_alarms:
            rows.append((f"false_alarm_rate_{f.type}", f.rate, None, None))
        rows.append(("resident_cancellations", self.resident_cancellations, None, None))
        rows.append(("staff_cancellations", self.staff_cancellations, None, None))
        rows.append(("device_online_rate", self.device_online_rate, None, None))
        return rows

    def to_text(self) -> str:
        """A plain-text table for the terminal."""
        local = timedelta(seconds=self.utc_offset_s)
        hours = self.utc_offset_s / 3600
        lines = [
            f"SLA report  site {self.site_id}  month {self.month}  (UTC{hours:+g})",
            f"as of {(self.as_of + local).strftime('%Y-%m-%d %H:%M:%S')} local",
            "",
            f"{'care incidents':<34}{self.care_count:>10}",
            f"{'technical incidents':<34}{self.technical_count:>10}",
            "",
            f"{'standard (DESIGN §7)':<42}{'share':>10}{'n':>10}{'target':>10}  met",
        ]
        for t in self.targets:
            label = t.target.label
            met = "-" if t.met is None else ("yes" if t.met else "NO")
            lines.append(
                f"{label:<42}{_pct(t.share.value):>10}"
                f"{f'{t.share.hits}/{t.share.counted}':>10}{_pct(t.target.share):>10}  {met}"
            )
        lines += ["", f"{'time from raise':<34}{'median':>10}{'p90':>10}{'n':>8}"]
        for name, stats in (
            ("to acknowledge", self.acknowledge),
            ("to on scene", self.on_scene),
            ("to resolve", self.resolve),
        ):
            lines.append(
                f"{name:<34}{_dur(stats.median_s):>10}{_dur(stats.p90_s):>10}{stats.count:>8}"
            )
        lines += ["", f"answered after 180 s or not answered: {len(self.late)}"]
        for i in self.late:
            raised = (i.row.raised_at + local).strftime("%m-%d %H:%M:%S")
            answer = "not answered" if i.answer_s is None else _dur(i.answer_s)
            lines.append(f"  #{i.row.id:<6} {i.row.type:<18} raised {raised}  {answer}")
        lines += ["", f"{'false alarms':<34}{'rate':>10}{'n':>8}"]
        for f in self.false_alarms:
            lines.append(f"{f.type:<34}{_pct(f.rate):>10}{f'{f.false_alarms}/{f.resolved}':>8}")
        online = self.device_online_rate
        lines += [
            "",
            f"{'resident cancellations':<34}{self.resident_cancellations:>10}",
            f"{'staff cancellations':<34}{self.staff_cancellations:>10}",
            f"{'device online rate':<34}{_pct(online, 2):>10}"
            f"{sum(1 for d in self.devices if d.in_service_s > 0):>8} devices",
        ]
        return "\n".join(lines) + "\n"

    def to_png(self, path: str | Path) -> Path:
        """Write a PNG: CDF of the care answer times with the 60/180 s lines and targets,
        and the daily share answered within 60 s. Headless (Agg canvas, no pyplot)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415

        out = Path(path)
        fig = Figure(figsize=(10, 7.5), dpi=100)
        FigureCanvasAgg(fig)
        fig.suptitle(f"SLA {self.site_id} {self.month}: time to answer (care incidents)")
        ax1, ax2 = fig.subplots(2, 1)
        times = sorted(i.answer_s for i in self.care if i.answer_s is not None)
        n = self.within[180].counted  # every answered incident is counted at 180 s
        x_max = max(200.0, min(times[-1] * 1.05, 600.0)) if times else 200.0
        if times and n:
            xs, ys = cdf_points(times, n, x_max)
            ax1.step(xs, ys, where="post", marker="o", markevery=list(range(1, len(xs) - 1)),
                     label="answered (share of counted)")  # fmt: skip
        else:
            ax1.text(0.5, 0.5, "no answered care incidents", ha="center",
                     transform=ax1.transAxes)  # fmt: skip
        for limit, style in ((60, "--"), (180, ":")):
            ax1.axvline(limit, color="red", linestyle=style, label=f"{limit} s")
        for t in (t for t in self.targets if t.target.measure == "answer"):
            ax1.axhline(t.target.share, color="grey", linewidth=0.6)
        # Keep the 60 s / 180 s lines readable; later answers run off the right.
        ax1.set_xlim(0, x_max)
        ax1.set_xlabel("seconds from raise to acknowledgement")
        ax1.set_ylabel("cumulative share")
        ax1.set_ylim(0, 1.02)
        ax1.legend(loc="lower right", fontsize="small")
        days = [d for d in self.daily if d.share.value is not None]
        ax2.bar([d.day.day for d in days], [d.share.value or 0.0 for d in days], color="tab:blue")
        ax2.axhline(0.975, color="red", linestyle="--", label="97.5 % (UK TSA)")
        ax2.axhline(0.985, color="darkred", linestyle=":", label="98.5 % (EN)")
        ax2.set_xlabel(f"day of {self.month} (local)")
        ax2.set_ylabel("share within 60 s")
        ax2.set_ylim(0, 1.05)
        ax2.set_xlim(0.5, 31.5)
        ax2.legend(loc="lower right", fontsize="small")
        fig.tight_layout()
        fig.savefig(out, format="png")
        return out


def cdf_points(times: list[float], counted: int, x_max: float) -> tuple[list[float], list[float]]:
    """The answer-time curve as step points: from (0, 0), a step up by 1/counted at each
    answer time (sorted), then flat to ``x_max``, so one incident draws a visible step and
    many draw the staircase (issue 11: a single incident drew nothing)."""
    xs = [0.0, *times, max(x_max, times[-1])]
    ys = [0.0, *((k + 1) / counted for k in range(len(times)))]
    return xs, [*ys, ys[-1]]


INCIDENT_CSV_COLUMNS: tuple[str, ...] = (
    "id", "type", "technical", "priority", "subject", "resident_id", "state",
    "raised_at", "acknowledged_at", "dispatched_at", "on_scene_at", "resolved_at",
    "cancelled_at", "cancel_source", "outcome", "time_to_acknowledge_s", "time_to_answer_s",
    "time_to_on_scene_s", "time_to_resolve_s", "within_60s", "within_180s",
    "on_scene_within_45min", "on_scene_within_60min",
)  # fmt: skip


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat()


def _incident_dict(i: IncidentTimes) -> dict[str, Any]:
    r = i.row
    return {
        "id": r.id,
        "type": r.type,
        "technical": r.technical,
        "priority": r.priority,
        "subject": r.subject,
        "resident_id": r.resident_id,
        "state": r.state,
        "raised_at": _iso(r.raised_at),
        "acknowledged_at": _iso(r.acknowledged_at),
        "dispatched_at": _iso(r.dispatched_at),
        "on_scene_at": _iso(r.on_scene_at),
        "resolved_at": _iso(r.resolved_at),
        "cancelled_at": _iso(r.cancelled_at),
        "cancel_source": r.cancel_source,
        "outcome": r.outcome,
        "time_to_acknowledge_s": i.ack_s,
        "time_to_answer_s": i.answer_s,
        "time_to_on_scene_s": i.on_scene_s,
        "time_to_resolve_s": i.resolve_s,
        "within_60s": i.within[60],
        "within_180s": i.within[180],
        "on_scene_within_45min": i.attended[2700],
        "on_scene_within_60min": i.attended[3600],
    }


def _share_dict(share: Share) -> dict[str, Any]:
    return {"hits": share.hits, "counted": share.counted, "share": share.value}


def _stats_dict(stats: Stats) -> dict[str, Any]:
    return {"count": stats.count, "median_s": stats.median_s, "p90_s": stats.p90_s}


def _csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f} %"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# -- building ------------------------------------------------------------------------------


def build_report(
    site_id: str,
    month: str,
    *,
    utc_offset_s: int,
    incidents: Iterable[IncidentRow],
    devices: Iterable[DeviceRow],
    episodes: Sequence[Episode],
    as_of: datetime,
) -> SlaReport:
    """Compute the report from loaded rows (pure). ``incidents`` outside the month are dropped."""
    start, end = month_window(month, utc_offset_s)
    times = [
        IncidentTimes.of(r, as_of)
        for r in sorted(incidents, key=lambda r: (r.raised_at, r.id))
        if start <= r.raised_at < end
    ]
    care = [i for i in times if not i.row.technical]
    within = {limit: Share.of(i.within[limit] for i in care) for limit in THRESHOLDS_S}
    attendance = {limit: Share.of(i.attended[limit] for i in care) for limit in ATTENDANCE_S}
    targets = [
        TargetResult(t, (within if t.measure == "answer" else attendance)[t.within_s])
        for t in TARGETS
    ]

    resolved: Counter[str] = Counter()
    false: Counter[str] = Counter()
    for i in times:
        if i.row.resolved_at is not None:
            resolved[i.row.type] += 1
            false[i.row.type] += i.row.outcome == "false_alarm"
    false_alarms = [FalseAlarmRate(t, resolved[t], false[t]) for t in sorted(resolved)]

    by_day: dict[date, list[bool | None]] = defaultdict(list)
    for i in care:
        by_day[local_day(i.row.raised_at, utc_offset_s)].append(i.within[60])
    first_day = local_day(start, utc_offset_s)
    n_days = (end - start).days
    daily = [
        DailyShare(d, Share.of(by_day.get(d, [])))
        for d in (first_day + timedelta(days=k) for k in range(n_days))
    ]

    window = (start, max(start, min(end, as_of)))
    availability = [device_availability(d, site_id, episodes, window) for d in devices]

    return SlaReport(
        site_id=site_id,
        month=month,
        utc_offset_s=utc_offset_s,
        period_start=start,
        period_end=end,
        as_of=as_of,
        incidents=times,
        within=within,
        attendance=attendance,
        targets=targets,
        acknowledge=Stats.of(i.ack_s for i in care),
        on_scene=Stats.of(i.on_scene_s for i in care),
        resolve=Stats.of(i.resolve_s for i in care),
        false_alarms=false_alarms,
        resident_cancellations=sum(1 for i in care if i.row.cancel_source == "resident"),
        staff_cancellations=sum(1 for i in care if i.row.cancel_source == "staff"),
        devices=sorted(availability, key=lambda d: d.device_id),
        daily=daily,
    )


class SiteNotFoundError(LookupError):
    """No site with that id."""


_INCIDENTS_SQL = """
SELECT id, type, technical, priority, subject, resident_id, state, raised_at,
       acknowledged_at, on_scene_at, resolved_at, outcome, cancelled_at, cancel_source,
       dispatched_at
FROM incidents
WHERE site_id = %s AND raised_at >= %s AND raised_at < %s
ORDER BY raised_at, id
"""

_DEVICES_SQL = """
SELECT device_id, location_id, commissioned_at, decommissioned_at, active
FROM devices
WHERE site_id = %s AND commissioned_at < %s
  AND (decommissioned_at IS NULL OR decommissioned_at > %s)
ORDER BY device_id
"""

# Raise rows of the offline kinds for the site's devices, locations and the site itself,
# with the time of their resolved row (same identity) when there is one.
_EPISODES_SQL = """
SELECT r.kind, r.subject, r.started,
       coalesce((SELECT min(x.time) FROM detections x
                 WHERE x.kind = r.kind AND x.subject = r.subject
                   AND x.condition = r.condition AND x.started = r.started AND x.resolved),
                r.closed_at) AS ended
FROM detections r
WHERE NOT r.resolved AND r.started < %(end)s
  AND ((r.kind = 'device_offline' AND r.subject = ANY(%(devices)s))
    OR (r.kind = 'hub_offline' AND r.subject = ANY(%(locations)s))
    OR (r.kind = 'site_offline' AND r.subject = %(site)s))
"""


def sla_report(
    conn: psycopg.Connection[Any],
    site_id: str,
    month: str,
    *,
    now: datetime | None = None,
) -> SlaReport:
    """The SLA report of ``site_id`` for the local month ``YYYY-MM`` (read-only queries).

    ``now`` is the report time (default: the current time); deadlines of unanswered
    incidents and the device window are judged at it. Raises :class:`SiteNotFoundError`
    for an unknown site and ``ValueError`` for a malformed month.
    """
    as_of = datetime.now(UTC) if now is None else now
    if as_of.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    # Tuple rows whatever the connection's default row factory (the API's pool may differ).
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            b"SELECT utc_offset_s FROM sites WHERE site_id = %s", (site_id,)
        ).fetchone()
        if row is None:
            raise SiteNotFoundError(f"no site {site_id!r}")
        offset = int(row[0])
        start, end = month_window(month, offset)
        cur.execute(_INCIDENTS_SQL.encode(), (site_id, start, end))
        incidents = [IncidentRow(*r) for r in cur.fetchall()]
        cur.execute(_DEVICES_SQL.encode(), (site_id, end, start))
        devices = [DeviceRow(*r) for r in cur.fetchall()]
        params = {
            "end": min(end, max(as_of, start)),
            "devices": [d.device_id for d in devices],
            "locations": sorted({d.location_id for d in devices if d.location_id}),
            "site": site_id,
        }
        cur.execute(_EPISODES_SQL.encode(), params)
        episodes = [Episode(*r) for r in cur.fetchall()]
    return build_report(
        site_id,
        month,
        utc_offset_s=offset,
        incidents=incidents,
        devices=devices,
        episodes=episodes,
        as_of=as_of,
    )
