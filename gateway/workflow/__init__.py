"""The incident workflow: a pure transition table and a service that persists it."""

from gateway.workflow.transitions import (
    Action,
    IllegalTransitionError,
    IncidentType,
    Outcome,
    Role,
    State,
    WorkflowError,
    next_state,
)

__all__ = [
    "Action",
    "IllegalTransitionError",
    "IncidentType",
    "Outcome",
    "Role",
    "State",
    "WorkflowError",
    "next_state",
]
