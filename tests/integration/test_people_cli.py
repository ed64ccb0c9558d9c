"""``safehome user rename`` and ``user site-phone`` against the real database (the CLI as a
subprocess): display names and the care centre phone (issue 11), audited, names never
printed back."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from gateway.api.auth import create_user
from tests.support import Broker, Database, make_site, run_cli

pytestmark = pytest.mark.integration

PASSWORD = "pw-" + uuid.uuid4().hex[:12]


def _cli(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(db, "user", *args)


def test_rename_and_site_phone(db: Database, broker: Broker) -> None:
    make_site(db, broker, site_id="site-a", beds=1)
    with db.connect() as conn:
        uid = create_user(conn, "duty-a", "duty_staff", PASSWORD, site_id="site-a")
    done = _cli(db, "rename", "duty-a", "  张丽 ")
    assert done.returncode == 0, done.stderr
    assert "张丽" not in done.stdout  # the name is not echoed (personal data)
    assert db.scalar("SELECT display_name FROM users WHERE user_id = %s", (uid,)) == "张丽"
    assert _cli(db, "rename", uid, "张丽").stdout.strip().endswith("unchanged")
    assert _cli(db, "rename", "duty-a", " ").returncode == 2
    assert _cli(db, "rename", "nobody", "x").returncode == 2
    assert db.scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'user.display_name' AND target = %s",
        (f"user:{uid}",),
    ) == 1  # fmt: skip

    assert _cli(db, "site-phone", "site-a", "0571-8888 6000").returncode == 0
    assert db.scalar("SELECT care_phone FROM sites WHERE site_id = 'site-a'") == "0571-8888 6000"
    assert _cli(db, "site-phone", "site-a", "call me maybe").returncode == 2
    assert _cli(db, "site-phone", "no-site", "123").returncode == 2
    assert _cli(db, "site-phone", "site-a").returncode == 0
    assert db.scalar("SELECT care_phone FROM sites WHERE site_id = 'site-a'") is None
