"""The incidents aggregate's statements: ``incidents`` and their timeline (``incident_events``).

Every function runs on the caller's connection, in the caller's transaction: the workflow
service (:mod:`gateway.workflow.service`) decides what commits together (the incident, its
timeline event and its audit entry).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from gateway.facts import open_states_sql
from gateway.workflow.transitions import Action

Conn = psycopg.Connection[Any]
AsyncConn = psycopg.AsyncConnection[Any]

OPEN_SQL = open_states_sql()


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
ON CONFLICT ({{key}}, type) WHERE {OPEN_SQL} AND {{technical}}technical
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
    + OPEN_SQL
    + " ORDER BY priority, raised_at DESC LIMIT 1"
)
_INSERT_CARE = _INSERT.format(key="resident_id", technical="NOT ")
_INSERT_TECHNICAL = _INSERT.format(key="subject", technical="")
# A care incident of a place (a device bound to no resident, migration 0017): one open per
# subject (location or site) and type.
_INSERT_CARE_PLACE = _INSERT.format(key="subject", technical="resident_id IS NULL AND NOT ")

_OPEN_TECHNICAL = b"""
SELECT id FROM incidents
WHERE subject = %s AND type = %s AND technical AND state IN ('raised', 'acknowledged')
"""
# The open incident a trigger would join (the partial unique indexes of migration 0017);
# the f-string splices constants only.
_OPEN_OF = {
    key: f"SELECT id FROM incidents WHERE {col} = %s AND type = %s AND {cond} AND {OPEN_SQL}"  # noqa: S608
    for key, col, cond in (
        ("resident", "resident_id", "NOT technical"),
        ("place", "subject", "resident_id IS NULL AND NOT technical"),
        ("technical", "subject", "technical"),
    )
}
_STATE = b"SELECT state FROM incidents WHERE id = %s"
_TIMELINE = (
    b"SELECT time, kind, actor, data FROM incident_events WHERE incident_id = %s ORDER BY id"
)
_ADD_EVENT = (
    b"INSERT INTO incident_events (incident_id, time, kind, actor, data) "
    b"VALUES (%s, %s, %s, %s, %s)"
)

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
# One UPDATE per action (constants only).
_UPDATES = {
    action: (
        f"UPDATE incidents SET {', '.join(('state = %(state)s', *sets))} "  # noqa: S608
        f"WHERE id = %(id)s RETURNING {_COLUMNS}"
    ).encode()
    for action, sets in _SETS.items()
}


def raise_or_join(conn: Conn, params: Mapping[str, Any], *, key: str) -> tuple[Incident, bool]:
    """Insert an incident or join the open one (``key``: ``resident`` for a resident's care
    incident, ``place`` for a place's, ``technical``); the incident and whether it is new.
    ``params`` name the columns of the insert (``details`` a plain mapping)."""
    sql = {"resident": _INSERT_CARE, "place": _INSERT_CARE_PLACE}.get(key, _INSERT_TECHNICAL)
    values = {**params, "details": Jsonb(dict(params["details"]))}
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(sql.encode(), values).fetchone()
    assert row is not None
    created = bool(row.pop("created"))
    return Incident(**row), created


def get(conn: Conn, incident_id: int, *, for_update: bool = False) -> Incident | None:
    """The incident with that id (locked with ``for_update``), or None."""
    sql = _SELECT_FOR_UPDATE if for_update else _SELECT
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(sql.encode(), (incident_id,)).fetchone()
    return None if row is None else Incident(**row)


def update_state(
    conn: Conn,
    incident_id: int,
    action: Action,
    *,
    state: str,
    now: datetime,
    actor: str,
    responder: str | None = None,
    outcome: str | None = None,
    notes: str | None = None,
) -> Incident:
    """Move the (locked) incident to ``state`` and set the columns ``action`` sets."""
    params = {"id": incident_id, "state": state, "now": now, "actor": actor,
              "responder": responder, "outcome": outcome, "notes": notes}  # fmt: skip
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_UPDATES[action], params).fetchone()
    assert row is not None
    return Incident(**row)


def cancellable(conn: Conn, resident_id: str, types: Sequence[str]) -> int | None:
    """The resident's open incident of one of ``types`` (most urgent, newest), if any."""
    row = conn.execute(_SELECT_CANCELLABLE.encode(), (resident_id, list(types))).fetchone()
    return None if row is None else int(row[0])


def open_technical(conn: Conn, subject: str, incident_type: str) -> int | None:
    """The raised or acknowledged technical incident of ``subject`` and type, if any."""
    row = conn.execute(_OPEN_TECHNICAL, (subject, incident_type)).fetchone()
    return None if row is None else int(row[0])


def open_of(
    conn: Conn,
    incident_type: str,
    *,
    resident_id: str | None = None,
    subject: str | None = None,
    technical: bool = False,
) -> int | None:
    """The open incident of ``incident_type`` a new trigger would join: the resident's care
    incident, else the place's (``subject``), or with ``technical`` the subject's."""
    key = "resident" if resident_id is not None else "technical" if technical else "place"
    value = resident_id if resident_id is not None else subject
    row = conn.execute(_OPEN_OF[key].encode(), (value, incident_type)).fetchone()
    return None if row is None else int(row[0])


async def state_async(conn: AsyncConn, incident_id: int) -> str | None:
    """The incident's state, or None when there is no such incident."""
    cur = await conn.execute(_STATE, (incident_id,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


def timeline(conn: Conn, incident_id: int) -> list[TimelineEvent]:
    """The incident's timeline, oldest first."""
    return [TimelineEvent(*row) for row in conn.execute(_TIMELINE, (incident_id,)).fetchall()]


def add_event(
    conn: Conn, incident_id: int, kind: str, *, at: datetime, actor: str, data: Mapping[str, Any]
) -> None:
    """Append one timeline event."""
    conn.execute(_ADD_EVENT, (incident_id, at, kind, actor, Jsonb(dict(data))))
