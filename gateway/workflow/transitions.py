"""The incident lifecycle as a pure table: state x action -> new state, and who may act.

No I/O and no clock: the caller passes the incident's age where a rule depends on time.

Lifecycle: raised -> acknowledged -> dispatched -> on_scene -> resolved -> closed, with
``cancelled`` reachable from ``raised`` (the resident's own "I'm OK" within its window, or
staff) and from ``acknowledged`` (staff). Technical incidents may also be cleared by the
system when their condition clears (device back online, battery replaced).

Escalation stops only on a human acknowledgement: :attr:`Rule.stops_escalation` is true
for the staff actions that take an incident out of ``raised`` (acknowledge, staff cancel)
and false for everything else. Delivering or reading a notification never stops it. An
incident that is no longer open (the resident's own cancel, the system's clearing of a
technical condition) has nothing left to escalate; the escalation engine, a later step,
reads this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from analytics.types import DetectionKind
from gateway.errors import ConflictError, SafehomeError


class State(StrEnum):
    """Where an incident is in its lifecycle."""

    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    ON_SCENE = "on_scene"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELLED = "cancelled"

    @property
    def open(self) -> bool:
        """Whether the incident still absorbs new triggers (one open per resident and type)."""
        return self in OPEN_STATES


OPEN_STATES = frozenset({State.RAISED, State.ACKNOWLEDGED, State.DISPATCHED, State.ON_SCENE})


class Action(StrEnum):
    """What someone does to an incident."""

    ACKNOWLEDGE = "acknowledge"
    DISPATCH = "dispatch"
    ARRIVE = "arrive"  # the responder is on scene
    RESOLVE = "resolve"
    CLOSE = "close"
    CANCEL_BY_RESIDENT = "cancel_by_resident"
    CANCEL_BY_STAFF = "cancel_by_staff"
    CLEAR = "clear"  # the system: a technical condition cleared by itself


class Role(StrEnum):
    """Who acts."""

    DUTY_STAFF = "duty_staff"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    SYSTEM = "system"
    RESIDENT = "resident"
    COMMUNITY_WORKER = "community_worker"  # resolves by a door-knock result (gateway.visits)


class Outcome(StrEnum):
    """How an incident was resolved (recorded with the resolution)."""

    FALSE_ALARM = "false_alarm"
    ASSISTED = "assisted"
    HOSPITAL_TRANSFER = "hospital_transfer"
    NO_ACTION_NEEDED = "no_action_needed"
    TECHNICAL_FIXED = "technical_fixed"
    CONDITION_CLEARED = "condition_cleared"  # set by the system's clear, not chosen by staff
    OTHER = "other"


class IncidentType(StrEnum):
    """Incident types: one per detection kind (the same values)."""

    EMERGENCY_CALL = "emergency_call"
    FALL = "fall"
    NOT_UP = "not_up"
    NIGHT_BED_EXIT = "night_bed_exit"
    NO_ACTIVITY = "no_activity"
    MOTIONLESS_IN_BED = "motionless_in_bed"
    VITALS_ABNORMAL = "vitals_abnormal"
    APNEA = "apnea"
    NOT_WORN = "not_worn"
    DEVICE_OFFLINE = "device_offline"
    HUB_OFFLINE = "hub_offline"
    SITE_OFFLINE = "site_offline"
    LOW_BATTERY = "low_battery"
    DEVICE_CLOCK_WRONG = "device_clock_wrong"
    SMOKE_ALARM = "smoke_alarm"
    GAS_ALARM = "gas_alarm"
    WATER_LEAK = "water_leak"
    DOOR_OPEN_AT_NIGHT = "door_open_at_night"
    DEVICE_TAMPERED = "device_tampered"
    DOOR_UNUSED = "door_unused"

    @property
    def priority(self) -> int:
        """1 is the most urgent."""
        return PRIORITIES[self]

    @property
    def technical(self) -> bool:
        """About the devices, not the resident's care."""
        return DetectionKind(self.value).technical

    @property
    def resident_cancellable(self) -> bool:
        """Whether the resident's "I'm OK" (button cancel / long press) may cancel it."""
        return self in RESIDENT_CANCELLABLE

    @classmethod
    def from_detection(cls, kind: DetectionKind) -> IncidentType:
        """The incident type a detection of ``kind`` raises."""
        return cls(kind.value)


PRIORITIES: dict[IncidentType, int] = {
    IncidentType.EMERGENCY_CALL: 1,
    IncidentType.FALL: 1,
    IncidentType.NIGHT_BED_EXIT: 2,
    IncidentType.VITALS_ABNORMAL: 2,
    IncidentType.APNEA: 2,
    IncidentType.NOT_UP: 2,
    IncidentType.NO_ACTIVITY: 2,
    IncidentType.MOTIONLESS_IN_BED: 2,
    IncidentType.NOT_WORN: 3,
    IncidentType.SITE_OFFLINE: 2,
    IncidentType.HUB_OFFLINE: 2,
    IncidentType.DEVICE_OFFLINE: 3,
    IncidentType.LOW_BATTERY: 4,
    IncidentType.DEVICE_CLOCK_WRONG: 4,
    IncidentType.SMOKE_ALARM: 1,
    IncidentType.GAS_ALARM: 1,
    IncidentType.DOOR_OPEN_AT_NIGHT: 2,
    IncidentType.WATER_LEAK: 3,
    IncidentType.DEVICE_TAMPERED: 3,
    IncidentType.DOOR_UNUSED: 3,  # a welfare check within the day, below no_activity
}

RESIDENT_CANCELLABLE = frozenset({IncidentType.EMERGENCY_CALL, IncidentType.FALL})

DEFAULT_CANCEL_WINDOW_S = 60.0

_STAFF = frozenset({Role.DUTY_STAFF, Role.SUPERVISOR, Role.ADMIN})
_SENIOR = frozenset({Role.SUPERVISOR, Role.ADMIN})


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table: ``action`` moves an incident from any of ``sources`` to ``target``.

    ``technical_only``: the action applies to technical incidents only.
    ``resident_only_types``: the action applies only to types the resident may cancel.
    ``windowed``: the action is allowed only within the cancel window from the raise.
    ``stops_escalation``: the action is a human acknowledgement that ends escalation.
    """

    action: Action
    sources: frozenset[State]
    target: State
    roles: frozenset[Role]
    stops_escalation: bool = False
    technical_only: bool = False
    resident_only_types: bool = False
    windowed: bool = False


RULES: dict[Action, Rule] = {
    r.action: r
    for r in (
        Rule(Action.ACKNOWLEDGE, frozenset({State.RAISED}), State.ACKNOWLEDGED, _STAFF,
             stops_escalation=True),
        Rule(Action.DISPATCH, frozenset({State.ACKNOWLEDGED}), State.DISPATCHED, _STAFF),
        Rule(Action.ARRIVE, frozenset({State.DISPATCHED}), State.ON_SCENE, _STAFF),
        Rule(Action.RESOLVE,
             frozenset({State.ACKNOWLEDGED, State.DISPATCHED, State.ON_SCENE}),
             State.RESOLVED, _STAFF | {Role.COMMUNITY_WORKER}),
        Rule(Action.CLOSE, frozenset({State.RESOLVED}), State.CLOSED, _SENIOR),
        Rule(Action.CANCEL_BY_RESIDENT, frozenset({State.RAISED}), State.CANCELLED,
             frozenset({Role.RESIDENT}), resident_only_types=True, windowed=True),
        Rule(Action.CANCEL_BY_STAFF, frozenset({State.RAISED, State.ACKNOWLEDGED}),
             State.CANCELLED, _SENIOR, stops_escalation=True),
        Rule(Action.CLEAR, frozenset({State.RAISED, State.ACKNOWLEDGED}), State.RESOLVED,
             frozenset({Role.SYSTEM}), technical_only=True),
    )
}  # fmt: skip


class WorkflowError(SafehomeError):
    """Base error of the incident workflow (each raised error is also one domain kind)."""


class IllegalTransitionError(WorkflowError, ConflictError):
    """An action that the lifecycle does not allow; nothing was changed.

    Attributes name the incident's ``state``, the ``action`` and the acting ``role``.
    """

    def __init__(self, message: str, *, state: State, action: Action, role: Role) -> None:
        super().__init__(message)
        self.state = state
        self.action = action
        self.role = role


_VERB = {
    Action.ACKNOWLEDGE: "acknowledge",
    Action.DISPATCH: "dispatch",
    Action.ARRIVE: "report on scene",
    Action.RESOLVE: "resolve",
    Action.CLOSE: "close",
    Action.CANCEL_BY_RESIDENT: "cancel (resident)",
    Action.CANCEL_BY_STAFF: "cancel (staff)",
    Action.CLEAR: "clear",
}


def next_state(
    state: State,
    action: Action,
    role: Role,
    *,
    incident_type: IncidentType,
    since_raise_s: float | None = None,
    cancel_window_s: float = DEFAULT_CANCEL_WINDOW_S,
) -> State:
    """Return the state ``action`` by ``role`` leads to, or raise :class:`IllegalTransitionError`.

    ``since_raise_s`` (seconds from the raise to the action) is needed for windowed actions.
    """
    rule = RULES[action]
    verb = _VERB[action]

    def refuse(message: str) -> IllegalTransitionError:
        return IllegalTransitionError(message, state=state, action=action, role=role)

    if state not in rule.sources:
        raise refuse(f"cannot {verb} an incident that is {state.value}")
    if role not in rule.roles:
        allowed = ", ".join(sorted(r.value for r in rule.roles))
        raise refuse(f"role {role.value} may not {verb} an incident (allowed: {allowed})")
    if rule.technical_only and not incident_type.technical:
        raise refuse(f"cannot {verb} a {incident_type.value} incident: technical incidents only")
    if rule.resident_only_types and not incident_type.resident_cancellable:
        raise refuse(f"cannot {verb} a {incident_type.value} incident")
    if rule.windowed:
        if since_raise_s is None:
            raise refuse(f"cannot {verb} without the time since the raise")
        if since_raise_s > cancel_window_s or since_raise_s < 0:
            raise refuse(
                f"cannot {verb} an incident {since_raise_s:.0f} s after it was raised "
                f"(window {cancel_window_s:.0f} s)"
            )
    return rule.target


def stops_escalation(action: Action) -> bool:
    """Whether ``action`` is the human acknowledgement that ends escalation."""
    return RULES[action].stops_escalation
