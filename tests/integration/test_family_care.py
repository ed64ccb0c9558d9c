"""Family ratings and away mode, 随家人外出 (issue 13 §7), through the HTTP API of a real
gateway (real PostgreSQL and Mosquitto):

* ratings: only a resolved/closed incident, only of the caller's own relative (another
  elder's incident is 404), once per incident and user, changeable within the window,
  audited, counted in the district figures;
* away mode: date range rules, overlap, another family's relative is 404, ended early,
  audited; the console board shows the elder away; no home visit due meanwhile;
* the alarm guarantee: an away elder's no-activity finding raises no incident (recorded as
  suppressed) while a real button press over MQTT still raises an emergency incident.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from analytics.types import DetectionKind
from gateway.analysis import DetectionRecord, PostgresStore
from gateway.api.auth import create_user
from gateway.escalation import intake
from gateway.storage import family_away
from gateway.storage import visits as visits_store
from gateway.workflow.service import Actor, IncidentService, Trigger
from gateway.workflow.transitions import IncidentType, Role
from tests.integration.test_installer_api import _open_incidents, _press
from tests.support import (
    Broker,
    Database,
    InProcessGateway,
    access_token,
    bearer_client,
    broker_env,
    gateway_settings,
    make_site,
    wait_until,
)

pytestmark = pytest.mark.integration

PASSWORD = "pw-" + uuid.uuid4().hex[:12]
USERS = {
    "fam-a": ("family", None, ["site-a-r0"]),
    "fam-b": ("family", None, ["site-a-r1"]),
    "duty-a": ("duty_staff", "site-a", None),
    "sup-a": ("supervisor", "site-a", None),
    "worker-a": ("community_worker", None, None),
    "dsup": ("district_supervisor", None, None),
    "root": ("admin", None, None),
}


@dataclass
class Env:
    gw: InProcessGateway
    db: Database
    broker: Broker
    tokens: dict[str, str]
    ids: dict[str, str]

    def client(self, who: str) -> httpx.Client:
        return bearer_client(self.gw.api_url, self.tokens[who])


@pytest.fixture
def env(db: Database, broker: Broker) -> Iterator[Env]:
    make_site(db, broker, site_id="site-a", beds=2)
    ids: dict[str, str] = {}
    with db.connect() as conn:
        for name, (role, site, residents) in USERS.items():
            ids[name] = create_user(conn, name, role, PASSWORD, site_id=site,
                                    residents=residents or ())  # fmt: skip
        visits_store.set_site_district(conn, "site-a", "d-east")
        visits_store.set_user_district(conn, ids["dsup"], "d-east")
        visits_store.assign_worker(conn, "site-a-r0", ids["worker-a"])
        conn.execute("UPDATE residents SET lives_alone = true WHERE resident_id = 'site-a-r0'")
    settings = gateway_settings(
        db, broker,
        SAFEHOME_INGEST__REGISTRY_REFRESH_S="0.5",
        SAFEHOME_ANALYSIS__REGISTRY_REFRESH_S="1",
        SAFEHOME_FAMILY__RELEASE_INTERVAL_S="0.3",
        **broker_env(broker),
    )  # fmt: skip
    with InProcessGateway(settings) as gw:
        tokens = {name: access_token(gw.api_url, name, PASSWORD) for name in USERS}
        yield Env(gw, db, broker, tokens, ids)


def _raise(db: Database, resident: str, kind: IncidentType = IncidentType.EMERGENCY_CALL) -> int:
    with db.connect() as conn:
        incident, _ = IncidentService(conn).raise_or_join(
            Trigger(kind, "site-a", datetime.now(UTC), "test trigger", resident_id=resident)
        )
    return incident.id


def _resolve(env: Env, incident_id: int) -> None:
    actor = Actor(env.ids["duty-a"], Role.DUTY_STAFF)
    with env.db.connect() as conn:
        service = IncidentService(conn)
        service.acknowledge(incident_id, actor)
        service.resolve(incident_id, actor, "assisted")


def _audit(db: Database, action_like: str) -> list[tuple[Any, ...]]:
    return db.rows(
        "SELECT actor, action, target, data FROM audit_log WHERE action LIKE %s ORDER BY seq",
        (action_like,),
    )


def test_rating_rules_cross_family_denial_and_district_figures(env: Env) -> None:
    mine = _raise(env.db, "site-a-r0")
    theirs = _raise(env.db, "site-a-r1")
    with env.client("fam-a") as c:
        # not resolved yet: nothing to rate
        early = c.put(f"/family/incidents/{mine}/rating", json={"stars": 5})
        assert early.status_code == 409, early.text
        _resolve(env, mine)
        _resolve(env, theirs)
        # another elder's incident, and one that does not exist: the same 404
        assert c.put(f"/family/incidents/{theirs}/rating", json={"stars": 1}).status_code == 404
        assert c.put("/family/incidents/999999/rating", json={"stars": 1}).status_code == 404
        assert c.get("/family/residents/site-a-r1/ratings").status_code == 404
        # 1-5 stars, a comment of at most 500 characters
        assert c.put(f"/family/incidents/{mine}/rating", json={"stars": 0}).status_code == 422
        assert c.put(f"/family/incidents/{mine}/rating", json={"stars": 6}).status_code == 422
        long = {"stars": 3, "comment": "长" * 501}
        assert c.put(f"/family/incidents/{mine}/rating", json=long).status_code == 422
        first = c.put(f"/family/incidents/{mine}/rating", json={"stars": 5, "comment": " 很及时 "})
        assert first.status_code == 200, first.text
        body = first.json()
        assert (body["stars"], body["comment"]) == (5, "很及时")
        created = datetime.fromisoformat(body["created_at"])
        assert datetime.fromisoformat(body["editable_until"]) - created == timedelta(days=7)
        # changed within the window: still one rating
        again = c.put(f"/family/incidents/{mine}/rating", json={"stars": 4})
        assert again.status_code == 200 and again.json()["comment"] is None
        listed = c.get("/family/residents/site-a-r0/ratings").json()
        assert [(r["incident_id"], r["stars"]) for r in listed] == [(mine, 4)]
    # staff and other roles cannot rate
    with env.client("duty-a") as c:
        assert c.put(f"/family/incidents/{mine}/rating", json={"stars": 1}).status_code == 403
    # the other family cannot rate it either, but rates their own relative's
    with env.client("fam-b") as c:
        assert c.put(f"/family/incidents/{mine}/rating", json={"stars": 1}).status_code == 404
        assert c.put(f"/family/incidents/{theirs}/rating", json={"stars": 1}).status_code == 200
    assert int(env.db.scalar("SELECT count(*) FROM incident_ratings")) == 2
    # audited: who, which incident, the stars (never the comment's text)
    audit = _audit(env.db, "incident.%rated")
    assert [(a[0], a[1], a[2], a[3]["stars"]) for a in audit] == [
        (env.ids["fam-a"], "incident.rated", f"incident:{mine}", 5),
        (env.ids["fam-a"], "incident.rerated", f"incident:{mine}", 4),
        (env.ids["fam-b"], "incident.rated", f"incident:{theirs}", 1),
    ]
    assert "很及时" not in str(audit)
    # the window is over: the rating stays as it is
    with env.db.connect() as conn:
        conn.execute("UPDATE incident_ratings SET created_at = created_at - interval '8 days' "
                     "WHERE incident_id = %s", (mine,))  # fmt: skip
    with env.client("fam-a") as c:
        late = c.put(f"/family/incidents/{mine}/rating", json={"stars": 1})
        assert late.status_code == 409 and "评价已超过可修改期限" in late.json()["hint"]
    # the district figures: ratings given this month (the changed one counts once)
    with env.db.connect() as conn:
        conn.execute("UPDATE incident_ratings SET created_at = now()")
    month = datetime.now(UTC) + timedelta(hours=8)
    with env.client("dsup") as c:
        r = c.get(f"/supervision/district?month={month:%Y-%m}")
        assert r.status_code == 200, r.text
        totals = r.json()["totals"]
        assert (totals["family_ratings"], totals["family_rating_avg"]) == (2, 2.5)
    # per site: the site's supervisor, the district supervisor; not the family
    per_site = {"month": f"{month:%Y-%m}", "family_ratings": 2, "family_rating_avg": 2.5,
                "sites": [{"site_id": "site-a", "ratings": 2, "average": 2.5}]}  # fmt: skip
    for who in ("sup-a", "dsup"):
        with env.client(who) as c:
            r = c.get(f"/supervision/family-ratings?month={month:%Y-%m}")
            assert r.status_code == 200, r.text
            assert r.json() == per_site
    with env.client("dsup") as c:
        other = c.get(f"/supervision/family-ratings?month={month:%Y-%m}&district=d-west")
        assert other.status_code == 404
    with env.client("fam-a") as c:
        assert c.get(f"/supervision/family-ratings?month={month:%Y-%m}").status_code == 403


def _local_today() -> datetime:
    return datetime.now(UTC) + timedelta(hours=8)  # make_site's sites are UTC+8


def test_away_mode_rules_board_and_visits(env: Env) -> None:
    today = _local_today().date()
    url = "/family/residents/site-a-r0/away"
    with env.client("fam-a") as c:
        assert c.get(url).json() == []

        def span(a: int, b: int) -> dict[str, str]:
            return {"start_date": str(today + timedelta(days=a)),
                    "end_date": str(today + timedelta(days=b))}  # fmt: skip

        bad = [
            span(0, -1),  # ends before it starts
            span(-5, -2),  # over already
            span(0, 60),  # 61 days
            span(91, 92),  # too far ahead
            span(0, 0) | {"note": "x" * 201},
        ]
        for body in bad:
            assert c.post(url, json=body).status_code == 422, body
        ok = c.post(url, json={"start_date": str(today), "end_date": str(today + timedelta(days=2)),
                               "note": "去女儿家"})  # fmt: skip
        assert ok.status_code == 201, ok.text
        [period] = ok.json()
        assert (period["state"], period["note"], period["suppressed"]) == ("active", "去女儿家", 0)
        overlap = c.post(url, json={"start_date": str(today + timedelta(days=1)),
                                    "end_date": str(today + timedelta(days=5))})  # fmt: skip
        assert overlap.status_code == 409
        coming = c.post(url, json={"start_date": str(today + timedelta(days=10)),
                                   "end_date": str(today + timedelta(days=11))})  # fmt: skip
        assert [p["state"] for p in coming.json()] == ["active", "coming"]
        # another family's relative: as if it did not exist
        assert c.get("/family/residents/site-a-r1/away").status_code == 404
        today_only = {"start_date": str(today), "end_date": str(today)}
        assert c.post("/family/residents/site-a-r1/away", json=today_only).status_code == 404
    with env.client("fam-b") as c:
        assert c.get(url).status_code == 404
        assert c.post(f"{url}/{period['id']}/end").status_code == 404
        assert c.post(f"/family/residents/site-a-r1/away/{period['id']}/end").status_code == 404
    with env.client("duty-a") as c:
        assert (
            c.post(url, json={"start_date": str(today), "end_date": str(today)}).status_code == 403
        )
        # the console board shows the elder away
        tiles = {t["resident_id"]: t["state"] for t in c.get("/console/board").json()["beds"]}
        assert tiles["site-a-r0"] == "away" and tiles["site-a-r1"] != "away"
    # no home visit is due while the elder is away (a phone call still is)
    with env.client("worker-a") as c:
        elder = c.get("/visits/residents/site-a-r0").json()["elder"]
        assert [d["kind"] for d in elder["due"]] == ["phone"]
    # ended early: no longer in force, the board and the visit plan are back to normal
    with env.client("fam-a") as c:
        ended = c.post(f"{url}/{period['id']}/end")
        assert ended.status_code == 200, ended.text
        assert [p["state"] for p in ended.json()] == ["coming"]
        assert c.post(f"{url}/{period['id']}/end").status_code == 409
    with env.client("duty-a") as c:
        tiles = {t["resident_id"]: t["state"] for t in c.get("/console/board").json()["beds"]}
        assert tiles["site-a-r0"] != "away"
    with env.client("worker-a") as c:
        elder = c.get("/visits/residents/site-a-r0").json()["elder"]
        assert [d["kind"] for d in elder["due"]] == ["phone", "home"]
    actions = [(a[0], a[1], a[2]) for a in _audit(env.db, "resident.away_%")]
    fam = env.ids["fam-a"]
    assert actions == [(fam, "resident.away_set", "resident:site-a-r0")] * 2 + [
        (fam, "resident.away_ended", "resident:site-a-r0")]  # fmt: skip


def _rec(
    kind: DetectionKind, resident: str, device: str, started: float | None = None
) -> DetectionRecord:
    t = datetime.now(UTC).timestamp()
    start = round(t if started is None else started, 3)
    return DetectionRecord(
        kind=kind, subject=resident, condition="", time=t, started=start,
        resolved=started is not None,
        reason="no activity evidence for 4 h", details={}, site_id="site-a",
        resident_id=resident, device_id=device,
    )  # fmt: skip


def _store(db: Database, rec: DetectionRecord) -> None:
    """Through the analysis store's real write path and the incident intake hook."""
    with db.connect() as conn:
        PostgresStore._write(conn, [rec], [], [], intake.on_detections_stored)


def _rotate(env: Env, device_id: str) -> str:
    with env.client("root") as c:
        r = c.post(f"/devices/{device_id}/credentials/rotate")
        assert r.status_code == 200, r.text
        return str(r.json()["config"]["mqtt"]["password"])


def test_away_elder_no_activity_suppressed_but_a_button_press_raises(env: Env) -> None:
    today = _local_today().date()
    with env.client("fam-a") as c:
        r = c.post("/family/residents/site-a-r0/away",
                   json={"start_date": str(today), "end_date": str(today)})  # fmt: skip
        assert r.status_code == 201, r.text
    # the away elder's no-activity / not-up findings: stored, recorded as suppressed, no incident
    _store(env.db, _rec(DetectionKind.NO_ACTIVITY, "site-a-r0", "site-a-bs0"))
    _store(env.db, _rec(DetectionKind.NOT_UP, "site-a-r0", "site-a-bs0"))
    assert env.db.scalar("SELECT count(*) FROM incidents WHERE resident_id = 'site-a-r0'") == 0
    assert env.db.rows(
        "SELECT kind FROM away_suppressions WHERE resident_id = 'site-a-r0' ORDER BY id"
    ) == [("no_activity",), ("not_up",)]
    assert env.db.scalar(
        "SELECT count(*) FROM detections WHERE subject = 'site-a-r0' AND kind = 'no_activity'"
    ) == 1  # fmt: skip
    with env.client("fam-a") as c:
        assert c.get("/family/residents/site-a-r0/away").json()[0]["suppressed"] == 2
    # the elder at home next door: the same finding is an incident
    _store(env.db, _rec(DetectionKind.NO_ACTIVITY, "site-a-r1", "site-a-bs1"))
    assert env.db.rows("SELECT type FROM incidents WHERE resident_id = 'site-a-r1'") == [
        ("no_activity",)
    ]
    # the alarm guarantee: a real button press over MQTT raises an emergency incident
    password = _rotate(env, "site-a-bt0")
    _press(env.broker.port, "site-a-bt0", password, "site-a", "away-press-1")
    wait_until(lambda: len(_open_incidents(env.db, "site-a-r0")) == 1, 15, "emergency incident")
    assert env.db.rows("SELECT type FROM incidents WHERE resident_id = 'site-a-r0'") == [
        ("emergency_call",)
    ]
    # and a fall, too
    _store(env.db, _rec(DetectionKind.FALL, "site-a-r0", "site-a-wr0"))
    types = {
        r[0] for r in env.db.rows("SELECT type FROM incidents WHERE resident_id = 'site-a-r0'")
    }
    assert types == {"emergency_call", "fall"}
    assert env.db.scalar("SELECT count(*) FROM away_suppressions") == 2

    # back home early: the no-activity condition still going on raises its incident now
    with env.client("fam-a") as c:
        [period] = c.get("/family/residents/site-a-r0/away").json()
        assert c.post(f"/family/residents/site-a-r0/away/{period['id']}/end").status_code == 200
    rows = env.db.rows(
        "SELECT type, reason FROM incidents WHERE resident_id = 'site-a-r0' "
        "AND type IN ('no_activity', 'not_up') ORDER BY type"
    )
    assert [r[0] for r in rows] == ["no_activity", "not_up"]
    assert all("随家人外出" in r[1] for r in rows)
    assert env.db.scalar("SELECT count(*) FROM away_suppressions WHERE released_at IS NULL") == 0


def test_held_back_findings_raise_when_the_away_period_runs_out(env: Env) -> None:
    today = _local_today().date()
    with env.client("fam-a") as c:
        r = c.post("/family/residents/site-a-r0/away",
                   json={"start_date": str(today), "end_date": str(today)})  # fmt: skip
        assert r.status_code == 201, r.text
    going_on = _rec(DetectionKind.NO_ACTIVITY, "site-a-r0", "site-a-bs0")
    over = _rec(DetectionKind.NOT_UP, "site-a-r0", "site-a-bs0")
    _store(env.db, going_on)
    _store(env.db, over)
    _store(env.db, _rec(DetectionKind.NOT_UP, "site-a-r0", "site-a-bs0", started=over.started))
    assert env.db.scalar("SELECT count(*) FROM away_suppressions") == 2
    assert env.db.scalar("SELECT count(*) FROM incidents") == 0
    # A cell's releaser takes only its own sites' findings (seen inside one uncommitted
    # transaction, so the running gateway's releaser cannot take them meanwhile).
    with env.db.connect() as conn, conn.transaction(force_rollback=True):
        conn.execute("UPDATE away_periods SET ends_at = now() - interval '1 second'")
        now = datetime.now(UTC)
        assert family_away.unreleased_open(conn, now, ["site-b"]) == []
        assert len(family_away.unreleased_open(conn, now, ["site-a"])) == 1
        assert len(family_away.unreleased_open(conn, now)) == 1
    # the period runs out (moved into the past): the releaser raises what is still going on
    with env.db.connect() as conn:
        conn.execute("UPDATE away_periods SET starts_at = now() - interval '1 day', "
                     "ends_at = now() - interval '1 second'")  # fmt: skip
    wait_until(lambda: env.db.scalar("SELECT count(*) FROM incidents") == 1, 15, "incident")
    wait_until(
        lambda: env.db.scalar("SELECT count(*) FROM away_suppressions WHERE released_at IS NULL")
        == 0, 15, "released",
    )  # fmt: skip
    assert env.db.rows("SELECT type FROM incidents") == [("no_activity",)]
