"""The monthly per-bed supervision report (issue 13 §5, 一人一床一码) of a site or a
district: per occupied bed its bed code and elder code (no names), the services delivered by
type, visits done against the visits the plan required, care alarms answered within the
target, the median answer time and the online rate of the bed's devices; totals per site and
over the district. Rendered as a Chinese PDF by :mod:`gateway.supervision.bed_report_pdf`.

Definitions

* **Month**: the site's local calendar month (``sites.utc_offset_s``).
* **Visits due**: for each visit kind the elder's plan has (the strictest interval over their
  risk categories, :func:`gateway.visits.plans.intervals`), ``ceil(days / interval)`` where
  ``days`` are the days of the month from the later of the month's start and the elder's
  registration to the earlier of the month's end and the report time. Visits done: phone and
  home visits recorded in the month.
* **Alarms**: care incidents (not technical) raised in the month; *in target*: acknowledged
  within :data:`ANSWER_TARGET_S` (60 s). A site's share is judged against the site's own
  ``answered_60s`` target of ``config/response_targets.toml`` (the SLA report's local
  target, :mod:`gateway.reports.sla_targets`, its ``basis`` named) when one is configured,
  else against :data:`ANSWER_TARGET_SHARE` (97.5 %, UK TSA, the SLA report's first
  international target); district totals against the strictest (highest) of their sites'.
* **Device online rate**: online seconds over in-service seconds in the month of the devices
  on the bed or worn by its elder (the SLA report's device availability).

:func:`build_line`, :func:`add_up`, :func:`answer_target` and :func:`strictest` are pure;
:func:`collect` reads the database and is given the sites' local targets (the caller reads
the target file).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from gateway.reports.sla import sla_report
from gateway.reports.sla_math import TARGETS, Target
from gateway.storage import supervision as store
from gateway.supervision.district import month_bounds
from gateway.visits.config import VisitsConfig
from gateway.visits.plans import intervals
from gateway.visits.service import SERVICES

Conn = psycopg.Connection[Any]
ANSWER_TARGET_S = TARGETS[0].within_s  # 60 s
ANSWER_TARGET_SHARE = TARGETS[0].share  # 97.5 %
SERVICE_KINDS: tuple[str, ...] = tuple(SERVICES)


@dataclass(frozen=True, slots=True)
class AnswerTarget:
    """The share of care alarms to answer within :data:`ANSWER_TARGET_S` a site is judged
    against, and its source: the site's contract (``local``) or the international reference."""

    share: float
    basis: str  # zh-CN, e.g. 运营合同目标
    basis_en: str
    local: bool


INTERNATIONAL = AnswerTarget(
    ANSWER_TARGET_SHARE, TARGETS[0].standard, TARGETS[0].standard_en or TARGETS[0].standard,
    local=False,
)  # fmt: skip


def answer_target(local: Iterable[Target]) -> AnswerTarget:
    """The site's own answered-within-60-s target among its local targets
    (:func:`gateway.reports.sla_targets.local_targets`), else :data:`INTERNATIONAL`."""
    for t in local:
        if t.measure == "answer" and t.within_s == ANSWER_TARGET_S:
            return AnswerTarget(t.share, t.standard, t.standard_en or t.standard, local=True)
    return INTERNATIONAL


def strictest(targets: Iterable[AnswerTarget]) -> AnswerTarget:
    """The highest share among ``targets`` (the first of equals); :data:`INTERNATIONAL`
    when there is none."""
    return max(targets, key=lambda t: t.share, default=INTERNATIONAL)


@dataclass(frozen=True, slots=True)
class BedLine:
    """One occupied bed's month (codes only)."""

    bed_code: str
    elder_code: str
    services: dict[str, int]
    visits_done: int
    visits_due: int
    alarms: int
    answered_in_target: int
    median_answer_s: float | None
    online_s: float
    in_service_s: float

    @property
    def online_rate(self) -> float | None:
        return None if self.in_service_s <= 0 else self.online_s / self.in_service_s


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums over beds; the answer share is judged against ``target_share`` (the site's
    target, or the strictest of a district's sites; 97.5 % when none is given)."""

    beds: int = 0
    services: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SERVICE_KINDS, 0))
    visits_done: int = 0
    visits_due: int = 0
    alarms: int = 0
    answered_in_target: int = 0
    online_s: float = 0.0
    in_service_s: float = 0.0
    target_share: float = ANSWER_TARGET_SHARE

    @property
    def services_total(self) -> int:
        return sum(self.services.values())

    @property
    def answer_share(self) -> float | None:
        return None if self.alarms == 0 else self.answered_in_target / self.alarms

    @property
    def target_met(self) -> bool | None:
        share = self.answer_share
        return None if share is None else share >= self.target_share

    @property
    def online_rate(self) -> float | None:
        return None if self.in_service_s <= 0 else self.online_s / self.in_service_s


@dataclass(frozen=True, slots=True)
class SiteSection:
    site_id: str
    name: str
    district_id: str | None
    utc_offset_s: int
    lines: list[BedLine]
    totals: Totals
    target: AnswerTarget = INTERNATIONAL  # what ``totals`` is judged against


@dataclass(frozen=True, slots=True)
class BedReport:
    """The report of one site (``scope`` ``site:<id>``) or district (``district:<id>``)."""

    scope: str
    month: str
    generated_at: datetime  # UTC
    utc_offset_s: int  # the zone the generation time is shown in (the first site's)
    sections: list[SiteSection]
    totals: Totals  # judged against :attr:`target`

    @property
    def target(self) -> AnswerTarget:
        """The strictest (highest) target among the sites."""
        return strictest(s.target for s in self.sections)


def due_days(start: datetime, end: datetime, registered: datetime, now: datetime) -> int:
    """Days of the month ``start``–``end`` an elder registered at ``registered`` was under a
    plan by ``now`` (a started day counts whole)."""
    first, last = max(start, registered), min(end, now)
    if last <= first:
        return 0
    return math.ceil((last - first) / timedelta(days=1))


def visits_due(kinds: Mapping[str, int], days: int) -> int:
    """Visits a plan (days between visits, per kind) requires in ``days`` days."""
    return sum(math.ceil(days / every) for every in kinds.values() if every > 0 and days > 0)


def build_line(
    row: Mapping[str, Any], kinds: Mapping[str, int], days: int, online: tuple[float, float]
) -> BedLine:
    """One bed's line from its database row (:func:`store.bed_report_rows`), the elder's plan
    intervals, the days under the plan and (online s, in-service s) of its devices."""
    services = {k: int(row["services"].get(k, 0)) for k in SERVICE_KINDS}
    median = row["median_answer_s"]
    return BedLine(
        bed_code=str(row["bed_code"]), elder_code=str(row["elder_code"]), services=services,
        visits_done=int(row["visits_done"]), visits_due=visits_due(kinds, days),
        alarms=int(row["alarms"]), answered_in_target=int(row["answered_in_target"]),
        median_answer_s=None if median is None else float(median),
        online_s=online[0], in_service_s=online[1],
    )  # fmt: skip


def add_up(lines: Iterable[BedLine | Totals], target_share: float = ANSWER_TARGET_SHARE) -> Totals:
    """The totals of bed lines (or of other totals), judged against ``target_share``."""
    beds, services = 0, dict.fromkeys(SERVICE_KINDS, 0)
    done = due = alarms = answered = 0
    online = in_service = 0.0
    for x in lines:
        beds += x.beds if isinstance(x, Totals) else 1
        for k in SERVICE_KINDS:
            services[k] += x.services.get(k, 0)
        done, due = done + x.visits_done, due + x.visits_due
        alarms, answered = alarms + x.alarms, answered + x.answered_in_target
        online, in_service = online + x.online_s, in_service + x.in_service_s
    return Totals(beds, services, done, due, alarms, answered, online, in_service,
                  target_share)  # fmt: skip


def _device_online(
    devices: Sequence[Any], device_beds: Mapping[str, str]
) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for d in devices:
        bed = device_beds.get(d.device_id)
        if bed is None or d.in_service_s <= 0:
            continue
        on, total = out.get(bed, (0.0, 0.0))
        out[bed] = (on + d.in_service_s - d.offline_s, total + d.in_service_s)
    return out


def collect(
    conn: Conn,
    cfg: VisitsConfig,
    site_ids: Sequence[str],
    *,
    month: str,
    now: datetime,
    scope: str,
    targets: Mapping[str, Sequence[Target]],
) -> BedReport:
    """Read the month of every site in ``site_ids`` (unknown ones are left out); ``targets``:
    each site's local SLA targets (:func:`gateway.reports.sla_targets.load_local_targets`; a
    site left out has none and is judged against the international 97.5 %)."""
    month_bounds(month)  # a malformed or out-of-range month: InvalidError, even with no site
    sites = store.site_names(conn, site_ids)
    sections = []
    for site_id in sorted(sites):
        name, offset = sites[site_id]
        start, end = month_bounds(month, offset)
        district = store.site_district(conn, site_id)
        plans = cfg.plans_for(district)
        local = tuple(targets.get(site_id, ()))
        devices = sla_report(conn, site_id, month, now=now, local_targets=local).devices
        online = _device_online(devices, store.device_beds(conn, site_id))
        lines = [
            build_line(
                row,
                intervals(row["categories"], plans),
                due_days(start, end, row["created_at"], now),
                online.get(str(row["bed_id"]), (0.0, 0.0)),
            )
            for row in store.bed_report_rows(conn, site_id, start, end, ANSWER_TARGET_S)
        ]
        target = answer_target(local)
        sections.append(SiteSection(site_id, name, district, offset, lines,
                                    add_up(lines, target.share), target))  # fmt: skip
    offset = sections[0].utc_offset_s if sections else 28800
    share = strictest(s.target for s in sections).share
    return BedReport(scope, month, now, offset, sections,
                     add_up((s.totals for s in sections), share))  # fmt: skip
