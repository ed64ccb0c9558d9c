"""Family notifications against real local receivers: HTTP, SMTP (aiosmtpd), PostgreSQL.

No mocks: webhooks, the Aliyun SMS API and the apprise JSON bot hit a real
``http.server`` on 127.0.0.1; e-mail goes to a real aiosmtpd server; the outbox lives in a
fresh migrated database.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from gateway.localsvc import free_port
from gateway.notify import (
    AppriseNotifier,
    ContactExhausted,
    IncidentNotice,
    NotifySettings,
    OutboxWorker,
    build_notifiers,
    contact_status,
    enqueue_incident,
)
from gateway.notify.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER
from gateway.notify.settings import AliyunSmsSettings, SmtpSettings, WebhookEndpoint
from tests.support import Database

pytestmark = pytest.mark.integration

NAME = "王秀英"
PHONE = "13800138000"
EMAIL = "son@example.org"
SECRET = "hook-secret"
SMS_KEY_ID = "LTAI-test-id"
SMS_SECRET = "sms-test-secret"

# --------------------------------------------------------------------------- receivers


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    """A real HTTP server; answers from a script (last answer repeats) or a callable."""

    script: list[tuple[int, bytes]] = field(default_factory=lambda: [(200, b"{}")])
    respond: Callable[[Received], tuple[int, bytes]] | None = None
    received: list[Received] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            req = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            with lock:
                receiver.received.append(req)
                script = receiver.script
                scripted = script.pop(0) if len(script) > 1 else script[0]
            # A responder may sleep: it runs outside the lock so other requests go on.
            status, answer = receiver.respond(req) if receiver.respond else scripted
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout tests)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()
    thread.join(5)


class MailSink:
    """aiosmtpd handler keeping every envelope."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted"


@pytest.fixture
def smtp_server() -> Iterator[tuple[MailSink, int]]:
    sink = MailSink()
    port = free_port()
    # Our own loop, closed after the server: aiosmtpd's controller never closes the loop it
    # makes, and its garbage collection later fails whichever test runs then (ResourceWarning).
    loop = asyncio.new_event_loop()
    controller = Controller(sink, hostname="127.0.0.1", port=port, loop=loop)
    controller.start()
    yield sink, port
    controller.stop()
    loop.close()


# --------------------------------------------------------------------------- registry


def seed(
    db: Database,
    contacts: list[dict[str, Any]],
    *,
    consent_family_incidents: bool = True,
) -> None:
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
            " care_level, consent_family_incidents) VALUES ('r1', 'ELD-1', 's1', 'b1', %s, 3, %s)",
            (NAME, consent_family_incidents),
        )
        for c in contacts:
            conn.execute(
                "INSERT INTO contacts (contact_id, resident_id, kind, display_name, phone,"
                " email, channels, consent_notify, priority)"
                " VALUES (%s, 'r1', %s, %s, %s, %s, %s, %s, %s)",
                (
                    c["id"],
                    c.get("kind", "family"),
                    "李明",
                    PHONE,
                    EMAIL,
                    json.dumps(c["channels"]),
                    c.get("consent", True),
                    c.get("priority", 1),
                ),
            )


NOTICE = IncidentNotice(
    incident_id=7001,
    resident_id="r1",
    incident_type="fall",
    raised_at=datetime(2026, 11, 23, 1, 5, tzinfo=UTC),
)


async def enqueue(db: Database, notice: IncidentNotice = NOTICE) -> Any:
    async with await psycopg.AsyncConnection.connect(db.conninfo(), autocommit=True) as conn:
        return await enqueue_incident(conn, notice)


@pytest.fixture
async def pool(db: Database) -> AsyncIterator[AsyncConnectionPool[Any]]:
    p: AsyncConnectionPool[Any] = AsyncConnectionPool(
        db.conninfo(), min_size=1, max_size=4, open=False
    )
    await p.open()
    yield p
    await p.close()


def fast(**kw: Any) -> NotifySettings:
    base: dict[str, Any] = {
        "poll_interval_s": 0.05,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "max_attempts": 3,
    }
    base.update(kw)
    return NotifySettings(**base)


async def drain(worker: OutboxWorker, db: Database, timeout_s: float = 15.0) -> None:
    """Run the worker until no row is pending or sending."""
    deadline = time.monotonic() + timeout_s
    while db.scalar(
        "SELECT count(*) FROM notification_outbox WHERE state IN ('pending', 'sending')"
    ):
        assert time.monotonic() < deadline, "outbox did not drain"
        if not await worker.run_once():
            await asyncio.sleep(0.03)


def outbox(db: Database) -> list[tuple[Any, ...]]:
    return db.rows(
        "SELECT contact_id, channel, state, attempts, last_error FROM notification_outbox"
        " ORDER BY id"
    )


def attempts(db: Database) -> list[tuple[Any, ...]]:
    return db.rows("SELECT channel, attempt, result, detail FROM notification_attempts ORDER BY id")


def assert_no_personal_data(caplog: pytest.LogCaptureFixture) -> None:
    text = " ".join(repr(r.__dict__) for r in caplog.records)
    for secret in (NAME, PHONE, EMAIL, "李明"):
        assert secret not in text


# --------------------------------------------------------------------------- tests


async def test_signed_webhook_is_delivered(
    db: Database,
    pool: AsyncConnectionPool[Any],
    http_receiver: HttpReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.notify")
    seed(db, [{"id": "c1", "channels": ["webhook"]}])
    settings = fast(
        webhooks={"webhook": WebhookEndpoint(url=SecretStr(http_receiver.url()), secret=SECRET)}
    )
    result = await enqueue(db)
    assert len(result.outbox_ids) == 1
    await drain(OutboxWorker(pool, build_notifiers(settings), settings), db)

    assert [(r[1], r[2], r[3]) for r in outbox(db)] == [("webhook", "delivered", 1)]
    assert attempts(db) == [("webhook", 1, "delivered", "http 200")]
    (req,) = http_receiver.received
    expected = hmac.new(
        SECRET.encode(), req.headers[TIMESTAMP_HEADER.lower()].encode() + b"." + req.body,
        hashlib.sha256,
    ).hexdigest()  # fmt: skip
    assert req.headers[SIGNATURE_HEADER.lower()] == "sha256=" + expected
    doc = json.loads(req.body)
    assert doc["incident_id"] == 7001 and doc["contact_id"] == "c1"
    assert doc["fields"]["bed_code"] == "BED-0301"
    assert NAME not in req.body.decode()  # a generic webhook is not private by default
    assert_no_personal_data(caplog)


async def test_transient_503_is_retried_then_delivered(
    db: Database, pool: AsyncConnectionPool[Any], http_receiver: HttpReceiver
) -> None:
    seed(db, [{"id": "c1", "channels": ["webhook"]}])
    http_receiver.script = [(503, b"busy"), (200, b"{}")]
    settings = fast(webhooks={"webhook": WebhookEndpoint(url=SecretStr(http_receiver.url()))})
    await enqueue(db)
    await drain(OutboxWorker(pool, build_notifiers(settings), settings), db)

    assert [(r[1], r[2], r[3]) for r in outbox(db)] == [("webhook", "delivered", 2)]
    assert attempts(db) == [
        ("webhook", 1, "transient", "http 503"),
        ("webhook", 2, "delivered", "http 200"),
    ]
    assert len(http_receiver.received) == 2
    assert SIGNATURE_HEADER.lower() not in http_receiver.received[0].headers


async def test_permanent_400_moves_on_to_email(
    db: Database,
    pool: AsyncConnectionPool[Any],
    http_receiver: HttpReceiver,
    smtp_server: tuple[MailSink, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.notify")
    sink, smtp_port = smtp_server
    seed(db, [{"id": "c1", "channels": ["webhook", "email"]}])
    http_receiver.script = [(400, b"bad")]
    settings = fast(
        webhooks={"webhook": WebhookEndpoint(url=SecretStr(http_receiver.url()))},
        smtp=SmtpSettings(port=smtp_port, from_address="alerts@safehome.test"),
    )
    exhausted: list[ContactExhausted] = []

    async def hook(event: ContactExhausted) -> None:
        exhausted.append(event)

    worker = OutboxWorker(pool, build_notifiers(settings), settings, on_exhausted=hook)
    await enqueue(db)
    await drain(worker, db)

    assert [(r[1], r[2], r[3]) for r in outbox(db)] == [
        ("webhook", "failed", 1),
        ("email", "delivered", 1),
    ]
    assert [a[:3] for a in attempts(db)] == [
        ("webhook", 1, "permanent"),
        ("email", 1, "delivered"),
    ]
    assert len(http_receiver.received) == 1  # a permanent failure is not retried
    assert exhausted == []
    async with await psycopg.AsyncConnection.connect(db.conninfo()) as conn:
        assert await contact_status(conn, NOTICE.incident_id) == {"c1": "delivered"}
    (envelope,) = sink.envelopes
    assert envelope.rcpt_tos == [EMAIL]
    assert envelope.mail_from == "alerts@safehome.test"
    mail = message_from_bytes(envelope.content, policy=policy.default)
    text = mail.get_content()
    assert NAME in text  # a private e-mail to a consented family member names the resident
    assert "BED-0301" in text
    assert "跌倒" in str(mail["Subject"])
    assert_no_personal_data(caplog)


async def test_every_channel_failing_reports_the_contact(
    db: Database, pool: AsyncConnectionPool[Any], http_receiver: HttpReceiver
) -> None:
    seed(db, [{"id": "c1", "channels": ["webhook", "email"]}])
    http_receiver.script = [(404, b"")]
    dead_smtp = free_port()  # nothing listens: connection refused is transient
    settings = fast(
        max_attempts=2,
        webhooks={"webhook": WebhookEndpoint(url=SecretStr(http_receiver.url()))},
        smtp=SmtpSettings(port=dead_smtp, timeout_s=2),
    )
    exhausted: list[ContactExhausted] = []

    async def hook(event: ContactExhausted) -> None:
        exhausted.append(event)

    worker = OutboxWorker(pool, build_notifiers(settings), settings, on_exhausted=hook)
    await enqueue(db)
    await drain(worker, db)

    assert [(r[1], r[2], r[3]) for r in outbox(db)] == [
        ("webhook", "failed", 1),
        ("email", "failed", 2),
    ]
    assert [a[:3] for a in attempts(db)] == [
        ("webhook", 1, "permanent"),
        ("email", 1, "transient"),
        ("email", 2, "transient"),
    ]
    assert len(exhausted) == 1
    assert exhausted[0].contact_id == "c1" and exhausted[0].incident_id == 7001
    assert exhausted[0].channels == ("webhook", "email")
    async with await psycopg.AsyncConnection.connect(db.conninfo()) as conn:
        assert await contact_status(conn, NOTICE.incident_id) == {"c1": "failed"}


def _aliyun_reference_signature(form: dict[str, str], secret: str) -> str:
    """An independent implementation of Aliyun's RPC signature v1 for the fake endpoint."""

    def enc(s: str) -> str:
        return (
            urllib.parse.quote_plus(s, safe="")
            .replace("+", "%20")
            .replace("*", "%2A")
            .replace("%7E", "~")
        )

    canon = "&".join(f"{enc(k)}={enc(form[k])}" for k in sorted(form) if k != "Signature")
    to_sign = "POST&%2F&" + enc(canon)
    return base64.b64encode(
        hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    ).decode()


def aliyun_endpoint(receiver: HttpReceiver, *, code_for_phone: dict[str, str]) -> None:
    """Make ``receiver`` behave like dysmsapi: check shape and signature, answer a Code."""

    def respond(req: Received) -> tuple[int, bytes]:
        form = dict(urllib.parse.parse_qsl(req.body.decode(), strict_parsing=True))
        required = {
            "AccessKeyId", "Action", "Format", "PhoneNumbers", "RegionId", "SignName",
            "SignatureMethod", "SignatureNonce", "SignatureVersion", "TemplateCode",
            "TemplateParam", "Timestamp", "Version", "Signature",
        }  # fmt: skip
        if not required <= set(form) or form["Action"] != "SendSms":
            return 400, b'{"Code":"MissingParameter"}'
        if form["Signature"] != _aliyun_reference_signature(form, SMS_SECRET):
            return 400, b'{"Code":"SignatureDoesNotMatch"}'
        age = abs(datetime.now(UTC) - datetime.strptime(form["Timestamp"], "%Y-%m-%dT%H:%M:%S%z"))
        assert age.total_seconds() < 60
        code = code_for_phone.get(form["PhoneNumbers"], "OK")
        return 200, json.dumps({"Code": code, "Message": form["PhoneNumbers"]}).encode()

    receiver.respond = respond


def sms_settings(receiver: HttpReceiver, **kw: Any) -> NotifySettings:
    return fast(
        sms=AliyunSmsSettings(
            endpoint=receiver.url("/"),
            access_key_id=SMS_KEY_ID,
            access_key_secret=SecretStr(SMS_SECRET),
            sign_name="安居守护",
            template_code="SMS_900001",
        ),
        **kw,
    )


async def test_sms_through_the_aliyun_api(
    db: Database,
    pool: AsyncConnectionPool[Any],
    http_receiver: HttpReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.notify")
    seed(db, [{"id": "c1", "channels": ["sms"]}])
    aliyun_endpoint(http_receiver, code_for_phone={})
    settings = sms_settings(http_receiver)
    await enqueue(db)
    await drain(OutboxWorker(pool, build_notifiers(settings), settings), db)

    assert attempts(db) == [("sms", 1, "delivered", "aliyun OK")]
    (req,) = http_receiver.received
    form = dict(urllib.parse.parse_qsl(req.body.decode()))
    assert form["PhoneNumbers"] == PHONE
    assert form["TemplateCode"] == "SMS_900001" and form["SignName"] == "安居守护"
    assert form["AccessKeyId"] == SMS_KEY_ID and form["OutId"].isdigit()
    params = json.loads(form["TemplateParam"])
    assert params == {
        "place": "Room 301 / BED-0301",
        "time": "2026-11-23 09:05",
        "type": "跌倒",
    }
    assert NAME not in form["TemplateParam"]
    assert_no_personal_data(caplog)


async def test_sms_rejected_by_the_provider_is_permanent(
    db: Database, pool: AsyncConnectionPool[Any], http_receiver: HttpReceiver
) -> None:
    seed(db, [{"id": "c1", "channels": ["sms"]}])
    aliyun_endpoint(http_receiver, code_for_phone={PHONE: "isv.MOBILE_NUMBER_ILLEGAL"})
    settings = sms_settings(http_receiver)
    exhausted: list[ContactExhausted] = []

    async def hook(event: ContactExhausted) -> None:
        exhausted.append(event)

    await enqueue(db)
    await drain(OutboxWorker(pool, build_notifiers(settings), settings, on_exhausted=hook), db)
    assert attempts(db) == [("sms", 1, "permanent", "aliyun isv.MOBILE_NUMBER_ILLEGAL")]
    assert [e.contact_id for e in exhausted] == ["c1"]
    # Aliyun's Message may echo the number: it is never stored.
    assert PHONE not in repr(outbox(db))


async def test_sms_with_a_wrong_secret_fails_the_signature_check(
    db: Database, pool: AsyncConnectionPool[Any], http_receiver: HttpReceiver
) -> None:
    seed(db, [{"id": "c1", "channels": ["sms"]}])
    aliyun_endpoint(http_receiver, code_for_phone={})
    good = sms_settings(http_receiver)
    assert good.sms is not None
    bad_sms = good.sms.model_copy(update={"access_key_secret": SecretStr("wrong")})
    settings = good.model_copy(update={"sms": bad_sms})
    await enqueue(db)
    await drain(OutboxWorker(pool, build_notifiers(settings), settings), db)
    assert attempts(db) == [("sms", 1, "permanent", "aliyun SignatureDoesNotMatch")]


async def test_group_bot_gets_no_resident_name(
    db: Database,
    pool: AsyncConnectionPool[Any],
    http_receiver: HttpReceiver,
) -> None:
    seed(db, [{"id": "c1", "channels": ["bot:ward3"]}])
    url = f"json://127.0.0.1:{http_receiver.port}/bot"
    settings = fast(bots={"bot:ward3": SecretStr(url)})
    await enqueue(db)
    await drain(OutboxWorker(pool, build_notifiers(settings), settings), db)

    assert attempts(db) == [("bot:ward3", 1, "delivered", "bot accepted")]
    (req,) = http_receiver.received
    assert req.path == "/bot"
    doc = json.loads(req.body)
    assert "BED-0301" in doc["message"] and "Room 301" in doc["message"]
    assert "跌倒" in doc["title"]
    assert NAME not in req.body.decode("utf-8")


async def test_group_bot_failure_is_transient_then_moves_on(
    db: Database, pool: AsyncConnectionPool[Any], http_receiver: HttpReceiver
) -> None:
    seed(db, [{"id": "c1", "channels": ["bot", "webhook"]}])
    http_receiver.respond = lambda req: (500, b"") if req.path == "/bot" else (200, b"{}")
    settings = fast(
        max_attempts=2,
        bots={"bot": SecretStr(f"json://127.0.0.1:{http_receiver.port}/bot")},
        webhooks={"webhook": WebhookEndpoint(url=SecretStr(http_receiver.url()))},
    )
    await enqueue(db)
    await drain(OutboxWorker(pool, build_notifiers(settings), settings), db)
    assert [a[:3] for a in attempts(db)] == [
        ("bot", 1, "transient"),
        ("bot", 2, "transient"),
        ("webhook", 1, "delivered"),
    ]


@pytest.mark.parametrize(
    ("url", "plugin"),
    [
        ("wecombot://BOTKEY", "NotifyWeComBot"),
        ("dingtalk://SIGNSECRET@ACCESSTOKEN/", "NotifyDingTalk"),
        ("feishu://HOOKTOKEN", "NotifyFeishu"),
    ],
)
def test_chinese_group_bot_urls_build_the_right_apprise_plugin(url: str, plugin: str) -> None:
    # These services have fixed public hosts, so a local receiver cannot stand in for them;
    # the adapter and its delivery path are exercised through json:// above.
    assert AppriseNotifier(url).plugin == plugin


async def test_no_consent_nothing_is_queued(db: Database) -> None:
    seed(
        db,
        [
            {"id": "fam-no", "channels": ["email"], "consent": False},
            {"id": "fam-yes", "channels": ["email"]},
            {"id": "worker", "kind": "community_worker", "channels": ["sms"]},
            {"id": "nochan", "channels": ["fax"]},
        ],
        consent_family_incidents=False,
    )
    result = await enqueue(db)
    # The resident does not consent to family incident notices: only the worker is queued.
    assert [r[:2] for r in outbox(db)] == [("worker", "sms")]
    assert result.unreachable_contacts == ()
    # Enqueuing again is idempotent.
    again = await enqueue(db)
    assert again.outbox_ids == ()
    assert db.scalar("SELECT count(*) FROM notification_outbox") == 1


async def test_contact_without_channels_is_reported_unreachable(db: Database) -> None:
    seed(db, [{"id": "c1", "channels": []}, {"id": "c2", "channels": ["fax"]}])
    result = await enqueue(db)
    assert result.outbox_ids == ()
    assert result.unreachable_contacts == ("c1", "c2")


async def test_consent_withdrawn_after_enqueue_stops_delivery(
    db: Database, pool: AsyncConnectionPool[Any], http_receiver: HttpReceiver
) -> None:
    seed(db, [{"id": "c1", "channels": ["webhook", "email"]}])
    settings = fast(webhooks={"webhook": WebhookEndpoint(url=SecretStr(http_receiver.url()))})
    await enqueue(db)
    with db.connect() as conn:
        conn.execute("UPDATE contacts SET consent_notify = false WHERE contact_id = 'c1'")
    await drain(OutboxWorker(pool, build_notifiers(settings), settings), db)
    assert [(r[1], r[2], r[4]) for r in outbox(db)] == [("webhook", "failed", "consent withdrawn")]
    assert http_receiver.received == []


async def test_two_workers_deliver_each_row_once(
    db: Database, pool: AsyncConnectionPool[Any], http_receiver: HttpReceiver
) -> None:
    seed(db, [{"id": f"c{i}", "channels": ["webhook"]} for i in range(12)])
    settings = fast(
        batch_size=3, webhooks={"webhook": WebhookEndpoint(url=SecretStr(http_receiver.url()))}
    )
    notifiers = build_notifiers(settings)
    workers = [OutboxWorker(pool, notifiers, settings) for _ in range(2)]
    await enqueue(db)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        deadline = time.monotonic() + 15
        while db.scalar("SELECT count(*) FROM notification_outbox WHERE state = 'delivered'") < 12:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    ids = sorted(int(r.headers["x-safehome-delivery"]) for r in http_receiver.received)
    assert len(ids) == 12 and len(set(ids)) == 12
    assert db.scalar("SELECT count(*) FROM notification_attempts") == 12


async def test_webhook_timeout_is_transient(
    db: Database, pool: AsyncConnectionPool[Any], http_receiver: HttpReceiver
) -> None:
    seed(db, [{"id": "c1", "channels": ["webhook"]}])

    def slow_then_fast(req: Received) -> tuple[int, bytes]:
        if req is http_receiver.received[0]:
            time.sleep(1.0)
        return 200, b"{}"

    http_receiver.respond = slow_then_fast
    endpoint = WebhookEndpoint(url=SecretStr(http_receiver.url()), timeout_s=0.3)
    settings = fast(webhooks={"webhook": endpoint})
    seen: list[tuple[str, str]] = []
    worker = OutboxWorker(
        pool,
        build_notifiers(settings),
        settings,
        on_attempt=lambda kind, outcome, _s: seen.append((kind, outcome.value)),
    )
    await enqueue(db)
    await drain(worker, db)
    assert attempts(db) == [
        ("webhook", 1, "transient", "timeout"),
        ("webhook", 2, "delivered", "http 200"),
    ]
    assert seen == [("webhook", "transient"), ("webhook", "delivered")]


async def test_enqueue_rolls_back_with_the_callers_transaction(db: Database) -> None:
    seed(db, [{"id": "c1", "channels": ["webhook"]}])
    async with await psycopg.AsyncConnection.connect(db.conninfo()) as conn:
        result = await enqueue_incident(conn, NOTICE)
        assert len(result.outbox_ids) == 1
        await conn.rollback()
    assert db.scalar("SELECT count(*) FROM notification_outbox") == 0


async def test_row_of_a_dead_worker_is_reclaimed_after_its_lease(
    db: Database, pool: AsyncConnectionPool[Any], http_receiver: HttpReceiver
) -> None:
    seed(db, [{"id": "c1", "channels": ["webhook"]}])
    settings = fast(webhooks={"webhook": WebhookEndpoint(url=SecretStr(http_receiver.url()))})
    await enqueue(db)
    # A worker claimed the row and died: 'sending' with a lease still running...
    with db.connect() as conn:
        conn.execute(
            "UPDATE notification_outbox SET state = 'sending', attempts = 1,"
            " lease_until = now() + interval '1 hour'"
        )
    worker = OutboxWorker(pool, build_notifiers(settings), settings)
    assert await worker.run_once() == 0
    # ... until the lease runs out.
    with db.connect() as conn:
        conn.execute("UPDATE notification_outbox SET lease_until = now() - interval '1 second'")
    assert await worker.run_once() == 1
    assert [(r[2], r[3]) for r in outbox(db)] == [("delivered", 2)]
    assert attempts(db) == [("webhook", 2, "delivered", "http 200")]


async def test_a_channel_that_keeps_failing_hands_over_at_its_deadline(
    db: Database,
    pool: AsyncConnectionPool[Any],
    http_receiver: HttpReceiver,
    smtp_server: tuple[MailSink, int],
) -> None:
    sink, smtp_port = smtp_server
    seed(db, [{"id": "c1", "channels": ["webhook", "email"]}])
    http_receiver.script = [(503, b"")]
    settings = fast(
        max_attempts=20,
        channel_deadline_s=0.5,
        webhooks={"webhook": WebhookEndpoint(url=SecretStr(http_receiver.url()))},
        smtp=SmtpSettings(port=smtp_port),
    )
    await enqueue(db)
    async with await psycopg.AsyncConnection.connect(db.conninfo()) as conn:
        assert await contact_status(conn, NOTICE.incident_id) == {"c1": "in_progress"}
    await drain(OutboxWorker(pool, build_notifiers(settings), settings), db)
    rows = outbox(db)
    assert [(r[1], r[2]) for r in rows] == [("webhook", "failed"), ("email", "delivered")]
    assert 1 <= rows[0][3] < 20  # how many fit in 0.5 s depends on the load: at least one
    assert len(sink.envelopes) == 1


@pytest.fixture
def tls_smtp_server(tmp_path: Path) -> Iterator[tuple[MailSink, int, Path]]:
    """aiosmtpd requiring STARTTLS, with a self-signed certificate for 127.0.0.1."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = MailSink()
    port = free_port()
    loop = asyncio.new_event_loop()  # closed after the server (see smtp_server)
    controller = Controller(
        sink, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
        loop=loop,
    )  # fmt: skip
    controller.start()
    yield sink, port, cert
    controller.stop()
    loop.close()


async def test_email_over_starttls_verifies_the_certificate(
    db: Database, pool: AsyncConnectionPool[Any], tls_smtp_server: tuple[MailSink, int, Path]
) -> None:
    sink, port, cert = tls_smtp_server
    seed(db, [{"id": "c1", "channels": ["email"]}])
    trusted = fast(smtp=SmtpSettings(port=port, starttls=True, ca_file=str(cert)))
    await enqueue(db)
    await drain(OutboxWorker(pool, build_notifiers(trusted), trusted), db)
    assert attempts(db) == [("email", 1, "delivered", "smtp accepted")]
    assert len(sink.envelopes) == 1


async def test_email_to_an_untrusted_certificate_is_not_sent(
    db: Database, pool: AsyncConnectionPool[Any], tls_smtp_server: tuple[MailSink, int, Path]
) -> None:
    sink, port, _ = tls_smtp_server
    seed(db, [{"id": "c1", "channels": ["email"]}])
    untrusted = fast(smtp=SmtpSettings(port=port, starttls=True))
    await enqueue(db)
    await drain(OutboxWorker(pool, build_notifiers(untrusted), untrusted), db)
    assert attempts(db) == [("email", 1, "permanent", "smtp certificate not trusted")]
    assert sink.envelopes == []


async def test_worker_rides_out_a_database_outage(
    private_pg: Database, http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    db = private_pg
    caplog.set_level(logging.INFO, logger="gateway.notify")
    seed(db, [{"id": "c1", "channels": ["webhook"]}])
    settings = fast(webhooks={"webhook": WebhookEndpoint(url=SecretStr(http_receiver.url()))})
    await enqueue(db)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        db.conninfo(), min_size=1, max_size=2, timeout=0.5, reconnect_timeout=60, open=False
    )
    await pool.open()
    db.server.stop(mode="fast")
    task = asyncio.create_task(OutboxWorker(pool, build_notifiers(settings), settings).run())
    try:
        await asyncio.sleep(2.0)
        assert http_receiver.received == []
        await asyncio.to_thread(db.server.start)
        deadline = time.monotonic() + 30
        while not http_receiver.received:
            assert time.monotonic() < deadline, "no delivery after the database came back"
            await asyncio.sleep(0.1)
        # "database back" is logged when the batch that delivered has returned, which can
        # be a moment after the receiver saw the post.
        while "notification outbox: database back" not in [r.getMessage() for r in caplog.records]:
            assert time.monotonic() < deadline, "the recovery was never logged"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pool.close()
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("notification outbox: database unavailable") == 1
    assert messages.count("notification outbox: database back") == 1


async def test_a_group_is_posted_once_per_incident(
    db: Database, pool: AsyncConnectionPool[Any], http_receiver: HttpReceiver
) -> None:
    # Two relatives and a community worker all follow the ward's group bot.
    seed(
        db,
        [
            {"id": "c1", "channels": ["bot:ward3"]},
            {"id": "c2", "channels": ["bot:ward3"]},
            {"id": "w1", "kind": "community_worker", "channels": ["bot:ward3"]},
        ],
    )
    settings = fast(bots={"bot:ward3": SecretStr(f"json://127.0.0.1:{http_receiver.port}/bot")})
    await enqueue(db)
    await drain(OutboxWorker(pool, build_notifiers(settings), settings), db)
    assert len(http_receiver.received) == 1
    assert sorted(a[3] for a in attempts(db)) == [
        "bot accepted",
        "group already notified",
        "group already notified",
    ]
    assert {r[2] for r in outbox(db)} == {"delivered"}
