"""The gateway's MQTT session: persistent, manually acknowledged, reconnecting.

* Fixed client id, ``clean_start=False`` and an MQTT 5 session expiry: the broker keeps the
  gateway's subscription and queues messages while the gateway is down or restarting.
* ``manual_ack``: a QoS 1 message is acknowledged (PUBACK) only by :meth:`ack_many`,
  which the ingest pipeline does after the message is committed to the database. Until then
  the broker redelivers it after any reconnect.
* Receive maximum: at most ``receive_maximum`` unacknowledged messages are in flight to us;
  the broker queues the rest. Maximum Packet Size (CONNECT): the broker sends no packet over
  ``Settings.mqtt_packet_limit``. Byte budget (``mqtt.max_inflight_bytes``): the native client
  stops reading the socket while that many payload bytes are received and not yet released
  (:meth:`MqttSession.release`, called by the ingest pipeline after the PUBACKs); paho caps
  its receive maximum to budget / packet limit instead. Memory stays bounded whatever the
  broker sends.
* Acks carry the connection *generation*: after a reconnect the broker resends everything
  unacknowledged with the same packet ids, so acks for messages from an earlier connection
  are dropped (the redelivered copies are stored idempotently and acked instead). This keeps
  a stale ack from ever acknowledging a different message that reuses the packet id.

Two implementations, chosen by ``mqtt.client``: ``native`` (:mod:`gateway.mqttclient`, the
default, built for throughput) and ``paho`` (paho-mqtt 2.x, kept for comparison). Both run the
socket in their own thread; the callbacks here only hand values on and log state changes:
"broker connected" once, then "broker connection lost" / "broker connection restored" once per
outage, and a refused connection once until the next success. If the network thread dies of an
error, :attr:`MqttSession.alive` turns False and :attr:`MqttSession.failed` says why (the
runtime's watchdog then fails the process, as for the ingest writer).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from devices.mqttcodec import encode_pubacks
from gateway.mqttclient import ClientStats, MqttClient, Received
from gateway.settings import MqttSettings

__all__ = ["MqttSession", "Received"]

log = logging.getLogger(__name__)


def _ssl_context(settings: MqttSettings) -> ssl.SSLContext | None:
    if not settings.tls:
        return None
    return ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)


class MqttSession:
    def __init__(
        self,
        settings: MqttSettings,
        on_message: Callable[[Received], None],
        subscriptions: list[str],
        *,
        client_id: str | None = None,
        max_packet_size: int = 0,
        may_connect: Callable[[], bool] | None = None,
    ) -> None:
        """``may_connect`` is asked before every (re)connection, which waits while it answers
        False (failover: the lease is confirmed first, gateway.lease)."""
        self._settings = settings
        self._may_connect = may_connect
        self._on_message_cb = on_message
        self._subscriptions = subscriptions
        self.connected = threading.Event()
        self._ever_connected = False
        self._down_since: float | None = None
        self._refused_logged = False
        self._stopping = False
        cid = client_id or settings.client_id
        self._native: MqttClient | None = None
        self._paho: _PahoSession | None = None
        if settings.client == "paho":
            self._paho = _PahoSession(self, settings, cid, max_packet_size)
        else:
            self._native = MqttClient(
                settings.host,
                settings.port,
                cid,
                on_message,
                subscriptions,
                username=settings.username,
                password=(
                    settings.password.get_secret_value() if settings.password is not None else None
                ),
                keepalive_s=settings.keepalive_s,
                session_expiry_s=settings.session_expiry_s,
                receive_maximum=settings.receive_maximum,
                maximum_packet_size=max_packet_size,
                max_inflight_bytes=settings.max_inflight_bytes,
                ssl_context=_ssl_context(settings),
                reconnect_min_s=settings.reconnect_min_s,
                reconnect_max_s=settings.reconnect_max_s,
                on_connect=self._up,
                on_disconnect=self._down,
                on_refused=self._refused,
                may_connect=may_connect,
            )

    @property
    def client(self) -> str:
        """Which implementation runs this session: ``"native"`` or ``"paho"``."""
        return "native" if self._native is not None else "paho"

    @property
    def stats(self) -> ClientStats | None:
        """The native client's counters (None with paho)."""
        return self._native.stats if self._native is not None else None

    @property
    def generation(self) -> int:
        if self._native is not None:
            return self._native.generation
        assert self._paho is not None
        return self._paho.generation

    @property
    def alive(self) -> bool:
        """False once the network thread has died of an error (True before start and after stop)."""
        if self._native is not None:
            return self._native.alive
        assert self._paho is not None
        return self._paho.alive

    @property
    def failed(self) -> BaseException | None:
        """The error that ended the network thread, if one did."""
        if self._native is not None:
            return self._native.failed
        assert self._paho is not None
        return self._paho.error

    def start(self) -> None:
        if self._native is not None:
            self._native.start()
        else:
            assert self._paho is not None
            self._paho.start()

    def stop(self) -> None:
        self._stopping = True
        if self._native is not None:
            self._native.stop()
        else:
            assert self._paho is not None
            self._paho.stop()
        self.connected.clear()

    def wait_connected(self, timeout_s: float) -> bool:
        return self.connected.wait(timeout_s)

    def ack_many(self, generation: int, mids: list[int]) -> bool:
        """PUBACK many stored QoS 1 messages in one write; False if from an earlier connection."""
        if self._native is not None:
            return self._native.ack_many(generation, mids)
        assert self._paho is not None
        return self._paho.ack_many(generation, mids)

    def release(self, nbytes: int) -> None:
        """Done with received messages holding ``nbytes`` of payload: frees the byte budget
        (native client; paho's memory is bounded by its capped receive maximum instead)."""
        if self._native is not None:
            self._native.release(nbytes)

    @property
    def inflight_bytes(self) -> int:
        """Received payload bytes not yet released (native client; 0 with paho)."""
        return self._native.inflight_bytes if self._native is not None else 0

    @property
    def backpressure_pauses(self) -> int:
        """Times reading stopped because the byte budget was used (native client)."""
        return self._native.stats.backpressure_pauses if self._native is not None else 0

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        if self._native is not None:
            self._native.publish(topic, payload, qos=qos, retain=retain)
        else:
            assert self._paho is not None
            self._paho.client.publish(topic, payload, qos=qos, retain=retain)

    # connection state (network thread of either implementation) ------------------------------

    def _up(self, session_present: bool) -> None:
        self.connected.set()
        self._refused_logged = False
        if not self._ever_connected:
            self._ever_connected = True
            log.info(
                "broker connected",
                extra={
                    "host": self._settings.host,
                    "port": self._settings.port,
                    "session_present": session_present,
                    "client": self.client,
                },
            )
        elif self._down_since is not None:
            log.warning(
                "broker connection restored",
                extra={
                    "outage_s": round(time.monotonic() - self._down_since, 3),
                    "session_present": session_present,
                },
            )
        self._down_since = None

    def _down(self, reason: str) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected and self._down_since is None and not self._stopping:
            self._down_since = time.monotonic()
            log.warning("broker connection lost", extra={"reason": reason})

    def _refused(self, reason: str) -> None:
        if not self._refused_logged:
            self._refused_logged = True
            log.error("broker refused the gateway connection", extra={"reason": reason})


class _PahoSession:
    """The paho-mqtt implementation (``mqtt.client = "paho"``)."""

    def __init__(
        self, owner: MqttSession, settings: MqttSettings, client_id: str, max_packet_size: int
    ) -> None:
        self._owner = owner
        self._settings = settings
        self._max_packet = max_packet_size
        self._lock = threading.Lock()
        self.generation = 0
        self.error: BaseException | None = None
        self._started = False
        self._stopping = False
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if settings.password is not None:
            self.client.username_pw_set(settings.username, settings.password.get_secret_value())
        else:
            self.client.username_pw_set(settings.username)
        ctx = _ssl_context(settings)
        if ctx is not None:
            self.client.tls_set_context(ctx)
        self.client.reconnect_delay_set(
            max(1, int(settings.reconnect_min_s)), max(1, int(settings.reconnect_max_s))
        )
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        if owner._may_connect is not None:
            self.client.on_pre_connect = self._pre_connect

    def _pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        """paho's network thread, before each (re)connection: wait until it may connect."""
        gate = self._owner._may_connect
        while gate is not None and not gate() and not self._stopping:
            time.sleep(max(0.1, self._settings.reconnect_min_s))

    @property
    def alive(self) -> bool:
        # paho's loop thread clears ``_thread`` when it ends (pinned by ``paho-mqtt<3``).
        if self.error is not None:
            return False
        return not self._started or self._stopping or self.client._thread is not None

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._settings.session_expiry_s
        # paho reads whatever the broker sends, so its memory is bounded by count x size:
        # the receive maximum is capped so that it times the packet limit fits the budget.
        receive_max = self._settings.receive_maximum
        if self._max_packet:
            props.MaximumPacketSize = self._max_packet
            budget_count = self._settings.max_inflight_bytes // self._max_packet
            receive_max = max(1, min(receive_max, budget_count))
        props.ReceiveMaximum = receive_max
        self.client.connect_async(
            self._settings.host,
            self._settings.port,
            keepalive=self._settings.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._started = True
        self.client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()

    def ack_many(self, generation: int, mids: list[int]) -> bool:
        """PUBACK many stored QoS 1 messages in one write; False if from an earlier connection.

        paho sends one PUBACK per ``ack()`` call, each its own socket write plus a wake-up of
        the network thread: at 20,000 msg/s that is a large share of the gateway's CPU. A
        PUBACK is the four bytes ``0x40 0x02 <mid>`` (MQTT 5 lets a successful PUBACK omit
        its reason code), exactly what paho itself builds, so the batch's acks are queued as
        one packet through paho's own output queue (``_packet_queue``, the path ``ack()``
        takes; pinned by ``paho-mqtt<3`` and exercised by the integration tests).
        """
        if not mids:
            return True
        with self._lock:
            if generation != self.generation or not self._owner.connected.is_set():
                return False
            packet = encode_pubacks(mids)
            rc = self.client._packet_queue(0x40, packet, 0, 1)
            return rc == mqtt.MQTT_ERR_SUCCESS

    # paho callbacks (network thread) -------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._owner._refused(str(reason_code))
            return
        with self._lock:
            self.generation += 1
        # retain_handling=1: retained state is sent only when the subscription is new, not
        # again on every reconnect of a persistent session.
        # no_local: our own acks and config messages are not sent back to us.
        opts = SubscribeOptions(
            qos=1, noLocal=True, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
        )
        client.subscribe([(f, opts) for f in self._owner._subscriptions])
        self._owner._up(flags.session_present)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._owner._down(str(reason_code))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = msg.payload
        try:
            self._owner._on_message_cb(
                Received(
                    self.generation,
                    msg.mid,
                    msg.qos,
                    msg.topic,
                    payload if isinstance(payload, bytes) else bytes(payload),
                    time.time(),
                    bool(msg.dup),
                )
            )
        except BaseException as exc:  # paho's thread ends with it: let the watchdog know
            self.error = exc
            raise
