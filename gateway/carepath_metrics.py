"""Care-path metrics derived from the database at scrape time (a Prometheus Collector).

Counters (since this process started): incident timeline events by event, type and priority;
time to acknowledge (histogram); escalation tiers reached; staff pages by kind; notification
attempts by channel and result. Gauges (now): unacknowledged incidents and the age of the
oldest; the notification outbox's depth, oldest row and how overdue its most overdue due row
is; the same three for the outbox's other messages by kind (visit notices, platform push);
running escalation timers and how overdue the most overdue is.

Why derived rather than incremented where things happen: the workflow, escalation and
outbox code stays free of metrics plumbing, a transition made by another process (the API
of a second gateway, ``safehome`` CLI commands) is counted too, and nothing is counted that
was rolled back. The event tables are read incrementally by identity key. Identity values
are taken at insert and become visible at commit, so a row may appear below the highest id
already read: :class:`IdCursor` remembers the ids above its floor and waits (at most
``gap_timeout_s``) for the missing ones. A refresh runs at most every ``cache_s`` whatever
the scrape rate; a database outage leaves the last figures and sets
``safehome_carepath_up`` to 0. No per-device or per-resident labels.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway import facts
from gateway.platform.push import KIND as PUSH_KIND
from gateway.storage import carepath
from gateway.storage.carepath import InFlight
from gateway.visits.notices import KIND as NOTICE_KIND

log = logging.getLogger(__name__)

# Time to acknowledge: the SLA targets (60 s, 180 s) are bucket bounds.
TTA_BUCKETS: tuple[float, ...] = (10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800, 3600)
INCIDENT_EVENTS = frozenset({
    "raised", "triggered", "acknowledged", "dispatched", "on_scene", "resolved", "closed",
    "cancelled", "reopened",
})  # fmt: skip
PRIORITIES = facts.PRIORITIES
# The non-incident outbox kinds always exported (0 when none waits); another kind that has
# rows waiting is exported too.
MESSAGE_KINDS = (NOTICE_KIND, PUSH_KIND)

Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]


class IdCursor:
    """Which ids of an identity-keyed table have been counted.

    ``floor``: every id at or below it is counted (or was given up as a gap). ``seen``: ids
    above the floor already counted. An id missing between the floor and the highest seen is
    a gap (an uncommitted or rolled-back insert); it is waited for ``gap_timeout_s``.
    """

    def __init__(self, floor: int, gap_timeout_s: float, max_gap_span: int = 100_000) -> None:
        self.floor = floor
        self.seen: set[int] = set()
        self._gaps: dict[int, float] = {}
        self._timeout = gap_timeout_s
        self._max_span = max_gap_span

    def take(self, ids: Iterable[int], now: float) -> list[int]:
        """The ids not counted before (in the given order); remembers them."""
        new = [i for i in ids if i > self.floor and i not in self.seen]
        self.seen.update(new)
        return new

    def advance(self, now: float) -> None:
        """Move the floor over counted ids and expired gaps."""
        if not self.seen:
            return
        top = max(self.seen)
        if top - self.floor > self._max_span:  # far behind: give the gaps up
            self.floor = top - self._max_span
            self.seen = {i for i in self.seen if i > self.floor}
            self._gaps = {i: t for i, t in self._gaps.items() if i > self.floor}
        for i in range(self.floor + 1, top):
            if i not in self.seen:
                self._gaps.setdefault(i, now)
        while self.floor < top:
            nxt = self.floor + 1
            if nxt in self.seen:
                self.seen.discard(nxt)
            elif now - self._gaps.get(nxt, now) >= self._timeout:
                self._gaps.pop(nxt, None)
            else:
                break
            self._gaps.pop(nxt, None)
            self.floor = nxt


class CarePathCollector(Collector):
    """Prometheus collector of the care path; ``connect()`` lends a database connection."""

    def __init__(
        self,
        connect: Connect,
        *,
        cache_s: float,
        gap_timeout_s: float,
        batch_size: int = 5000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._cache_s = cache_s
        self._gap_timeout_s = gap_timeout_s
        self._batch = batch_size
        self._clock = clock
        self._lock = threading.Lock()
        self._cursors: dict[str, IdCursor] | None = None
        self._refreshed_at: float | None = None
        self._up = False
        self._errors = 0
        self._refresh_s = 0.0
        self.events: dict[tuple[str, str, str], float] = defaultdict(float)
        self._tta_buckets: dict[str, list[int]] = {}
        self._tta_sum: dict[str, float] = defaultdict(float)
        self.tiers: dict[str, float] = defaultdict(float)
        self.pages: dict[str, float] = defaultdict(float)
        self.attempts: dict[tuple[str, str], float] = defaultdict(float)
        self.in_flight: InFlight | None = None

    # -- refresh (under the lock) -------------------------------------------------------

    def refresh(self) -> None:
        """Read what is new and what is in flight now (at most once per ``cache_s``)."""
        with self._lock:
            now = self._clock()
            if self._refreshed_at is not None and now - self._refreshed_at < self._cache_s:
                return
            self._refreshed_at = now
            started = time.perf_counter()
            try:
                with self._connect() as conn:
                    self._read(conn, now)
            except psycopg.Error as exc:
                self._errors += 1
                if self._up or self._errors == 1:
                    log.warning(
                        "care-path metrics: database unavailable", extra={"error": str(exc)}
                    )
                self._up = False
                return
            if not self._up and self._errors:
                log.info("care-path metrics: database available again")
            self._up = True
            self._refresh_s = time.perf_counter() - started

    def _read(self, conn: psycopg.Connection[Any], now: float) -> None:
        if self._cursors is None:  # count from now on (counters start at process start)
            floors = carepath.max_ids(conn)
            self._cursors = {s: IdCursor(f, self._gap_timeout_s) for s, f in floors.items()}
        for stream, cursor in self._cursors.items():
            while True:
                before = cursor.floor
                rows = carepath.events_after(conn, stream, cursor.floor, self._batch)
                by_id = {int(r[0]): r for r in rows}
                for i in cursor.take(by_id, now):
                    self._count(stream, by_id[i])
                cursor.advance(now)
                if len(rows) < self._batch or cursor.floor == before:
                    break  # all read, or waiting behind a gap: the next refresh goes on
        self.in_flight = carepath.in_flight(conn)

    def _count(self, stream: str, row: tuple[Any, ...]) -> None:
        if stream == "incident_events":
            _, kind, itype, priority, tta = row
            event = kind if kind in INCIDENT_EVENTS else "other"
            self.events[(event, str(itype), str(priority))] += 1
            if event == "acknowledged" and tta is not None:
                self._observe_tta(str(priority), max(0.0, float(tta)))
        elif stream == "escalation_tiers":
            if row[1] is not None:
                self.tiers[str(row[1])] += 1
        elif stream == "staff_pages":
            self.pages[str(row[1])] += 1
        else:
            self.attempts[(str(row[1]), str(row[2]))] += 1

    def _observe_tta(self, priority: str, seconds: float) -> None:
        buckets = self._tta_buckets.setdefault(priority, [0] * (len(TTA_BUCKETS) + 1))
        for k, bound in enumerate(TTA_BUCKETS):
            if seconds <= bound:
                buckets[k] += 1
        buckets[-1] += 1  # +Inf
        self._tta_sum[priority] += seconds

    # -- collect ------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        self.refresh()
        with self._lock:
            yield from self._families()

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def _families(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "safehome_carepath_up", "1 when the last care-path refresh read the database"
        )
        up.add_metric([], 1.0 if self._up else 0.0)
        yield up
        errors = CounterMetricFamily(
            "safehome_carepath_refresh_errors", "Care-path refreshes that failed (database)"
        )
        errors.add_metric([], float(self._errors))
        yield errors
        took = GaugeMetricFamily(
            "safehome_carepath_refresh_seconds", "Duration of the last care-path refresh"
        )
        took.add_metric([], self._refresh_s)
        yield took

        events = CounterMetricFamily(
            "safehome_incident_events",
            "Incident timeline events (raised, acknowledged, closed, ...) by type and priority",
            labels=["event", "type", "priority"],
        )
        for key, n in sorted(self.events.items()):
            events.add_metric(list(key), n)
        yield events

        tta = HistogramMetricFamily(
            "safehome_incident_time_to_acknowledge_seconds",
            "Raised to acknowledged, per acknowledged incident",
            labels=["priority"],
        )
        for priority, counts in sorted(self._tta_buckets.items()):
            bounds = [*(str(float(b)) for b in TTA_BUCKETS), "+Inf"]
            tta.add_metric(
                [priority], list(zip(bounds, map(float, counts), strict=True)),
                self._tta_sum[priority],
            )  # fmt: skip
        yield tta

        tiers = CounterMetricFamily(
            "safehome_escalation_tiers_reached", "Escalation tiers reached", labels=["tier"]
        )
        for tier, n in sorted(self.tiers.items()):
            tiers.add_metric([tier], n)
        yield tiers

        pages = CounterMetricFamily(
            "safehome_staff_pages", "Staff pages, reminders and instructions", labels=["kind"]
        )
        for kind, n in sorted(self.pages.items()):
            pages.add_metric([kind], n)
        yield pages

        attempts = CounterMetricFamily(
            "safehome_notification_attempts",
            "Notification delivery attempts by channel and result (delivered, transient, "
            "permanent)",
            labels=["channel", "result"],
        )
        for (channel, result), n in sorted(self.attempts.items()):
            attempts.add_metric([channel, result], n)
        yield attempts

        yield from self._in_flight_families()

    def _in_flight_families(self) -> Iterator[Metric]:
        f = self.in_flight
        unacked = GaugeMetricFamily(
            "safehome_incidents_unacknowledged",
            "Open incidents not yet acknowledged",
            labels=["technical", "priority"],
        )
        oldest = GaugeMetricFamily(
            "safehome_incidents_unacknowledged_oldest_age_seconds",
            "Age of the oldest incident not yet acknowledged (0: none)",
            labels=["technical", "priority"],
        )
        found = {(u.technical, u.priority): u for u in f.unacknowledged} if f else {}
        for technical in (False, True):
            for p in PRIORITIES:
                u = found.get((technical, p))
                labels = ["true" if technical else "false", str(p)]
                unacked.add_metric(labels, float(u.count) if u else 0.0)
                oldest.add_metric(labels, u.oldest_age_s if u else 0.0)
        yield unacked
        yield oldest
        for name, doc, value in (
            ("safehome_notification_outbox_depth", "Notifications waiting to be sent",
             f.outbox_depth if f else 0),
            ("safehome_notification_outbox_oldest_age_seconds",
             "Age of the oldest notification waiting to be sent (0: none)",
             f.outbox_oldest_age_s if f else 0.0),
            ("safehome_notification_outbox_overdue_seconds",
             "How late the most overdue due notification is (0: none; grows when the "
             "outbox worker is stuck)", f.outbox_overdue_s if f else 0.0),
            ("safehome_escalations_running", "Incidents with a running escalation timer",
             f.escalations_running if f else 0),
            ("safehome_escalations_overdue_seconds",
             "How late the most overdue escalation step is (0: none)",
             f.escalations_overdue_s if f else 0.0),
        ):  # fmt: skip
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], float(value))
            yield g
        yield from self._message_families()

    def _message_families(self) -> Iterator[Metric]:
        """The outbox's non-incident messages by kind (their own alert, milder than the
        incident outbox's)."""
        waiting = {m.kind: m for m in self.in_flight.messages} if self.in_flight else {}
        kinds = sorted(set(MESSAGE_KINDS) | set(waiting))
        for name, doc, attr in (
            ("safehome_message_outbox_depth",
             "Non-incident messages (visit notices, platform push) waiting to be sent", "depth"),
            ("safehome_message_outbox_oldest_age_seconds",
             "Age of the oldest non-incident message waiting to be sent (0: none)",
             "oldest_age_s"),
            ("safehome_message_outbox_overdue_seconds",
             "How late the most overdue due non-incident message is (0: none; grows when the "
             "message worker is stuck)", "overdue_s"),
        ):  # fmt: skip
            g = GaugeMetricFamily(name, doc, labels=["kind"])
            for kind in kinds:
                m = waiting.get(kind)
                g.add_metric([kind], float(getattr(m, attr)) if m else 0.0)
            yield g
