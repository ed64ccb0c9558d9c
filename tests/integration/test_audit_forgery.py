"""The audit trail cannot be forged from inside (issue 10 §4), against the real PostgreSQL.

* as the application role: no direct INSERT (the attack: ``OVERRIDING SYSTEM VALUE`` with a
  self-computed hash, back-dated, attributed to an admin), no use of the chain's sequence;
  appends only through ``audit_append`` (SECURITY DEFINER);
* as a superuser: a rewrite with recomputed plain hashes, a back-dated appended row and a cut
  chain are all reported by ``verify`` given the keyed anchors kept outside the database,
  and by ``safehome audit verify`` (the CLI as a subprocess).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from gateway import audit, audit_anchor
from gateway.localsvc import LocalServiceError
from tests.support import Broker, Database, InProcessGateway, gateway_settings, wait_until

pytestmark = pytest.mark.integration

KEY = b"anchor-key-" + uuid.uuid4().hex.encode()


def _append(db: Database, n: int) -> None:
    with db.connect() as c:
        for i in range(n):
            with c.transaction():
                audit.append(c, f"user-{i}", "registry.device.create", f"device:d{i}", {"i": i})


def _superuser(db: Database, sql: str) -> None:
    db.server.psql_admin(sql, dbname=db.name)


def _rows(db: Database) -> list[tuple[object, ...]]:
    with db.connect() as c:
        return c.execute(
            "SELECT seq, time, actor, action, target, data::text FROM audit_log ORDER BY seq"
        ).fetchall()


def _recompute_from(db: Database, seq: int) -> None:
    """What a superuser does to hide a rewrite: recompute every plain hash from ``seq`` on."""
    rows = _rows(db)
    prev = audit.GENESIS_HASH
    updates = []
    for s, t, actor, action, target, data in rows:
        assert isinstance(s, int) and isinstance(t, datetime) and isinstance(data, str)
        h = audit.entry_hash(prev, audit.canonical_text(s, t, str(actor), str(action),
                                                         str(target), data_text=data))  # fmt: skip
        if s >= seq:
            updates.append(
                f"UPDATE audit_log SET prev_hash = '{prev}', hash = '{h}' WHERE seq = {s};"
            )
        prev = h
    _superuser(db, "ALTER TABLE audit_log DISABLE TRIGGER USER; "
               + "".join(updates) + " ALTER TABLE audit_log ENABLE TRIGGER USER;")  # fmt: skip


def test_application_role_cannot_insert_forged_entries(db: Database) -> None:
    _append(db, 2)
    head_seq, head_hash = 0, audit.GENESIS_HASH
    with db.connect() as c:
        head_seq, head_hash = audit.head(c)
        january = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        text = audit.canonical_text(head_seq + 1, january, "admin-1", "user.create",
                                    "user:mallory", data_text="{}")  # fmt: skip
        forged = audit.entry_hash(head_hash, text)
        for sql, params in (
            ("INSERT INTO audit_log (seq, time, actor, action, target, data, prev_hash, hash) "
             "OVERRIDING SYSTEM VALUE VALUES (%s, %s, 'admin-1', 'user.create', 'user:mallory', "
             "'{}', %s, %s)", (head_seq + 1, january, head_hash, forged)),
            ("INSERT INTO audit_log (time, actor, action, target, data, prev_hash, hash) "
             "VALUES (%s, 'admin-1', 'user.create', 'user:mallory', '{}', %s, %s)",
             (january, head_hash, forged)),
            ("SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), 1000)", ()),
            ("SELECT nextval(pg_get_serial_sequence('audit_log', 'seq'))", ()),
            ("UPDATE audit_log SET actor = 'admin-1' WHERE seq = 1", ()),
        ):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(sql.encode(), params)
        # The function computes seq, time and chain itself, whatever the caller would like.
        with c.transaction():
            entry = audit.append(c, "installer-1", "device.test.start", "device:d9")
        assert entry.seq == head_seq + 1 and entry.prev_hash == head_hash
        assert abs((entry.time - datetime.now(UTC)).total_seconds()) < 300
        assert audit.verify(c).ok
    # Defence in depth: even with INSERT granted again, the trigger refuses a direct insert.
    with db.connect_owner() as o:
        o.execute(f'GRANT INSERT ON audit_log TO "{db.user}"'.encode())
    with (
        db.connect() as c,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="audit_append"),
    ):
        c.execute(
            "INSERT INTO audit_log (seq, time, actor, action, target, data, prev_hash, hash) "
            "OVERRIDING SYSTEM VALUE VALUES (99, now(), 'admin-1', 'x', 'y', '{}', %s, %s)",
            (head_hash, forged),
        )


def test_superuser_rewrite_is_detected_by_the_anchors(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "anchors.jsonl"
    _append(db, 3)
    with db.connect() as c:
        assert audit_anchor.anchor_head(c, path, KEY, 1.0).ok  # anchor at seq 3
    _append(db, 2)
    with db.connect() as c:
        assert audit_anchor.anchor_head(c, path, KEY, 1.0).ok  # anchor at seq 5
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [a.seq for a in audit_anchor.read(path, KEY)] == [3, 5]
    # The superuser re-attributes entry 2 to an admin and recomputes the plain chain.
    _superuser(db, "ALTER TABLE audit_log DISABLE TRIGGER USER; "
               "UPDATE audit_log SET actor = 'admin-1' WHERE seq = 2; "
               "ALTER TABLE audit_log ENABLE TRIGGER USER;")  # fmt: skip
    _recompute_from(db, 2)
    anchors = audit_anchor.read(path, KEY)
    with db.connect() as c:
        assert audit.verify(c).ok  # the plain chain alone is fooled
        result = audit.verify(c, anchors)
        assert not result.ok and result.broken_seq == 3
        assert "anchor" in (result.problem or "")
        # ...and the gateway's anchoring loop refuses to anchor the rewritten head.
        _append(db, 1)
        assert not audit_anchor.anchor_head(c, path, KEY, 1.0).ok
    assert [a.seq for a in audit_anchor.read(path, KEY)] == [3, 5]


def test_back_dated_and_cut_chains_are_detected(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "anchors.jsonl"
    _append(db, 3)
    with db.connect() as c:
        assert audit_anchor.anchor_head(c, path, KEY, 1.0).ok
        seq, prev = audit.head(c)
    january = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    text = audit.canonical_text(seq + 1, january, "admin-1", "user.create", "user:mallory",
                                data_text="{}")  # fmt: skip
    forged = audit.entry_hash(prev, text)
    insert = ("INSERT INTO audit_log (seq, time, actor, action, target, data, prev_hash, hash) "
              f"OVERRIDING SYSTEM VALUE VALUES ({seq + 1}, '2026-01-05 09:00:00+00', 'admin-1', "
              f"'user.create', 'user:mallory', '{{}}', '{prev}', '{forged}')")  # fmt: skip
    with pytest.raises(LocalServiceError, match="append through audit_append"):
        _superuser(db, insert)  # even a superuser must first disable the trigger
    _superuser(db, f"ALTER TABLE audit_log DISABLE TRIGGER USER; {insert}; "
               "ALTER TABLE audit_log ENABLE TRIGGER USER;")  # fmt: skip
    anchors = audit_anchor.read(path, KEY)
    with db.connect() as c:
        result = audit.verify(c, anchors)
    assert not result.ok and result.broken_seq == seq + 1
    assert "back-dated" in (result.problem or "")
    # Cutting the end of the chain (the forged row and an anchored one) shows too.
    _superuser(db, "ALTER TABLE audit_log DISABLE TRIGGER USER; "
               f"DELETE FROM audit_log WHERE seq >= {seq}; "
               "ALTER TABLE audit_log ENABLE TRIGGER USER;")  # fmt: skip
    with db.connect() as c:
        assert audit.verify(c).ok
        result = audit.verify(c, anchors)
        assert not result.ok and "entries removed" in (result.problem or "")
        # The gateway's incremental check from its last anchor says so too.
        assert not audit_anchor.anchor_head(c, path, KEY, 1.0).ok
    # Emptied altogether: the same.
    _superuser(db, "ALTER TABLE audit_log DISABLE TRIGGER USER; DELETE FROM audit_log; "
               "ALTER TABLE audit_log ENABLE TRIGGER USER;")  # fmt: skip
    with db.connect() as c:
        assert audit.verify(c).ok and audit.verify(c).entries == 0
        assert not audit.verify(c, anchors).ok
        assert not audit_anchor.anchor_head(c, path, KEY, 1.0).ok


def test_a_forged_anchor_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "anchors.jsonl"
    audit_anchor.write(path, audit_anchor.make(KEY, 7, "a" * 64))
    assert audit_anchor.read(path, KEY)[0].seq == 7
    other = audit_anchor.make(b"not-the-key", 9, "b" * 64)
    audit_anchor.write(path, other)
    with pytest.raises(audit_anchor.AnchorError, match="MAC does not match"):
        audit_anchor.read(path, KEY)
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        audit_anchor.write(link, other)
    assert not (tmp_path / "elsewhere").exists()


def _verify_cli(db: Database, path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOME_")}
    env.update({
        "SAFEHOME_DATABASE__HOST": "127.0.0.1",
        "SAFEHOME_DATABASE__PORT": str(db.port),
        "SAFEHOME_DATABASE__NAME": db.name,
        "SAFEHOME_DATABASE__USER": db.user,
        "SAFEHOME_DATABASE__PASSWORD": db.password,
        "SAFEHOME_AUDIT__ANCHOR_KEY": KEY.decode(),
        "SAFEHOME_AUDIT__ANCHOR_PATH": str(path),
    })  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", "verify"],
        check=False, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_cli_verify_anchors_and_reports_a_rewrite(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "anchors.jsonl"
    _append(db, 4)
    done = _verify_cli(db, path)
    assert done.returncode == 0, done.stderr
    assert "audit chain intact: 4 entries" in done.stdout
    assert [a.seq for a in audit_anchor.read(path, KEY)] == [4]
    _superuser(db, "ALTER TABLE audit_log DISABLE TRIGGER USER; "
               "UPDATE audit_log SET target = 'device:other' WHERE seq = 1; "
               "ALTER TABLE audit_log ENABLE TRIGGER USER;")  # fmt: skip
    _recompute_from(db, 1)
    done = _verify_cli(db, path)
    assert done.returncode == 1
    assert "audit chain BROKEN at seq 4" in done.stdout


def test_the_gateway_anchors_the_head_at_intervals(
    db: Database, broker: Broker, tmp_path: Path
) -> None:
    path = tmp_path / "audit" / "anchors.jsonl"
    settings = gateway_settings(
        db, broker,
        SAFEHOME_AUDIT__ANCHOR_KEY=KEY.decode(),
        SAFEHOME_AUDIT__ANCHOR_PATH=str(path),
        SAFEHOME_AUDIT__ANCHOR_INTERVAL_S="0.2",
    )  # fmt: skip

    def anchored() -> list[int]:
        return [a.seq for a in audit_anchor.read(path, KEY)]

    with InProcessGateway(settings):
        _append(db, 2)
        wait_until(lambda: anchored()[-1:] == [2], 15, "anchor of seq 2")
        _append(db, 1)
        wait_until(lambda: anchored()[-1:] == [3], 15, "anchor of seq 3")
        assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
        # A rewrite is refused: no anchor of the rewritten chain.
        _superuser(db, "ALTER TABLE audit_log DISABLE TRIGGER USER; "
                   "UPDATE audit_log SET actor = 'admin-1' WHERE seq = 3; "
                   "ALTER TABLE audit_log ENABLE TRIGGER USER;")  # fmt: skip
        _recompute_from(db, 3)
        _append(db, 1)
        with db.connect() as c:
            assert not audit.verify(c, audit_anchor.read(path, KEY)).ok
    assert anchored()[-1] == 3
