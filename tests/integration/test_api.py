"""The HTTP API against a real gateway (real server, real PostgreSQL): auth and role rules."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from gateway.api.app import build_app
from gateway.api.auth import (
    MIN_SECRET_LENGTH,
    PUBLIC_ROLE,
    ROLES_KEY,
    AuthError,
    Principal,
    UserRole,
    check_jwt_secret,
    create_user,
    issue_token,
)
from gateway.runtime import GatewayError
from gateway.settings import load_settings
from gateway.workflow.service import IncidentService, Trigger
from gateway.workflow.transitions import IncidentType
from tests.support import (
    Broker,
    Database,
    InProcessGateway,
    bearer_client,
    gateway_settings,
    make_site,
    settings_env,
)

pytestmark = pytest.mark.integration

SECRET = "test-secret-" + uuid.uuid4().hex + uuid.uuid4().hex
PASSWORD = "pw-" + uuid.uuid4().hex[:12]
ROLES = ("anonymous", "duty_staff", "supervisor", "family", "installer", "admin")


@dataclass
class Env:
    """A running gateway with two sites, users of every role, and incidents."""

    gw: InProcessGateway
    db: Database
    tokens: dict[str, str]
    inc_a: int
    inc_b: int

    def client(self, who: str) -> httpx.Client:
        return bearer_client(self.gw.api_url, None if who == "anonymous" else self.tokens[who])


def _raise(db: Database, site: str, resident: str, kind: IncidentType) -> int:
    with db.connect() as conn:
        incident, _ = IncidentService(conn).raise_or_join(
            Trigger(kind, site, datetime.now(UTC), "test trigger", resident_id=resident)
        )
    return incident.id


def _token(base_url: str, username: str, password: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/auth/token", data={"username": username, "password": password}, timeout=10
    )


@pytest.fixture
def env(db: Database, broker: Broker) -> Iterator[Env]:
    make_site(db, broker, site_id="site-a", beds=2)
    make_site(db, broker, site_id="site-b", beds=1)
    with db.connect() as conn:
        conn.execute(
            "UPDATE residents SET consent_family_health = true WHERE resident_id = 'site-a-r0'"
        )
        conn.execute(
            "INSERT INTO readings (time, device_id, msg_id, seq, type, presence, heart_rate, "
            "breathing_rate, received_at) VALUES (now(), 'site-a-bs0', 'm1', 1, 'vitals', true, "
            "62, 14, now())"
        )
        conn.execute(
            "INSERT INTO contacts (contact_id, resident_id, kind, display_name, relation, phone) "
            "VALUES ('c1', 'site-a-r0', 'family', 'Daughter', 'daughter', '13800000000')"
        )
        create_user(conn, "duty-a", "duty_staff", PASSWORD, site_id="site-a")
        create_user(conn, "sup-a", "supervisor", PASSWORD, site_id="site-a")
        create_user(conn, "inst-a", "installer", PASSWORD, site_id="site-a")
        create_user(conn, "root", "admin", PASSWORD)
        create_user(conn, "fam-b", "family", PASSWORD, residents=["site-b-r0"])
    settings = gateway_settings(db, broker, SAFEHOME_API__JWT_SECRET=SECRET)
    # The family user comes from the CLI: password on stdin.
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOME_")}
    cli_env.update(settings_env(settings))
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "user", "add", "--username", "fam-a",
         "--role", "family", "--resident", "site-a-r0"],
        check=False, input=PASSWORD + "\n", env=cli_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    inc_a = _raise(db, "site-a", "site-a-r0", IncidentType.FALL)
    inc_b = _raise(db, "site-b", "site-b-r0", IncidentType.EMERGENCY_CALL)
    with InProcessGateway(settings) as gw:
        names = {"duty_staff": "duty-a", "supervisor": "sup-a", "family": "fam-a",
                 "installer": "inst-a", "admin": "root"}  # fmt: skip
        tokens = {}
        for role, name in names.items():
            resp = _token(gw.api_url, name, PASSWORD)
            assert resp.status_code == 200, resp.text
            assert resp.json()["role"] == role
            tokens[role] = resp.json()["access_token"]
        yield Env(gw, db, tokens, inc_a, inc_b)


# Expected status per role: anonymous, duty_staff, supervisor, family, installer, admin.
GET_MATRIX: list[tuple[str, tuple[int, ...]]] = [
    ("/health", (200, 200, 200, 200, 200, 200)),
    ("/metrics", (200, 200, 200, 200, 200, 200)),
    ("/openapi.json", (200, 200, 200, 200, 200, 200)),
    ("/docs", (200, 200, 200, 200, 200, 200)),
    ("/incidents", (401, 200, 200, 403, 403, 200)),
    ("/incidents?site=site-b", (401, 403, 403, 403, 403, 200)),
    ("/incidents/{inc_a}", (401, 200, 200, 403, 403, 200)),
    ("/incidents/{inc_b}", (401, 404, 404, 403, 403, 200)),
    ("/incidents/999999", (401, 404, 404, 403, 403, 404)),
    ("/residents/site-a-r0", (401, 200, 200, 403, 403, 200)),
    ("/residents/site-b-r0", (401, 404, 404, 403, 403, 200)),
    ("/reports/sla?month=2026-11", (401, 403, 200, 403, 403, 422)),
    ("/reports/sla?site=site-b&month=2026-11", (401, 403, 403, 403, 403, 200)),
    ("/reports/sla?site=site-a&month=2026-13", (401, 403, 422, 403, 403, 422)),
    ("/reports/sla?site=nowhere&month=2026-11", (401, 403, 403, 403, 403, 404)),
    ("/family/residents", (401, 403, 403, 200, 403, 403)),
    ("/family/residents/site-a-r0", (401, 403, 403, 200, 403, 403)),
    ("/family/residents/site-b-r0", (401, 403, 403, 404, 403, 403)),
    ("/family/residents/site-a-r1", (401, 403, 403, 404, 403, 403)),
    ("/family/residents/no-such-resident", (401, 403, 403, 404, 403, 403)),
    ("/devices", (401, 403, 403, 403, 200, 200)),
    ("/devices?site=site-b", (401, 403, 403, 403, 403, 200)),
    ("/incidents/stream", (401, 200, 200, 403, 403, 200)),
    # Installer routes (docs/installer-api.md): installers on their own site, admins any.
    ("/sites", (401, 403, 403, 403, 200, 200)),
    ("/sites/site-a", (401, 403, 403, 403, 200, 200)),
    ("/sites/site-b", (401, 403, 403, 403, 404, 200)),
    ("/sites/nowhere", (401, 403, 403, 403, 404, 404)),
    ("/sites/site-a/locations", (401, 403, 403, 403, 200, 200)),
    ("/sites/site-b/locations", (401, 403, 403, 403, 404, 200)),
    ("/locations/site-a-l0", (401, 403, 403, 403, 200, 200)),
    ("/locations/site-b-l0", (401, 403, 403, 403, 404, 200)),
    ("/sites/site-a/beds", (401, 403, 403, 403, 200, 200)),
    ("/sites/site-b/beds", (401, 403, 403, 403, 404, 200)),
    ("/beds/BED-site-a-0000", (401, 403, 403, 403, 200, 200)),
    ("/beds/site-a-b0", (401, 403, 403, 403, 200, 200)),
    ("/beds/BED-site-b-0000", (401, 403, 403, 403, 404, 200)),
    ("/beds/no-such-bed", (401, 403, 403, 403, 404, 404)),
    ("/sites/site-a/residents", (401, 403, 403, 403, 200, 200)),
    ("/sites/site-b/residents", (401, 403, 403, 403, 404, 200)),
    ("/residents/ELD-site-a-0000/registry", (401, 403, 403, 403, 200, 200)),
    ("/residents/site-b-r0/registry", (401, 403, 403, 403, 404, 200)),
    ("/devices/site-a-bt0", (401, 403, 403, 403, 200, 200)),
    ("/devices/site-b-bt0", (401, 403, 403, 403, 404, 200)),
    ("/devices/no-such-device", (401, 403, 403, 403, 404, 404)),
    ("/status", (401, 403, 403, 403, 200, 200)),
    ("/status?site=site-b", (401, 403, 403, 403, 403, 200)),
    ("/status?bed=BED-site-a-0000", (401, 403, 403, 403, 200, 200)),
    ("/sites/site-a/commissioning", (401, 403, 403, 403, 200, 200)),
    ("/sites/site-a/commissioning?format=csv", (401, 403, 403, 403, 200, 200)),
    ("/sites/site-a/commissioning?format=pdf", (401, 403, 403, 403, 200, 200)),
    ("/sites/site-b/commissioning", (401, 403, 403, 403, 404, 200)),
    ("/acceptance/at-nope", (401, 403, 403, 403, 404, 404)),
    # Staff paging channels (admin only); the ack link is public, its token the credential.
    ("/users/duty-a/channels", (401, 403, 403, 403, 403, 200)),
    ("/users/nobody/channels", (401, 403, 403, 403, 403, 404)),
    ("/ack/not-a-token", (404, 404, 404, 404, 404, 404)),
]

# Installer routes that change something: (method, path with {s} = site, {d} = device, body).
# Only installers and admins may call them; an installer acting on another site gets 404.
INSTALLER_WRITES: list[tuple[str, str, Any]] = [
    ("POST", "/sites/{s}/locations", {"location_id": "x-l9", "kind": "room", "label": "9"}),
    ("PATCH", "/sites/{s}", {"name": "renamed"}),
    ("PATCH", "/locations/{s}-l0", {"label": "renamed"}),
    ("POST", "/sites/{s}/beds", {"bed_code": "BED-X999", "location_id": "{s}-l0"}),
    ("PATCH", "/beds/{s}-b0", {"location_id": "{s}-l0"}),
    ("POST", "/sites/{s}/residents", {"elder_code": "ELD-X999", "display_name": "X",
                                      "care_level": 1}),
    ("PATCH", "/residents/{s}-r0", {"care_level": 2}),
    ("POST", "/sites/{s}/import/beds?dry_run=true", None),
    ("POST", "/sites/{s}/devices", {"kind": "button", "model": "M", "serial": "S-X"}),
    ("POST", "/devices/{d}/credentials/rotate", None),
    ("POST", "/devices/{d}/decommission", None),
    ("POST", "/devices/{d}/bind", {"bed": "{s}-b0"}),
    ("POST", "/devices/{d}/unbind", None),
    ("POST", "/devices/{d}/replace", {"serial": "S-Y"}),
    ("POST", "/devices/{d}/acceptance", None),
    ("POST", "/acceptance/at-nope/finish", None),
]  # fmt: skip


def _fill(value: Any, site: str) -> Any:
    if isinstance(value, str):
        return value.format(s=site, d=f"{site}-bt0")
    if isinstance(value, dict):
        return {k: _fill(v, site) for k, v in value.items()}
    return value


def test_installer_writes_by_role_and_site(env: Env) -> None:
    failures = []
    for method, path_t, body_t in INSTALLER_WRITES:
        for who in ("anonymous", "duty_staff", "supervisor", "family"):
            path, body = _fill(path_t, "site-a"), _fill(body_t, "site-a")
            with env.client(who) as c:
                got = c.request(method, path, json=body).status_code
            want = 401 if who == "anonymous" else 403
            if got != want:
                failures.append(f"{who} {method} {path}: {got}, expected {want}")
        path, body = _fill(path_t, "site-b"), _fill(body_t, "site-b")
        with env.client("installer") as c:  # site-a's installer on site-b's objects
            got = c.request(method, path, json=body).status_code
        if got != 404:
            failures.append(f"installer {method} {path}: {got}, expected 404")
    with env.client("installer") as c:
        site_b = {"site_id": "site-b", "name": "B", "kind": "nursing_home"}
        if (code := c.post("/sites", json=site_b).status_code) != 403:
            failures.append(f"installer POST /sites for site-b: {code}, expected 403")
    for who in ("anonymous", "duty_staff", "supervisor", "family"):
        with env.client(who) as c:
            new = {"site_id": "s-new", "name": "N", "kind": "nursing_home"}
            code = c.post("/sites", json=new).status_code
        want = 401 if who == "anonymous" else 403
        if code != want:
            failures.append(f"{who} POST /sites: {code}, expected {want}")
    assert not failures, "\n".join(failures)
    assert env.db.scalar("SELECT count(*) FROM locations WHERE location_id = 'x-l9'") == 0
    assert env.db.scalar("SELECT name FROM sites WHERE site_id = 'site-b'") == "Site site-b"


def test_every_role_against_every_route(env: Env) -> None:
    failures = []
    for path_t, expected in GET_MATRIX:
        path = path_t.format(inc_a=env.inc_a, inc_b=env.inc_b)
        for who, want in zip(ROLES, expected, strict=True):
            with env.client(who) as c, c.stream("GET", path) as resp:
                got = resp.status_code  # the stream's headers only; not read to the end
            if got != want:
                failures.append(f"{who} GET {path}: {got}, expected {want}")
    for action, body in [
        ("acknowledge", None),
        ("dispatch", {"responder": "staff-9"}),
        ("on-scene", None),
        ("resolve", {"outcome": "assisted"}),
        ("close", None),
        ("cancel", {"reason": "test"}),
    ]:
        for who in ("anonymous", "family", "installer"):
            with env.client(who) as c:
                got = c.post(f"/incidents/{env.inc_a}/{action}", json=body).status_code
            want = 401 if who == "anonymous" else 403
            if got != want:
                failures.append(f"{who} POST {action}: {got}, expected {want}")
        with env.client("supervisor") as c:  # another site's incident does not exist for them
            got = c.post(f"/incidents/{env.inc_b}/{action}", json=body).status_code
        if got != 404:
            failures.append(f"supervisor POST {action} on site-b: {got}, expected 404")
    # User management (admins only); an unknown user is 404 for them.
    for action, body in [("deactivate", None), ("reactivate", None),
                         ("password", {"password": "long-enough-password"})]:  # fmt: skip
        for who, want in zip(ROLES, (401, 403, 403, 403, 403, 404), strict=True):
            with env.client(who) as c:
                got = c.post(f"/users/no-such-user/{action}", json=body).status_code
            if got != want:
                failures.append(f"{who} POST /users/no-such-user/{action}: {got}, expected {want}")
    with env.client("anonymous") as c:
        if (got := c.post("/auth/logout").status_code) != 401:
            failures.append(f"anonymous POST /auth/logout: {got}, expected 401")
    with env.client("duty_staff") as c:  # duty staff may not close or cancel
        for action, body in [("close", None), ("cancel", {"reason": "x"})]:
            got = c.post(f"/incidents/{env.inc_a}/{action}", json=body).status_code
            if got != 403:
                failures.append(f"duty_staff POST {action}: {got}, expected 403")
    assert not failures, "\n".join(failures)


def test_staff_lifecycle_with_conflicts_and_timeline(env: Env) -> None:
    inc = env.inc_a
    with env.client("duty_staff") as staff, env.client("supervisor") as sup:
        listed = staff.get("/incidents").json()
        assert [i["id"] for i in listed] == [inc]  # own site only, open
        assert staff.post(f"/incidents/{inc}/dispatch", json={"responder": "r"}).status_code == 409
        ack = staff.post(f"/incidents/{inc}/acknowledge")
        assert ack.status_code == 200 and ack.json()["state"] == "acknowledged"
        again = staff.post(f"/incidents/{inc}/acknowledge")
        assert again.status_code == 409
        assert "acknowledged" in again.json()["detail"]
        resp = staff.post(f"/incidents/{inc}/dispatch", json={"responder": "staff-9"})
        assert resp.json()["responder"] == "staff-9"
        assert staff.post(f"/incidents/{inc}/on-scene").json()["state"] == "on_scene"
        bad = staff.post(f"/incidents/{inc}/resolve", json={"outcome": "nonsense"})
        assert bad.status_code == 422
        done = staff.post(f"/incidents/{inc}/resolve", json={"outcome": "assisted", "notes": "ok"})
        assert done.json()["state"] == "resolved"
        assert sup.post(f"/incidents/{inc}/close").json()["state"] == "closed"
        detail = staff.get(f"/incidents/{inc}").json()
        kinds = [e["kind"] for e in detail["timeline"]]
        assert kinds == ["raised", "acknowledged", "dispatched", "on_scene", "resolved", "closed"]
        assert detail["time_to_acknowledge_s"] is not None
        assert staff.get("/incidents").json() == []
        assert [i["id"] for i in staff.get("/incidents?state=all").json()] == [inc]
    with env.client("admin") as admin:  # priority then age, every site
        ids = [i["id"] for i in admin.get("/incidents").json()]
        assert ids == [env.inc_b]


def test_incident_list_says_where_without_names_or_addresses(env: Env) -> None:
    """Each listed incident carries bed code and room / household label, nothing personal."""
    db = env.db
    with db.connect() as conn:  # a home-care household in site-a, with an address
        conn.execute(
            "INSERT INTO locations (location_id, site_id, kind, label, address) VALUES "
            "('site-a-h1', 'site-a', 'home', 'Household Wang 3-2', '12 Elm Road, Flat 3')"
        )
        conn.execute(
            "INSERT INTO beds (bed_id, bed_code, site_id, location_id) "
            "VALUES ('site-a-hb1', 'HB-0001', 'site-a', 'site-a-h1')"
        )
        conn.execute(
            "INSERT INTO residents (resident_id, elder_code, site_id, bed_id, display_name, "
            "care_level) VALUES ('site-a-hr1', 'ELD-H-1', 'site-a', 'site-a-hb1', 'Wang Li', 1)"
        )
    home = _raise(db, "site-a", "site-a-hr1", IncidentType.EMERGENCY_CALL)
    with db.connect() as conn:
        service = IncidentService(conn)
        now = datetime.now(UTC)
        device, _ = service.raise_or_join(  # technical, no resident: the device's bed
            Trigger(IncidentType.DEVICE_OFFLINE, "site-a", now, "silent", subject="site-a-bs1")
        )
        hub, _ = service.raise_or_join(  # technical, a location: its room, no bed
            Trigger(IncidentType.HUB_OFFLINE, "site-a", now, "silent", subject="site-a-l1")
        )
    with env.client("duty_staff") as staff:
        resp = staff.get("/incidents")
    assert resp.status_code == 200
    where = {i["id"]: (i["bed_code"], i["location_kind"], i["location_label"]) for i in resp.json()}
    assert where == {
        env.inc_a: ("BED-site-a-0000", "room", "Room 100"),
        home: ("HB-0001", "home", "Household Wang 3-2"),
        device.id: ("BED-site-a-0001", "room", "Room 101"),
        hub.id: (None, "room", "Room 101"),
    }
    for secret in ("Wang Li", "Elm Road", "Resident 0", "display_name", "address"):
        assert secret not in resp.text
    with env.client("admin") as admin:  # the other site's incident says where too
        other = admin.get("/incidents?site=site-b").json()
    assert [(i["bed_code"], i["location_label"]) for i in other] == [
        ("BED-site-b-0000", "Room 100")
    ]
    # Listing is not a read of health data: only the card is audited.
    assert db.scalar("SELECT count(*) FROM audit_log WHERE action = 'health_data.read'") == 0


def test_resident_card_is_complete_and_audited(env: Env) -> None:
    with env.client("duty_staff") as c:
        card = c.get("/residents/site-a-r0").json()
    assert card["bed_code"] == "BED-site-a-0000"
    assert card["room"] == "Room 100" and card["address"] is None
    assert card["care_level"] == 2
    assert card["contacts"][0]["relation"] == "daughter"
    assert card["last_vitals"]["heart_rate"] == 62
    assert [i["id"] for i in card["recent_incidents"]] == [env.inc_a]
    audited = env.db.rows(
        "SELECT actor, action, data->>'what' FROM audit_log WHERE target = 'resident:site-a-r0'"
    )
    assert len(audited) == 1 and audited[0][1:] == ("health_data.read", "context_card")
    assert audited[0][0].startswith("u-")


def test_incident_detail_reads_are_audited_once_per_user_and_shift(env: Env) -> None:
    query = "SELECT actor, action, target, data FROM audit_log WHERE action = 'incident.read'"
    with env.client("duty_staff") as c:
        assert c.get("/incidents").status_code == 200  # the list is not a detail read
        assert c.get(f"/incidents/{env.inc_a}").status_code == 200
        # The console re-reads the incident it shows on every event and reconcile: the
        # same user's reads within audit.read_window_s are one audited read.
        assert c.get(f"/incidents/{env.inc_a}").status_code == 200
    rows = env.db.rows(query)
    assert len(rows) == 1
    actor, _, target, data = rows[0]
    assert actor.startswith("u-") and target == f"incident:{env.inc_a}"
    assert data == {"resident_id": "site-a-r0"}
    with env.client("supervisor") as c:  # another person's read is audited on its own
        assert c.get(f"/incidents/{env.inc_a}").status_code == 200
    assert len({row[0] for row in env.db.rows(query)}) == 2


def test_family_sees_safety_and_consented_vitals_only(env: Env) -> None:
    with env.client("family") as c:
        mine = c.get("/family/residents").json()
        assert [r["resident_id"] for r in mine] == ["site-a-r0"]
        view = c.get("/family/residents/site-a-r0").json()
        assert view["safe"] is False
        assert view["open_incident"]["id"] == env.inc_a
        assert view["open_incident"]["handled_by"] is None
        assert view["vitals"]["heart_rate"] == 62
        with env.client("duty_staff") as staff:
            staff.post(f"/incidents/{env.inc_a}/acknowledge")
        view = c.get("/family/residents/site-a-r0").json()
        # Who handles it: role and display name, never the login name (issue 11 §3).
        assert view["open_incident"]["handled_by"] is None  # no display name set yet
        assert view["open_incident"]["handled_by_role"] == "duty_staff"
        duty_id = env.db.scalar("SELECT user_id FROM users WHERE username = 'duty-a'")
        with env.client("admin") as admin:
            named = admin.post(f"/users/{duty_id}/display-name", json={"display_name": "张丽"})
            assert named.status_code == 200 and named.json()["changed"] is True
        with env.client("duty_staff") as staff:  # only admins name users
            refused = staff.post(f"/users/{duty_id}/display-name", json={"display_name": "x"})
            assert refused.status_code == 403
            # Languages for pages and notifications (issue 11 §2): admins only, audited.
            en = {"language": "en"}
            assert staff.post(f"/users/{duty_id}/language", json=en).status_code == 403
            assert staff.post("/contacts/c1/language", json=en).status_code == 403
        with env.client("admin") as admin:
            done = admin.post(f"/users/{duty_id}/language", json=en)
            assert done.status_code == 200 and done.json() == {
                "target": f"user:{duty_id}", "language": "en"}  # fmt: skip
            assert admin.post("/contacts/c1/language", json=en).status_code == 200
            assert admin.post("/users/nobody/language", json=en).status_code == 404
            assert admin.post("/contacts/c1/language", json={"language": "fr"}).status_code == 422
        assert env.db.scalar("SELECT language FROM users WHERE user_id = %s", (duty_id,)) == "en"
        assert env.db.scalar("SELECT language FROM contacts WHERE contact_id = 'c1'") == "en"
        view = c.get("/family/residents/site-a-r0").json()
        assert view["open_incident"]["handled_by"] == "张丽"
        assert "duty-a" not in str(view)
        line = c.get("/family/residents/site-a-r0/status").json()
        assert (line["kind"], line["handler_name"], line["handler_role"]) == (
            "handling", "张丽", "duty_staff")  # fmt: skip
        assert c.get("/family/residents/site-b-r0/status").status_code == 404
        # Cross-family: fam-a asking for fam-b's relative is exactly "does not exist".
        other = c.get("/family/residents/site-b-r0")
        missing = c.get("/family/residents/no-such-resident")
        assert other.status_code == missing.status_code == 404
        assert other.json() == missing.json()
    env.db.rows("UPDATE residents SET consent_family_health = false RETURNING 1")
    with env.client("family") as c:
        view = c.get("/family/residents/site-a-r0").json()
    assert view["vitals"] is None and view["vitals_shared"] is False


def test_installer_sees_devices_of_own_site(env: Env) -> None:
    with env.client("installer") as c:
        devices = c.get("/devices").json()
    assert {d["site_id"] for d in devices} == {"site-a"}
    by_id = {d["device_id"]: d for d in devices}
    assert by_id["site-a-bs0"]["online"] is True  # a reading just now
    assert by_id["site-a-bs1"]["online"] is False and by_id["site-a-bs1"]["last_seen"] is None
    assert by_id["site-a-bs0"]["bed_id"] == "site-a-b0"


def test_wrong_password_expired_and_forged_tokens(env: Env) -> None:
    url = env.gw.api_url
    wrong = _token(url, "duty-a", "not-the-password")
    unknown = _token(url, "nobody", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    staff = Principal("u-x", UserRole.DUTY_STAFF, "site-a")
    past = datetime.now(UTC) - timedelta(hours=2)
    expired = issue_token(SECRET, staff, 900, now=past)
    forged = issue_token("another-secret-" + "x" * 40, staff, 900)
    for token, detail in [(expired, "token expired"), (forged, "invalid token")]:
        resp = httpx.get(f"{url}/incidents", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401 and resp.json()["detail"] == detail
        assert resp.headers["www-authenticate"] == "Bearer"
    # A fresh token lives token_ttl_s.
    resp = _token(url, "duty-a", PASSWORD).json()
    assert resp["expires_in"] == 900 and resp["token_type"] == "bearer"


def test_gateway_refuses_to_start_without_a_good_secret(db: Database, broker: Broker) -> None:
    for overrides in ({"SAFEHOME_API__JWT_SECRET": ""}, {"SAFEHOME_API__JWT_SECRET": "short"}):
        settings = gateway_settings(db, broker, **overrides)
        with pytest.raises(GatewayError, match="jwt_secret"):
            InProcessGateway(settings).__enter__()


def test_check_jwt_secret_messages() -> None:
    with pytest.raises(AuthError, match="not set"):
        check_jwt_secret(load_settings(environ={}).api)
    short = load_settings(environ={"SAFEHOME_API__JWT_SECRET": "x" * (MIN_SECRET_LENGTH - 1)})
    with pytest.raises(AuthError, match="too short"):
        check_jwt_secret(short.api)
    good = load_settings(environ={"SAFEHOME_API__JWT_SECRET": "x" * MIN_SECRET_LENGTH})
    assert check_jwt_secret(good.api) == "x" * MIN_SECRET_LENGTH


def test_every_route_declares_who_may_call_it() -> None:
    settings = load_settings(environ={"SAFEHOME_API__JWT_SECRET": SECRET})
    runtime: Any = SimpleNamespace(
        settings=settings, api_pool=object(), stopping=False, metrics=None, registry_changed=None
    )
    app = build_app(runtime)
    framework = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    undeclared, public, seen = [], set(), set()
    # Included routers are expanded lazily by FastAPI: walk the effective routes.
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            assert context.path in framework, f"unexpected route {context.path}"
            continue
        roles = (route.openapi_extra or {}).get(ROLES_KEY)
        if not roles:
            undeclared.append(route.path)
        elif roles == [PUBLIC_ROLE]:
            public.add(route.path)
        else:  # the declaration is enforced: a role-check dependency carries the same roles
            checks = [getattr(d.call, "allowed_roles", None) for d in route.dependant.dependencies]
            declared = [c for c in checks if c is not None]
            assert len(declared) == 1, route.path
            assert sorted(declared[0]) == roles, route.path
        seen.add(route.path)
    assert not undeclared, f"routes without a role declaration: {undeclared}"
    assert {"/incidents/stream", "/incidents/{incident_id}/close", "/residents/{resident_id}",
            "/family/residents/{resident_id}", "/devices"} <= seen  # fmt: skip
    # The pages carry no data (everything they show comes from role-checked API routes).
    # /ack/{token}: the signed one-time link is the credential; /paging/sms-inbound: an
    # HMAC signature with paging.inbound_sms_secret (tests/integration/test_paging.py).
    assert public == {
        "/health", "/readyz", "/metrics", "/auth/token", "/auth/refresh", "/", "/family",
        "/static/{name}", "/ack/{token}", "/paging/sms-inbound",
        "/docs", "/redoc", "/docs-assets/{name}", "/favicon.ico",  # local API docs, icon
        "/worker", "/district", "/visits/static/{name}",  # pages of issue 13 (no data)
    }  # fmt: skip
    spec = app.openapi()
    assert spec["paths"]["/incidents"]["get"][ROLES_KEY] == ["admin", "duty_staff", "supervisor"]
    for action in ("deactivate", "reactivate", "password"):  # user management: admins only
        assert spec["paths"][f"/users/{{user_id}}/{action}"]["post"][ROLES_KEY] == ["admin"]
    unlock = spec["paths"]["/users/{user_id}/unlock"]["post"][ROLES_KEY]
    assert unlock == ["admin", "supervisor"]  # supervisors: their site's users only
    assert spec["paths"]["/auth/logout"]["post"][ROLES_KEY] == sorted(r.value for r in UserRole)


def test_supervisor_gets_the_sla_report_as_json_csv_and_png(env: Env) -> None:
    with env.client("supervisor") as c:
        body = c.get("/reports/sla", params={"month": "2026-11"}).json()
        csv = c.get("/reports/sla", params={"month": "2026-11", "format": "csv"})
        png = c.get("/reports/sla", params={"month": "2026-11", "format": "png"})
    assert (body["site_id"], body["month"]) == ("site-a", "2026-11")
    assert csv.headers["content-type"].startswith("text/csv") and "," in csv.text
    assert png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 5000
