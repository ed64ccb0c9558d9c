"""The acceptance-test repository: ``acceptance_tests``, ``acceptance_observations``,
``commissioning_records``, and the device data an acceptance test reads back.

Functions take a psycopg connection (the caller owns the transaction). The test's rules
(steps, thresholds, the verdict) are ``gateway.acceptance``'s; SQL is here only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from gateway.errors import NotFoundError

Conn = psycopg.Connection[Any]
Row = dict[str, Any]


class AcceptanceTest(BaseModel):
    """A test as stored, with its bed's code and the database's ``now`` (for deadlines)."""

    test_id: str
    device_id: str
    site_id: str
    kind: str
    bed_id: str | None
    bed_code: str | None
    resident_id: str | None
    installer: str
    started_at: datetime
    expires_at: datetime
    finished_at: datetime | None
    result: str | None
    steps_done_at: datetime | None
    now: datetime


class ActiveTest(BaseModel):
    """A device in test mode now, for the console's banner."""

    test_id: str
    device_id: str
    kind: str
    bed_id: str | None
    bed_code: str | None
    location_id: str | None
    location: str | None
    started_at: datetime
    expires_at: datetime
    now: datetime


class CommissioningRecord(BaseModel):
    """The outcome of a finished test (steps with their results and latencies)."""

    record_id: int
    test_id: str
    device_id: str
    site_id: str
    kind: str
    bed_code: str | None
    resident_id: str | None
    installer: str
    started_at: datetime
    finished_at: datetime
    result: str
    steps: list[dict[str, Any]]
    family_notified: bool
    notes: str | None


_IN_PROGRESS = b"""
SELECT device_id, test_id FROM acceptance_tests
WHERE finished_at IS NULL AND steps_done_at IS NULL AND expires_at > now()
  AND device_id = ANY(%s)
"""

_TEST_SQL = b"""
SELECT t.test_id, t.device_id, t.site_id, t.kind, t.bed_id, b.bed_code, t.resident_id,
       t.installer, t.started_at, t.expires_at, t.finished_at, t.result, t.steps_done_at,
       now() AS now
FROM acceptance_tests t LEFT JOIN beds b ON b.bed_id = t.bed_id
WHERE t.test_id = %s
"""

_ACTIVE = b"""
SELECT t.test_id, t.device_id, t.kind, t.bed_id, b.bed_code, l.location_id, l.label AS location,
       t.started_at, t.expires_at, now() AS now
FROM acceptance_tests t
LEFT JOIN beds b ON b.bed_id = t.bed_id
LEFT JOIN devices d ON d.device_id = t.device_id
LEFT JOIN locations l ON l.location_id = coalesce(b.location_id, d.location_id)
WHERE t.finished_at IS NULL AND t.steps_done_at IS NULL AND t.expires_at > now()
  AND (%(site)s::text IS NULL OR t.site_id = %(site)s)
ORDER BY t.expires_at
"""

_OBSERVE = (
    b"INSERT INTO acceptance_observations (test_id, device_id, kind, time, reason, details) "
    b"VALUES (%s, %s, %s, %s, %s, %s)"
)

_RECORD_COLUMNS = (
    "record_id, test_id, device_id, site_id, kind, bed_code, resident_id, installer, "
    "started_at, finished_at, result, steps, family_notified, notes"
)
_INSERT_RECORD = (
    "INSERT INTO commissioning_records (test_id, device_id, site_id, kind, bed_code, "  # noqa: S608
    "resident_id, installer, started_at, finished_at, result, steps, family_notified, notes) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    f"RETURNING {_RECORD_COLUMNS}"
).encode()

_WHERE = ("device_id = %(dev)s AND time >= %(from_time)s AND received_at >= %(start)s "
          "AND received_at <= %(end)s")  # fmt: skip
_DATA_SQL = {
    "events": f"SELECT time, received_at, type, data FROM device_events WHERE {_WHERE} "  # noqa: S608
              "ORDER BY time",
    "readings": "SELECT time, received_at, type, presence, heart_rate, breathing_rate, worn "  # noqa: S608
                f"FROM readings WHERE {_WHERE} ORDER BY time",
    "accel": f"SELECT time, received_at, n, samples FROM accel WHERE {_WHERE} ORDER BY time",  # noqa: S608
}  # fmt: skip
DataTable = Literal["events", "readings", "accel"]


_STEPS_DONE = (
    b"UPDATE acceptance_tests SET steps_done_at = now() WHERE test_id = %s "
    b"AND steps_done_at IS NULL RETURNING test_id"
)
_STEPS_DONE_UNFINISHED = (
    b"UPDATE acceptance_tests SET steps_done_at = now() WHERE test_id = %s "
    b"AND steps_done_at IS NULL AND finished_at IS NULL RETURNING test_id"
)


def _dumps(obj: object) -> str:
    return orjson.dumps(obj, default=str).decode()


# -- test mode ----------------------------------------------------------------------------


def in_progress(conn: Conn, device_ids: Sequence[str]) -> dict[str, str]:
    """``{device_id: test_id}`` of the devices in test mode now."""
    return {str(d): str(t) for d, t in conn.execute(_IN_PROGRESS, (list(device_ids),))}


def lock_test_state(conn: Conn, test_id: str) -> tuple[str, datetime, datetime | None] | None:
    """(kind, started_at, steps_done_at) of a test, its row locked; None if unknown."""
    row = conn.execute(
        "SELECT kind, started_at, steps_done_at FROM acceptance_tests WHERE test_id = %s "
        "FOR UPDATE",
        (test_id,),
    ).fetchone()
    return None if row is None else (str(row[0]), row[1], row[2])


def observed(conn: Conn, test_id: str, kind: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM acceptance_observations WHERE test_id = %s AND kind = %s)",
        (test_id, kind),
    ).fetchone()
    return bool(row and row[0])


@dataclass(frozen=True, slots=True)
class Observation:
    """A detection (or a resident cancel) of a device under test: kept, not acted on."""

    test_id: str
    device_id: str | None
    kind: str
    time: datetime
    reason: str
    details: dict[str, Any]


def add_observation(conn: Conn, obs: Observation) -> None:
    conn.execute(
        _OBSERVE,
        (obs.test_id, obs.device_id, obs.kind, obs.time, obs.reason, Jsonb(obs.details)),
    )


def count_observations_except(conn: Conn, test_id: str, kind: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM acceptance_observations WHERE test_id = %s AND kind <> %s",
        (test_id, kind),
    ).fetchone()
    return int(row[0]) if row else 0


def observations(conn: Conn, test_id: str) -> list[Row]:
    rows = conn.execute(
        "SELECT kind, time, stored_at, reason FROM acceptance_observations WHERE test_id = %s "
        "ORDER BY time",
        (test_id,),
    ).fetchall()
    return [{"kind": k, "time": t, "stored_at": s, "reason": r} for k, t, s, r in rows]


def mark_steps_done(conn: Conn, test_id: str, *, unfinished_only: bool = False) -> bool:
    """Test mode ends: set steps_done_at (once); True when this call set it."""
    sql = _STEPS_DONE_UNFINISHED if unfinished_only else _STEPS_DONE
    return conn.execute(sql, (test_id,)).fetchone() is not None


# -- tests --------------------------------------------------------------------------------


def active(conn: Conn, site_id: str | None) -> list[ActiveTest]:
    with conn.cursor(row_factory=dict_row) as cur:
        return [ActiveTest(**r) for r in cur.execute(_ACTIVE, {"site": site_id}).fetchall()]


def lock_device(conn: Conn, device_id: str) -> None:
    conn.execute("SELECT 1 FROM devices WHERE device_id = %s FOR UPDATE", (device_id,))


def fail_expired(conn: Conn, device_id: str) -> list[str]:
    """Close the device's tests left to expire (failed); their ids."""
    rows = conn.execute(
        "UPDATE acceptance_tests SET finished_at = expires_at, result = 'failed' "
        "WHERE device_id = %s AND finished_at IS NULL AND expires_at <= now() "
        "RETURNING test_id",
        (device_id,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def running(conn: Conn, device_id: str) -> str | None:
    row = conn.execute(
        "SELECT test_id FROM acceptance_tests WHERE device_id = %s AND finished_at IS NULL",
        (device_id,),
    ).fetchone()
    return None if row is None else str(row[0])


def abort_running(conn: Conn, device_id: str) -> None:
    """A device leaving service ends its unfinished acceptance test (aborted)."""
    conn.execute(
        "UPDATE acceptance_tests SET finished_at = now(), result = 'aborted' "
        "WHERE device_id = %s AND finished_at IS NULL",
        (device_id,),
    )


def resident_of_bed(conn: Conn, bed_id: str) -> str | None:
    row = conn.execute("SELECT resident_id FROM residents WHERE bed_id = %s", (bed_id,)).fetchone()
    return None if row is None else str(row[0])


def insert_test(
    conn: Conn, test_id: str, device: Row, resident_id: str | None, *, installer: str,
    timeout_s: float,
) -> None:  # fmt: skip
    conn.execute(
        "INSERT INTO acceptance_tests (test_id, device_id, site_id, kind, bed_id, "
        "resident_id, installer, expires_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, now() + %s)",
        (test_id, device["device_id"], device["site_id"], device["kind"], device["bed_id"],
         resident_id, installer, timedelta(seconds=timeout_s)),
    )  # fmt: skip


def find_test(conn: Conn, test_id: str) -> AcceptanceTest:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_TEST_SQL, (test_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"unknown acceptance test {test_id!r}")
    return AcceptanceTest(**row)


def lock_test(conn: Conn, test_id: str) -> None:
    conn.execute("SELECT 1 FROM acceptance_tests WHERE test_id = %s FOR UPDATE", (test_id,))


def set_result(conn: Conn, test_id: str, finished_at: datetime, result: str) -> None:
    conn.execute(
        "UPDATE acceptance_tests SET finished_at = %s, result = %s WHERE test_id = %s",
        (finished_at, result, test_id),
    )


def device_data(
    conn: Conn, table: DataTable, device_id: str, window: tuple[datetime, datetime],
    slack_s: float,
) -> list[Row]:  # fmt: skip
    """The device's rows of ``table`` received in [start, end] (device time from slack
    before the start)."""
    start, end = window
    params = {"dev": device_id, "start": start, "end": end,
              "from_time": start - timedelta(seconds=slack_s)}  # fmt: skip
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_DATA_SQL[table].encode(), params).fetchall()


def contacts_notified(conn: Conn, resident_id: str, start: datetime, end: datetime) -> bool:
    """Whether any contact of the resident got a notification in [start, end]."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM notification_outbox o JOIN contacts c "
        "ON c.contact_id = o.contact_id WHERE c.resident_id = %s AND o.created_at >= %s "
        "AND o.created_at <= %s)",
        (resident_id, start, end),
    ).fetchone()
    return bool(row and row[0])


# -- commissioning records ----------------------------------------------------------------


def insert_record(
    conn: Conn, test: Row, result: str, steps: list[Row], *, family_notified: bool,
    notes: str | None,
) -> CommissioningRecord:  # fmt: skip
    with conn.cursor(row_factory=dict_row) as cur:
        record = cur.execute(
            _INSERT_RECORD,
            (test["test_id"], test["device_id"], test["site_id"], test["kind"], test["bed_code"],
             test["resident_id"], test["installer"], test["started_at"], test["finished_at"],
             result, Jsonb(steps, dumps=_dumps), family_notified, notes),
        ).fetchone()  # fmt: skip
    assert record is not None
    return CommissioningRecord(**record)


def list_records(conn: Conn, site_id: str) -> list[CommissioningRecord]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_RECORD_COLUMNS} FROM commissioning_records WHERE site_id = %s "  # noqa: S608
            "ORDER BY finished_at DESC, record_id DESC",
            (site_id,),
        ).fetchall()
    return [CommissioningRecord(**r) for r in rows]
