"""Owner and application roles (migration 0014): the gateway's role owns nothing.

Every other test already runs the gateway as the application role (``tests/conftest.py``
migrates as the owner); here: what that role may and may not do, retention through the
owner's wrapper, tables of later migrations, and upgrading an older single-role database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from gateway import audit
from gateway.localsvc import PostgresServer, free_port
from gateway.localsvc_admin import LocalServices, settings_with_local_secrets
from gateway.settings import RetentionSettings
from gateway.storage import pending_alarms, timescale
from gateway.storage.migrate import SchemaError, check_schema, load_migrations, migrate
from tests.conftest import DB_PASSWORD, DB_USER, OWNER_PASSWORD, OWNER_USER
from tests.support import Database

pytestmark = pytest.mark.integration


def test_application_role_has_only_what_the_gateway_needs(db: Database) -> None:
    with db.connect() as c:
        c.execute("INSERT INTO sites (site_id, name, kind) VALUES ('s1', 'S', 'nursing_home')")
        c.execute("UPDATE sites SET name = 'S2' WHERE site_id = 's1'")
        row = c.execute(
            "INSERT INTO incidents (site_id, subject, type, priority, technical, "
            "first_trigger_at, last_trigger_at, raised_at, reason) VALUES ('s1', 'dev-1', "
            "'device_offline', 3, true, now(), now(), now(), 'r') RETURNING id"
        ).fetchone()  # an identity column
        assert row is not None
        c.execute("DELETE FROM incidents WHERE id = %s", (row[0],))
        check_schema(c)  # reads schema_migrations
        for sql in (
            "TRUNCATE incidents",
            "DELETE FROM schema_migrations",
            "ALTER TABLE incidents ADD COLUMN x int",
            "CREATE TABLE mine (x int)",
            "DROP TABLE staff_pages",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(sql.encode())
        owners = c.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
            "AND c.relkind IN ('r', 'p', 'S', 'v', 'i')"
        ).fetchall()
        assert owners == [(db.owner,)]


def test_tables_of_later_migrations_are_granted_by_default(db: Database) -> None:
    # What migration 0015 (another branch) or any later one does: the owner creates a table.
    with db.connect_owner() as c:
        c.execute(
            "CREATE TABLE later_things (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "note text NOT NULL)"
        )
    with db.connect() as c:
        c.execute("INSERT INTO later_things (note) VALUES ('a'), ('b')")
        c.execute("UPDATE later_things SET note = 'c' WHERE id = 1")
        c.execute("DELETE FROM later_things WHERE id = 2")
        assert c.execute("SELECT id, note FROM later_things").fetchall() == [(1, "c")]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("TRUNCATE later_things")


def test_apache_retention_runs_as_the_application_role(db: Database) -> None:
    old = datetime.now(UTC) - timedelta(days=500)
    with db.connect() as c:
        info = timescale.detect(c)
        if info.edition is not timescale.Edition.APACHE:
            pytest.fail(f"the test services run the Apache edition, found {info.edition}")
        with c.cursor() as cur:
            cur.executemany(
                "INSERT INTO readings (time, device_id, msg_id, seq, type, received_at) "
                "VALUES (%s, 'd1', %s, %s, 'heartbeat', now())",
                [(old, "old", 1), (datetime.now(UTC), "new", 2)],
            )  # the old row creates an old chunk, as the application role
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="owner"):
            c.execute("SELECT drop_chunks('readings', older_than => now() - interval '400 days')")
        removed = timescale.run_retention(c, info, RetentionSettings())
        assert removed["readings"] == 1
        assert c.execute("SELECT msg_id FROM readings").fetchall() == [("new",)]
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="at least one day"):
            c.execute("SELECT safehome_drop_chunks('readings', interval '1 hour')")


def test_handled_alarm_markers_are_pruned_never_pending_ones(db: Database) -> None:
    """Retention of ``pending_alarms``: a marker handled longer ago than the alarm events are
    kept goes; a pending marker stays however old (it is an alarm nobody heard yet)."""
    long_ago = datetime.now(UTC) - timedelta(days=4000)
    rows = [("handled-old", long_ago), ("handled-new", datetime.now(UTC)), ("pending-old", None)]
    with db.connect() as c:
        c.execute("INSERT INTO sites (site_id, name, kind) VALUES ('s1', 'S', 'nursing_home')")
        for msg_id, handled_at in rows:
            c.execute(
                "INSERT INTO pending_alarms (device_id, msg_id, site_id, type, time, "
                "received_at, created_at, handled_at, handled_by, outcome) VALUES "
                "('d1', %s, 's1', 'press', %s, %s, %s, %s, %s, %s)",
                (msg_id, long_ago, long_ago, long_ago, handled_at,
                 None if handled_at is None else "analysis",
                 None if handled_at is None else "raised"),
            )  # fmt: skip
        assert pending_alarms.prune_handled(c, RetentionSettings().device_events_days) == 1
        left = c.execute("SELECT msg_id FROM pending_alarms ORDER BY msg_id").fetchall()
        assert left == [("handled-new",), ("pending-old",)]


# --------------------------------------------------------------------------- upgrade


def _old_migrate(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """What `safehome db migrate` of the previous version did: 0001-0013, as one role."""
    conn.execute(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
        "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for mig in load_migrations():
        if mig.version <= 13:
            conn.execute(mig.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (mig.version, mig.name, mig.checksum),
            )


@pytest.fixture
def legacy(db: Database) -> Iterator[Database]:
    """A database as an older version left it: the application role owns everything."""
    server: PostgresServer = db.server
    name = "legacy_" + uuid.uuid4().hex[:8]
    server.psql_admin(f'CREATE DATABASE "{name}" OWNER "{DB_USER}"')
    server.psql_admin("CREATE EXTENSION IF NOT EXISTS timescaledb", dbname=name)
    old = Database(server, name, DB_USER, DB_PASSWORD, OWNER_USER, OWNER_PASSWORD)
    with old.connect() as c:
        _old_migrate(c)
        c.execute("INSERT INTO sites (site_id, name, kind) VALUES ('s1', 'S', 'nursing_home')")
        with c.transaction():
            audit.append(c, "staff-1", "health_data.read", "resident:r1", {"what": "card"})
        c.execute(
            "INSERT INTO readings (time, device_id, msg_id, seq, type, received_at) "
            "VALUES (now(), 'd1', 'm1', 1, 'heartbeat', now())"
        )
        # The old owner could do this; the test checks it no longer can after the upgrade.
        c.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    yield old
    server.psql_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate_cli(db: Database) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOME_")}
    env.update({
        "SAFEHOME_DATABASE__PORT": str(db.port), "SAFEHOME_DATABASE__NAME": db.name,
        "SAFEHOME_DATABASE__USER": db.user, "SAFEHOME_DATABASE__PASSWORD": db.password,
        "SAFEHOME_DATABASE__OWNER_USER": db.owner,
        "SAFEHOME_DATABASE__OWNER_PASSWORD": db.owner_password,
    })  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "db", "migrate"],
        check=False, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_older_single_role_database_is_upgraded_by_the_owner(legacy: Database) -> None:
    # Migrating as the owner is refused with the exact one-off superuser commands ...
    refused = _migrate_cli(legacy)
    assert refused.returncode == 2, refused.stderr
    assert f'REASSIGN OWNED BY "{DB_USER}" TO "{OWNER_USER}"' in refused.stderr
    assert f'ALTER DATABASE "{legacy.name}" OWNER TO "{OWNER_USER}"' in refused.stderr
    assert "Traceback" not in refused.stderr
    with pytest.raises(SchemaError, match="schema is behind"), legacy.connect() as c:
        check_schema(c)  # the gateway would not start on it either
    # ... which is what `safehome services up` / the demo do for their own database.
    legacy.server.ensure_database(
        legacy.name, OWNER_USER, OWNER_PASSWORD, app_user=DB_USER, app_password=DB_PASSWORD
    )
    done = _migrate_cli(legacy)
    assert done.returncode == 0, done.stderr
    assert "0014_app_role" in done.stdout
    again = _migrate_cli(legacy)  # idempotent
    assert again.returncode == 0 and "applied 0 migration(s)" in again.stdout

    with legacy.connect() as c:
        check_schema(c)
        for sql in (
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
            "UPDATE audit_log SET actor = 'x'",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(sql.encode())
        # The data survived and the gateway's role works on it.
        assert c.execute("SELECT count(*) FROM readings").fetchone() == (1,)
        c.execute("INSERT INTO sites (site_id, name, kind) VALUES ('s2', 'S', 'nursing_home')")
        with c.transaction():
            audit.append(c, "staff-1", "health_data.read", "resident:r1", {"what": "card"})
        result = audit.verify(c)
        assert result.ok and result.entries == 2


def test_migrate_refuses_to_run_as_the_application_role(db: Database) -> None:
    with db.connect() as c, pytest.raises(SchemaError, match="connected as the application"):
        migrate(c, app_role=DB_USER)
    with db.connect_owner() as c:  # as the owner: nothing pending, grants re-applied
        assert migrate(c, app_role=DB_USER) == []


def test_local_services_hand_over_an_older_database(
    services_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`safehome services up` / `demo` on a var dir of the previous version (e.g. var/demo)."""
    var = services_root / ("var-" + uuid.uuid4().hex[:8])
    secrets = var / "secrets"
    secrets.mkdir(parents=True)
    for name in ("db_password", "mqtt_password", "jwt_secret"):  # the old version's files
        (secrets / name).write_text(uuid.uuid4().hex)
    app_password = (secrets / "db_password").read_text()
    for key, value in {"VAR_DIR": str(var), "DATABASE__PORT": str(free_port()),
                       "MQTT__PORT": str(free_port())}.items():  # fmt: skip
        monkeypatch.setenv(f"SAFEHOME_{key}", value)
    for key in ("CONFIG", "DATABASE__OWNER_USER", "DATABASE__PASSWORD"):
        monkeypatch.delenv(f"SAFEHOME_{key}", raising=False)
    settings, gateway_env = settings_with_local_secrets(None)
    d = settings.database
    old = PostgresServer(var / "pg", d.port)
    old.init()
    old.start()
    try:
        old.ensure_database(d.name, d.user, app_password)  # the old single-role layout
        with psycopg.connect(d.conninfo(), autocommit=True) as c:
            _old_migrate(c)
            with c.transaction():
                audit.append(c, "staff-1", "health_data.read", "resident:r1", {"what": "card"})
        old.stop()

        assert d.owner_user == f"{d.user}_owner" and d.owner_password is not None
        assert (secrets / "db_owner_password").stat().st_mode & 0o777 == 0o600
        assert not any("OWNER" in key for key in gateway_env)  # the gateway never gets it
        services = LocalServices(settings)
        services.up()
        try:
            services.up()  # idempotent
            with psycopg.connect(d.conninfo(), autocommit=True) as c:
                check_schema(c)
                assert not timescale.owns_schema(c)
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
                assert audit.verify(c).entries == 1
        finally:
            services.down()
    finally:
        old.stop(mode="immediate")
