"""Anchors of the audit chain outside the database: its head, keyed with an HMAC.

The database computes the plain hash chain (:mod:`gateway.audit`); whoever can rewrite the
table as its owner or a superuser can recompute it. An anchor is one JSON line
``{"seq": N, "hash": "...", "at": "ISO time", "mac": "..."}`` where ``mac`` is
HMAC-SHA256 under ``audit.anchor_key`` (a key the database never holds) of
``"seq|hash|at"``. :func:`write` appends one (the gateway every ``audit.anchor_interval_s``
when the head moved, and ``safehome audit verify`` after a successful walk);
:func:`gateway.audit.verify` with the anchors of :func:`read` reports a chain whose entry at
an anchored seq has another hash (rewritten), or that ends before the last anchor (cut).

The file is created 0600 without following a symlink, and only appended to.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from gateway.audit import VerifyResult

Conn = psycopg.Connection[Any]
log = logging.getLogger(__name__)


class AnchorError(Exception):
    """The anchor file is unreadable or a line in it is not a valid anchor."""


@dataclass(frozen=True, slots=True)
class Anchor:
    seq: int
    hash: str
    at: str
    mac: str


def mac_of(key: bytes, seq: int, head_hash: str, at: str) -> str:
    return hmac.new(key, f"{seq}|{head_hash}|{at}".encode(), hashlib.sha256).hexdigest()


def make(key: bytes, seq: int, head_hash: str, at: datetime | None = None) -> Anchor:
    stamp = (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")
    return Anchor(seq, head_hash, stamp, mac_of(key, seq, head_hash, stamp))


def read(path: Path, key: bytes) -> list[Anchor]:
    """Every anchor of ``path`` (none when it does not exist), checked against ``key``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise AnchorError(f"cannot read the anchor file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, encoding="utf-8") as f:
        lines = f.read().splitlines()
    anchors = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            anchor = Anchor(int(raw["seq"]), str(raw["hash"]), str(raw["at"]), str(raw["mac"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise AnchorError(f"{path}:{n}: not an anchor") from exc
        expected = mac_of(key, anchor.seq, anchor.hash, anchor.at)
        if not hmac.compare_digest(expected, anchor.mac):
            raise AnchorError(f"{path}:{n}: anchor MAC does not match (wrong key or forged)")
        anchors.append(anchor)
    return anchors


def write(path: Path, anchor: Anchor) -> None:
    """Append ``anchor`` to ``path`` (created 0600 in a 0700 folder; never via a symlink)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        line = json.dumps({"seq": anchor.seq, "hash": anchor.hash, "at": anchor.at,
                           "mac": anchor.mac}) + "\n"  # fmt: skip
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def last_seq(anchors: list[Anchor]) -> int:
    return max((a.seq for a in anchors), default=0)


def anchor_head(conn: Conn, path: Path, key: bytes, clock_step_tolerance_s: float) -> VerifyResult:
    """Check the chain from the last anchor to the head and, when intact and moved, anchor
    the head. Returns the check's result (nothing is written when it is broken)."""
    from gateway import audit  # noqa: PLC0415

    anchors = read(path, key)
    since = max(anchors, key=lambda a: a.seq) if anchors else None
    result = audit.verify(conn, since=since, clock_step_tolerance_s=clock_step_tolerance_s)
    if result.ok and result.head_seq > last_seq(anchors):
        write(path, make(key, result.head_seq, result.head_hash))
    return result
