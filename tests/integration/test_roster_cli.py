"""``safehome roster add|list|remove`` against the real database (the CLI as a subprocess)."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from gateway import audit
from gateway.api.auth import create_user
from gateway.escalation.roster import DutyRole, on_duty
from tests.support import Database, run_cli

pytestmark = pytest.mark.integration

PASSWORD = "pw-" + uuid.uuid4().hex[:12]
CST = timezone(timedelta(hours=8))  # the sites' default utc_offset_s (28800)


def _cli(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(db, "roster", *args)


def _ok(db: Database, *args: str) -> str:
    done = _cli(db, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _refused(db: Database, *args: str) -> str:
    done = _cli(db, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stderr


@pytest.fixture
def users(db: Database) -> dict[str, str]:
    with db.connect() as conn:
        for site in ("site-a", "site-b"):
            conn.execute(
                "INSERT INTO sites (site_id, name, kind) VALUES (%s, %s, 'nursing_home')",
                (site, f"Site {site}"),
            )
        conn.execute(
            "INSERT INTO locations (location_id, site_id, kind, label) "
            "VALUES ('l1', 'site-a', 'room', 'Room 1')"
        )
        conn.execute(
            "INSERT INTO beds (bed_id, bed_code, site_id, location_id) "
            "VALUES ('b1', 'BED-1', 'site-a', 'l1')"
        )
        conn.execute(
            "INSERT INTO residents (resident_id, elder_code, site_id, bed_id, display_name, "
            "care_level) VALUES ('r1', 'ELD-1', 'site-a', 'b1', 'Resident', 1)"
        )
        ids = {
            "duty-a": create_user(conn, "duty-a", "duty_staff", PASSWORD, site_id="site-a"),
            "sup-a": create_user(conn, "sup-a", "supervisor", PASSWORD, site_id="site-a"),
            "duty-b": create_user(conn, "duty-b", "duty_staff", PASSWORD, site_id="site-b"),
            "gone-a": create_user(conn, "gone-a", "duty_staff", PASSWORD, site_id="site-a"),
            "fam-a": create_user(conn, "fam-a", "family", PASSWORD, residents=["r1"]),
        }
        conn.execute("UPDATE users SET active = false WHERE username = 'gone-a'")
    return ids


def _local(t: datetime) -> str:
    """A naive ISO time in the sites' local time (what an operator types)."""
    return t.astimezone(CST).replace(tzinfo=None).isoformat(timespec="minutes")


def _count(db: Database) -> Any:
    return db.scalar("SELECT count(*) FROM duty_shifts")


def test_add_and_list_who_is_on_duty(db: Database, users: dict[str, str]) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start, end = now - timedelta(hours=1), now + timedelta(hours=8)
    # By sign-in name, naive local times (taken in the site's UTC+8).
    out = _ok(db, "add", "--site", "site-a", "--user", "duty-a", "--role", "duty_staff",
              "--start", _local(start), "--end", _local(end))  # fmt: skip
    assert out.startswith("shift added: duty_staff #")
    assert f"duty-a ({users['duty-a']})" in out and "+08:00" in out
    # By user id, explicit UTC offset.
    _ok(db, "add", "--site", "site-a", "--user", users["sup-a"], "--role", "supervisor",
        "--start", now.isoformat(), "--end", (now + timedelta(hours=2)).isoformat())  # fmt: skip
    # A supervisor may cover a duty-staff shift (later, so no overlap with their own).
    cover = _local(now + timedelta(hours=3)), _local(now + timedelta(hours=5))
    _ok(db, "add", "--site", "site-a", "--user", "sup-a", "--role", "duty_staff",
        "--start", cover[0], "--end", cover[1])  # fmt: skip

    stored = db.rows("SELECT user_id, role, starts_at, ends_at FROM duty_shifts ORDER BY id")
    assert stored[0] == (users["duty-a"], "duty_staff", start, end)
    with db.connect() as conn:  # what the escalation ladder pages
        assert on_duty(conn, "site-a", DutyRole.DUTY_STAFF, now) == [users["duty-a"]]
        assert on_duty(conn, "site-a", DutyRole.SUPERVISOR, now) == [users["sup-a"]]

    text = _ok(db, "list", "--site", "site-a")
    assert text.splitlines()[0].startswith("on duty at site site-a at ")
    sup, staff = text.index("supervisor:"), text.index("duty_staff:")
    assert sup < text.index("sup-a") < staff < text.index("duty-a")

    later = json.loads(_ok(db, "list", "--site", "site-a", "--json",
                           "--at", _local(now + timedelta(hours=4))))  # fmt: skip
    assert [(s["username"], s["role"]) for s in later["shifts"]] == [
        ("duty-a", "duty_staff"),
        ("sup-a", "duty_staff"),
    ]
    empty = _ok(db, "list", "--site", "site-a", "--at", (now + timedelta(days=2)).isoformat())
    assert empty.count("(nobody on duty)") == 2
    assert "(nobody on duty)" in _ok(db, "list", "--site", "site-b")

    # Every change is in the audit log, and the chain holds.
    actions = db.rows("SELECT actor, action, data->>'user_id' FROM audit_log "
                      "WHERE action LIKE 'roster.%%' ORDER BY seq")  # fmt: skip
    assert actions == [
        ("cli", "roster.add", users["duty-a"]),
        ("cli", "roster.add", users["sup-a"]),
        ("cli", "roster.add", users["sup-a"]),
    ]
    with db.connect() as conn:
        assert audit.verify(conn).ok


def test_bad_shifts_are_refused_with_clear_errors(db: Database, users: dict[str, str]) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    s, e = _local(now), _local(now + timedelta(hours=8))

    def add(user: str, role: str = "duty_staff", start: str = s, end: str = e,
            site: str = "site-a") -> list[str]:  # fmt: skip
        return ["add", "--site", site, "--user", user, "--role", role, "--start", start,
                "--end", end]  # fmt: skip

    assert "must end after it starts" in _refused(db, *add("duty-a", start=e, end=s))
    assert "must end after it starts" in _refused(db, *add("duty-a", start=s, end=s))
    assert "unknown user: nobody" in _refused(db, *add("nobody"))
    assert "unknown site: site-x" in _refused(db, *add("duty-a", site="site-x"))
    assert "works at site site-b, not site-a" in _refused(db, *add("duty-b"))
    assert "is deactivated" in _refused(db, *add("gone-a"))
    fam = _refused(db, *add("fam-a"))
    assert "family user and cannot work a duty_staff shift" in fam
    assert "cannot work a supervisor shift" in _refused(db, *add("duty-a", role="supervisor"))
    bad = _refused(db, *add("duty-a", start="tomorrow 8am"))
    assert "--start: not an ISO 8601 time: 'tomorrow 8am'" in bad
    assert _cli(db, *add("duty-a", role="nurse")).returncode == 2  # argparse: invalid choice
    assert _count(db) == 0

    first = _ok(db, *add("duty-a"))
    shift_id = int(first.split("#", 1)[1].split()[0])
    # Another person at the same time: fine. The same person overlapping: refused, named.
    _ok(db, *add("sup-a", start=_local(now + timedelta(hours=1)),
                 end=_local(now + timedelta(hours=2))))  # fmt: skip
    clash = _refused(db, *add("duty-a", start=_local(now + timedelta(hours=7)),
                              end=_local(now + timedelta(hours=12))))  # fmt: skip
    assert f"overlaps shift #{shift_id} of the same user" in clash
    assert f"safehome roster remove --site site-a --id {shift_id}" in clash
    # Back to back is not an overlap ([start, end)).
    _ok(db, *add("duty-a", start=e, end=_local(now + timedelta(hours=16))))
    assert _count(db) == 3

    assert f"no shift #{shift_id} at site site-b" in _refused(
        db, "remove", "--site", "site-b", "--id", str(shift_id)
    )
    removed = _ok(db, "remove", "--site", "site-a", "--id", str(shift_id))
    assert removed.startswith(f"shift removed: duty_staff #{shift_id} duty-a")
    _ok(db, *add("duty-a", start=_local(now + timedelta(hours=7)), end=e))
    assert _count(db) == 3
    assert db.rows("SELECT action FROM audit_log WHERE action LIKE 'roster.%%' ORDER BY seq") == [
        ("roster.add",), ("roster.add",), ("roster.add",), ("roster.remove",), ("roster.add",),
    ]  # fmt: skip
