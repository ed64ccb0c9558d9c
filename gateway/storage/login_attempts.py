"""SQL of the shared sign-in throttle (table ``login_failures``, migration 0038; the policy
is :mod:`gateway.api.throttle`, the flow :mod:`gateway.api.login_throttle`).

A row per key (``kind`` 'user' or 'address', ``key_hash`` an HMAC of the key) holds the
times of its latest failed sign-ins. :func:`lock` creates or locks both rows of an attempt
in one statement and returns their times with the database's clock (the one clock of every
gateway process); the caller decides and :func:`store` writes the result in the same
transaction, so concurrent attempts on a key, from any process, are decided one at a time.
:func:`unlock` clears one user's row (a supervisor's unlock, audited); address rows stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from gateway import audit

Conn = psycopg.Connection[Any]

# Address row first, then user row, in every transaction: no lock-order deadlock.
_LOCK = b"""
INSERT INTO login_failures AS f (kind, key_hash)
VALUES ('address', %(address)s), ('user', %(user)s)
ON CONFLICT (kind, key_hash) DO UPDATE SET last_at = f.last_at
RETURNING f.kind, f.failures, now()
"""

_STORE = b"""
UPDATE login_failures AS f SET failures = v.failures, last_at = v.last_at
FROM (VALUES ('address', %(address)s, %(a_failures)s::timestamptz[], %(a_last)s::timestamptz),
             ('user', %(user)s, %(u_failures)s::timestamptz[], %(u_last)s::timestamptz))
     AS v (kind, key_hash, failures, last_at)
WHERE f.kind = v.kind AND f.key_hash = v.key_hash
"""

_DROP_EMPTY = b"""
DELETE FROM login_failures
WHERE (kind, key_hash) IN (('address', %(address)s), ('user', %(user)s))
  AND cardinality(failures) = 0
"""

_CLEAR_USER = b"DELETE FROM login_failures WHERE kind = 'user' AND key_hash = %(user)s"

_UNLOCK = b"""
DELETE FROM login_failures WHERE kind = 'user' AND key_hash = %(user)s
RETURNING cardinality(failures)
"""

# One count of the address at exactly ``at`` removed (array_position: its first occurrence).
_TAKE_BACK = b"""
UPDATE login_failures
SET failures = failures[:array_position(failures, %(at)s::timestamptz) - 1]
            || failures[array_position(failures, %(at)s::timestamptz) + 1:]
WHERE kind = 'address' AND key_hash = %(address)s
  AND array_position(failures, %(at)s::timestamptz) IS NOT NULL
"""

# Rows whose newest failure left the window; rows another attempt holds are skipped.
_PRUNE = b"""
DELETE FROM login_failures WHERE (kind, key_hash) IN (
    SELECT kind, key_hash FROM login_failures
    WHERE last_at < now() - %(window_s)s * interval '1 second'
    ORDER BY last_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED)
"""


@dataclass(frozen=True, slots=True)
class Locked:
    """Both keys' stored failure times, locked until the transaction ends, and the
    database's time."""

    now: datetime
    user: list[datetime]
    address: list[datetime]


def lock(conn: Conn, user: str, address: str) -> Locked:
    """Create or lock the rows of ``user`` and ``address`` (key hashes); call inside a
    transaction, which holds the rows until it ends."""
    rows = conn.execute(_LOCK, {"user": user, "address": address}).fetchall()
    times = {str(kind): list(failures) for kind, failures, _ in rows}
    return Locked(rows[0][2], times["user"], times["address"])


def store(
    conn: Conn,
    user: str,
    address: str,
    *,
    user_failures: Sequence[datetime],
    address_failures: Sequence[datetime],
    now: datetime,
) -> None:
    """Write both keys' failure times (rows left without any are deleted)."""
    conn.execute(
        _STORE,
        {
            "user": user, "u_failures": list(user_failures),
            "u_last": max(user_failures, default=now),
            "address": address, "a_failures": list(address_failures),
            "a_last": max(address_failures, default=now),
        },
    )  # fmt: skip
    conn.execute(_DROP_EMPTY, {"user": user, "address": address})


def succeeded(conn: Conn, user: str, address: str, at: datetime) -> None:
    """A correct password for an attempt admitted ``at``: the user's failures are cleared
    and the address's count at ``at`` taken back."""
    with conn.transaction():
        params = {"user": user, "address": address, "at": at}
        conn.execute(_CLEAR_USER, params)
        conn.execute(_TAKE_BACK, params)
        conn.execute(_DROP_EMPTY, params)


def prune(conn: Conn, window_s: float, batch: int = 10_000) -> int:
    """Delete up to ``batch`` rows without a failure in the last ``window_s``; how many."""
    return conn.execute(_PRUNE, {"window_s": window_s, "batch": batch}).rowcount


def unlock(conn: Conn, user: str, *, user_id: str, actor: str) -> int:
    """Clear the failures of the user name whose key hash is ``user`` (the account ``user_id``)
    and audit it (``auth.unlocked``: the actor and the user id, never the name); how many
    failures were cleared (0: it was not locked, still audited). Address rows stay."""
    with conn.transaction():
        row = conn.execute(_UNLOCK, {"user": user}).fetchone()
        cleared = 0 if row is None else int(row[0])
        audit.append(conn, actor, "auth.unlocked", f"user:{user_id}", {"failures_cleared": cleared})
    return cleared
