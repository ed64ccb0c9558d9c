"""TimescaleDB edition detection, and retention/compression done the way the edition allows.

* Community (``timescaledb.license = 'timescale'``): compression settings plus
  ``add_retention_policy`` / ``add_compression_policy`` jobs run inside the database.
* Apache (``'apache'``, e.g. the edition built from Debian's source package): no policy jobs,
  so the gateway runs ``drop_chunks`` itself on a schedule (through ``safehome_drop_chunks``,
  migration 0014, as the gateway's role does not own the tables).

Policies need the tables' owner: ``safehome db migrate`` installs them; the gateway does it at
start-up only when it connects as the owner (single-role installations).
* No timescaledb at all: plain tables; the gateway deletes old rows itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

import psycopg

from gateway.settings import RetentionSettings

log = logging.getLogger(__name__)


class Edition(StrEnum):
    NONE = "none"
    APACHE = "apache"
    COMMUNITY = "community"


# table -> (time column, retention attribute of RetentionSettings)
TIME_SERIES: dict[str, tuple[str, str]] = {
    "readings": ("time", "readings_days"),
    "accel": ("time", "accel_days"),
    "device_events": ("time", "device_events_days"),
    "device_state": ("time", "device_state_days"),
    "dead_letters": ("received_at", "dead_letters_days"),
}


@dataclass(frozen=True, slots=True)
class TimescaleInfo:
    edition: Edition
    version: str | None

    @property
    def has_policies(self) -> bool:
        return self.edition is Edition.COMMUNITY


def detect(conn: psycopg.Connection[tuple[object, ...]]) -> TimescaleInfo:
    row = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    if not row:
        return TimescaleInfo(Edition.NONE, None)
    lic = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    edition = Edition.COMMUNITY if lic and lic[0] == "timescale" else Edition.APACHE
    return TimescaleInfo(edition, str(row[0]))


def owns_schema(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """Whether the connected role owns the tables (may ALTER them, e.g. install policies)."""
    row = conn.execute(
        "SELECT pg_has_role(current_user, relowner, 'USAGE') FROM pg_class "
        "WHERE oid = to_regclass('audit_log')"
    ).fetchone()
    return bool(row and row[0])


def _days(settings: RetentionSettings, attr: str) -> int:
    return int(getattr(settings, attr))


def apply_policies(
    conn: psycopg.Connection[tuple[object, ...]], info: TimescaleInfo, settings: RetentionSettings
) -> None:
    """Community edition: install compression and retention jobs (idempotent)."""
    if not info.has_policies:
        return
    compress_after = f"{settings.compress_after_days} days"
    for table, (_col, attr) in TIME_SERIES.items():
        with conn.transaction():
            if table != "dead_letters":
                conn.execute(
                    f"ALTER TABLE {table} SET (timescaledb.compress, "
                    "timescaledb.compress_segmentby = 'device_id')"
                )
                conn.execute("SELECT remove_compression_policy(%s, if_exists => true)", (table,))
                conn.execute(
                    "SELECT add_compression_policy(%s, %s::interval)", (table, compress_after)
                )
            conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (table,))
            conn.execute(
                "SELECT add_retention_policy(%s, %s::interval)",
                (table, f"{_days(settings, attr)} days"),
            )
    log.info("timescaledb policies installed", extra={"edition": info.edition.value})


def run_retention(
    conn: psycopg.Connection[tuple[object, ...]], info: TimescaleInfo, settings: RetentionSettings
) -> dict[str, int]:
    """Apache or no timescaledb: drop what is older than each table's retention.

    Returns the number of chunks (Apache) or rows (plain tables) removed per table.
    """
    removed: dict[str, int] = {}
    if info.has_policies:
        return removed
    for table, (col, attr) in TIME_SERIES.items():
        interval = f"{_days(settings, attr)} days"
        with conn.transaction():
            if info.edition is Edition.APACHE:
                # drop_chunks needs the table's owner: migration 0014's SECURITY DEFINER
                # wrapper runs it for the gateway's (non-owner) role.
                row = conn.execute(
                    "SELECT safehome_drop_chunks(%s, %s::interval)", (table, interval)
                ).fetchone()
                removed[table] = int(str(row[0])) if row else 0
            else:
                cur = conn.execute(
                    f"DELETE FROM {table} WHERE {col} < now() - %s::interval",  # noqa: S608
                    (interval,),
                )
                removed[table] = cur.rowcount
    return removed
