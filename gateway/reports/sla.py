"""Monthly SLA report of one site: answer times against the site's own target (the
operator's contract, or the Chinese standard it follows) and the international telecare
references, and more. zh-CN by default, English on request (``to_text("en")``); every time
in the site's zone, named.

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

Targets
    First the site's own targets (``scope = "local"``), configured per site in the ``sla``
    tables of ``config/response_targets.toml`` (:mod:`gateway.reports.sla_targets`: the
    operator's contract or the Chinese standard it cites, e.g. 95 % answered within 60 s).
    Then the international references, cited for comparison (``scope = "international"``):
    within 60 s: 97.5 % (TSA code of practice, UK) and 98.5 % (BS/EN standard); within
    180 s: 99 % (TSA); attendance: 90 % on scene within 45 min and all within 60 min.
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

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

import gateway.storage.reports as reports_sql
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
    Interval,
    Share,
    Stats,
    Target,
    TargetResult,
    cdf_points,
    covered_seconds,
    device_availability,
    local_day,
    merge_intervals,
    month_window,
    percentile,
)
from gateway.reports.sla_report import INCIDENT_CSV_COLUMNS, SlaReport, build_report
from gateway.reports.sla_targets import load_local_targets

__all__ = [
    "ATTENDANCE_S",
    "INCIDENT_CSV_COLUMNS",
    "TARGETS",
    "THRESHOLDS_S",
    "DailyShare",
    "DeviceAvailability",
    "DeviceRow",
    "Episode",
    "FalseAlarmRate",
    "IncidentRow",
    "IncidentTimes",
    "Interval",
    "Share",
    "SiteNotFoundError",
    "SlaReport",
    "Stats",
    "Target",
    "TargetResult",
    "build_report",
    "cdf_points",
    "covered_seconds",
    "device_availability",
    "local_day",
    "merge_intervals",
    "month_window",
    "percentile",
    "sla_report",
]


class SiteNotFoundError(LookupError):
    """No site with that id."""


def sla_report(
    conn: psycopg.Connection[Any],
    site_id: str,
    month: str,
    *,
    now: datetime | None = None,
    local_targets: Sequence[Target] | None = None,
) -> SlaReport:
    """The SLA report of ``site_id`` for the local month ``YYYY-MM`` (read-only queries).

    ``now`` is the report time (default: the current time); deadlines of unanswered
    incidents and the device window are judged at it. The month is the site's local
    calendar month (its ``utc_offset_s``). Raises :class:`SiteNotFoundError` for an unknown
    site and ``ValueError`` for a malformed month. ``local_targets``: the site's own
    targets (default: as configured in ``config/response_targets.toml``).
    """
    as_of = datetime.now(UTC) if now is None else now
    if as_of.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    offset = reports_sql.site_utc_offset(conn, site_id)
    if offset is None:
        raise SiteNotFoundError(f"no site {site_id!r}")
    start, end = month_window(month, offset)
    incidents = reports_sql.month_incidents(conn, site_id, start, end)
    devices = reports_sql.devices_in_service(conn, site_id, start, end)
    episodes = reports_sql.offline_episodes(
        conn, site_id, devices, until=min(end, max(as_of, start))
    )
    return build_report(
        site_id,
        month,
        utc_offset_s=offset,
        incidents=incidents,
        devices=devices,
        episodes=episodes,
        as_of=as_of,
        local_targets=load_local_targets(site_id) if local_targets is None else local_targets,
    )
