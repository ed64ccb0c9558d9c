"""Localised notifications through real channels (issue 11 §2): a family e-mail (aiosmtpd)
and a staff page (webhook on a real ``http.server``), in zh-CN by default and in English
for the person who chose it, with the plain reason sentence and the site's zone named."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from gateway.escalation import intake
from gateway.escalation.worker import EscalationWorker
from gateway.localsvc import free_port
from gateway.notify import NotifySettings, OutboxWorker, build_notifiers
from gateway.notify.outbox import IncidentNotice, enqueue_incident
from gateway.notify.settings import SmtpSettings, WebhookEndpoint
from gateway.storage import languages
from gateway.workflow.service import IncidentService, Trigger
from gateway.workflow.transitions import IncidentType
from tests.integration.test_paging import channel, ladder, seed_site, staff_user
from tests.support import Database

pytestmark = pytest.mark.integration

NAME = "王秀英"
FALL = {"peak_g": 3.6, "posture_change_deg": 85, "confirm_window_s": 30}
ZH_REASON = "跌倒：撞击 3.6g 后平躺未起，30 秒内未取消"
EN_REASON = "Fall: impact 3.6 g, then lying still; not cancelled within 30 s"
RAISED = datetime(2026, 11, 23, 1, 5, tzinfo=UTC)  # 09:05 at UTC+8


class _Sink:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Iterator[tuple[_Sink, int]]:
    sink, port = _Sink(), free_port()
    loop = asyncio.new_event_loop()  # closed here: aiosmtpd never closes its own
    controller = Controller(sink, hostname="127.0.0.1", port=port, loop=loop)
    controller.start()
    yield sink, port
    controller.stop()
    loop.close()


@pytest.fixture
def hook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
async def pool(db: Database) -> AsyncIterator[AsyncConnectionPool[Any]]:
    p: AsyncConnectionPool[Any] = AsyncConnectionPool(
        db.conninfo(), min_size=1, max_size=4, kwargs={"autocommit": True}, open=False
    )
    await p.open()
    yield p
    await p.close()


def _fall(db: Database, *, escalate: bool = False) -> int:
    with db.connect() as conn, conn.transaction():
        incident, _ = IncidentService(conn).raise_or_join(
            Trigger(IncidentType.FALL, "s1", RAISED, "impact", resident_id="r1", details=FALL)
        )
        if escalate:
            intake.start_escalation(conn, incident.id, "s1")
    return incident.id


async def _until_empty(worker: OutboxWorker, db: Database) -> None:
    deadline = time.monotonic() + 15
    while db.scalar(
        "SELECT count(*) FROM notification_outbox WHERE state IN ('pending', 'sending')"
    ):
        assert time.monotonic() < deadline, "outbox did not drain"
        if not await worker.run_once():
            await asyncio.sleep(0.03)


async def test_family_mail_is_zh_cn_by_default_and_english_when_chosen(
    db: Database,
    pool: AsyncConnectionPool[Any],
    smtp: tuple[_Sink, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway")
    sink, port = smtp
    seed_site(db)
    with db.connect() as conn:
        conn.execute("UPDATE residents SET display_name = %s WHERE resident_id = 'r1'", (NAME,))
        for cid, email in (("c-zh", "zh@example.org"), ("c-en", "en@example.org")):
            conn.execute(
                "INSERT INTO contacts (contact_id, resident_id, kind, display_name, email,"
                " channels) VALUES (%s, 'r1', 'family', '李明', %s, '[\"email\"]')",
                (cid, email),
            )
        languages.set_contact_language(conn, "c-en", "en", actor="test")
    incident_id = _fall(db)
    async with await psycopg.AsyncConnection.connect(db.conninfo(), autocommit=True) as conn:
        queued = await enqueue_incident(
            conn, IncidentNotice(incident_id, "r1", "fall", RAISED)
        )  # fmt: skip
    assert len(queued.outbox_ids) == 2
    settings = NotifySettings(
        poll_interval_s=0.05, smtp=SmtpSettings(port=port, from_address="alerts@safehome.test")
    )
    await _until_empty(OutboxWorker(pool, build_notifiers(settings), settings), db)

    mails = {
        e.rcpt_tos[0]: message_from_bytes(e.content, policy=policy.default) for e in sink.envelopes
    }
    zh, en = mails["zh@example.org"], mails["en@example.org"]
    zh_text, en_text = zh.get_content(), en.get_content()
    assert str(zh["Subject"]) == "【安居守护】跌倒"
    assert ZH_REASON in zh_text
    assert "2026-11-23 09:05 (UTC+8)" in zh_text and NAME in zh_text
    assert "请尽快联系服务中心" in zh_text and "Please" not in zh_text
    assert str(en["Subject"]) == "[Safe-Home Guardian] Fall"
    assert EN_REASON in en_text
    assert "2026-11-23 09:05 (UTC+8)" in en_text
    assert "Please contact the care centre" in en_text and "请" not in en_text
    logged = " ".join(repr(r.__dict__) for r in caplog.records)
    for secret in (NAME, "李明", "zh@example.org", "en@example.org"):
        assert secret not in logged


async def test_staff_page_follows_each_users_language(
    db: Database,
    pool: AsyncConnectionPool[Any],
    hook: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = hook
    seed_site(db)
    nurse = staff_user(db, "nurse-zh", "duty_staff", "s1")
    other = staff_user(db, "nurse-en", "duty_staff", "s1")
    for user_id in (nurse, other):
        channel(db, user_id, "webhook")
    with db.connect() as conn:
        languages.set_user_language(conn, other, "en", actor="test")
        assert languages.user_language(conn, other) == "en"
        assert languages.user_language(conn, nurse) == "zh-CN"
        audit = conn.execute(
            "SELECT action FROM audit_log WHERE target = %s", (f"user:{other}",)
        ).fetchall()
    assert ("user.language",) in audit
    incident_id = _fall(db, escalate=True)
    notify = NotifySettings(
        poll_interval_s=0.05, webhooks={"webhook": WebhookEndpoint(url=SecretStr(url))}
    )
    worker = EscalationWorker(pool, ladder(duty=600.0), poll_interval_s=0.05, page_ttl_s=3600)
    outbox = OutboxWorker(pool, build_notifiers(notify), notify)
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(outbox.run())]
    try:
        deadline = time.monotonic() + 20
        while len(received) < 2:
            assert time.monotonic() < deadline, "pages not delivered"
            await asyncio.sleep(0.05)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    pages = {doc["user_id"]: doc for doc in received}
    zh, en = pages[nurse], pages[other]
    assert zh["incident_id"] == en["incident_id"] == incident_id
    assert zh["title"].startswith("【安居守护】请确认") and "跌倒" in zh["title"]
    assert ZH_REASON in zh["body"] and "(UTC+8)" in zh["body"]
    assert "短信回复" in zh["body"]
    assert en["title"] == "[Safe-Home Guardian] Please acknowledge: Fall"
    assert EN_REASON in en["body"] and "(UTC+8)" in en["body"]
    assert "reply" in en["body"] and "确认" not in en["body"]
    assert zh["fields"]["language"] == "zh-CN" and en["fields"]["language"] == "en"
