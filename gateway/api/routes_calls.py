"""Call-centre routes (issue 11 §5): click-to-call from an incident, call outcomes, notes.

- ``GET /incidents/{id}/callees``: the resident, family contacts and the community worker
  with masked numbers (full numbers only for ``telephony.reveal_roles``);
- ``POST /incidents/{id}/calls``: place a call through the configured adapter (a provider
  outage is a recorded ``failed`` attempt, answered 201 like any attempt);
- ``GET /incidents/{id}/calls``: the attempts and their outcomes;
- ``POST /incidents/{id}/calls/{call_id}/outcome``: what came of a call, with a note;
- ``POST /incidents/{id}/notes``: a free-text note on the timeline.

Staff only (duty staff, supervisors of the incident's site; admins): family members,
community workers, installers and district supervisors get 403; another site's incident
is 404. Every write is a timeline event and an audit entry (gateway.telephony.service).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, Field, create_model

from gateway.api.deps import (
    STAFF,
    CurrentUser,
    DbConn,
    HostDep,
    Principal,
    SettingsDep,
    TelephonyDep,
    allow,
)
from gateway.api.schemas import ApiModel, fields_of
from gateway.storage.incident_calls import CallRow
from gateway.telephony import service
from gateway.telephony.metered import count_outcome
from gateway.telephony.phones import CalleeKind, CallOutcome

router = APIRouter(tags=["calls"])


# The service's Callee as the API answers it (one definition of its fields).
CalleeOut = create_model(
    "CalleeOut",
    __base__=ApiModel,
    __doc__="Someone to call about the incident: ``phone`` is null unless the caller's role "
    "may see numbers; ``masked_phone`` (138****1234) always; ``callable``: has a number.",
    **fields_of(service.Callee),
)


class CallOut(ApiModel):
    """A call attempt: ``status`` placed or failed (``detail``: a short code such as
    ``aliyun OK``, ``http_500``, ``network``); the outcome once recorded."""

    id: int
    incident_id: int
    caller_id: str
    callee_kind: CalleeKind
    callee_ref: str
    channel: Literal["aliyun", "sip"]
    status: Literal["placed", "failed"]
    detail: str | None
    provider_call_id: str | None
    placed_at: datetime
    outcome: CallOutcome | None
    outcome_note: str | None
    outcome_by: str | None
    outcome_at: datetime | None


class PlacedCallOut(ApiModel):
    """The recorded attempt and, for a desk phone (sip adapter), the URI to open."""

    call: CallOut
    dial_uri: str | None


class CallBody(BaseModel):
    """Whom to call: a callee of ``GET /incidents/{id}/callees`` by kind and ref."""

    callee_kind: CalleeKind
    callee_ref: str = Field(min_length=1, max_length=64)


class OutcomeBody(BaseModel):
    """What came of the call, with an optional note."""

    outcome: CallOutcome
    note: str | None = Field(default=None, max_length=2000)


class NoteBody(BaseModel):
    """A free-text note on the incident."""

    text: str = Field(min_length=1, max_length=2000)


class NoteOut(ApiModel):
    """The note's time on the timeline."""

    incident_id: int
    time: datetime


def _caller(user: Principal) -> service.Caller:
    return service.Caller(user.user_id, user.role.value, None if user.is_admin else user.site_id)


def _call_out(row: CallRow) -> CallOut:
    return CallOut.model_validate(row, from_attributes=True)


@router.get("/incidents/{incident_id}/callees",
            summary="Whom staff can phone about the incident (masked numbers)",
            response_model=list[CalleeOut], **allow(*STAFF))  # fmt: skip
def callees(
    incident_id: int, user: CurrentUser, conn: DbConn, settings: SettingsDep
) -> list[service.Callee]:
    reveal = user.role.value in settings.telephony.reveal_roles
    return service.callees(conn, _caller(user), incident_id, reveal=reveal)


@router.post("/incidents/{incident_id}/calls", status_code=status.HTTP_201_CREATED,
             summary="Place a call (click-to-call) and record the attempt",
             response_model=PlacedCallOut, **allow(*STAFF))  # fmt: skip
def place_call(
    incident_id: int, body: CallBody, user: CurrentUser, conn: DbConn, adapter: TelephonyDep
) -> PlacedCallOut:
    placed = service.place_call(
        conn,
        _caller(user),
        incident_id,
        kind=body.callee_kind,
        ref=body.callee_ref,
        adapter=adapter,
    )
    return PlacedCallOut(call=_call_out(placed.call), dial_uri=placed.placement.dial_uri)


@router.get("/incidents/{incident_id}/calls", summary="The incident's calls and outcomes",
            response_model=list[CallOut], **allow(*STAFF))  # fmt: skip
def list_calls(incident_id: int, user: CurrentUser, conn: DbConn) -> list[CallOut]:
    return [_call_out(r) for r in service.calls(conn, _caller(user), incident_id)]


@router.post("/incidents/{incident_id}/calls/{call_id}/outcome",
             summary="Record what came of a call, with a note",
             response_model=CallOut, **allow(*STAFF))  # fmt: skip
def record_outcome(
    incident_id: int,
    call_id: int,
    body: OutcomeBody,
    *,
    user: CurrentUser,
    conn: DbConn,
    host: HostDep,
) -> CallOut:
    row = service.record_outcome(
        conn, _caller(user), incident_id, call_id, outcome=body.outcome, note=body.note
    )
    count_outcome(host.metrics, row.channel, body.outcome)
    return _call_out(row)


@router.post("/incidents/{incident_id}/notes", status_code=status.HTTP_201_CREATED,
             summary="Add a note to the incident's timeline",
             response_model=NoteOut, **allow(*STAFF))  # fmt: skip
def add_note(incident_id: int, body: NoteBody, user: CurrentUser, conn: DbConn) -> NoteOut:
    at = service.add_note(conn, _caller(user), incident_id, body.text)
    return NoteOut(incident_id=incident_id, time=at)
