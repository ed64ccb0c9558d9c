"""Calls from the community worker's page (/worker): whom a worker may phone about an elder
assigned to them (the elder's own phone or home line, the elder's family contacts), placing
a call through the same adapter as the duty console, and recording what came of it.

A worker acts on the elders assigned to them only: anyone else's elder, and a door-knock
task that is not theirs, is :class:`ForbiddenError`. A call is an ``incident_calls`` row
about the elder (``resident_id``; ``task_id`` from a door-knock task) and an audit entry
(``visits.call_placed`` / ``visits.call_outcome`` on ``resident:<id>``, ids only). A call
from a door-knock task raised from an incident also carries the incident and goes to its
timeline (``call_placed`` / ``call_outcome`` events, as the console's calls do), in the same
transaction. With Aliyun's two-leg call the worker's own phone rings first: their first
voice/SMS channel (``staff_channels``), never the duty desk line; without one the call is
refused (:class:`InvalidError`). No phone number reaches the rows, timeline, audit or logs.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from gateway import audit
from gateway.errors import ConflictError, ForbiddenError, InvalidError, NotFoundError
from gateway.storage import incident_calls as calls_store
from gateway.storage import incidents
from gateway.storage import visits as visits_store
from gateway.storage import worker_calls as store
from gateway.storage.worker_calls import WorkerCallRow
from gateway.telephony.adapter import CallRequest, Placement, TelephonyAdapter
from gateway.telephony.phones import CalleeKind, CallOutcome
from gateway.telephony.service import Callee, Caller, callee_of

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

__all__ = ["WORKER_CALLEES", "WorkerPlacedCall", "callees", "calls", "place_call",
           "record_outcome"]  # fmt: skip

# Whom a worker phones about their elder: the elder (own phone, else the home line) and the
# family contacts. Not the community-worker contacts (their colleagues).
WORKER_CALLEES = frozenset({CalleeKind.RESIDENT, CalleeKind.FAMILY})


@dataclass(frozen=True, slots=True)
class WorkerPlacedCall:
    """A recorded attempt and what the adapter said (``dial_uri`` for a desk phone)."""

    call: WorkerCallRow
    placement: Placement


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _assigned(conn: Conn, caller: Caller, resident_id: str) -> None:
    """The elder must be assigned to the calling worker (403 otherwise, existing or not)."""
    scope = visits_store.resident_scope(conn, resident_id)
    if scope is None or scope.worker_id != caller.user_id:
        raise ForbiddenError("you may call only the elders assigned to you")


def _rows(conn: Conn, resident_id: str) -> list[calls_store.CalleeRow]:
    return [r for r in calls_store.callees(conn, resident_id) if r.kind in WORKER_CALLEES]


def callees(conn: Conn, caller: Caller, resident_id: str, *, reveal: bool) -> list[Callee]:
    """Whom the worker may phone about their elder: numbers in full only with ``reveal``."""
    _assigned(conn, caller, resident_id)
    return [callee_of(r, reveal=reveal) for r in _rows(conn, resident_id)]


def _who(conn: Conn, caller: Caller) -> dict[str, Any]:
    row = calls_store.staff(conn, caller.user_id)
    return {"caller_role": caller.role, "caller_name": row.display_name if row else None}


def _task(conn: Conn, caller: Caller, resident_id: str, task_id: int) -> store.TaskRow:
    task = store.task(conn, task_id)
    if task is None or task.worker_id != caller.user_id or task.resident_id != resident_id:
        raise ForbiddenError("not your door-knock task for this elder")
    if task.state != "open":
        raise ConflictError("the door-knock task is already done")
    return task


def place_call(
    conn: Conn,
    caller: Caller,
    resident_id: str,
    *,
    kind: CalleeKind,
    ref: str,
    task_id: int | None,
    adapter: TelephonyAdapter | None,
    clock: Callable[[], datetime] = _utcnow,
) -> WorkerPlacedCall:
    """Place a call to the callee ``(kind, ref)`` of the worker's elder and record it."""
    if adapter is None:
        raise ConflictError("click-to-call is off (telephony.adapter = 'none')")
    _assigned(conn, caller, resident_id)
    incident_id = None
    if task_id is not None:
        incident_id = _task(conn, caller, resident_id, task_id).incident_id
    found = next((r for r in _rows(conn, resident_id) if (r.kind, r.ref) == (kind, ref)), None)
    if found is None:
        raise NotFoundError("no such callee for this elder")
    if not found.phone:
        raise InvalidError("the callee has no phone number")
    caller_phone = None
    if adapter.needs_caller_phone:
        caller_phone = calls_store.staff_phone(conn, caller.user_id)
        if caller_phone is None:
            raise InvalidError("your user record has no phone number to ring first",
                               hint="请管理员为您添加语音或短信渠道号码")  # fmt: skip
    ref_id = f"t{task_id}" if task_id is not None else "e"
    out_id = f"wk{ref_id}-{uuid.uuid4().hex[:12]}"
    placement = adapter.place(CallRequest(found.phone, caller_phone, out_id))
    now = clock()
    outcome = placement.outcome.value if placement.outcome else None
    with conn.transaction():
        call = store.insert_call(
            conn, resident_id, task_id=task_id, incident_id=incident_id,
            caller_id=caller.user_id, callee_kind=kind.value, callee_ref=ref,
            channel=adapter.channel, status=placement.status, detail=placement.detail,
            provider_call_id=placement.provider_call_id, placed_at=now, outcome=outcome,
        )  # fmt: skip
        if incident_id is not None:
            data = {
                "call_id": call.id, **_who(conn, caller), "callee_kind": kind.value,
                "callee_name": found.display_name, "relation": found.relation,
                "channel": adapter.channel, "status": placement.status,
                "detail": placement.detail, "outcome": outcome, "task_id": task_id,
            }  # fmt: skip
            incidents.add_event(conn, incident_id, "call_placed", at=now, actor=caller.user_id,
                                data=data)  # fmt: skip
        audit.append(conn, caller.user_id, "visits.call_placed", f"resident:{resident_id}",
                     {"call_id": call.id, "callee_kind": kind.value, "callee_ref": ref,
                      "channel": adapter.channel, "status": placement.status,
                      "detail": placement.detail, "task_id": task_id,
                      "incident_id": incident_id})  # fmt: skip
    log.info(
        "worker call placed",
        extra={"call_id": call.id, "task_id": task_id, "incident_id": incident_id,
               "channel": adapter.channel, "callee_kind": kind.value,
               "status": placement.status},
    )  # fmt: skip
    return WorkerPlacedCall(call, placement)


def record_outcome(
    conn: Conn,
    caller: Caller,
    call_id: int,
    *,
    outcome: CallOutcome,
    note: str | None,
    clock: Callable[[], datetime] = _utcnow,
) -> WorkerCallRow:
    """Record what came of the worker's own call (once; the adapter's invalid_number may be
    corrected once)."""
    now = clock()
    note = (note or "").strip() or None
    with conn.transaction():
        call = store.get_call(conn, call_id, for_update=True)
        if call is None:
            raise NotFoundError("no such call")
        if call.caller_id != caller.user_id:
            raise ForbiddenError("not your call")
        _assigned(conn, caller, call.resident_id)
        if call.outcome is not None and call.outcome_by != "system":
            raise ConflictError("the outcome of this call is already recorded")
        after = store.set_outcome(conn, call_id, outcome=outcome.value, note=note,
                                  by=caller.user_id, at=now)  # fmt: skip
        if call.incident_id is not None:
            key = (call.callee_kind, call.callee_ref)
            callee = next((r for r in _rows(conn, call.resident_id) if (r.kind, r.ref) == key),
                          None)  # fmt: skip
            data = {
                "call_id": call_id, **_who(conn, caller), "callee_kind": call.callee_kind,
                "callee_name": callee.display_name if callee else None,
                "relation": callee.relation if callee else None, "channel": call.channel,
                "outcome": outcome.value, "note": note, "task_id": call.task_id,
            }  # fmt: skip
            incidents.add_event(conn, call.incident_id, "call_outcome", at=now,
                                actor=caller.user_id, data=data)  # fmt: skip
        audit.append(conn, caller.user_id, "visits.call_outcome", f"resident:{call.resident_id}",
                     {"call_id": call_id, "outcome": outcome.value,
                      "note_chars": len(note or ""), "task_id": call.task_id,
                      "incident_id": call.incident_id})  # fmt: skip
    log.info("worker call outcome recorded", extra={"call_id": call_id, "outcome": outcome.value})
    return after


def calls(conn: Conn, caller: Caller, resident_id: str) -> list[WorkerCallRow]:
    """The worker's latest calls about their elder, newest first."""
    _assigned(conn, caller, resident_id)
    return store.calls_of(conn, resident_id, caller.user_id)
