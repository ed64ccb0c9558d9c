"""Calls from the community worker's page (/worker, 探访关爱): the worker phones the elders
assigned to them through the same telephony adapter as the duty console.

- ``GET /visits/residents/{id}/callees``: the elder (own phone, else the home line) and the
  family contacts, numbers masked (full only for ``telephony.reveal_roles``);
- ``POST /visits/residents/{id}/calls``: place a call (optionally from a door-knock task:
  ``task_id``; a task raised from an incident puts the call on the incident's timeline);
- ``GET /visits/residents/{id}/calls``: the worker's latest calls about the elder;
- ``POST /visits/calls/{call_id}/outcome``: what came of the call, with a note.

Community workers only; an elder not assigned to the worker (or a task or call not theirs)
is 403. Rules and audit in :mod:`gateway.telephony.worker`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, Field

from gateway.api.deps import CurrentUser, DbConn, HostDep, Principal, TelephonyDep, UserRole, allow
from gateway.api.routes_calls import CalleeOut, OutcomeBody
from gateway.api.schemas import ApiModel
from gateway.storage.worker_calls import WorkerCallRow
from gateway.telephony import service, worker
from gateway.telephony.metered import count_outcome
from gateway.telephony.phones import CalleeKind, CallOutcome

router = APIRouter(tags=["calls"])

ResidentId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
WORKER = (UserRole.COMMUNITY_WORKER,)


class WorkerCallOut(ApiModel):
    """A worker's call about an elder: ``status`` placed or failed (``detail``: a short
    code), the door-knock task and incident it was made for, the outcome once recorded
    (``outcome_by`` ``system``: the adapter's invalid_number, which the worker may correct)."""

    id: int
    resident_id: str
    task_id: int | None
    incident_id: int | None
    callee_kind: CalleeKind
    callee_ref: str
    channel: Literal["aliyun", "sip"]
    status: Literal["placed", "failed"]
    detail: str | None
    placed_at: datetime
    outcome: CallOutcome | None
    outcome_note: str | None
    outcome_by: str | None
    outcome_at: datetime | None


class WorkerPlacedOut(ApiModel):
    """The recorded attempt and, for a desk phone (sip adapter), the URI to open."""

    call: WorkerCallOut
    dial_uri: str | None


class WorkerCallBody(BaseModel):
    """Whom to call (a callee of ``GET …/callees``), and the door-knock task if any."""

    callee_kind: Literal["resident", "family"]
    callee_ref: str = Field(min_length=1, max_length=64)
    task_id: int | None = Field(default=None, ge=1, le=2**62)


def _caller(user: Principal) -> service.Caller:
    return service.Caller(user.user_id, user.role.value, user.site_id)


def _out(row: WorkerCallRow) -> WorkerCallOut:
    return WorkerCallOut.model_validate(row, from_attributes=True)


@router.get("/visits/residents/{resident_id}/callees",
            summary="Whom the worker may phone about their elder (masked numbers)",
            response_model=list[CalleeOut], **allow(*WORKER))  # fmt: skip
def callees(
    resident_id: ResidentId, user: CurrentUser, conn: DbConn, host: HostDep
) -> list[service.Callee]:
    reveal = user.role.value in host.settings.telephony.reveal_roles
    return worker.callees(conn, _caller(user), resident_id, reveal=reveal)


@router.post("/visits/residents/{resident_id}/calls", status_code=status.HTTP_201_CREATED,
             summary="Call about the worker's elder and record the attempt",
             response_model=WorkerPlacedOut, **allow(*WORKER))  # fmt: skip
def place_call(
    resident_id: ResidentId,
    body: WorkerCallBody,
    user: CurrentUser,
    conn: DbConn,
    adapter: TelephonyDep,
) -> WorkerPlacedOut:
    placed = worker.place_call(
        conn, _caller(user), resident_id, kind=CalleeKind(body.callee_kind),
        ref=body.callee_ref, task_id=body.task_id, adapter=adapter,
    )  # fmt: skip
    return WorkerPlacedOut(call=_out(placed.call), dial_uri=placed.placement.dial_uri)


@router.get("/visits/residents/{resident_id}/calls",
            summary="The worker's latest calls about their elder",
            response_model=list[WorkerCallOut], **allow(*WORKER))  # fmt: skip
def list_calls(resident_id: ResidentId, user: CurrentUser, conn: DbConn) -> list[WorkerCallOut]:
    return [_out(r) for r in worker.calls(conn, _caller(user), resident_id)]


@router.post("/visits/calls/{call_id}/outcome",
             summary="Record what came of the worker's call, with a note",
             response_model=WorkerCallOut, **allow(*WORKER))  # fmt: skip
def record_outcome(
    call_id: Annotated[int, Path(ge=1, le=2**62)],
    body: OutcomeBody,
    user: CurrentUser,
    conn: DbConn,
    host: HostDep,
) -> WorkerCallOut:
    row = worker.record_outcome(conn, _caller(user), call_id, outcome=body.outcome,
                                note=body.note)  # fmt: skip
    count_outcome(host.metrics, row.channel, body.outcome)
    return _out(row)
