"""Reports: the monthly telecare SLA report of a site (``gateway.reports.sla``).

Supervisors see their own site; admins name the site. ``format`` selects JSON (default),
CSV (one row per incident) or a PNG chart for the monthly report (``lang``: zh-CN by
default, or en).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel

from gateway.api.deps import CurrentUser, DbConn, UserRole, allow, scope_site
from gateway.reports.sla import SiteNotFoundError, sla_report


class SlaDevice(BaseModel):
    device_id: str
    location_id: str | None
    in_service_s: float
    offline_s: float
    online_rate: float | None


class SlaReportOut(BaseModel):
    """The monthly SLA report (``gateway.reports.sla.SlaReport.to_dict``): KPIs, the month's
    incidents, device availability and the daily share answered within 60 s."""

    site_id: str
    month: str
    utc_offset_s: int
    period_start: str
    period_end: str
    as_of: str
    kpis: dict[str, Any]
    incidents: list[dict[str, Any]]
    devices: list[SlaDevice]
    daily_within_60s: list[dict[str, Any]]


_FILES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}},
                      "image/png": {"schema": {"type": "string", "format": "binary"}}}},
}  # fmt: skip


router = APIRouter(tags=["reports"])


@router.get("/reports/sla", summary="Monthly SLA report of a site",
            response_model=SlaReportOut, responses=_FILES,
            **allow(UserRole.SUPERVISOR, UserRole.ADMIN))  # fmt: skip
def sla(
    user: CurrentUser,
    conn: DbConn,
    *,
    month: str = Query(pattern=r"^\d{4}-\d{2}$", description="local month, YYYY-MM"),
    site: str | None = None,
    format: Literal["json", "csv", "png"] = "json",
    lang: Literal["zh-CN", "en"] = "zh-CN",
) -> Any:
    site_id = scope_site(user, site)
    if site_id is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="site is required")
    try:
        report = sla_report(conn, site_id, month)
    except SiteNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such site") from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    if format == "csv":
        return Response(report.to_csv(), media_type="text/csv")
    if format == "png":
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "sla.png"
            report.to_png(path, lang)
            return Response(path.read_bytes(), media_type="image/png")
    return report.to_dict()
