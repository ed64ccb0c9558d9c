"""The pure incident transition table: every state x action x role, and the cancel window."""

from __future__ import annotations

import itertools

import pytest

from analytics.types import DetectionKind
from gateway.workflow.transitions import (
    DEFAULT_CANCEL_WINDOW_S,
    OPEN_STATES,
    RULES,
    Action,
    IllegalTransitionError,
    IncidentType,
    Role,
    State,
    next_state,
    stops_escalation,
)

S, A, R = State, Action, Role
STAFF = {R.DUTY_STAFF, R.SUPERVISOR, R.ADMIN}
SENIOR = {R.SUPERVISOR, R.ADMIN}
# A community worker resolves by the result of a door-knock task (issue 13, gateway.visits).
RESOLVERS = STAFF | {R.COMMUNITY_WORKER}

# The expected table, written out independently of RULES: (state, action) -> (target, roles).
EXPECTED: dict[tuple[State, Action], tuple[State, set[Role]]] = {
    (S.RAISED, A.ACKNOWLEDGE): (S.ACKNOWLEDGED, STAFF),
    (S.ACKNOWLEDGED, A.DISPATCH): (S.DISPATCHED, STAFF),
    (S.DISPATCHED, A.ARRIVE): (S.ON_SCENE, STAFF),
    (S.ACKNOWLEDGED, A.RESOLVE): (S.RESOLVED, RESOLVERS),
    (S.DISPATCHED, A.RESOLVE): (S.RESOLVED, RESOLVERS),
    (S.ON_SCENE, A.RESOLVE): (S.RESOLVED, RESOLVERS),
    (S.RESOLVED, A.CLOSE): (S.CLOSED, SENIOR),
    (S.RAISED, A.CANCEL_BY_RESIDENT): (S.CANCELLED, {R.RESIDENT}),
    (S.RAISED, A.CANCEL_BY_STAFF): (S.CANCELLED, SENIOR),
    (S.ACKNOWLEDGED, A.CANCEL_BY_STAFF): (S.CANCELLED, SENIOR),
    (S.RAISED, A.CLEAR): (S.RESOLVED, {R.SYSTEM}),
    (S.ACKNOWLEDGED, A.CLEAR): (S.RESOLVED, {R.SYSTEM}),
}

ALL = list(itertools.product(State, Action, Role))


def _type_for(action: Action) -> IncidentType:
    # CLEAR applies to technical incidents, the resident cancel to emergency calls / falls.
    return IncidentType.DEVICE_OFFLINE if action is A.CLEAR else IncidentType.EMERGENCY_CALL


@pytest.mark.parametrize(("state", "action", "role"), ALL, ids=str)
def test_every_pair(state: State, action: Action, role: Role) -> None:
    expected = EXPECTED.get((state, action))
    kwargs = {"incident_type": _type_for(action), "since_raise_s": 10.0}
    if expected is not None and role in expected[1]:
        assert next_state(state, action, role, **kwargs) is expected[0]  # type: ignore[arg-type]
        return
    with pytest.raises(IllegalTransitionError) as err:
        next_state(state, action, role, **kwargs)  # type: ignore[arg-type]
    assert (err.value.state, err.value.action, err.value.role) == (state, action, role)
    if expected is None:
        assert f"an incident that is {state.value}" in str(err.value)
    else:
        assert f"role {role.value} may not" in str(err.value)


def test_table_matches_expectation() -> None:
    got = {(s, r.action): (r.target, set(r.roles)) for r in RULES.values() for s in r.sources}
    assert got == EXPECTED


def test_message_is_plain() -> None:
    with pytest.raises(IllegalTransitionError) as err:
        next_state(S.RESOLVED, A.DISPATCH, R.DUTY_STAFF, incident_type=IncidentType.FALL)
    assert str(err.value) == "cannot dispatch an incident that is resolved"


def test_terminal_states_have_no_way_out() -> None:
    for state in (S.CLOSED, S.CANCELLED):
        assert not any(state in r.sources for r in RULES.values())
    assert {s for s in State if s.open} == OPEN_STATES


@pytest.mark.parametrize(
    ("since", "window", "ok"),
    [(0.0, 60.0, True), (59.9, 60.0, True), (60.0, 60.0, True), (60.1, 60.0, False),
     (5.0, 3.0, False), (119.0, 120.0, True), (-1.0, 60.0, False)],
)  # fmt: skip
def test_resident_cancel_window(since: float, window: float, ok: bool) -> None:
    def call() -> State:
        return next_state(
            S.RAISED, A.CANCEL_BY_RESIDENT, R.RESIDENT,
            incident_type=IncidentType.FALL, since_raise_s=since, cancel_window_s=window,
        )  # fmt: skip

    if ok:
        assert call() is S.CANCELLED
    else:
        with pytest.raises(IllegalTransitionError, match=r"after it was raised \(window"):
            call()


def test_resident_cancel_needs_the_time() -> None:
    with pytest.raises(IllegalTransitionError, match="without the time"):
        next_state(
            S.RAISED, A.CANCEL_BY_RESIDENT, R.RESIDENT, incident_type=IncidentType.EMERGENCY_CALL
        )


def test_resident_cancel_only_before_acknowledgement() -> None:
    for state in set(State) - {S.RAISED}:
        with pytest.raises(IllegalTransitionError, match=f"that is {state.value}"):
            next_state(
                state, A.CANCEL_BY_RESIDENT, R.RESIDENT,
                incident_type=IncidentType.FALL, since_raise_s=1.0,
            )  # fmt: skip


@pytest.mark.parametrize("itype", list(IncidentType))
def test_resident_cancel_only_calls_and_falls(itype: IncidentType) -> None:
    def call() -> State:
        return next_state(
            S.RAISED, A.CANCEL_BY_RESIDENT, R.RESIDENT, incident_type=itype, since_raise_s=1.0
        )

    if itype in (IncidentType.EMERGENCY_CALL, IncidentType.FALL):
        assert call() is S.CANCELLED
    else:
        with pytest.raises(IllegalTransitionError, match=f"a {itype.value} incident"):
            call()


@pytest.mark.parametrize("itype", list(IncidentType))
def test_clear_only_technical(itype: IncidentType) -> None:
    def call() -> State:
        return next_state(S.RAISED, A.CLEAR, R.SYSTEM, incident_type=itype)

    if itype.technical:
        assert call() is S.RESOLVED
    else:
        with pytest.raises(IllegalTransitionError, match="technical incidents only"):
            call()


def test_escalation_stops_only_on_human_acknowledgement() -> None:
    stopping = {a for a in Action if stops_escalation(a)}
    assert stopping == {A.ACKNOWLEDGE, A.CANCEL_BY_STAFF}
    for action in stopping:
        assert not RULES[action].roles & {R.SYSTEM, R.RESIDENT}
    # The only ways out of "raised" by a human staff member stop escalation.
    for rule in RULES.values():
        if S.RAISED in rule.sources and rule.roles <= STAFF:
            assert rule.stops_escalation


def test_types_and_priorities() -> None:
    expected = {
        "emergency_call": 1, "fall": 1, "night_bed_exit": 2, "vitals_abnormal": 2, "apnea": 2,
        "not_up": 2, "no_activity": 2, "motionless_in_bed": 2, "not_worn": 3,
        "site_offline": 2, "hub_offline": 2, "device_offline": 3, "low_battery": 4,
        "device_clock_wrong": 4, "smoke_alarm": 1, "gas_alarm": 1, "door_open_at_night": 2,
        "water_leak": 3, "device_tampered": 3, "door_unused": 3,
    }  # fmt: skip
    assert {t.value: t.priority for t in IncidentType} == expected
    for kind in DetectionKind:
        itype = IncidentType.from_detection(kind)
        assert itype.value == kind.value
        assert itype.technical is kind.technical


def test_default_window_is_a_minute() -> None:
    assert DEFAULT_CANCEL_WINDOW_S == 60.0
