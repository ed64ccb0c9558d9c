"""paho-mqtt implementation of :class:`devices.transport.Publisher`.

Every paho client is driven from the running asyncio loop through paho's external-loop
interface, never a thread per connection: ``on_socket_open``/``on_socket_close`` register the
socket for reading (``loop_read``), output is flushed once per loop iteration (``loop_write``,
with a writer registered only while the kernel buffer is full), and one shared task calls
``loop_misc`` for keepalives, a tenth of the connections every 100 ms.

The TCP connection is opened with ``loop.sock_connect`` and handed to paho by a small subclass,
because paho's own ``socket.create_connection`` would block the loop. A fresh paho client is
made for every connection so that nothing queued on a lost connection is resent behind the
owner's back (see the contract in :mod:`devices.transport`).

Cost: about 40 µs of CPU per QoS 1 publication including its PUBACK (paho builds MQTT 5
property objects for every PUBACK); prefer :mod:`devices.mqtt311` for load tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices.transport import (
    BrokerEndpoint,
    Link,
    LinkEvents,
    LinkSpec,
    LinkState,
    MqttVersion,
    SlicedPublisher,
)

__all__ = ["PahoPublisher"]


class _Client(mqtt.Client):
    """paho client that uses a socket connected beforehand without blocking the loop."""

    _presock: socket.socket | None = None

    def _create_socket_connection(self) -> socket.socket:
        sock = self._presock
        if sock is None:
            raise OSError("no pre-connected socket")
        self._presock = None
        return sock


class _PahoLink:
    __slots__ = (
        "_client",
        "_events",
        "_has_writer",
        "_owner",
        "_slice",
        "_sock",
        "_spec",
        "_state",
        "_task",
    )

    def __init__(self, owner: PahoPublisher, spec: LinkSpec, events: LinkEvents) -> None:
        self._owner = owner
        self._spec = spec
        self._events = events
        self._state = LinkState.IDLE
        self._sock: socket.socket | None = None
        self._has_writer = False
        self._task: asyncio.Task[None] | None = None
        self._client: _Client | None = None
        self._slice = owner.next_slice()

    def _new_client(self, will_payload: bytes) -> _Client:
        owner = self._owner
        spec = self._spec
        v5 = owner.version is MqttVersion.V5
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=spec.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
        )
        client.username_pw_set(spec.username, spec.password)
        client.max_inflight_messages_set(owner.max_inflight)
        if owner.ssl_context is not None:
            client.tls_set_context(owner.ssl_context)
        client.will_set(spec.will_topic, will_payload, qos=1, retain=True)
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.connect_async(
            owner.endpoint.host,
            owner.endpoint.port,
            owner.keepalive_s,
            clean_start=True if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
        )
        return client

    # -- Link protocol ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._state is LinkState.CONNECTED

    def connect(self, will_payload: bytes) -> None:
        if self._state is not LinkState.IDLE:
            raise RuntimeError(f"connect() while {self._state.name}")
        self._state = LinkState.CONNECTING
        self._client = self._new_client(will_payload)
        self._task = self._owner.loop.create_task(self._connect(self._client))

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> int | None:
        client = self._client
        if self._state is not LinkState.CONNECTED or client is None:
            return None
        info = client.publish(topic, payload, qos, retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return None
        return info.mid if qos else 0

    def disconnect(self) -> None:
        if self._state is LinkState.CONNECTING:
            self._abort_connect()
        elif self._state is LinkState.CONNECTED and self._client is not None:
            self._state = LinkState.CLOSING
            if self._client.disconnect() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._finish_closed()

    def drop(self) -> None:
        if self._state is LinkState.CONNECTING:
            self._abort_connect()
        elif self._state is LinkState.CONNECTED:
            self._state = LinkState.CLOSING
            if self._sock is None:
                self._finish_closed()
                return
            # FIN without DISCONNECT: the broker sees the connection die and sends the will;
            # paho reads EOF next and closes its side through the usual callbacks.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    # -- connecting ---------------------------------------------------------------------------

    async def _connect(self, client: _Client) -> None:
        owner = self._owner
        sock: socket.socket | None = None
        try:
            family, addr = await owner.address()
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            async with asyncio.timeout(owner.connect_timeout_s):
                await owner.loop.sock_connect(sock, addr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except asyncio.CancelledError:
            if sock is not None:
                sock.close()
            raise
        except (OSError, TimeoutError) as exc:
            if sock is not None:
                sock.close()
            self._state = LinkState.IDLE
            self._events.link_failed(f"tcp: {type(exc).__name__}", refused=False)
            return
        client._presock = sock
        try:
            rc = client.reconnect()
        except (OSError, ssl.SSLError) as exc:
            client._presock = None
            sock.close()
            self._state = LinkState.IDLE
            self._events.link_failed(f"connect: {type(exc).__name__}", refused=False)
            return
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._state = LinkState.IDLE
            self._events.link_failed(f"connect: {mqtt.error_string(rc)}", refused=False)

    def _abort_connect(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._state = LinkState.CLOSING
        if self._sock is not None and self._client is not None:
            self._client.disconnect()  # paho closes the socket once DISCONNECT is written
        else:
            self._finish_closed()

    def _finish_closed(self) -> None:
        self._state = LinkState.IDLE
        self._events.link_closed()

    # -- paho socket callbacks ----------------------------------------------------------------

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._sock = sock
        self._owner.loop.add_reader(sock, client.loop_read)
        self._owner.slices[self._slice].add(self)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        loop = self._owner.loop
        loop.remove_reader(sock)
        if self._has_writer:
            loop.remove_writer(sock)
            self._has_writer = False
        self._sock = None
        self._owner.slices[self._slice].discard(self)

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._owner.want_flush(self)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._has_writer:
            self._owner.loop.remove_writer(sock)
            self._has_writer = False

    def flush(self) -> None:
        """Write pending output now; register a writer only if the socket is full."""
        sock = self._sock
        client = self._client
        if sock is None or client is None:
            return
        client.loop_write()
        if self._sock is not None and client.want_write() and not self._has_writer:
            self._owner.loop.add_writer(sock, client.loop_write)
            self._has_writer = True

    def misc(self) -> None:
        if self._sock is not None and self._client is not None:
            self._client.loop_misc()

    # -- paho protocol callbacks --------------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            # paho closes the socket itself after a refused CONNACK.
            self._state = LinkState.IDLE
            self._events.link_failed(f"connack: {reason.getName()}", refused=True)
            return
        self._state = LinkState.CONNECTED
        if self._spec.subscriptions:
            client.subscribe([(t, 1) for t in self._spec.subscriptions])
        self._events.link_connected()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        state = self._state
        self._state = LinkState.IDLE
        if state is LinkState.CLOSING:
            self._events.link_closed()
        elif state is not LinkState.IDLE:  # IDLE: already reported (refused CONNACK)
            self._events.link_failed(f"lost: {reason.getName()}", refused=False)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        if client is self._client:
            self._events.link_published(mid, reason.value < 0x80)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._events.link_message(message.topic, bytes(message.payload))


class PahoPublisher(SlicedPublisher[_PahoLink]):
    """Drives any number of paho clients from the running event loop (see module docs)."""

    def __init__(
        self,
        endpoint: BrokerEndpoint,
        *,
        version: MqttVersion = MqttVersion.V311,
        keepalive_s: int = 60,
        connect_timeout_s: float = 10.0,
        max_inflight: int = 100,
    ) -> None:
        self.version = version
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.max_inflight = max_inflight
        self._addr: tuple[socket.AddressFamily, Any] | None = None
        self._dirty: list[_PahoLink] = []
        super().__init__(endpoint, task_name="paho-keepalive")

    def open(self, spec: LinkSpec, events: LinkEvents) -> Link:
        return _PahoLink(self, spec, events)

    def visit(self, link: _PahoLink, now: float) -> None:
        link.misc()

    async def address(self) -> tuple[socket.AddressFamily, Any]:
        """The broker's address, resolved once without blocking the loop."""
        if self._addr is None:
            infos = await self.loop.getaddrinfo(
                self.endpoint.host, self.endpoint.port, type=socket.SOCK_STREAM
            )
            if not infos:
                raise OSError("cannot resolve the broker host")
            family, _, _, _, addr = infos[0]
            self._addr = (family, addr)
        return self._addr

    def want_flush(self, link: _PahoLink) -> None:
        if not self._dirty:
            self.loop.call_soon(self._flush)
        self._dirty.append(link)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for link in dirty:
            link.flush()

    async def aclose(self) -> None:
        await super().aclose()
        if self._dirty:
            self._flush()
