"""Visiting care and supervision (issue 13) through the HTTP API of a real gateway (real
PostgreSQL and Mosquitto): roles and scope, assessments, visit plans, proof of presence,
door-knock tasks flowing into the incident timeline, overdue notices, the staffing-ratio
table and the district supervisor's figures (counts only, audited)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.api.auth import create_user
from gateway.storage import visits as visits_store
from gateway.workflow.service import IncidentService, Trigger
from gateway.workflow.transitions import IncidentType
from tests.support import (
    Broker,
    Database,
    InProcessGateway,
    access_token,
    bearer_client,
    gateway_settings,
    make_site,
)

pytestmark = pytest.mark.integration

PASSWORD = "pw-" + uuid.uuid4().hex[:12]
USERS = {
    "worker-a": ("community_worker", None),
    "worker-b": ("community_worker", None),
    "duty-a": ("duty_staff", "site-a"),
    "sup-a": ("supervisor", "site-a"),
    "sup-b": ("supervisor", "site-b"),
    "dsup-east": ("district_supervisor", None),
    "dsup-west": ("district_supervisor", None),
    "root": ("admin", None),
}


@dataclass
class Env:
    gw: InProcessGateway
    db: Database
    tokens: dict[str, str]
    ids: dict[str, str]

    def client(self, who: str) -> httpx.Client:
        return bearer_client(self.gw.api_url, self.tokens[who])


@pytest.fixture
def env(db: Database, broker: Broker) -> Iterator[Env]:
    make_site(db, broker, site_id="site-a", beds=2)
    make_site(db, broker, site_id="site-b", beds=1, kind="home_care_centre")
    ids: dict[str, str] = {}
    with db.connect() as conn:
        for name, (role, site) in USERS.items():
            ids[name] = create_user(conn, name, role, PASSWORD, site_id=site)
        create_user(conn, "fam-a", "family", PASSWORD, residents=["site-a-r0"])
        visits_store.set_site_district(conn, "site-a", "d-east")
        visits_store.set_site_district(conn, "site-b", "d-west")
        visits_store.set_user_district(conn, ids["dsup-east"], "d-east")
        visits_store.set_user_district(conn, ids["dsup-west"], "d-west")
        visits_store.assign_worker(conn, "site-a-r0", ids["worker-a"])
        visits_store.assign_worker(conn, "site-b-r0", ids["worker-b"])
    settings = gateway_settings(db, broker)
    with InProcessGateway(settings) as gw:
        tokens = {name: access_token(gw.api_url, name, PASSWORD) for name in [*USERS, "fam-a"]}
        yield Env(gw, db, tokens, ids)


def _raise(db: Database, site: str, resident: str, kind: IncidentType) -> int:
    with db.connect() as conn:
        incident, _ = IncidentService(conn).raise_or_join(
            Trigger(kind, site, datetime.now(UTC), "test trigger", resident_id=resident)
        )
    return incident.id


def test_roles_and_scope(env: Env) -> None:
    # Each worker sees only the elders assigned to them; another elder is "not found".
    with env.client("sup-a") as c:
        assert c.put("/visits/residents/site-a-r0/categories",
                     json={"categories": ["high_risk"]}).status_code == 200  # fmt: skip
    with env.client("root") as c:
        assert c.put("/visits/residents/site-b-r0/categories",
                     json={"categories": ["living_alone"]}).status_code == 200  # fmt: skip
    with env.client("worker-a") as c:
        listed = c.get("/visits/worklist").json()
        assert [e["resident_id"] for e in listed["elders"]] == ["site-a-r0"]
        assert c.get("/visits/residents/site-a-r0").status_code == 200
        assert c.get("/visits/residents/site-b-r0").status_code == 404
        assert c.get("/visits/residents/site-a-r1").status_code == 404
        assert c.post("/visits/residents/site-b-r0/visits",
                      json={"kind": "phone", "outcome": "well"}).status_code == 404  # fmt: skip
        # read-only rules: a worker neither sets categories nor sends door-knocks
        assert c.put("/visits/residents/site-a-r0/categories",
                     json={"categories": []}).status_code == 403  # fmt: skip
        assert c.get("/incidents").status_code == 403
        assert c.get("/supervision/district?month=2026-12").status_code == 403
    with env.client("worker-b") as c:
        assert [e["resident_id"] for e in c.get("/visits/worklist").json()["elders"]] == [
            "site-b-r0"
        ]
    # site staff: own site only; family and the district supervisor: no worker views
    with env.client("duty-a") as c:
        assert {e["resident_id"] for e in c.get("/visits/worklist").json()["elders"]} == {
            "site-a-r0"
        }
        assert c.get("/visits/residents/site-b-r0").status_code == 404
    with env.client("sup-b") as c:
        assert c.put("/visits/residents/site-a-r0/worker",
                     json={"user_id": env.ids["worker-b"]}).status_code == 404  # fmt: skip
    for who in ("fam-a", "dsup-east"):
        with env.client(who) as c:
            assert c.get("/visits/worklist").status_code == 403
            assert c.get("/visits/residents/site-a-r0").status_code == 403
    # assigning a non-worker is refused; reassigning moves the elder between lists
    with env.client("sup-a") as c:
        assert c.put("/visits/residents/site-a-r1/worker",
                     json={"user_id": env.ids["duty-a"]}).status_code == 422  # fmt: skip
        assert c.put("/visits/residents/site-a-r1/worker",
                     json={"user_id": env.ids["worker-a"]}).status_code == 200  # fmt: skip
    with env.client("worker-a") as c:
        assert c.get("/visits/residents/site-a-r1").status_code == 200
        # r1 has no risk category, so no visit plan: listed among her other elders, after
        # the due list (which is unchanged), so she can still call or visit.
        listed = c.get("/visits/worklist").json()
        assert [e["resident_id"] for e in listed["elders"]] == ["site-a-r0"]
        assert [(e["resident_id"], e["due"]) for e in listed["others"]] == [("site-a-r1", [])]
    with env.client("duty-a") as c:  # staff: the site's due list only
        assert c.get("/visits/worklist").json()["others"] == []
    # The registry's lives_alone flag counts as the 独居 category (and sets the visit plan).
    with env.db.connect() as conn:
        conn.execute("UPDATE residents SET lives_alone = true WHERE resident_id = 'site-a-r1'")
    with env.client("worker-a") as c:
        elder = c.get("/visits/residents/site-a-r1").json()["elder"]
        assert (elder["categories"], elder["category_labels"]) == (["living_alone"], ["独居"])
        assert [d["kind"] for d in elder["due"]] == ["phone", "home"]
        listed = c.get("/visits/worklist").json()  # now due: it moves to the due list
        assert sorted(e["resident_id"] for e in listed["elders"]) == ["site-a-r0", "site-a-r1"]
        assert listed["others"] == []


def test_assessments_plans_and_proof_of_presence(env: Env) -> None:
    today = datetime.now(UTC).date()
    with env.client("sup-a") as c:
        bad = c.post("/visits/residents/site-a-r0/assessments",
                     json={"level": "level 9", "assessor": "评估员甲",
                           "assessed_on": today.isoformat()})  # fmt: skip
        assert bad.status_code == 422 and "能力完好" in bad.json()["detail"]
        # zh-CN first, the English detail second
        assert bad.json()["detail"].startswith("未知的评估等级：")
        assert bad.json()["detail"].endswith("（unknown assessment level 'level 9'）")
        old = (today - timedelta(days=800)).isoformat()
        assert c.post("/visits/residents/site-a-r0/assessments",
                      json={"level": "轻度失能", "assessor": "评估员甲",
                            "assessed_on": old}).status_code == 201  # fmt: skip
        card = c.get("/visits/residents/site-a-r0").json()
        assert card["elder"]["level"] == "轻度失能"
        assert card["elder"]["assessment_overdue"] is True
        assert card["assessments"][0]["next_due"] == (
            today - timedelta(days=800) + timedelta(days=365)).isoformat()  # fmt: skip
        assert c.post("/visits/residents/site-a-r0/assessments",
                      json={"level": "中度失能", "assessor": "评估员乙",
                            "assessed_on": today.isoformat()}).status_code == 201  # fmt: skip
        card = c.get("/visits/residents/site-a-r0").json()
        assert (card["elder"]["level"], card["elder"]["assessment_overdue"]) == ("中度失能", False)
        assert c.put("/visits/residents/site-a-r0/categories",
                     json={"categories": ["high_risk", "very_old"]}).status_code == 200  # fmt: skip
    # high-risk: weekly phone call and monthly home visit (d-east overrides: 3 and 7 days)
    with env.client("worker-a") as c:
        elder = c.get("/visits/worklist").json()["elders"][0]
        assert elder["category_labels"] == ["高风险", "高龄"]
        assert [(d["kind"], d["interval_days"]) for d in elder["due"]] == [
            ("phone", 3),
            ("home", 7),
        ]
        assert not any(d["overdue"] for d in elder["due"])  # registered today
        long_ago = (datetime.now(UTC) - timedelta(days=10)).isoformat()
        assert c.post("/visits/residents/site-a-r0/visits",
                      json={"kind": "phone", "outcome": "well",
                            "visited_at": long_ago}).status_code == 201  # fmt: skip
        elder = c.get("/visits/worklist").json()["elders"][0]
        assert elder["due"][0]["overdue"] is True
        # home visits need the elder's or the bed's code, scanned or typed
        home = {"kind": "home", "outcome": "well", "notes": "精神好"}
        assert c.post("/visits/residents/site-a-r0/visits", json=home).status_code == 422
        other = {"proof_code": "ELD-site-a-0001", "proof_method": "typed"}  # not this elder
        wrong = c.post("/visits/residents/site-a-r0/visits", json=home | other)
        assert wrong.status_code == 422
        assert wrong.json()["detail"] == (
            "编码不属于该老人或其床位：请扫描该老人本人或其床位的二维码"
            "（the code is not this elder's or their bed's code）"
        )
        for code, method in (("ELD-site-a-0000", "scan"), ("BED-site-a-0000", "typed")):
            resp = c.post("/visits/residents/site-a-r0/visits",
                          json=home | {"proof_code": code, "proof_method": method})  # fmt: skip
            assert resp.status_code == 201, resp.text
        assert c.post("/visits/residents/site-a-r0/visits",
                      json={"kind": "phone", "outcome": "well"}).status_code == 201  # fmt: skip
        elder = c.get("/visits/worklist").json()["elders"][0]
        assert not any(d["overdue"] for d in elder["due"])
        history = c.get("/visits/residents/site-a-r0").json()["visits"]
        assert [v["kind"] for v in history] == ["phone", "home", "home", "phone"]
        assert "proof_code" not in history[1]
    rows = env.db.rows("SELECT action FROM audit_log WHERE target = 'resident:site-a-r0'")
    actions = [r[0] for r in rows]
    assert actions.count("assessment.record") == 2
    assert actions.count("visit.record") == 4
    assert "risk.set" in actions


def test_overdue_visits_reach_the_console_and_the_supervisor(env: Env) -> None:
    with env.client("sup-a") as c:
        c.put("/visits/residents/site-a-r0/categories", json={"categories": ["high_risk"]})
    with env.db.connect() as conn:
        conn.execute("UPDATE residents SET created_at = now() - interval '20 days' "
                     "WHERE resident_id = 'site-a-r0'")  # fmt: skip
    with env.client("sup-a") as c:
        overdue = c.get("/visits/overdue").json()
        assert [e["resident_id"] for e in overdue["overdue"]] == ["site-a-r0"]
        assert overdue["notices"] == []
        assert c.post("/visits/sweep").status_code == 403  # admins run the sweep
    with env.client("root") as c:
        first = c.post("/visits/sweep").json()
        assert first == {"notices": 2, "tasks_opened": 0}  # phone and home
        assert c.post("/visits/sweep").json() == {"notices": 0, "tasks_opened": 0}
    with env.client("sup-a") as c:
        notices = c.get("/visits/overdue").json()["notices"]
        assert sorted(n["kind"] for n in notices) == ["home", "phone"]
    with env.client("sup-b") as c:
        assert c.get("/visits/overdue").json() == {"overdue": [], "notices": []}
    told = env.db.rows("SELECT data FROM audit_log WHERE action = 'visit.overdue_notice'")
    assert len(told) == 2 and all(t[0]["supervisors"] == [env.ids["sup-a"]] for t in told)


def test_door_knock_result_flows_into_the_incident(env: Env) -> None:
    inc = _raise(env.db, "site-a", "site-a-r0", IncidentType.NO_ACTIVITY)
    with env.client("worker-a") as c:
        assert c.post("/visits/door-knock", json={"resident_id": "site-a-r0",
                      "reason": "no_activity", "incident_id": inc}).status_code == 403  # fmt: skip
    with env.client("duty-a") as c:
        # the incident must be this elder's
        assert c.post("/visits/door-knock", json={"resident_id": "site-a-r1",
                      "reason": "no_activity", "incident_id": inc}).status_code == 404  # fmt: skip
        resp = c.post("/visits/door-knock",
                      json={"resident_id": "site-a-r0", "reason": "no_activity",
                            "incident_id": inc})  # fmt: skip
        assert resp.status_code == 201, resp.text
        task_id = resp.json()["task_id"]
        again = c.post("/visits/door-knock", json={"resident_id": "site-a-r0",
                       "reason": "no_activity", "incident_id": inc}).json()  # fmt: skip
        assert again == {"task_id": task_id, "created": False}
        incident = c.get(f"/incidents/{inc}").json()
        assert incident["state"] == "acknowledged"
        assert "door_knock" in [e["kind"] for e in incident["timeline"]]
    with env.client("worker-b") as c:
        assert c.get("/visits/tasks").json() == []
        assert c.post(f"/visits/tasks/{task_id}/result",
                      json={"result": "opened_ok"}).status_code == 404  # fmt: skip
    with env.client("worker-a") as c:
        tasks = c.get("/visits/tasks").json()
        assert [(t["id"], t["reason_label"], t["incident_id"]) for t in tasks] == [
            (task_id, "无活动告警电话未解决", inc)]  # fmt: skip
        assert c.post(f"/visits/tasks/{task_id}/result",
                      json={"result": "opened_ok"}).status_code == 422  # no proof  # fmt: skip
        done = c.post(f"/visits/tasks/{task_id}/result",
                      json={"result": "opened_ok", "proof_code": "BED-site-a-0000",
                            "proof_method": "scan", "notes": "老人在午睡"})  # fmt: skip
        assert done.status_code == 200, done.text
        assert done.json()["incident_state"] == "resolved"
        assert done.json()["result_label"] == "开门，正常"
        assert c.post(f"/visits/tasks/{task_id}/result",
                      json={"result": "hospital"}).status_code == 409  # fmt: skip
        assert c.get("/visits/tasks").json() == []
    with env.client("duty-a") as c:
        incident = c.get(f"/incidents/{inc}").json()
        assert incident["outcome"] == "no_action_needed"
        results = [e for e in incident["timeline"] if e["kind"] == "door_knock_result"]
        assert results[0]["data"]["label"] == "开门，正常"
        assert results[0]["actor"] == env.ids["worker-a"]
    audit = [r[0] for r in env.db.rows(
        "SELECT action FROM audit_log WHERE target IN (%s, %s) ORDER BY seq",
        (f"incident:{inc}", f"door_knock:{task_id}"))]  # fmt: skip
    audit = [a for a in audit if a not in {"incident.read", "incident.raised"}]
    assert audit == ["incident.acknowledge", "door_knock.open", "incident.door_knock",
                     "door_knock.result", "incident.door_knock_result",
                     "incident.resolve"]  # fmt: skip

    # The family sees the visit and the door-knock result (no visitor, notes or codes).
    with env.client("fam-a") as c:
        seen = c.get("/family/residents/site-a-r0/visits")
        assert seen.status_code == 200, seen.text
        assert [(v["kind"], v["door_knock_label"]) for v in seen.json()] == [("home", "开门，正常")]
        assert "老人在午睡" not in seen.text and "BED-" not in seen.text
        assert c.get("/family/residents/site-a-r1/visits").status_code == 404
    with env.client("worker-a") as c:
        assert c.get("/family/residents/site-a-r0/visits").status_code == 403

    # No answer: the incident stays open, the timeline says it escalated.
    inc2 = _raise(env.db, "site-a", "site-a-r0", IncidentType.NO_ACTIVITY)
    with env.client("sup-a") as c:
        task2 = c.post("/visits/door-knock", json={"resident_id": "site-a-r0",
                       "reason": "unreachable", "incident_id": inc2}).json()["task_id"]  # fmt: skip
    with env.client("worker-a") as c:
        out = c.post(f"/visits/tasks/{task2}/result",
                     json={"result": "no_answer_family_contacted"}).json()  # fmt: skip
        assert (out["incident_state"], out["visit_id"]) == ("acknowledged", None)
    with env.client("sup-a") as c:
        timeline = c.get(f"/incidents/{inc2}").json()["timeline"]
        assert timeline[-1]["kind"] == "door_knock_result"
        assert timeline[-1]["data"]["escalated"] is True


def test_an_unresolved_inactivity_alert_opens_a_door_knock_task_by_itself(env: Env) -> None:
    """Issue 13 §3: a no-activity alert nobody resolved (config: 30 min) sends the elder's
    community worker to the door; the alert keeps escalating to staff meanwhile."""
    old = _raise(env.db, "site-a", "site-a-r0", IncidentType.NO_ACTIVITY)
    unassigned = _raise(env.db, "site-a", "site-a-r1", IncidentType.NO_ACTIVITY)  # no worker
    with env.db.connect() as conn:
        conn.execute("UPDATE incidents SET raised_at = now() - interval '31 minutes' "
                     "WHERE id = ANY(%s)", ([old, unassigned],))  # fmt: skip
    fresh = _raise(env.db, "site-b", "site-b-r0", IncidentType.NOT_UP)  # 0 min old
    with env.client("root") as c:
        assert c.post("/visits/sweep").json()["tasks_opened"] == 1
        assert c.post("/visits/sweep").json()["tasks_opened"] == 0
    with env.client("worker-a") as c:
        tasks = c.get("/visits/tasks").json()
        assert [(t["reason"], t["incident_id"]) for t in tasks] == [("no_activity", old)]
    with env.client("worker-b") as c:
        assert c.get("/visits/tasks").json() == []  # fresh: staff may still phone
    with env.client("duty-a") as c:
        incident = c.get(f"/incidents/{old}").json()
        assert incident["state"] == "raised"  # the sweep never takes an alarm from staff
        assert "door_knock" in [e["kind"] for e in incident["timeline"]]
    assert (
        env.db.scalar(
            "SELECT count(*) FROM door_knock_tasks WHERE incident_id = ANY(%s)",
            ([unassigned, fresh],),
        )
        == 0
    )


def test_silent_home_opens_a_door_knock_task(env: Env) -> None:
    with env.db.connect() as conn:
        conn.execute("UPDATE locations SET kind = 'home' WHERE location_id = 'site-b-l0'")
        svc = IncidentService(conn)
        for dev in ("site-b-bs0", "site-b-wr0"):
            svc.raise_or_join(Trigger(IncidentType.DEVICE_OFFLINE, "site-b", datetime.now(UTC),
                                      "offline", subject=dev))  # fmt: skip
    with env.client("root") as c:
        assert c.post("/visits/sweep").json()["tasks_opened"] == 0  # the button still talks
    with env.db.connect() as conn:
        IncidentService(conn).raise_or_join(Trigger(
            IncidentType.DEVICE_OFFLINE, "site-b", datetime.now(UTC), "offline",
            subject="site-b-bt0"))  # fmt: skip
    with env.client("root") as c:
        assert c.post("/visits/sweep").json()["tasks_opened"] == 1
        assert c.post("/visits/sweep").json()["tasks_opened"] == 0
    with env.client("worker-b") as c:
        tasks = c.get("/visits/tasks").json()
        assert [(t["reason"], t["incident_id"]) for t in tasks] == [("home_silent", None)]
        out = c.post(f"/visits/tasks/{tasks[0]['id']}/result",
                     json={"result": "hospital", "proof_code": "ELD-site-b-0000",
                           "proof_method": "typed"}).json()  # fmt: skip
        assert (out["incident_state"], out["result_label"]) == (None, "送医")


def test_staff_open_a_door_not_opened_door_knock_by_hand(env: Env) -> None:
    """The reason the sweep uses for "door not opened for days" (door_unused) is accepted from
    staff too; an unknown reason is refused before anything is written."""
    inc = _raise(env.db, "site-a", "site-a-r0", IncidentType.DOOR_UNUSED)
    with env.client("duty-a") as c:
        bad = c.post("/visits/door-knock", json={"resident_id": "site-a-r0",
                     "reason": "door_broken", "incident_id": inc})  # fmt: skip
        assert bad.status_code == 422
        resp = c.post("/visits/door-knock", json={"resident_id": "site-a-r0",
                      "reason": "door_unused", "incident_id": inc})  # fmt: skip
        assert resp.status_code == 201, resp.text
        task_id = resp.json()["task_id"]
        incident = c.get(f"/incidents/{inc}").json()
        assert incident["state"] == "acknowledged"
        assert "door_knock" in [e["kind"] for e in incident["timeline"]]
    with env.client("sup-a") as c:  # no incident: a supervisor sends the worker all the same
        alone = c.post("/visits/door-knock",
                       json={"resident_id": "site-a-r1", "reason": "door_unused"})  # fmt: skip
        assert alone.status_code == 201, alone.text
    with env.client("worker-a") as c:
        tasks = c.get("/visits/tasks").json()
        assert [(t["id"], t["reason"], t["reason_label"], t["incident_id"]) for t in tasks] == [
            (task_id, "door_unused", "多日未开门告警未解决", inc)]  # fmt: skip
    assert env.db.rows(
        "SELECT data->>'reason' FROM audit_log WHERE action = 'door_knock.open' ORDER BY seq"
    ) == [("door_unused",), ("door_unused",)]


def test_staffing_ratio_and_district_figures(env: Env) -> None:
    today = (datetime.now(UTC) + timedelta(hours=8)).date()  # the sites' local date (UTC+8)
    with env.client("sup-a") as c:
        for res, level in (("site-a-r0", "完全失能"), ("site-a-r1", "能力完好")):
            c.post(
                f"/visits/residents/{res}/assessments",
                json={"level": level, "assessor": "评估员", "assessed_on": today.isoformat()},
            )
    start = datetime(today.year, today.month, today.day, tzinfo=UTC) - timedelta(hours=8)
    with env.db.connect() as conn:
        for day in range(7):  # day and evening shifts covered; nobody at night
            base = start + timedelta(days=day)
            conn.execute(
                "INSERT INTO duty_shifts (site_id, user_id, role, starts_at, ends_at) "
                "VALUES ('site-a', %s, 'duty_staff', %s, %s)",
                (env.ids["duty-a"], base + timedelta(hours=8), base + timedelta(hours=24)),
            )
    with env.client("dsup-east") as c:
        table = c.get(f"/supervision/staffing?start={today.isoformat()}").json()
        assert {row["site_id"] for row in table} == {"site-a"}  # site-b is not a nursing home
        assert len(table) == 21
        first = table[0]
        assert first["residents"] == {"fully": 1, "partly": 0, "independent": 1}
        assert first["required"] == 1
        short = {(r["shift"], r["shortfall"]) for r in table if not r["compliant"]}
        assert short == {("night", 1)}
        assert all(r["compliant"] for r in table if r["shift"] != "night")
        assert c.get("/supervision/staffing?district=d-west").status_code == 404
        assert c.get("/supervision/staffing?site=site-b").status_code == 404
        figures = c.get(f"/supervision/district?month={today:%Y-%m}")
        assert figures.status_code == 200, figures.text
        body = figures.json()
        assert body["sites"] == ["site-a"]
        assert body["totals"]["beds_served"] == 2
        assert body["totals"]["short_shifts_next_week"] == 7
        assert body["totals"]["reassessments_due"] == 0
        for secret in ("Resident", "ELD-", "BED-", "评估员"):
            assert secret not in figures.text
        assert (
            c.get(f"/supervision/district?month={today:%Y-%m}&district=d-west").status_code == 404
        )
    with env.client("dsup-west") as c:
        west = c.get(f"/supervision/district?month={today:%Y-%m}").json()
        assert west["sites"] == ["site-b"] and west["totals"]["beds_served"] == 1
    # The monthly per-bed report: codes and counts, no names; CSV for spreadsheets.
    with env.client("sup-a") as c:
        beds = c.get(f"/supervision/beds?month={today:%Y-%m}").json()
        assert [(b["bed_code"], b["level"]) for b in beds] == [
            ("BED-site-a-0000", "完全失能"), ("BED-site-a-0001", "能力完好")]  # fmt: skip
        sheet = c.get(f"/supervision/beds?month={today:%Y-%m}&format=csv")
        assert sheet.headers["content-type"].startswith("text/csv")
        lines = sheet.text.lstrip("\ufeff").splitlines()
        assert lines[0].startswith("床位编码 bed_code") and len(lines) == 3
        assert "Resident" not in sheet.text
        assert c.get(f"/supervision/beds?month={today:%Y-%m}&site=site-b").status_code == 403
    with env.client("dsup-east") as c:
        assert c.get(f"/supervision/beds?month={today:%Y-%m}").status_code == 403
    with env.client("sup-b") as c:
        assert c.get("/supervision/staffing?site=site-a").status_code == 404
        assert c.get("/supervision/district?month=2026-12").status_code == 403
    for who in ("worker-a", "duty-a", "fam-a"):
        with env.client(who) as c:
            assert c.get("/supervision/staffing").status_code == 403
    reads = env.db.rows("SELECT actor, target FROM audit_log WHERE action = 'supervision.read'")
    assert (env.ids["dsup-east"], "district:d-east") in reads


def test_the_sweeper_worker_runs_the_sweep_on_a_pool(db: Database) -> None:
    import asyncio

    from psycopg_pool import ConnectionPool

    from gateway.visits.config import load_visits_config
    from gateway.visits.worker import VisitsSweeper

    with db.connect() as conn:
        conn.execute("INSERT INTO sites (site_id, name, kind) VALUES ('s1', 'S', 'nursing_home')")
        conn.execute("INSERT INTO residents (resident_id, elder_code, site_id, display_name, "
                     "care_level, created_at) VALUES ('r1', 'E1', 's1', 'X', 1, "
                     "now() - interval '40 days')")  # fmt: skip
        visits_store.set_risks(conn, "r1", ["very_old"])
    pool: ConnectionPool[Any] = ConnectionPool(db.conninfo(), min_size=1, max_size=2,
                                                kwargs={"autocommit": True}, open=True)  # fmt: skip
    try:
        sweeper = VisitsSweeper(pool, load_visits_config())
        assert asyncio.run(sweeper.run_once()) == 2  # never visited: both kinds are due
        assert asyncio.run(sweeper.run_once()) == 0
    finally:
        pool.close()
    assert db.rows("SELECT kind FROM visit_notices ORDER BY kind") == [("home",), ("phone",)]


def test_service_records_need_proof_and_count_per_bed(env: Env) -> None:
    month = f"{datetime.now(UTC) + timedelta(hours=8):%Y-%m}"
    bathing = {"service": "bathing", "proof_code": "BED-site-b-0000", "proof_method": "scan",
               "minutes": 40}  # fmt: skip
    with env.client("worker-a") as c:  # not her elder
        assert c.post("/visits/residents/site-b-r0/services", json=bathing).status_code == 404
    with env.client("worker-b") as c:
        wrong = bathing | {"proof_code": "BED-site-a-0000"}
        assert c.post("/visits/residents/site-b-r0/services", json=wrong).status_code == 422
        assert c.post("/visits/residents/site-b-r0/services", json=bathing).status_code == 201
        meals = {"service": "meals", "proof_code": "ELD-site-b-0000", "proof_method": "typed"}
        assert c.post("/visits/residents/site-b-r0/services", json=meals).status_code == 201
        listed = c.get("/visits/residents/site-b-r0/services").json()
        assert [s["service_label"] for s in listed] == ["助餐", "助浴"]
    with env.client("sup-b") as c:
        beds = c.get(f"/supervision/beds?month={month}").json()
        assert [(b["bed_code"], b["services"]) for b in beds] == [("BED-site-b-0000", 2)]
    assert len(env.db.rows("SELECT 1 FROM audit_log WHERE action = 'service.record'")) == 2


def test_demo_seed_gives_an_overdue_visit_and_short_nights(db: Database) -> None:
    from gateway.commissioning import apply_site_definition, load_site_definition
    from gateway.demo import DEMO_SITES
    from gateway.supervision.district import staffing_table
    from gateway.visits.config import load_visits_config
    from gateway.visits.demo import seed_visits_demo
    from gateway.visits.service import due_for, sweep

    book: dict[str, str] = {}
    with db.connect() as conn:
        for path in DEMO_SITES:
            apply_site_definition(conn, load_site_definition(path))
        create_user(conn, "duty-nh", "duty_staff", PASSWORD, site_id="demo-nh")
        logins = seed_visits_demo(conn, book)
        assert set(logins) == {"worker-hc", "district-demo"}
        seed_visits_demo(conn, book)  # a second run changes nothing that matters
        # Names, not logins, on the timelines; the demo's people and places read in Chinese.
        names = dict(conn.execute("SELECT username, display_name FROM users").fetchall())
        assert names["worker-hc"] == "林芳" and names["district-demo"] == "周敏"
        shown = conn.execute(
            "SELECT display_name, relation FROM contacts"
            " UNION ALL SELECT label, address FROM locations UNION ALL SELECT name, NULL FROM sites"
        ).fetchall()
        assert not [r for r in shown if re.search(r"[A-Za-z]{4,}", " ".join(filter(None, r)))]
        cfg = load_visits_config()
        now = datetime.now(UTC)
        worker = visits_store.resident_cards(conn, site_id="demo-hc")
        late = {(c["resident_id"], d.kind) for c in worker for d in due_for(cfg, c, now)
                if d.overdue}  # fmt: skip
        assert ("hc-res-01", "phone") in late
        local = (now + timedelta(hours=8)).date()
        table = staffing_table(conn, cfg, ["demo-nh"], start_day=local + timedelta(days=1),
                               days=6)  # fmt: skip
        assert {c.shift for c in table if not c.compliant} == {"night"}
        # a no-activity alert nobody answered for 40 min: the sweep sends the worker to the door
        ((incident_id, state, age_min),) = conn.execute(
            "SELECT id, state, extract(epoch FROM now() - raised_at) / 60 FROM incidents "
            "WHERE type = 'no_activity' AND resident_id = 'hc-res-02'"
        ).fetchall()
        assert state == "raised" and 39 < age_min < 60
        assert conn.execute("SELECT count(*) FROM incident_escalations WHERE incident_id = %s",
                            (incident_id,)).fetchone() == (1,)  # fmt: skip
        assert sweep(conn, cfg).tasks_opened == 1
        tasks = conn.execute("SELECT reason, incident_id, worker_id FROM door_knock_tasks "
                             "WHERE resident_id = 'hc-res-02'").fetchall()  # fmt: skip
        worker_id = conn.execute("SELECT user_id FROM users WHERE username = 'worker-hc'"
                                 ).fetchone()  # fmt: skip
        assert worker_id is not None and tasks == [("no_activity", incident_id, worker_id[0])]
