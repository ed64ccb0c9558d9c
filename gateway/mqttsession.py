"""The gateway's MQTT session: persistent, manually acknowledged, reconnecting.

* Fixed client id, ``clean_start=False`` and an MQTT 5 session expiry: the broker keeps the
  gateway's subscription and queues messages while the gateway is down or restarting.
* ``manual_ack``: a QoS 1 message is acknowledged (PUBACK) only by :meth:`ack_many`,
  which the ingest pipeline does after the message is committed to the database. Until then
  the broker redelivers it after any reconnect.
* Receive maximum: at most ``receive_maximum`` unacknowledged messages are in flight to us,
  which bounds the pipeline's memory; the broker queues the rest.
* Acks carry the connection *generation*: after a reconnect the broker resends everything
  unacknowledged with the same packet ids, so acks for messages from an earlier connection
  are dropped (the redelivered copies are stored idempotently and acked instead). This keeps
  a stale ack from ever acknowledging a different message that reuses the packet id.

paho-mqtt runs the socket in its own thread; callbacks here only hand values on.
"""

from __future__ import annotations

import logging
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.settings import MqttSettings

log = logging.getLogger(__name__)
_PUBACK = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class Received:
    """One message as it came off the wire, with what is needed to acknowledge it."""

    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes
    received_at: float
    dup: bool


class MqttSession:
    def __init__(
        self,
        settings: MqttSettings,
        on_message: Callable[[Received], None],
        subscriptions: list[str],
        *,
        client_id: str | None = None,
    ) -> None:
        self._settings = settings
        self._on_message_cb = on_message
        self._subscriptions = subscriptions
        self._generation = 0
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self._ever_connected = False
        self._down_since: float | None = None
        self._stopping = False
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or settings.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if settings.password is not None:
            self._client.username_pw_set(settings.username, settings.password.get_secret_value())
        else:
            self._client.username_pw_set(settings.username)
        if settings.tls:
            ctx = ssl.create_default_context(
                cafile=str(settings.ca_file) if settings.ca_file else None
            )
            self._client.tls_set_context(ctx)
        self._client.reconnect_delay_set(
            max(1, int(settings.reconnect_min_s)), max(1, int(settings.reconnect_max_s))
        )
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    @property
    def generation(self) -> int:
        return self._generation

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._settings.session_expiry_s
        props.ReceiveMaximum = self._settings.receive_maximum
        self._client.connect_async(
            self._settings.host,
            self._settings.port,
            keepalive=self._settings.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    def wait_connected(self, timeout_s: float) -> bool:
        return self.connected.wait(timeout_s)

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
            if generation != self._generation or not self.connected.is_set():
                return False
            packet = b"".join([_PUBACK.pack(0x40, 2, mid) for mid in mids])
            rc = self._client._packet_queue(0x40, packet, 0, 1)
            return rc == mqtt.MQTT_ERR_SUCCESS

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=qos, retain=retain)

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
            log.error("broker refused the gateway connection", extra={"reason": str(reason_code)})
            return
        with self._lock:
            self._generation += 1
        # retain_handling=1: retained state is sent only when the subscription is new, not
        # again on every reconnect of a persistent session.
        # no_local: our own acks and config messages are not sent back to us.
        opts = SubscribeOptions(
            qos=1, noLocal=True, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
        )
        client.subscribe([(f, opts) for f in self._subscriptions])
        self.connected.set()
        if not self._ever_connected:
            self._ever_connected = True
            log.info(
                "broker connected",
                extra={
                    "host": self._settings.host,
                    "port": self._settings.port,
                    "session_present": flags.session_present,
                },
            )
        elif self._down_since is not None:
            log.warning(
                "broker connection restored",
                extra={
                    "outage_s": round(time.monotonic() - self._down_since, 3),
                    "session_present": flags.session_present,
                },
            )
        self._down_since = None

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected and self._down_since is None and not self._stopping:
            self._down_since = time.monotonic()
            log.warning("broker connection lost", extra={"reason": str(reason_code)})

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = msg.payload
        self._on_message_cb(
            Received(
                self._generation,
                msg.mid,
                msg.qos,
                msg.topic,
                payload if isinstance(payload, bytes) else bytes(payload),
                time.time(),
                bool(msg.dup),
            )
        )
