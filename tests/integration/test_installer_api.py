"""The installer API (docs/installer-api.md) against a real gateway, Mosquitto and PostgreSQL.

Device credentials are proven at the broker with real MQTT connections: a registered device
connects with the configuration the API printed, a rotated or decommissioned one is refused.
Acceptance tests run in TEST MODE through the real ingest -> analysis -> intake path.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from devices import protocol as p
from gateway.api.auth import create_user
from gateway.brokerauth import ServiceAccount, hash_password
from gateway.commissioning import device_accounts
from gateway.storage import people
from tests.support import (
    PREFIX,
    Broker,
    Database,
    DeviceClient,
    InProcessGateway,
    access_token,
    bearer_client,
    broker_env,
    gateway_settings,
    make_site,
    wait_until,
)
from tests.unit.test_commissioning_pdf import pdf_text

pytestmark = pytest.mark.integration

PASSWORD = "pw-" + uuid.uuid4().hex[:12]
LADDER = """
[[ladder.tiers]]
name = "contacts"
audience = "contacts"
timeout_s = 600
"""


@dataclass
class Inst:
    gw: InProcessGateway
    db: Database
    broker: Broker
    tokens: dict[str, str]

    def client(self, who: str) -> httpx.Client:
        return bearer_client(self.gw.api_url, None if who == "anonymous" else self.tokens[who])


@pytest.fixture
def inst(db: Database, broker: Broker, tmp_path: Path) -> Iterator[Inst]:
    make_site(db, broker, site_id="site-a", beds=2)
    make_site(db, broker, site_id="site-b", beds=1)
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO contacts (contact_id, resident_id, kind, display_name, relation, "
            "email, channels) VALUES ('c1', 'site-a-r0', 'family', 'Daughter', 'daughter', "
            "'d@example.com', '[\"email\"]'::jsonb)"
        )
        create_user(conn, "inst-a", "installer", PASSWORD, site_id="site-a")
        create_user(conn, "inst-b", "installer", PASSWORD, site_id="site-b")
        create_user(conn, "duty-a", "duty_staff", PASSWORD, site_id="site-a")
        create_user(conn, "root", "admin", PASSWORD)
    ladder = tmp_path / "ladder.toml"
    ladder.write_text(LADDER)
    settings = gateway_settings(
        db, broker,
        SAFEHOME_INGEST__REGISTRY_REFRESH_S="0.5",
        SAFEHOME_ANALYSIS__REGISTRY_REFRESH_S="1",
        SAFEHOME_ESCALATION__LADDER_CONFIG=str(ladder),
        SAFEHOME_ESCALATION__POLL_INTERVAL_S="0.2",
        **broker_env(broker),
    )  # fmt: skip
    with InProcessGateway(settings) as gw:
        tokens = {}
        for who, name in (("installer", "inst-a"), ("installer_b", "inst-b"),
                          ("duty_staff", "duty-a"), ("admin", "root")):  # fmt: skip
            form = {"username": name, "password": PASSWORD}
            resp = httpx.post(f"{gw.api_url}/auth/token", data=form, timeout=10)
            assert resp.status_code == 200, resp.text
            tokens[who] = resp.json()["access_token"]
            if who == "installer":
                assert resp.json()["expires_in"] == 900  # api.installer_token_ttl_s (renewed)
            if who == "duty_staff":
                assert resp.json()["expires_in"] == 900
        yield Inst(gw, db, broker, tokens)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _topic(site: str, dev: str, channel: str) -> str:
    return f"{PREFIX}/v1/{site}/{dev}/{channel}"


def _login_refused(port: int, username: str, password: str) -> bool:
    with DeviceClient(port, username, password) as c:
        return c.refused


def _audit_reads(db: Database, actor: str, resident: str) -> int:
    return int(db.scalar(
        "SELECT count(*) FROM audit_log WHERE actor = %s AND action = 'health_data.read' "
        "AND target = %s", (actor, f"resident:{resident}"),
    ))  # fmt: skip


def _user_id(db: Database, name: str) -> str:
    return str(db.scalar("SELECT user_id FROM users WHERE username = %s", (name,)))


# -- registry ---------------------------------------------------------------------------------


def test_registry_crud_codes_errors_and_site_scoping(inst: Inst) -> None:
    with inst.client("installer") as c:
        sites = c.get("/sites").json()
        assert [s["site_id"] for s in sites] == ["site-a"]
        assert sites[0]["counts"] == {"locations": 2, "beds": 2, "residents": 2, "devices": 6}
        room = {"location_id": "room-201", "kind": "room", "label": "Room 201"}
        r = c.post("/sites/site-a/locations", json=room)
        assert r.status_code == 201, r.text
        assert c.post("/sites/site-a/locations", json=room).status_code == 409
        bad = c.post("/sites/site-a/beds", json={"bed_code": "B!", "location_id": "room-201"})
        assert bad.status_code == 422
        r = c.post("/sites/site-a/beds", json={"bed_code": "BED-0201", "location_id": "room-201"})
        assert r.status_code == 201, r.text
        assert r.json()["bed_id"] == "BED-0201" and r.json()["location_label"] == "Room 201"
        dup = c.post("/sites/site-a/beds", json={"bed_code": "BED-0201", "location_id": "room-201"})
        assert dup.status_code == 409 and "bed show BED-0201" in dup.json()["hint"]
        unknown_loc = c.post("/sites/site-a/beds",
                             json={"bed_code": "BED-0202", "location_id": "nowhere"})  # fmt: skip
        assert unknown_loc.status_code == 404 and "location create" in unknown_loc.json()["hint"]
        r = c.post("/sites/site-a/residents", json={
            "elder_code": "ELD-9001", "display_name": "Zhang San", "care_level": 3,
            "bed_code": "BED-0201"})  # fmt: skip
        assert r.status_code == 201, r.text
        assert r.json()["bed_code"] == "BED-0201"
        taken = c.post("/sites/site-a/residents", json={
            "elder_code": "ELD-9002", "display_name": "Li Si", "care_level": 1,
            "bed_code": "BED-0201"})  # fmt: skip
        assert taken.status_code == 409 and "ELD-9001" in taken.json()["detail"]
        assert "hint" in taken.json()
        nobed = c.post("/sites/site-a/residents", json={
            "elder_code": "ELD-9002", "display_name": "Li Si", "care_level": 1,
            "bed_code": "BED-NOPE"})  # fmt: skip
        assert nobed.status_code == 404 and "bed list" in nobed.json()["hint"]
        bed = c.get("/beds/BED-0201").json()  # lookup by code
        assert bed["elder_code"] == "ELD-9001" and bed["devices"] == []
        before = _audit_reads(inst.db, _user_id(inst.db, "inst-a"), "ELD-9001")
        res = c.get("/residents/ELD-9001/registry")  # lookup by elder code, audited
        assert res.status_code == 200 and res.json()["display_name"] == "Zhang San"
        assert _audit_reads(inst.db, _user_id(inst.db, "inst-a"), "ELD-9001") == before + 1
        moved = c.patch("/residents/ELD-9001", json={"bed": None, "care_level": 4})
        assert moved.status_code == 200 and moved.json()["bed_code"] is None
        assert moved.json()["care_level"] == 4
        assert c.patch("/beds/BED-0201", json={"bed_code": "BED-site-a-0000"}).status_code == 409
        assert c.patch("/sites/site-a", json={"name": "Xihu Home"}).json()["name"] == "Xihu Home"
        # Another site does not exist for this installer; an explicit ?site= is refused.
        for path in ("/sites/site-b", "/sites/site-b/beds", "/beds/BED-site-b-0000",
                     "/residents/ELD-site-b-0000/registry", "/locations/site-b-l0",
                     "/devices/site-b-bt0", "/sites/site-b/commissioning"):  # fmt: skip
            got = c.get(path)
            assert got.status_code == 404, (path, got.status_code)
        assert c.get("/status?site=site-b").status_code == 403
        assert c.post("/sites/site-b/beds", json={"bed_code": "BED-X01",
                      "location_id": "site-b-l0"}).status_code == 404  # fmt: skip
        assert c.post("/devices/site-b-bt0/unbind").status_code == 404
        own = c.post("/sites", json={"site_id": "site-z", "name": "Z", "kind": "nursing_home"})
        assert own.status_code == 403
    with inst.client("admin") as admin:
        assert admin.get("/beds/BED-site-b-0000").status_code == 200
        r = admin.post(
            "/sites", json={"site_id": "site-z", "name": "Z", "kind": "home_care_centre"}
        )
        assert r.status_code == 201 and r.json()["counts"]["beds"] == 0


def test_bulk_import_reports_every_bad_row_dry_run_and_atomic_apply(inst: Inst) -> None:
    def imp(c: httpx.Client, kind: str, text: str, dry: bool) -> httpx.Response:
        return c.post(f"/sites/site-a/import/{kind}?dry_run={str(dry).lower()}",
                      content=text.encode(), headers={"Content-Type": "text/csv"})  # fmt: skip

    beds_before = inst.db.scalar("SELECT count(*) FROM beds")
    with inst.client("installer") as c:
        locs = "location_id,kind,label,address\nw3-301,room,Room 301,\nw3-302,room,Room 302,\n"
        dry = imp(c, "locations", locs, True).json()
        assert dry == {"dry_run": True, "rows": 2, "created": 2, "updated": 0, "errors": []}
        assert inst.db.scalar("SELECT count(*) FROM locations WHERE location_id LIKE 'w3-%%'") == 0
        assert imp(c, "locations", locs, False).json()["created"] == 2
        beds = (
            "bed_code,location_id\n"
            "BED-3011,w3-301\n"          # line 2: fine
            "B!,w3-301\n"                # line 3: bad code
            "BED-3012,nowhere\n"         # line 4: unknown location
            "BED-3011,w3-302\n"          # line 5: repeats line 2
            "BED-site-b-0000,w3-302\n"   # line 6: another site's bed code
            "BED-3013\n"                 # line 7: too few fields
        )  # fmt: skip
        out = imp(c, "beds", beds, False).json()
        assert out["created"] == 0 and out["dry_run"] is False
        assert [e["line"] for e in out["errors"]] == [3, 4, 5, 6, 7]
        assert out["errors"][0]["column"] == "bed_code"
        assert "another site" in out["errors"][3]["message"]
        assert inst.db.scalar("SELECT count(*) FROM beds") == beds_before  # atomic: nothing
        good = "bed_code,location_id\nBED-3011,w3-301\nBED-3012,w3-302\n"
        assert imp(c, "beds", good, False).json()["created"] == 2
        again = imp(c, "beds", good, False).json()
        assert (again["created"], again["updated"]) == (0, 2)
        residents = (
            "elder_code,display_name,care_level,bed_code,lives_alone\n"
            'ELD-3011,"Wang\nWu",2,BED-3011,yes\n'  # lines 2-3: a quoted name spans two lines
            "ELD-3012,Zhao Liu,9,BED-3012,no\n"      # line 4: bad care level
            "ELD-3013,Sun Qi,1,BED-3011,no\n"        # line 5: bed given twice
            "ELD-3014,Zhou Ba,1,BED-3099,maybe\n"    # line 6: unknown bed, bad boolean
        )  # fmt: skip
        out = imp(c, "residents", residents, False).json()
        assert sorted({e["line"] for e in out["errors"]}) == [4, 5, 6]
        assert {e["column"] for e in out["errors"] if e["line"] == 6} == {"bed_code",
                                                                         "lives_alone"}  # fmt: skip
        assert (
            inst.db.scalar("SELECT count(*) FROM residents WHERE elder_code LIKE 'ELD-30%%'") == 0
        )
        header = imp(c, "residents", "elder_code,name\nELD-1,x\n", False).json()
        assert header["errors"][0]["line"] == 1 and "display_name" in header["errors"][0]["message"]
        ok = "elder_code,display_name,care_level,bed_code\nELD-3011,Wang Wu,2,BED-3011\n"
        assert imp(c, "residents", ok, False).json()["created"] == 1
        big = c.post("/sites/site-a/import/beds", content=b"\xff\xfe", headers={
            "Content-Type": "text/csv"})  # fmt: skip
        assert big.status_code == 422 and "UTF-8" in big.json()["detail"]
    assert (
        inst.db.scalar("SELECT bed_id FROM residents WHERE elder_code = 'ELD-3011'") == "BED-3011"
    )


# -- devices and the broker -----------------------------------------------------------------


def _register(c: httpx.Client, site: str = "site-a", **body: Any) -> dict[str, Any]:
    r = c.post(f"/sites/{site}/devices", json=body)
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    out: dict[str, Any] = r.json()
    return out


def _inject_as(inst: Inst, device_id: str, site: str, payload: bytes, channel: str) -> None:
    """Publish on a device's topic with a test-only injector account (like a rogue client)."""
    pw = uuid.uuid4().hex
    extra = [ServiceAccount("injector", hash_password(pw), can_inject=True)]
    with inst.db.connect() as conn:
        accounts = device_accounts(conn)
    inst.broker.server.set_accounts(PREFIX, inst.broker.service, accounts, extra)
    inst.broker.server.reload()
    wait_until(lambda: not _login_refused(inst.broker.port, "injector", pw), 5, "injector")
    with DeviceClient(inst.broker.port, "injector", pw) as inj:
        inj.publish(_topic(site, device_id, channel), payload)


def test_register_rotate_decommission_are_enforced_by_the_broker(inst: Inst) -> None:
    port = inst.broker.port
    with inst.client("installer") as c:
        out = _register(c, kind="button", model="BT9", serial="SN-0001", firmware="1.0")
        cfg = out["config"]
        dev = cfg["device_id"]
        assert dev == "btn-SN-0001" and out["device"]["active"] is True
        assert cfg["mqtt"]["username"] == dev and cfg["mqtt"]["client_id"] == dev
        assert (cfg["mqtt"]["host"], cfg["mqtt"]["port"], cfg["mqtt"]["tls"]) == (
            "127.0.0.1", port, False)  # fmt: skip
        assert cfg["mqtt"]["topic_prefix"] == f"{PREFIX}/v1/site-a/{dev}"
        assert cfg["protocol"] == 1 and cfg["heartbeat_interval_s"] == 300
        first = cfg["mqtt"]["password"]
        assert first not in inst.db.scalar(
            "SELECT mqtt_password_hash FROM devices WHERE device_id = %s", (dev,))  # fmt: skip
        again = c.post("/sites/site-a/devices",
                       json={"kind": "button", "model": "BT9", "serial": "SN-0001"})  # fmt: skip
        assert again.status_code == 409 and "device show btn-SN-0001" in again.json()["hint"]
        assert c.post("/sites/site-a/devices", json={"kind": "button", "model": "BT9",
                      "serial": "x", "device_id": "gateway"}).status_code == 409  # fmt: skip
        # The printed configuration works at the broker, and the gateway stores the press.
        with DeviceClient(port, dev, first) as d:
            assert not d.refused
            d.subscribe(_topic("site-a", dev, "ack"))
            d.publish(_topic("site-a", dev, "event"),
                      p.encode_event(dev, "p-1", 1, _now_ms(), event="press"))  # fmt: skip
            wait_until(lambda: bool(d.acks), 10, "ack of the press")
        rot = c.post(f"/devices/{dev}/credentials/rotate")
        assert rot.status_code == 200 and rot.headers["cache-control"] == "no-store"
        second = rot.json()["config"]["mqtt"]["password"]
        assert second != first
        assert _login_refused(port, dev, first)  # the old password is refused at once
        assert not _login_refused(port, dev, second)
        gone = c.post(f"/devices/{dev}/decommission", json={"reason": "test"})
        assert gone.status_code == 200 and gone.json()["active"] is False
        assert _login_refused(port, dev, second)  # the broker refuses the device now
        assert c.post(f"/devices/{dev}/decommission").status_code == 409
        assert c.post(f"/devices/{dev}/credentials/rotate").status_code == 409

    # Even if something got a message onto its topic, the running gateway refuses it, as a
    # decommissioned device's (issue 9 §3: counted under its own reason).
    def refused() -> bool:
        return bool(inst.db.scalar(
            "SELECT count(*) FROM dead_letters WHERE device_id = %s AND reason = 'decommissioned'",
            (dev,)))  # fmt: skip

    # The injector's publish is fire-and-forget (it may leave before the broker has it): try
    # again with a new message id until one arrives (failed once in CI that way). A press that
    # reaches the gateway before its registry has taken in the decommission may still be
    # stored (the broker refuses the device itself at once, see above): what is checked is
    # that a refused press is never also stored.
    sent: dict[bytes, str] = {}
    for attempt in range(3):
        msg_id = f"p-{attempt + 2}"
        payload = p.encode_event(dev, msg_id, attempt + 2, _now_ms(), event="press")
        sent[payload] = msg_id
        _inject_as(inst, dev, "site-a", payload, "event")
        with contextlib.suppress(AssertionError):
            wait_until(refused, 10, "dead letter")
            break
    assert refused(), "the decommissioned device's press was not refused and counted"
    refused_ids = {
        sent[bytes(row[0])]
        for row in inst.db.rows(
            "SELECT payload FROM dead_letters WHERE device_id = %s AND reason = 'decommissioned'",
            (dev,),
        )
        if bytes(row[0]) in sent
    }
    stored = {row[0] for row in inst.db.rows(
        "SELECT msg_id FROM device_events WHERE device_id = %s", (dev,))}  # fmt: skip
    assert refused_ids and "p-1" in stored and not stored & refused_ids, (refused_ids, stored)


def test_register_without_a_managed_broker_is_503_with_a_hint(db: Database, broker: Broker) -> None:
    make_site(db, broker, site_id="site-a", beds=1)
    with db.connect() as conn:
        create_user(conn, "root", "admin", PASSWORD)
    with InProcessGateway(gateway_settings(db, broker)) as gw:
        token = access_token(gw.api_url, "root", PASSWORD)
        r = httpx.post(f"{gw.api_url}/sites/site-a/devices",
                       json={"kind": "button", "model": "M", "serial": "S1"},
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert r.status_code == 503 and "broker.passwd_path" in r.json()["hint"]
    assert db.scalar("SELECT count(*) FROM devices WHERE serial = 'S1'") == 0


def _press(port: int, dev: str, password: str, site: str, msg_id: str) -> None:
    with DeviceClient(port, dev, password) as d:
        assert not d.refused
        d.subscribe(_topic(site, dev, "ack"))
        event = p.encode_event(dev, msg_id, int(time.time()), _now_ms(), event="press")
        d.publish(_topic(site, dev, "event"), event)
        wait_until(lambda: bool(d.acks), 10, f"ack of {msg_id}")


def _open_incidents(db: Database, resident: str) -> list[tuple[Any, ...]]:
    return db.rows(
        "SELECT id, trigger_count FROM incidents WHERE resident_id = %s AND state = 'raised'",
        (resident,),
    )


def test_bind_conflicts_and_replace_keeps_incidents_with_the_resident(inst: Inst) -> None:
    port = inst.broker.port
    with inst.client("installer") as c:
        new = _register(c, kind="button", model="BT9", serial="SN-0100")
        dev, pw = new["config"]["device_id"], new["config"]["mqtt"]["password"]
        busy = c.post(f"/devices/{dev}/bind", json={"bed": "BED-site-a-0000"})
        assert busy.status_code == 409 and "site-a-bt0" in busy.json()["detail"]
        assert "unbind" in busy.json()["hint"]
        assert c.post(f"/devices/{dev}/bind", json={"bed": "BED-NOPE"}).status_code == 404
        assert c.post(f"/devices/{dev}/bind", json={"bed": "BED-site-b-0000"}).status_code == 404
        assert c.post(f"/devices/{dev}/bind", json={}).status_code == 422
        spare = {"bed_code": "BED-0300", "location_id": "site-a-l1"}
        assert c.post("/sites/site-a/beds", json=spare).status_code == 201
        bound = c.post(f"/devices/{dev}/bind", json={"bed": "BED-0300"})
        assert bound.status_code == 200 and bound.json()["bed_code"] == "BED-0300"
        assert bound.json()["location_id"] == "site-a-l1"
        elsewhere = c.post(f"/devices/{dev}/bind", json={"bed": "BED-site-a-0000"})
        assert elsewhere.status_code == 409
        assert elsewhere.json()["hint"] == f"unbind it first: safehome device unbind {dev}"
        assert c.post(f"/devices/{dev}/unbind").json()["bed_id"] is None
        assert c.post(f"/devices/{dev}/bind", json={"resident": "ELD-site-a-0001"}).json()[
            "resident_id"] == "site-a-r1"  # fmt: skip
    # A real press from the old button raises an incident for the resident of bed 0.
    creds = _site_a_password(inst, "site-a-bt0")
    _press(port, "site-a-bt0", creds, "site-a", "old-1")
    wait_until(lambda: len(_open_incidents(inst.db, "site-a-r0")) == 1, 15, "incident")
    ((incident_id, _),) = _open_incidents(inst.db, "site-a-r0")
    with inst.client("installer") as c:
        rep = c.post("/devices/site-a-bt0/replace", json={"serial": "SN-0200"})
        assert rep.status_code == 201, rep.text
        body = rep.json()
        assert body["old"]["active"] is False and body["old"]["replaced_by"] == "btn-SN-0200"
        assert body["new"]["bed_code"] == "BED-site-a-0000" and body["new"]["model"] == "BT1"
        new_dev, new_pw = body["config"]["device_id"], body["config"]["mqtt"]["password"]
    assert _login_refused(port, "site-a-bt0", creds)
    # The new button's press joins the resident's open incident: it stayed with the resident.
    _press(port, new_dev, new_pw, "site-a", "new-1")
    wait_until(lambda: _open_incidents(inst.db, "site-a-r0") == [(incident_id, 2)], 15, "join")
    assert inst.db.scalar("SELECT count(*) FROM incidents WHERE resident_id = 'site-a-r0'") == 1
    assert dev != new_dev and pw


def _site_a_password(inst: Inst, device_id: str) -> str:
    """A make_site device gets a new password through the API (its first is not kept)."""
    with inst.client("admin") as c:
        r = c.post(f"/devices/{device_id}/credentials/rotate")
        assert r.status_code == 200, r.text
        return str(r.json()["config"]["mqtt"]["password"])


# -- acceptance tests -----------------------------------------------------------------------


def _progress(c: httpx.Client, test_id: str) -> dict[str, Any]:
    r = c.get(f"/acceptance/{test_id}")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _step(view: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in view["steps"] if s["name"] == name)


def test_button_acceptance_in_test_mode_pages_nobody_and_leaves_a_record(inst: Inst) -> None:
    port = inst.broker.port
    pw = _site_a_password(inst, "site-a-bt0")
    with inst.client("installer") as c:
        start = c.post("/devices/site-a-bt0/acceptance", json={"timeout_s": 120})
        assert start.status_code == 201, start.text
        test_id = start.json()["test_id"]
        assert [s["name"] for s in start.json()["steps"]] == ["press", "no_page"]
        assert c.get("/devices/site-a-bt0").json()["running_test"] == test_id
        again = c.post("/devices/site-a-bt0/acceptance")
        assert again.status_code == 409 and "--abort" in again.json()["hint"]
        assert _progress(c, test_id)["status"] == "running"
        _press(port, "site-a-bt0", pw, "site-a", "t-1")
        wait_until(lambda: _progress(c, test_id)["observations"] != [], 15, "observation")
        view = _progress(c, test_id)
        press = _step(view, "press")
        assert press["status"] == "passed" and press["observed"]["incident_suppressed"] is True
        assert 0 <= press["latency_ms"] < 10_000
        assert _step(view, "no_page")["status"] == "passed"
        assert view["status"] == "passed" and view["family_notified"] is False
        assert view["observations"][0]["kind"] == "emergency_call"
        record = c.post(f"/acceptance/{test_id}/finish", json={"notes": "button by the bed"})
        assert record.status_code == 200, record.text
        rec = record.json()
        assert rec["result"] == "passed" and rec["installer"] == _user_id(inst.db, "inst-a")
        assert rec["device_id"] == "site-a-bt0" and rec["bed_code"] == "BED-site-a-0000"
        assert rec["steps"][0]["latency_ms"] == press["latency_ms"]
        assert c.post(f"/acceptance/{test_id}/finish").status_code == 409
        status = c.get("/status?device=site-a-bt0").json()[0]
        assert status["last_commissioning"]["result"] == "passed"
        listed = c.get("/sites/site-a/commissioning").json()
        assert [r["test_id"] for r in listed] == [test_id]
        csv_text = c.get("/sites/site-a/commissioning?format=csv").text
        assert csv_text.splitlines()[0].startswith("record_id,test_id,device_id")
        assert "press=passed (" in csv_text and "button by the bed" in csv_text
        with inst.db.connect() as conn:
            people.set_display_name(conn, _user_id(inst.db, "inst-a"), "张丽", actor="test")
        pdf = c.get("/sites/site-a/commissioning?format=pdf")
        assert pdf.headers["content-type"] == "application/pdf" and pdf.content[:5] == b"%PDF-"
        text = pdf_text(pdf.content)  # the installer by name, every step, zh-CN, signatures
        assert "张丽" in text and _user_id(inst.db, "inst-a") not in text and "inst-a" not in text
        assert "press: 通过" in text and "no_page: 通过" in text and "安装人员签字" in text
        english = pdf_text(c.get("/sites/site-a/commissioning?format=pdf&lang=en").content)
        assert "no_page: passed" in english and "Installer's signature" in english
        with inst.client("installer_b") as other:
            assert other.get(f"/acceptance/{test_id}").status_code == 404
    # Nothing was raised nor sent during the test ...
    assert _open_incidents(inst.db, "site-a-r0") == []
    assert inst.db.scalar("SELECT count(*) FROM notification_outbox") == 0
    # ... and once test mode is over the same press raises a real incident and pages family.
    _press(port, "site-a-bt0", pw, "site-a", "real-1")
    wait_until(lambda: len(_open_incidents(inst.db, "site-a-r0")) == 1, 15, "real incident")
    wait_until(lambda: inst.db.scalar("SELECT count(*) FROM notification_outbox") >= 1, 15,
               "family notification")  # fmt: skip


def test_bed_sensor_and_wearable_acceptance_and_a_failed_test(inst: Inst) -> None:
    port = inst.broker.port
    bs_pw = _site_a_password(inst, "site-a-bs1")
    wr_pw = _site_a_password(inst, "site-a-wr1")
    with inst.client("installer") as c:
        bed_test = c.post("/devices/site-a-bs1/acceptance").json()["test_id"]
        wr_test = c.post("/devices/site-a-wr1/acceptance").json()["test_id"]
        with DeviceClient(port, "site-a-bs1", bs_pw) as bed:
            t = _now_ms()
            seq = 0
            for presence, hr, rr in [(False, None, None)] * 2 + [(True, 64.0, 15.0)] * 3 + [
                    (False, None, None)] * 2:  # fmt: skip
                seq += 1
                vitals = p.encode_vitals("site-a-bs1", f"v{seq}", seq, t + seq * 1000,
                                         presence=presence, hr=hr, rr=rr, movement=0.1)  # fmt: skip
                bed.publish(_topic("site-a", "site-a-bs1", "telemetry"), vitals)
            bed.publish(_topic("site-a", "site-a-bs1", "state"), p.encode_state(
                "site-a-bs1", "st1", seq + 1, t, online=True, fw="2.3.1", rssi=-61))  # fmt: skip
        wait_until(lambda: _progress(c, bed_test)["status"] == "passed", 15, "bed sensor steps")
        view = _progress(c, bed_test)
        assert _step(view, "vitals")["observed"]["heart_rate"] == 64.0
        assert all("latency_ms" in s for s in view["steps"])
        with DeviceClient(port, "site-a-wr1", wr_pw) as wr:
            t = _now_ms()
            topic = _topic("site-a", "site-a-wr1", "telemetry")
            wr.publish(topic, p.encode_heartbeat("site-a-wr1", "h1", 1, t, battery=77, worn=True))
            wr.publish(topic, p.encode_hr("site-a-wr1", "hr1", 2, t + 100, hr=72.0))
            acc = np.zeros((50, 3))
            acc[:, 2] = 1.0
            acc[20] = [2.0, 2.0, 1.0]  # |a| = 3 g: a shake
            wr.publish(topic, p.encode_accel("site-a-wr1", "a1", 3, t + 200, samples=acc))
        wait_until(lambda: _progress(c, wr_test)["status"] == "passed", 15, "wearable steps")
        motion = _step(_progress(c, wr_test), "motion")
        assert motion["observed"]["peak_g"] == pytest.approx(3.0, abs=0.01)
        for test_id in (bed_test, wr_test):
            assert c.post(f"/acceptance/{test_id}/finish").json()["result"] == "passed"
        rows = {r["device_id"]: r for r in c.get("/status?site=site-a").json()}
        assert rows["site-a-bs1"]["firmware"] == "2.3.1" and rows["site-a-bs1"]["signal"] == -61
        assert rows["site-a-wr1"]["battery"] == 77 and rows["site-a-wr1"]["online"] is True
        assert rows["site-a-wr1"]["last_commissioning"]["result"] == "passed"
        assert rows["site-a-bs0"]["last_commissioning"] is None
        assert [r["device_id"] for r in c.get("/status?bed=BED-site-a-0001").json()] == [
            "site-a-bs1", "site-a-bt1"]  # fmt: skip
        # A test where nothing happens fails every step; an aborted one is recorded as such.
        quiet = c.post("/devices/site-a-bs0/acceptance").json()["test_id"]
        rec = c.post(f"/acceptance/{quiet}/finish").json()
        assert rec["result"] == "failed" and {s["status"] for s in rec["steps"]} == {"failed"}
        aborted = c.post("/devices/site-a-bs0/acceptance").json()["test_id"]
        assert c.post(f"/acceptance/{aborted}/finish", json={"abort": True}).json()[
            "result"] == "aborted"  # fmt: skip
        assert c.post("/devices/site-a-bs0/acceptance", json={"timeout_s": 1}).status_code == 422


def test_broker_failure_changes_nothing_and_says_so(inst: Inst) -> None:
    before = (inst.broker.server.directory / "passwd").read_text()
    inst.broker.server.stop()  # the gateway cannot reload it: registration must not happen
    try:
        with inst.client("installer") as c:
            r = c.post("/sites/site-a/devices",
                       json={"kind": "wearable", "model": "WR9", "serial": "SN-0900"})  # fmt: skip
            assert r.status_code == 503, r.text
            assert "nothing changed" in r.json()["detail"] and "broker" in r.json()["hint"]
            rot = c.post("/devices/site-a-wr0/credentials/rotate")
            assert rot.status_code == 503
    finally:
        inst.broker.server.start()
    assert inst.db.scalar("SELECT count(*) FROM devices WHERE serial = 'SN-0900'") == 0
    after = (inst.broker.server.directory / "passwd").read_text()
    # The files were restored from the committed registry (same accounts as before, plus the
    # gateway's reload canary, which has no ACL entry).
    users = [line.split(":")[0] for line in after.splitlines()]
    assert "wr-SN-0900" not in users and "gateway-reload" in users
    assert [u for u in users if u != "gateway-reload"] == [
        line.split(":")[0] for line in before.splitlines()
    ]
    assert "user gateway-reload" not in (inst.broker.server.directory / "acl").read_text()


def test_test_mode_ends_when_the_test_expires(inst: Inst) -> None:
    port = inst.broker.port
    pw = _site_a_password(inst, "site-a-bt1")
    with inst.client("installer") as c:
        test_id = c.post("/devices/site-a-bt1/acceptance", json={"timeout_s": 10}).json()[
            "test_id"]  # fmt: skip
        wait_until(lambda: _progress(c, test_id)["status"] == "expired", 20, "expiry", 0.5)
        view = _progress(c, test_id)
        assert view["test_mode"] is False
        assert {s["status"] for s in view["steps"]} == {"failed"}
        assert c.get("/devices/site-a-bt1").json()["running_test"] is None
        # Out of test mode, a press is a real call for help again.
        _press(port, "site-a-bt1", pw, "site-a", "after-expiry")
        wait_until(lambda: len(_open_incidents(inst.db, "site-a-r1")) == 1, 15, "incident")
        rec = c.post(f"/acceptance/{test_id}/finish").json()
        assert rec["result"] == "failed"
        assert rec["finished_at"] == view["expires_at"]  # the window closed at the expiry
        # A new test may start once the old one is over.
        assert c.post("/devices/site-a-bt1/acceptance").status_code == 201


def _cancel(port: int, dev: str, password: str, site: str, msg_id: str) -> None:
    """The wearer's "I'm OK" from ``dev``, once the gateway acked it."""
    with DeviceClient(port, dev, password) as d:
        assert not d.refused
        d.subscribe(_topic(site, dev, "ack"))
        event = p.encode_event(dev, msg_id, int(time.time()), _now_ms(), event="cancel")
        d.publish(_topic(site, dev, "event"), event)
        wait_until(lambda: bool(d.acks), 10, f"ack of {msg_id}")


def _incident_state(db: Database, incident_id: int) -> str:
    return str(db.scalar("SELECT state FROM incidents WHERE id = %s", (incident_id,)))


def test_a_cancel_from_a_device_under_test_cancels_no_real_alarm(inst: Inst) -> None:
    port = inst.broker.port
    bt_pw = _site_a_password(inst, "site-a-bt0")
    wr_pw = _site_a_password(inst, "site-a-wr0")
    # A real call for help from the resident's button: open, within its cancel window.
    _press(port, "site-a-bt0", bt_pw, "site-a", "real-call")
    wait_until(lambda: len(_open_incidents(inst.db, "site-a-r0")) == 1, 15, "the real call")
    ((incident_id, _),) = _open_incidents(inst.db, "site-a-r0")
    with inst.client("installer") as c:
        test_id = c.post("/devices/site-a-wr0/acceptance", json={"timeout_s": 60}).json()[
            "test_id"]  # fmt: skip
        # The installer presses "I'm OK" on the wearable under test: a test observation ...
        _cancel(port, "site-a-wr0", wr_pw, "site-a", "test-cancel")
        wait_until(lambda: _progress(c, test_id)["observations"] != [], 15, "observation")
        observed = _progress(c, test_id)["observations"]
        assert [o["kind"] for o in observed] == ["resident_cancel"]
        assert "no alarm cancelled" in observed[0]["reason"]
        # ... and the resident's real call stays open (the intake ran: the observation is it).
        assert _incident_state(inst.db, incident_id) == "raised"
        record = c.post(f"/acceptance/{test_id}/finish", json={"abort": True}).json()
        assert record["result"] == "aborted"
    # Out of test mode, the same device's "I'm OK" cancels the call (still in its window).
    _cancel(port, "site-a-wr0", wr_pw, "site-a", "real-cancel")
    wait_until(lambda: _incident_state(inst.db, incident_id) == "cancelled", 15, "the cancel")
    assert (
        inst.db.scalar(
            "SELECT count(*) FROM acceptance_observations WHERE test_id = %s", (test_id,)
        )
        == 1
    )
