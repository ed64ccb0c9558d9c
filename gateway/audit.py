"""The audit log: append-only, hash-chained entries of who did what to which record.

Entries are appended by the database function ``audit_append`` (migration 0010), which
serialises appends with a transaction-level advisory lock, so the chain stays linear under
concurrent writers. :func:`append` runs in the caller's transaction: the entry commits or
rolls back with the change it records.

:func:`verify` recomputes every hash in Python, independently of the database functions:
``hash = sha256(prev_hash || canonical)`` where ``canonical`` is the JSON array
``[seq, "YYYY-MM-DDTHH:MM:SS.ffffffZ", actor, action, target, data]`` in PostgreSQL jsonb's
text form (``", "`` between elements, ``data`` as jsonb prints it).

The application role cannot INSERT into ``audit_log`` (migration 0019): ``audit_append`` is
SECURITY DEFINER and the only way in. A superuser or the owner can still rewrite rows and
recompute the plain hashes, or cut the end of the chain: :func:`verify` given the anchors of
:mod:`gateway.audit_anchor` (heads keyed with a key the database does not hold, kept outside
it) reports an anchored entry whose hash changed and a chain that ends before an anchor; and
it reports an entry older than the one before it (back-dated), whoever wrote it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import psycopg

from gateway.storage import audit as store
from gateway.storage.audit import AuditEntry, AuditError

GENESIS_HASH = "0" * 64


class ChainPoint(Protocol):
    """An entry of the chain vouched for from outside the database: its seq and hash, and
    when (``gateway.audit_anchor.Anchor``, kept in a file the database cannot write)."""

    @property
    def seq(self) -> int: ...
    @property
    def hash(self) -> str: ...
    @property
    def at(self) -> str: ...


__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditError",
    "ChainPoint",
    "Conn",
    "ReadLedger",
    "VerifyResult",
    "append",
    "canonical_text",
    "entry_hash",
    "head",
    "verify",
]


class ReadLedger:
    """Which reads of care data were audited lately, so a read is audited once per actor,
    target and window (a duty shift, ``audit.read_window_s``) instead of on every refresh: a
    console showing an incident re-reads it on every live event and every reconcile (at most
    10 s apart), which would otherwise write an audit entry each time.

    In memory, per process, bounded (the oldest entries go first): a restart or a second
    process audits the next read again, never fewer. Call :meth:`due` before the read and
    :meth:`recorded` once the audit entry has committed.
    """

    def __init__(
        self,
        window_s: float,
        *,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window_s = window_s
        self._max = max_entries
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()  # route handlers run in a thread pool

    def due(self, actor: str, target: str) -> bool:
        """Whether this read must be audited (none by ``actor`` of ``target`` in the window)."""
        with self._lock:
            at = self._seen.get((actor, target))
            return at is None or self._clock() - at >= self._window_s

    def recorded(self, actor: str, target: str) -> None:
        with self._lock:
            self._seen[(actor, target)] = self._clock()
            self._seen.move_to_end((actor, target))
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of walking the chain: ``ok``, or the first broken ``seq`` and why."""

    ok: bool
    entries: int
    head_hash: str
    broken_seq: int | None = None
    problem: str | None = None
    head_seq: int = 0
    anchors_checked: int = 0


Conn = psycopg.Connection[Any]


def append(
    conn: Conn, actor: str, action: str, target: str, data: Mapping[str, Any] | None = None
) -> AuditEntry:
    """Append an entry in the caller's transaction (READ COMMITTED) and return it.

    The chain lock is held until that transaction ends: keep audited transactions short.
    """
    return store.append(conn, actor, action, target, data)


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


def head(conn: Conn) -> tuple[int, str]:
    """The chain head ``(seq, hash)``; ``(0, GENESIS_HASH)`` for an empty log."""
    return store.head(conn) or (0, GENESIS_HASH)


def verify(
    conn: Conn,
    anchors: Sequence[ChainPoint] = (),
    *,
    since: ChainPoint | None = None,
    clock_step_tolerance_s: float = 1.0,
) -> VerifyResult:
    """Walk the chain in ``seq`` order and report the first broken entry.

    Checks every link and hash, that no entry is older than the one before it by more than
    ``clock_step_tolerance_s`` (back-dated), that the entry at each anchor's seq has the
    anchored hash, and that the chain reaches the last anchor. With ``since`` (an anchor
    already checked) the walk starts at that entry, which must still have its anchored hash.
    """
    by_seq = {a.seq: a for a in anchors}
    prev = GENESIS_HASH if since is None else since.hash
    prev_time: datetime | None = None
    tolerance = timedelta(seconds=clock_step_tolerance_s)
    count = 0
    last = 0
    checked = 0
    start = 0 if since is None else since.seq
    with store.scan(conn, start) as entries:
        for seq, time, actor, action, target, data_text, prev_hash, stored in entries:
            count += 1
            if since is not None and seq == since.seq:
                if stored != since.hash:
                    return VerifyResult(False, count, prev, seq, "entry differs from its anchor")
                prev_time, last = time, seq
                continue
            if since is not None and count == 1:
                return VerifyResult(False, count, prev, since.seq, "anchored entry is missing")
            if prev_hash != prev:
                return VerifyResult(False, count, prev, seq, "prev_hash does not link")
            expected = entry_hash(
                prev_hash, canonical_text(seq, time, actor, action, target, data_text=data_text)
            )
            if expected != stored:
                return VerifyResult(False, count, prev, seq, "hash does not match the entry")
            if prev_time is not None and time < prev_time - tolerance:
                problem = "entry is older than the one before it (back-dated)"
                return VerifyResult(False, count, prev, seq, problem)
            skipped = min((s for s in by_seq if last < s < seq), default=None)
            if skipped is not None:
                return VerifyResult(False, count, prev, skipped, "anchored entry is missing")
            anchor = by_seq.get(seq)
            if anchor is not None:
                if anchor.hash != stored:
                    return VerifyResult(False, count, prev, seq,
                                        f"hash differs from the anchor of {anchor.at}")  # fmt: skip
                checked += 1
            prev, prev_time, last = stored, time, seq
    if since is not None and last < since.seq:
        return VerifyResult(False, count, prev, since.seq, "anchored entry is missing "
                            "(entries removed)", last, checked)  # fmt: skip
    beyond = [s for s in by_seq if s > last]
    if beyond:
        return VerifyResult(False, count, prev, min(beyond),
                            f"chain ends at seq {last}, before the anchor at seq {max(beyond)} "
                            "(entries removed)", last, checked)  # fmt: skip
    return VerifyResult(True, count, prev, head_seq=last, anchors_checked=checked)
