"""Ingest's PUBACK order: acknowledgements go out in the order the messages were received,
across both writer lanes (MQTT 5 §4.6, [MQTT-4.6.0-2]); see :mod:`gateway.ingest`."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gateway.mqttsession import Received

__all__ = ["AckOrder", "EventMsg"]


@dataclass(slots=True, eq=False)
class EventMsg:
    """An event-lane message: its place among everything received, for its PUBACK."""

    rec: Received
    position: int  # how many bulk-lane messages were received before it
    stored: bool = False  # committed (or dead-lettered): its PUBACK may go


class AckOrder:
    """Sends PUBACKs in the order the messages were received, across both lanes.

    Bulk-lane messages are numbered by arrival (their batches are committed in that order,
    by one thread); an event-lane message knows how many bulk-lane messages came before it.
    After each commit, :meth:`release` sends every PUBACK whose predecessors are all stored,
    merged in receive order, under one lock (taken once per batch, never per message) so two
    writers never interleave their acknowledgements.
    """

    def __init__(self, send: Callable[[list[Received]], None]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self.events: deque[EventMsg] = deque()  # appended by the network thread only
        self._bulk: deque[list[Received]] = deque()  # committed bulk batches, oldest first
        self._offset = 0  # how much of self._bulk[0] is acknowledged
        self._bulk_next = 0  # arrival number of the next bulk message to acknowledge

    def bulk_stored(self, recs: list[Received]) -> None:
        with self._lock:
            self._bulk.append(recs)
            self._release()

    def events_stored(self, msgs: list[EventMsg]) -> None:
        with self._lock:
            for m in msgs:
                m.stored = True
            self._release()

    def _release(self) -> None:
        out: list[Received] = []
        events, bulk = self.events, self._bulk
        while True:
            ev = events[0] if events else None
            if ev is not None and ev.position <= self._bulk_next:
                if not ev.stored:
                    break  # everything after it waits for its commit
                events.popleft()
                out.append(ev.rec)
                continue
            if not bulk:
                break
            batch, start = bulk[0], self._offset
            stop = len(batch)
            if ev is not None:
                stop = min(stop, start + ev.position - self._bulk_next)
            out.extend(batch[start:stop])
            self._bulk_next += stop - start
            if stop == len(batch):
                bulk.popleft()
                self._offset = 0
            else:
                self._offset = stop
        if out:
            self._send(out)
