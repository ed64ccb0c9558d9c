"""What ingest writes for each message, with no I/O of its own: the row in its table, a dead
letter, the aggregated rate-limit dead letters, and the pending-alarm markers written in the
batch's transaction (through :mod:`gateway.storage.ingest`). See :mod:`gateway.ingest`."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import orjson
import psycopg
from psycopg.types.json import Jsonb

from devices.protocol import (
    ALARM_EVENT_TYPES,
    AccelBatch,
    Event,
    Message,
    ProtocolError,
    Reading,
    RejectReason,
    State,
    Topic,
    decode,
)
from gateway.mqttsession import Received
from gateway.ratelimit import DeviceRateLimiter
from gateway.registry import DeviceInfo
from gateway.storage import ingest as ingest_store
from gateway.storage.writer import Row

NO_ROW = ""  # the table of a rate-limited message: no row of its own (see rate_limited_rows)


@dataclass(slots=True)
class Item:
    rec: Received
    table: str  # target table, or "dead_letters"
    row: Row
    key: tuple[object, ...] | None = None  # (device_id, msg_id) for deduplicated tables
    info: DeviceInfo | None = None
    msg: Message | None = None
    topic: Topic | None = None
    reject_reason: str | None = None
    claimed_id: str | None = None  # a rejected message's id, when it could be read
    clock_error_s: float | None = None  # an alarm stored with its receive time (see gateway.ingest)


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def accel_bytes(samples: npt.NDArray[np.float32]) -> bytes:
    milli = np.rint(np.asarray(samples, dtype=np.float32) * 1000.0)
    return bytes(np.clip(milli, -32768, 32767).astype("<i2").tobytes())


def dead_item(
    rec: Received,
    reason: str,
    detail: str,
    topic: Topic | None,
    info: DeviceInfo | None,
    *,
    payload_cap: int,
    claimed_id: str | None = None,
) -> Item:
    """A dead letter: the message refused for ``reason`` (payload kept up to ``payload_cap``)."""
    row: Row = (
        utc(rec.received_at),
        rec.topic[:512],
        topic.device if topic is not None else None,
        reason,
        detail[:500],
        len(rec.payload),
        rec.payload[:payload_cap],
    )
    return Item(
        rec, "dead_letters", row, info=info, topic=topic, reject_reason=reason,
        claimed_id=claimed_id,
    )  # fmt: skip


def alarm_with_wrong_clock(
    topic: Topic, rec: Received, info: DeviceInfo, max_payload_bytes: int
) -> tuple[Message, float] | None:
    """An alarm event whose only fault is an implausible device time: the alarm, stamped
    with the receive time (the device time kept in its data under ``clock``), and the
    clock error; None for anything else (dead-lettered as before)."""
    try:
        msg = decode(
            topic,
            rec.payload,
            info.kind,
            now=rec.received_at,
            max_payload_bytes=max_payload_bytes,
            max_future_s=math.inf,
            max_age_s=math.inf,
        )
    except ProtocolError:
        return None
    if not isinstance(msg, Event) or msg.envelope.type not in ALARM_EVENT_TYPES:
        return None
    return restamp(msg, rec.received_at)


def rate_limited_item(
    rec: Received, topic: Topic, info: DeviceInfo, claimed_id: str | None
) -> Item:
    """A message over its device's rate limit: no row of its own; the batch records one
    aggregated dead letter per device (:func:`rate_limited_rows`)."""
    return Item(
        rec, NO_ROW, (), info=info, topic=topic, reject_reason=RejectReason.RATE_LIMITED,
        claimed_id=claimed_id,
    )  # fmt: skip


def message_item(
    rec: Received, msg: Message, topic: Topic, info: DeviceInfo, clock_error: float | None
) -> Item:
    """The row of a valid message, in its table (keyed by device and message id)."""
    env = msg.envelope
    t, dev, mid, seq = utc(env.ts), env.device, env.msg_id, env.seq
    recv = utc(rec.received_at)
    key = (dev, mid)
    if isinstance(msg, Reading):
        row: Row = (
            t, dev, mid, seq, env.type, msg.presence, msg.heart_rate, msg.breathing_rate,
            msg.movement, msg.steps, msg.battery, msg.worn, recv,
        )  # fmt: skip
        return Item(rec, "readings", row, key, info, msg, topic)
    if isinstance(msg, AccelBatch):
        n = int(msg.samples.shape[0])
        row = (t, dev, mid, seq, msg.fs, n, accel_bytes(msg.samples), recv)
        return Item(rec, "accel", row, key, info, msg, topic)
    if isinstance(msg, Event):
        row = (t, dev, mid, seq, env.type, Jsonb(msg.data, dumps=_dumps), recv)
        return Item(rec, "device_events", row, key, info, msg, topic, clock_error_s=clock_error)
    assert isinstance(msg, State)
    row = (t, dev, mid, seq, msg.online, msg.battery, msg.firmware, msg.rssi, recv)
    return Item(rec, "device_state", row, key, info, msg, topic)


def claimed_msg_id(payload: bytes) -> str | None:
    """The message id a refused payload claims, if it is readable JSON with a short one."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    mid = obj.get("id") if isinstance(obj, dict) else None
    return mid if isinstance(mid, str) and 0 < len(mid) <= 64 and mid.isprintable() else None


def restamp(msg: Event, received_at: float) -> tuple[Event, float]:
    """An alarm from a wrong device clock, stamped with its receive time (the device's time
    kept in its data under ``clock``), and the clock error (device minus receive time)."""
    device_ts = msg.envelope.ts
    error = device_ts - received_at
    data = dict(msg.data)
    data["clock"] = {"device_ts_ms": round(device_ts * 1000), "error_s": round(error, 3)}
    return Event(dataclasses.replace(msg.envelope, ts=received_at), data), error


def mark_alarms(
    conn: psycopg.Connection[tuple[object, ...]],
    items: list[Item],
    fresh: dict[str, set[tuple[object, ...]]],
) -> None:
    """In the transaction that stores them: a pending-alarm marker for each new alarm event
    (``pending_alarms``, migration 0017), so no alarm acked to its device depends on memory
    until its incident exists.

    An alarm stored with its receive time (wrong device clock) has a new ``time`` on each
    retry of the device, so the events table cannot tell the copies apart: the marker's key
    (device, message id) does, and a repeat is taken out again and reported as a duplicate.
    """
    keys = fresh.get("device_events")
    repeats: set[tuple[object, ...]] = set()
    marked: set[tuple[object, ...]] = set()  # a copy twice in one batch: the first is new
    for it in items:
        msg = it.msg
        if not isinstance(msg, Event) or it.table != "device_events":
            continue
        env = msg.envelope
        if env.type not in ALARM_EVENT_TYPES or (keys is not None and it.key not in keys):
            continue
        wrong = it.clock_error_s is not None
        device_time = utc(env.ts + it.clock_error_s) if it.clock_error_s is not None else None
        new_marker = ingest_store.mark_pending_alarm(
            conn, env.device, env.msg_id, site_id=env.site, event_type=env.type,
            time=utc(env.ts), received_at=utc(it.rec.received_at), clock_wrong=wrong,
            device_time=device_time,
        )  # fmt: skip
        assert it.key is not None
        if new_marker:
            marked.add(it.key)
        elif wrong:
            ingest_store.drop_event(conn, env.device, env.msg_id, utc(env.ts))
            if it.key not in marked:
                repeats.add(it.key)
    if repeats:
        new = keys if keys is not None else {it.key for it in items if it.key is not None
                                             and it.table == "device_events"}  # fmt: skip
        fresh["device_events"] = {k for k in new if k not in repeats}


def rate_limited_rows(items: list[Item], limiter: DeviceRateLimiter | None) -> list[Row]:
    """One dead-letter row per device for a batch's rate-limited messages: how many, how many
    bytes, on which channels, since when. (A flood costs a row per batch, not per message.)"""
    by_device: dict[str, list[Item]] = {}
    for it in items:
        assert it.topic is not None
        by_device.setdefault(it.topic.device, []).append(it)
    limit = limiter.describe() if limiter is not None else "?"
    rows: list[Row] = []
    for device, its in by_device.items():
        first = its[0]
        assert first.topic is not None
        channels = Counter(it.topic.channel.value for it in its if it.topic is not None)
        size = sum(len(it.rec.payload) for it in its)
        detail = f"{len(its)} messages over the device rate limit ({limit}) dropped: " + ", ".join(
            f"{ch} {n}" for ch, n in sorted(channels.items())
        )
        rows.append(
            (utc(first.rec.received_at), first.rec.topic[:512], device,
             RejectReason.RATE_LIMITED.value, detail, min(size, 2**31 - 1), b"")
        )  # fmt: skip
    return rows


def sent_at(msg: Message) -> float:
    """When the device sent the message: an accelerometer batch is sent after its last sample."""
    ts = msg.envelope.ts
    if isinstance(msg, AccelBatch):
        return ts + float(msg.samples.shape[0]) / msg.fs
    return ts


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()
