"""Ingest: MQTT message → decode and validate → batched durable write → broker ack.

Flow (one writer thread; paho's network thread only enqueues):

1. ``enqueue`` (network thread) puts the raw message on the queue. The queue is bounded by
   the broker, not here: at most ``mqtt.receive_maximum`` QoS 1 messages can be unacked and
   in flight to us, and nothing is acked before it is stored.
2. The writer collects up to ``ingest.batch_size`` messages or ``ingest.max_delay_ms``,
   decodes each against the device registry and protocol, and turns bad input into
   dead-letter rows (with a reason and a counter), never an exception.
3. One transaction stores the batch (binary COPY; duplicates stored once), then commits.
4. Only then: PUBACK every message of the batch, publish the application-level ack for each
   event (``stored`` / ``duplicate`` / ``rejected``), hand the new messages to the analysis
   sink.

If the database is unreachable the writer retries the same batch with backoff, logging the
outage once and the recovery once; nothing is acked meanwhile, so the broker keeps
everything. A batch the database refuses for its content (not a connection problem) is split
until the offending message is found, which goes to dead letters (``storage_rejected``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import orjson
import psycopg
from psycopg.types.json import Jsonb

from devices.protocol import (
    AccelBatch,
    Channel,
    DeviceConfig,
    Event,
    Message,
    ProtocolError,
    Reading,
    RejectReason,
    State,
    Topic,
    config_topic,
    decode,
    encode_ack,
    encode_config,
    format_topic,
    parse_topic,
)
from gateway.metrics import Metrics
from gateway.mqttsession import MqttSession, Received
from gateway.registry import DeviceInfo, RegistryCache
from gateway.settings import DatabaseSettings, IngestSettings
from gateway.storage.writer import BatchWriter, Row

log = logging.getLogger(__name__)

STORAGE_REJECTED = "storage_rejected"
T = TypeVar("T")
_POLL_S = 0.002  # how often the idle writer looks for new messages


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message that is now durably stored, for the analysis runner."""

    device: DeviceInfo
    message: Message
    received_at: float


Sink = Callable[[Sequence[StoredMessage]], None]


@dataclass(slots=True)
class _Item:
    rec: Received
    table: str  # target table, or "dead_letters"
    row: Row
    key: tuple[object, ...] | None = None  # (device_id, msg_id) for deduplicated tables
    info: DeviceInfo | None = None
    msg: Message | None = None
    topic: Topic | None = None
    reject_reason: str | None = None
    claimed_id: str | None = None  # a rejected message's id, when it could be read


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _accel_bytes(samples: npt.NDArray[np.float32]) -> bytes:
    milli = np.rint(np.asarray(samples, dtype=np.float32) * 1000.0)
    return bytes(np.clip(milli, -32768, 32767).astype("<i2").tobytes())


class IngestPipeline:
    """Owns the writer thread. ``enqueue`` is the MQTT session's message callback."""

    def __init__(
        self,
        db: DatabaseSettings,
        settings: IngestSettings,
        prefix: str,
        metrics: Metrics,
        sink: Sink | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._prefix = prefix
        self._metrics = metrics
        self._sink = sink
        # Filled by paho's network thread, drained by the writer: deque appends and pops are
        # atomic, so no lock is taken per message. Its length is bounded by the broker: at most
        # mqtt.receive_maximum QoS 1 messages can be unacknowledged, and nothing is acked
        # before it is stored.
        self._buffer: deque[Received] = deque()
        self._session: MqttSession | None = None
        self._registry = RegistryCache(settings.registry_refresh_s)
        self._last_seq: dict[str, int] = {}
        self._configs_sent: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._writer: BatchWriter | None = None
        self._db_down_since: float | None = None
        self._error: BaseException | None = None
        self.stored_batches = 0

    # wiring ---------------------------------------------------------------------------------

    def attach(self, session: MqttSession) -> None:
        self._session = session

    def enqueue(self, rec: Received) -> None:
        self._buffer.append(rec)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the batch in hand (stored and acked), leave the rest to redelivery."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self._conn is not None:
            self._conn.close()

    @property
    def failed(self) -> BaseException | None:
        return self._error

    @property
    def database_up(self) -> bool:
        return self._db_down_since is None

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # writer thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self._collect()
                self._metrics.queue_depth.set(len(self._buffer))
                if self._registry.due():
                    self._with_db(self._registry.refresh)
                    self._publish_configs()
                if batch:
                    self._process(batch)
        except _StopRequestedError:
            log.info(
                "ingest writer stopped during a database outage; unstored messages stay unacked"
            )
        except BaseException as exc:  # a bug, not bad input: fail the process loudly
            self._error = exc
            log.exception("ingest writer stopped by an unexpected error")
            raise

    def _publish_configs(self) -> None:
        """Publish each device's receiver-set heartbeat interval, retained, when it changes.

        Like a SCAIP receiver, the gateway tells every device with an interval in the registry
        how often to send heartbeats (protocol doc, "Heartbeats and configuration"); the
        broker keeps it retained, so a device gets it on every (re)subscribe. Only changes
        are published, so this costs nothing in the steady state.
        """
        session = self._session
        if session is None or not session.connected.is_set():
            return
        for dev in self._registry.devices.values():
            interval = dev.heartbeat_interval_s
            if interval is None or self._configs_sent.get(dev.device_id) == interval:
                continue
            try:
                payload = encode_config(DeviceConfig(heartbeat_s=interval))
            except ValueError:
                log.warning(
                    "device heartbeat interval out of the protocol's range; not sent",
                    extra={"device": dev.device_id, "heartbeat_interval_s": interval},
                )
                self._configs_sent[dev.device_id] = interval
                continue
            session.publish(
                config_topic(self._prefix, dev.site_id, dev.device_id), payload, retain=True
            )
            self._configs_sent[dev.device_id] = interval

    def _collect(self) -> list[Received]:
        """Up to batch_size messages, waiting at most max_delay_ms after the first one."""
        buf = self._buffer
        if not buf:
            deadline = time.monotonic() + 0.2
            while not buf and time.monotonic() < deadline and not self._stop.is_set():
                time.sleep(_POLL_S)
            if not buf:
                return []
        limit = self._settings.batch_size
        deadline = time.monotonic() + self._settings.max_delay_ms / 1000.0
        while len(buf) < limit and time.monotonic() < deadline:
            time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
        popleft = buf.popleft
        return [popleft() for _ in range(min(limit, len(buf)))]

    def _process(self, batch: list[Received]) -> None:
        items = [self._decode(rec) for rec in batch]
        fresh = self._with_db(lambda conn: self._store(items))
        committed = time.time()
        self._after_commit(items, fresh, committed)

    # decoding ----------------------------------------------------------------------------------

    def _dead(
        self,
        rec: Received,
        reason: str,
        detail: str,
        topic: Topic | None,
        info: DeviceInfo | None,
        *,
        claimed_id: str | None = None,
    ) -> _Item:
        cap = self._settings.dead_letter_payload_bytes
        row: Row = (
            _utc(rec.received_at),
            rec.topic[:512],
            topic.device if topic is not None else None,
            reason,
            detail[:500],
            len(rec.payload),
            rec.payload[:cap],
        )
        return _Item(
            rec, "dead_letters", row, info=info, topic=topic, reject_reason=reason,
            claimed_id=claimed_id,
        )  # fmt: skip

    def _decode(self, rec: Received) -> _Item:
        try:
            topic = parse_topic(rec.topic, self._prefix)
        except ProtocolError as exc:
            return self._dead(rec, exc.reason, exc.detail, None, None)
        info = self._registry.get(topic.device)
        if info is None and self._registry.may_refresh_for_unknown():
            self._with_db(self._registry.refresh)
            info = self._registry.get(topic.device)
        if info is None:
            return self._dead(
                rec, RejectReason.UNKNOWN_DEVICE, "device is not in the registry", topic, None
            )
        if info.site_id != topic.site:
            return self._dead(
                rec,
                RejectReason.IDENTITY_MISMATCH,
                "topic site differs from the device's registered site",
                topic,
                info,
            )
        s = self._settings
        try:
            msg = decode(
                topic,
                rec.payload,
                info.kind,
                now=rec.received_at,
                max_payload_bytes=s.max_payload_bytes,
                max_future_s=s.max_future_s,
                max_age_s=s.max_age_s,
            )
        except ProtocolError as exc:
            return self._dead(rec, exc.reason, exc.detail, topic, info, claimed_id=exc.msg_id)
        env = msg.envelope
        last = self._last_seq.get(info.device_id)
        if last is not None and env.seq < last:
            self._metrics.out_of_order.inc()
        else:
            self._last_seq[info.device_id] = env.seq
        t, dev, mid, seq = _utc(env.ts), env.device, env.msg_id, env.seq
        recv = _utc(rec.received_at)
        key = (dev, mid)
        if isinstance(msg, Reading):
            row: Row = (
                t, dev, mid, seq, env.type, msg.presence, msg.heart_rate, msg.breathing_rate,
                msg.movement, msg.steps, msg.battery, msg.worn, recv,
            )  # fmt: skip
            return _Item(rec, "readings", row, key, info, msg, topic)
        if isinstance(msg, AccelBatch):
            n = int(msg.samples.shape[0])
            row = (t, dev, mid, seq, msg.fs, n, _accel_bytes(msg.samples), recv)
            return _Item(rec, "accel", row, key, info, msg, topic)
        if isinstance(msg, Event):
            row = (t, dev, mid, seq, env.type, Jsonb(msg.data, dumps=_dumps), recv)
            return _Item(rec, "device_events", row, key, info, msg, topic)
        assert isinstance(msg, State)
        row = (t, dev, mid, seq, msg.online, msg.battery, msg.firmware, msg.rssi, recv)
        return _Item(rec, "device_state", row, key, info, msg, topic)

    # storing -------------------------------------------------------------------------------

    def _store(self, items: list[_Item]) -> dict[str, set[tuple[object, ...]]]:
        """Store all items; content the database refuses is isolated into dead letters."""
        assert self._writer is not None
        rows: dict[str, list[Row]] = {}
        for it in items:
            rows.setdefault(it.table, []).append(it.row)
        started = time.perf_counter()
        try:
            fresh = self._writer.write(rows)
        except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError) as exc:
            if len(items) == 1:
                it = items[0]
                log.warning(
                    "database refused a message; dead-lettered",
                    extra={"error": type(exc).__name__, "table": it.table},
                )
                items[0] = self._dead(
                    it.rec, STORAGE_REJECTED, type(exc).__name__, it.topic, it.info
                )
                return self._store(items)
            mid = len(items) // 2
            left, right = items[:mid], items[mid:]
            fresh = self._store(left)
            for table, keys in self._store(right).items():
                fresh.setdefault(table, set()).update(keys)
            items[:] = left + right
            return fresh
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        return fresh

    def _with_db(self, fn: Callable[[psycopg.Connection[tuple[object, ...]]], T]) -> T:
        """Run ``fn`` on the writer's connection, retrying through database outages."""
        delay = self._db.retry_min_s
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self._db.conninfo(), autocommit=False)
                    self._writer = BatchWriter(self._conn)
                result = fn(self._conn)
                if self._db_down_since is not None:
                    log.warning(
                        "database available again",
                        extra={"outage_s": round(time.monotonic() - self._db_down_since, 3)},
                    )
                    self._db_down_since = None
                self._metrics.db_up.set(1)
                return result
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if self._db_down_since is None:
                    self._db_down_since = time.monotonic()
                    self._metrics.db_up.set(0)
                    self._metrics.db_outages.inc()
                    log.error(
                        "database unavailable; holding messages unacknowledged",
                        extra={"error": type(exc).__name__},
                    )
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if self._stop.is_set():
                    raise _StopRequestedError from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self._db.retry_max_s)

    # after commit ------------------------------------------------------------------------------

    def _after_commit(
        self, items: list[_Item], fresh: dict[str, set[tuple[object, ...]]], committed: float
    ) -> None:
        m = self._metrics
        session = self._session
        channels: Counter[str] = Counter()
        stored: Counter[str] = Counter()
        dead: Counter[str] = Counter()
        duplicates = 0
        stale = 0
        out: list[StoredMessage] = []
        seen: set[tuple[str, tuple[object, ...] | None]] = set()
        if session is not None:
            by_generation: dict[int, list[int]] = {}
            for it in items:
                if it.rec.qos > 0:
                    by_generation.setdefault(it.rec.generation, []).append(it.rec.mid)
            for generation, mids in by_generation.items():
                if not session.ack_many(generation, mids):
                    stale += len(mids)
        for it in items:
            rec = it.rec
            channels[it.topic.channel if it.topic is not None else "invalid"] += 1
            if it.reject_reason is not None:
                dead[it.reject_reason] += 1
                if it.topic is not None and it.topic.channel == Channel.EVENT:
                    self._app_ack(it, "rejected")
                continue
            keys = fresh.get(it.table)
            # A copy may arrive twice in one batch (device retry): only the first is new.
            new = (keys is None or it.key in keys) and (it.table, it.key) not in seen
            seen.add((it.table, it.key))
            if new:
                stored[it.table] += 1
                assert it.msg is not None and it.info is not None
                m.lag_seconds.observe(max(0.0, committed - _sent_at(it.msg)))
                out.append(StoredMessage(it.info, it.msg, rec.received_at))
            else:
                duplicates += 1
            if isinstance(it.msg, Event):
                self._app_ack(it, "stored" if new else "duplicate")
        for ch, n in channels.items():
            m.messages.labels(ch).inc(n)
        for table, n in stored.items():
            m.rows.labels(table).inc(n)
        for reason, n in dead.items():
            m.dead_letters.labels(reason).inc(n)
        if duplicates:
            m.duplicates.inc(duplicates)
        if stale:
            m.stale_acks.inc(stale)
        m.batches.inc()
        self.stored_batches += 1
        if out and self._sink is not None:
            self._sink(out)

    def _app_ack(self, it: _Item, status: str) -> None:
        if self._session is None or it.topic is None:
            return
        msg_id = it.msg.envelope.msg_id if it.msg is not None else it.claimed_id
        if msg_id is None:
            return
        topic = format_topic(self._prefix, it.topic.site, it.topic.device, Channel.ACK)
        reason = it.reject_reason if status == "rejected" else None
        self._session.publish(topic, encode_ack(msg_id, status, reason), qos=1)


class _StopRequestedError(Exception):
    """Raised inside the writer when asked to stop during a database outage."""


def _sent_at(msg: Message) -> float:
    """When the device sent the message: an accelerometer batch is sent after its last sample."""
    ts = msg.envelope.ts
    if isinstance(msg, AccelBatch):
        return ts + float(msg.samples.shape[0]) / msg.fs
    return ts


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()
