"""``safehome user resident-phone`` / ``location-phone`` against the real database (the CLI
as a subprocess): the numbers "呼叫住户" dials, audited without the number, never printed."""

from __future__ import annotations

import subprocess

import pytest

from gateway.storage import incident_calls
from tests.support import Broker, Database, make_site, run_cli

pytestmark = pytest.mark.integration


def _cli(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(db, "user", *args)


def _resident_phone(db: Database) -> str | None:
    with db.connect() as conn:
        [me] = [c for c in incident_calls.callees(conn, "site-a-r0") if c.kind == "resident"]
    return me.phone


def test_resident_and_location_phones(db: Database, broker: Broker) -> None:
    make_site(db, broker, site_id="site-a", beds=1)
    done = _cli(db, "location-phone", "site-a-l0", "021-5555 0199")
    assert done.returncode == 0, done.stderr
    assert "5555" not in done.stdout + done.stderr  # never printed back
    assert _resident_phone(db) == "021-5555 0199"  # the room's landline
    assert _cli(db, "resident-phone", "site-a-r0", "+86 138 1234 1234").returncode == 0
    assert _resident_phone(db) == "+86 138 1234 1234"  # the resident's own phone first
    bad = _cli(db, "resident-phone", "site-a-r0", "call me maybe")
    assert bad.returncode == 2 and "not a phone number" in bad.stderr
    assert _cli(db, "resident-phone", "nobody", "123").returncode == 2
    assert _cli(db, "resident-phone", "site-a-r0").returncode == 0  # cleared
    assert _resident_phone(db) == "021-5555 0199"
    rows = db.rows(
        "SELECT action, actor, target, data::text FROM audit_log "
        "WHERE action IN ('resident.phone', 'location.phone') ORDER BY seq"
    )
    assert [(a, who, t) for a, who, t, _ in rows] == [
        ("location.phone", "cli", "location:site-a-l0"),
        ("resident.phone", "cli", "resident:site-a-r0"),
        ("resident.phone", "cli", "resident:site-a-r0"),
    ]
    assert all("5555" not in d and "1234" not in d for *_, d in rows)
