"""PUBACKs leave in receive order across the ingest lanes (MQTT 5 [MQTT-4.6.0-2])."""

from __future__ import annotations

from gateway.ingest_acks import AckOrder, EventMsg
from gateway.mqttclient import Received


def _rec(mid: int) -> Received:
    return Received(1, mid, 1, f"shg/v1/s/d/{mid}", b"", 0.0, False)


class Arrivals:
    """Messages in receive order: bulk b0 b1, event e0, bulk b2 b3, event e1, bulk b4."""

    def __init__(self) -> None:
        self.sent: list[list[int]] = []
        self.order = AckOrder(lambda recs: self.sent.append([r.mid for r in recs]))
        self.b = [_rec(m) for m in (0, 1, 3, 4, 6)]
        self.e0 = EventMsg(_rec(2), position=2)
        self.e1 = EventMsg(_rec(5), position=4)
        self.order.events.extend([self.e0, self.e1])


def test_events_stored_first_are_acked_right_after_the_telemetry_received_before_them() -> None:
    a = Arrivals()
    a.order.events_stored([a.e0])
    assert a.sent == []  # b0 and b1 came first and are not stored yet
    a.order.bulk_stored(a.b[:3])
    assert a.sent == [[0, 1, 2, 3]]
    a.order.events_stored([a.e1])
    assert a.sent == [[0, 1, 2, 3]]  # b3 is not stored yet
    a.order.bulk_stored(a.b[3:])
    assert a.sent == [[0, 1, 2, 3], [4, 5, 6]]


def test_telemetry_stored_first_waits_for_an_earlier_event() -> None:
    a = Arrivals()
    a.order.bulk_stored(a.b)
    assert a.sent == [[0, 1]]
    a.order.events_stored([a.e1])
    assert a.sent == [[0, 1]]  # e0 still holds everything after it
    a.order.events_stored([a.e0])
    assert a.sent == [[0, 1], [2, 3, 4, 5, 6]]
