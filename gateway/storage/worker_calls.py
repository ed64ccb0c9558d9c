"""SQL of the community worker's calls (migration 0040): the ``incident_calls`` rows a
worker places from their page about an elder (``resident_id``), from a door-knock task
(``task_id``) and, when that task was raised from an incident, about the incident too.

No phone number is stored (callee kind and id only); the numbers are read through
:func:`gateway.storage.incident_calls.callees` when the call is placed. Functions run in the
caller's transaction and return plain rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from gateway.storage.incident_calls import CallFields

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class WorkerCallRow(CallFields):
    """One call a worker placed about an elder (from a door-knock task, and so about its
    incident, when it came from one) and the outcome recorded for it (no number)."""

    resident_id: str
    task_id: int | None
    incident_id: int | None


@dataclass(frozen=True, slots=True)
class TaskRow:
    """What a call needs of a door-knock task: its elder, worker, incident and state."""

    id: int
    resident_id: str
    worker_id: str | None
    incident_id: int | None
    state: str


_COLUMNS = (
    "id, resident_id, task_id, incident_id, caller_id, callee_kind, callee_ref, channel, "
    "status, detail, provider_call_id, placed_at, outcome, outcome_note, outcome_by, outcome_at"
)
# The f-strings below splice the column list (a constant), never input.
_INSERT = (
    "INSERT INTO incident_calls (resident_id, task_id, incident_id, caller_id, callee_kind, "  # noqa: S608
    "callee_ref, channel, status, detail, provider_call_id, placed_at, outcome, outcome_by, "
    "outcome_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    f"RETURNING {_COLUMNS}"
)
_SELECT = f"SELECT {_COLUMNS} FROM incident_calls WHERE resident_id IS NOT NULL"  # noqa: S608
_SET_OUTCOME = (
    "UPDATE incident_calls SET outcome = %s, outcome_note = %s, outcome_by = %s, "  # noqa: S608
    f"outcome_at = %s WHERE id = %s RETURNING {_COLUMNS}"
)


def task(conn: Conn, task_id: int) -> TaskRow | None:
    """A door-knock task's elder, worker, incident and state."""
    with conn.cursor(row_factory=class_row(TaskRow)) as cur:
        return cur.execute(
            "SELECT id, resident_id, worker_id, incident_id, state FROM door_knock_tasks "
            "WHERE id = %s",
            (task_id,),
        ).fetchone()


def insert_call(
    conn: Conn,
    resident_id: str,
    *,
    task_id: int | None,
    incident_id: int | None,
    caller_id: str,
    callee_kind: str,
    callee_ref: str,
    channel: str,
    status: str,
    detail: str | None,
    provider_call_id: str | None,
    placed_at: datetime,
    outcome: str | None = None,
) -> WorkerCallRow:
    """Store one attempt (an outcome only when the adapter already knows it)."""
    with conn.cursor(row_factory=class_row(WorkerCallRow)) as cur:
        row = cur.execute(
            _INSERT,
            (resident_id, task_id, incident_id, caller_id, callee_kind, callee_ref, channel,
             status, detail, provider_call_id, placed_at, outcome,
             None if outcome is None else "system", None if outcome is None else placed_at),
        ).fetchone()  # fmt: skip
    assert row is not None
    return row


def get_call(conn: Conn, call_id: int, *, for_update: bool = False) -> WorkerCallRow | None:
    """One call made about an elder (None for a console call made about an incident only)."""
    lock = " FOR UPDATE" if for_update else ""
    with conn.cursor(row_factory=class_row(WorkerCallRow)) as cur:
        return cur.execute(_SELECT + " AND id = %s" + lock, (call_id,)).fetchone()


def set_outcome(
    conn: Conn, call_id: int, *, outcome: str, note: str | None, by: str, at: datetime
) -> WorkerCallRow:
    """Record what came of a call."""
    with conn.cursor(row_factory=class_row(WorkerCallRow)) as cur:
        row = cur.execute(_SET_OUTCOME, (outcome, note, by, at, call_id)).fetchone()
    assert row is not None
    return row


def calls_of(
    conn: Conn, resident_id: str, caller_id: str, *, limit: int = 20
) -> list[WorkerCallRow]:
    """The caller's latest calls about the elder, newest first."""
    with conn.cursor(row_factory=class_row(WorkerCallRow)) as cur:
        return cur.execute(
            _SELECT + " AND resident_id = %s AND caller_id = %s ORDER BY id DESC LIMIT %s",
            (resident_id, caller_id, limit),
        ).fetchall()
