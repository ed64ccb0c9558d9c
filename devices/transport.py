"""How simulated devices reach the broker: the plug point between device logic and MQTT.

Each virtual device owns one :class:`Link` (its own MQTT connection, client id and
credentials). A :class:`Publisher` creates links that all run on the current asyncio loop, so a
single process can drive thousands of devices without a thread per connection.

Two implementations (:func:`devices.publishers.make_publisher` picks one; this module imports
neither, so the contract does not depend on its implementations):

* :class:`devices.mqtt311.AsyncioPublisher` (default): a small MQTT 3.1.1 client on asyncio
  transports, ~5x cheaper per message than paho; what the load benchmark needs.
* :class:`devices.paho_transport.PahoPublisher`: paho-mqtt clients driven through paho's
  external-loop callbacks; supports MQTT 5 (PUBACK reason codes, e.g. a denied publication).

Contract shared by both: link callbacks run on the event loop; a publication's token is
reported at most once through :meth:`LinkEvents.link_published`, and publications not yet
acknowledged when a connection ends are abandoned (never reported, never resent: the device
logic decides what to retry, as protocol v1 requires for events).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Final, Generic, Protocol, TypeVar

__all__ = [
    "BrokerEndpoint",
    "Link",
    "LinkEvents",
    "LinkSpec",
    "LinkState",
    "MqttVersion",
    "Publisher",
    "SlicedPublisher",
    "TransportKind",
]


class MqttVersion(StrEnum):
    V311 = "3.1.1"
    V5 = "5"


class TransportKind(StrEnum):
    ASYNCIO = "asyncio"
    PAHO = "paho"


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """Where the devices connect. ``tls`` verifies the broker with ``ca_file`` (or the system
    trust store)."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """One device's MQTT identity (client id and username are the device id) and the topics it
    subscribes to (QoS 1) on every connection. The last will goes to ``will_topic``, retained,
    QoS 1."""

    client_id: str
    username: str
    password: str = field(repr=False)
    will_topic: str
    subscriptions: tuple[str, ...] = ()


class LinkEvents(Protocol):
    """What a link reports to its owner. Called on the event loop, one at a time."""

    def link_connected(self) -> None:
        """CONNACK accepted: the session is usable."""

    def link_failed(self, reason: str, *, refused: bool) -> None:
        """Connecting failed, or an established connection was lost unexpectedly.

        ``refused`` is True when the broker answered CONNACK with an error (e.g. bad
        credentials). The owner decides whether and when to call :meth:`Link.connect` again.
        """

    def link_closed(self) -> None:
        """The connection ended because the owner asked (:meth:`Link.disconnect`/``drop``)."""

    def link_published(self, token: int, ok: bool) -> None:
        """The broker acknowledged the QoS 1 publication ``token`` (PUBACK). ``ok`` is False
        when an MQTT 5 broker answered with an error reason code (e.g. not authorised)."""

    def link_message(self, topic: str, payload: bytes) -> None:
        """A message arrived on one of the link's subscriptions."""


class Link(Protocol):
    """One device connection."""

    @property
    def connected(self) -> bool:
        """True between CONNACK and the end of the connection."""
        ...

    def connect(self, will_payload: bytes) -> None:
        """Start connecting (only when idle) with this last will; the outcome is reported."""

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> int | None:
        """Send or queue a publication. Returns its token (reported by ``link_published`` for
        QoS 1; 0 for QoS 0), or None if nothing was sent (not connected, or queue full)."""

    def disconnect(self) -> None:
        """Send DISCONNECT and close: the broker discards the last will."""

    def drop(self) -> None:
        """Cut the TCP connection without DISCONNECT: the broker publishes the last will."""


class Publisher(Protocol):
    """A factory of links sharing the running event loop (one simulator run)."""

    def open(self, spec: LinkSpec, events: LinkEvents) -> Link:
        """Create an idle link; call :meth:`Link.connect` to start it."""
        ...

    async def aclose(self) -> None:
        """Stop background work (keepalives). Owners close their links first."""


class LinkState(Enum):
    """Where a link's connection stands."""

    IDLE = 0
    CONNECTING = 1  # TCP connecting or CONNECT sent, waiting for CONNACK
    CONNECTED = 2
    CLOSING = 3


MISC_INTERVAL_S: Final = 1.0
MISC_SLICES: Final = 10

L = TypeVar("L")


class SlicedPublisher(ABC, Generic[L]):
    """What both publishers share: the broker endpoint and TLS context, and one background
    task that visits the connected links for keepalives and timeouts. Links are spread over
    :data:`MISC_SLICES` sets (a link asks :meth:`next_slice` for its own), and each tick visits
    one set, so every link is seen once per :data:`MISC_INTERVAL_S` without a burst of work
    for thousands of links at once."""

    def __init__(self, endpoint: BrokerEndpoint, *, task_name: str) -> None:
        self.endpoint = endpoint
        self.loop = asyncio.get_running_loop()
        self.ssl_context: ssl.SSLContext | None = None
        if endpoint.tls:
            self.ssl_context = ssl.create_default_context(cafile=endpoint.ca_file)
        self.slices: list[set[L]] = [set() for _ in range(MISC_SLICES)]
        self._next_slice = 0
        self.now = time.monotonic()
        self._misc_task = self.loop.create_task(self._misc_loop(), name=task_name)

    def next_slice(self) -> int:
        self._next_slice = (self._next_slice + 1) % MISC_SLICES
        return self._next_slice

    @abstractmethod
    def visit(self, link: L, now: float) -> None:
        """Keepalive and timeout work of one link (``now``: :func:`time.monotonic`)."""

    async def _misc_loop(self) -> None:
        slice_s = MISC_INTERVAL_S / MISC_SLICES
        tick = 0
        while True:
            await asyncio.sleep(slice_s)
            self.now = now = time.monotonic()
            for link in list(self.slices[tick]):
                self.visit(link, now)
            tick = (tick + 1) % MISC_SLICES

    async def aclose(self) -> None:
        self._misc_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._misc_task
