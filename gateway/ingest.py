"""Ingest: MQTT message → decode and validate → batched durable write → broker ack.

Flow (two writer threads; the MQTT network thread only enqueues):

1. ``enqueue`` (network thread) puts the raw message on a queue. The queues are bounded by
   the broker and the MQTT client, not here: at most ``mqtt.receive_maximum`` QoS 1 messages
   can be unacked and in flight to us, the client stops reading once ``mqtt.max_inflight_bytes``
   of payload are received and not yet released, and nothing is acked before it is stored.
2. Two lanes, each with its own writer thread and database connection:

   * the **bulk lane** (telemetry and state: 50 Hz accelerometer batches, vitals) collects up
     to ``ingest.batch_size`` messages or ``ingest.max_delay_ms``;
   * the **event lane** (``ingest.event_lane``, on by default: the ``event`` channel, which
     carries emergency button presses, SOS and fall flags, and is a tiny share of the
     traffic) stores whatever events have arrived at once, in their own small transaction,
     so an alarm never waits for a batch to fill or behind thousands of telemetry rows.
     Events of one device keep their order (one lane, one thread); an event may be stored
     before telemetry its device sent earlier, which the analysis is built for (its
     detectors order evidence by device time).

   Each writer decodes its messages against the device registry and protocol and turns bad
   input into dead-letter rows (with a reason and a counter), never an exception.
   Before decoding, an injected per-device rate limiter (:mod:`gateway.ratelimit`) is asked:
   telemetry and state over a device's limit are not decoded or stored but counted
   (``rate_limited``) and recorded as one dead letter per device per batch; a valid event is
   stored whatever the rate (alarms are never rate-limited away).
3. One transaction stores the batch (binary COPY; duplicates stored once), then commits.
4. Only then: PUBACK the batch's messages (and release their bytes from the MQTT client's
   byte budget), publish the application-level ack for each
   event (``stored`` / ``duplicate`` / ``rejected``), hand the new messages to the analysis
   (the event lane to its priority sink). PUBACKs go out in the order the messages were
   received, across both lanes (MQTT 5 §4.6, [MQTT-4.6.0-2]): a stored event whose
   earlier-received telemetry is still being written has its PUBACK sent right after theirs
   (:class:`gateway.ingest_acks.AckOrder`); its application ack and its analysis do not wait
   for that.

If the database is unreachable each writer retries the same batch with backoff; the outage
and the recovery are each logged once for the pipeline; nothing is acked meanwhile, so the
broker keeps everything. A connection that breaks while the database is up (e.g. the idle
event lane's, after a database restart) is replaced once at once, without an outage. A
batch the database refuses for its content (not a connection problem) is split until the
offending message is found, which goes to dead letters (``storage_rejected``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import psycopg

from devices.protocol import (
    ALARM_EVENT_TYPES,
    Channel,
    DeviceConfig,
    Event,
    Message,
    ProtocolError,
    RejectReason,
    Topic,
    config_topic,
    decode,
    encode_ack,
    encode_config,
    format_topic,
    parse_topic,
)
from gateway.ingest_acks import AckOrder, EventMsg
from gateway.ingest_rows import (
    Item,
    alarm_with_wrong_clock,
    claimed_msg_id,
    dead_item,
    mark_alarms,
    message_item,
    rate_limited_item,
    rate_limited_rows,
    restamp,
    sent_at,
)
from gateway.metrics import Metrics
from gateway.mqttsession import MqttSession, Received
from gateway.ratelimit import DeviceRateLimiter
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
    clock_error_s: float | None = None
    """An alarm whose device time was implausible: device time minus receive time (the
    message's ``ts`` is then the receive time)."""


Sink = Callable[[Sequence[StoredMessage]], None]


class _Lane:
    """One writer thread's own database connection and per-device sequence tracking."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.conn: psycopg.Connection[tuple[object, ...]] | None = None
        self.writer: BatchWriter | None = None
        self.last_seq: dict[str, int] = {}


class IngestPipeline:
    """Owns the writer threads. ``enqueue`` is the MQTT session's message callback.

    ``sink`` receives the bulk lane's stored messages, ``event_sink`` the event lane's
    (default: ``sink``); each is called from its lane's writer thread. With ``may_write``
    (failover: the lease is still valid, gateway.lease) nothing is committed, so nothing is
    acked, while it answers False: the process is then being fenced and exits.
    """

    def __init__(
        self,
        db: DatabaseSettings,
        settings: IngestSettings,
        prefix: str,
        metrics: Metrics,
        sink: Sink | None = None,
        *,
        event_sink: Sink | None = None,
        limiter: DeviceRateLimiter | None = None,
        may_write: Callable[[], bool] | None = None,
    ) -> None:
        self._db = db
        self._may_write = may_write
        self._limiter = limiter
        self._settings = settings
        self._prefix = prefix
        self._metrics = metrics
        self._sink = sink
        self._event_sink = event_sink or sink
        # Filled by the network thread, drained by the writers: deque appends and pops are
        # atomic, so no lock is taken per message. Their length is bounded by the broker: at
        # most mqtt.receive_maximum QoS 1 messages can be unacknowledged, and nothing is acked
        # before it is stored.
        self._buffer: deque[Received] = deque()
        self._events: deque[EventMsg] = deque()
        self._event_suffix = f"/{Channel.EVENT.value}" if settings.event_lane else None
        self._bulk_received = 0  # bulk-lane messages enqueued (network thread only)
        self._event_wake = threading.Event()
        self._acks = AckOrder(self._puback)
        self._session: MqttSession | None = None
        # Shared by both writers: a refresh replaces the snapshot, never mutates it.
        self._registry = RegistryCache(settings.registry_refresh_s)
        self._configs_sent: dict[str, int] = {}
        self._stop = threading.Event()
        self._bulk_lane = _Lane("bulk")
        self._event_lane = _Lane("event")
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._event_thread = threading.Thread(
            target=self._run_events, name="ingest-events", daemon=True
        )
        self._db_lock = threading.Lock()
        self._db_down_since: float | None = None
        self._error: BaseException | None = None
        self.stored_batches = 0

    # wiring ---------------------------------------------------------------------------------

    def attach(self, session: MqttSession) -> None:
        self._session = session

    def enqueue(self, rec: Received) -> None:
        suffix = self._event_suffix
        if suffix is not None and rec.topic.endswith(suffix):
            msg = EventMsg(rec, self._bulk_received)
            self._acks.events.append(msg)  # its place in the PUBACK order, before the writer
            self._events.append(msg)
            self._event_wake.set()
            return
        self._bulk_received += 1
        self._buffer.append(rec)

    def registry_changed(self) -> None:
        """The device registry changed: refresh it before relying on it again."""
        self._registry.invalidate()

    def start(self) -> None:
        self._thread.start()
        self._event_thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the batches in hand (stored and acked), leave the rest to redelivery."""
        self._stop.set()
        self._event_wake.set()
        deadline = time.monotonic() + timeout_s
        for thread in (self._thread, self._event_thread):
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        for lane in (self._bulk_lane, self._event_lane):
            if lane.conn is not None:
                lane.conn.close()

    @property
    def failed(self) -> BaseException | None:
        return self._error

    @property
    def database_up(self) -> bool:
        return self._db_down_since is None

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self._event_thread.is_alive()

    # writer threads ---------------------------------------------------------------------------

    def _run(self) -> None:
        """The bulk lane's writer (and the registry refresh)."""
        lane = self._bulk_lane
        try:
            while not self._stop.is_set():
                batch = self._collect()
                self._metrics.queue_depth.set(len(self._buffer) + len(self._events))
                if self._registry.due():
                    self._with_db(lane, self._registry.refresh)
                    self._publish_configs()
                if batch:
                    self._process(lane, batch)
        except _StopRequestedError:
            log.info(
                "ingest writer stopped during a database outage; unstored messages stay unacked"
            )
        except BaseException as exc:  # a bug, not bad input: fail the process loudly
            self._error = exc
            log.exception("ingest writer stopped by an unexpected error")
            raise

    def _run_events(self) -> None:
        """The event lane's writer: stores the events in hand as soon as they arrive."""
        lane, events, wake = self._event_lane, self._events, self._event_wake
        limit = self._settings.batch_size
        try:
            while not self._stop.is_set():
                wake.wait(0.2)
                wake.clear()  # before taking: an event enqueued from now on sets it again
                while events and not self._stop.is_set():
                    popleft = events.popleft
                    msgs = [popleft() for _ in range(min(limit, len(events)))]
                    self._process(lane, [m.rec for m in msgs], msgs)
        except _StopRequestedError:
            log.info(
                "ingest event writer stopped during a database outage; "
                "unstored messages stay unacked"
            )
        except BaseException as exc:  # a bug, not bad input: fail the process loudly
            self._error = exc
            log.exception("ingest event writer stopped by an unexpected error")
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

    def _process(
        self, lane: _Lane, batch: list[Received], events: list[EventMsg] | None = None
    ) -> None:
        items = [self._decode(lane, rec) for rec in batch]
        fresh = self._with_db(lane, lambda conn: self._store(lane, items))
        committed = time.time()
        if events is None:
            self._acks.bulk_stored(batch)
            self._after_commit(items, fresh, committed, event_lane=False)
            return
        self._after_commit(items, fresh, committed, event_lane=True)
        self._acks.events_stored(events)
        observe = self._metrics.event_lane_seconds.observe
        for rec in batch:
            observe(max(0.0, committed - rec.received_at))

    def _puback(self, recs: list[Received]) -> None:
        """PUBACK stored QoS 1 messages, in the given order (called under the ack lock)."""
        session = self._session
        if session is None:
            return
        stale = 0
        generation, mids = -1, list[int]()
        for rec in recs:
            if rec.qos == 0:
                continue
            if rec.generation != generation:
                if mids and not session.ack_many(generation, mids):
                    stale += len(mids)
                generation, mids = rec.generation, []
            mids.append(rec.mid)
        if mids and not session.ack_many(generation, mids):
            stale += len(mids)
        if stale:
            self._metrics.stale_acks.inc(stale)
        # Done with these messages (stored, dead-lettered or dropped): free the byte budget.
        session.release(sum([len(rec.payload) for rec in recs]))

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
    ) -> Item:
        cap = self._settings.dead_letter_payload_bytes
        return dead_item(rec, reason, detail, topic, info, payload_cap=cap, claimed_id=claimed_id)

    def _decode(self, lane: _Lane, rec: Received) -> Item:
        try:
            topic = parse_topic(rec.topic, self._prefix)
        except ProtocolError as exc:
            return self._dead(rec, exc.reason, exc.detail, None, None)
        info = self._registry.get(topic.device)
        if info is None and self._registry.may_refresh_for_unknown():
            self._with_db(lane, self._registry.refresh)
            info = self._registry.get(topic.device)
        if info is None:
            if self._registry.decommissioned(topic.device):
                return self._dead(
                    rec, RejectReason.DECOMMISSIONED, "device is decommissioned", topic, None,
                    claimed_id=claimed_msg_id(rec.payload),  # its event is acked `rejected`
                )  # fmt: skip
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
        limiter = self._limiter
        over = limiter is not None and not limiter.allow(
            info.device_id, rec.received_at, len(rec.payload)
        )
        if over and topic.channel is not Channel.EVENT:
            return rate_limited_item(rec, topic, info, None)
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
            alarm: tuple[Message, float] | None = None
            if exc.reason == RejectReason.TIMESTAMP_OUT_OF_RANGE and topic.channel == Channel.EVENT:
                alarm = alarm_with_wrong_clock(topic, rec, info, s.max_payload_bytes)
            if alarm is None:
                if over:  # a flood of bad events: counted, not a dead-letter row each
                    return rate_limited_item(rec, topic, info, exc.msg_id)
                return self._dead(rec, exc.reason, exc.detail, topic, info, claimed_id=exc.msg_id)
            msg, error = alarm
            clock_error: float | None = error
        else:
            clock_error = None
            if (
                topic.channel == Channel.EVENT
                and msg.envelope.ts < rec.received_at - s.alarm_max_lag_s
                and msg.envelope.type in ALARM_EVENT_TYPES
                and isinstance(msg, Event)
            ):
                msg, clock_error = restamp(msg, rec.received_at)
        # Over the limit or not, a valid event (button press, SOS, fall) is stored: the alarm
        # lane is never rate-limited away.
        env = msg.envelope
        last = lane.last_seq.get(info.device_id)  # per lane: lanes may overtake each other
        if last is not None and env.seq < last:
            self._metrics.out_of_order.inc()
        else:
            lane.last_seq[info.device_id] = env.seq
        return message_item(rec, msg, topic, info, clock_error)

    # storing -------------------------------------------------------------------------------

    def _store(self, lane: _Lane, items: list[Item]) -> dict[str, set[tuple[object, ...]]]:
        """Store all items; content the database refuses is isolated into dead letters."""
        assert lane.writer is not None
        rows: dict[str, list[Row]] = {}
        limited: list[Item] = []
        for it in items:
            if not it.table:  # NO_ROW
                limited.append(it)
            else:
                rows.setdefault(it.table, []).append(it.row)
        if limited:
            rows.setdefault("dead_letters", []).extend(rate_limited_rows(limited, self._limiter))
        if self._may_write is not None:
            while not self._may_write():  # fenced (lease lost): never commit, never ack
                time.sleep(0.05)
        started = time.perf_counter()
        try:
            fresh = lane.writer.write(rows, after=lambda conn, new: mark_alarms(conn, items, new))
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
                return self._store(lane, items)
            mid = len(items) // 2
            left, right = items[:mid], items[mid:]
            fresh = self._store(lane, left)
            for table, keys in self._store(lane, right).items():
                fresh.setdefault(table, set()).update(keys)
            items[:] = left + right
            return fresh
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        return fresh

    def _with_db(self, lane: _Lane, fn: Callable[[psycopg.Connection[tuple[object, ...]]], T]) -> T:
        """Run ``fn`` on the lane's connection, retrying through database outages."""
        delay = self._db.retry_min_s
        replace_once = True  # a connection that broke while idle is replaced once, silently
        while True:
            reused = lane.conn is not None and not lane.conn.closed
            try:
                if lane.conn is None or lane.conn.closed:
                    lane.conn = psycopg.connect(self._db.conninfo(), autocommit=False)
                    lane.writer = BatchWriter(lane.conn)
                result = fn(lane.conn)
                if self._db_down_since is not None:
                    self._database_up()
                self._metrics.db_up.set(1)
                return result
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if lane.conn is not None:
                    lane.conn.close()
                lane.conn = None
                if reused and replace_once:
                    replace_once = False
                    continue
                self._database_down(exc)
                if self._stop.is_set():
                    raise _StopRequestedError from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self._db.retry_max_s)

    def _database_down(self, exc: BaseException) -> None:
        with self._db_lock:
            if self._db_down_since is not None:
                return
            self._db_down_since = time.monotonic()
        self._metrics.db_up.set(0)
        self._metrics.db_outages.inc()
        log.error(
            "database unavailable; holding messages unacknowledged",
            extra={"error": type(exc).__name__},
        )

    def _database_up(self) -> None:
        with self._db_lock:
            since, self._db_down_since = self._db_down_since, None
        if since is not None:
            log.warning(
                "database available again",
                extra={"outage_s": round(time.monotonic() - since, 3)},
            )

    # after commit ------------------------------------------------------------------------------

    def _after_commit(
        self,
        items: list[Item],
        fresh: dict[str, set[tuple[object, ...]]],
        committed: float,
        *,
        event_lane: bool,
    ) -> None:
        m = self._metrics
        channels: Counter[str] = Counter()
        stored: Counter[str] = Counter()
        dead: Counter[str] = Counter()
        duplicates = 0
        out: list[StoredMessage] = []
        app_acks: list[tuple[Item, str]] = []
        seen: set[tuple[str, tuple[object, ...] | None]] = set()
        for it in items:
            rec = it.rec
            channels[it.topic.channel if it.topic is not None else "invalid"] += 1
            if it.reject_reason is not None:
                dead[it.reject_reason] += 1
                if it.topic is not None and it.topic.channel == Channel.EVENT:
                    app_acks.append((it, "rejected"))
                continue
            keys = fresh.get(it.table)
            # A copy may arrive twice in one batch (device retry): only the first is new.
            new = (keys is None or it.key in keys) and (it.table, it.key) not in seen
            seen.add((it.table, it.key))
            if new:
                stored[it.table] += 1
                assert it.msg is not None and it.info is not None
                m.lag_seconds.observe(max(0.0, committed - sent_at(it.msg)))
                out.append(StoredMessage(it.info, it.msg, rec.received_at, it.clock_error_s))
            else:
                duplicates += 1
            if isinstance(it.msg, Event):
                app_acks.append((it, "stored" if new else "duplicate"))
        for ch, n in channels.items():
            m.messages.labels(ch).inc(n)
        for table, n in stored.items():
            m.rows.labels(table).inc(n)
        for reason, n in dead.items():
            m.dead_letters.labels(reason).inc(n)
        if duplicates:
            m.duplicates.inc(duplicates)
        m.batches.inc()
        self.stored_batches += 1
        if event_lane:  # alarms: to the analysis first, then tell the devices
            if out and self._event_sink is not None:
                self._event_sink(out)
            for it, status in app_acks:
                self._app_ack(it, status)
            return
        for it, status in app_acks:
            self._app_ack(it, status)
        if out and self._sink is not None:
            self._sink(out)  # may wait for room in the analysis queue (backpressure)

    def _app_ack(self, it: Item, status: str) -> None:
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
