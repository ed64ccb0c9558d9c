"""The ledger: what the fleet sent against what the gateway stored, raised and paged.

For every alarm (:class:`~tests.faultkit.fleet.Press`) the chain is followed through the
database, by identity, not by counts:

1. **stored** — its ``device_events`` row (by device and message id), exactly once;
2. **raised** — the incident timeline entry (``raised`` or ``triggered``) whose trigger time
   is the stored alarm's time (or its receive time: an alarm whose device clock was wrong is
   raised at the time the gateway received it), exactly once: a second entry, or a second
   open incident for the same subject and type, is a **duplicate**;
3. **paged** — its incident has a ``staff_pages`` page for the on-duty user and, where staff
   paging exists (``staff_channels``), a delivery at the user's pager (the receiver).

An alarm missing at any step is **lost**. Telemetry is checked as a set: every message the
broker confirmed is stored or dead-lettered with a reason (telemetry with an implausible
timestamp may be refused, never silently), nothing stored that was never sent, nothing
stored twice.
Everything the fleet sent with a unique millisecond (:meth:`Fleet.unique_ts`), so a trigger
time names one alarm.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.faultkit.fleet import ALARM_TYPES, Fleet, Press
from tests.faultkit.stack import Receiver, Site
from tests.support import Database

__all__ = ["FaultResult", "Ledger", "LedgerReport", "micros"]


def micros(t: datetime) -> int:
    """A timestamp as integer microseconds (exact for the stored and the trigger times)."""
    return round(t.timestamp() * 1_000_000)


@dataclass
class LedgerReport:
    """One reading of the ledger."""

    alarms_sent: int = 0
    alarms_acked: int = 0
    alarms_stored: int = 0
    alarms_raised: int = 0
    incidents: int = 0  # distinct incidents the fleet's alarms raised or joined
    paged: int = 0  # pages (staff_pages rows) for those incidents
    pager_deliveries: int = 0  # deliveries at the on-duty user's pager (staff paging)
    pager_resent: int = 0  # deliveries repeating an earlier delivery id (at-least-once)
    unpaged: list[int] = field(default_factory=list)  # alarm incidents nobody was paged for
    lost: list[str] = field(default_factory=list)  # "<msg id>: <where the chain broke>"
    duplicates: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # alarms the gateway acked "rejected"
    telemetry_confirmed: int = 0
    telemetry_stored: int = 0
    telemetry_missing: int = 0  # confirmed by the broker, not stored
    telemetry_unknown: int = 0  # stored, never sent by the fleet
    telemetry_duplicates: int = 0
    telemetry_dead_lettered: int = 0  # confirmed, refused with a reason (e.g. clock wrong)
    dead_letters: dict[str, int] = field(default_factory=dict)  # reason -> rows
    technical: list[tuple[str, str, str, int]] = field(default_factory=list)
    # (type, subject, state, clears) of every technical incident
    incident_of: dict[str, int] = field(default_factory=dict)  # msg id -> incident id
    # msg id -> when the gateway raised or joined its incident (the timeline entry's time)
    raised_at: dict[str, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every alarm stored, raised and paged; every confirmed reading stored."""
        return not self.lost and not self.unpaged and not self.telemetry_missing

    @property
    def clean(self) -> bool:
        return not self.duplicates and not self.telemetry_duplicates and not self.telemetry_unknown

    def summary(self) -> str:
        return (
            f"alarms {self.alarms_sent} sent/{self.alarms_stored} stored/"
            f"{self.alarms_raised} raised, incidents {self.incidents}, paged {self.paged}"
            f"{f' ({self.pager_deliveries} at the pager' if self.pager_deliveries else ''}"
            f"{f', {self.pager_resent} of them resent' if self.pager_resent else ''}"
            f"{')' if self.pager_deliveries else ''}, "
            f"lost {len(self.lost)}, duplicates {len(self.duplicates)}, "
            f"telemetry {self.telemetry_confirmed} confirmed/{self.telemetry_stored} stored/"
            f"{self.telemetry_missing} missing"
            + (
                f"/{self.telemetry_dead_lettered} dead-lettered"
                if self.telemetry_dead_lettered
                else ""
            )
            + (f"/{self.telemetry_unknown} never sent" if self.telemetry_unknown else "")
            + (f"/{self.telemetry_duplicates} twice" if self.telemetry_duplicates else "")
        )


_STORED = b"""
SELECT device_id, msg_id, time, received_at FROM device_events WHERE type = ANY(%s)
"""
_TRIGGERS = b"""
SELECT ie.incident_id, ie.kind, (ie.data->>'trigger_time')::timestamptz, i.type, i.subject,
       i.technical, i.state, extract(epoch FROM ie.time)
FROM incident_events ie JOIN incidents i ON i.id = ie.incident_id
WHERE ie.kind IN ('raised', 'triggered')
"""
_PAGES = b"""
SELECT incident_id, count(*) FROM staff_pages
WHERE kind = 'page' AND user_id = %s GROUP BY incident_id
"""
_TECHNICAL = b"""
SELECT i.type, i.subject, i.state,
       (SELECT count(*) FROM incident_events e WHERE e.incident_id = i.id AND e.kind = 'cleared')
FROM incidents i WHERE i.technical ORDER BY i.id
"""
_READINGS = b"SELECT device_id, msg_id FROM readings"
_DEAD = b"SELECT device_id, reason, payload FROM dead_letters"


class Ledger:
    """Reads the books of one fault run (fleet + database + receiver)."""

    def __init__(self, db: Database, fleet: Fleet, site: Site, receiver: Receiver) -> None:
        self.db = db
        self.fleet = fleet
        self.site = site
        self.receiver = receiver
        # Telemetry the fleet may have sent before the books started (none by default).
        self.ignore_telemetry_of: set[str] = set()

    def read(self, presses: Iterable[Press] | None = None) -> LedgerReport:
        presses = list(self.fleet.presses if presses is None else presses)
        rep = LedgerReport(alarms_sent=len(presses))
        with self.db.connect() as conn:
            stored_rows = conn.execute(_STORED, (list(ALARM_TYPES),)).fetchall()
            triggers = conn.execute(_TRIGGERS).fetchall()
            pages = dict(conn.execute(_PAGES, (self.site.duty_user,)).fetchall())
            technical = conn.execute(_TECHNICAL).fetchall()
            readings = conn.execute(_READINGS).fetchall()
            dead = conn.execute(_DEAD).fetchall()
        stored: dict[tuple[str, str], list[tuple[datetime, datetime]]] = defaultdict(list)
        for dev, mid, t, received in stored_rows:
            stored[(str(dev), str(mid))].append((t, received))
        by_time: dict[int, list[tuple[int, str, float]]] = defaultdict(list)
        open_alarm_incidents: dict[tuple[str, str], set[int]] = defaultdict(set)
        for incident_id, kind, trigger, type_, subject, is_technical, state, at in triggers:
            if trigger is None or is_technical:
                continue
            by_time[micros(trigger)].append((int(incident_id), str(kind), float(at)))
            if state in ("raised", "acknowledged", "dispatched", "on_scene"):
                open_alarm_incidents[(str(type_), str(subject))].add(int(incident_id))
        incidents: set[int] = set()
        for p in presses:
            rep.alarms_acked += p.settled
            if p.status == "rejected":
                rep.rejected.append(f"{p.msg_id} ({', '.join(p.reasons) or 'no reason'})")
            rows = stored.get((p.device_id, p.msg_id), [])
            if not rows:
                rep.lost.append(f"{p.device_id}/{p.msg_id}: not stored (ack {p.status})")
                continue
            rep.alarms_stored += 1
            if len(rows) > 1:
                rep.duplicates.append(f"{p.msg_id}: stored {len(rows)} times")
            t, received = rows[0]
            hits = by_time.get(micros(t), []) or by_time.get(micros(received), [])
            if not hits:
                rep.lost.append(f"{p.device_id}/{p.msg_id}: stored, no incident")
                continue
            rep.alarms_raised += 1
            if len(hits) > 1:
                rep.duplicates.append(f"{p.msg_id}: raised {len(hits)} times {hits}")
            rep.incident_of[p.msg_id] = hits[0][0]
            rep.raised_at[p.msg_id] = hits[0][2]
            incidents.update(i for i, _, _ in hits)
        for key, ids in open_alarm_incidents.items():
            if len(ids & incidents) > 1:
                rep.duplicates.append(f"{key}: {len(ids & incidents)} open incidents {sorted(ids)}")
        rep.incidents = len(incidents)
        rep.paged = sum(int(pages.get(i, 0)) for i in incidents)
        if self.site.paging:
            delivered = Counter(d.incident_id for d in self.receiver.received("pager"))
            rep.pager_deliveries = sum(delivered[i] for i in incidents)
            sends = Counter(d.delivery_id for d in self.receiver.received("pager") if d.delivery_id)
            rep.pager_resent = sum(n - 1 for n in sends.values())
            rep.unpaged = sorted(i for i in incidents if not delivered[i])
        else:
            rep.unpaged = sorted(i for i in incidents if not pages.get(i))
        rep.technical = [(str(a), str(b), str(c), int(d)) for a, b, c, d in technical]
        confirmed, attempted = self.fleet.telemetry(self.ignore_telemetry_of)
        stored_ids = Counter(str(mid) for dev, mid in readings
                             if str(dev) not in self.ignore_telemetry_of)  # fmt: skip
        rep.telemetry_confirmed = len(confirmed)
        rep.telemetry_stored = len(stored_ids)
        dead_ids: set[str] = set()
        for _dev, reason, payload in dead:
            rep.dead_letters[str(reason)] = rep.dead_letters.get(str(reason), 0) + 1
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                dead_ids.add(str(json.loads(bytes(payload))["id"]))
        rep.telemetry_dead_lettered = len(confirmed & dead_ids)
        rep.telemetry_missing = len(confirmed - set(stored_ids) - dead_ids)
        rep.telemetry_unknown = len(set(stored_ids) - attempted - confirmed)
        rep.telemetry_duplicates = sum(n - 1 for n in stored_ids.values() if n > 1)
        return rep

    def wait_complete(
        self, timeout_s: float, presses: Iterable[Press] | None = None, step_s: float = 0.25
    ) -> tuple[LedgerReport, float | None]:
        """Poll until the ledger is complete; return it and when (``time.monotonic``), or the
        last reading and None after ``timeout_s``."""
        chosen = None if presses is None else list(presses)
        deadline = time.monotonic() + timeout_s
        while True:
            rep = self.read(chosen)
            if rep.complete and not self.fleet.unsettled():
                return rep, time.monotonic()
            if time.monotonic() > deadline:
                return rep, None
            time.sleep(step_s)


@dataclass
class FaultResult:
    """The outcome of one fault: the ledger, the recovery time and the fault's own checks."""

    name: str
    report: LedgerReport
    recovery_s: float | None  # fault over -> ledger complete (None: never within the deadline)
    failures: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    alarm_to_page_ms: list[float] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)

    @property
    def passed(self) -> bool:
        r = self.report
        return (
            not self.failures and self.recovery_s is not None and not r.lost and r.clean
            and not r.unpaged and not r.telemetry_missing
        )  # fmt: skip

    def line(self) -> str:
        r = self.report
        rec = "never" if self.recovery_s is None else f"{self.recovery_s:.1f} s"
        extra = "".join(f", {k} {v}" for k, v in self.notes.items())
        verdict = "PASS" if self.passed else "FAIL"
        return f"{verdict} {self.name}: recovery {rec}; {r.summary()}{extra}" + (
            f"; failures: {'; '.join(self.failures)}" if self.failures else ""
        )

    def explain(self) -> str:
        """Everything a failing assertion should show."""
        r = self.report
        parts = [self.line()]
        if r.lost:
            parts.append("lost: " + "; ".join(r.lost[:10]))
        if r.duplicates:
            parts.append("duplicates: " + "; ".join(r.duplicates[:10]))
        if r.rejected:
            parts.append("rejected acks: " + "; ".join(r.rejected[:10]))
        if r.unpaged:
            parts.append(f"incidents nobody was paged for: {r.unpaged[:10]}")
        if r.technical:
            parts.append(f"technical incidents: {r.technical[:10]}")
        return "\n".join(parts)


_FIRST_PAGE = b"""
SELECT incident_id, extract(epoch FROM min(created_at)) FROM staff_pages
WHERE kind = 'page' AND user_id = %s GROUP BY incident_id
"""


def page_times(db: Database, site: Site, receiver: Receiver) -> dict[int, float]:
    """When each incident's first page reached the on-duty user: at the pager (the receiver)
    where staff paging exists, else when the page was written for the console."""
    out: dict[int, float] = {}
    if site.paging:
        for d in receiver.received("pager"):
            if d.incident_id is not None:
                out[d.incident_id] = min(d.at, out.get(d.incident_id, d.at))
        return out
    with db.connect() as conn:
        for incident_id, at in conn.execute(_FIRST_PAGE, (site.duty_user,)).fetchall():
            out[int(incident_id)] = float(at)
    return out


def first_page_latency_ms(
    presses: Iterable[Press],
    incident_of: dict[str, int],
    page_time: Callable[[int], float | None],
) -> list[float]:
    """Press → first page of the incident it raised (presses that joined an incident already
    paged are not counted: their page happened before them)."""
    out: list[float] = []
    seen: set[int] = set()
    for p in sorted(presses, key=lambda p: p.sent_at):
        incident = incident_of.get(p.msg_id)
        if incident is None or incident in seen:
            continue
        seen.add(incident)
        at = page_time(incident)
        if at is not None and at >= p.sent_at:
            out.append((at - p.sent_at) * 1000.0)
    return out
