"""Supervision routes (issue 13 §5): the district supervisor's monthly figures and the
staffing-ratio table of nursing homes, plus the community-worker and district pages.

The district supervisor (civil affairs) is read-only and sees only counts and rates of the
sites of their district (``user_districts``/``site_districts``): no names, no codes. Every
read is audited. A site supervisor sees the staffing table of their own site; admins name
the district or site.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel

from gateway import audit
from gateway.api.auth import Principal
from gateway.api.deps import PUBLIC, CurrentUser, DbConn, UserRole, allow, scope_site
from gateway.api.routes_pages import SECURITY_HEADERS
from gateway.api.routes_visits import VisitsConfigDep, domain_errors
from gateway.reports.sla_targets import load_local_targets
from gateway.storage import supervision as supervision_store
from gateway.storage import visits as visits_store
from gateway.supervision import bed_report
from gateway.supervision.bed_report_pdf import render_pdf
from gateway.supervision.district import (
    ANSWER_TARGET_S,
    CHINA_OFFSET_S,
    district_report,
    month_bounds,
    staffing_table,
)
from gateway.visits.service import local_date

router = APIRouter(tags=["supervision"])

STATIC_DIR = Path(__file__).resolve().parents[1] / "visits" / "static"
PAGE_FILES = {
    "worker.html": "text/html; charset=utf-8",
    "worker.js": "text/javascript; charset=utf-8",
    "worker-calls.js": "text/javascript; charset=utf-8",  # the worker's calls (呼叫)
    "district.html": "text/html; charset=utf-8",
    "district.js": "text/javascript; charset=utf-8",
    "visits.css": "text/css; charset=utf-8",
    "console-visits.js": "text/javascript; charset=utf-8",  # the console's visits panel
    "console-visits.css": "text/css; charset=utf-8",
}


class DistrictOut(BaseModel):
    """Counts and rates of one district for one month (no personal data)."""

    district_id: str
    month: str
    sites: list[str]
    totals: dict[str, int | float | None]


class ShiftOut(BaseModel):
    site_id: str
    site_name: str | None = None  # what the page shows (the id is for machines)
    day: date
    shift: str
    label: str
    starts_at: datetime
    ends_at: datetime
    residents: dict[str, int]
    required: int
    on_duty: int
    shortfall: int
    compliant: bool


def _district(conn: Any, user: Principal, district: str | None) -> str:
    if user.is_admin:
        if not district:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, detail="district is required"
            )
        return district
    own = visits_store.user_district(conn, user.user_id)
    if own is None or (district is not None and district != own):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such district")
    return own


@router.get("/supervision/district", response_model=DistrictOut,
            summary="The district's monthly figures (民政监管; counts only, audited)",
            **allow(UserRole.DISTRICT_SUPERVISOR, UserRole.ADMIN))  # fmt: skip
def district(
    cfg: VisitsConfigDep,
    user: CurrentUser,
    conn: DbConn,
    month: str = Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="local month, YYYY-MM"),
    district: str | None = Query(default=None, max_length=64),
) -> DistrictOut:
    district_id = _district(conn, user, district)
    with domain_errors():
        report = district_report(conn, cfg, district_id, month,
                                 datetime.now(UTC))  # fmt: skip
    audit.append(conn, user.user_id, "supervision.read", f"district:{district_id}",
                 {"what": "district_month", "month": month})  # fmt: skip
    return DistrictOut(district_id=report.district_id, month=report.month, sites=report.sites,
                       totals=report.totals)  # fmt: skip


@router.get("/supervision/staffing", response_model=list[ShiftOut],
            summary="Staffing-ratio check per nursing home and shift (1:3 / 1:6 / 1:15)",
            **allow(UserRole.DISTRICT_SUPERVISOR, UserRole.SUPERVISOR, UserRole.ADMIN))  # fmt: skip
def staffing(  # noqa: PLR0917 (FastAPI parameters)
    cfg: VisitsConfigDep,
    user: CurrentUser,
    conn: DbConn,
    days: int = Query(default=7, ge=1, le=31),
    start: date | None = None,
    site: str | None = Query(default=None, max_length=64),
    district: str | None = Query(default=None, max_length=64),
) -> list[ShiftOut]:
    if user.role is UserRole.SUPERVISOR:
        sites: list[str] | None = [user.site_id or ""]
    elif user.role is UserRole.DISTRICT_SUPERVISOR:
        sites = visits_store.district_site_ids(conn, _district(conn, user, district))
    elif district is not None:
        sites = visits_store.district_site_ids(conn, district)
    else:
        sites = None
    if site is not None:
        if sites is not None and site not in sites:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such site")
        sites = [site]
    today = local_date(datetime.now(UTC), CHINA_OFFSET_S)
    first = start or today
    if abs((first - today).days) > 366:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail="start must be within a year of today")  # fmt: skip
    checks = staffing_table(conn, cfg, sites, start_day=first, days=days)
    audit.append(conn, user.user_id, "supervision.read", "staffing",
                 {"what": "staffing", "sites": sites, "start": first.isoformat(),
                  "days": days})  # fmt: skip
    names = supervision_store.site_names(conn, sorted({c.site_id for c in checks}))
    return [
        ShiftOut.model_validate(c, from_attributes=True).model_copy(
            update={"site_name": names[c.site_id][0] if c.site_id in names else None}
        )
        for c in checks
    ]


def _page(name: str) -> FileResponse:
    media_type = PAGE_FILES.get(name)
    path = STATIC_DIR / name
    if media_type is None or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such file")
    return FileResponse(path, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/worker", summary="Community worker's phone page (static; data from the API)",
            include_in_schema=False, response_class=FileResponse, **PUBLIC)  # fmt: skip
def worker_page() -> FileResponse:
    return _page("worker.html")


@router.get("/district", summary="District supervisor's page (static; data from the API)",
            include_in_schema=False, response_class=FileResponse, **PUBLIC)  # fmt: skip
def district_page() -> FileResponse:
    return _page("district.html")


@router.get("/visits/static/{name}", summary="Files of the worker and district pages",
            include_in_schema=False, response_class=FileResponse, **PUBLIC)  # fmt: skip
def page_file(name: str) -> FileResponse:
    return _page(name)


class BedMonthOut(BaseModel):
    """One bed's month: codes (no names), level, categories and counts."""

    bed_code: str
    elder_code: str
    level: str | None
    categories: str
    phone_visits: int
    home_visits: int
    door_knocks: int
    alarms: int
    answered_in_target: int
    services: int


@router.get("/supervision/beds", response_model=list[BedMonthOut],
            summary="Monthly per-bed supervision report of a site (JSON or CSV)",
            **allow(UserRole.SUPERVISOR, UserRole.ADMIN))  # fmt: skip
def beds_month(
    user: CurrentUser,
    conn: DbConn,
    month: str = Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="local month, YYYY-MM"),
    site: str | None = Query(default=None, max_length=64),
    format: Literal["json", "csv"] = "json",
) -> Any:
    site_id = scope_site(user, site)
    if site_id is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="site is required")
    info = supervision_store.site_info(conn, site_id)
    if info is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such site")
    with domain_errors():
        start, end = month_bounds(month, info[1])
    found = supervision_store.bed_month(conn, site_id, start, end, ANSWER_TARGET_S)
    rows = [BedMonthOut.model_validate(r) for r in found]
    audit.append(conn, user.user_id, "supervision.read", f"site:{site_id}",
                 {"what": "bed_month", "month": month, "format": format})  # fmt: skip
    if format == "csv":
        return Response(bed_csv(rows), media_type="text/csv; charset=utf-8")
    return rows


_CSV_HEADER = ["床位编码 bed_code", "老人编码 elder_code", "评估等级 level", "风险类别 categories",
               "电话探访 phone_visits", "上门探访 home_visits", "敲门任务 door_knocks",
               "告警 alarms", "60秒内响应 answered_in_target", "服务次数 services"]  # fmt: skip


def bed_csv(rows: list[BedMonthOut]) -> str:
    """The per-bed report as CSV (UTF-8 with BOM so spreadsheet programs read the Chinese;
    cells that start like a formula are quoted with a leading apostrophe)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_CSV_HEADER)
    for r in rows:
        cells = [r.bed_code, r.elder_code, r.level or "", r.categories, r.phone_visits,
                 r.home_visits, r.door_knocks, r.alarms, r.answered_in_target,
                 r.services]  # fmt: skip
        writer.writerow([_safe(c) for c in cells])
    return "\ufeff" + out.getvalue()


def _safe(cell: object) -> object:
    if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + cell
    return cell


_PDF: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
          "description": "the report (PDF)"},
}  # fmt: skip


def _report_scope(conn: Any, user: Principal, site: str | None, district: str | None) -> str:
    """``site:<id>`` or ``district:<id>`` the caller may read (404 outside their district,
    403 for another site of a site supervisor)."""
    if user.role is UserRole.SUPERVISOR:
        if district is not None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="not allowed for districts")
        return f"site:{scope_site(user, site)}"
    if user.role is UserRole.DISTRICT_SUPERVISOR:
        own = _district(conn, user, district)
        if site is None:
            return f"district:{own}"
        if site not in visits_store.district_site_ids(conn, own):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such site")
        return f"site:{site}"
    if site is not None:
        return f"site:{site}"
    if district is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail="site or district is required")  # fmt: skip
    return f"district:{district}"


@router.get("/supervision/report.pdf", response_class=Response, responses=_PDF,
            summary="Monthly per-bed supervision report of a site or district (Chinese PDF; "
                    "audited)",
            **allow(UserRole.DISTRICT_SUPERVISOR, UserRole.SUPERVISOR, UserRole.ADMIN))  # fmt: skip
def bed_report_pdf(  # noqa: PLR0917 (FastAPI parameters)
    cfg: VisitsConfigDep,
    user: CurrentUser,
    conn: DbConn,
    month: str = Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="local month, YYYY-MM"),
    site: str | None = Query(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$"),
    district: str | None = Query(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$"),
) -> Response:
    scope = _report_scope(conn, user, site, district)
    kind, _, ident = scope.partition(":")
    sites = [ident] if kind == "site" else visits_store.district_site_ids(conn, ident)
    if kind == "site" and supervision_store.site_info(conn, ident) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such site")
    with domain_errors():
        targets = {s: load_local_targets(s) for s in sites}  # each site's contract target
        report = bed_report.collect(conn, cfg, sites, month=month, now=datetime.now(UTC),
                                    scope=scope, targets=targets)  # fmt: skip
    body = render_pdf(report)
    data = {"what": "bed_report_pdf", "month": month, "beds": report.totals.beds}
    audit.append(conn, user.user_id, "supervision.read", scope, data)
    name = f"bed-report-{kind}-{ident}-{month}.pdf"
    return Response(body, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip
