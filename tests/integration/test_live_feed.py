"""The staff live feed (SSE) against a real gateway: latency, resume, slow clients."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from gateway.api.auth import create_user
from gateway.api.livefeed import LiveFeed, Subscription
from gateway.settings import SettingsError, load_settings
from gateway.workflow.service import Actor, IncidentService, Trigger
from gateway.workflow.transitions import IncidentType, Role
from tests.support import (
    Broker,
    Database,
    InProcessGateway,
    access_token,
    gateway_settings,
    make_site,
)

pytestmark = pytest.mark.integration

SECRET = "live-" + uuid.uuid4().hex + uuid.uuid4().hex
PASSWORD = "pw-" + uuid.uuid4().hex[:12]
NURSE = Actor("staff-1", Role.DUTY_STAFF)


class SseReader:
    """An SSE client in a thread: events land in ``events`` as (id, data, arrival time)."""

    def __init__(self, url: str, token: str, last_event_id: int | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(10, read=60))
        self._url = url
        self.events: queue.Queue[tuple[int, dict[str, Any], float]] = queue.Queue()
        self.connected = threading.Event()
        self.status: int | None = None
        self._resp: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SseReader:
        self._thread.start()
        assert self.connected.wait(10), "stream did not open"
        assert self.status == 200
        return self

    def __exit__(self, *exc: object) -> None:
        if self._resp is not None:
            self._resp.close()
        self._client.close()

    def _run(self) -> None:
        try:
            with self._client.stream("GET", self._url) as resp:
                self._resp = resp
                self.status = resp.status_code
                event_id, data = None, None
                for line in resp.iter_lines():
                    if line.startswith(": connected"):
                        self.connected.set()
                    elif line.startswith("id: "):
                        event_id = int(line[4:])
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                    elif line == "" and event_id is not None and data is not None:
                        self.events.put((event_id, data, time.monotonic()))
                        event_id, data = None, None
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by the test
        finally:
            self.connected.set()

    def take(self, n: int, timeout_s: float) -> list[tuple[int, dict[str, Any], float]]:
        out: list[tuple[int, dict[str, Any], float]] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < n:
            out.append(self.events.get(timeout=max(0.01, deadline - time.monotonic())))
        return out


@pytest.fixture
def gateway(db: Database, broker: Broker) -> Iterator[tuple[InProcessGateway, str]]:
    make_site(db, broker, site_id="site-a", beds=3)
    make_site(db, broker, site_id="site-b", beds=1)
    with db.connect() as conn:
        create_user(conn, "duty-a", "duty_staff", PASSWORD, site_id="site-a")
    settings = gateway_settings(db, broker, SAFEHOME_API__JWT_SECRET=SECRET)
    with InProcessGateway(settings) as gw:
        yield gw, access_token(gw.api_url, "duty-a", PASSWORD)


def _raise(db: Database, site: str, resident: str, kind: IncidentType = IncidentType.FALL) -> int:
    with db.connect() as conn:
        incident, _ = IncidentService(conn).raise_or_join(
            Trigger(kind, site, datetime.now(UTC), "test", resident_id=resident)
        )
    return incident.id


def test_new_incident_reaches_the_feed_within_a_second(
    db: Database, gateway: tuple[InProcessGateway, str]
) -> None:
    gw, token = gateway
    with SseReader(f"{gw.api_url}/incidents/stream", token) as reader:
        for resident in ("site-a-r0", "site-a-r1"):
            t0 = time.monotonic()
            incident_id = _raise(db, "site-a", resident)
            [(event_id, data, arrived)] = reader.take(1, timeout_s=2)
            assert arrived - t0 < 1.0, f"event after {arrived - t0:.3f} s"
            assert data["incident_id"] == incident_id and data["kind"] == "raised"
            assert data["type"] == "fall" and data["site_id"] == "site-a"
            assert event_id == db.scalar(  # the SSE id: the event's number in commit order
                "SELECT max(feed_seq) FROM incident_events WHERE incident_id = %s", (incident_id,)
            )
        _raise(db, "site-b", "site-b-r0")  # another site: not on this staff member's feed
        with pytest.raises(queue.Empty):
            reader.take(1, timeout_s=1)


def test_resume_with_last_event_id_gets_exactly_the_missed_events(
    db: Database, gateway: tuple[InProcessGateway, str]
) -> None:
    gw, token = gateway
    url = f"{gw.api_url}/incidents/stream"
    first = _raise(db, "site-a", "site-a-r0")
    with SseReader(url, token) as reader:
        second = _raise(db, "site-a", "site-a-r1")
        [(last_seen, data, _)] = reader.take(1, timeout_s=2)
        assert data["incident_id"] == second
    # Offline: changes on both sites.
    with db.connect() as conn:
        service = IncidentService(conn)
        service.acknowledge(first, NURSE)
        service.dispatch(first, NURSE, "staff-2")
        service.acknowledge(second, NURSE)
    _raise(db, "site-b", "site-b-r0")
    third = _raise(db, "site-a", "site-a-r2")
    missed = [
        r[0]
        for r in db.rows(
            "SELECT e.feed_seq FROM incident_events e JOIN incidents i ON i.id = e.incident_id "
            "WHERE e.feed_seq > %s AND i.site_id = 'site-a' ORDER BY e.feed_seq",
            (last_seen,),
        )
    ]
    assert len(missed) == 4
    with SseReader(url, token, last_event_id=last_seen) as reader:
        got = reader.take(len(missed), timeout_s=3)
        assert [g[0] for g in got] == missed
        assert [g[1]["kind"] for g in got] == ["acknowledged", "dispatched", "acknowledged",
                                               "raised"]  # fmt: skip
        # ... then follows live, without repeating anything.
        with db.connect() as conn:
            IncidentService(conn).acknowledge(third, NURSE)
        [(live_id, data, _)] = reader.take(1, timeout_s=2)
        assert live_id > missed[-1] and data["kind"] == "acknowledged"
        with pytest.raises(queue.Empty):
            reader.take(1, timeout_s=0.5)


def test_a_slow_client_is_dropped_and_the_others_keep_receiving() -> None:
    async def scenario() -> None:
        feed = LiveFeed(pool=None, conninfo=None, queue_size=2)  # type: ignore[arg-type]
        slow = Subscription(None, asyncio.Queue(2))
        fast = Subscription(None, asyncio.Queue(100))
        other_site = Subscription("site-b", asyncio.Queue(1))
        for sub in (slow, fast, other_site):
            feed._subs.add(sub)
        for i in range(1, 6):
            feed._fan_out({"id": i, "site_id": "site-a"})
            fast.queue.get_nowait()  # the fast client keeps up
        assert slow.overflowed and slow.wake.is_set()
        assert feed.subscribers == 2 and not fast.overflowed
        assert other_site.queue.empty() and not other_site.overflowed

    asyncio.run(scenario())


def _insert_uncommitted(conn: Any, site: str, resident: str) -> int:
    """Raise an incident inside ``conn``'s open transaction; return its timeline event id.

    This is the state of an incident transaction that has inserted its timeline event and
    not yet committed (e.g. it waits for the audit lock that another one holds).
    """
    incident_id = conn.execute(
        "INSERT INTO incidents (site_id, resident_id, subject, type, priority, technical,"
        " first_trigger_at, last_trigger_at, raised_at, reason)"
        " VALUES (%s, %s, %s, 'emergency_call', 1, false, now(), now(), now(), 'test')"
        " RETURNING id",
        (site, resident, resident),
    ).fetchone()[0]
    return int(
        conn.execute(
            "INSERT INTO incident_events (incident_id, time, kind, actor)"
            " VALUES (%s, now(), 'raised', 'system') RETURNING id",
            (incident_id,),
        ).fetchone()[0]
    )


def test_commits_out_of_id_order_reach_the_feed_and_a_resuming_client(
    db: Database, gateway: tuple[InProcessGateway, str]
) -> None:
    """Event A gets the lower id but commits after event B: the feed delivers both, and a
    client resuming after B's SSE id still gets A (the ids of the feed are commit order)."""
    gw, token = gateway
    url = f"{gw.api_url}/incidents/stream"
    with SseReader(url, token) as reader, psycopg.connect(db.conninfo()) as slow:
        early_id = _insert_uncommitted(slow, "site-a", "site-a-r0")  # lower id, still open
        late_incident = _raise(db, "site-a", "site-a-r1")  # higher id, committed first
        late_id = db.scalar(
            "SELECT max(id) FROM incident_events WHERE incident_id = %s", (late_incident,)
        )
        assert late_id > early_id
        [(late_sse, data, _)] = reader.take(1, timeout_s=3)
        assert data["id"] == late_id
        # The follower has delivered B, so its cursor is past A's id; now A commits.
        slow.commit()
        [(early_sse, data, _)] = reader.take(1, timeout_s=3)
        assert data["id"] == early_id and data["kind"] == "raised"
        assert early_sse > late_sse  # numbered in commit order
    # A console that had seen B only (and then lost its stream) resumes and gets A.
    with SseReader(url, token, last_event_id=late_sse) as resumed:
        [(sse_id, data, _)] = resumed.take(1, timeout_s=3)
        assert (sse_id, data["id"]) == (early_sse, early_id)
        with pytest.raises(queue.Empty):
            resumed.take(1, timeout_s=0.5)


def test_console_reconcile_interval_is_at_most_ten_seconds() -> None:
    base = {"SAFEHOME_API__JWT_SECRET": SECRET}
    assert load_settings(environ=base).api.console_reconcile_s == 10.0
    short = load_settings(environ=base | {"SAFEHOME_API__CONSOLE_RECONCILE_S": "2"})
    assert short.api.console_reconcile_s == 2.0
    with pytest.raises(SettingsError, match="console_reconcile_s"):
        load_settings(environ=base | {"SAFEHOME_API__CONSOLE_RECONCILE_S": "30"})
