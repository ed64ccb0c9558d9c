"""Plain-SQL schema migrations, recorded in ``schema_migrations``.

Files live in ``gateway/storage/migrations/NNNN_name.sql`` and are applied in order, each
in its own transaction, under an advisory lock so two processes never migrate at once.
An applied file must not change afterwards: its checksum is recorded and checked.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x5AFE_0001


class SchemaError(RuntimeError):
    """The database schema is behind, ahead of, or different from this code."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("gateway.storage").joinpath("migrations").iterdir():
        m = _FILE.fullmatch(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise SchemaError(f"duplicate migration versions: {versions}")
    return found


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def _applied(conn: psycopg.Connection[tuple[object, ...]]) -> dict[int, tuple[str, str]]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
    return {int(str(v)): (str(n), str(c)) for v, n, c in rows}


def ensure_timescaledb(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """Create the extension if we may; return whether it is present."""
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    if row:
        return True
    available = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if not available:
        log.warning("timescaledb is not installed: time series use plain tables")
        return False
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        log.warning(
            "cannot create the timescaledb extension (%s): ask a superuser to run "
            "CREATE EXTENSION timescaledb; time series use plain tables",
            type(exc).__name__,
        )
        return False
    return True


def migrate(
    conn: psycopg.Connection[tuple[object, ...]], app_role: str | None = None
) -> list[Migration]:
    """Apply every pending migration; return those applied. Idempotent.

    ``conn`` is the owner role's. With ``app_role`` (the role the gateway connects as, not
    the owner) its privileges are (re)granted afterwards: see migration 0014.
    """
    conn.autocommit = True
    ensure_timescaledb(conn)
    if app_role is not None:
        check_ownership(conn, app_role)
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        conn.execute(_BOOKKEEPING)
        done = _applied(conn)
        _check_known(load_migrations(), done)
        applied = []
        for mig in load_migrations():
            if mig.version in done:
                continue
            with conn.transaction():
                conn.execute(mig.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (mig.version, mig.name, mig.checksum),
                )
            log.info("migration applied", extra={"version": mig.version, "migration": mig.name})
            applied.append(mig)
        if app_role is not None:
            grant_app_role(conn, app_role)
        return applied
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


_OWNERSHIP = """
SELECT current_user, current_database(), pg_get_userbyid(d.datdba),
       has_schema_privilege('public', 'CREATE'),
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) = %s)
FROM pg_database d WHERE d.datname = current_database()
"""


def check_ownership(conn: psycopg.Connection[tuple[object, ...]], app_role: str) -> None:
    """Refuse to migrate a database the owner role cannot own yet (an older installation
    where ``app_role`` owns everything), saying what a superuser must run once."""
    row = conn.execute(_OWNERSHIP, (app_role,)).fetchone()
    assert row is not None
    me, dbname, db_owner, may_create, app_owned = row
    if me == app_role:
        raise SchemaError(
            f"`db migrate` connected as the application role {app_role}: set "
            "database.owner_user (and SAFEHOME_DATABASE__OWNER_PASSWORD[_FILE]) to the owner role"
        )
    if app_owned or not may_create:
        raise SchemaError(
            f"database {dbname} (owner {db_owner}) is not ready for the owner role {me}: "
            f"the application role {app_role} owns {app_owned} object(s). Once, as a "
            f'superuser: ALTER DATABASE "{dbname}" OWNER TO "{me}"; then, connected to '
            f'{dbname}: REASSIGN OWNED BY "{app_role}" TO "{me}"; then migrate again'
        )


def grant_app_role(conn: psycopg.Connection[tuple[object, ...]], app_role: str) -> None:
    """Give the application role exactly its privileges (0014's safehome_grant_app)."""
    try:
        with conn.transaction():
            conn.execute("SELECT safehome_grant_app(%s)", (app_role,))
    except psycopg.errors.RaiseException as exc:
        hint = f" ({exc.diag.message_hint})" if exc.diag.message_hint else ""
        raise SchemaError(f"{exc.diag.message_primary}{hint}") from None
    log.info("application role privileges granted", extra={"role": app_role})


def _check_known(migs: list[Migration], done: dict[int, tuple[str, str]]) -> None:
    known = {m.version: m for m in migs}
    for version, (name, checksum) in sorted(done.items()):
        mig = known.get(version)
        if mig is None:
            raise SchemaError(
                f"database has migration {version:04d}_{name} that this code does not know "
                "(is the gateway older than the database?)"
            )
        if mig.checksum != checksum:
            raise SchemaError(f"migration {version:04d}_{name} was changed after it was applied")


def check_schema(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Raise SchemaError unless every migration is applied unchanged (start-up check)."""
    migs = load_migrations()
    done = _applied(conn)
    _check_known(migs, done)
    pending = [f"{m.version:04d}_{m.name}" for m in migs if m.version not in done]
    if pending:
        raise SchemaError(
            f"database schema is behind: pending {', '.join(pending)}; run `safehome db migrate`"
        )
