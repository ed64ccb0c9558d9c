"""Calls from the community worker's page (/worker) through the HTTP API of a real gateway
(real PostgreSQL and Mosquitto), with the local HTTP server standing in for Aliyun's voice
endpoint from the call-centre tests: the worker's own phone rings first, the call is audited
against the elder (and on the incident's timeline when made from a door-knock task raised
from an incident), the outcome is recorded once, a worker calls only their own elders
(403 for anyone else's, across districts too), and the calls are counted on /metrics."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from gateway.api.auth import create_user
from gateway.storage import visits as visits_store
from gateway.workflow.service import IncidentService, Trigger
from gateway.workflow.transitions import IncidentType
from tests.integration.test_calls_api import (  # noqa: F401 - the fixtures
    FAMILY_PHONE,
    PASSWORD,
    SECRET,
    WORKER_PHONE,
    Env,
    FakeAliyun,
    _aliyun_env,
    _clients,
    _no_phone_in,
    _ok,
    _reference_signature,
    aliyun,
    env,
)
from tests.support import Database, InProcessGateway, gateway_settings

pytestmark = pytest.mark.integration

OTHER_WORKER_PHONE = "13766667777"


@dataclass
class Districts:
    """The call-centre ``env`` plus districts: site-a and worker-a in d-east, site-b and
    worker-b (assigned site-b-r0) in d-west, worker-c in d-east with no elder."""

    env: Env
    worker_b: str
    worker_c: str


@pytest.fixture
def districts(env: Env) -> Districts:  # noqa: F811 - the imported fixture
    with env.db.connect() as conn:
        worker_b = create_user(conn, "worker-b", "community_worker", PASSWORD)
        worker_c = create_user(conn, "worker-c", "community_worker", PASSWORD)
        conn.execute(
            "INSERT INTO staff_channels (user_id, position, channel, address)"
            " VALUES (%s, 0, 'voice', %s)",
            (worker_b, OTHER_WORKER_PHONE),
        )
        visits_store.set_site_district(conn, "site-a", "d-east")
        visits_store.set_site_district(conn, "site-b", "d-west")
        visits_store.set_user_district(conn, env.ids["worker-a"], "d-east")
        visits_store.set_user_district(conn, worker_b, "d-west")
        visits_store.set_user_district(conn, worker_c, "d-east")
        visits_store.assign_worker(conn, "site-b-r0", worker_b)
    return Districts(env, worker_b, worker_c)


def _incident(db: Database, resident: str) -> int:
    with db.connect() as conn:
        incident, _ = IncidentService(conn).raise_or_join(
            Trigger(
                IncidentType.NO_ACTIVITY,
                resident.rsplit("-", 1)[0],
                datetime.now(UTC),
                "no activity",
                resident_id=resident,
            )
        )
    return incident.id


def _metric(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text ``text`` (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)\{([^}]*)\} (\S+)$", line)
        if m and m[1] == name and ",".join(sorted(m[2].split(","))) == want:
            return float(m[3])
    return 0.0


def test_worker_calls_family_through_aliyun_outcome_and_phone_visit(
    districts: Districts,
    aliyun: FakeAliyun,  # noqa: F811 - the imported fixture
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    site = districts.env
    aliyun.answers.append(_ok("116012354148^20000001"))
    settings = gateway_settings(site.db, site.broker, **_aliyun_env(aliyun))
    with InProcessGateway(settings) as gw:
        w = _clients(gw, "worker-a")["worker-a"]
        # The elder (own phone) and the family contacts, masked; no colleague to call.
        listed = w.get("/visits/residents/site-a-r0/callees")
        assert listed.status_code == 200, listed.text
        by_key = {(e["kind"], e["ref"]): e for e in listed.json()}
        assert set(by_key) == {("resident", "site-a-r0"), ("family", "c1"), ("family", "c2")}
        assert by_key[("family", "c1")]["masked_phone"] == "138****1234"
        assert by_key[("family", "c1")]["phone"] is None  # not in telephony.reveal_roles
        assert by_key[("resident", "site-a-r0")]["masked_phone"] == "021****0199"
        assert by_key[("family", "c2")]["callable"] is False
        _no_phone_in(listed.text)

        # 呼叫家属: Aliyun rings the worker's own phone first (their user record), then the son.
        resp = w.post(
            "/visits/residents/site-a-r0/calls", json={"callee_kind": "family", "callee_ref": "c1"}
        )
        assert resp.status_code == 201, resp.text
        placed = resp.json()
        call = placed["call"]
        assert placed["dial_uri"] is None
        assert (
            call["status"],
            call["channel"],
            call["resident_id"],
            call["task_id"],
            call["incident_id"],
        ) == ("placed", "aliyun", "site-a-r0", None, None)
        [form] = aliyun.forms
        assert form["Signature"] == _reference_signature(form, SECRET)
        assert (form["Action"], form["CalledNumber"], form["CallerNumber"]) == (
            "ClickToDial",
            FAMILY_PHONE,
            WORKER_PHONE,
        )
        assert form["OutId"].startswith("wke-")

        # The outcome (接通) with a note, once.
        url = f"/visits/calls/{call['id']}/outcome"
        resp = w.post(url, json={"outcome": "connected", "note": "老人一切安好"})
        assert resp.status_code == 200, resp.text
        assert (resp.json()["outcome"], resp.json()["outcome_note"]) == (
            "connected",
            "老人一切安好",
        )
        assert w.post(url, json={"outcome": "busy"}).status_code == 409
        assert w.post(url, json={"outcome": "maybe"}).status_code == 422
        calls = w.get("/visits/residents/site-a-r0/calls").json()
        assert [(c["id"], c["outcome"]) for c in calls] == [(call["id"], "connected")]

        # A connected call counts as a phone visit (the visits model's kind "phone").
        resp = w.post(
            "/visits/residents/site-a-r0/visits",
            json={"kind": "phone", "outcome": "well", "notes": "老人一切安好"},
        )
        assert resp.status_code == 201, resp.text
        w.close()

    rows = site.db.rows(
        "SELECT action, actor, data::text FROM audit_log WHERE target = 'resident:site-a-r0' "
        "AND action LIKE 'visits.call%%' ORDER BY seq"
    )
    assert [(a, who) for a, who, _ in rows] == [
        ("visits.call_placed", site.ids["worker-a"]),
        ("visits.call_outcome", site.ids["worker-a"]),
    ]
    audit_text = " ".join(d for _, _, d in rows)
    _no_phone_in(audit_text)
    assert "李明" not in audit_text and "安好" not in audit_text
    stored = site.db.rows("SELECT row_to_json(c)::text FROM incident_calls c")
    _no_phone_in(json.dumps(stored))
    logged = {r.getMessage() for r in caplog.records if r.name.startswith("gateway.telephony")}
    assert logged >= {"worker call placed", "worker call outcome recorded"}
    for record in caplog.records:
        _no_phone_in(record.getMessage() + repr(record.__dict__))


def test_a_door_knock_call_goes_to_the_incident_timeline(districts: Districts) -> None:
    site = districts.env
    incident_id = _incident(site.db, "site-a-r0")
    with InProcessGateway(gateway_settings(site.db, site.broker)) as gw:
        c = _clients(gw, "duty-a", "worker-a", "worker-b")
        sent = c["duty-a"].post(
            "/visits/door-knock",
            json={"resident_id": "site-a-r0", "reason": "no_activity", "incident_id": incident_id},
        )
        assert sent.status_code == 201, sent.text
        task_id = sent.json()["task_id"]
        # The desk-phone adapter (default): the worker's phone opens the tel: link.
        body = {"callee_kind": "resident", "callee_ref": "site-a-r0", "task_id": task_id}
        resp = c["worker-a"].post("/visits/residents/site-a-r0/calls", json=body)
        assert resp.status_code == 201, resp.text
        placed = resp.json()
        assert placed["dial_uri"] == "tel:02155550199"
        call = placed["call"]
        assert (call["task_id"], call["incident_id"], call["channel"]) == (
            task_id,
            incident_id,
            "sip",
        )
        # Another worker may not use the task, even for their own elder.
        other = dict(body, task_id=task_id)
        assert (
            c["worker-b"].post("/visits/residents/site-a-r0/calls", json=other).status_code == 403
        )
        assert (
            c["worker-b"]
            .post("/visits/residents/site-b-r0/calls", json=dict(other, callee_ref="site-b-r0"))
            .status_code
            == 403
        )
        resp = c["worker-a"].post(
            f"/visits/calls/{call['id']}/outcome",
            json={"outcome": "no_answer", "note": "无人接听，准备上门"},
        )
        assert resp.status_code == 200, resp.text

        # On the incident's timeline, with who called whom; the console lists the call.
        detail = c["duty-a"].get(f"/incidents/{incident_id}").json()
        events = {e["kind"]: e for e in detail["timeline"]}
        placed_ev = events["call_placed"]["data"]
        assert {
            k: placed_ev[k]
            for k in ("caller_role", "caller_name", "callee_kind", "channel", "status", "task_id")
        } == {
            "caller_role": "community_worker",
            "caller_name": "赵强",
            "callee_kind": "resident",
            "channel": "sip",
            "status": "placed",
            "task_id": task_id,
        }
        outcome_ev = events["call_outcome"]["data"]
        assert (outcome_ev["outcome"], outcome_ev["note"], outcome_ev["task_id"]) == (
            "no_answer",
            "无人接听，准备上门",
            task_id,
        )
        _no_phone_in(json.dumps(detail, ensure_ascii=False))
        console = c["duty-a"].get(f"/incidents/{incident_id}/calls").json()
        assert [(x["id"], x["outcome"]) for x in console] == [(call["id"], "no_answer")]

        # A done task takes no more calls.
        done = c["worker-a"].post(
            f"/visits/tasks/{task_id}/result", json={"result": "no_answer_family_contacted"}
        )
        assert done.status_code == 200, done.text
        assert c["worker-a"].post("/visits/residents/site-a-r0/calls", json=body).status_code == 409
        for client in c.values():
            client.close()


def test_a_worker_calls_only_their_own_elders(districts: Districts) -> None:
    site = districts.env
    with InProcessGateway(gateway_settings(site.db, site.broker)) as gw:
        c = _clients(gw, "worker-a", "worker-b", "worker-c", "duty-a", "sup-a", "fam-a", "root")
        call = {"callee_kind": "family", "callee_ref": "c1"}
        a = "/visits/residents/site-a-r0"
        # Another district's worker, and a same-district worker without this elder: 403.
        for who in ("worker-b", "worker-c"):
            assert c[who].get(f"{a}/callees").status_code == 403
            assert c[who].get(f"{a}/calls").status_code == 403
            assert c[who].post(f"{a}/calls", json=call).status_code == 403
        # worker-a may not call worker-b's elder in the other district, nor a made-up one.
        b = "/visits/residents/site-b-r0"
        assert c["worker-a"].get(f"{b}/callees").status_code == 403
        assert (
            c["worker-a"]
            .post(f"{b}/calls", json={"callee_kind": "resident", "callee_ref": "site-b-r0"})
            .status_code
            == 403
        )
        assert c["worker-a"].get("/visits/residents/nobody-r9/callees").status_code == 403
        # Staff, family and admins use the console, not these routes.
        for who in ("duty-a", "sup-a", "fam-a", "root"):
            assert c[who].get(f"{a}/callees").status_code == 403
            assert c[who].post(f"{a}/calls", json=call).status_code == 403
            assert (
                c[who].post("/visits/calls/1/outcome", json={"outcome": "busy"}).status_code == 403
            )
        # Only family contacts and the elder: a colleague's kind is refused by the schema.
        assert (
            c["worker-a"]
            .post(
                f"{a}/calls",
                json={"callee_kind": "community_worker", "callee_ref": site.ids["worker-a"]},
            )
            .status_code
            == 422
        )
        assert (
            c["worker-a"]
            .post(f"{a}/calls", json={"callee_kind": "family", "callee_ref": "c2"})
            .status_code
            == 422
        )
        assert (
            c["worker-a"]
            .post(f"{a}/calls", json={"callee_kind": "family", "callee_ref": "nope"})
            .status_code
            == 404
        )
        # The worker's own call: its outcome is theirs only; a console call is not a worker's.
        mine = c["worker-a"].post(f"{a}/calls", json=call).json()["call"]
        assert (
            c["worker-b"]
            .post(f"/visits/calls/{mine['id']}/outcome", json={"outcome": "busy"})
            .status_code
            == 403
        )
        assert (
            c["worker-a"].post("/visits/calls/999999/outcome", json={"outcome": "busy"}).status_code
            == 404
        )
        assert c["worker-b"].get(f"{b}/calls").json() == []
        for client in c.values():
            client.close()


def test_aliyun_needs_the_workers_own_phone_and_adapter_off(
    districts: Districts,
    aliyun: FakeAliyun,  # noqa: F811 - the imported fixture
) -> None:
    site = districts.env
    with site.db.connect() as conn:
        visits_store.assign_worker(conn, "site-a-r1", districts.worker_c)
    settings = gateway_settings(site.db, site.broker, **_aliyun_env(aliyun))
    with InProcessGateway(settings) as gw:
        c = _clients(gw, "worker-c")["worker-c"]
        # No phone on worker-c's record: not the duty desk line, a 422 and nothing sent.
        with site.db.connect() as conn:
            conn.execute(
                "UPDATE residents SET phone = '13800000001' WHERE resident_id = 'site-a-r1'"
            )
        resp = c.post(
            "/visits/residents/site-a-r1/calls",
            json={"callee_kind": "resident", "callee_ref": "site-a-r1"},
        )
        assert resp.status_code == 422, resp.text
        assert aliyun.forms == []
        c.close()
    with InProcessGateway(
        gateway_settings(site.db, site.broker, SAFEHOME_TELEPHONY__ADAPTER="none")
    ) as gw:
        c = _clients(gw, "worker-a")["worker-a"]
        resp = c.post(
            "/visits/residents/site-a-r0/calls", json={"callee_kind": "family", "callee_ref": "c1"}
        )
        assert resp.status_code == 409
        c.close()


def test_calls_are_counted_on_metrics(
    districts: Districts,
    aliyun: FakeAliyun,  # noqa: F811 - the imported fixture
) -> None:
    site = districts.env
    incident_id = _incident(site.db, "site-a-r0")
    aliyun.answers += [_ok("c-1"), (500, b"oops"), _ok("c-2")]
    settings = gateway_settings(site.db, site.broker, **_aliyun_env(aliyun))
    with InProcessGateway(settings) as gw:
        c = _clients(gw, "worker-a", "duty-a")
        call = {"callee_kind": "family", "callee_ref": "c1"}
        first = c["worker-a"].post("/visits/residents/site-a-r0/calls", json=call).json()["call"]
        failed = c["worker-a"].post("/visits/residents/site-a-r0/calls", json=call).json()["call"]
        assert (first["status"], failed["status"], failed["detail"]) == (
            "placed",
            "failed",
            "http_500",
        )
        console = c["duty-a"].post(f"/incidents/{incident_id}/calls", json=call).json()["call"]
        assert (
            c["worker-a"]
            .post(f"/visits/calls/{first['id']}/outcome", json={"outcome": "connected"})
            .status_code
            == 200
        )
        assert (
            c["duty-a"]
            .post(
                f"/incidents/{incident_id}/calls/{console['id']}/outcome",
                json={"outcome": "rejected"},
            )
            .status_code
            == 200
        )
        text = httpx.get(f"{gw.api_url}/metrics", timeout=15).text
        for client in c.values():
            client.close()
    assert _metric(text, "safehome_calls_total", adapter="aliyun", result="placed") == 2
    assert _metric(text, "safehome_calls_total", adapter="aliyun", result="failed") == 1
    assert _metric(text, "safehome_calls_total", adapter="aliyun", result="connected") == 1
    assert _metric(text, "safehome_calls_total", adapter="aliyun", result="rejected") == 1
    assert _metric(text, "safehome_call_provider_seconds_count", adapter="aliyun") == 3
    assert _metric(text, "safehome_call_provider_seconds_bucket", adapter="aliyun", le="+Inf") == 3
    # Labels are the adapter and a fixed vocabulary: no number, name or id.
    samples = [line for line in text.splitlines() if line.startswith("safehome_call")]
    _no_phone_in("\n".join(samples))
    assert not any("site-a" in s or "李明" in s or "c1" in s for s in samples)
