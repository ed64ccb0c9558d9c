"""The audit log: append-only, hash-chained entries of who did what to which record.

Entries are appended by the database function ``audit_append`` (migration 0010), which
serialises appends with a transaction-level advisory lock, so the chain stays linear under
concurrent writers. :func:`append` runs in the caller's transaction: the entry commits or
rolls back with the change it records.

:func:`verify` recomputes every hash in Python, independently of the database functions:
``hash = sha256(prev_hash || canonical)`` where ``canonical`` is the JSON array
``[seq, "YYYY-MM-DDTHH:MM:SS.ffffffZ", actor, action, target, data]`` in PostgreSQL jsonb's
text form (``", "`` between elements, ``data`` as jsonb prints it). Removing entries at the
end of the chain cannot be seen from inside the database; anchor the head elsewhere
(e.g. print ``VerifyResult.head_hash`` to an external log) to detect that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

GENESIS_HASH = "0" * 64


class AuditError(Exception):
    """Base error of the audit log."""


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


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of walking the chain: ``ok``, or the first broken ``seq`` and why."""

    ok: bool
    entries: int
    head_hash: str
    broken_seq: int | None = None
    problem: str | None = None


Conn = psycopg.Connection[Any]


def append(
    conn: Conn, actor: str, action: str, target: str, data: Mapping[str, Any] | None = None
) -> AuditEntry:
    """Append an entry in the caller's transaction (READ COMMITTED) and return it.

    The chain lock is held until that transaction ends: keep audited transactions short.
    """
    row = conn.execute(
        "SELECT seq, time, actor, action, target, data, prev_hash, hash "
        "FROM audit_append(%s, %s, %s, %s)",
        (actor, action, target, Jsonb(dict(data or {}))),
    ).fetchone()
    if row is None:  # pragma: no cover - the function always returns a row
        raise AuditError("audit_append returned nothing")
    return AuditEntry(*row)


def canonical_text(
    seq: int, time: datetime, actor: str, action: str, target: str, *, data_text: str
) -> str:
    """The canonical form hashed for one entry (mirrors SQL ``audit_entry_text``)."""
    utc = time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    parts = [str(seq), *(json.dumps(s, ensure_ascii=False) for s in (utc, actor, action, target))]
    return "[" + ", ".join([*parts, data_text]) + "]"


def entry_hash(prev_hash: str, canonical: str) -> str:
    """sha256 over the previous hash and the canonical entry, hex."""
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def verify(conn: Conn) -> VerifyResult:
    """Walk the whole chain in ``seq`` order and report the first broken entry."""
    prev = GENESIS_HASH
    count = 0
    with conn.transaction(), conn.cursor(name="audit_verify") as cur:
        cur.itersize = 2000
        cur.execute(
            "SELECT seq, time, actor, action, target, data::text, prev_hash, hash "
            "FROM audit_log ORDER BY seq"
        )
        for seq, time, actor, action, target, data_text, prev_hash, stored in cur:
            count += 1
            if prev_hash != prev:
                return VerifyResult(False, count, prev, seq, "prev_hash does not link")
            expected = entry_hash(
                prev_hash, canonical_text(seq, time, actor, action, target, data_text=data_text)
            )
            if expected != stored:
                return VerifyResult(False, count, prev, seq, "hash does not match the entry")
            prev = stored
    return VerifyResult(True, count, prev)
