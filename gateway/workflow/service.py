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
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from analytics.types import Detection
from gateway import audit
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

_OPEN_SQL = "state IN ('raised', 'acknowledged', 'dispatched', 'on_scene')"


class IncidentNotFoundError(WorkflowError):
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
            raise WorkflowError(f"a resolved {detection.kind.value} detection raises nothing")
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
            raise WorkflowError(f"a {self.type.value} trigger needs a subject or a resident")
        return subject


@dataclass(frozen=True, slots=True)
class Incident:
    """One row of ``incidents``; SLA durations are derived from its timestamps."""

    id: int
    site_id: str
    resident_id: str | None
    subject: str
    type: str
    priority: int
    technical: bool
    state: str
    trigger_count: int
    first_trigger_at: datetime
    last_trigger_at: datetime
    raised_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    dispatched_at: datetime | None
    dispatched_by: str | None
    responder: str | None
    on_scene_at: datetime | None
    resolved_at: datetime | None
    resolved_by: str | None
    outcome: str | None
    resolution_notes: str | None
    closed_at: datetime | None
    closed_by: str | None
    cancelled_at: datetime | None
    cancelled_by: str | None
    cancel_source: str | None
    reason: str
    details: dict[str, Any]

    @property
    def time_to_acknowledge(self) -> timedelta | None:
        """From the raise to the human acknowledgement."""
        return None if self.acknowledged_at is None else self.acknowledged_at - self.raised_at

    @property
    def time_to_on_scene(self) -> timedelta | None:
        """From the raise to the responder's arrival."""
        return None if self.on_scene_at is None else self.on_scene_at - self.raised_at

    @property
    def time_to_resolve(self) -> timedelta | None:
        """From the raise to the resolution."""
        return None if self.resolved_at is None else self.resolved_at - self.raised_at


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One entry of an incident's timeline (raised, triggered, acknowledged, ...)."""

    time: datetime
    kind: str
    actor: str
    data: dict[str, Any]


_COLUMNS = ", ".join(f.name for f in fields(Incident))

_INSERT = f"""
INSERT INTO incidents (site_id, resident_id, subject, type, priority, technical,
    first_trigger_at, last_trigger_at, raised_at, reason, details)
VALUES (%(site_id)s, %(resident_id)s, %(subject)s, %(type)s, %(priority)s, %(technical)s,
    %(time)s, %(time)s, %(now)s, %(reason)s, %(details)s)
ON CONFLICT ({{key}}, type) WHERE {_OPEN_SQL} AND {{technical}}technical
DO UPDATE SET trigger_count = incidents.trigger_count + 1,
    first_trigger_at = least(incidents.first_trigger_at, EXCLUDED.first_trigger_at),
    last_trigger_at = greatest(incidents.last_trigger_at, EXCLUDED.last_trigger_at)
RETURNING {_COLUMNS}, (xmax = 0) AS created
"""  # noqa: S608
# The f-strings here only splice constants (column names, fixed predicates), never input.
_SELECT = f"SELECT {_COLUMNS} FROM incidents WHERE id = %s"  # noqa: S608
_SELECT_FOR_UPDATE = _SELECT + " FOR UPDATE"
_SELECT_CANCELLABLE = (
    "SELECT id FROM incidents WHERE resident_id = %s AND type = ANY(%s) AND "  # noqa: S608
    + _OPEN_SQL
    + " ORDER BY priority, raised_at DESC LIMIT 1"
)
_INSERT_CARE = _INSERT.format(key="resident_id", technical="NOT ")
_INSERT_TECHNICAL = _INSERT.format(key="subject", technical="")
# A care incident of a place (a device bound to no resident, migration 0017): one open per
# subject (location or site) and type.
_INSERT_CARE_PLACE = _INSERT.format(key="subject", technical="resident_id IS NULL AND NOT ")

# Columns each action sets besides ``state``: (column, parameter name).
_SETS: dict[Action, tuple[str, ...]] = {
    Action.ACKNOWLEDGE: ("acknowledged_at = %(now)s", "acknowledged_by = %(actor)s"),
    Action.DISPATCH: (
        "dispatched_at = %(now)s",
        "dispatched_by = %(actor)s",
        "responder = %(responder)s",
    ),
    Action.ARRIVE: ("on_scene_at = %(now)s",),
    Action.RESOLVE: (
        "resolved_at = %(now)s",
        "resolved_by = %(actor)s",
        "outcome = %(outcome)s",
        "resolution_notes = %(notes)s",
    ),
    Action.CLEAR: (
        "resolved_at = %(now)s",
        "resolved_by = %(actor)s",
        "outcome = 'condition_cleared'",
    ),
    Action.CLOSE: ("closed_at = %(now)s", "closed_by = %(actor)s"),
    Action.CANCEL_BY_RESIDENT: (
        "cancelled_at = %(now)s",
        "cancelled_by = %(actor)s",
        "cancel_source = 'resident'",
    ),
    Action.CANCEL_BY_STAFF: (
        "cancelled_at = %(now)s",
        "cancelled_by = %(actor)s",
        "cancel_source = 'staff'",
        "resolution_notes = %(notes)s",
    ),
}

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
            raise WorkflowError(f"a {itype.value} incident needs a resident or a place")
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
            "details": Jsonb(dict(trigger.details)),
        }
        if itype.technical:
            sql = _INSERT_TECHNICAL
        else:
            sql = _INSERT_CARE if trigger.resident_id else _INSERT_CARE_PLACE
        with self._conn.transaction(), self._conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(sql.encode(), params).fetchone()
            assert row is not None
            created = bool(row.pop("created"))
            incident = Incident(**row)
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
            raise WorkflowError(f"unknown outcome {outcome!r}") from None
        if code is Outcome.CONDITION_CLEARED:
            raise WorkflowError("condition_cleared is set by the system's clear only")
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
        row = self._conn.execute(
            _SELECT_CANCELLABLE.encode(),
            (resident_id, [t.value for t in RESIDENT_CANCELLABLE]),
        ).fetchone()
        if row is None:
            raise IncidentNotFoundError("no open emergency call or fall to cancel")
        actor = Actor(device_id or resident_id, Role.RESIDENT)
        return self._transition(int(row[0]), Action.CANCEL_BY_RESIDENT, actor, at=at)

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
        with self._conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(_SELECT.encode(), (incident_id,)).fetchone()
        if row is None:
            raise IncidentNotFoundError(f"no incident {incident_id}", incident_id=incident_id)
        return Incident(**row)

    def timeline(self, incident_id: int) -> list[TimelineEvent]:
        """The incident's timeline, oldest first."""
        rows = self._conn.execute(
            "SELECT time, kind, actor, data FROM incident_events WHERE incident_id = %s "
            "ORDER BY id",
            (incident_id,),
        ).fetchall()
        return [TimelineEvent(*row) for row in rows]

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
        with self._conn.transaction(), self._conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                _SELECT_FOR_UPDATE.encode(),
                (incident_id,),
            ).fetchone()
            if row is None:
                raise IncidentNotFoundError(f"no incident {incident_id}", incident_id=incident_id)
            before = Incident(**row)
            target = next_state(
                State(before.state), action, actor.role,
                incident_type=IncidentType(before.type),
                since_raise_s=(now - before.first_trigger_at).total_seconds(),
                cancel_window_s=self._cancel_window_s,
            )  # fmt: skip
            sets = ", ".join(("state = %(state)s", *_SETS[action]))  # constants only
            params = {"id": incident_id, "state": target.value, "now": now, "actor": actor.id,
                      "responder": responder, "outcome": outcome, "notes": notes}  # fmt: skip
            row = cur.execute(
                f"UPDATE incidents SET {sets} WHERE id = %(id)s RETURNING {_COLUMNS}".encode(),  # noqa: S608
                params,
            ).fetchone()
            assert row is not None
            after = Incident(**row)
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
        self._conn.execute(
            "INSERT INTO incident_events (incident_id, time, kind, actor, data) "
            "VALUES (%s, %s, %s, %s, %s)",
            (incident_id, at or self._clock(), kind, actor, Jsonb(dict(data))),
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
