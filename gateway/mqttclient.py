"""A lean MQTT 5 client for the gateway's one persistent subscription session.

Why not paho: its receive path costs about 35 µs a message (several ``recv`` calls a packet,
a message object, a properties object, the topic matcher, callbacks under locks), so the whole
gateway drained only ~12.7k msg/s on 2 cores. This client does only what the gateway needs:

* **Receive path.** One thread owns the socket's read side. It waits with ``poll`` (the only
  way to also run the keepalive timers), then reads up to 256 KiB with one ``recv_into`` into
  the buffer of a :class:`devices.mqttcodec.Decoder`, which parses *every* complete packet in
  it and hands each QoS 0/1 PUBLISH as one :class:`Received` to ``on_message``: no syscall, no
  lock, no log a message. The wire format is all in :mod:`devices.mqttcodec` (no I/O).
* **Manual acknowledgement.** Incoming QoS 1 messages are acknowledged only by
  :meth:`MqttClient.ack_many` (after the gateway stored them): all PUBACKs of a batch (four bytes
  each: ``0x40 0x02 <packet id>``; MQTT 5 lets a successful PUBACK omit its reason code) go out
  in one ``sendall`` under the write lock. Acks carry the connection *generation* and are
  dropped when it is not the current connection: after a reconnect the broker redelivers every
  unacknowledged message with the *same* packet ids, so a stale ack could acknowledge a
  different message (see :mod:`gateway.mqttsession`).
* **Session.** CONNECT with ``clean_start=0``, a Session Expiry Interval and our Receive Maximum
  (how many unacknowledged QoS 1 messages the broker may have in flight to us: it bounds the
  gateway's memory). No Topic Alias Maximum is sent, so it is 0 and the broker must not use
  topic aliases (one arriving is a protocol error). The subscriptions are sent again on every
  connect, with QoS 1, No Local and Retain Handling 1 (retained messages only when the
  subscription is new); a refused filter is logged. A session the broker still holds from an
  earlier gateway process is used, deliberately: §3.2.2.1.1 lets a client without session
  state close such a connection, but the receiving side keeps no state here (nothing is acked
  before it is stored), which is the point of the persistent session; what an earlier process
  had in flight outgoing is not resent.
* **Publishing** (application-level acks to devices) from any thread: QoS 1, at most the
  broker's Receive Maximum in flight, resent after a reconnect (:class:`gateway.mqttoutbox.Outbox`
  holds that state and decides what to write).
* **Writes** from any thread go through one lock and one ``sendall``; reads take no lock
  (:class:`gateway.mqtttransport.Transport`, which also handles TLS's locking).
* **Byte budget** (``max_inflight_bytes``). The Receive Maximum bounds how many messages are
  unacknowledged, not their size. The client counts the payload bytes it hands over, the owner
  calls :meth:`MqttClient.release` when it is done with them (stored and acked, or dropped),
  and while the difference is at the budget the thread stops reading the socket: the kernel's
  receive buffer fills, TCP flow control stops the broker, which queues for us. Keepalive
  carries on meanwhile (:meth:`MqttClient._hold`). Memory is then bounded by the budget plus
  one read, whatever the broker sends. Our Maximum Packet Size (CONNECT) bounds one packet.
* **Keepalive** (the broker's Server Keep Alive wins): :class:`gateway.mqtttimers.Timers`.
* **Failures.** Connection loss, a refused CONNACK, a malformed packet or a protocol violation
  by the broker close the connection (with a DISCONNECT carrying the reason code where the spec
  asks for one) and the thread reconnects with exponential backoff and jitter between
  ``reconnect_min_s`` and ``reconnect_max_s``. Each such event is logged once, never per
  message. A QoS 2 PUBLISH (we subscribe with QoS 1, so a broker may not send one) is refused
  with PUBREC 0x83 and counted. An exception from ``on_message`` or a bug here ends the thread:
  :attr:`MqttClient.failed` holds it and :attr:`MqttClient.alive` turns False for the
  runtime's watchdog.
* **Stop.** DISCONNECT with reason 0 (normal: the broker publishes no will and keeps the
  session for its expiry interval), then the thread reads until the broker closes and exits.

Not supported (the gateway does not need them): QoS 2 in either direction, will messages,
topic aliases, enhanced authentication (AUTH), unsubscribing.
"""

from __future__ import annotations

import contextlib
import logging
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from devices.mqttcodec import (
    CHUNK_SIZE,
    CONNACK,
    DISCONNECT,
    GATEWAY_SUBSCRIPTION,
    MAX_REMAINING_LENGTH,
    PINGREQ,
    PINGRESP,
    PROP_MAXIMUM_PACKET_SIZE,
    PROP_REASON_STRING,
    PROP_RECEIVE_MAXIMUM,
    PROP_SERVER_KEEP_ALIVE,
    PUBACK,
    PUBLISH,
    PUBREL,
    SUBACK,
    CallbackError,
    Decoder,
    MalformedPacketError,
    ProtocolViolationError,
    Received,
    decode_connack,
    decode_disconnect,
    decode_puback,
    decode_pubrel,
    decode_qos2_packet_id,
    decode_suback,
    encode_connect,
    encode_disconnect,
    encode_pubacks,
    encode_pubcomp,
    encode_publish,
    encode_pubrec,
    reason_name,
)
from gateway.mqttoutbox import ClientStats, Outbox
from gateway.mqtttimers import Timers
from gateway.mqtttransport import ConnectionClosedError, RefusedError, Transport, open_transport

log = logging.getLogger(__name__)

__all__ = ["ClientStats", "MqttClient", "Received"]


class MqttClient:
    """One persistent MQTT 5 session: subscribe, receive with manual acks, publish, reconnect.

    Callbacks run on the client's thread: ``on_message`` per QoS 0/1 message (keep it cheap:
    the gateway appends to a deque), ``on_connect(session_present)`` after each accepted
    connection (subscriptions and resends already written), ``on_disconnect(reason)`` when an
    accepted connection ends (not on :meth:`stop`), ``on_refused(reason)`` per refused CONNACK.
    """

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        on_message: Callable[[Received], None],
        subscriptions: Sequence[str],
        *,
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 30,
        session_expiry_s: int = 0,
        receive_maximum: int = 65535,
        maximum_packet_size: int = 0,
        max_inflight_bytes: int = 0,
        subscription_options: int = GATEWAY_SUBSCRIPTION,
        ssl_context: ssl.SSLContext | None = None,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        max_queued: int = 100_000,
        chunk_size: int = CHUNK_SIZE,
        on_connect: Callable[[bool], None] | None = None,
        on_disconnect: Callable[[str], None] | None = None,
        on_refused: Callable[[str], None] | None = None,
        may_connect: Callable[[], bool] | None = None,
    ) -> None:
        self._host = host
        # Asked before every (re)connection; False: wait (failover: the lease must be
        # confirmed first, or another gateway's session would be taken over; gateway.lease).
        self._may_connect = may_connect
        self._port = port
        self._client_id = client_id
        self._connect_packet = encode_connect(
            client_id,
            username=username,
            password=password.encode("utf-8") if password is not None else None,
            keepalive_s=keepalive_s,
            clean_start=False,
            session_expiry_s=session_expiry_s,
            receive_maximum=receive_maximum,
            maximum_packet_size=maximum_packet_size,
        )
        self._configured_keepalive = keepalive_s
        self._ssl = ssl_context
        self._reconnect_min = reconnect_min_s
        self._reconnect_max = max(reconnect_max_s, reconnect_min_s)
        self._connect_timeout = connect_timeout_s
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._on_refused = on_refused
        self._decoder = Decoder(
            on_message,
            self._on_packet,
            chunk_size,
            maximum_packet_size if maximum_packet_size else MAX_REMAINING_LENGTH + 5,
        )
        self.stats = ClientStats()
        # Outgoing QoS 1 publishes and subscriptions; guarded by _wlock like the connection.
        self._outbox = Outbox(
            [(f, subscription_options) for f in subscriptions], max_queued, self.stats
        )

        # Byte budget (0: none). Payload bytes handed to on_message minus those the owner has
        # released (see release()); reading pauses while it is used up.
        self._budget = max_inflight_bytes
        self._released = 0
        self._budget_lock = threading.Lock()
        self._resume = threading.Event()
        self._paused = False
        self._pause_logged_at: float | None = None

        # Everything below is guarded by _wlock (the write lock): the connection, its
        # generation, and the outgoing QoS 1 session state.
        self._wlock = threading.Lock()
        self._transport: Transport | None = None
        self._connected = False
        self._generation = 0

        # Network thread only.
        self._timers = Timers(keepalive_s, connect_timeout_s)
        self._unreachable_logged = False
        self._accepted = False  # this connection got a successful CONNACK

        self._stopping = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None

    # public API --------------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Increments with every accepted connection (CONNACK success)."""
        return self._generation

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def alive(self) -> bool:
        """False once the thread has died of an error (see :attr:`failed`); True before start."""
        if self._failed is not None:
            return False
        t = self._thread
        return t is None or t.is_alive() or self._stopping

    @property
    def failed(self) -> BaseException | None:
        return self._failed

    @property
    def messages_received(self) -> int:
        """QoS 0/1 messages handed to ``on_message`` so far."""
        return self._decoder.messages

    @property
    def inflight_bytes(self) -> int:
        """Payload bytes handed to ``on_message`` and not yet released by the owner."""
        return self._decoder.payload_bytes - self._released

    @property
    def paused(self) -> bool:
        """True while reading is stopped because the byte budget is used up."""
        return self._paused

    def release(self, nbytes: int) -> None:
        """The owner is done with messages holding ``nbytes`` of payload (stored and acked, or
        dropped): that much of the byte budget is free again. Call from any thread."""
        with self._budget_lock:
            self._released += nbytes
            resume = self._paused and self.inflight_bytes < self._budget
        if resume:
            self._resume.set()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("MqttClient.start() called twice")
        self._thread = threading.Thread(
            target=self._run, name=f"mqtt-{self._client_id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """DISCONNECT (normal: no will, session kept), then wait for the thread to end."""
        self._stopping = True
        self._wake.set()
        self._resume.set()
        transport = self._transport
        if self._wlock.acquire(timeout=2.0):
            try:
                transport = self._transport
                if transport is not None:
                    if self._connected:
                        self._connected = False
                        with contextlib.suppress(OSError):
                            transport.send(encode_disconnect(0))
                    # Half-close: the broker reads the DISCONNECT and closes; we then see EOF.
                    transport.shutdown(socket.SHUT_WR)
            finally:
                self._wlock.release()
        elif transport is not None:  # a writer is stuck in sendall: cut the connection
            transport.shutdown(socket.SHUT_RDWR)
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout_s)
            transport = self._transport
            if t.is_alive() and transport is not None:
                transport.shutdown(socket.SHUT_RDWR)
                t.join(2.0)

    def ack_many(self, generation: int, mids: Sequence[int]) -> bool:
        """PUBACK the messages ``mids`` of connection ``generation`` in one write.

        False (nothing sent) when that connection is gone: the broker redelivers those messages
        on the current connection, with ids that may now name other messages.
        """
        if not mids:
            return True
        if min(mids) < 1 or max(mids) > 0xFFFF:
            raise ValueError("packet ids are 1..65535")
        packet = encode_pubacks(mids)
        with self._wlock:
            if generation != self._generation or not self._connected:
                return False
            return self._send_locked(packet)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish from any thread. QoS 1 is delivered at least once, across reconnects."""
        if qos not in (0, 1):
            raise ValueError("only QoS 0 and 1 are supported")
        if not topic or "+" in topic or "#" in topic:
            raise ValueError(f"invalid topic name {topic!r}")
        payload = bytes(payload)
        with self._wlock:
            if qos == 0:
                if self._connected:
                    self._send_locked(encode_publish(topic, payload, retain=retain))
                return
            if self._outbox.enqueue(topic, payload, retain) and self._connected:
                self._send_queued_locked()

    # network thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            delay = self._reconnect_min
            while not self._stopping:
                if self._may_connect is not None and not self._may_connect():
                    self._wake.wait(self._reconnect_min)
                    continue
                up_for = self._connection_once()
                if self._wake.is_set():  # stop() was called meanwhile
                    break
                if up_for is not None and up_for >= self._reconnect_max:
                    delay = self._reconnect_min  # it was a working connection: retry quickly
                jittered = delay * random.uniform(0.5, 1.5)
                self._wake.wait(min(self._reconnect_max, max(self._reconnect_min, jittered)))
                delay = min(delay * 2, self._reconnect_max)
        except BaseException as exc:
            log.exception("mqtt client thread stopped by an unexpected error")
            self._close_after_failure()
            # Only now (connection closed, on_disconnect told): whoever waits for `alive` to
            # turn False must not see it before, nor stop() the client in between.
            self._failed = exc.__cause__ or exc if isinstance(exc, CallbackError) else exc
            raise

    def _close_after_failure(self) -> None:
        transport = self._transport
        if transport is not None:
            transport.shutdown(socket.SHUT_RDWR)
        with self._wlock:
            self._connected = False
            self._transport = None
        if transport is not None:
            transport.close()
        if self._accepted and not self._stopping and self._on_disconnect is not None:
            self._accepted = False
            try:
                self._on_disconnect("mqtt client thread failed")
            except Exception:
                log.exception("on_disconnect failed")

    def _open(self) -> Transport:
        send_timeout_s = max(self._configured_keepalive, 5)
        return open_transport(
            self._host, self._port, self._ssl, self._connect_timeout, send_timeout_s
        )

    def _connection_once(self) -> float | None:
        """Connect and run the connection until it ends: how long it was up (None: never)."""
        try:
            transport = self._open()
        except OSError as exc:
            if not self._unreachable_logged:
                self._unreachable_logged = True
                log.warning(
                    "broker unreachable; retrying",
                    extra={"host": self._host, "port": self._port, "error": str(exc)},
                )
            return None
        self._decoder.reset()
        self._accepted = False
        self._timers.opened(time.monotonic())
        reason = "connection closed"
        try:
            with self._wlock:
                if self._stopping:
                    return None
                self._transport = transport
                transport.send(self._connect_packet)
            self._read_loop(transport)
        except RefusedError as exc:
            self.stats.refused += 1
            if self._on_refused is not None:
                self._on_refused(str(exc))
        except (MalformedPacketError, ProtocolViolationError) as exc:
            code = exc.reason_code
            if isinstance(exc, MalformedPacketError):
                self.stats.malformed_packets += 1
            else:
                self.stats.protocol_errors += 1
            reason = f"{reason_name(code)}: {exc}"
            log.warning("invalid packet from the broker; reconnecting", extra={"reason": reason})
            self._send_direct(transport, encode_disconnect(code))
        except (OSError, ConnectionClosedError) as exc:
            reason = str(exc) or type(exc).__name__
        finally:
            # Shut down first: a writer blocked in sendall (holding the write lock) wakes up.
            transport.shutdown(socket.SHUT_RDWR)
            with self._wlock:
                self._connected = False
                self._transport = None
            transport.close()
        if not self._accepted:
            return None
        self._accepted = False
        if not self._stopping:
            self.stats.connection_losses += 1
            if self._on_disconnect is not None:
                self._on_disconnect(reason)
        return time.monotonic() - transport.opened

    def _send_direct(self, transport: Transport, data: bytes) -> None:
        """Best-effort write on the network thread that never waits long for the lock."""
        if self._wlock.acquire(timeout=1.0):
            try:
                transport.send(data)
            except OSError:
                pass
            finally:
                self._wlock.release()

    def _read_loop(self, transport: Transport) -> None:
        decoder = self._decoder
        poller = select.poll()
        poller.register(transport.sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        tick_ms = 250
        monotonic = time.monotonic
        wall = time.time
        budget = self._budget
        while True:
            if (
                budget
                and decoder.payload_bytes - self._released >= budget
                and self._accepted
                and not self._stopping
            ):
                self._hold(transport)
                continue
            if not transport.pending() and not poller.poll(tick_ms):
                self._tick(transport, monotonic())
                continue
            n = transport.recv_into(decoder.writable())
            if n is None:
                continue
            if n == 0:
                if self._stopping:
                    return
                raise ConnectionClosedError("broker closed the connection")
            now = monotonic()
            self._timers.last_recv = now
            if self._stopping:
                decoder.reset()  # drain until the broker closes; deliver nothing more
            else:
                decoder.received(n, wall())
            self._tick(transport, now)

    def _hold(self, transport: Transport) -> None:
        """Stop reading until released bytes bring us under the budget (TCP backpressure: the
        socket's receive buffer fills and the broker stops sending, queueing for us).

        The connection stays alive meanwhile: PINGREQ goes out every half keepalive (the broker
        hears from us); its PINGRESPs wait in the unread stream, so the "nothing from the
        broker" timer is suspended while paused and restarts on resume. Acks and publishes
        are written as usual; a failed write ends the connection here too.
        """
        self.stats.backpressure_pauses += 1
        self._resume.clear()
        self._paused = True
        now = time.monotonic()
        if self._pause_logged_at is None or now - self._pause_logged_at > 60.0:
            self._pause_logged_at = now
            log.warning(
                "mqtt byte budget used: reading paused until stored messages free it",
                extra={"inflight_bytes": self.inflight_bytes, "budget": self._budget},
            )
        try:
            while self.inflight_bytes >= self._budget and not self._stopping:
                self._resume.wait(0.25)
                self._resume.clear()
                if self._transport is not transport or not self._connected:
                    raise ConnectionClosedError("connection lost while reading was paused")
                due = self._timers.ping_due_paused(time.monotonic())
                if due and self._wlock.acquire(blocking=False):
                    try:
                        if self._transport is transport:
                            self._send_locked(PINGREQ)
                    finally:
                        self._wlock.release()
        finally:
            self._paused = False
            self._timers.resumed(time.monotonic())

    def _tick(self, transport: Transport, now: float) -> None:
        """Timers: CONNACK timeout, keepalive pings, dead connection, stop drain."""
        due = self._timers.check(
            now, opened=transport.opened, accepted=self._accepted, stopping=self._stopping
        )
        # Never wait for the lock here: a writer stuck in sendall holds it, and this thread
        # must stay free to notice the dead connection and shut the socket down.
        if due and self._wlock.acquire(blocking=False):
            try:
                if self._transport is transport and self._send_locked(PINGREQ):
                    self._timers.ping_sent = now
            finally:
                self._wlock.release()

    def _send_locked(self, data: bytes) -> bool:
        """Write under ``_wlock``; a failed write ends the connection (the reader reconnects)."""
        transport = self._transport
        if transport is None:
            return False
        try:
            transport.send(data)
        except OSError as exc:
            if self._connected:
                log.debug("mqtt write failed", extra={"error": str(exc)})
            self._connected = False
            transport.shutdown(socket.SHUT_RDWR)
            return False
        self._timers.last_sent = time.monotonic()
        return True

    # control packets (network thread) ----------------------------------------------------------

    def _on_packet(self, first: int, data: bytes, pos: int, end: int) -> None:
        if first == CONNACK:
            if self._accepted:
                raise ProtocolViolationError("second CONNACK")
            self._on_connack(*decode_connack(data, pos, end))
        elif not self._accepted:
            raise ProtocolViolationError(f"packet 0x{first:02x} before CONNACK")
        elif first == PUBACK:
            mid, code = decode_puback(data, pos, end)
            with self._wlock:
                self._outbox.puback(mid, code)
                self._send_queued_locked()
        elif first == SUBACK:
            mid, codes = decode_suback(data, pos, end)
            with self._wlock:
                self._outbox.suback(mid, codes)
        elif first == PINGRESP:
            if end != pos:
                raise MalformedPacketError("PINGRESP with a body")
            self._timers.ping_sent = None
        elif first == DISCONNECT:
            raise ConnectionClosedError(decode_disconnect(data, pos, end))
        elif first & 0xF0 == PUBLISH:
            self._reject_qos2(decode_qos2_packet_id(first, data, pos, end))
        elif first == PUBREL:
            # We never accept a QoS 2 message, so no packet id can be awaiting release.
            mid = decode_pubrel(data, pos, end)
            with self._wlock:
                self._send_locked(encode_pubcomp(mid, 0x92))
        else:
            raise ProtocolViolationError(f"unexpected packet 0x{first:02x} from the broker")

    def _on_connack(self, session_present: bool, code: int, props: dict[int, Any]) -> None:
        if code >= 0x80:
            raise RefusedError(code, props.get(PROP_REASON_STRING))
        with self._wlock:
            self._generation += 1
            self._decoder.generation = self._generation
            self._timers.keepalive = props.get(PROP_SERVER_KEEP_ALIVE, self._configured_keepalive)
            self._outbox.connected(
                props.get(PROP_RECEIVE_MAXIMUM, 65535),
                props.get(PROP_MAXIMUM_PACKET_SIZE, MAX_REMAINING_LENGTH + 5),
            )
            self._connected = True
            subscribe = self._outbox.subscribe()
            if subscribe is not None:
                self._send_locked(subscribe)
            for packet in self._outbox.resend(session_present):
                if not self._send_locked(packet):
                    break
            self._send_queued_locked()
        self._accepted = True
        self.stats.connects += 1
        self._unreachable_logged = False
        if self._on_connect is not None:
            try:
                self._on_connect(session_present)
            except BaseException as exc:
                raise CallbackError from exc

    def _send_queued_locked(self) -> None:
        if not self._connected:
            return
        for packet in self._outbox.sendable():
            if not self._send_locked(packet):
                return  # stays in flight: resent after the reconnect

    def _reject_qos2(self, packet_id: int) -> None:
        """Refuse a QoS 2 PUBLISH cleanly (PUBREC 0x83 ends its flow); QoS 3 is malformed.

        We subscribe with maximum QoS 1, so a conforming broker never sends QoS 2; accepting it
        would need the PUBREC/PUBREL/PUBCOMP exchange outside the gateway's storage acks.
        """
        self.stats.qos2_rejected += 1
        if self.stats.qos2_rejected == 1 or self.stats.qos2_rejected % 1000 == 0:
            log.warning(
                "QoS 2 message refused (the gateway subscribes with QoS 1)",
                extra={"refused_total": self.stats.qos2_rejected},
            )
        with self._wlock:
            self._send_locked(encode_pubrec(packet_id, 0x83))
