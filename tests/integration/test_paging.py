"""Staff paging off-console against real PostgreSQL, Mosquitto and local HTTP receivers.

Covers: a button press with no console open reaching the on-duty user's webhook and SMS
receivers (through the outbox, attempts recorded as staff), acknowledgement from the message
(a GET of the link does not acknowledge, its POST does, a second POST is refused; an SMS reply
code through the signed inbound endpoint), unknown/expired/used links and codes answered and
counted, an unanswered page moving to the supervisor tier, failing channels falling back
(SMS → Aliyun voice call, signature checked) and the tier advancing early, the admin channel
routes, the ``safehome user channel`` CLI, and WeChat template messages to families.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from devices import protocol as p
from gateway.api.auth import create_user
from gateway.commissioning import apply_site_definition
from gateway.escalation import intake
from gateway.escalation.ladder import EscalationConfig, parse_ladders
from gateway.escalation.roster import DutyRole, add_shift
from gateway.escalation.worker import EscalationWorker
from gateway.notify import NotifySettings, OutboxWorker, build_notifiers
from gateway.notify.channels import AliyunVoiceNotifier
from gateway.notify.outbox import IncidentNotice, enqueue_incident
from gateway.notify.settings import (
    AliyunSmsSettings,
    AliyunVoiceSettings,
    WebhookEndpoint,
    WechatTemplateSettings,
)
from gateway.paging import acks
from gateway.paging.channels import add_channel
from gateway.paging.tokens import AckResult, inbound_signature, sign_link, verify_link
from gateway.storage import languages
from gateway.workflow.service import Actor, IncidentService, Trigger
from gateway.workflow.transitions import IncidentType, Role
from tests.support import (
    PREFIX,
    Broker,
    Database,
    DeviceClient,
    InProcessGateway,
    access_token,
    gateway_settings,
    make_site,
    wait_until,
)

pytestmark = pytest.mark.integration

PASSWORD = "pw-paging-test-1"
ACK_SECRET = "ack-" + "k" * 40
INBOUND_SECRET = "inbound-sms-secret"
KEY_ID = "LTAI-test-id"
KEY_SECRET = "aliyun-test-secret"
NURSE_PHONE = "13800138000"
HEAD_PHONE = "13900139000"
PUBLIC_BASE = "https://pager.example"


# --------------------------------------------------------------------------- receivers


@dataclass
class Req:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.body.decode(), strict_parsing=True))

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server; ``respond`` answers each request (default 200 ``{}``)."""

    respond: Callable[[Req], tuple[int, bytes]] = lambda _r: (200, b"{}")
    received: list[Req] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def serve() -> Iterator[Callable[[], Receiver]]:
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start() -> Receiver:
        rec = Receiver()
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                req = Req(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                with lock:
                    rec.received.append(req)
                status, answer = rec.respond(req)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        rec.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return rec

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


def reference_signature(form: dict[str, str], secret: str) -> str:
    """Aliyun RPC signature v1, written independently of the adapter (quote_plus based)."""

    def enc(s: str) -> str:
        return urllib.parse.quote_plus(s, safe="").replace("+", "%20").replace("*", "%2A")

    canon = "&".join(f"{enc(k)}={enc(form[k])}" for k in sorted(form) if k != "Signature")
    to_sign = "POST&%2F&" + enc(canon)
    mac = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def aliyun(rec: Receiver, action: str, required: set[str], code: str = "OK") -> None:
    """Make ``rec`` check an Aliyun RPC call's shape and signature like the real service."""

    def respond(req: Req) -> tuple[int, bytes]:
        form = req.form()
        common = {
            "AccessKeyId",
            "Action",
            "Format",
            "RegionId",
            "SignatureMethod",
            "SignatureNonce",
            "SignatureVersion",
            "Timestamp",
            "Version",
            "Signature",
        }
        if not (common | required) <= set(form) or form["Action"] != action:
            return 400, b'{"Code":"MissingParameter"}'
        if form["Signature"] != reference_signature(form, KEY_SECRET):
            return 400, b'{"Code":"SignatureDoesNotMatch"}'
        if form["SignatureMethod"] != "HMAC-SHA1" or form["Version"] != "2017-05-25":
            return 400, b'{"Code":"InvalidVersion"}'
        return 200, json.dumps(
            {"Code": code, "Message": "echo " + form.get("PhoneNumbers", "")}
        ).encode()

    rec.respond = respond


SMS_FIELDS = {"PhoneNumbers", "SignName", "TemplateCode", "TemplateParam", "OutId"}
VOICE_FIELDS = {"CalledNumber", "TtsCode", "TtsParam", "PlayTimes", "OutId"}


def sms_settings(rec: Receiver) -> AliyunSmsSettings:
    return AliyunSmsSettings(
        endpoint=rec.url("/"),
        access_key_id=KEY_ID,
        access_key_secret=SecretStr(KEY_SECRET),
        sign_name="安居守护",
        template_code="SMS_FAMILY",
        staff_template_code="SMS_STAFF",
    )


def voice_settings(rec: Receiver) -> AliyunVoiceSettings:
    return AliyunVoiceSettings(
        endpoint=rec.url("/"),
        access_key_id=KEY_ID,
        access_key_secret=SecretStr(KEY_SECRET),
        tts_code="TTS_PAGE",
        called_show_number="057100000000",
    )


# --------------------------------------------------------------------------- helpers


def staff_user(db: Database, username: str, role: str, site: str) -> str:
    now = datetime.now(UTC)
    with db.connect() as conn:
        user_id = create_user(conn, username, role, PASSWORD, site_id=site)
        add_shift(
            conn,
            site,
            user_id=user_id,
            role=DutyRole(role),
            starts_at=now - timedelta(hours=1),
            ends_at=now + timedelta(hours=7),
        )
    return user_id


def channel(db: Database, user_id: str, name: str, address: str | None = None) -> None:
    with db.connect() as conn:
        add_channel(conn, user_id, name, address, actor="test")


def staff_attempts(db: Database, incident_id: int) -> list[tuple[Any, ...]]:
    return db.rows(
        "SELECT user_id, channel, result FROM notification_attempts"
        " WHERE incident_id = %s AND recipient_kind = 'staff' AND contact_id IS NULL ORDER BY id",
        (incident_id,),
    )


def audit_actions(db: Database, incident_id: int, actor: str) -> list[str]:
    rows = db.rows(
        "SELECT action FROM audit_log WHERE target = %s AND actor = %s ORDER BY seq",
        (f"incident:{incident_id}", actor),
    )
    return [r[0] for r in rows]


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def signed_sms(api: str, sender: str, text: str, secret: str = INBOUND_SECRET) -> tuple[int, Any]:
    body = json.dumps({"from": sender, "text": text}).encode()
    ts = str(int(time.time()))
    status, answer = http(
        "POST",
        f"{api}/paging/sms-inbound",
        body,
        {
            "Content-Type": "application/json",
            "X-Safehome-Timestamp": ts,
            "X-Safehome-Signature": inbound_signature(secret, ts, body),
        },
    )
    return status, json.loads(answer)


def press(dev: DeviceClient, device_id: str, msg: str) -> None:
    payload = p.encode_event(device_id, msg, 1, int(time.time() * 1000), event="press")
    dev.publish(f"{PREFIX}/v1/site-a/{device_id}/event", payload)


# --------------------------------------------------------------------------- end to end


def test_press_pages_the_on_duty_phone_and_the_message_acknowledges(
    db: Database, broker: Broker, serve: Callable[[], Receiver], tmp_path: Any
) -> None:
    """No console: two presses page two nurses (webhook; SMS); one acks by link, one by SMS."""
    hook, sms = serve(), serve()
    aliyun(sms, "SendSms", SMS_FIELDS)
    creds = make_site(db, broker, site_id="site-a", beds=2)
    nurse_a = staff_user(db, "nurse-a", "duty_staff", "site-a")
    nurse_b = staff_user(db, "nurse-b", "duty_staff", "site-a")
    channel(db, nurse_a, "webhook")
    channel(db, nurse_b, "sms", "+86 138-0013-8000")
    with db.connect() as conn:
        create_user(conn, "boss", "admin", PASSWORD)
        languages.set_user_language(conn, nurse_b, "en", actor="test")  # answers in English
    ladder_file = tmp_path / "escalation.toml"
    ladder_file.write_text(
        "[ladder]\n"
        '[[ladder.tiers]]\nname = "duty_staff"\naudience = "duty_staff"\ntimeout_s = 120\n'
    )
    settings = gateway_settings(
        db,
        broker,
        SAFEHOME_ESCALATION__LADDER_CONFIG=str(ladder_file),
        SAFEHOME_ESCALATION__POLL_INTERVAL_S="0.1",
        SAFEHOME_NOTIFY__POLL_INTERVAL_S="0.1",
        SAFEHOME_NOTIFY__WEBHOOKS__WEBHOOK__URL=hook.url("/page"),
        SAFEHOME_NOTIFY__SMS__ENDPOINT=sms.url("/"),
        SAFEHOME_NOTIFY__SMS__ACCESS_KEY_ID=KEY_ID,
        SAFEHOME_NOTIFY__SMS__ACCESS_KEY_SECRET=KEY_SECRET,
        SAFEHOME_NOTIFY__SMS__SIGN_NAME="安居守护",
        SAFEHOME_NOTIFY__SMS__TEMPLATE_CODE="SMS_FAMILY",
        SAFEHOME_NOTIFY__SMS__STAFF_TEMPLATE_CODE="SMS_STAFF",
        SAFEHOME_PAGING__PUBLIC_BASE_URL=PUBLIC_BASE,
        SAFEHOME_PAGING__ACK_SECRET=ACK_SECRET,
        SAFEHOME_PAGING__INBOUND_SMS_SECRET=INBOUND_SECRET,
        SAFEHOME_ANALYSIS__CHECK_INTERVAL_S="0.2",
    )
    bt0 = next(c for c in creds if c.device_id == "site-a-bt0")
    bt1 = next(c for c in creds if c.device_id == "site-a-bt1")
    with (
        InProcessGateway(settings) as gw,
        DeviceClient(broker.port, bt0.device_id, bt0.password) as dev0,
        DeviceClient(broker.port, bt1.device_id, bt1.password) as dev1,
    ):
        api = gw.api_url
        press(dev0, bt0.device_id, "press-a")
        wait_until(lambda: len(hook.received) == 1 and len(sms.received) == 1, 20, "both pages")
        first = db.scalar("SELECT id FROM incidents")
        page = hook.received[0].json()
        assert page["event"] == "staff.page" and page["user_id"] == nurse_a
        assert page["incident_id"] == first and page["contact_id"] is None
        assert re.fullmatch(r"\d{6}", page["fields"]["ack_code"])
        link = page["fields"]["ack_url"]
        assert link.startswith(f"{PUBLIC_BASE}/ack/") and link in page["body"]
        assert sorted(staff_attempts(db, first)) == sorted(
            [(nurse_a, "webhook", "delivered"), (nurse_b, "sms", "delivered")]
        )
        form = sms.received[0].form()
        assert form["PhoneNumbers"] == NURSE_PHONE and form["TemplateCode"] == "SMS_STAFF"
        code_b_first = json.loads(form["TemplateParam"])["code"]
        assert re.fullmatch(r"\d{6}", code_b_first)

        # (a) the link: GET shows the page and changes nothing; POST acknowledges once.
        url = api + link[len(PUBLIC_BASE) :]
        status, text = http("GET", url)
        assert status == 200 and "确认事件" in text and '<form method="post"' in text
        assert "状态：待确认" in text and "(UTC+8)" in text and "我来处理（确认）" in text
        status, text = http("GET", url)  # a link-preview bot fetching it again
        assert db.scalar("SELECT state FROM incidents WHERE id = %s", (first,)) == "raised"
        status, text = http("POST", url)
        assert status == 200 and "已确认" in text
        assert db.rows("SELECT state, acknowledged_by FROM incidents WHERE id = %s", (first,)) == [
            ("acknowledged", nurse_a)
        ]
        assert audit_actions(db, first, nurse_a) == ["incident.acknowledge", "page.acknowledged"]
        status, text = http("POST", url)
        assert status == 409 and "已使用" in text
        status, _ = http("POST", url[:-3] + "abc")  # tampered
        assert status == 404
        with db.connect() as conn:
            page_id = conn.execute("SELECT max(id) FROM staff_pages").fetchone()
        assert page_id is not None
        expired = sign_link(ACK_SECRET, int(page_id[0]), nurse_b, int(time.time()) - 5)
        status, text = http("POST", f"{api}/ack/{expired}")
        assert status == 410 and "过期" in text
        wait_until(
            lambda: (
                db.scalar(
                    "SELECT stop_reason FROM incident_escalations WHERE incident_id = %s", (first,)
                )
                == "acknowledged"
            ),
            10,
            "escalation stopped",
        )

        # nurse-b replies to the first page's code: someone already took it.
        status, answer = signed_sms(api, "+8613800138000", code_b_first)
        assert status == 200 and answer["result"] == "already_acknowledged"

        # (b) the SMS reply code, for a second incident.
        press(dev1, bt1.device_id, "press-b")
        wait_until(lambda: len(sms.received) == 2, 20, "the second SMS page")
        second = db.scalar("SELECT max(id) FROM incidents")
        code = json.loads(sms.received[1].form()["TemplateParam"])["code"]
        status, _ = signed_sms(api, NURSE_PHONE, code, secret="wrong")
        assert status == 401
        status, answer = signed_sms(api, NURSE_PHONE, "000000" if code != "000000" else "111111")
        assert answer["result"] == "unknown"
        assert answer["message"] == "链接或回复码无效。 / Invalid link or reply code."
        status, answer = signed_sms(api, HEAD_PHONE, code)  # right code, wrong phone
        assert answer["result"] == "unknown"
        assert db.scalar("SELECT state FROM incidents WHERE id = %s", (second,)) == "raised"
        status, answer = signed_sms(api, "138 0013 8000", f"收到 {code}")
        assert status == 200 and answer["result"] == "acknowledged"
        assert answer["message"] == "Acknowledged: escalation stopped. Please attend now."
        assert answer["incident_id"] == second
        assert db.rows("SELECT state, acknowledged_by FROM incidents WHERE id = %s", (second,)) == [
            ("acknowledged", nurse_b)
        ]
        assert audit_actions(db, second, nurse_b) == ["incident.acknowledge", "page.acknowledged"]
        status, answer = signed_sms(api, NURSE_PHONE, code)
        assert answer["result"] == "used"

        # Counted, by way and result.
        _, metrics = http("GET", f"{api}/metrics")
        for line in (
            'safehome_paging_acks_total{result="acknowledged",via="link"} 1.0',
            'safehome_paging_acks_total{result="used",via="link"} 1.0',
            'safehome_paging_acks_total{result="unknown",via="link"} 1.0',
            'safehome_paging_acks_total{result="expired",via="link"} 1.0',
            'safehome_paging_acks_total{result="acknowledged",via="sms"} 1.0',
            'safehome_paging_acks_total{result="already_acknowledged",via="sms"} 1.0',
            'safehome_paging_acks_total{result="unknown",via="sms"} 3.0',
            'safehome_paging_acks_total{result="used",via="sms"} 1.0',
        ):
            assert line in metrics, line

        # The admin manages channels through the API; staff may not.
        boss, nurse_a = access_token(api, "boss", PASSWORD), access_token(api, "nurse-a", PASSWORD)
        admin = {"Authorization": f"Bearer {boss}", "Content-Type": "application/json"}
        nurse = {"Authorization": f"Bearer {nurse_a}"}
        status, _ = http("GET", f"{api}/users/nurse-b/channels", headers=nurse)
        assert status == 403
        status, answer = http(
            "POST",
            f"{api}/users/nurse-b/channels",
            json.dumps({"channel": "voice", "address": "13800138000", "position": 0}).encode(),
            admin,
        )
        assert status == 201 and json.loads(answer)["address"] == "+86138****8000"
        status, answer = http("GET", f"{api}/users/nurse-b/channels", headers=admin)
        listed = json.loads(answer)
        assert [(c["position"], c["channel"]) for c in listed] == [(0, "voice"), (1, "sms")]
        status, answer = http(
            "POST",
            f"{api}/users/nurse-b/channels",
            json.dumps({"channel": "sms", "address": "not a phone"}).encode(),
            admin,
        )
        assert status == 400
        status, _ = http("DELETE", f"{api}/users/nurse-b/channels/{listed[0]['id']}", headers=admin)
        assert status == 204
    # No phone number in any audit entry.
    assert (
        db.scalar("SELECT count(*) FROM audit_log WHERE data::text LIKE %s", ("%13800138000%",))
        == 0
    )


# --------------------------------------------------------------------------- the ladder


def ladder(duty: float, supervisor: float = 60.0) -> EscalationConfig:
    return parse_ladders(
        {
            "ladder": {
                "tiers": [
                    {"name": "duty_staff", "audience": "duty_staff", "timeout_s": duty},
                    {"name": "supervisor", "audience": "supervisor", "timeout_s": supervisor},
                ]
            }
        }
    )


def seed_site(db: Database) -> None:
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


def raise_fall(db: Database) -> int:
    with db.connect() as conn, conn.transaction():
        incident, _ = IncidentService(conn).raise_or_join(
            Trigger(IncidentType.FALL, "s1", datetime.now(UTC), "impact", resident_id="r1")
        )
        intake.start_escalation(conn, incident.id, "s1")
    return incident.id


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


async def run_workers(
    pool: AsyncConnectionPool[Any],
    config: EscalationConfig,
    notify: NotifySettings,
    done: Callable[[], bool],
    what: str,
) -> None:
    worker = EscalationWorker(pool, config, poll_interval_s=0.05, page_ttl_s=3600)
    outbox = OutboxWorker(
        pool,
        build_notifiers(notify),
        notify,
        on_exhausted=worker.on_exhausted,
        page_link=lambda pid, uid, exp: f"{PUBLIC_BASE}/ack/{sign_link(ACK_SECRET, pid, uid, exp)}",
    )
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(outbox.run())]
    try:
        await until(done, 20, what)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def tier_audit(db: Database, incident_id: int) -> list[tuple[Any, ...]]:
    return db.rows(
        "SELECT data->>'name', (data->>'early')::boolean FROM audit_log WHERE target = %s"
        " AND action = 'escalation.tier' ORDER BY seq",
        (f"incident:{incident_id}",),
    )


async def test_an_unanswered_page_moves_on_to_the_supervisor_on_time(
    db: Database, pool: AsyncConnectionPool[Any], serve: Callable[[], Receiver]
) -> None:
    hook = serve()
    seed_site(db)
    nurse = staff_user(db, "nurse-a", "duty_staff", "s1")
    head = staff_user(db, "head-a", "supervisor", "s1")
    channel(db, nurse, "webhook")
    channel(db, head, "webhook")
    incident_id = raise_fall(db)
    notify = NotifySettings(
        poll_interval_s=0.05, webhooks={"webhook": WebhookEndpoint(url=SecretStr(hook.url()))}
    )
    await run_workers(
        pool,
        ladder(duty=1.0),
        notify,
        lambda: len(staff_attempts(db, incident_id)) >= 2,
        "the supervisor's page",
    )
    users = [r.json()["user_id"] for r in hook.received]
    assert users[:2] == [nurse, head]
    # Delivered to the nurse, nobody acknowledged: the supervisor tier came at its timeout.
    assert tier_audit(db, incident_id) == [("duty_staff", False), ("supervisor", False)]
    assert staff_attempts(db, incident_id)[:2] == [
        (nurse, "webhook", "delivered"),
        (head, "webhook", "delivered"),
    ]
    assert db.scalar("SELECT state FROM incidents WHERE id = %s", (incident_id,)) == "raised"


async def test_failing_channels_fall_back_to_a_voice_call_and_the_tier_advances_early(
    db: Database,
    pool: AsyncConnectionPool[Any],
    serve: Callable[[], Receiver],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sms, voice, bad_voice = serve(), serve(), serve()
    aliyun(sms, "SendSms", SMS_FIELDS, code="isv.MOBILE_NUMBER_ILLEGAL")  # permanent
    aliyun(voice, "SingleCallByTts", VOICE_FIELDS)
    seed_site(db)
    nurse = staff_user(db, "nurse-a", "duty_staff", "s1")
    head = staff_user(db, "head-a", "supervisor", "s1")
    channel(db, nurse, "sms", NURSE_PHONE)
    channel(db, nurse, "voice:bad", NURSE_PHONE)
    channel(db, head, "voice", HEAD_PHONE)
    incident_id = raise_fall(db)
    notify = NotifySettings(
        poll_interval_s=0.05, sms=sms_settings(sms), voice=voice_settings(voice)
    )
    notifiers = build_notifiers(notify)
    bad_voice.respond = lambda _r: (503, b"{}")
    broken = voice_settings(bad_voice)
    notifiers["voice:bad"] = AliyunVoiceNotifier(broken)
    worker = EscalationWorker(pool, ladder(duty=60.0), poll_interval_s=0.05, page_ttl_s=3600)
    fast = NotifySettings(
        poll_interval_s=0.05, max_attempts=2, backoff_base_s=0.05, backoff_max_s=0.1
    )
    outbox = OutboxWorker(pool, notifiers, fast, on_exhausted=worker.on_exhausted)
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(outbox.run())]
    try:
        await until(
            lambda: len(staff_attempts(db, incident_id)) >= 4, 20, "the supervisor's voice call"
        )
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # The nurse: SMS refused (permanent), then the voice call failed twice (503, transient).
    assert staff_attempts(db, incident_id) == [
        (nurse, "sms", "permanent"),
        (nurse, "voice:bad", "transient"),
        (nurse, "voice:bad", "transient"),
        (head, "voice", "delivered"),
    ]
    # Well before the duty tier's 60 s timeout: the supervisor tier came early.
    assert tier_audit(db, incident_id) == [("duty_staff", False), ("supervisor", True)]
    form = voice.received[0].form()
    assert form["CalledNumber"] == HEAD_PHONE and form["TtsCode"] == "TTS_PAGE"
    assert form["CalledShowNumber"] == "057100000000" and form["PlayTimes"] == "2"
    params = json.loads(form["TtsParam"])
    code = db.scalar("SELECT ack_code FROM staff_pages WHERE user_id = %s", (head,))
    assert params == {
        "place": "Room 301 / BED-0301",
        "time": params["time"],
        "type": "跌倒",
        "code": code,
    }
    assert (
        db.scalar(
            "SELECT count(*) FROM notification_outbox WHERE recipient_kind = 'staff'"
            " AND state = 'delivered' AND user_id = %s",
            (head,),
        )
        == 1
    )
    # No phone number in any log record (the Aliyun answer echoes it: only Code is kept).
    logged = " ".join(repr(r.__dict__) for r in caplog.records)
    assert NURSE_PHONE not in logged and HEAD_PHONE not in logged
    assert caplog.records  # the attempts were logged (ids and outcomes only)


async def test_a_page_is_not_sent_once_the_incident_is_acknowledged(
    db: Database, pool: AsyncConnectionPool[Any], serve: Callable[[], Receiver]
) -> None:
    hook = serve()
    seed_site(db)
    nurse = staff_user(db, "nurse-a", "duty_staff", "s1")
    channel(db, nurse, "webhook")
    incident_id = raise_fall(db)
    worker = EscalationWorker(pool, ladder(duty=60.0), poll_interval_s=0.05, page_ttl_s=3600)
    task = asyncio.create_task(worker.run())
    try:
        await until(
            lambda: db.scalar("SELECT count(*) FROM notification_outbox") == 1,
            10,
            "the page queued",
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    with db.connect() as conn:
        IncidentService(conn).acknowledge(incident_id, Actor(nurse, Role.DUTY_STAFF))
    notify = NotifySettings(
        poll_interval_s=0.05, webhooks={"webhook": WebhookEndpoint(url=SecretStr(hook.url()))}
    )
    outbox = OutboxWorker(pool, build_notifiers(notify), notify)
    await outbox.run_once()
    assert hook.received == []
    assert db.rows("SELECT channel, result, detail FROM notification_attempts") == [
        ("webhook", "permanent", "not sent: incident no longer raised")
    ]


# --------------------------------------------------------------------------- WeChat


async def test_wechat_template_message_refreshes_an_expired_token_once(
    db: Database, pool: AsyncConnectionPool[Any], serve: Callable[[], Receiver]
) -> None:
    wx = serve()
    tokens = iter(["TOKEN-1", "TOKEN-2", "TOKEN-3"])
    valid: set[str] = set()
    sends: list[dict[str, Any]] = []

    def respond(req: Req) -> tuple[int, bytes]:
        url = urllib.parse.urlsplit(req.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if req.method == "GET" and url.path == "/cgi-bin/token":
            if query != {
                "grant_type": "client_credential",
                "appid": "wx-app",
                "secret": "wx-secret",
            }:
                return 200, b'{"errcode":40013,"errmsg":"invalid appid"}'
            token = next(tokens)
            valid.clear()
            valid.add(token)
            return 200, json.dumps({"access_token": token, "expires_in": 7200}).encode()
        if req.method == "POST" and url.path == "/cgi-bin/message/template/send":
            if query.get("access_token") not in valid:
                return 200, b'{"errcode":42001,"errmsg":"access_token expired"}'
            doc = json.loads(req.body)
            sends.append(doc)
            if doc["touser"] == "o-unfollowed-1":
                return 200, b'{"errcode":43004,"errmsg":"require subscribe"}'
            return 200, b'{"errcode":0,"errmsg":"ok","msgid":200228332}'
        return 404, b"{}"

    wx.respond = respond
    seed_site(db)
    # Contacts come from the site definition (safehome site apply), openid included.
    definition = {
        "site": {"id": "s1", "name": "Site", "kind": "nursing_home"},
        "contacts": [
            {"id": cid, "resident": "r1", "name": "F", "channels": ["wechat"],
             "wechat_openid": openid}
            for cid, openid in (("fam1", "o-family-0001"), ("fam2", "o-unfollowed-1"))
        ],
    }  # fmt: skip
    with db.connect() as conn:
        apply_site_definition(conn, definition)
    settings = NotifySettings(
        poll_interval_s=0.05,
        wechat=WechatTemplateSettings(
            api_base=wx.url("").rstrip("/"),
            app_id="wx-app",
            app_secret=SecretStr("wx-secret"),
            template_id="TPL-1",
            detail_url="https://family.example/family",
        ),
    )
    notifiers = build_notifiers(settings)
    outbox = OutboxWorker(pool, notifiers, settings)
    when = datetime(2026, 11, 23, 1, 5, tzinfo=UTC)
    async with await psycopg.AsyncConnection.connect(db.conninfo(), autocommit=True) as aconn:
        await enqueue_incident(aconn, IncidentNotice(9001, "r1", "fall", when))
    await outbox.run_once()
    results = db.rows(
        "SELECT contact_id, result, detail FROM notification_attempts ORDER BY contact_id"
    )
    assert results == [
        ("fam1", "delivered", "wechat ok"),
        ("fam2", "permanent", "wechat errcode 43004"),
    ]
    token_gets = [r for r in wx.received if r.method == "GET"]
    assert len(token_gets) == 1  # fetched once, cached for both sends
    doc = next(d for d in sends if d["touser"] == "o-family-0001")
    assert doc["template_id"] == "TPL-1" and doc["url"] == "https://family.example/family"
    assert doc["data"] == {
        "thing1": {"value": "Room 301 / BED-0301"},
        "thing2": {"value": "跌倒"},
        "time3": {"value": "2026-11-23 09:05"},
    }
    assert "R" not in json.dumps(doc["data"]).replace("Room", "")  # no resident name
    # The token expires on WeChat's side: errcode 42001 → one refresh, then delivered.
    valid.clear()
    async with await psycopg.AsyncConnection.connect(db.conninfo(), autocommit=True) as aconn:
        await enqueue_incident(aconn, IncidentNotice(9002, "r1", "fall", when))
    await outbox.run_once()
    assert db.rows(
        "SELECT result FROM notification_attempts WHERE incident_id = 9002 AND contact_id = 'fam1'"
    ) == [("delivered",)]
    assert len([r for r in wx.received if r.method == "GET"]) == 2


# --------------------------------------------------------------------------- CLI


def _cli(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOME_")}
    env.update(
        {
            "SAFEHOME_DATABASE__HOST": "127.0.0.1",
            "SAFEHOME_DATABASE__PORT": str(db.port),
            "SAFEHOME_DATABASE__NAME": db.name,
            "SAFEHOME_DATABASE__USER": db.user,
            "SAFEHOME_DATABASE__PASSWORD": db.password,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "user", "channel", *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_user_channel_cli_adds_lists_and_removes_with_audit(db: Database) -> None:
    seed_site(db)
    nurse = staff_user(db, "nurse-a", "duty_staff", "s1")
    done = _cli(db, "add", "--user", "nurse-a", "--channel", "sms", "--address", "13800138000")
    assert done.returncode == 0, done.stderr
    assert "+86138****8000" in done.stdout and NURSE_PHONE not in done.stdout
    done = _cli(db, "add", "--user", nurse, "--channel", "webhook", "--position", "1")
    assert done.returncode == 0, done.stderr
    done = _cli(db, "list", "--user", "nurse-a", "--json")
    listed = json.loads(done.stdout)
    assert [(c["position"], c["channel"], c["address"]) for c in listed] == [
        (0, "webhook", None),
        (1, "sms", "+86138****8000"),
    ]
    done = _cli(db, "list", "--user", "nurse-a", "--reveal")
    assert "+8613800138000" in done.stdout
    for bad in (
        ["--channel", "sms", "--address", "12"],
        ["--channel", "fax"],
        ["--channel", "webhook", "--address", "x@y.z"],
    ):
        done = _cli(db, "add", "--user", "nurse-a", *bad)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    done = _cli(db, "remove", "--user", "nurse-a", "--id", str(listed[0]["id"]))
    assert done.returncode == 0, done.stderr
    done = _cli(db, "list", "--user", "nurse-a", "--json")
    assert [(c["position"], c["channel"]) for c in json.loads(done.stdout)] == [(0, "sms")]
    actions = db.rows(
        "SELECT actor, action, target FROM audit_log WHERE action LIKE 'user.channel%%'"
        " ORDER BY seq"
    )
    assert actions == [
        ("cli", "user.channel_added", f"user:{nurse}"),
        ("cli", "user.channel_added", f"user:{nurse}"),
        ("cli", "user.channels_revealed", f"user:{nurse}"),  # --reveal: a read of PII
        ("cli", "user.channel_removed", f"user:{nurse}"),
    ]
    assert (
        db.scalar("SELECT count(*) FROM audit_log WHERE data::text LIKE %s", ("%13800138000%",))
        == 0
    )
    done = _cli(db, "list", "--user", "nobody")
    assert done.returncode == 2 and "no user" in done.stderr


async def test_the_emergency_instruction_reaches_everyone_on_shift_and_either_may_ack(
    db: Database, pool: AsyncConnectionPool[Any], serve: Callable[[], Receiver]
) -> None:
    hook = serve()
    seed_site(db)
    nurse = staff_user(db, "nurse-a", "duty_staff", "s1")
    head = staff_user(db, "head-a", "supervisor", "s1")
    channel(db, nurse, "webhook")
    channel(db, head, "webhook")
    incident_id = raise_fall(db)
    config = parse_ladders({"ladder": {"tiers": [
        {"name": "duty_staff", "audience": "duty_staff", "timeout_s": 0.5},
        {"name": "call_120", "audience": "emergency", "timeout_s": 60,
         "instruction": "请立即拨打 120 / call 120 now"},
    ]}})  # fmt: skip
    notify = NotifySettings(
        poll_interval_s=0.05, webhooks={"webhook": WebhookEndpoint(url=SecretStr(hook.url()))}
    )

    def instructions() -> list[dict[str, Any]]:
        docs = [r.json() for r in list(hook.received)]
        return [d for d in docs if d["fields"]["kind"] == "instruction"]

    await run_workers(pool, config, notify, lambda: len(instructions()) == 2, "two instructions")
    docs = instructions()
    assert sorted(d["user_id"] for d in docs) == sorted([nurse, head])
    assert all(d["fields"]["instruction"] == "请立即拨打 120 / call 120 now" for d in docs)
    assert all("120" in d["body"] for d in docs)
    (page_id,) = {d["page_id"] for d in docs}  # the one instruction row, paged to each
    assert db.scalar("SELECT user_id FROM staff_pages WHERE id = %s", (page_id,)) == ""
    # Either may acknowledge from the message; the other is told it is taken.
    links = {d["user_id"]: d["fields"]["ack_url"].rsplit("/", 1)[1] for d in docs}
    with db.connect() as conn:
        first = acks.acknowledge_link(conn, verify_link(ACK_SECRET, links[head], time.time()))
        second = acks.acknowledge_link(conn, verify_link(ACK_SECRET, links[nurse], time.time()))
        again = acks.acknowledge_link(conn, verify_link(ACK_SECRET, links[head], time.time()))
    assert (first.result, second.result, again.result) == (
        AckResult.ACKNOWLEDGED, AckResult.ALREADY, AckResult.USED
    )  # fmt: skip
    state = db.rows("SELECT state, acknowledged_by FROM incidents WHERE id = %s", (incident_id,))
    assert state == [("acknowledged", head)]
    # Someone of another site cannot use it.
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO sites (site_id, name, kind) VALUES ('s2', 'Other', 'home_care_centre')"
        )
    other = staff_user(db, "nurse-z", "duty_staff", "s2")
    forged = sign_link(ACK_SECRET, page_id, other, int(time.time()) + 60)
    with db.connect() as conn:
        outcome = acks.acknowledge_link(conn, verify_link(ACK_SECRET, forged, time.time()))
    assert outcome.result is AckResult.UNKNOWN


async def test_a_new_incident_wakes_the_escalation_worker_without_waiting_for_its_poll(
    db: Database, pool: AsyncConnectionPool[Any]
) -> None:
    seed_site(db)
    nurse = staff_user(db, "nurse-a", "duty_staff", "s1")
    worker = EscalationWorker(pool, ladder(duty=60.0), poll_interval_s=120.0, page_ttl_s=3600)
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(worker.listen(db.conninfo()))]
    try:
        await asyncio.sleep(0.5)  # both idle: the worker now sleeps for its 120 s poll
        incident_id = raise_fall(db)
        await until(
            lambda: db.scalar("SELECT user_id FROM staff_pages WHERE incident_id = %s",
                              (incident_id,)) == nurse,
            20, "the page, woken by NOTIFY (the poll is 120 s away)",
        )  # fmt: skip
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
