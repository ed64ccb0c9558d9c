"""Escalation against real PostgreSQL (and, end to end, Mosquitto and an HTTP receiver).

Covers: detections becoming incidents in the storing transaction, the duty roster, tier by
tier escalation on a short ladder, acknowledgement stopping it, restarts (and a crash inside
a tier's transaction) neither losing nor repeating a tier, exhausted channels moving on
early, and a button press on a real device reaching a family contact's webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from analytics.types import DetectionKind
from devices import protocol as p
from gateway import audit
from gateway.analysis import DetectionRecord, PostgresStore
from gateway.escalation import intake
from gateway.escalation.ladder import EscalationConfig, parse_ladders
from gateway.escalation.roster import DutyRole, add_shift, on_duty
from gateway.escalation.worker import EscalationWorker
from gateway.notify import NotifySettings, OutboxWorker, build_notifiers
from gateway.notify.settings import WebhookEndpoint
from gateway.settings import DatabaseSettings
from gateway.workflow.service import Actor, IncidentService, Trigger
from gateway.workflow.transitions import IncidentType, Role
from tests.support import (
    PREFIX,
    Broker,
    Database,
    DeviceClient,
    InProcessGateway,
    gateway_settings,
    make_site,
    wait_until,
)

pytestmark = pytest.mark.integration

NURSE = Actor("staff-17", Role.DUTY_STAFF)


def ladder(
    *, duty: float = 0.6, supervisor: float = 0.6, contacts: float = 0.6, **extra: Any
) -> EscalationConfig:
    """A short ladder (seconds) with every kind of tier."""
    return parse_ladders(
        {
            "ladder": {
                "tiers": [
                    {"name": "duty_staff", "audience": "duty_staff", "timeout_s": duty,
                     "reminder_s": extra.get("reminder_s")},
                    {"name": "supervisor", "audience": "supervisor", "timeout_s": supervisor},
                    {"name": "contacts", "audience": "contacts", "timeout_s": contacts},
                    {"name": "emergency", "audience": "emergency", "timeout_s": 30,
                     "instruction": "call 120 now"},
                ]
            }
        }
    )  # fmt: skip


# --------------------------------------------------------------------------- registry


def seed(db: Database, channels: list[str], *, on_duty_staff: bool = True) -> None:
    """Site s1 with resident r1, one family contact and (optionally) staff on shift now."""
    now = datetime.now(UTC)
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO sites (site_id, name, kind) VALUES ('s1', 'Site', 'nursing_home')"
        )
        conn.execute(
            "INSERT INTO locations (location_id, site_id, kind, label)"
            " VALUES ('l1', 's1', 'room', 'Room 301')"
        )
        conn.execute(
            "INSERT INTO beds (bed_id, bed_code, site_id, location_id)"
            " VALUES ('b1', 'BED-0301', 's1', 'l1')"
        )
        conn.execute(
            "INSERT INTO residents (resident_id, elder_code, site_id, bed_id, display_name,"
            " care_level, consent_family_incidents)"
            " VALUES ('r1', 'ELD-1', 's1', 'b1', 'R', 3, true)"
        )
        conn.execute(
            "INSERT INTO contacts (contact_id, resident_id, kind, display_name, channels)"
            " VALUES ('fam1', 'r1', 'family', 'F', %s)",
            (json.dumps(channels),),
        )
        if on_duty_staff:
            shift = {"starts_at": now - timedelta(hours=1), "ends_at": now + timedelta(hours=7)}
            add_shift(conn, "s1", user_id="staff-17", role=DutyRole.DUTY_STAFF, **shift)
            add_shift(conn, "s1", user_id="staff-18", role=DutyRole.DUTY_STAFF, **shift)
            add_shift(conn, "s1", user_id="head-02", role=DutyRole.SUPERVISOR, **shift)


def raise_fall(db: Database) -> int:
    """Raise a fall of r1 and start its escalation, as the analysis hook does."""
    with db.connect() as conn, conn.transaction():
        incident, created = IncidentService(conn).raise_or_join(
            Trigger(IncidentType.FALL, "s1", datetime.now(UTC), "impact", resident_id="r1")
        )
        assert created
        intake.start_escalation(conn, incident.id, "s1")
    return incident.id


def pages(db: Database, incident_id: int) -> list[tuple[Any, ...]]:
    return db.rows(
        "SELECT tier_name, sequence, user_id, kind FROM staff_pages WHERE incident_id = %s"
        " ORDER BY id",
        (incident_id,),
    )


def tier_pages(db: Database, incident_id: int) -> list[tuple[Any, ...]]:
    """First pages of each tier (sequence 0): what must exist exactly once."""
    return [r for r in pages(db, incident_id) if r[1] == 0]


def escalation(db: Database, incident_id: int) -> tuple[Any, ...]:
    rows = db.rows(
        "SELECT tier, reminders_sent, stopped_at IS NOT NULL, stop_reason"
        " FROM incident_escalations WHERE incident_id = %s",
        (incident_id,),
    )
    return rows[0]


def outbox_rows(db: Database, incident_id: int) -> list[tuple[Any, ...]]:
    return db.rows(
        "SELECT contact_id, channel, state FROM notification_outbox WHERE incident_id = %s"
        " ORDER BY id",
        (incident_id,),
    )


@pytest.fixture
async def pool(db: Database) -> AsyncIterator[AsyncConnectionPool[Any]]:
    p_: AsyncConnectionPool[Any] = AsyncConnectionPool(
        db.conninfo(), min_size=1, max_size=4, kwargs={"autocommit": True}, open=False
    )
    await p_.open()
    yield p_
    await p_.close()


async def until(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# --------------------------------------------------------------------------- receiver


class Receiver:
    """A real local HTTP endpoint answering every POST with ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            rec.bodies.append(json.loads(body))
            self.send_response(rec.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()
    thread.join(5)


# --------------------------------------------------------------------------- roster


def test_roster_knows_who_is_on_duty_now(db: Database) -> None:
    seed(db, ["webhook"], on_duty_staff=False)
    now = datetime.now(UTC)
    with db.connect() as conn:
        h = timedelta(hours=1)
        add_shift(conn, "s1", user_id="night", role=DutyRole.DUTY_STAFF,
                  starts_at=now - 8 * h, ends_at=now - h / 60)  # fmt: skip
        add_shift(conn, "s1", user_id="day", role=DutyRole.DUTY_STAFF,
                  starts_at=now - h / 60, ends_at=now + 8 * h)  # fmt: skip
        add_shift(conn, "s1", user_id="head", role=DutyRole.SUPERVISOR,
                  starts_at=now - h, ends_at=now + h)  # fmt: skip
        assert on_duty(conn, "s1", DutyRole.DUTY_STAFF, now) == ["day"]
        assert on_duty(conn, "s1", DutyRole.SUPERVISOR, now) == ["head"]
        assert on_duty(conn, "s1", DutyRole.DUTY_STAFF, now - timedelta(hours=2)) == ["night"]
        assert on_duty(conn, "other", DutyRole.DUTY_STAFF, now) == []
        with pytest.raises(ValueError, match="end after"):
            add_shift(conn, "s1", user_id="x", role=DutyRole.DUTY_STAFF, starts_at=now,
                      ends_at=now)  # fmt: skip


# --------------------------------------------------------------------------- intake


def _record(kind: DetectionKind, subject: str, *, resolved: bool = False, **kw: Any) -> Any:
    t = kw.pop("time", time.time())
    return DetectionRecord(
        kind=kind, subject=subject, condition="", time=t, started=round(kw.pop("started", t), 3),
        resolved=resolved, reason="test", details={}, site_id="s1", **kw,
    )  # fmt: skip


def test_stored_detections_raise_clear_and_cancel_incidents(db: Database) -> None:
    seed(db, ["webhook"])
    settings = DatabaseSettings(
        port=db.port,
        name=db.name,
        user=db.user,
        password=db.password,
    )
    store = PostgresStore(
        settings, on_stored=intake.on_detections_stored, on_cancel=intake.on_resident_cancel
    )
    press = time.time() - 5
    call = _record(DetectionKind.EMERGENCY_CALL, "r1", resident_id="r1", time=press)
    offline = _record(DetectionKind.DEVICE_OFFLINE, "dev-1", device_id="dev-1")
    orphan = _record(DetectionKind.NO_ACTIVITY, "bed-9")  # care detection without a resident
    try:
        assert store.write([call, offline, orphan], [], []) == 3
        assert store.write([call], [], []) == 0  # the same finding again: nothing new
        rows = db.rows("SELECT type, state, trigger_count FROM incidents ORDER BY id")
        assert rows == [("emergency_call", "raised", 1), ("device_offline", "raised", 1)]
        assert db.scalar("SELECT count(*) FROM incident_escalations WHERE tier = -1") == 2
        # The device came back: its technical incident is cleared by the system.
        store.write([_record(DetectionKind.DEVICE_OFFLINE, "dev-1", resolved=True,
                             started=offline.started, device_id="dev-1")], [], [])  # fmt: skip
        assert db.scalar("SELECT outcome FROM incidents WHERE type = 'device_offline'") == (
            "condition_cleared"
        )
        # The resident's "I'm OK" from the button, within the window.
        store.cancel("r1", press + 3, "s1-bt0")
        assert db.scalar("SELECT state FROM incidents WHERE type = 'emergency_call'") == (
            "cancelled"
        )
        store.cancel("r1", press + 4, "s1-bt0")  # nothing open any more: logged, no error
    finally:
        store.close()
    with db.connect() as conn:
        assert audit.verify(conn).ok


# --------------------------------------------------------------------------- timers


async def test_tiers_advance_one_by_one_with_reminders(
    db: Database, pool: AsyncConnectionPool[Any]
) -> None:
    seed(db, ["webhook"])
    incident_id = raise_fall(db)
    worker = EscalationWorker(pool, ladder(duty=1.0, reminder_s=0.4), poll_interval_s=0.05)
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: any(r[3] == "instruction" for r in pages(db, incident_id)), 15,
                    "the emergency instruction")  # fmt: skip
    finally:
        await stop(task)
    assert tier_pages(db, incident_id) == [
        ("duty_staff", 0, "staff-17", "page"),
        ("duty_staff", 0, "staff-18", "page"),
        ("supervisor", 0, "head-02", "page"),
        ("emergency", 0, "", "instruction"),
    ]
    reminders = [r for r in pages(db, incident_id) if r[3] == "reminder"]
    assert {r[0] for r in reminders} == {"duty_staff"} and len(reminders) >= 2
    assert outbox_rows(db, incident_id) == [("fam1", "webhook", "pending")]
    actions = [
        (r[0], r[1].get("name"))
        for r in db.rows(
            "SELECT action, data FROM audit_log WHERE target = %s AND action LIKE 'escalation.%%'"
            " AND action <> 'escalation.reminder' ORDER BY seq",
            (f"incident:{incident_id}",),
        )
    ]
    assert actions == [
        ("escalation.tier", "duty_staff"),
        ("escalation.tier", "supervisor"),
        ("escalation.tier", "contacts"),
        ("escalation.tier", "emergency"),
    ]
    with db.connect() as conn:
        assert audit.verify(conn).ok


async def test_acknowledgement_stops_escalation(
    db: Database, pool: AsyncConnectionPool[Any]
) -> None:
    seed(db, ["webhook"])
    incident_id = raise_fall(db)
    worker = EscalationWorker(pool, ladder(duty=1.0), poll_interval_s=0.05)
    assert await worker.run_once() == 1  # tier 1: the staff on duty are paged
    with db.connect() as conn:
        IncidentService(conn).acknowledge(incident_id, NURSE)
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: escalation(db, incident_id)[2], 5, "escalation stopped")
        await asyncio.sleep(1.5)  # well past the tier's timeout: nothing more happens
    finally:
        await stop(task)
    assert escalation(db, incident_id) == (0, 0, True, "acknowledged")
    assert [r[0] for r in pages(db, incident_id)] == ["duty_staff", "duty_staff"]
    assert outbox_rows(db, incident_id) == []


async def test_delivered_notifications_do_not_stop_escalation(
    db: Database, pool: AsyncConnectionPool[Any], receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    seed(db, ["webhook"])
    incident_id = raise_fall(db)
    notify = NotifySettings(poll_interval_s=0.05, webhooks={"webhook": WebhookEndpoint(url=url)})
    outbox = OutboxWorker(pool, build_notifiers(notify), notify)
    worker = EscalationWorker(pool, ladder(duty=0.3, supervisor=0.3, contacts=0.5),
                              poll_interval_s=0.05, on_enqueued=outbox.wake)  # fmt: skip
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(outbox.run())]
    try:
        await until(lambda: any(r[3] == "instruction" for r in pages(db, incident_id)), 15,
                    "the emergency instruction")  # fmt: skip
    finally:
        for t in tasks:
            await stop(t)
    assert outbox_rows(db, incident_id) == [("fam1", "webhook", "delivered")]
    assert len(rec.bodies) == 1 and rec.bodies[0]["incident_id"] == incident_id


async def test_restart_between_tiers_and_crash_inside_a_tier_lose_and_repeat_nothing(
    db: Database, pool: AsyncConnectionPool[Any]
) -> None:
    seed(db, ["webhook"])
    incident_id = raise_fall(db)
    config = ladder(duty=0.4, supervisor=0.4, contacts=0.4)
    # First gateway: tier 1 only, then it stops (a restart between tiers).
    first = EscalationWorker(pool, config, poll_interval_s=0.05)
    task = asyncio.create_task(first.run())
    await until(lambda: bool(tier_pages(db, incident_id)), 5, "tier 1")
    await stop(task)
    assert escalation(db, incident_id)[0] == 0

    # Second gateway crashes inside the contacts tier's transaction (after queuing the
    # notification and paging, before the commit): nothing of that tier may survive.
    crashes: list[int] = []

    async def crash(incident: int, tier: int) -> None:
        if tier == 1:  # performing the tier after the supervisor's
            crashes.append(incident)
            raise RuntimeError("power cut")

    second = EscalationWorker(pool, config, poll_interval_s=0.05, before_commit=crash)
    task = asyncio.create_task(second.run())
    with pytest.raises(RuntimeError, match="power cut"):
        await asyncio.wait_for(task, 10)
    assert crashes == [incident_id]
    assert escalation(db, incident_id)[0] == 1  # the supervisor tier committed
    assert outbox_rows(db, incident_id) == []  # the contacts tier rolled back entirely

    # Third gateway: carries on from the database, every tier exactly once.
    third = EscalationWorker(pool, config, poll_interval_s=0.05)
    task = asyncio.create_task(third.run())
    try:
        await until(lambda: any(r[3] == "instruction" for r in pages(db, incident_id)), 10,
                    "the emergency instruction")  # fmt: skip
    finally:
        await stop(task)
    assert tier_pages(db, incident_id) == [
        ("duty_staff", 0, "staff-17", "page"),
        ("duty_staff", 0, "staff-18", "page"),
        ("supervisor", 0, "head-02", "page"),
        ("emergency", 0, "", "instruction"),
    ]
    assert outbox_rows(db, incident_id) == [("fam1", "webhook", "pending")]
    tiers = db.rows(
        "SELECT data->>'name' FROM audit_log WHERE target = %s AND action = 'escalation.tier'"
        " ORDER BY seq",
        (f"incident:{incident_id}",),
    )
    assert [r[0] for r in tiers] == ["duty_staff", "supervisor", "contacts", "emergency"]


async def test_unreachable_contacts_move_escalation_on_early(
    db: Database, pool: AsyncConnectionPool[Any], receiver: tuple[Receiver, str]
) -> None:
    rec, url = receiver
    rec.status = 400  # permanent failure: the only channel of the only contact
    seed(db, ["webhook"], on_duty_staff=False)  # nobody on shift: staff tiers are skipped
    incident_id = raise_fall(db)
    notify = NotifySettings(poll_interval_s=0.05, webhooks={"webhook": WebhookEndpoint(url=url)})
    worker = EscalationWorker(pool, ladder(contacts=60.0), poll_interval_s=0.05)
    outbox = OutboxWorker(pool, build_notifiers(notify), notify, on_exhausted=worker.on_exhausted)
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(outbox.run())]
    started = time.monotonic()
    try:
        await until(lambda: any(r[3] == "instruction" for r in pages(db, incident_id)), 10,
                    "the emergency instruction")  # fmt: skip
    finally:
        for t in tasks:
            await stop(t)
    assert time.monotonic() - started < 10  # not the contacts tier's 60 s timeout
    assert outbox_rows(db, incident_id) == [("fam1", "webhook", "failed")]
    skipped = db.rows(
        "SELECT data->>'name' FROM audit_log WHERE target = %s"
        " AND action = 'escalation.tier_skipped' ORDER BY seq",
        (f"incident:{incident_id}",),
    )
    assert [r[0] for r in skipped] == ["duty_staff", "supervisor"]
    early = db.scalar(
        "SELECT (data->>'early')::boolean FROM audit_log WHERE target = %s"
        " AND action = 'escalation.tier' AND data->>'name' = 'emergency'",
        (f"incident:{incident_id}",),
    )
    assert early is True


# --------------------------------------------------------------------------- end to end


def test_button_press_reaches_staff_then_the_family_webhook(
    db: Database, broker: Broker, receiver: tuple[Receiver, str], tmp_path: Any
) -> None:
    rec, url = receiver
    creds = make_site(db, broker, site_id="site-a", beds=1)
    now = datetime.now(UTC)
    with db.connect() as conn:
        conn.execute("UPDATE residents SET consent_family_incidents = true")
        conn.execute(
            "INSERT INTO contacts (contact_id, resident_id, kind, display_name, channels)"
            " VALUES ('fam1', 'site-a-r0', 'family', 'F', '[\"webhook\"]')"
        )
        add_shift(conn, "site-a", user_id="staff-17", role=DutyRole.DUTY_STAFF,
                  starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=7))  # fmt: skip
    ladder_file = tmp_path / "escalation.toml"
    ladder_file.write_text(
        "[ladder]\n"
        '[[ladder.tiers]]\nname = "duty_staff"\naudience = "duty_staff"\ntimeout_s = 2\n'
        '[[ladder.tiers]]\nname = "contacts"\naudience = "contacts"\ntimeout_s = 60\n'
    )
    settings = gateway_settings(
        db, broker,
        SAFEHOME_ESCALATION__LADDER_CONFIG=str(ladder_file),
        SAFEHOME_ESCALATION__POLL_INTERVAL_S="0.1",
        SAFEHOME_NOTIFY__POLL_INTERVAL_S="0.1",
        SAFEHOME_NOTIFY__WEBHOOKS__WEBHOOK__URL=url,
        SAFEHOME_ANALYSIS__CHECK_INTERVAL_S="0.2",
    )  # fmt: skip
    button = next(c for c in creds if c.device_id == "site-a-bt0")
    with (
        InProcessGateway(settings, api=False),
        DeviceClient(broker.port, button.device_id, button.password) as dev,
    ):
        ts = int(time.time() * 1000)
        payload = p.encode_event(button.device_id, "press-1", 1, ts, event="press")
        dev.publish(f"{PREFIX}/v1/site-a/{button.device_id}/event", payload)
        wait_until(lambda: db.scalar("SELECT count(*) FROM staff_pages") == 1, 15, "tier-1 page")
        incident_id = db.scalar("SELECT id FROM incidents")
        assert db.rows("SELECT type, state FROM incidents") == [("emergency_call", "raised")]
        assert pages(db, incident_id) == [("duty_staff", 0, "staff-17", "page")]
        wait_until(lambda: bool(rec.bodies), 20, "the family webhook")
    assert rec.bodies[0]["incident_id"] == incident_id
    assert rec.bodies[0]["contact_id"] == "fam1"
    assert db.scalar("SELECT count(*) FROM incidents") == 1
    assert escalation(db, incident_id)[:3] == (1, 0, False)  # still escalating: nobody acked


def test_gateway_restart_between_tiers_neither_loses_nor_repeats_a_tier(
    db: Database, broker: Broker, receiver: tuple[Receiver, str], tmp_path: Any
) -> None:
    rec, url = receiver
    creds = make_site(db, broker, site_id="site-a", beds=1)
    now = datetime.now(UTC)
    with db.connect() as conn:
        conn.execute("UPDATE residents SET consent_family_incidents = true")
        conn.execute(
            "INSERT INTO contacts (contact_id, resident_id, kind, display_name, channels)"
            " VALUES ('fam1', 'site-a-r0', 'family', 'F', '[\"webhook\"]')"
        )
        add_shift(conn, "site-a", user_id="staff-17", role=DutyRole.DUTY_STAFF,
                  starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=7))  # fmt: skip
    ladder_file = tmp_path / "escalation.toml"
    ladder_file.write_text(
        "[ladder]\n"
        '[[ladder.tiers]]\nname = "duty_staff"\naudience = "duty_staff"\ntimeout_s = 2\n'
        '[[ladder.tiers]]\nname = "contacts"\naudience = "contacts"\ntimeout_s = 60\n'
    )
    env = {
        "SAFEHOME_ESCALATION__LADDER_CONFIG": str(ladder_file),
        "SAFEHOME_ESCALATION__POLL_INTERVAL_S": "0.1",
        "SAFEHOME_NOTIFY__POLL_INTERVAL_S": "0.1",
        "SAFEHOME_NOTIFY__WEBHOOKS__WEBHOOK__URL": url,
        "SAFEHOME_ANALYSIS__CHECK_INTERVAL_S": "0.2",
    }
    button = next(c for c in creds if c.device_id == "site-a-bt0")
    with (
        InProcessGateway(gateway_settings(db, broker, **env), api=False),
        DeviceClient(broker.port, button.device_id, button.password) as dev,
    ):
        payload = p.encode_event(
            button.device_id, "press-1", 1, int(time.time() * 1000), event="press"
        )
        dev.publish(f"{PREFIX}/v1/site-a/{button.device_id}/event", payload)
        wait_until(lambda: db.scalar("SELECT count(*) FROM staff_pages") == 1, 15, "tier-1 page")
    # The gateway is down while the duty tier times out; nothing is sent meanwhile.
    time.sleep(2.5)
    assert not rec.bodies
    with InProcessGateway(gateway_settings(db, broker, **env), api=False):
        wait_until(lambda: bool(rec.bodies), 20, "the family webhook after the restart")
        time.sleep(1.0)  # would any tier run twice, it would have by now
    incident_id = db.scalar("SELECT id FROM incidents")
    assert db.scalar("SELECT count(*) FROM incidents") == 1
    assert pages(db, incident_id) == [("duty_staff", 0, "staff-17", "page")]
    assert len(rec.bodies) == 1 and rec.bodies[0]["incident_id"] == incident_id
    tiers = db.rows(
        "SELECT data->>'name' FROM audit_log WHERE target = %s AND action = 'escalation.tier'"
        " ORDER BY seq",
        (f"incident:{incident_id}",),
    )
    assert [r[0] for r in tiers] == ["duty_staff", "contacts"]


def test_residents_cancel_from_the_button_cancels_the_call_and_stops_escalation(
    db: Database, broker: Broker, tmp_path: Any
) -> None:
    creds = make_site(db, broker, site_id="site-a", beds=1)
    ladder_file = tmp_path / "escalation.toml"
    ladder_file.write_text(
        '[ladder]\n[[ladder.tiers]]\nname = "duty_staff"\naudience = "duty_staff"\n'
        "timeout_s = 60\nreminder_s = 0.5\n"
    )
    settings = gateway_settings(
        db, broker,
        SAFEHOME_ESCALATION__LADDER_CONFIG=str(ladder_file),
        SAFEHOME_ESCALATION__POLL_INTERVAL_S="0.1",
        SAFEHOME_ANALYSIS__CHECK_INTERVAL_S="0.2",
    )  # fmt: skip
    now = datetime.now(UTC)
    with db.connect() as conn:
        add_shift(conn, "site-a", user_id="staff-17", role=DutyRole.DUTY_STAFF,
                  starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=7))  # fmt: skip
    button = next(c for c in creds if c.device_id == "site-a-bt0")
    topic = f"{PREFIX}/v1/site-a/{button.device_id}/event"
    with (
        InProcessGateway(settings, api=False),
        DeviceClient(broker.port, button.device_id, button.password) as dev,
    ):
        t0 = int(time.time() * 1000)
        dev.publish(topic, p.encode_event(button.device_id, "m1", 1, t0, event="press"))
        wait_until(lambda: db.scalar("SELECT count(*) FROM incidents") == 1, 15, "the incident")
        dev.publish(topic, p.encode_event(button.device_id, "m2", 2, t0 + 3000, event="cancel"))
        wait_until(
            lambda: db.scalar("SELECT stop_reason FROM incident_escalations") == "cancelled",
            15, "escalation stopped by the resident's cancel",
        )  # fmt: skip
    assert db.rows("SELECT state, cancel_source FROM incidents") == [("cancelled", "resident")]


async def test_nobody_on_shift_keeps_retrying_until_someone_is(
    db: Database, pool: AsyncConnectionPool[Any]
) -> None:
    seed(db, [], on_duty_staff=False)  # no staff on shift, no usable contact channel
    incident_id = raise_fall(db)
    config = parse_ladders(
        {"ladder": {"tiers": [{"name": "duty_staff", "audience": "duty_staff", "timeout_s": 0.5}]}}
    )
    worker = EscalationWorker(pool, config, poll_interval_s=0.05)
    assert await worker.run_once() == 1
    assert escalation(db, incident_id) == (-1, 1, False, None)  # not given up
    now = datetime.now(UTC)
    with db.connect() as conn:
        add_shift(conn, "s1", user_id="late", role=DutyRole.DUTY_STAFF,
                  starts_at=now - timedelta(minutes=1), ends_at=now + timedelta(hours=1),
                  )  # fmt: skip
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: bool(pages(db, incident_id)), 5, "the late shift paged")
    finally:
        await stop(task)
    assert pages(db, incident_id) == [("duty_staff", 0, "late", "page")]
    assert db.scalar("SELECT count(*) FROM audit_log WHERE action = 'escalation.unreachable'") >= 1


async def test_a_row_that_fails_is_set_aside_and_the_others_go_on(
    db: Database, pool: AsyncConnectionPool[Any]
) -> None:
    seed(db, ["webhook"])
    bad = raise_fall(db)
    with db.connect() as conn, conn.transaction():
        offline, _ = IncidentService(conn).raise_or_join(
            Trigger(IncidentType.DEVICE_OFFLINE, "s1", datetime.now(UTC), "silent",
                    subject="dev-1")
        )  # fmt: skip
        intake.start_escalation(conn, offline.id, "s1")

    async def poison(incident_id: int, tier: int) -> None:
        if incident_id == bad:
            raise psycopg.errors.DataError("bad data")

    worker = EscalationWorker(pool, ladder(), poll_interval_s=0.05, before_commit=poison)
    assert await worker.run_once() == 2
    assert pages(db, bad) == []  # rolled back, set aside for later
    assert escalation(db, bad)[0] == -1
    assert db.scalar(
        "SELECT next_at > now() + interval '20 seconds' FROM incident_escalations"
        " WHERE incident_id = %s",
        (bad,),
    )
    assert [r[0] for r in pages(db, offline.id)] == ["duty_staff", "duty_staff"]


def test_gateway_refuses_to_start_with_an_invalid_ladder(
    db: Database, broker: Broker, tmp_path: Any
) -> None:
    from gateway.runtime import GatewayError

    bad = tmp_path / "escalation.toml"
    bad.write_text(
        '[ladder]\n[[ladder.tiers]]\nname = "x"\naudience = "emergency"\ntimeout_s = 5\n'
    )
    settings = gateway_settings(db, broker, SAFEHOME_ESCALATION__LADDER_CONFIG=str(bad))
    with pytest.raises(GatewayError, match="needs an instruction"):
        InProcessGateway(settings, api=False).__enter__()
