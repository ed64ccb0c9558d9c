"""Call-centre tools (issue 11 §5) through the HTTP API of a real gateway (real PostgreSQL and
Mosquitto) with a real local HTTP server standing in for Aliyun's voice endpoint:
click-to-call signed like Aliyun's RPC API, an outage recorded as a failed attempt (not a
crash), call outcomes and notes on the audited timeline, masked numbers, roles and scope,
the desk-phone (tel:/sip:) adapter, and no phone number in the timeline, audit or logs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from gateway.api.auth import create_user
from gateway.storage import people
from gateway.storage import visits as visits_store
from gateway.workflow.service import IncidentService, Trigger
from gateway.workflow.transitions import IncidentType
from tests.support import (
    Broker,
    Database,
    InProcessGateway,
    gateway_settings,
    make_site,
    signed_in_client,
)

pytestmark = pytest.mark.integration

PASSWORD = "pw-" + uuid.uuid4().hex[:12]
SECRET = "aliyun-secret-" + uuid.uuid4().hex
FAMILY_PHONE = "13812341234"
WORKER_PHONE = "13955556666"
DUTY_PHONE = "+8613700001111"
RESIDENT_PHONE = "021-5555-0199"
PHONES = (FAMILY_PHONE, WORKER_PHONE, "13700001111", "55550199")
USERS = {
    "duty-a": ("duty_staff", "site-a", "张丽"),
    "sup-a": ("supervisor", "site-a", "王芳"),
    "duty-b": ("duty_staff", "site-b", None),
    "root": ("admin", None, None),
    "worker-a": ("community_worker", None, "赵强"),
    "inst-a": ("installer", "site-a", None),
}


@dataclass
class FakeAliyun:
    """A local HTTP server answering like Dyvmsapi; ``answers`` are (status, body) in turn."""

    port: int = 0
    forms: list[dict[str, str]] = field(default_factory=list)
    answers: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def _ok(call_id: str) -> tuple[int, bytes]:
    return 200, json.dumps({"Code": "OK", "Message": "OK", "CallId": call_id,
                            "RequestId": "r1"}).encode()  # fmt: skip


@pytest.fixture
def aliyun() -> Iterator[FakeAliyun]:
    fake = FakeAliyun()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
            with lock:
                fake.forms.append(form)
                status, answer = fake.answers.pop(0) if fake.answers else _ok("call-x")
            if status == 0:  # hang up without an answer
                self.close_connection = True
                return
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(5)


def _reference_signature(form: dict[str, str], secret: str) -> str:
    """Aliyun's RPC signature v1, written independently of gateway.notify.aliyun."""

    def enc(s: str) -> str:
        return (
            urllib.parse.quote_plus(s, safe="")
            .replace("+", "%20")
            .replace("*", "%2A")
            .replace("%7E", "~")
        )

    canon = "&".join(f"{enc(k)}={enc(form[k])}" for k in sorted(form) if k != "Signature")
    to_sign = "POST&%2F&" + enc(canon)
    digest = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass
class Env:
    db: Database
    broker: Broker
    ids: dict[str, str]


@pytest.fixture
def env(db: Database, broker: Broker) -> Env:
    make_site(db, broker, site_id="site-a", beds=2)
    make_site(db, broker, site_id="site-b", beds=1)
    ids: dict[str, str] = {}
    with db.connect() as conn:
        for name, (role, site, display) in USERS.items():
            ids[name] = create_user(conn, name, role, PASSWORD, site_id=site)
            if display:
                people.set_display_name(conn, ids[name], display, actor="test")
        create_user(conn, "fam-a", "family", PASSWORD, residents=["site-a-r0"])
        conn.execute(
            "INSERT INTO contacts (contact_id, resident_id, kind, display_name, relation, phone)"
            " VALUES ('c1', 'site-a-r0', 'family', '李明', '儿子', %s)",
            (FAMILY_PHONE,),
        )
        conn.execute(
            "INSERT INTO contacts (contact_id, resident_id, kind, display_name, relation)"
            " VALUES ('c2', 'site-a-r0', 'family', '李红', '女儿')"
        )
        conn.execute("UPDATE residents SET phone = %s WHERE resident_id = 'site-a-r0'",
                     (RESIDENT_PHONE,))  # fmt: skip
        for user, phone in ((ids["duty-a"], DUTY_PHONE), (ids["worker-a"], WORKER_PHONE)):
            conn.execute(
                "INSERT INTO staff_channels (user_id, position, channel, address)"
                " VALUES (%s, 0, 'voice', %s)",
                (user, phone),
            )
        visits_store.assign_worker(conn, "site-a-r0", ids["worker-a"])
    return Env(db, broker, ids)


def _raise(db: Database, site: str, resident: str) -> int:
    with db.connect() as conn:
        incident, _ = IncidentService(conn).raise_or_join(
            Trigger(IncidentType.EMERGENCY_CALL, site, datetime.now(UTC), "button",
                    resident_id=resident)
        )  # fmt: skip
    return incident.id


def _aliyun_env(fake: FakeAliyun) -> dict[str, str]:
    return {
        "SAFEHOME_TELEPHONY__ADAPTER": "aliyun",
        "SAFEHOME_TELEPHONY__ALIYUN__ENDPOINT": fake.url,
        "SAFEHOME_TELEPHONY__ALIYUN__ACCESS_KEY_ID": "LTAI-test",
        "SAFEHOME_TELEPHONY__ALIYUN__ACCESS_KEY_SECRET": SECRET,
        "SAFEHOME_TELEPHONY__ALIYUN__CALLER_SHOW_NUMBER": "057188880000",
        "SAFEHOME_TELEPHONY__ALIYUN__CALLED_SHOW_NUMBER": "057188880001",
        "SAFEHOME_TELEPHONY__ALIYUN__TIMEOUT_S": "3",
    }


def _clients(gw: InProcessGateway, *names: str) -> dict[str, httpx.Client]:
    return {name: signed_in_client(gw.api_url, name, PASSWORD) for name in names}


def _no_phone_in(text: str) -> None:
    for phone in PHONES:
        assert phone not in text, f"a phone number leaked: …{phone[-4:]}"


def test_aliyun_click_to_call_outcome_and_note_on_the_audited_timeline(
    env: Env, aliyun: FakeAliyun, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    incident_id = _raise(env.db, "site-a", "site-a-r0")
    aliyun.answers.append(_ok("116012354148^10281378"))
    settings = gateway_settings(env.db, env.broker, **_aliyun_env(aliyun))
    with InProcessGateway(settings) as gw:
        c = _clients(gw, "duty-a", "sup-a")
        # Duty staff see masked numbers with names; the supervisor (reveal_roles) sees them.
        listed = c["duty-a"].get(f"/incidents/{incident_id}/callees").json()
        by_kind = {(e["kind"], e["ref"]): e for e in listed}
        assert set(by_kind) == {("resident", "site-a-r0"), ("family", "c1"), ("family", "c2"),
                                ("community_worker", env.ids["worker-a"])}  # fmt: skip
        no_phone = by_kind[("family", "c2")]
        assert (no_phone["callable"], no_phone["masked_phone"], no_phone["phone"]) == (
            False, None, None)  # fmt: skip
        fam = by_kind[("family", "c1")]
        assert (fam["display_name"], fam["relation"], fam["masked_phone"], fam["phone"]) == (
            "李明", "儿子", "138****1234", None)  # fmt: skip
        assert by_kind[("community_worker", env.ids["worker-a"])]["masked_phone"] == "139****6666"
        assert by_kind[("resident", "site-a-r0")]["masked_phone"] == "021****0199"
        _no_phone_in(json.dumps(listed))
        revealed = c["sup-a"].get(f"/incidents/{incident_id}/callees").json()
        assert {e["ref"]: e["phone"] for e in revealed}["c1"] == FAMILY_PHONE
        # The resident card follows the same rule.
        card = c["duty-a"].get("/residents/site-a-r0").json()
        son = next(x for x in card["contacts"] if x["contact_id"] == "c1")
        assert (son["phone"], son["masked_phone"]) == (None, "138****1234")
        _no_phone_in(json.dumps(card))
        card = c["sup-a"].get("/residents/site-a-r0").json()
        son = next(x for x in card["contacts"] if x["contact_id"] == "c1")
        assert (son["phone"], son["masked_phone"]) == (FAMILY_PHONE, "138****1234")

        # 呼叫家属: Aliyun ClickToDial rings the staff member's phone, then the son.
        resp = c["duty-a"].post(f"/incidents/{incident_id}/calls",
                                json={"callee_kind": "family", "callee_ref": "c1"})  # fmt: skip
        assert resp.status_code == 201, resp.text
        placed = resp.json()
        assert placed["dial_uri"] is None
        call = placed["call"]
        assert (call["status"], call["channel"], call["provider_call_id"]) == (
            "placed", "aliyun", "116012354148^10281378")  # fmt: skip
        [form] = aliyun.forms
        assert form["Signature"] == _reference_signature(form, SECRET)
        assert form["Action"] == "ClickToDial"
        assert (form["CalledNumber"], form["CallerNumber"]) == (FAMILY_PHONE, "13700001111")
        assert (form["CallerShowNumber"], form["CalledShowNumber"]) == ("057188880000",
                                                                       "057188880001")  # fmt: skip
        assert form["AccessKeyId"] == "LTAI-test" and form["SignatureMethod"] == "HMAC-SHA1"
        assert form["Version"] == "2017-05-25" and form["OutId"].startswith(f"inc{incident_id}-")
        assert SECRET not in json.dumps(form)

        # The outcome with a note, once; a note of its own.
        url = f"/incidents/{incident_id}/calls/{call['id']}/outcome"
        resp = c["duty-a"].post(url, json={"outcome": "no_answer", "note": "无人接听，稍后再拨"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["outcome"] == "no_answer"
        assert c["sup-a"].post(url, json={"outcome": "connected"}).status_code == 409
        assert c["duty-a"].post(url, json={"outcome": "maybe"}).status_code == 422
        resp = c["sup-a"].post(f"/incidents/{incident_id}/notes", json={"text": "已通知社区"})
        assert resp.status_code == 201, resp.text
        assert c["sup-a"].post(f"/incidents/{incident_id}/notes",
                               json={"text": ""}).status_code == 422  # fmt: skip

        detail = c["duty-a"].get(f"/incidents/{incident_id}").json()
        events = {e["kind"]: e for e in detail["timeline"]}
        placed_ev = events["call_placed"]
        assert placed_ev["actor"] == env.ids["duty-a"]
        assert {k: placed_ev["data"][k] for k in ("caller_role", "caller_name", "callee_kind",
                                                  "callee_name", "relation", "channel",
                                                  "status")} == {
            "caller_role": "duty_staff", "caller_name": "张丽", "callee_kind": "family",
            "callee_name": "李明", "relation": "儿子", "channel": "aliyun", "status": "placed",
        }  # fmt: skip
        assert events["call_outcome"]["data"]["outcome"] == "no_answer"
        assert events["call_outcome"]["data"]["note"] == "无人接听，稍后再拨"
        assert events["incident_note"]["data"]["text"] == "已通知社区"
        assert events["incident_note"]["data"]["caller_name"] == "王芳"
        _no_phone_in(json.dumps(detail, ensure_ascii=False))
        calls = c["duty-a"].get(f"/incidents/{incident_id}/calls").json()
        assert [(x["callee_kind"], x["outcome"], x["outcome_note"]) for x in calls] == [
            ("family", "no_answer", "无人接听，稍后再拨")]  # fmt: skip
        for client in c.values():
            client.close()

    # Audited with ids only: no names, notes or numbers in the audit log.
    rows = env.db.rows(
        "SELECT action, actor, data::text FROM audit_log WHERE target = %s "
        "AND action LIKE 'incident.%%' ORDER BY seq",
        (f"incident:{incident_id}",),
    )
    actions = [(a, who) for a, who, _ in rows]
    assert ("incident.call_placed", env.ids["duty-a"]) in actions
    assert ("incident.call_outcome", env.ids["duty-a"]) in actions
    assert ("incident.note", env.ids["sup-a"]) in actions
    audit_text = " ".join(d for _, _, d in rows)
    _no_phone_in(audit_text)
    assert "李明" not in audit_text and "稍后再拨" not in audit_text
    # Logs: ids and states only.
    logged = [r for r in caplog.records if r.name.startswith("gateway.telephony")]
    assert {r.getMessage() for r in logged} >= {"call placed", "call outcome recorded"}
    for record in caplog.records:
        _no_phone_in(record.getMessage() + repr(record.__dict__))


def test_provider_outage_and_refusals_are_recorded_as_failed_attempts(
    env: Env, aliyun: FakeAliyun
) -> None:
    incident_id = _raise(env.db, "site-a", "site-a-r0")
    aliyun.answers += [
        (500, b"<html>internal error</html>"),
        (
            200,
            json.dumps(
                {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": f"bad number {FAMILY_PHONE}"}
            ).encode(),
        ),
        (400, json.dumps({"Code": "isv.OUT_OF_SERVICE", "Message": "x"}).encode()),
        (0, b""),  # the connection dropped without an answer
    ]
    settings = gateway_settings(env.db, env.broker, **_aliyun_env(aliyun))
    with InProcessGateway(settings) as gw:
        c = _clients(gw, "duty-a")["duty-a"]
        body = {"callee_kind": "family", "callee_ref": "c1"}
        results = []
        for _ in range(4):
            resp = c.post(f"/incidents/{incident_id}/calls", json=body)
            assert resp.status_code == 201, resp.text
            call = resp.json()["call"]
            results.append((call["status"], call["detail"], call["outcome"]))
        assert results == [
            ("failed", "http_500", None),
            ("failed", "aliyun isv.MOBILE_NUMBER_ILLEGAL", "invalid_number"),
            ("failed", "aliyun isv.OUT_OF_SERVICE", None),
            ("failed", "network", None),
        ]
        # An adapter's invalid_number may be corrected once by staff.
        invalid = c.get(f"/incidents/{incident_id}/calls").json()[1]
        url = f"/incidents/{incident_id}/calls/{invalid['id']}/outcome"
        assert c.post(url, json={"outcome": "wrong"}).status_code == 422
        assert c.post(url, json={"outcome": "busy", "note": "重拨忙线"}).status_code == 200
        assert c.post(url, json={"outcome": "connected"}).status_code == 409
        timeline = c.get(f"/incidents/{incident_id}").json()["timeline"]
        statuses = [e["data"]["status"] for e in timeline if e["kind"] == "call_placed"]
        assert statuses == ["failed"] * 4
        _no_phone_in(json.dumps(timeline, ensure_ascii=False))
        # A callee without a number, an unknown callee: refused before anything is placed.
        assert (
            c.post(
                f"/incidents/{incident_id}/calls",
                json={"callee_kind": "family", "callee_ref": "nobody"},
            ).status_code
            == 404
        )
        assert (
            c.post(
                f"/incidents/{incident_id}/calls",
                json={"callee_kind": "family", "callee_ref": "c2"},
            ).status_code
            == 422
        )
        c.close()
    assert len(aliyun.forms) == 4


def test_roles_and_site_scope(env: Env) -> None:
    incident_id = _raise(env.db, "site-a", "site-a-r0")
    with InProcessGateway(gateway_settings(env.db, env.broker)) as gw:
        c = _clients(gw, "duty-a", "duty-b", "root", "worker-a", "inst-a", "fam-a")
        base = f"/incidents/{incident_id}"
        call = {"callee_kind": "family", "callee_ref": "c1"}
        # Family members, community workers and installers: no staff call endpoints.
        for who in ("fam-a", "worker-a", "inst-a"):
            assert c[who].get(f"{base}/callees").status_code == 403
            assert c[who].get(f"{base}/calls").status_code == 403
            assert c[who].post(f"{base}/calls", json=call).status_code == 403
            assert c[who].post(f"{base}/notes", json={"text": "x"}).status_code == 403
            assert c[who].post(f"{base}/calls/1/outcome",
                               json={"outcome": "busy"}).status_code == 403  # fmt: skip
        # Staff of another site: the incident does not exist for them.
        assert c["duty-b"].get(f"{base}/callees").status_code == 404
        assert c["duty-b"].get(f"{base}/calls").status_code == 404
        assert c["duty-b"].post(f"{base}/calls", json=call).status_code == 404
        assert c["duty-b"].post(f"{base}/notes", json={"text": "x"}).status_code == 404
        # Default adapter: the desk phone's tel: URI, returned to the caller who dials it.
        resp = c["duty-a"].post(f"{base}/calls", json=call)
        assert resp.status_code == 201, resp.text
        placed = resp.json()
        assert placed["dial_uri"] == f"tel:{FAMILY_PHONE}"
        assert (placed["call"]["channel"], placed["call"]["status"]) == ("sip", "placed")
        assert c["duty-b"].post(f"{base}/calls/{placed['call']['id']}/outcome",
                                json={"outcome": "busy"}).status_code == 404  # fmt: skip
        # An admin (any site) sees full numbers.
        listed = c["root"].get(f"{base}/callees").json()
        assert {e["ref"]: e["phone"] for e in listed}["c1"] == FAMILY_PHONE
        assert c["root"].get("/incidents/999999/callees").status_code == 404
        for client in c.values():
            client.close()


def test_sip_adapter_and_adapter_off(env: Env) -> None:
    incident_id = _raise(env.db, "site-a", "site-a-r0")
    sip = {"SAFEHOME_TELEPHONY__SIP__SCHEME": "sip", "SAFEHOME_TELEPHONY__SIP__DOMAIN":
           "pbx.example.test", "SAFEHOME_TELEPHONY__SIP__DIAL_PREFIX": "9"}  # fmt: skip
    with InProcessGateway(gateway_settings(env.db, env.broker, **sip)) as gw:
        c = _clients(gw, "duty-a")["duty-a"]
        resp = c.post(f"/incidents/{incident_id}/calls",
                      json={"callee_kind": "resident", "callee_ref": "site-a-r0"})  # fmt: skip
        assert resp.status_code == 201, resp.text
        assert resp.json()["dial_uri"] == "sip:902155550199@pbx.example.test"
        resp = c.post(f"/incidents/{incident_id}/calls",
                      json={"callee_kind": "community_worker",
                            "callee_ref": env.ids["worker-a"]})  # fmt: skip
        assert resp.json()["dial_uri"] == f"sip:9{WORKER_PHONE}@pbx.example.test"
        c.close()
    off = {"SAFEHOME_TELEPHONY__ADAPTER": "none"}
    with InProcessGateway(gateway_settings(env.db, env.broker, **off)) as gw:
        c = _clients(gw, "duty-a")["duty-a"]
        resp = c.post(f"/incidents/{incident_id}/calls",
                      json={"callee_kind": "family", "callee_ref": "c1"})  # fmt: skip
        assert resp.status_code == 409
        # Outcomes of earlier calls and notes still work with click-to-call off.
        assert (
            c.post(f"/incidents/{incident_id}/notes", json={"text": "电话回访"}).status_code == 201
        )
        c.close()
