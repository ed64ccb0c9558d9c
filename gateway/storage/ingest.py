"""Ingest's own statements in the batch's transaction, beside the bulk writes of
:mod:`gateway.storage.writer`: the pending-alarm markers (``pending_alarms``, migration 0017)."""

from __future__ import annotations

from datetime import datetime

import psycopg

_MARK_ALARM = b"""
INSERT INTO pending_alarms (device_id, msg_id, site_id, type, time, received_at, clock_wrong,
                            device_time)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (device_id, msg_id) DO NOTHING
RETURNING device_id, msg_id
"""
_DROP_EVENT = b"DELETE FROM device_events WHERE device_id = %s AND msg_id = %s AND time = %s"


def mark_pending_alarm(
    conn: psycopg.Connection[tuple[object, ...]],
    device_id: str,
    msg_id: str,
    *,
    site_id: str,
    event_type: str,
    time: datetime,
    received_at: datetime,
    clock_wrong: bool,
    device_time: datetime | None,
) -> bool:
    """Mark a stored alarm as pending its incident; False when its marker exists already."""
    row = conn.execute(
        _MARK_ALARM,
        (device_id, msg_id, site_id, event_type, time, received_at, clock_wrong, device_time),
    ).fetchone()
    return row is not None


def drop_event(
    conn: psycopg.Connection[tuple[object, ...]], device_id: str, msg_id: str, time: datetime
) -> None:
    """Take one stored event row out again (a repeat of an alarm stored under a new time)."""
    conn.execute(_DROP_EVENT, (device_id, msg_id, time))
