"""The pending alarm markers (``pending_alarms``, migration 0017): stored alarms whose
incident is not known to exist yet.

The intake (:mod:`gateway.escalation.intake`) locks and handles markers in the savepoint
that raises the alarm's incident; the recovery (:mod:`gateway.escalation.recovery`) claims
markers left pending. Every function runs in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from analytics.types import DEFAULT_UTC_OFFSET_S

Conn = psycopg.Connection[Any]

_LOCK = b"""
SELECT device_id, msg_id, handled_at IS NOT NULL, extract(epoch FROM received_at),
       clock_wrong, extract(epoch FROM device_time)
FROM pending_alarms WHERE (device_id, msg_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
ORDER BY device_id, msg_id
FOR UPDATE
"""
_HANDLE = b"""
UPDATE pending_alarms
SET handled_at = now(), handled_by = %s, outcome = %s, incident_id = %s, note = %s
WHERE device_id = %s AND msg_id = %s AND handled_at IS NULL
"""
_CLAIM = b"""
SELECT p.device_id, p.msg_id, p.site_id, p.type, extract(epoch FROM p.time),
       extract(epoch FROM p.received_at), p.clock_wrong, extract(epoch FROM p.device_time),
       d.kind, coalesce(d.location_id, b.location_id), coalesce(d.resident_id, r.resident_id),
       d.bed_id, coalesce(s.utc_offset_s, %(default_offset)s),
       (SELECT e.data FROM device_events e
        WHERE e.device_id = p.device_id AND e.msg_id = p.msg_id AND e.time = p.time LIMIT 1)
FROM pending_alarms p
LEFT JOIN devices d ON d.device_id = p.device_id
LEFT JOIN beds b ON b.bed_id = d.bed_id
LEFT JOIN residents r ON r.bed_id = d.bed_id
LEFT JOIN sites s ON s.site_id = p.site_id
WHERE p.handled_at IS NULL AND p.created_at < now() - %(grace)s * interval '1 second'
  AND (p.type <> 'fall' OR p.created_at < now() - %(fall_window)s * interval '1 second')
  AND (%(sites)s::text[] IS NULL OR p.site_id = ANY(%(sites)s::text[]))
ORDER BY p.created_at
LIMIT %(limit)s
FOR UPDATE OF p SKIP LOCKED
"""
# "I'm OK" from any device of the same resident (or bed, or the device itself).
_CANCEL = b"""
SELECT extract(epoch FROM min(e.time))
FROM device_events e JOIN devices d ON d.device_id = e.device_id
LEFT JOIN residents r ON r.bed_id = d.bed_id
WHERE e.type = 'cancel' AND e.time >= %(from)s AND e.time <= %(to)s
  AND coalesce(d.resident_id, r.resident_id, d.bed_id, d.device_id) = %(subject)s
"""
_MARK_CANCELLED = b"""
UPDATE pending_alarms SET handled_at = now(), handled_by = 'recovery', outcome = 'cancelled',
    note = %s
WHERE device_id = %s AND msg_id = %s AND handled_at IS NULL
"""
_PENDING_COUNT = b"""
SELECT count(*) FROM pending_alarms
WHERE handled_at IS NULL AND (%s::text[] IS NULL OR site_id = ANY(%s::text[]))
"""


@dataclass(frozen=True, slots=True)
class Marker:
    """An unhandled marker locked by the intake."""

    device_id: str
    msg_id: str
    received_at: float
    clock_wrong: bool
    device_time: float | None


@dataclass(frozen=True, slots=True)
class PendingAlarm:
    """One claimed marker with the device's current binding."""

    device_id: str
    msg_id: str
    site_id: str
    type: str
    time: float
    received_at: float
    clock_wrong: bool
    device_time: float | None
    kind: str | None
    location_id: str | None
    resident_id: str | None
    bed_id: str | None
    utc_offset_s: float
    data: Mapping[str, Any] = field(default_factory=dict)
    """The stored event's data (a gas alarm's ``level``); empty if the event is gone."""

    @property
    def subject(self) -> str:
        """The analysis's subject for the device (resident, else bed, else the device)."""
        return self.resident_id or self.bed_id or self.device_id


def lock(conn: Conn, alarms: Sequence[tuple[str, str]]) -> tuple[list[Marker], bool]:
    """Lock the alarms' markers: (the unhandled ones, whether any was already handled).

    Waits for a path that holds one (the recovery's transaction), then sees its outcome."""
    devices = [d for d, _ in alarms]
    msgs = [m for _, m in alarms]
    pending: list[Marker] = []
    handled = False
    for dev, mid, done, received, wrong, device_time in conn.execute(
        _LOCK, (devices, msgs)
    ).fetchall():
        if done:
            handled = True
        else:
            pending.append(
                Marker(str(dev), str(mid), float(received), bool(wrong),
                       None if device_time is None else float(device_time))
            )  # fmt: skip
    return pending, handled


def handle(
    conn: Conn,
    markers: Sequence[Marker],
    by: str,
    outcome: str,
    incident_id: int | None,
    *,
    note: str | None,
) -> None:
    """Mark the (locked) markers handled with their outcome and incident."""
    for m in markers:
        conn.execute(_HANDLE, (by, outcome, incident_id, note, m.device_id, m.msg_id))


def claim(
    conn: Conn,
    grace_s: float,
    fall_window_s: float,
    limit: int,
    sites: Sequence[str] | None = None,
) -> list[PendingAlarm]:
    """Lock up to ``limit`` markers pending longer than ``grace_s`` (fall flags: also longer
    than their confirmation window), oldest first, skipping those another path holds; only
    markers of ``sites`` when given (a cell's gateway, :mod:`gateway.cells`)."""
    rows = conn.execute(
        _CLAIM,
        {
            "grace": grace_s,
            "fall_window": fall_window_s,
            "limit": limit,
            "default_offset": int(DEFAULT_UTC_OFFSET_S),
            "sites": None if sites is None else list(sites),
        },
    ).fetchall()
    return [
        PendingAlarm(
            str(dev),
            str(mid),
            str(site),
            str(type_),
            float(t),
            float(recv),
            bool(wrong),
            None if dtime is None else float(dtime),
            None if kind is None else str(kind),
            None if loc is None else str(loc),
            None if res is None else str(res),
            None if bed is None else str(bed),
            float(off),
            data if isinstance(data, dict) else {},
        )
        for dev, mid, site, type_, t, recv, wrong, dtime, kind, loc, res, bed, off, data in rows
    ]


def first_cancel(conn: Conn, subject: str, start: datetime, end: datetime) -> float | None:
    """When ``subject`` first said "I'm OK" between ``start`` and ``end`` (unix s), if at all."""
    row = conn.execute(_CANCEL, {"from": start, "to": end, "subject": subject}).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def mark_cancelled(conn: Conn, device_id: str, msg_id: str, note: str) -> None:
    """The resident cancelled the alarm: handled by the recovery, nothing raised."""
    conn.execute(_MARK_CANCELLED, (note, device_id, msg_id))


def pending_count(conn: Conn, sites: Sequence[str] | None = None) -> int:
    """Markers not handled yet (of ``sites`` when given)."""
    only = None if sites is None else list(sites)
    row = conn.execute(_PENDING_COUNT, (only, only)).fetchone()
    return 0 if row is None else int(row[0])


_PRUNE_HANDLED = b"""
DELETE FROM pending_alarms
WHERE handled_at IS NOT NULL AND handled_at < now() - %s * interval '1 day'
"""


def prune_handled(conn: Conn, days: int) -> int:
    """Drop the markers handled more than ``days`` ago (the record of what became of each
    alarm lives as long as the alarm events themselves); an unhandled marker is never
    dropped, however old. Returns how many went."""
    return conn.execute(_PRUNE_HANDLED, (days,)).rowcount
