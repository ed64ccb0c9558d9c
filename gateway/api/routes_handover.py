"""``GET /console/handover``: the shift handover summary (issue 11 §5).

What the next shift must know: the incidents still open (care and technical), the residents
flagged during the shift (care incidents raised in the last ``hours``, still-open ones first)
and the devices to fix (open technical incidents), with the shift's counts. Residents' names
are a read of personal data, audited once per user, resident and shift like the console rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from gateway import audit
from gateway.api.deps import STAFF, CurrentUser, DbConn, HostDep, allow, scope_site
from gateway.storage import console_reads

router = APIRouter(tags=["console"])


class HandoverIncident(BaseModel):
    id: int
    type: str
    priority: int
    technical: bool
    state: str
    raised_at: datetime
    resident_name: str | None
    bed_code: str | None
    location_label: str | None
    device_kind: str | None
    acknowledged_by_name: str | None
    acknowledged_by_role: str | None


class FlaggedResident(BaseModel):
    resident_id: str
    resident_name: str | None
    bed_code: str | None
    location_label: str | None
    types: list[str]
    incidents: int
    still_open: int
    last_raised_at: datetime


class ShiftCounts(BaseModel):
    raised: int = 0
    resolved: int = 0
    false_alarms: int = 0
    cancelled: int = 0


class Handover(BaseModel):
    site_id: str | None
    since: datetime
    until: datetime
    counts: ShiftCounts
    open_care: list[HandoverIncident]
    devices_to_fix: list[HandoverIncident]
    flagged_residents: list[FlaggedResident]


@router.get("/console/handover", response_model=Handover,
            summary="Shift handover: open incidents, residents flagged, devices to fix",
            **allow(*STAFF))  # fmt: skip
def handover(
    user: CurrentUser,
    conn: DbConn,
    host: HostDep,
    site: str | None = None,
    hours: Annotated[float, Query(gt=0, le=24)] = 8.0,
) -> Handover:
    site_id = scope_site(user, site)
    until = datetime.now(UTC)
    since = until - timedelta(hours=hours)
    rows = console_reads.incident_rows(conn, site_id)
    flagged = console_reads.flagged_residents(conn, site_id, since)
    counts = console_reads.shift_counts(conn, site_id, since)
    ledger = host.read_ledger
    named = {inc.resident_id for inc, extra in rows if inc.resident_id and extra["resident_name"]}
    named |= {f["resident_id"] for f in flagged if f["resident_name"]}
    due = sorted(r for r in named if ledger.due(user.user_id, f"resident-name:{r}"))
    if due:
        with conn.transaction():
            audit.append(conn, user.user_id, "resident.name_read", f"site:{site_id or '*'}",
                         {"residents": due, "view": "handover"})  # fmt: skip
        for rid in due:
            ledger.recorded(user.user_id, f"resident-name:{rid}")
    items = [
        HandoverIncident(
            id=inc.id,
            type=inc.type,
            priority=inc.priority,
            technical=inc.technical,
            state=inc.state,
            raised_at=inc.raised_at,
            resident_name=extra["resident_name"],
            bed_code=extra["bed_code"],
            location_label=extra["location_label"] or extra["device_location_label"],
            device_kind=extra["device_kind"],
            acknowledged_by_name=extra["acknowledged_by_name"],
            acknowledged_by_role=extra["acknowledged_by_role"],
        )
        for inc, extra in rows
    ]
    return Handover(
        site_id=site_id,
        since=since,
        until=until,
        counts=ShiftCounts(**counts),
        open_care=[i for i in items if not i.technical],
        devices_to_fix=[i for i in items if i.technical],
        flagged_residents=[FlaggedResident.model_validate(f) for f in flagged],
    )
