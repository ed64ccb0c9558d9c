"""SQL of the gateway lease (migration 0023; the logic is in gateway.lease)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import Connection, errors

_TRY_LOCK = "SELECT pg_try_advisory_lock(%s)"
_WAIT_LOCK = "SELECT pg_advisory_lock(%s)"

_CLAIM = """
INSERT INTO gateway_lease (lock_key, holder, backend_pid, token, acquired_at, heartbeat_at)
VALUES (%(key)s, %(holder)s, pg_backend_pid(), 1, now(), now())
ON CONFLICT (lock_key) DO UPDATE
SET holder = EXCLUDED.holder, backend_pid = EXCLUDED.backend_pid,
    token = gateway_lease.token + 1, acquired_at = now(), heartbeat_at = now()
RETURNING token
"""

_RENEW = """
UPDATE gateway_lease SET heartbeat_at = now()
WHERE lock_key = %s AND token = %s AND backend_pid = pg_backend_pid()
"""

_HOLDER = """
SELECT holder, backend_pid, extract(epoch FROM now() - heartbeat_at)::float8
FROM gateway_lease WHERE lock_key = %s
"""

# Every session of the stale holder (its lease connection and its workers', all named by
# its application_name; a recycled backend pid is never trusted), waiting up to 2 s for each
# to end: its lock is released and none of its transactions can commit.
_END_HOLDER = """
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 2000))
FROM pg_stat_activity
WHERE application_name = %(holder)s AND pid <> pg_backend_pid()
"""


@dataclass(frozen=True)
class HolderInfo:
    holder: str
    backend_pid: int
    heartbeat_age_s: float


def try_lock(conn: Connection[Any], key: int, wait_s: float = 0.0) -> bool:
    """Take the session-level advisory lock (autocommit connection), waiting for it up to
    ``wait_s``: a waiter gets it the moment the holder's session ends."""
    if wait_s <= 0:
        row = conn.execute(_TRY_LOCK, (key,)).fetchone()
        return bool(row and row[0])
    conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(wait_s * 1000)}ms",))
    try:
        conn.execute(_WAIT_LOCK, (key,))
        return True
    except errors.LockNotAvailable:
        return False
    finally:
        conn.execute("SELECT set_config('lock_timeout', '0', false)")


def unlock(conn: Connection[Any], key: int) -> None:
    """Release the lock now (a clean stop; closing the session would release it too)."""
    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def claim(conn: Connection[Any], key: int, holder: str) -> int:
    """Record this session as the holder (lock already taken); return the new fencing token."""
    row = conn.execute(_CLAIM, {"key": key, "holder": holder}).fetchone()
    assert row is not None
    return int(row[0])


def renew(conn: Connection[Any], key: int, token: int) -> bool:
    """Renew the heartbeat; False when the row is no longer this session's with this token."""
    return conn.execute(_RENEW, (key, token)).rowcount == 1


def holder(conn: Connection[Any], key: int) -> HolderInfo | None:
    row = conn.execute(_HOLDER, (key,)).fetchone()
    return None if row is None else HolderInfo(str(row[0]), int(row[1]), float(row[2]))


def end_holder(conn: Connection[Any], info: HolderInfo) -> int:
    """Terminate every session of a stale holder; return how many ended."""
    row = conn.execute(_END_HOLDER, {"holder": info.holder}).fetchone()
    return int(row[0]) if row else 0
