"""The monthly document pushed to the platform: one site, one local month.

Built from the existing read models, not re-derived: the SLA report
(:func:`gateway.reports.sla.sla_report`: alarms, answer times against the targets, the
device online rate), the district totals (:func:`gateway.storage.supervision.district_totals`
for one site: beds served, visits done, door-knock tasks), the per-bed month
(:func:`gateway.storage.supervision.bed_month`: services delivered) and the visiting-care
plans (:func:`gateway.visits.service.due_for`, :func:`gateway.visits.plans.assessment_overdue`:
visits due and overdue, re-assessments due). Incident summaries name the elder and the bed by
their codes (一人一床一码), never by name. The schema is in ``docs/platform-push.md``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from gateway.reports.sla import sla_report
from gateway.reports.sla_math import month_window
from gateway.storage import messages as codes_store
from gateway.storage import supervision as supervision_store
from gateway.storage import visits as visits_store
from gateway.supervision.district import ANSWER_TARGET_S
from gateway.visits.config import VisitsConfig
from gateway.visits.plans import assessment_overdue
from gateway.visits.service import due_for, local_date

Conn = psycopg.Connection[Any]
SCHEMA = "safehome.platform.monthly/1"


def idempotency_key(source_id: str, site_id: str, month: str) -> str:
    """The push's idempotency key: one document per source, site and month."""
    return f"{source_id}:monthly:{site_id}:{month}"


def monthly_document(
    conn: Conn, cfg: VisitsConfig, site_id: str, month: str, *, now: datetime, source_id: str
) -> dict[str, Any]:
    """The JSON document of ``site_id`` for the local month ``YYYY-MM`` (read-only).

    Raises :class:`gateway.reports.sla.SiteNotFoundError` for an unknown site and
    ``ValueError`` for a malformed month."""
    sla = sla_report(conn, site_id, month, now=now)
    start, end = month_window(month, sla.utc_offset_s)
    totals = supervision_store.district_totals(conn, [site_id], start, end, ANSWER_TARGET_S)
    beds = supervision_store.bed_month(conn, site_id, start, end, ANSWER_TARGET_S)
    due = overdue = reassess = 0
    for card in visits_store.resident_cards(conn, site_id=site_id):
        for visit in due_for(cfg, card, now):
            due += 1
            overdue += visit.overdue
        reassess += assessment_overdue(card["next_due"], local_date(now, sla.utc_offset_s))
    kpis = sla.kpis()
    codes = codes_store.resident_codes(conn, site_id)
    incidents = []
    for times in sla.incidents:
        row = times.row
        elder, bed = codes.get(row.resident_id or "", (None, None))
        incidents.append(
            {
                "id": row.id,
                "type": row.type,
                "technical": row.technical,
                "priority": row.priority,
                "elder_code": elder,
                "bed_code": bed,
                "state": row.state,
                "outcome": row.outcome,
                "raised_at": _iso(row.raised_at),
                "acknowledged_at": _iso(row.acknowledged_at),
                "on_scene_at": _iso(row.on_scene_at),
                "resolved_at": _iso(row.resolved_at),
                "cancelled_at": _iso(row.cancelled_at),
                "cancel_source": row.cancel_source,
                "time_to_answer_s": times.answer_s,
                "within_60s": times.within[60],
                "within_180s": times.within[180],
            }
        )
    return {
        "schema": SCHEMA,
        "idempotency_key": idempotency_key(source_id, site_id, month),
        "source": source_id,
        "site_id": site_id,
        "month": month,
        "period": {"start": _iso(start), "end": _iso(end), "utc_offset_s": sla.utc_offset_s},
        "generated_at": _iso(now),
        "statistics": {
            "beds_served": int(totals["beds_served"]),
            "devices": int(totals["devices"]),
            "devices_in_service": kpis["devices_in_service"],
            "device_online_rate": kpis["device_online_rate"],
            "alarms": kpis["care_incidents"],
            "technical_incidents": kpis["technical_incidents"],
            "answer_target_s": ANSWER_TARGET_S,
            "alarms_answered_in_target": int(totals["alarms_answered_in_target"]),
            "answered_within_60s": kpis["answered_within_60s"],
            "answered_within_180s": kpis["answered_within_180s"],
            "on_scene_within_45min": kpis["on_scene_within_45min"],
            "targets": kpis["targets"],
            "time_to_acknowledge": kpis["time_to_acknowledge"],
            "time_to_on_scene": kpis["time_to_on_scene"],
            "visits_due": due,
            "visits_overdue": overdue,
            "visits_done": int(totals["phone_visits"]) + int(totals["home_visits"]),
            "phone_visits_done": int(totals["phone_visits"]),
            "home_visits_done": int(totals["home_visits"]),
            "door_knock_tasks": int(totals["door_knock_tasks"]),
            "services_delivered": sum(int(b["services"]) for b in beds),
            "reassessments_due": reassess,
        },
        "incidents": incidents,
    }


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()
