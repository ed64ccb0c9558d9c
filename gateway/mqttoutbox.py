"""The gateway MQTT client's outgoing session state, with no I/O: what it publishes and
subscribes, packet ids, and what goes out again after a reconnect.

:class:`Outbox` decides *which packets* to write; :class:`gateway.mqttclient.MqttClient` writes
them. Every method is called with the client's write lock held (the lock guards this state
and the socket together, so a packet is never recorded without being written in order).

* **Publishing** QoS 1 with packet-id allocation, at most the broker's Receive Maximum (from
  CONNACK) in flight, the rest queued up to ``max_queued``. Unacknowledged publishes are resent
  with DUP after a reconnect when the broker kept the session; when it did not, they are sent
  again as new messages, first in line (at least once).
* **Subscribing** on every connect, with the reason codes of the SUBACK checked against the
  filters asked for.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from devices.mqttcodec import (
    MAX_REMAINING_LENGTH,
    ProtocolViolationError,
    encode_publish,
    encode_subscribe,
    reason_name,
)

log = logging.getLogger(__name__)

__all__ = ["ClientStats", "Outbox"]


@dataclass(slots=True)
class ClientStats:
    """Counters of the client (read them any time; written by the network thread)."""

    connects: int = 0
    refused: int = 0
    connection_losses: int = 0
    malformed_packets: int = 0
    protocol_errors: int = 0
    qos2_rejected: int = 0
    subscriptions_refused: int = 0
    published: int = 0
    publish_refused: int = 0
    publish_dropped: int = 0
    backpressure_pauses: int = 0  # times reading stopped because the byte budget was used


class Outbox:
    """Outgoing QoS 1 publishes and SUBSCRIBEs of one persistent session (caller holds the
    client's write lock)."""

    def __init__(
        self, subscriptions: Sequence[tuple[str, int]], max_queued: int, stats: ClientStats
    ) -> None:
        self._subscriptions = list(subscriptions)
        self._max_queued = max_queued
        self._stats = stats
        self.server_receive_max = 65535
        self.server_max_packet = MAX_REMAINING_LENGTH + 5
        self._next_id = 0
        self._inflight: dict[int, tuple[str, bytes, bool, bytes]] = {}  # id → (…, packet)
        self._queued: deque[tuple[str, bytes, bool]] = deque()
        self._subscribing: dict[int, list[str]] = {}
        self._queue_full_logged = False

    def connected(self, receive_max: int, max_packet: int) -> None:
        """A CONNACK accepted the connection with these limits of the broker."""
        self.server_receive_max = receive_max
        self.server_max_packet = max_packet
        self._queue_full_logged = False

    def enqueue(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Queue a QoS 1 publish; False (counted, logged once) when the queue is full."""
        if len(self._queued) >= self._max_queued:
            self._stats.publish_dropped += 1
            if not self._queue_full_logged:
                self._queue_full_logged = True
                log.error(
                    "mqtt publish queue full; dropping publishes",
                    extra={"queued": len(self._queued)},
                )
            return False
        self._queued.append((topic, payload, retain))
        return True

    def subscribe(self) -> bytes | None:
        """The SUBSCRIBE of every filter, sent again on every connect (None: no filters)."""
        if not self._subscriptions:
            return None
        self._subscribing.clear()
        mid = self._allocate_id()
        self._subscribing[mid] = [f for f, _ in self._subscriptions]
        return encode_subscribe(mid, self._subscriptions)

    def resend(self, session_present: bool) -> list[bytes]:
        """What to write again after a CONNACK: the unacknowledged publishes with their ids and
        DUP set when the broker kept the session (§4.4); otherwise nothing (the broker does not
        know them: they go back to the head of the queue as new messages)."""
        if session_present:
            return [
                bytes((packet[0] | 0x08,)) + packet[1:] for *_, packet in self._inflight.values()
            ]
        for _, (topic, payload, retain, _packet) in reversed(list(self._inflight.items())):
            self._queued.appendleft((topic, payload, retain))
        self._inflight.clear()
        return []

    def sendable(self) -> Iterator[bytes]:
        """Queued publishes the broker's Receive Maximum lets out now, each recorded in flight
        before it is yielded (a failed write leaves it there: resent after the reconnect).
        Stop iterating when a write fails."""
        limit = min(self.server_receive_max, 0xFFFF - 16)
        while self._queued and len(self._inflight) < limit:
            topic, payload, retain = self._queued.popleft()
            mid = self._allocate_id()
            packet = encode_publish(topic, payload, qos=1, retain=retain, packet_id=mid)
            if len(packet) > self.server_max_packet:
                self._stats.publish_dropped += 1
                log.error(
                    "publish larger than the broker's maximum packet size; dropped",
                    extra={"topic": topic, "size": len(packet)},
                )
                continue
            self._inflight[mid] = (topic, payload, retain, packet)
            yield packet

    def puback(self, mid: int, code: int) -> None:
        """The broker acknowledged publish ``mid`` (refused when ``code`` ≥ 0x80)."""
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return  # e.g. the ack of a DUP resend whose first copy was acked already
        if code >= 0x80:
            self._stats.publish_refused += 1
            refused = self._stats.publish_refused
            if refused == 1 or refused % 1000 == 0:
                log.warning(
                    "broker refused a publish",
                    extra={
                        "topic": entry[0],
                        "reason": reason_name(code),
                        "refused_total": refused,
                    },
                )
        else:
            self._stats.published += 1

    def suback(self, mid: int, codes: list[int]) -> None:
        """Check the SUBACK of ``mid``: a refused filter is counted and logged."""
        filters = self._subscribing.pop(mid, None)
        if filters is None:
            raise ProtocolViolationError(f"SUBACK for unknown packet id {mid}")
        if len(codes) != len(filters):
            raise ProtocolViolationError("SUBACK reason codes do not match the filters")
        for topic_filter, code in zip(filters, codes, strict=True):
            if code >= 0x80:
                self._stats.subscriptions_refused += 1
                log.error(
                    "broker refused a subscription",
                    extra={"filter": topic_filter, "reason": reason_name(code)},
                )
            elif code != dict(self._subscriptions).get(topic_filter, 0x01) & 0x03:
                log.warning(
                    "subscription granted with another QoS",
                    extra={"filter": topic_filter, "reason": reason_name(code)},
                )

    def _allocate_id(self) -> int:
        for _ in range(0xFFFF):
            self._next_id = self._next_id % 0xFFFF + 1
            if self._next_id not in self._inflight and self._next_id not in self._subscribing:
                return self._next_id
        raise RuntimeError("no free packet identifier")
