"""The audit log's statements (``audit_log``, appended through ``audit_append``).

Appends run in the caller's transaction (the entry commits or rolls back with the change it
records); :func:`scan` reads the chain in ``seq`` order for :func:`gateway.audit.verify`.
The hashing and the chain rules live in :mod:`gateway.audit`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg.types.json import Jsonb

from gateway.errors import UnavailableError

Conn = psycopg.Connection[Any]
AsyncConn = psycopg.AsyncConnection[Any]

_APPEND = (
    b"SELECT seq, time, actor, action, target, data, prev_hash, hash "
    b"FROM audit_append(%s, %s, %s, %s)"
)
_APPEND_SEQ = b"SELECT seq FROM audit_append(%s, %s, %s, %s)"
_HEAD = b"SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
_SCAN = (
    b"SELECT seq, time, actor, action, target, data::text, prev_hash, hash "
    b"FROM audit_log WHERE seq >= %s ORDER BY seq"
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of the audit log."""

    seq: int
    time: datetime
    actor: str
    action: str
    target: str
    data: dict[str, Any]
    prev_hash: str
    hash: str


class StoredEntry(NamedTuple):
    """One entry as :func:`scan` reads it: ``data_text`` is jsonb's text form (hashed)."""

    seq: int
    time: datetime
    actor: str
    action: str
    target: str
    data_text: str
    prev_hash: str
    hash: str


class AuditError(UnavailableError):
    """Base error of the audit log (the database did not append an entry)."""


def append(
    conn: Conn, actor: str, action: str, target: str, data: Mapping[str, Any] | None = None
) -> AuditEntry:
    """Append an entry in the caller's transaction and return it."""
    row = conn.execute(_APPEND, (actor, action, target, Jsonb(dict(data or {})))).fetchone()
    if row is None:  # pragma: no cover - the function always returns a row
        raise AuditError("audit_append returned nothing")
    return AuditEntry(*row)


async def append_async(
    conn: AsyncConn, actor: str, action: str, target: str, data: Mapping[str, Any]
) -> None:
    """:func:`append` on an async connection (the escalation worker's), in its transaction."""
    await conn.execute(_APPEND_SEQ, (actor, action, target, Jsonb(dict(data))))


def head(conn: Conn) -> tuple[int, str] | None:
    """The newest entry's ``(seq, hash)``; None for an empty log."""
    row = conn.execute(_HEAD).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


@contextmanager
def scan(conn: Conn, start: int, *, itersize: int = 2000) -> Iterator[Iterator[StoredEntry]]:
    """The entries from ``seq`` ``start`` on, in ``seq`` order, read by a server-side cursor
    in one transaction (held until the block ends)."""
    with conn.transaction(), conn.cursor(name="audit_verify") as cur:
        cur.itersize = itersize
        cur.execute(_SCAN, (start,))
        yield (StoredEntry(*row) for row in cur)
