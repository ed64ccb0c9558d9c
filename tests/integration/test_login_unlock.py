"""Unlocking an account locked by the sign-in throttle (``POST /users/{user_id}/unlock`` and
``safehome user unlock``), against a real gateway and database: a supervisor unlocks a user
of their own site, not another site's; duty staff may not; the unlock is audited without the
sign-in name; the address rows stay."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from gateway.api.auth import create_user
from gateway.settings import Settings
from tests.support import (
    Broker,
    Database,
    InProcessGateway,
    gateway_settings,
    make_site,
    settings_env,
)

pytestmark = pytest.mark.integration

SECRET = "unlock-" + uuid.uuid4().hex + uuid.uuid4().hex
PASSWORD = "pw-" + uuid.uuid4().hex[:12]
LIMIT = 5  # api.login_max_failures_per_user, default


@dataclass
class Env:
    gw: InProcessGateway
    db: Database
    settings: Settings
    users: dict[str, str]  # sign-in name -> user id

    def sign_in(self, username: str, password: str = PASSWORD) -> httpx.Response:
        return httpx.post(
            f"{self.gw.api_url}/auth/token",
            data={"username": username, "password": password},
            timeout=30,
        )

    def token(self, username: str) -> str:
        resp = self.sign_in(username)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    def unlock(self, user_id: str, token: str) -> httpx.Response:
        return httpx.post(
            f"{self.gw.api_url}/users/{user_id}/unlock",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def lock_out(self, username: str) -> None:
        for _ in range(LIMIT):
            assert self.sign_in(username, "wrong-password").status_code == 401
        refused = self.sign_in(username)  # even the right password now
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0

    def unlocked_rows(self) -> list[tuple[str, str, dict[str, int]]]:
        return [
            (str(a), str(t), d)
            for a, t, d in self.db.rows(
                "SELECT actor, target, data FROM audit_log WHERE action = 'auth.unlocked' "
                "ORDER BY seq"
            )
        ]


@pytest.fixture
def env(db: Database, broker: Broker) -> Iterator[Env]:
    make_site(db, broker, site_id="site-a", beds=1)
    make_site(db, broker, site_id="site-b", beds=1)
    users = {}
    with db.connect() as conn:
        for name, role, site in [
            ("Nurse.Li", "duty_staff", "site-a"),
            ("duty-a", "duty_staff", "site-a"),
            ("sup-a", "supervisor", "site-a"),
            ("sup-b", "supervisor", "site-b"),
        ]:
            users[name] = create_user(conn, name, role, PASSWORD, site_id=site)
        users["root"] = create_user(conn, "root", "admin", PASSWORD)
    # Every request comes from 127.0.0.1: a roomy per-address limit.
    settings = gateway_settings(
        db,
        broker,
        SAFEHOME_API__JWT_SECRET=SECRET,
        SAFEHOME_API__LOGIN_MAX_FAILURES_PER_ADDRESS="1000",
    )
    with InProcessGateway(settings) as gw:
        yield Env(gw, db, settings, users)


def test_a_supervisor_unlocks_a_user_of_their_site_and_nobody_else_may(env: Env) -> None:
    sup_a, sup_b, duty = env.token("sup-a"), env.token("sup-b"), env.token("duty-a")
    nurse = env.users["Nurse.Li"]
    env.lock_out("nurse.li")  # names are case-blind for the throttle
    assert env.unlock(nurse, sup_b).status_code == 403  # another site's supervisor
    assert env.unlock("no-such-user", sup_b).status_code == 403  # nothing told beyond the site
    assert env.unlock(nurse, duty).status_code == 403  # duty staff
    assert env.sign_in("Nurse.Li").status_code == 429  # still locked
    done = env.unlock(nurse, sup_a)
    assert done.status_code == 200, done.text
    assert done.json() == {"user_id": nurse, "failures_cleared": LIMIT}
    assert env.sign_in("Nurse.Li").status_code == 200
    # The address's failures stay (only the account's row was cleared).
    assert env.db.rows("SELECT kind FROM login_failures") == [("address",)]
    # Audited with the supervisor and the user id, never the sign-in name.
    rows = env.unlocked_rows()
    assert rows == [(env.users["sup-a"], f"user:{nurse}", {"failures_cleared": LIMIT})]
    text = str(env.db.rows("SELECT actor, target, data::text FROM audit_log"))
    assert "nurse.li" not in text.casefold()


def test_an_admin_unlocks_anyone_and_the_cli_does_too(env: Env) -> None:
    root = env.token("root")
    assert env.unlock("no-such-user", root).status_code == 404
    env.lock_out("sup-b")
    done = env.unlock(env.users["sup-b"], root)
    assert done.status_code == 200 and done.json()["failures_cleared"] == LIMIT
    assert env.sign_in("sup-b").status_code == 200
    env.lock_out("Nurse.Li")
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOME_")}
    cli_env.update(settings_env(env.settings))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "user", "unlock", *args],
            check=False, env=cli_env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    done_cli = cli("Nurse.Li")
    assert done_cli.returncode == 0, done_cli.stderr
    assert f"user {env.users['Nurse.Li']} unlocked ({LIMIT} failed" in done_cli.stdout
    # The gateway remembered the lock-out in memory; it asks the database again within
    # gateway.api.throttle.RECHECK_S (10 s), so a generous deadline.
    end = time.monotonic() + 60
    while (got := env.sign_in("Nurse.Li").status_code) == 429 and time.monotonic() < end:
        time.sleep(0.5)
    assert got == 200
    assert cli("nobody").returncode == 2
    rows = env.unlocked_rows()
    assert [(a, t) for a, t, _ in rows] == [
        (env.users["root"], f"user:{env.users['sup-b']}"),
        ("cli", f"user:{env.users['Nurse.Li']}"),
    ]
