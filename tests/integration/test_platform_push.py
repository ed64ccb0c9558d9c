"""The outbox's non-incident messages against real PostgreSQL and real HTTP servers: the
signed monthly platform push (to the local receiver, :mod:`gateway.platform.receiver`) and
overdue-visit notices to supervisors (to a real webhook endpoint).

Timers are settings-scaled (backoff of a few ms): no long sleeps, no timed asserts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from pydantic import SecretStr

from gateway.api.auth import create_user
from gateway.localsvc import free_port
from gateway.notify import NotifySettings, build_notifiers
from gateway.notify.delivery import http_post
from gateway.notify.messaging import MessageWorker, RetryPolicy, UserNoticeHandler
from gateway.notify.settings import WebhookEndpoint
from gateway.paging.channels import add_channel
from gateway.platform.push import (
    PlatformPushHandler,
    PlatformScheduler,
    body_of,
    enqueue_monthly,
)
from gateway.platform.receiver import PlatformReceiver
from gateway.platform.settings import PlatformSettings
from gateway.platform.signing import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from gateway.visits.config import load_visits_config
from gateway.visits.notices import enqueue_overdue_notices
from gateway.visits.worker import VisitsSweeper
from tests.support import Broker, Database, InProcessGateway, gateway_settings, wait_until

pytestmark = pytest.mark.integration

SECRET = "platform-shared-secret"
NAME = "王秀英"
MONTH = "2026-11"
NOW = datetime(2026, 12, 3, 4, 0, tzinfo=UTC)
CFG = load_visits_config()


def seed(db: Database, *, kind: str = "home_care_centre") -> None:
    with db.connect() as conn:
        conn.execute("INSERT INTO sites (site_id, name, kind) VALUES ('s1', 'Site', %s)", (kind,))
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
            " care_level, lives_alone, created_at)"
            " VALUES ('r1', 'ELD-1', 's1', 'b1', %s, 3, true, %s)",
            (NAME, NOW - timedelta(days=40)),
        )
        conn.execute(
            "INSERT INTO incidents (site_id, resident_id, subject, type, priority, technical,"
            " first_trigger_at, last_trigger_at, raised_at, acknowledged_at, reason)"
            " VALUES ('s1', 'r1', 'r1', 'emergency_call', 1, false, %s, %s, %s, %s, 't')",
            (NOW - timedelta(days=10),) * 3 + (NOW - timedelta(days=10) + timedelta(seconds=20),),
        )


def settings(url: str, *, secret: str = SECRET) -> PlatformSettings:
    return PlatformSettings(
        enabled=True,
        url=url,
        secret=SecretStr(secret),
        timeout_s=2,
        max_attempts=20,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        poll_interval_s=0.05,
    )


@pytest.fixture
async def pool(db: Database) -> AsyncIterator[AsyncConnectionPool[Any]]:
    p: AsyncConnectionPool[Any] = AsyncConnectionPool(
        db.conninfo(), min_size=1, max_size=4, open=False, kwargs={"autocommit": True}
    )
    await p.open()
    yield p
    await p.close()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[PlatformReceiver]:
    r = PlatformReceiver(SECRET.encode(), tmp_path / "received").start()
    yield r
    r.stop()


def queue(db: Database, ps: PlatformSettings) -> int:
    with db.connect() as conn:
        q = enqueue_monthly(conn, CFG, ps, "s1", MONTH, actor="test", now=NOW)
    assert q.outbox_id is not None
    return q.outbox_id


def row(db: Database, outbox_id: int) -> tuple[Any, ...]:
    rows = db.rows(
        "SELECT state, attempts, last_error FROM notification_outbox WHERE id = %s", (outbox_id,)
    )
    return rows[0]


async def until(worker: MessageWorker, pred: Any, what: str) -> None:
    """Run the worker until ``pred()`` holds (a generous bound against hanging only)."""
    deadline = time.monotonic() + 30
    while not pred():
        assert time.monotonic() < deadline, f"never: {what}"
        if not await worker.run_once():
            await asyncio.sleep(0.01)


def audit_rows(db: Database, action: str) -> list[dict[str, Any]]:
    return [
        r[0]
        for r in db.rows("SELECT data FROM audit_log WHERE action = %s ORDER BY seq", (action,))
    ]


async def test_push_is_delivered_with_a_valid_signature(
    db: Database,
    pool: AsyncConnectionPool[Any],
    receiver: PlatformReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seed(db)
    ps = settings(receiver.url())
    outbox_id = queue(db, ps)
    worker = MessageWorker(pool, {"platform_push": PlatformPushHandler(ps)}, batch_size=5)
    await until(worker, lambda: row(db, outbox_id)[0] == "delivered", "delivered")
    [stored] = receiver.stored()
    text = stored.read_text()
    doc = json.loads(text)
    assert doc["schema"] == "safehome.platform.monthly/1"
    assert doc["idempotency_key"] == "safehome:monthly:s1:2026-11"
    assert (doc["site_id"], doc["month"]) == ("s1", MONTH)
    stats = doc["statistics"]
    assert stats["beds_served"] == 1
    assert stats["alarms"] == 1
    assert stats["alarms_answered_in_target"] == 1
    assert stats["visits_overdue"] == 2  # phone and home, never visited
    assert stats["reassessments_due"] == 1  # never assessed
    [incident] = doc["incidents"]
    assert (incident["elder_code"], incident["bed_code"]) == ("ELD-1", "BED-0301")
    assert incident["within_60s"] is True
    assert NAME not in text
    assert receiver.receipts()[-1]["result"] == "stored"
    [queued] = audit_rows(db, "platform.push_queued")
    assert queued["key"] == doc["idempotency_key"]
    [attempt] = audit_rows(db, "platform.push_attempt")
    assert (attempt["result"], attempt["state"], attempt["detail"]) == (
        "delivered",
        "delivered",
        "http 200",
    )
    assert db.rows("SELECT kind, result FROM notification_attempts") == [
        ("platform_push", "delivered")
    ]
    assert NAME not in " ".join(repr(r.__dict__) for r in caplog.records)


async def test_outage_is_retried_and_delivered_once_by_idempotency_key(
    db: Database, pool: AsyncConnectionPool[Any], tmp_path: Path
) -> None:
    seed(db)
    port = free_port()
    ps = settings(f"http://127.0.0.1:{port}/push")
    outbox_id = queue(db, ps)
    worker = MessageWorker(pool, {"platform_push": PlatformPushHandler(ps)}, batch_size=5)
    # The platform is down: attempts fail (connection refused) and are retried.
    await until(worker, lambda: row(db, outbox_id)[1] >= 3, "three failed attempts")
    state, _, error = row(db, outbox_id)
    assert state == "pending"
    assert error is not None and error.startswith("network error")
    receiver = PlatformReceiver(SECRET.encode(), tmp_path / "received", port=port).start()
    try:
        await until(worker, lambda: row(db, outbox_id)[0] == "delivered", "delivered")
        # The platform's answer lost: the outbox sends the same document again (at least
        # once); the receiver keeps one copy by its idempotency key.
        with db.connect() as conn:
            conn.execute(
                "UPDATE notification_outbox SET state = 'pending', next_attempt_at = now()"
                " WHERE id = %s",
                (outbox_id,),
            )
        await until(worker, lambda: row(db, outbox_id)[0] == "delivered", "delivered again")
        assert len(receiver.stored()) == 1
        results = [r["result"] for r in receiver.receipts()]
        assert results == ["stored", "duplicate"]
    finally:
        receiver.stop()
    attempts = audit_rows(db, "platform.push_attempt")
    assert [a["result"] for a in attempts][-2:] == ["delivered", "delivered"]
    transient = [a for a in attempts if a["result"] == "transient"]
    assert len(transient) >= 3 and all(a["state"] == "retry" for a in transient)
    assert len(attempts) == db.scalar("SELECT count(*) FROM notification_attempts")


async def test_bad_signature_is_rejected_and_the_push_dead_lettered(
    db: Database, pool: AsyncConnectionPool[Any], receiver: PlatformReceiver
) -> None:
    seed(db)
    ps = settings(receiver.url(), secret="not-the-shared-secret")
    outbox_id = queue(db, ps)
    worker = MessageWorker(pool, {"platform_push": PlatformPushHandler(ps)}, batch_size=5)
    await until(worker, lambda: row(db, outbox_id)[0] != "pending", "settled")
    assert row(db, outbox_id) == ("failed", 1, "http 401")
    assert receiver.stored() == []
    assert [r["result"] for r in receiver.receipts()] == ["bad signature"]
    [attempt] = audit_rows(db, "platform.push_attempt")
    assert (attempt["result"], attempt["state"]) == ("permanent", "failed")
    # Unsigned, stale or tampered requests are refused too.
    body = body_of({"idempotency_key": "k"})
    ts = str(int(time.time()))
    good = {
        IDEMPOTENCY_HEADER: "k",
        TIMESTAMP_HEADER: ts,
        SIGNATURE_HEADER: sign(SECRET.encode(), ts, body),
    }
    stale_ts = str(int(time.time()) - 3600)
    stale = good | {
        TIMESTAMP_HEADER: stale_ts,
        SIGNATURE_HEADER: sign(SECRET.encode(), stale_ts, body),
    }
    assert http_post(receiver.url(), body, {IDEMPOTENCY_HEADER: "k"}, 5)[0] == 401
    assert http_post(receiver.url(), body, stale, 5)[0] == 401
    assert http_post(receiver.url(), body + b" ", good, 5)[0] == 401
    assert http_post(receiver.url(), body, good, 5)[0] == 200
    assert len(receiver.stored()) == 1


def test_schedule_queues_the_due_month_once(db: Database, receiver: PlatformReceiver) -> None:
    seed(db)
    ps = settings(receiver.url())
    with ConnectionPool(db.conninfo(), min_size=1, max_size=2, kwargs={"autocommit": True}) as p:
        before = PlatformScheduler(p, CFG, ps, clock=lambda: datetime(2026, 12, 1, 1, tzinfo=UTC))
        on_time = PlatformScheduler(p, CFG, ps, clock=lambda: NOW)
        # 1 Dec 09:00 in China: the November push is due (day 1, from 02:00 local).
        assert before.schedule_once() == 1
        assert on_time.schedule_once() == 0  # same month, same key
    assert db.rows("SELECT subject, dedupe_key FROM notification_outbox") == [
        ("site:s1/2026-11", "safehome:monthly:s1:2026-11")
    ]


# --------------------------------------------------------------------------- overdue notices


class Capture:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        lock = threading.Lock()
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    capture.bodies.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def hook() -> Iterator[Capture]:
    c = Capture()
    yield c
    c.close()


def supervisor(db: Database) -> str:
    with db.connect() as conn:
        uid = create_user(conn, "sup1", "supervisor", "Correct-Horse-9!", site_id="s1")
        add_channel(conn, uid, "webhook", None, actor="test")
        create_user(conn, "sup2", "supervisor", "Correct-Horse-9!", site_id="s1")  # no channel
    return uid


def notices(db: Database) -> list[tuple[Any, ...]]:
    return db.rows(
        "SELECT user_id, subject, dedupe_key FROM notification_outbox"
        " WHERE kind = 'visit_overdue' ORDER BY id"
    )


async def test_overdue_notices_are_queued_once_a_day_by_two_sweeps(
    db: Database,
    pool: AsyncConnectionPool[Any],
    hook: Capture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seed(db)
    with db.connect() as conn:  # overdue at the real clock too: created 40 days ago
        conn.execute("UPDATE residents SET created_at = now() - interval '40 days'")
    uid = supervisor(db)
    with (
        ConnectionPool(db.conninfo(), min_size=1, max_size=2, kwargs={"autocommit": True}) as a,
        ConnectionPool(db.conninfo(), min_size=1, max_size=2, kwargs={"autocommit": True}) as b,
    ):
        # Two processes of a failover pair sweep at the same time, twice.
        sweepers = [VisitsSweeper(p, CFG, notices=True) for p in (a, b)]
        for _ in range(2):
            await asyncio.gather(*(s.run_once() for s in sweepers))
    rows = notices(db)
    assert sorted(r[1].split("/")[1] for r in rows) == ["home", "phone"]
    assert {r[0] for r in rows} == {uid}  # sup2 has no channel
    queued = audit_rows(db, "visit.overdue_notice_queued")
    assert len(queued) == 2
    # The next day: told again, once.
    with db.connect() as conn:
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        assert enqueue_overdue_notices(conn, CFG, clock=lambda: tomorrow) == 2
        assert enqueue_overdue_notices(conn, CFG, clock=lambda: tomorrow) == 0
    assert len(notices(db)) == 4
    # Delivered on the supervisor's webhook channel, zh-CN, codes only.
    notifiers = build_notifiers(
        NotifySettings(webhooks={"webhook": WebhookEndpoint(url=SecretStr(hook.url()))})
    )
    handler = UserNoticeHandler(pool, notifiers, RetryPolicy(backoff_base_s=0.01))
    worker = MessageWorker(pool, {"visit_overdue": handler}, batch_size=10)
    delivered = "SELECT count(*) FROM notification_outbox WHERE state = 'delivered'"
    await until(worker, lambda: db.scalar(delivered) == 4, "four notices delivered")
    assert len(hook.bodies) == 4
    body = hook.bodies[0]
    assert body["event"] == "user.notice" and body["user_id"] == uid
    assert body["incident_id"] is None
    assert "逾期" in body["title"] and "ELD-1" in body["body"] and "BED-0301" in body["body"]
    text = json.dumps(hook.bodies, ensure_ascii=False)
    assert NAME not in text
    assert NAME not in " ".join(repr(r.__dict__) for r in caplog.records)
    # The incident outbox's claim never takes these rows.
    assert db.scalar("SELECT count(*) FROM notification_attempts WHERE kind = 'incident'") == 0


def test_receiver_command_stores_a_signed_push(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    port = free_port()
    out = tmp_path / "docs"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from gateway.cli import main; raise SystemExit(main())",
            "platform",
            "receiver",
            "--port",
            str(port),
            "--secret-file",
            str(secret_file),
            "--dir",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "listening" in proc.stdout.readline()
        body = body_of({"idempotency_key": "k1", "schema": "x"})
        ts = str(int(time.time()))
        headers = {
            IDEMPOTENCY_HEADER: "k1",
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign(SECRET.encode(), ts, body),
        }
        url = f"http://127.0.0.1:{port}/push"
        assert http_post(url, body, headers, 5) == (200, b'{"status": "stored", "key": "k1"}')
        assert http_post(url, body, headers | {SIGNATURE_HEADER: "sha256=00"}, 5)[0] == 401
        [doc] = out.glob("*.json")
        assert doc.read_bytes() == body
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_running_gateway_pushes_the_due_month_to_the_receiver(
    db: Database, broker: Broker, receiver: PlatformReceiver, tmp_path: Path
) -> None:
    """The runtime hook: a gateway with the platform enabled queues the due month at start
    and its message worker delivers it (what the demo shows)."""
    seed(db)
    secret_file = tmp_path / "platform_secret"
    secret_file.write_text(SECRET)
    settings = gateway_settings(
        db,
        broker,
        SAFEHOME_PLATFORM__ENABLED="true",
        SAFEHOME_PLATFORM__URL=receiver.url(),
        SAFEHOME_PLATFORM__SECRET_FILE=str(secret_file),
        SAFEHOME_PLATFORM__PUSH_DAY="1",
        SAFEHOME_PLATFORM__PUSH_HOUR="0",
        SAFEHOME_PLATFORM__POLL_INTERVAL_S="0.1",
    )
    state = "SELECT state FROM notification_outbox WHERE kind = 'platform_push'"
    with InProcessGateway(settings):
        wait_until(lambda: db.scalar(state) == "delivered", 30, "the push delivered")
    [stored] = receiver.stored()
    assert json.loads(stored.read_text())["site_id"] == "s1"


def test_demo_platform_environment_points_at_its_receiver(tmp_path: Path) -> None:
    from gateway.platform.demo import demo_platform
    from gateway.settings import load_settings

    env, receiver = demo_platform(tmp_path)
    try:
        s = load_settings(environ=env).platform
        assert s.enabled and s.url == receiver.url()
        assert s.secret is not None
        assert s.secret.get_secret_value().encode() == receiver.secret
        body = body_of({"idempotency_key": "k"})
        ts = str(int(time.time()))
        headers = {
            IDEMPOTENCY_HEADER: "k",
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign(receiver.secret, ts, body),
        }
        assert http_post(receiver.url(), body, headers, 5)[0] == 200
    finally:
        receiver.stop()
    assert (tmp_path / "secrets" / "platform_secret").stat().st_mode & 0o077 == 0


def test_push_command_queues_a_month_once(db: Database) -> None:
    seed(db)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SAFEHOME_")},
        "SAFEHOME_DATABASE__HOST": "127.0.0.1",
        "SAFEHOME_DATABASE__PORT": str(db.port),
        "SAFEHOME_DATABASE__NAME": db.name,
        "SAFEHOME_DATABASE__USER": db.user,
        "SAFEHOME_DATABASE__PASSWORD": db.password,
    }
    cmd = [
        sys.executable,
        "-c",
        "from gateway.cli import main; raise SystemExit(main())",
        "platform",
        "push",
        "--month",
        MONTH,
        "--site",
        "s1",
    ]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert first.stdout.startswith("s1 2026-11: queued (outbox #")
    assert "platform.enabled is false" in first.stderr
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert again.stdout.startswith("s1 2026-11: already queued (#")
    assert "pending" in again.stdout
    bad = subprocess.run(
        [*cmd[:-2], "--site", "nope"], env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    [queued] = audit_rows(db, "platform.push_queued")
    assert queued["key"] == "safehome:monthly:s1:2026-11"
    assert db.scalar("SELECT actor FROM audit_log WHERE action = 'platform.push_queued'") == "cli"
