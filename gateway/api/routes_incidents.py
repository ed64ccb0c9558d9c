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

from fastapi import APIRouter, HTTPException, Query, Request, status
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from gateway import acceptance, audit
from gateway.api.deps import (
    STAFF,
    CurrentUser,
    DbConn,
    Principal,
    UserRole,
    allow,
    may_see_site,
    request_host,
    scope_site,
)
from gateway.escalation.timeline import escalation_status, escalation_timeline
from gateway.workflow.service import Actor, Incident, IncidentNotFoundError, IncidentService
from gateway.workflow.transitions import (
    RULES,
    Action,
    IllegalTransitionError,
    Outcome,
    Role,
    WorkflowError,
)

OPEN_STATES = ("raised", "acknowledged", "dispatched", "on_scene")
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


_INCIDENT_COLUMNS = ", ".join(f"i.{f.name}" for f in dataclasses.fields(Incident))
# Where to go, without opening the (audited) resident card: the bed code and the room label
# (nursing home) or household label (home care) of the resident's bed; for a technical
# incident without a resident, those of the device (subject) or the location (subject of
# ``hub_offline``). Names and home addresses stay in the card.
LOCATION_FIELDS = ("bed_code", "location_kind", "location_label")
_LIST_SQL = f"""
SELECT {_INCIDENT_COLUMNS},
       b.bed_code, l.kind AS location_kind, l.label AS location_label
FROM incidents i
LEFT JOIN residents r ON r.resident_id = i.resident_id
LEFT JOIN devices d ON i.resident_id IS NULL AND d.device_id = i.subject
LEFT JOIN beds b ON b.bed_id = coalesce(r.bed_id, d.bed_id) AND b.site_id = i.site_id
LEFT JOIN locations l
       ON l.location_id = coalesce(
              b.location_id, d.location_id, CASE WHEN i.resident_id IS NULL THEN i.subject END)
      AND l.site_id = i.site_id
WHERE (%(site)s::text IS NULL OR i.site_id = %(site)s)
  AND (%(states)s::text[] IS NULL OR i.state = ANY(%(states)s))
ORDER BY i.priority, i.raised_at
LIMIT %(limit)s
"""  # noqa: S608 (only the dataclass's field names are spliced in)


def _states(state: StateFilter) -> list[str] | None:
    if state == "all":
        return None
    if state == "open":
        return list(OPEN_STATES)
    return [state]


router = APIRouter(tags=["incidents"])


@router.get("/incidents", summary="Incidents, most urgent and oldest first, with bed and room",
            **allow(*STAFF))  # fmt: skip
def list_incidents(
    user: CurrentUser,
    conn: DbConn,
    site: str | None = None,
    state: StateFilter = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[dict[str, Any]]:
    site_id = scope_site(user, site)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _LIST_SQL, {"site": site_id, "states": _states(state), "limit": limit}
        ).fetchall()
    out = []
    for row in rows:
        where = {name: row.pop(name) for name in LOCATION_FIELDS}
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
            **allow(*STAFF))  # fmt: skip
def get_incident(
    incident_id: int, user: CurrentUser, conn: DbConn, request: Request
) -> dict[str, Any]:
    incident = _visible(conn, user, incident_id)
    ledger: audit.ReadLedger = request_host(request).read_ledger
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
             **allow(*STAFF))  # fmt: skip
def acknowledge(incident_id: int, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    return _act(conn, user, incident_id, Action.ACKNOWLEDGE)


@router.post("/incidents/{incident_id}/dispatch", summary="Send a responder",
             **allow(*STAFF))  # fmt: skip
def dispatch(
    incident_id: int, body: DispatchBody, user: CurrentUser, conn: DbConn
) -> dict[str, Any]:
    return _act(conn, user, incident_id, Action.DISPATCH, responder=body.responder)


@router.post("/incidents/{incident_id}/on-scene", summary="The responder has arrived",
             **allow(*STAFF))  # fmt: skip
def on_scene(incident_id: int, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    return _act(conn, user, incident_id, Action.ARRIVE)


@router.post("/incidents/{incident_id}/resolve", summary="Resolve with an outcome",
             **allow(*STAFF))  # fmt: skip
def resolve(incident_id: int, body: ResolveBody, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    return _act(conn, user, incident_id, Action.RESOLVE, outcome=body.outcome, notes=body.notes)


@router.post("/incidents/{incident_id}/close", summary="Close after review (supervisor)",
             **allow(UserRole.SUPERVISOR, UserRole.ADMIN))  # fmt: skip
def close(incident_id: int, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    return _act(conn, user, incident_id, Action.CLOSE)


@router.post("/incidents/{incident_id}/cancel", summary="Cancel one raised in error",
             **allow(UserRole.SUPERVISOR, UserRole.ADMIN))  # fmt: skip
def cancel(incident_id: int, body: CancelBody, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    return _act(conn, user, incident_id, Action.CANCEL_BY_STAFF, reason=body.reason)


@router.get("/test-mode", summary="Devices and beds under an acceptance test now (banner)",
            **allow(*STAFF, UserRole.INSTALLER))  # fmt: skip
def test_mode(user: CurrentUser, conn: DbConn, site: str | None = None) -> list[dict[str, Any]]:
    return acceptance.active_tests(conn, scope_site(user, site))


@router.get("/residents/{resident_id}", summary="Resident context card (audited)",
            **allow(*STAFF))  # fmt: skip
def resident_card(resident_id: str, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    card = load_resident(conn, resident_id)
    if card is None or not may_see_site(user, card["site_id"]):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such resident")
    IncidentService(conn).record_read(user.user_id, resident_id, "context_card")
    card["contacts"] = load_contacts(conn, resident_id)
    card["last_vitals"] = load_last_vitals(conn, resident_id)
    card["recent_incidents"] = load_recent_incidents(conn, resident_id)
    return card


_RESIDENT_SQL = """
SELECT r.resident_id, r.elder_code, r.display_name, r.site_id, r.care_level, r.status,
       r.lives_alone, r.high_risk, r.consent_family_health, r.consent_family_incidents,
       b.bed_code, l.kind AS location_kind, l.label AS room, l.address
FROM residents r
LEFT JOIN beds b ON b.bed_id = r.bed_id
LEFT JOIN locations l ON l.location_id = b.location_id
WHERE r.resident_id = %s
"""

# The latest vitals sample of a device bound to the resident or to their bed (last 24 h).
_VITALS_SQL = """
SELECT rd.time, rd.device_id, rd.heart_rate, rd.breathing_rate, rd.presence
FROM readings rd
WHERE rd.device_id IN (
        SELECT d.device_id FROM devices d JOIN residents r ON r.resident_id = %(rid)s
        WHERE d.active AND (d.resident_id = r.resident_id OR d.bed_id = r.bed_id))
  AND rd.time > now() - interval '24 hours'
  AND (rd.heart_rate IS NOT NULL OR rd.breathing_rate IS NOT NULL OR rd.presence IS NOT NULL)
ORDER BY rd.time DESC
LIMIT 1
"""


def load_resident(conn: DbConn, resident_id: str) -> dict[str, Any] | None:
    """The resident's registry row with bed code and room (nursing home) or address (home)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_RESIDENT_SQL, (resident_id,)).fetchone()
    if row is None:
        return None
    if row["location_kind"] != "home":
        row["address"] = None
    return dict(row)


def load_contacts(conn: DbConn, resident_id: str) -> list[dict[str, Any]]:
    """The resident's contacts, by priority."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT contact_id, kind, display_name, relation, phone, email, priority "
            "FROM contacts WHERE resident_id = %s ORDER BY priority, contact_id",
            (resident_id,),
        ).fetchall()


def load_last_vitals(conn: DbConn, resident_id: str) -> dict[str, Any] | None:
    """The resident's latest vitals sample of the last 24 hours, or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_VITALS_SQL, {"rid": resident_id}).fetchone()


def load_recent_incidents(conn: DbConn, resident_id: str, limit: int = 10) -> list[dict[str, Any]]:
    """The resident's latest incidents, newest first (summary columns)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, type, priority, state, raised_at, acknowledged_by, responder, "
            "resolved_at, outcome FROM incidents WHERE resident_id = %s "
            "ORDER BY raised_at DESC LIMIT %s",
            (resident_id, limit),
        ).fetchall()
