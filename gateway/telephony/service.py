"""The call-centre service: whom staff can phone about an incident, placing a call through
the adapter, recording its outcome, and free-text incident notes.

Every call attempt, outcome and note is a timeline event of the incident
(``incident_events`` kinds ``call_placed``, ``call_outcome``, ``incident_note``) and an
audit entry (``incident.call_placed``, ``incident.call_outcome``, ``incident.note``), in
one transaction. The timeline event names who called whom (role and display name, the
callee's kind, name and relation: what the console shows, to staff of the site only); the
audit entry carries ids only. Neither ever holds a phone number, and neither do the logs
(ids, kinds and states only).

The adapter is called outside any transaction (a slow provider holds no lock); a provider
outage is a ``failed`` attempt on the timeline, not an error of the request.
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
from gateway.errors import ConflictError, InvalidError, NotFoundError
from gateway.registry_rules import clean_phone
from gateway.storage import incident_calls as store
from gateway.storage import incidents
from gateway.storage.incident_calls import CallRow
from gateway.storage.incidents import Incident
from gateway.telephony.adapter import CallRequest, Placement, TelephonyAdapter
from gateway.telephony.phones import CalleeKind, CallOutcome, mask_phone

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

__all__ = [
    "Callee",
    "Caller",
    "PlacedCall",
    "add_note",
    "callee_of",
    "callees",
    "calls",
    "place_call",
    "record_outcome",
    "set_phone",
]


@dataclass(frozen=True, slots=True)
class Caller:
    """The staff member acting: user id, API role value, site (None: an admin, any site)."""

    user_id: str
    role: str
    site_id: str | None


@dataclass(frozen=True, slots=True)
class Callee:
    """Someone to call: ``phone`` only when the caller may see numbers, ``masked`` always."""

    kind: CalleeKind
    ref: str
    display_name: str | None
    relation: str | None
    masked_phone: str | None
    phone: str | None
    callable: bool


@dataclass(frozen=True, slots=True)
class PlacedCall:
    """A recorded attempt and what the adapter said (``dial_uri`` for a desk phone)."""

    call: CallRow
    placement: Placement


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _incident(conn: Conn, caller: Caller, incident_id: int) -> Incident:
    incident = incidents.get(conn, incident_id)
    if incident is None or (caller.site_id is not None and incident.site_id != caller.site_id):
        raise NotFoundError("no such incident")
    return incident


def callees(conn: Conn, caller: Caller, incident_id: int, *, reveal: bool) -> list[Callee]:
    """Whom the caller can phone about the incident's resident (none for a technical
    incident): numbers in full only with ``reveal``."""
    incident = _incident(conn, caller, incident_id)
    if incident.resident_id is None:
        return []
    rows = store.callees(conn, incident.resident_id)
    return [callee_of(r, reveal=reveal) for r in rows]


def callee_of(r: store.CalleeRow, *, reveal: bool) -> Callee:
    """A callee row as shown: the masked number always, the number only with ``reveal``."""
    phone = r.phone if reveal else None
    return Callee(CalleeKind(r.kind), r.ref, r.display_name, r.relation, mask_phone(r.phone), phone,
                  bool(r.phone))  # fmt: skip


def _who(conn: Conn, caller: Caller) -> dict[str, Any]:
    row = store.staff(conn, caller.user_id)
    return {"caller_role": caller.role, "caller_name": row.display_name if row else None}


def place_call(
    conn: Conn,
    caller: Caller,
    incident_id: int,
    *,
    kind: CalleeKind,
    ref: str,
    adapter: TelephonyAdapter | None,
    clock: Callable[[], datetime] = _utcnow,
) -> PlacedCall:
    """Place a call to the callee ``(kind, ref)`` and record the attempt."""
    if adapter is None:
        raise ConflictError("click-to-call is off (telephony.adapter = 'none')")
    incident = _incident(conn, caller, incident_id)
    if incident.resident_id is None:
        raise InvalidError("a technical incident has nobody to call")
    found = next(
        (r for r in store.callees(conn, incident.resident_id) if (r.kind, r.ref) == (kind, ref)),
        None,
    )
    if found is None:
        raise NotFoundError("no such callee for this incident")
    if not found.phone:
        raise InvalidError("the callee has no phone number")
    caller_phone = None
    if adapter.needs_caller_phone:
        caller_phone = store.staff_phone(conn, caller.user_id)
    out_id = f"inc{incident_id}-{uuid.uuid4().hex[:12]}"
    placement = adapter.place(CallRequest(found.phone, caller_phone, out_id))
    now = clock()
    outcome = placement.outcome.value if placement.outcome else None
    with conn.transaction():
        call = store.insert_call(
            conn, incident_id, caller_id=caller.user_id, callee_kind=kind.value,
            callee_ref=ref, channel=adapter.channel, status=placement.status,
            detail=placement.detail, provider_call_id=placement.provider_call_id,
            placed_at=now, outcome=outcome,
        )  # fmt: skip
        data = {
            "call_id": call.id, **_who(conn, caller), "callee_kind": kind.value,
            "callee_name": found.display_name, "relation": found.relation,
            "channel": adapter.channel, "status": placement.status, "detail": placement.detail,
            "outcome": outcome,
        }  # fmt: skip
        incidents.add_event(conn, incident_id, "call_placed", at=now, actor=caller.user_id,
                            data=data)  # fmt: skip
        audit.append(conn, caller.user_id, "incident.call_placed", f"incident:{incident_id}",
                     {"call_id": call.id, "callee_kind": kind.value, "callee_ref": ref,
                      "channel": adapter.channel, "status": placement.status,
                      "detail": placement.detail})  # fmt: skip
    log.info(
        "call placed",
        extra={"incident_id": incident_id, "call_id": call.id, "channel": adapter.channel,
               "callee_kind": kind.value, "status": placement.status},
    )  # fmt: skip
    return PlacedCall(call, placement)


def record_outcome(
    conn: Conn,
    caller: Caller,
    incident_id: int,
    call_id: int,
    *,
    outcome: CallOutcome,
    note: str | None,
    clock: Callable[[], datetime] = _utcnow,
) -> CallRow:
    """Record what came of a call (once per call; the adapter's own invalid_number may be
    corrected once by staff)."""
    _incident(conn, caller, incident_id)
    now = clock()
    note = (note or "").strip() or None
    with conn.transaction():
        call = store.get_call(conn, incident_id, call_id, for_update=True)
        if call is None:
            raise NotFoundError("no such call")
        if call.outcome is not None and call.outcome_by != "system":
            raise ConflictError("the outcome of this call is already recorded")
        after = store.set_outcome(conn, call_id, outcome=outcome.value, note=note,
                                  by=caller.user_id, at=now)  # fmt: skip
        callee = next(
            (r for r in _callee_rows(conn, incident_id) if (r.kind, r.ref)
             == (call.callee_kind, call.callee_ref)),
            None,
        )  # fmt: skip
        data = {
            "call_id": call_id, **_who(conn, caller), "callee_kind": call.callee_kind,
            "callee_name": callee.display_name if callee else None,
            "relation": callee.relation if callee else None, "channel": call.channel,
            "outcome": outcome.value, "note": note,
        }  # fmt: skip
        incidents.add_event(conn, incident_id, "call_outcome", at=now, actor=caller.user_id,
                            data=data)  # fmt: skip
        audit.append(conn, caller.user_id, "incident.call_outcome", f"incident:{incident_id}",
                     {"call_id": call_id, "outcome": outcome.value,
                      "note_chars": len(note or "")})  # fmt: skip
    log.info(
        "call outcome recorded",
        extra={"incident_id": incident_id, "call_id": call_id, "outcome": outcome.value},
    )
    return after


def _callee_rows(conn: Conn, incident_id: int) -> list[store.CalleeRow]:
    incident = incidents.get(conn, incident_id)
    if incident is None or incident.resident_id is None:
        return []
    return store.callees(conn, incident.resident_id)


def add_note(
    conn: Conn,
    caller: Caller,
    incident_id: int,
    text: str,
    *,
    clock: Callable[[], datetime] = _utcnow,
) -> datetime:
    """Add a free-text note to the incident's timeline; returns its time."""
    _incident(conn, caller, incident_id)
    text = text.strip()
    if not text:
        raise InvalidError("an empty note")
    now = clock()
    with conn.transaction():
        incidents.add_event(conn, incident_id, "incident_note", at=now, actor=caller.user_id,
                            data={**_who(conn, caller), "text": text})  # fmt: skip
        audit.append(conn, caller.user_id, "incident.note", f"incident:{incident_id}",
                     {"chars": len(text)})  # fmt: skip
    log.info("incident note added", extra={"incident_id": incident_id})
    return now


def calls(conn: Conn, caller: Caller, incident_id: int) -> list[CallRow]:
    """The incident's call attempts with their outcomes, oldest first."""
    _incident(conn, caller, incident_id)
    return store.calls_of(conn, incident_id)


def set_phone(conn: Conn, what: str, ident: str, phone: str | None, *, actor: str) -> None:
    """Set (or clear) the number "call the resident" dials: the resident's own phone
    (``what = "resident"``) or their room's / home's landline (``"location"``). Audited
    (``resident.phone`` / ``location.phone``) without the number."""
    if what not in {"resident", "location"}:
        raise InvalidError(f"unknown phone owner {what!r}")
    phone = clean_phone(phone)  # the registry's rule (the site definition and imports too)
    with conn.transaction():
        try:
            found = store.set_phone(conn, what, ident, phone)
        except psycopg.errors.CheckViolation:
            raise InvalidError("not a phone number (digits, +, (), - and spaces)") from None
        if not found:
            raise NotFoundError(f"no {what} {ident}")
        audit.append(conn, actor, f"{what}.phone", f"{what}:{ident}", {"set": phone is not None})
    log.info("phone number changed", extra={"owner": what, "set": phone is not None})
