"""``GET /family/residents/{resident_id}/status``: the family view's plain status line.

"今天 07:12 起床，状态正常" / "正在处理：护工 张丽已接单 14:02" / honestly "staff are still
being alerted" while nobody has acknowledged; with the care centre's phone and the site's
clock (the page shows every time in the site's zone). Only for residents linked to the
caller (404 otherwise, like one that does not exist); the incident part only with the
resident's ``consent_family_incidents``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from gateway.api.deps import CurrentUser, DbConn, UserRole, allow
from gateway.storage import family_status

router = APIRouter(tags=["family"])

RISE_WINDOW_START_H = 5  # a first time out of bed before 05:00 (local) is a night visit

StatusKind = Literal["alerting", "handling", "on_scene", "up", "ok", "unknown"]


class FamilyStatus(BaseModel):
    resident_id: str
    kind: StatusKind
    incident_type: str | None = None
    since: datetime | None = None
    handler_name: str | None = None
    handler_role: str | None = None
    rise_at: datetime | None = None
    site_name: str
    utc_offset_s: int
    demo_clock: bool = False  # the offset is the demo's clock (safehome demo), not a real zone
    care_phone: str | None


@router.get("/family/residents/{resident_id}/status", response_model=FamilyStatus,
            summary="My relative's status line, care centre phone and site clock",
            **allow(UserRole.FAMILY))  # fmt: skip
def resident_status(resident_id: str, user: CurrentUser, conn: DbConn) -> FamilyStatus:
    row = family_status.linked(conn, user.user_id, resident_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such resident")
    base = FamilyStatus(
        resident_id=resident_id, kind="unknown", site_name=row["site_name"],
        utc_offset_s=row["utc_offset_s"], demo_clock=bool(row["demo_clock"]),
        care_phone=row["care_phone"],
    )  # fmt: skip
    if row["consent_family_incidents"]:
        inc = family_status.open_care_incident(conn, resident_id)
        if inc is not None:
            base.incident_type = inc["type"]
            if inc["state"] == "raised":
                base.kind, base.since = "alerting", inc["raised_at"]
                return base
            base.handler_name, base.handler_role = inc["handler_name"], inc["handler_role"]
            if inc["state"] == "on_scene":
                base.kind, base.since = "on_scene", inc["on_scene_at"]
            else:
                base.kind, base.since = "handling", inc["acknowledged_at"]
            return base
    offset = timedelta(seconds=row["utc_offset_s"])
    local_now = datetime.now(UTC) + offset
    local_start = local_now.replace(hour=RISE_WINDOW_START_H, minute=0, second=0, microsecond=0)
    if local_now < local_start:
        local_start -= timedelta(days=1)
    rise = family_status.first_rise(conn, row["bed_id"], local_start - offset)
    if rise is not None:
        base.kind, base.rise_at = "up", rise
    elif family_status.last_reading(conn, resident_id, row["bed_id"]) is not None:
        base.kind = "ok"
    return base
