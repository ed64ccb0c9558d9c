"""Family routes: "is my relative safe?" for the residents linked to the signed-in user.

A family member sees only residents linked to them (``family_links``); any other resident
id answers 404, exactly like one that does not exist, so existence never leaks. Incidents
are shown only with the resident's ``consent_family_incidents`` and vitals only with
``consent_family_health``; each vitals read is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, status

from gateway.api.deps import CurrentUser, DbConn, UserRole, allow
from gateway.api.schemas import ApiModel, IncidentSummary, VitalsOut
from gateway.facts import OPEN_STATES
from gateway.storage import family_reads, incident_reads
from gateway.workflow.service import IncidentService


class LinkedResident(ApiModel):
    """A relative the family user is linked to."""

    resident_id: str
    display_name: str


class FamilyIncident(IncidentSummary):
    """A care incident as the family sees it: who handles it, not the staff's details."""

    acknowledged_at: datetime | None
    on_scene_at: datetime | None
    resolved_at: datetime | None
    outcome: str | None
    handled_by: str | None
    handled_by_role: str | None = None
    responder: str | None


class RelativeStatus(ApiModel):
    """Is my relative safe? Incidents and vitals only as far as the resident consented
    (null when not shared)."""

    resident_id: str
    display_name: str
    status: str
    safe: bool | None
    open_incident: FamilyIncident | None
    recent_incidents: list[FamilyIncident] | None
    vitals: VitalsOut | None
    vitals_shared: bool
    incidents_shared: bool


router = APIRouter(tags=["family"])
FAMILY_ONLY = allow(UserRole.FAMILY)


@router.get("/family/residents", summary="My linked relatives",
            response_model=list[LinkedResident], **FAMILY_ONLY)  # fmt: skip
def my_residents(user: CurrentUser, conn: DbConn) -> list[dict[str, Any]]:
    rows = family_reads.linked_residents(conn, user.user_id)
    return [{"resident_id": r["resident_id"], "display_name": r["display_name"]}
            for r in rows]  # fmt: skip


@router.get("/family/residents/{resident_id}", summary="Is my relative safe?",
            response_model=RelativeStatus, **FAMILY_ONLY)  # fmt: skip
def my_resident(resident_id: str, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    rows = family_reads.linked_residents(conn, user.user_id, resident_id)
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such resident")
    row = rows[0]
    out: dict[str, Any] = {
        "resident_id": row["resident_id"],
        "display_name": row["display_name"],
        "status": row["status"],
    }
    if row["consent_family_incidents"]:
        history = family_reads.care_incidents(conn, resident_id)
        open_ = [i for i in history if i["state"] in OPEN_STATES]
        out["safe"] = not open_
        out["open_incident"] = open_[0] if open_ else None
        out["recent_incidents"] = history
    else:
        out["safe"] = None  # not shared with the family
        out["open_incident"] = None
        out["recent_incidents"] = None
    if row["consent_family_health"]:
        IncidentService(conn).record_read(user.user_id, resident_id, "family_vitals")
        out["vitals"] = incident_reads.load_last_vitals(conn, resident_id)
    else:
        out["vitals"] = None
    out["vitals_shared"] = bool(row["consent_family_health"])
    out["incidents_shared"] = bool(row["consent_family_incidents"])
    return out
