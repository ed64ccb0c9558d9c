"""Stored messages read back for the analysis runner's start-up replay, one loader a table.

Each loader returns :class:`~gateway.ingest.StoredMessage` values rebuilt from its table,
for the devices of the registry given (rows of devices not in it are skipped);
:class:`gateway.analysis.PostgresStore` picks the windows and sorts the whole in receive
order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from devices.protocol import AccelBatch, Channel, Envelope, Event, Reading, State
from gateway.analysis.records import Conn, opt_float, opt_int
from gateway.ingest import StoredMessage
from gateway.registry import DeviceInfo

Devices = Mapping[str, DeviceInfo]

_SPARSE_READINGS = """
SELECT extract(epoch FROM time), device_id, msg_id, seq, type, presence, heart_rate,
       breathing_rate, movement, steps, battery, worn, extract(epoch FROM received_at)
FROM readings
WHERE device_id = ANY(%s) AND time >= %s AND time < %s
  AND (type = 'heartbeat' OR (type = 'steps' AND steps > 0))
"""
_THINNED_VITALS = """
SELECT extract(epoch FROM max(time)), device_id, (array_agg(presence ORDER BY time DESC))[1],
       max(movement), extract(epoch FROM max(received_at))
FROM readings
WHERE device_id = ANY(%s) AND type = 'vitals' AND time >= %s AND time < %s
GROUP BY device_id, floor(extract(epoch FROM time) / %s)
"""
_RECENT_READINGS = """
SELECT extract(epoch FROM time), device_id, msg_id, seq, type, presence, heart_rate,
       breathing_rate, movement, steps, battery, worn, extract(epoch FROM received_at)
FROM readings WHERE time >= %s
"""
_EVENTS = """
SELECT extract(epoch FROM time), device_id, msg_id, seq, type, data,
       extract(epoch FROM received_at)
FROM device_events WHERE time >= %s
"""
_STATES = """
SELECT extract(epoch FROM time), device_id, msg_id, seq, online, battery, firmware, rssi,
       extract(epoch FROM received_at)
FROM device_state WHERE time >= %s
"""
_ACCEL = """
SELECT extract(epoch FROM time), device_id, msg_id, seq, fs, n, samples,
       extract(epoch FROM received_at)
FROM accel WHERE time >= %s
"""


def _reading(devices: Devices, row: tuple[Any, ...]) -> StoredMessage | None:
    t, dev, mid, seq, type_, presence, hr, rr, movement, steps, battery, worn, received = row
    info = devices.get(str(dev))
    if info is None:
        return None
    env = Envelope(
        info.site_id, info.device_id, Channel.TELEMETRY, str(mid), int(seq), float(t), str(type_)
    )
    reading = Reading(
        env,
        presence,
        opt_float(hr),
        opt_float(rr),
        opt_float(movement),
        None if steps is None else int(steps),
        opt_int(battery),
        worn,
    )
    return StoredMessage(info, reading, float(received))


def _readings(devices: Devices, rows: Sequence[tuple[Any, ...]]) -> list[StoredMessage]:
    return [sm for row in rows if (sm := _reading(devices, row)) is not None]


def sparse_readings(
    conn: Conn, devices: Devices, device_ids: Sequence[str], since: datetime, until: datetime
) -> list[StoredMessage]:
    """Heartbeats and non-zero step counts of ``device_ids`` in ``[since, until)``."""
    return _readings(devices, conn.execute(_SPARSE_READINGS, (device_ids, since, until)).fetchall())


def recent_readings(conn: Conn, devices: Devices, since: datetime) -> list[StoredMessage]:
    """Every reading from ``since`` on."""
    return _readings(devices, conn.execute(_RECENT_READINGS, (since,)).fetchall())


def thinned_vitals(
    conn: Conn,
    devices: Devices,
    device_ids: Sequence[str],
    since: datetime,
    until: datetime,
    *,
    step_s: float,
) -> list[StoredMessage]:
    """Bed readings of ``device_ids`` in ``[since, until)``, one per ``step_s`` (the last
    presence and the largest movement of the step; no vital signs)."""
    out: list[StoredMessage] = []
    for t, dev, presence, movement, received in conn.execute(
        _THINNED_VITALS, (device_ids, since, until, step_s)
    ).fetchall():
        info = devices.get(str(dev))
        if info is not None:
            env = Envelope(info.site_id, info.device_id, Channel.TELEMETRY, "rebuild", 0,
                           float(t), "vitals")  # fmt: skip
            out.append(StoredMessage(info, Reading(env, bool(presence), None, None,
                                                   float(movement)), float(received)))  # fmt: skip
    return out


def events(conn: Conn, devices: Devices, since: datetime) -> list[StoredMessage]:
    """Device events from ``since`` on (an alarm keeps its stored clock error)."""
    out: list[StoredMessage] = []
    for t, dev, mid, seq, type_, data, received in conn.execute(_EVENTS, (since,)).fetchall():
        info = devices.get(str(dev))
        if info is not None:
            env = Envelope(info.site_id, info.device_id, Channel.EVENT, str(mid), int(seq),
                           float(t), str(type_))  # fmt: skip
            clock = data.get("clock")  # an alarm stored with its receive time (ingest)
            error = clock.get("error_s") if isinstance(clock, dict) else None
            wrong = float(error) if isinstance(error, int | float) else None
            out.append(StoredMessage(info, Event(env, dict(data)), float(received), wrong))
    return out


def states(conn: Conn, devices: Devices, since: datetime) -> list[StoredMessage]:
    """Connection states from ``since`` on."""
    out: list[StoredMessage] = []
    for t, dev, mid, seq, online, battery, fw, rssi, received in conn.execute(
        _STATES, (since,)
    ).fetchall():
        info = devices.get(str(dev))
        if info is not None:
            env = Envelope(info.site_id, info.device_id, Channel.STATE, str(mid), int(seq),
                           float(t), "online" if online else "offline")  # fmt: skip
            state = State(env, bool(online), opt_int(battery), fw, opt_int(rssi))
            out.append(StoredMessage(info, state, float(received)))
    return out


def accel(conn: Conn, devices: Devices, since: datetime) -> list[StoredMessage]:
    """Accelerometer batches from ``since`` on (stored as little-endian milli-g)."""
    out: list[StoredMessage] = []
    for t, dev, mid, seq, fs, n, raw, received in conn.execute(_ACCEL, (since,)).fetchall():
        info = devices.get(str(dev))
        if info is not None:
            milli = np.frombuffer(raw, dtype="<i2").reshape(int(n), 3)
            samples = (milli.astype(np.float32) / np.float32(1000.0)).astype(np.float32)
            env = Envelope(info.site_id, info.device_id, Channel.TELEMETRY, str(mid),
                           int(seq), float(t), "accel")  # fmt: skip
            out.append(StoredMessage(info, AccelBatch(env, float(fs), samples), float(received)))
    return out
