"""Staff routes: the incident list, one incident with its timeline, the lifecycle actions and
the resident context card.

Duty staff and supervisors see their own site only (another site's incident or resident is
404, an explicit ``?site=`` of another site is 403); admins see every site. Reading a
resident's card is audited (``IncidentService.record_read``), and so is reading one
incident's details (``GET /incidents/{id}``: ``incident.read``).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from gateway import acceptance, audit
from gateway.api.deps import (
    STAFF,
    CurrentUser,
    DbConn,
    HostDep,
    Principal,
    SettingsDep,
    UserRole,
    allow,
    may_see_site,
    scope_site,
)
from gateway.api.schemas import (
    ApiModel,
    IncidentDetail,
    IncidentListItem,
    IncidentOut,
    IncidentSummary,
    VitalsOut,
)
from gateway.escalation.timeline import escalation_status, escalation_timeline
from gateway.facts import OPEN_STATES
from gateway.storage import incident_reads
from gateway.storage.acceptance import ActiveTest
from gateway.telephony.phones import mask_phone
from gateway.workflow.service import Actor, Incident, IncidentNotFoundError, IncidentService
from gateway.workflow.transitions import (
    RULES,
    Action,
    IllegalTransitionError,
    Outcome,
    Role,
    WorkflowError,
)

StateFilter = Literal[
    "open", "all", "raised", "acknowledged", "dispatched", "on_scene", "resolved", "closed",
    "cancelled",
]  # fmt: skip


def incident_json(incident: Incident) -> dict[str, Any]:
    """An incident as the API returns it (SLA durations in seconds)."""
    out = dataclasses.asdict(incident)
    for name in ("time_to_acknowledge", "time_to_on_scene", "time_to_resolve"):
        value = getattr(incident, name)
        out[f"{name}_s"] = None if value is None else value.total_seconds()
    return out


class TestModeItem(ActiveTest):
    """A device under an acceptance test now, for the console's banner (the acceptance
    repository's row, with the server's ``now`` and the seconds left for the countdown)."""

    model_config = ApiModel.model_config
    remaining_s: float


class Contact(ApiModel):
    """A contact of the resident, by priority."""

    contact_id: str
    kind: str
    display_name: str | None
    relation: str | None
    phone: str | None  # only for telephony.reveal_roles (gateway.telephony)
    masked_phone: str | None = None  # 138****1234, for everyone
    email: str | None
    priority: int


class ResidentCard(ApiModel):
    """The resident context card: registry row, bed and room (nursing home) or address
    (home), contacts, latest vitals and recent incidents."""

    resident_id: str
    elder_code: str
    display_name: str
    site_id: str
    care_level: int
    status: str
    lives_alone: bool
    high_risk: bool
    consent_family_health: bool
    consent_family_incidents: bool
    bed_code: str | None
    location_kind: str | None
    room: str | None
    address: str | None
    contacts: list[Contact]
    last_vitals: VitalsOut | None
    recent_incidents: list[IncidentSummary]


class DispatchBody(BaseModel):
    """Who is sent: a staff or service id (no names)."""

    responder: str = Field(min_length=1, max_length=64)


class ResolveBody(BaseModel):
    """How the incident ended."""

    outcome: Outcome
    notes: str | None = Field(default=None, max_length=2000)


class CancelBody(BaseModel):
    """Why staff cancel an incident raised in error."""

    reason: str = Field(min_length=1, max_length=2000)


def _states(state: StateFilter) -> list[str] | None:
    if state == "all":
        return None
    if state == "open":
        return list(OPEN_STATES)
    return [state]


router = APIRouter(tags=["incidents"])


@router.get("/incidents", summary="Incidents, most urgent and oldest first, with bed and room",
            response_model=list[IncidentListItem], **allow(*STAFF))  # fmt: skip
def list_incidents(
    user: CurrentUser,
    conn: DbConn,
    site: str | None = None,
    state: StateFilter = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[dict[str, Any]]:
    site_id = scope_site(user, site)
    rows = incident_reads.incident_rows(conn, site_id, _states(state), limit)
    out = []
    for row in rows:
        where = {name: row.pop(name) for name in incident_reads.LOCATION_FIELDS}
        out.append(incident_json(Incident(**row)) | where)
    return out


def _visible(conn: DbConn, user: Principal, incident_id: int) -> Incident:
    try:
        incident = IncidentService(conn).get(incident_id)
    except IncidentNotFoundError:
        incident = None
    if incident is None or not may_see_site(user, incident.site_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such incident")
    return incident


@router.get("/incidents/{incident_id}",
            summary="One incident, its timeline and its escalation (steps, pages, messages)",
            response_model=IncidentDetail, **allow(*STAFF))  # fmt: skip
def get_incident(
    incident_id: int, user: CurrentUser, conn: DbConn, host: HostDep
) -> dict[str, Any]:
    incident = _visible(conn, user, incident_id)
    ledger: audit.ReadLedger = host.read_ledger
    target = f"incident:{incident_id}"
    audited = ledger.due(user.user_id, target)
    out = incident_json(incident)
    with conn.transaction():
        out["timeline"] = [
            dataclasses.asdict(e) for e in IncidentService(conn).timeline(incident_id)
        ]
        # Who was paged or notified, by role and relation (gateway.escalation.timeline).
        status = escalation_status(conn, incident_id)
        out["escalation_status"] = None if status is None else dataclasses.asdict(status)
        out["escalation"] = [dataclasses.asdict(e) for e in escalation_timeline(conn, incident_id)]
        # Incident details (reason, detector details, timeline) are a read of care data:
        # audited once per user and incident within audit.read_window_s (a shift).
        if audited:
            audit.append(conn, user.user_id, "incident.read", target,
                         {"resident_id": incident.resident_id})  # fmt: skip
    if audited:
        ledger.recorded(user.user_id, target)
    return out


def _act(
    conn: DbConn, user: Principal, incident_id: int, action: Action, **kw: Any
) -> dict[str, Any]:
    _visible(conn, user, incident_id)
    service = IncidentService(conn)
    actor = Actor(user.user_id, Role(user.role.value))
    try:
        match action:
            case Action.ACKNOWLEDGE:
                incident = service.acknowledge(incident_id, actor)
            case Action.DISPATCH:
                incident = service.dispatch(incident_id, actor, kw["responder"])
            case Action.ARRIVE:
                incident = service.on_scene(incident_id, actor)
            case Action.RESOLVE:
                incident = service.resolve(incident_id, actor, kw["outcome"], kw["notes"])
            case Action.CLOSE:
                incident = service.close(incident_id, actor)
            case Action.CANCEL_BY_STAFF:
                incident = service.cancel_by_staff(incident_id, actor, kw["reason"])
            case _:  # pragma: no cover - routes below use only the actions above
                raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="unknown action")
    except IllegalTransitionError as exc:
        if exc.role not in RULES[action].roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(exc)) from None
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except IncidentNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such incident") from None
    except WorkflowError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    return incident_json(incident)


@router.post("/incidents/{incident_id}/acknowledge", summary="Take the incident",
             response_model=IncidentOut, **allow(*STAFF))  # fmt: skip
def acknowledge(incident_id: int, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    return _act(conn, user, incident_id, Action.ACKNOWLEDGE)


@router.post("/incidents/{incident_id}/dispatch", summary="Send a responder",
             response_model=IncidentOut, **allow(*STAFF))  # fmt: skip
def dispatch(
    incident_id: int, body: DispatchBody, user: CurrentUser, conn: DbConn
) -> dict[str, Any]:
    return _act(conn, user, incident_id, Action.DISPATCH, responder=body.responder)


@router.post("/incidents/{incident_id}/on-scene", summary="The responder has arrived",
             response_model=IncidentOut, **allow(*STAFF))  # fmt: skip
def on_scene(incident_id: int, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    return _act(conn, user, incident_id, Action.ARRIVE)


@router.post("/incidents/{incident_id}/resolve", summary="Resolve with an outcome",
             response_model=IncidentOut, **allow(*STAFF))  # fmt: skip
def resolve(incident_id: int, body: ResolveBody, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    return _act(conn, user, incident_id, Action.RESOLVE, outcome=body.outcome, notes=body.notes)


@router.post("/incidents/{incident_id}/close", summary="Close after review (supervisor)",
             response_model=IncidentOut, **allow(UserRole.SUPERVISOR, UserRole.ADMIN))  # fmt: skip
def close(incident_id: int, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    return _act(conn, user, incident_id, Action.CLOSE)


@router.post("/incidents/{incident_id}/cancel", summary="Cancel one raised in error",
             response_model=IncidentOut, **allow(UserRole.SUPERVISOR, UserRole.ADMIN))  # fmt: skip
def cancel(incident_id: int, body: CancelBody, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    return _act(conn, user, incident_id, Action.CANCEL_BY_STAFF, reason=body.reason)


@router.get("/test-mode", summary="Devices and beds under an acceptance test now (banner)",
            response_model=list[TestModeItem], **allow(*STAFF, UserRole.INSTALLER))  # fmt: skip
def test_mode(user: CurrentUser, conn: DbConn, site: str | None = None) -> list[dict[str, Any]]:
    return acceptance.active_tests(conn, scope_site(user, site))


@router.get("/residents/{resident_id}", summary="Resident context card (audited)",
            response_model=ResidentCard, **allow(*STAFF))  # fmt: skip
def resident_card(
    resident_id: str, user: CurrentUser, conn: DbConn, settings: SettingsDep
) -> dict[str, Any]:
    card = incident_reads.load_resident(conn, resident_id)
    if card is None or not may_see_site(user, card["site_id"]):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such resident")
    IncidentService(conn).record_read(user.user_id, resident_id, "context_card")
    # Full numbers only for the roles allowed to see them (telephony.reveal_roles); the
    # others call through the console's click-to-call (docs/telephony.md).
    reveal = user.role.value in settings.telephony.reveal_roles
    card["contacts"] = [
        c | {"masked_phone": mask_phone(c["phone"]), "phone": c["phone"] if reveal else None}
        for c in incident_reads.load_contacts(conn, resident_id)
    ]
    card["last_vitals"] = incident_reads.load_last_vitals(conn, resident_id)
    card["recent_incidents"] = incident_reads.load_recent_incidents(conn, resident_id)
    return card
