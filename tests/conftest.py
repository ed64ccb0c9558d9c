"""Fixtures that start real services: a private PostgreSQL + TimescaleDB and Mosquitto.

Every service runs from a private data directory on a free port of 127.0.0.1, owned by the
test session, so tests can stop, kill and restart them. Nothing here is skipped: a missing
binary makes the fixture fail loudly (CI must never go green without the real services).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.brokerauth import ServiceAccount, hash_password
from gateway.localsvc import LocalServiceError, MosquittoServer, PostgresServer, free_port
from gateway.storage.migrate import migrate
from tests.support import PREFIX, Broker, Database

TEMPLATE_DB = "safehome_template"
# The schema owner runs the migrations; the gateway (and the tests) connect as DB_USER,
# which owns nothing (migration 0014), as in production.
OWNER_USER = "safehome_owner"
OWNER_PASSWORD = "own-" + uuid.uuid4().hex[:12]
DB_USER = "safehome"
DB_PASSWORD = "test-" + uuid.uuid4().hex[:12]
GATEWAY_PASSWORD = "gw-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def services_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="shg-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def start_postgres(root: Path, name: str) -> PostgresServer:
    server = PostgresServer(root / name, free_port(), fsync=False)
    server.init()
    server.start()
    server.ensure_database(
        TEMPLATE_DB, OWNER_USER, OWNER_PASSWORD, app_user=DB_USER, app_password=DB_PASSWORD
    )
    with psycopg.connect(
        f"host=127.0.0.1 port={server.port} dbname={TEMPLATE_DB} "
        f"user={OWNER_USER} password={OWNER_PASSWORD}"
    ) as conn:
        migrate(conn, app_role=DB_USER)
    # TimescaleDB's scheduler keeps a session open in every database that allows connections;
    # a template must have none.
    server.psql_admin(
        f'ALTER DATABASE "{TEMPLATE_DB}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false'
    )
    _disconnect_template(server)
    return server


def _disconnect_template(server: PostgresServer) -> None:
    server.psql_admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{TEMPLATE_DB}' AND pid <> pg_backend_pid()"
    )


@pytest.fixture(scope="session")
def pg_server(services_root: Path) -> Iterator[PostgresServer]:
    server = start_postgres(services_root, "pg")
    yield server
    server.stop(mode="immediate")


def new_database(server: PostgresServer) -> Database:
    name = "t_" + uuid.uuid4().hex[:12]
    for attempt in range(20):
        try:
            server.psql_admin(
                f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}" OWNER "{OWNER_USER}"'
            )
            break
        except LocalServiceError:
            if attempt == 19:
                raise
            _disconnect_template(server)
            time.sleep(0.1)
    return Database(server, name, DB_USER, DB_PASSWORD, OWNER_USER, OWNER_PASSWORD)


@pytest.fixture
def db(pg_server: PostgresServer) -> Iterator[Database]:
    """A fresh, migrated database for one test (copied from a migrated template)."""
    if not pg_server.running():
        pg_server.start()
    database = new_database(pg_server)
    yield database
    if pg_server.running():
        pg_server.psql_admin(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')


@pytest.fixture
def private_pg(tmp_path_factory: pytest.TempPathFactory, services_root: Path) -> Iterator[Database]:
    """A database on its own PostgreSQL server, for tests that stop or kill the server."""
    server = start_postgres(services_root, "pg-" + uuid.uuid4().hex[:8])
    database = new_database(server)
    yield database
    server.stop(mode="immediate")
    shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture
def broker(services_root: Path) -> Iterator[Broker]:
    """A private Mosquitto for one test (accounts set by the test through ``Broker``)."""
    server = MosquittoServer(services_root / ("mq-" + uuid.uuid4().hex[:8]), free_port())
    service = ServiceAccount("gateway", hash_password(GATEWAY_PASSWORD))
    server.init(PREFIX, service, [])
    server.start()
    b = Broker(server, service, GATEWAY_PASSWORD)
    yield b
    if server.running():
        server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def _ci_guard() -> None:
    """Under CI the real services must exist: fail, never skip."""
    if os.environ.get("CI") == "true":
        assert shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()


# The files whose tests run longest (minutes each: whole product through CLI/browser, process
# kills, outages). They start first, so under ``pytest -n`` no worker is left alone with a long
# tail at the end; the order within the rest is unchanged.
_LONG_FIRST = (
    "tests/e2e/test_installer_cli.py",
    "tests/e2e/test_device_emulator.py",
    "tests/integration/test_fault_matrix.py",
    "tests/integration/test_resilience.py",
    "tests/integration/test_failover.py",
    "tests/integration/test_api_schemathesis.py",
    "tests/integration/test_paging.py",
    "tests/integration/test_roster_cli.py",
    "tests/e2e/test_simulated_site.py",
    "tests/integration/test_api.py",
    "tests/integration/test_api_attacks.py",
    "tests/integration/test_alarm_durability.py",
    "tests/integration/test_mqtt_identity.py",
    "tests/integration/test_mqtt_limits.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """The main thread starts with no current event loop, set explicitly (as Python 3.14 has
    it). Otherwise pytest-asyncio 0.26's first async test calls asyncio.get_event_loop(),
    which makes a loop; pytest-asyncio keeps it (and a fresh one after each async test) as
    the thread's current loop, never closed. A later sync test's asyncio.run() replaces the
    current loop, the dropped one is garbage-collected open at a random later moment and
    fails whichever test runs then (ResourceWarning: unclosed event loop; seen under xdist,
    where the order of tests varies). Upstream: pytest-dev/pytest-asyncio#724, fixed by
    pytest-dev/pytest-asyncio#1430 (1.4.0a2)."""
    asyncio.set_event_loop(None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(_LONG_FIRST)}

    def key(item: pytest.Item) -> int:
        return rank.get(item.nodeid.split("::", 1)[0], len(rank))

    items.sort(key=key)  # stable: the rest keep their collection order
