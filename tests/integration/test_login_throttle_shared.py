"""The sign-in throttle holds across gateway processes and restarts (counts in PostgreSQL,
gateway.api.login_throttle), against the real database.

Each "instance" is a separately built API app with its own connection pool and its own
LoginGuard, as in a second gateway process; requests go through the ASGI app with a chosen
client address. tests/integration/test_login_throttle_failover.py does the same with a real
active/standby pair of gateway processes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from gateway.api.app import build_app
from gateway.api.auth import create_user
from gateway.settings import Settings, load_settings
from tests.support import Database

pytestmark = pytest.mark.integration

PASSWORD = "pw-" + uuid.uuid4().hex[:12]
SECRET = "throttle-" + uuid.uuid4().hex + uuid.uuid4().hex


def _settings(db: Database, **overrides: str) -> Settings:
    env = {
        "SAFEHOME_DATABASE__HOST": "127.0.0.1",
        "SAFEHOME_DATABASE__PORT": str(db.port),
        "SAFEHOME_DATABASE__NAME": db.name,
        "SAFEHOME_DATABASE__USER": db.user,
        "SAFEHOME_DATABASE__PASSWORD": db.password,
        "SAFEHOME_API__JWT_SECRET": SECRET,
        "SAFEHOME_API__LOGIN_MAX_FAILURES_PER_USER": "5",
        "SAFEHOME_API__LOGIN_MAX_FAILURES_PER_ADDRESS": "8",
        "SAFEHOME_API__LOGIN_QUEUE_MAX": "100",
    }
    return load_settings(environ=env | overrides)


class Instance:
    """One gateway process's API: its app, pool and metrics."""

    def __init__(self, settings: Settings, stack: ExitStack) -> None:
        pool: ConnectionPool[Any] = ConnectionPool(
            settings.database.conninfo(), min_size=1, max_size=settings.database.pool_max,
            kwargs={"autocommit": True}, open=False, name="api-test",
        )  # fmt: skip
        pool.open(wait=False)
        stack.callback(pool.close, 5)
        runtime: Any = SimpleNamespace(
            settings=settings, api_pool=pool, stopping=False, metrics=None,
            registry_changed=None,
        )  # fmt: skip
        self.app: FastAPI = build_app(runtime)
        stack.callback(self.app.state.host.login_guard.hasher.shutdown)

    async def sign_in(
        self, username: str, password: str = PASSWORD, address: str = "10.1.0.1"
    ) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.post(
                "/auth/token", data={"username": username, "password": password}
            )

    async def logins(self, result: str) -> float:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            text = (await client.get("/metrics")).text
        found = re.search(rf'^safehome_api_logins_total{{result="{result}"}} (\S+)$', text, re.M)
        assert found, text
        return float(found.group(1))


@contextmanager
def _instances(db: Database, n: int, **overrides: str) -> Iterator[list[Instance]]:
    settings = _settings(db, **overrides)
    with ExitStack() as stack:
        yield [Instance(settings, stack) for _ in range(n)]


@pytest.fixture
def users(db: Database) -> dict[str, str]:
    with db.connect() as conn:
        return {
            name: create_user(conn, name, "admin", PASSWORD) for name in ("root", "ops", "chief")
        }


def test_failures_spread_over_two_instances_lock_the_account_on_both(
    db: Database, users: dict[str, str]
) -> None:
    async def main() -> None:
        with _instances(db, 2) as (a, b):
            # Alternating between the two processes gives no extra guesses: 3 + 2 = 5.
            for gw in (a, b, a, b, a):
                assert (await gw.sign_in("root", "wrong-guess")).status_code == 401
            for gw in (a, b):
                resp = await gw.sign_in("ROOT")  # even the right password, any case
                assert resp.status_code == 429, resp.text
                assert 0 < int(resp.headers["retry-after"]) <= 300
            assert (await a.logins("failed"), await b.logins("failed")) == (3.0, 2.0)
            assert (await a.logins("throttled"), await b.logins("throttled")) == (1.0, 1.0)
            # Another account from the same address still signs in, on either.
            assert (await b.sign_in("ops")).status_code == 200
            assert await b.logins("ok") == 1.0

    asyncio.run(main())
    # Stored: HMACs and times only, never the name (nor a password: nothing else is kept).
    rows = db.rows("SELECT kind, key_hash, cardinality(failures) FROM login_failures")
    assert ("user", 5) in {(kind, n) for kind, _, n in rows}
    assert not any("root" in key for _, key, _ in rows)


def test_the_count_survives_a_restart(db: Database, users: dict[str, str]) -> None:
    async def main() -> None:
        with _instances(db, 1) as (before,):
            for _ in range(5):
                assert (await before.sign_in("root", "wrong")).status_code == 401
        with _instances(db, 1) as (after,):  # a new process: nothing in its memory
            resp = await after.sign_in("root")
            assert resp.status_code == 429 and int(resp.headers["retry-after"]) > 0
            assert await after.logins("throttled") == 1.0
            assert await after.logins("failed") == 0.0  # no password was checked

    asyncio.run(main())


def test_parallel_wrong_sign_ins_over_two_instances_never_pass_the_limit(
    db: Database, users: dict[str, str]
) -> None:
    n = 40

    async def main() -> None:
        with _instances(db, 2) as (a, b):
            # One account from many addresses: the per-user limit (5) holds.
            answers = await asyncio.gather(*(
                (a, b)[i % 2].sign_in("root", f"guess-{i}", address=f"10.2.0.{i}")
                for i in range(n)
            ))  # fmt: skip
            codes = [r.status_code for r in answers]
            assert (codes.count(401), codes.count(429)) == (5, n - 5), codes
            checked = sum([await gw.logins("failed") for gw in (a, b)])
            assert checked == 5  # password checks that ran, over both processes
            # One address, many accounts: the per-address limit (8) holds the same way.
            answers = await asyncio.gather(*(
                (a, b)[i % 2].sign_in(f"nobody-{i}", "guess", address="10.3.0.1")
                for i in range(n)
            ))  # fmt: skip
            codes = [r.status_code for r in answers]
            assert (codes.count(401), codes.count(429)) == (8, n - 8), codes
            assert sum([await gw.logins("failed") for gw in (a, b)]) == 5 + 8

    asyncio.run(main())
    # Refused attempts left no rows: one per admitted key (5 addresses of the first burst
    # plus root; the burst's address and its 8 admitted names).
    assert db.scalar("SELECT count(*) FROM login_failures") == 1 + 5 + 1 + 8


def test_a_correct_password_clears_the_account_everywhere(
    db: Database, users: dict[str, str]
) -> None:
    async def main() -> None:
        with _instances(db, 2, SAFEHOME_API__LOGIN_MAX_FAILURES_PER_ADDRESS="9") as (a, b):
            for _ in range(4):
                assert (await a.sign_in("root", "typo")).status_code == 401
            assert (await b.sign_in("root")).status_code == 200
            # The user name's failures are gone (on the other process too) ...
            for _ in range(4):
                assert (await a.sign_in("root", "typo")).status_code == 401
            assert (await b.sign_in("root")).status_code == 200
            # ... while the address keeps its failures, each success taken back: 8 of 9.
            assert (await b.sign_in("chief", "typo")).status_code == 401
            resp = await a.sign_in("ops")
            assert resp.status_code == 429, resp.text

    asyncio.run(main())
    rows = db.rows("SELECT kind, cardinality(failures) FROM login_failures ORDER BY kind")
    assert rows == [("address", 9), ("user", 1)]


def test_old_rows_are_pruned_by_sign_ins(db: Database, users: dict[str, str]) -> None:
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO login_failures (kind, key_hash, failures, last_at) "
            "SELECT 'user', md5(i::text) || md5(i::text), "
            "       ARRAY[now() - interval '1 hour'], now() - interval '1 hour' "
            "FROM generate_series(1, 500) AS i"
        )

    async def main() -> None:
        with _instances(db, 1) as (gw,):
            assert (await gw.sign_in("root", "wrong")).status_code == 401

    asyncio.run(main())
    assert db.scalar("SELECT count(*) FROM login_failures") == 2  # root and its address


def test_an_unreachable_database_answers_503_and_counts_busy(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        # A port nobody listens on: every connection attempt fails.
        with _instances(
            db, 1, SAFEHOME_DATABASE__PORT="9", SAFEHOME_DATABASE__CONNECT_TIMEOUT_S="1"
        ) as (gw,):
            for _ in range(2):
                resp = await gw.sign_in("root")
                assert resp.status_code == 503, resp.text
                assert int(resp.headers["retry-after"]) >= 1
                assert "database" in resp.json()["detail"]
            assert await gw.logins("busy") == 2.0
            assert await gw.logins("throttled") == 0.0

    with caplog.at_level(logging.INFO, logger="gateway.api.login_throttle"):
        asyncio.run(main())
    # Logged once when the state changed, not once per sign-in.
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.api.login_throttle"] == [
        "sign-in throttle: database unreachable, sign-ins answered 503"
    ]
