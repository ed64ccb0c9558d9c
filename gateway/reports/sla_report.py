"""The SLA report of one site and month: its KPIs and renderings (JSON, CSV, text, PNG),
and :func:`build_report`, which computes it from rows (pure; see :mod:`gateway.reports.sla`)."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.reports.sla_math import (
    ATTENDANCE_S,
    TARGETS,
    THRESHOLDS_S,
    DailyShare,
    DeviceAvailability,
    DeviceRow,
    Episode,
    FalseAlarmRate,
    IncidentRow,
    IncidentTimes,
    Share,
    Stats,
    TargetResult,
    cdf_points,
    device_availability,
    local_day,
    month_window,
)


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
