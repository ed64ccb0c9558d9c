"""The incident service: raises, joins and moves incidents, with timeline and audit.

Every method runs in one transaction that updates the incident, appends the timeline event
(``incident_events``) and appends an audit entry (``gateway.audit``), so either all three
happen or none. Illegal transitions raise :class:`IllegalTransitionError` before anything
is written. Logs carry incident ids, types and states only: no personal data.

The connection may be in autocommit mode (each call is its own transaction) or not (each
call becomes a savepoint of the caller's transaction); it must use READ COMMITTED.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from analytics.types import Detection
from gateway import audit
from gateway.errors import InvalidError, NotFoundError
from gateway.storage import incidents
from gateway.storage.incidents import Incident, TimelineEvent
from gateway.workflow.transitions import (
    DEFAULT_CANCEL_WINDOW_S,
    RESIDENT_CANCELLABLE,
    Action,
    IncidentType,
    Outcome,
    Role,
    State,
    WorkflowError,
    next_state,
)

log = logging.getLogger(__name__)

SYSTEM = "system"

__all__ = [
    "SYSTEM",
    "SYSTEM_ACTOR",
    "Actor",
    "Incident",
    "IncidentNotFoundError",
    "IncidentService",
    "InvalidIncidentError",
    "TimelineEvent",
    "Trigger",
]


class InvalidIncidentError(WorkflowError, InvalidError):
    """An input the workflow refuses (unknown outcome, a trigger without a subject, ...)."""


class IncidentNotFoundError(WorkflowError, NotFoundError):
    """No incident with that id (or no open incident to act on)."""

    def __init__(self, message: str, *, incident_id: int | None = None) -> None:
        super().__init__(message)
        self.incident_id = incident_id


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an opaque id (user id, device id, ``system``) and a role."""

    id: str
    role: Role


SYSTEM_ACTOR = Actor(SYSTEM, Role.SYSTEM)


@dataclass(frozen=True, slots=True)
class Trigger:
    """A detection-like input that raises an incident or joins the open one.

    ``subject`` defaults to the resident for care types; technical types name the device,
    location or site. ``time`` is when the condition was established.
    """

    type: IncidentType
    site_id: str
    time: datetime
    reason: str
    resident_id: str | None = None
    subject: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_detection(
        cls, detection: Detection, site_id: str, resident_id: str | None = None
    ) -> Trigger:
        """Build a trigger from an analytics detection (epoch seconds become UTC times).

        A resolved detection (the condition cleared) raises nothing: use
        :meth:`IncidentService.clear` for technical incidents instead.
        """
        if detection.resolved:
            kind = detection.kind.value
            raise InvalidIncidentError(f"a resolved {kind} detection raises nothing")
        return cls(
            type=IncidentType.from_detection(detection.kind),
            site_id=site_id,
            time=datetime.fromtimestamp(detection.time, UTC),
            reason=detection.reason,
            resident_id=resident_id,
            subject=detection.subject,
            details=dict(detection.details),
        )

    @property
    def key_subject(self) -> str:
        """The subject stored on the incident."""
        subject = self.subject or self.resident_id
        if not subject:
            raise InvalidIncidentError(f"a {self.type.value} trigger needs a subject or a resident")
        return subject


# Timeline event kind per action (past tense, as the console shows it).
_EVENT = {
    Action.ACKNOWLEDGE: "acknowledged",
    Action.DISPATCH: "dispatched",
    Action.ARRIVE: "on_scene",
    Action.RESOLVE: "resolved",
    Action.CLEAR: "cleared",
    Action.CLOSE: "closed",
    Action.CANCEL_BY_RESIDENT: "cancelled_by_resident",
    Action.CANCEL_BY_STAFF: "cancelled_by_staff",
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class IncidentService:
    """Incident operations over one psycopg connection (not shared between threads)."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        cancel_window_s: float = DEFAULT_CANCEL_WINDOW_S,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._conn = conn
        self._cancel_window_s = cancel_window_s
        self._clock = clock

    # -- raising -----------------------------------------------------------------------

    def raise_or_join(self, trigger: Trigger) -> tuple[Incident, bool]:
        """Raise a new incident, or join the open one of that resident/subject and type.

        Returns the incident and whether it was created. Safe under concurrent triggers:
        the partial unique indexes arbitrate (INSERT ... ON CONFLICT DO UPDATE).
        """
        itype = trigger.type
        if not itype.technical and not (trigger.resident_id or trigger.subject):
            raise InvalidIncidentError(f"a {itype.value} incident needs a resident or a place")
        params = {
            "site_id": trigger.site_id,
            "resident_id": trigger.resident_id,
            "subject": trigger.key_subject,
            "type": itype.value,
            "priority": itype.priority,
            "technical": itype.technical,
            "time": trigger.time,
            "now": self._clock(),
            "reason": trigger.reason,
            "details": trigger.details,
        }
        key = "technical" if itype.technical else "resident" if trigger.resident_id else "place"
        with self._conn.transaction():
            incident, created = incidents.raise_or_join(self._conn, params, key=key)
            kind = "raised" if created else "triggered"
            data = {"trigger_time": trigger.time.isoformat(), "reason": trigger.reason}
            self._event(incident.id, kind, SYSTEM, data)
            if created:
                audit.append(
                    self._conn, SYSTEM, "incident.raised", _target(incident.id),
                    {"type": itype.value, "priority": itype.priority,
                     "site_id": trigger.site_id, "subject": incident.subject},
                )  # fmt: skip
        if created:
            log.info(
                "incident raised",
                extra={"incident_id": incident.id, "type": itype.value, "state": "raised"},
            )
        return incident, created

    # -- transitions -------------------------------------------------------------------

    def acknowledge(self, incident_id: int, actor: Actor) -> Incident:
        """A human takes the incident: escalation stops."""
        return self._transition(incident_id, Action.ACKNOWLEDGE, actor)

    def dispatch(self, incident_id: int, actor: Actor, responder: str) -> Incident:
        """Send ``responder`` (a staff or service id) to the resident."""
        return self._transition(incident_id, Action.DISPATCH, actor, responder=responder)

    def on_scene(self, incident_id: int, actor: Actor) -> Incident:
        """The responder has arrived."""
        return self._transition(incident_id, Action.ARRIVE, actor)

    def resolve(
        self, incident_id: int, actor: Actor, outcome: Outcome | str, notes: str | None = None
    ) -> Incident:
        """Resolve with an outcome code (false_alarm, assisted, hospital_transfer, ...)."""
        try:
            code = Outcome(outcome)
        except ValueError:
            raise InvalidIncidentError(f"unknown outcome {outcome!r}") from None
        if code is Outcome.CONDITION_CLEARED:
            raise InvalidIncidentError("condition_cleared is set by the system's clear only")
        return self._transition(incident_id, Action.RESOLVE, actor, outcome=code.value, notes=notes)

    def close(self, incident_id: int, actor: Actor) -> Incident:
        """Close a resolved incident after review."""
        return self._transition(incident_id, Action.CLOSE, actor)

    def cancel_by_staff(self, incident_id: int, actor: Actor, reason: str) -> Incident:
        """Staff cancel an incident raised in error (kept, with the reason)."""
        return self._transition(incident_id, Action.CANCEL_BY_STAFF, actor, notes=reason)

    def clear(self, incident_id: int) -> Incident:
        """The system resolves a technical incident whose condition cleared by itself."""
        return self._transition(incident_id, Action.CLEAR, SYSTEM_ACTOR)

    def cancel_by_resident(
        self, resident_id: str, at: datetime, device_id: str | None = None
    ) -> Incident:
        """The resident's "I'm OK": cancel their open emergency call / fall in its window.

        ``at`` is when the resident pressed (device time). The window runs from the alarm
        itself (``first_trigger_at``, also device time), not from when the gateway stored
        it, so a backlog in ingest does not eat the resident's window. Raises
        :class:`IncidentNotFoundError` when there is nothing open to cancel and
        :class:`IllegalTransitionError` when it is too late or already acknowledged.
        """
        found = incidents.cancellable(
            self._conn, resident_id, [t.value for t in RESIDENT_CANCELLABLE]
        )
        if found is None:
            raise IncidentNotFoundError("no open emergency call or fall to cancel")
        actor = Actor(device_id or resident_id, Role.RESIDENT)
        return self._transition(found, Action.CANCEL_BY_RESIDENT, actor, at=at)

    def note(self, incident_id: int, actor: Actor, kind: str, data: Mapping[str, Any]) -> None:
        """Append a timeline event that moves no state (e.g. a door-knock task or its
        result, gateway.visits), audited as ``incident.<kind>``."""
        with self._conn.transaction():
            self.get(incident_id)
            self._event(incident_id, kind, actor.id, data)
            audit.append(self._conn, actor.id, f"incident.{kind}", _target(incident_id),
                         dict(data))  # fmt: skip

    # -- reads -------------------------------------------------------------------------

    def get(self, incident_id: int) -> Incident:
        """The incident with that id."""
        incident = incidents.get(self._conn, incident_id)
        if incident is None:
            raise IncidentNotFoundError(f"no incident {incident_id}", incident_id=incident_id)
        return incident

    def timeline(self, incident_id: int) -> list[TimelineEvent]:
        """The incident's timeline, oldest first."""
        return incidents.timeline(self._conn, incident_id)

    def record_read(self, actor: str, resident_id: str, what: str) -> None:
        """Audit a read of a resident's health data (the API calls this on every read)."""
        with self._conn.transaction():
            audit.append(self._conn, actor, "health_data.read", f"resident:{resident_id}",
                         {"what": what})  # fmt: skip

    # -- internals ---------------------------------------------------------------------

    def _transition(
        self,
        incident_id: int,
        action: Action,
        actor: Actor,
        *,
        at: datetime | None = None,
        responder: str | None = None,
        outcome: str | None = None,
        notes: str | None = None,
    ) -> Incident:
        now = self._clock() if at is None else at
        with self._conn.transaction():
            before = incidents.get(self._conn, incident_id, for_update=True)
            if before is None:
                raise IncidentNotFoundError(f"no incident {incident_id}", incident_id=incident_id)
            target = next_state(
                State(before.state), action, actor.role,
                incident_type=IncidentType(before.type),
                since_raise_s=(now - before.first_trigger_at).total_seconds(),
                cancel_window_s=self._cancel_window_s,
            )  # fmt: skip
            after = incidents.update_state(
                self._conn, incident_id, action, state=target.value, now=now, actor=actor.id,
                responder=responder, outcome=outcome, notes=notes,
            )  # fmt: skip
            data = _event_data(before.state, target, actor.role, responder, outcome)
            self._event(incident_id, _EVENT[action], actor.id, data, at=now)
            audit.append(self._conn, actor.id, f"incident.{action.value}",
                         _target(incident_id), data)  # fmt: skip
        log.info(
            "incident state changed",
            extra={"incident_id": incident_id, "type": after.type, "action": action.value,
                   "from_state": before.state, "state": target.value},
        )  # fmt: skip
        return after

    def _event(
        self,
        incident_id: int,
        kind: str,
        actor: str,
        data: Mapping[str, Any],
        at: datetime | None = None,
    ) -> None:
        incidents.add_event(
            self._conn, incident_id, kind, at=at or self._clock(), actor=actor, data=data
        )


def _target(incident_id: int) -> str:
    return f"incident:{incident_id}"


def _event_data(
    from_state: str, to_state: State, role: Role, responder: str | None, outcome: str | None
) -> dict[str, Any]:
    data: dict[str, Any] = {"from": from_state, "to": to_state.value, "role": role.value}
    if responder is not None:
        data["responder"] = responder
    if outcome is not None:
        data["outcome"] = outcome
    return data
