"""The SLA report of one site and month: its KPIs and renderings (JSON, CSV, text, PNG),
and :func:`build_report`, which computes it from rows (pure; see :mod:`gateway.reports.sla`)."""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway import l10n
from gateway.l10n import DEFAULT_LANGUAGE, Lang
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
    Target,
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
                    "scope": t.target.scope,
                    "label": t.target.label(),
                    "label_en": t.target.label("en"),
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

    def to_text(self, lang: Lang = DEFAULT_LANGUAGE) -> str:
        """A plain-text table for the terminal, zh-CN by default (``lang="en"``: English);
        times in the site's zone, named."""
        off = self.utc_offset_s

        def t(key: str, **kw: Any) -> str:
            return l10n.t(lang, key, **kw)

        labels = [r.target.label(lang) for r in self.targets]
        first = max([34, *(l10n.width(x) + 2 for x in labels)])

        def row(label: str, *cells: str, rest: int = 11) -> str:
            return l10n.ljust(label, first) + "".join(l10n.rjust(c, rest) for c in cells)

        lines = [
            t("sla.title", site=self.site_id, month=self.month, zone=l10n.zone_name(off)),
            t("sla.as_of", when=l10n.local_time(self.as_of, off, seconds=True)),
            "",
            row(t("sla.care"), str(self.care_count)),
            row(t("sla.technical"), str(self.technical_count)),
            "",
            row(t("sla.col.target"), t("sla.col.share"), t("sla.col.n"), t("sla.col.goal"))
            + "  " + t("sla.col.met"),
        ]  # fmt: skip
        for r, label in zip(self.targets, labels, strict=True):
            met = "-" if r.met is None else t("sla.met.yes" if r.met else "sla.met.no")
            lines.append(
                row(label, _pct(r.share.value), f"{r.share.hits}/{r.share.counted}",
                    _pct(r.target.share)) + "  " + met
            )  # fmt: skip
        lines += ["", row(t("sla.col.from_raise"), t("sla.col.median"), t("sla.col.p90"), "n")]
        for key, stats in (
            ("sla.to_ack", self.acknowledge),
            ("sla.to_scene", self.on_scene),
            ("sla.to_resolve", self.resolve),
        ):
            lines.append(row(t(key), _dur(stats.median_s, lang), _dur(stats.p90_s, lang),
                             str(stats.count)))  # fmt: skip
        lines += ["", t("sla.late", n=len(self.late))]
        for i in self.late:
            answer = t("sla.not_answered") if i.answer_s is None else _dur(i.answer_s, lang)
            lines.append(t("sla.late.row", id=i.row.id, type=l10n.type_label(lang, i.row.type),
                           raised=l10n.local_time(i.row.raised_at, off, seconds=True),
                           answer=answer))  # fmt: skip
        lines += ["", row(t("sla.col.false"), t("sla.col.rate"), "n")]
        for f in self.false_alarms:
            lines.append(row(l10n.type_label(lang, f.type), _pct(f.rate),
                             f"{f.false_alarms}/{f.resolved}"))  # fmt: skip
        in_service = sum(1 for d in self.devices if d.in_service_s > 0)
        lines += [
            "",
            row(t("sla.resident_cancel"), str(self.resident_cancellations)),
            row(t("sla.staff_cancel"), str(self.staff_cancellations)),
            row(t("sla.online"), _pct(self.device_online_rate, 2))
            + "  " + t("sla.devices", n=in_service),
        ]  # fmt: skip
        return "\n".join(lines) + "\n"

    def to_png(self, path: str | Path, lang: Lang = DEFAULT_LANGUAGE) -> Path:
        """Write a PNG: CDF of the care answer times with the 60/180 s lines and targets,
        and the daily share answered within 60 s against the targets. Headless (Agg canvas,
        no pyplot); labels in ``lang`` (Chinese drawn with the CJK font when installed)."""
        from matplotlib import rc_context  # noqa: PLC0415
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415

        from gateway.reports.fonts import font_families  # noqa: PLC0415

        def t(key: str, **kw: Any) -> str:
            return l10n.t(lang, key, **kw)

        out = Path(path)
        families = font_families()
        with warnings.catch_warnings(), rc_context({"font.family": families}):
            if len(families) == 1:  # no CJK font: boxes, logged once by fonts
                warnings.filterwarnings("ignore", message="Glyph .* missing")
            fig = Figure(figsize=(10, 7.5), dpi=100)
            FigureCanvasAgg(fig)
            fig.suptitle(t("sla.png.title", site=self.site_id, month=self.month))
            ax1, ax2 = fig.subplots(2, 1)
            times = sorted(i.answer_s for i in self.care if i.answer_s is not None)
            n = self.within[180].counted  # every answered incident is counted at 180 s
            x_max = max(200.0, min(times[-1] * 1.05, 600.0)) if times else 200.0
            if times and n:
                xs, ys = cdf_points(times, n, x_max)
                marks = list(range(1, len(xs) - 1))
                ax1.step(xs, ys, where="post", marker="o", markevery=marks,
                         label=t("sla.png.answered"))  # fmt: skip
            else:
                ax1.text(0.5, 0.5, t("sla.png.none"), ha="center", transform=ax1.transAxes)
            for limit, style in ((60, "--"), (180, ":")):
                ax1.axvline(limit, color="red", linestyle=style, label=t("sla.png.limit", s=limit))
            for r in (r for r in self.targets if r.target.measure == "answer"):
                ax1.axhline(r.target.share, color="grey", linewidth=0.6)
            # Keep the 60 s / 180 s lines readable; later answers run off the right.
            ax1.set_xlim(0, x_max)
            ax1.set_xlabel(t("sla.png.x"))
            ax1.set_ylabel(t("sla.png.y"))
            ax1.set_ylim(0, 1.02)
            ax1.legend(loc="lower right", fontsize="small")
            days = [d for d in self.daily if d.share.value is not None]
            ax2.bar([d.day.day for d in days], [d.share.value or 0.0 for d in days],
                    color="tab:blue")  # fmt: skip
            styles = iter(("--", ":", "-.", (0, (1, 3)), (0, (5, 2))))
            for r in (r for r in self.targets if r.target.measure == "answer"
                      and r.target.within_s == 60):  # fmt: skip
                ax2.axhline(r.target.share, color="red" if r.target.scope == "local" else
                            "darkred", linestyle=next(styles, "--"),
                            label=f"{_pct(r.target.share)} {r.target.label(lang)}")  # fmt: skip
            zone = l10n.zone_name(self.utc_offset_s)
            ax2.set_xlabel(t("sla.png.day", month=self.month, zone=zone))
            ax2.set_ylabel(t("sla.png.daily"))
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


_UNITS: dict[Lang, tuple[str, str, str]] = {
    "zh-CN": ("秒", "分钟", "小时"),
    "en": ("s", "min", "h"),
}


def _dur(seconds: float | None, lang: Lang = DEFAULT_LANGUAGE) -> str:
    if seconds is None:
        return "-"
    s, m, h = _UNITS[lang]
    if seconds < 120:
        return f"{seconds:.0f} {s}"
    if seconds < 7200:
        return f"{seconds / 60:.1f} {m}"
    return f"{seconds / 3600:.1f} {h}"


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
    local_targets: Sequence[Target] = (),
) -> SlaReport:
    """Compute the report from loaded rows (pure). ``incidents`` outside the month are dropped.
    ``local_targets`` (the site's contract or Chinese standard) come before the
    international references of :data:`TARGETS`."""
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
        for t in (*local_targets, *TARGETS)
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
