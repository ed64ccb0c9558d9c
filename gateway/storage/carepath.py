"""Read-only queries behind the care-path metrics (gateway.carepath_metrics).

Every query is cheap at any table size: the event tables are read incrementally by their
identity key (``id > floor``, primary-key range scans), and the gauges read only the rows of
partial indexes (open incidents, due outbox rows, running escalation timers), which hold what
is in flight, never the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import Connection

# Incident timeline events with their incident's type and priority; for an acknowledgement,
# the time it took (seconds from raised to acknowledged). The events are taken by primary-key
# range first and each incident is looked up by its key (LIMIT 1 keeps the lookup a nested
# loop): a hash join over the whole incidents table would grow with the history.
_INCIDENT_EVENTS = """
SELECT e.id, e.kind, i.type, i.priority,
       CASE WHEN e.kind = 'acknowledged'
            THEN extract(epoch FROM coalesce(i.acknowledged_at, e.time) - i.raised_at)::float8
       END
FROM (SELECT id, incident_id, kind, time FROM incident_events
      WHERE id > %s ORDER BY id LIMIT %s) e
CROSS JOIN LATERAL (SELECT type, priority, raised_at, acknowledged_at FROM incidents
                    WHERE id = e.incident_id LIMIT 1) i
ORDER BY e.id
"""

# Escalation steps from the audit log (the worker appends one entry per tier reached).
_ESCALATION_TIERS = """
SELECT seq, CASE WHEN action = 'escalation.tier' THEN data->>'tier' END
FROM audit_log WHERE seq > %s ORDER BY seq LIMIT %s
"""

_STAFF_PAGES = "SELECT id, kind FROM staff_pages WHERE id > %s ORDER BY id LIMIT %s"

_NOTIFICATION_ATTEMPTS = """
SELECT id, channel, result FROM notification_attempts WHERE id > %s ORDER BY id LIMIT %s
"""

# Open, unacknowledged incidents. One branch per partial index of open incidents
# (incidents_open_care, incidents_open_technical, migration 0010): each reads only what is open.
_UNACKNOWLEDGED = """
SELECT false, priority, count(*), extract(epoch FROM now() - min(raised_at))::float8
FROM incidents WHERE state = 'raised' AND NOT technical GROUP BY priority
UNION ALL
SELECT true, priority, count(*), extract(epoch FROM now() - min(raised_at))::float8
FROM incidents WHERE state = 'raised' AND technical GROUP BY priority
"""

# Rows waiting to be sent; ``overdue`` is how late the most overdue due row is. Incident
# rows only: a monthly platform push waiting out a platform outage is not a stuck alarm path.
_OUTBOX = """
SELECT count(*),
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8,
       coalesce(greatest(extract(epoch FROM now() - min(next_attempt_at)), 0), 0)::float8
FROM notification_outbox WHERE state IN ('pending', 'sending') AND kind = 'incident'
"""

# The same figures for the outbox's other messages (visit notices, the platform push), by
# kind: their own gauges and a milder alert (partial index notification_outbox_messages_due_idx).
_MESSAGES = """
SELECT kind, count(*),
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8,
       coalesce(greatest(extract(epoch FROM now() - min(next_attempt_at)), 0), 0)::float8
FROM notification_outbox WHERE state IN ('pending', 'sending') AND kind <> 'incident'
GROUP BY kind
"""

_ESCALATIONS = """
SELECT count(*),
       coalesce(greatest(extract(epoch FROM now() - min(next_at)), 0), 0)::float8
FROM incident_escalations WHERE stopped_at IS NULL
"""

# The newest identity value of each event table: where counting starts.
_MAX_IDS = """
SELECT (SELECT coalesce(max(id), 0) FROM incident_events),
       (SELECT coalesce(max(seq), 0) FROM audit_log),
       (SELECT coalesce(max(id), 0) FROM staff_pages),
       (SELECT coalesce(max(id), 0) FROM notification_attempts)
"""

EVENT_STREAMS = ("incident_events", "escalation_tiers", "staff_pages", "notification_attempts")
_STREAM_SQL = dict(
    zip(
        EVENT_STREAMS,
        (_INCIDENT_EVENTS, _ESCALATION_TIERS, _STAFF_PAGES, _NOTIFICATION_ATTEMPTS),
        strict=True,
    )
)


@dataclass(frozen=True, slots=True)
class Unacknowledged:
    technical: bool
    priority: int
    count: int
    oldest_age_s: float


@dataclass(frozen=True, slots=True)
class MessageBacklog:
    """Non-incident outbox rows of one kind waiting to be sent."""

    kind: str
    depth: int
    oldest_age_s: float
    overdue_s: float


@dataclass(frozen=True, slots=True)
class InFlight:
    """What is waiting now: unacknowledged incidents, the outbox (incident rows; the other
    messages by kind), escalation timers."""

    unacknowledged: list[Unacknowledged]
    outbox_depth: int
    outbox_oldest_age_s: float
    outbox_overdue_s: float
    escalations_running: int
    escalations_overdue_s: float
    messages: tuple[MessageBacklog, ...] = ()  # kinds with rows waiting only


def max_ids(conn: Connection[Any]) -> dict[str, int]:
    row = conn.execute(_MAX_IDS).fetchone()
    assert row is not None
    return dict(zip(EVENT_STREAMS, (int(v) for v in row), strict=True))


def events_after(
    conn: Connection[Any], stream: str, after: int, limit: int
) -> list[tuple[Any, ...]]:
    """Rows of one event stream with an id above ``after``, by id (first column the id)."""
    return conn.execute(_STREAM_SQL[stream], (after, limit)).fetchall()


def in_flight(conn: Connection[Any]) -> InFlight:
    unacked = [
        Unacknowledged(bool(t), int(p), int(n), float(age))
        for t, p, n, age in conn.execute(_UNACKNOWLEDGED).fetchall()
    ]
    outbox = conn.execute(_OUTBOX).fetchone()
    messages = tuple(
        MessageBacklog(str(k), int(n), float(age), float(late))
        for k, n, age, late in conn.execute(_MESSAGES).fetchall()
    )
    esc = conn.execute(_ESCALATIONS).fetchone()
    assert outbox is not None and esc is not None
    return InFlight(
        unacknowledged=unacked,
        outbox_depth=int(outbox[0]),
        outbox_oldest_age_s=float(outbox[1]),
        outbox_overdue_s=float(outbox[2]),
        escalations_running=int(esc[0]),
        escalations_overdue_s=float(esc[1]),
        messages=messages,
    )
