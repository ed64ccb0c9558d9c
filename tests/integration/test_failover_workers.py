"""In a failover pair only the lease holder runs the periodic workers that write or send (the
away-period release, the message outbox, the platform push schedule, the visits sweep):
real gateway processes on a real database and broker, a real platform receiver.

Observed by their effects: an away period (随家人外出) that ran out with a finding still going
on (its incident), a platform push due now (delivered to the receiver), the monthly push the
schedule queues. Every worker interval is 0.2 s; "did nothing while standby" is checked after
twenty such intervals, then the same work is done exactly once by the process that holds the
lease.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from analytics.types import DetectionKind
from gateway.lease import Lease
from gateway.platform.push import KIND as PUSH_KIND
from gateway.platform.push import enqueue_monthly
from gateway.platform.receiver import PlatformReceiver
from gateway.platform.settings import PlatformSettings
from gateway.settings import Settings
from gateway.storage import family_away
from gateway.visits.config import load_visits_config
from tests.integration.test_family_care import _rec, _store
from tests.support import (
    Broker,
    Database,
    GatewayProcess,
    gateway_settings,
    make_site,
    wait_until,
)

pytestmark = pytest.mark.integration

SECRET = "platform-secret-failover"
INTERVAL_S = 0.2
RELEASED = "held-back findings raised after away mode ended"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[PlatformReceiver]:
    r = PlatformReceiver(SECRET.encode(), tmp_path / "received").start()
    yield r
    r.stop()


def _env(receiver: PlatformReceiver) -> dict[str, str]:
    """Failover on; every periodic worker every INTERVAL_S; the platform push to ``receiver``."""
    every = str(INTERVAL_S)
    return {
        "SAFEHOME_FAILOVER__ENABLED": "true",
        "SAFEHOME_FAMILY__RELEASE_INTERVAL_S": every,
        "SAFEHOME_VISITS__SWEEP_INTERVAL_S": every,
        "SAFEHOME_PLATFORM__ENABLED": "true",
        "SAFEHOME_PLATFORM__URL": receiver.url(),
        "SAFEHOME_PLATFORM__SECRET": SECRET,
        "SAFEHOME_PLATFORM__POLL_INTERVAL_S": every,
        "SAFEHOME_PLATFORM__SCHEDULE_CHECK_S": every,
        "SAFEHOME_PLATFORM__BACKOFF_BASE_S": "0.05",
        "SAFEHOME_PLATFORM__BACKOFF_MAX_S": "0.1",
    }


def _held_back(db: Database, resident: str, device: str) -> None:
    """A no-activity finding held back by an away period, then the period runs out."""
    now = datetime.now(UTC)
    with db.connect() as conn:
        period = family_away.create(
            conn, resident, starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=1),
            note=None, by="test",
        )  # fmt: skip
    _store(db, _rec(DetectionKind.NO_ACTIVITY, resident, device))
    assert db.scalar(
        "SELECT count(*) FROM away_suppressions WHERE away_period_id = %s", (period,)
    ) == 1  # fmt: skip
    with db.connect() as conn:
        conn.execute(
            "UPDATE away_periods SET ends_at = now() - interval '1 second' WHERE id = %s",
            (period,),
        )


def _incidents(db: Database, resident: str) -> int:
    return int(db.scalar("SELECT count(*) FROM incidents WHERE resident_id = %s", (resident,)))


def _unreleased(db: Database) -> int:
    return int(db.scalar("SELECT count(*) FROM away_suppressions WHERE released_at IS NULL"))


def _queue_push(db: Database, receiver: PlatformReceiver, site: str) -> int:
    """A platform push of an old month, due now (the schedule queues only the due month)."""
    ps = PlatformSettings(enabled=True, url=receiver.url(), secret=SecretStr(SECRET))
    with db.connect() as conn:
        queued = enqueue_monthly(conn, load_visits_config(), ps, site, "2025-01", actor="test")
    assert queued.outbox_id is not None
    return queued.outbox_id


def _push_rows(db: Database) -> list[tuple[str, str, int]]:
    """(subject, state, attempts) of every platform push row."""
    rows = db.rows(
        "SELECT subject, state, attempts FROM notification_outbox WHERE kind = %s ORDER BY id",
        (PUSH_KIND,),
    )
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]


def _test_holder(settings: Settings) -> Lease:
    """The lease held by the test itself (renewed, so no standby takes it over): an active
    that runs nothing."""
    lost: list[str] = []
    lease = Lease(
        settings.failover, settings.database.conninfo(), "test-holder", on_lost=lost.append
    )
    assert lease.acquire_once()
    lease.start_guard()
    return lease


def _gateway(settings: Settings, log: Path, receiver: PlatformReceiver) -> GatewayProcess:
    return GatewayProcess(settings, log, _env(receiver))


def test_the_standby_writes_and_sends_nothing_until_it_holds_the_lease(
    db: Database, broker: Broker, tmp_path: Path, receiver: PlatformReceiver
) -> None:
    make_site(db, broker, beds=1, wearables=False)
    settings = gateway_settings(db, broker)
    holder = _test_holder(settings)
    b = _gateway(settings, tmp_path / "b.log", receiver)
    try:
        b.start(wait_for="standby: waiting for the lease")
        _held_back(db, "site-a-r0", "site-a-bs0")
        _queue_push(db, receiver, "site-a")
        time.sleep(20 * INTERVAL_S)  # twenty of its workers' intervals, had they run
        assert _incidents(db, "site-a-r0") == 0 and _unreleased(db) == 1
        assert _push_rows(db) == [("site:site-a/2025-01", "pending", 0)]  # none sent, none queued
        assert receiver.stored() == []
        assert "message outbox started" not in b.log_text()

        holder.release()  # the active goes away: the standby takes over and acts, once
        wait_until(lambda: "standby: taking over" in b.log_text(), 30, "the takeover")
        wait_until(lambda: _incidents(db, "site-a-r0") == 1, 30, "the held-back incident")
        wait_until(lambda: _unreleased(db) == 0, 15, "the finding released")
        wait_until(
            lambda: {r[1] for r in _push_rows(db)} == {"delivered"} and len(_push_rows(db)) == 2,
            30, "the queued push and the due month's, delivered",
        )  # fmt: skip
        time.sleep(5 * INTERVAL_S)  # anything doubled would show now
        assert _incidents(db, "site-a-r0") == 1
        assert b.log_count(RELEASED) == 1
        rows = _push_rows(db)
        assert rows[0] == ("site:site-a/2025-01", "delivered", 1) and rows[1][2] == 1, rows
        assert len(receiver.stored()) == 2
    finally:
        holder.release()
        b.stop()


def test_only_the_active_acts_and_after_kill_9_the_new_active_acts_once(
    db: Database, broker: Broker, tmp_path: Path, receiver: PlatformReceiver
) -> None:
    make_site(db, broker, beds=2, wearables=False)
    settings = gateway_settings(db, broker)
    a = _gateway(settings, tmp_path / "a.log", receiver)
    b = _gateway(settings, tmp_path / "b.log", receiver)
    try:
        a.start()
        b.start(wait_for="standby: waiting for the lease")
        # The active queues and delivers the due month's push, and releases the finding.
        wait_until(lambda: [r[1] for r in _push_rows(db)] == ["delivered"], 30, "the push")
        _held_back(db, "site-a-r0", "site-a-bs0")
        wait_until(lambda: _incidents(db, "site-a-r0") == 1, 30, "the held-back incident")
        time.sleep(5 * INTERVAL_S)
        assert a.log_count(RELEASED) == 1 and b.log_count(RELEASED) == 0
        assert a.log_count("message outbox started") == 1
        assert b.log_count("message outbox started") == 0

        a.kill()
        wait_until(lambda: "standby: taking over" in b.log_text(), 30, "the takeover")
        wait_until(lambda: b.log_count("message outbox started") == 1, 30, "its workers")
        _held_back(db, "site-a-r1", "site-a-bs1")
        wait_until(lambda: _incidents(db, "site-a-r1") == 1, 30, "the new active releases")
        time.sleep(5 * INTERVAL_S)  # anything doubled would show now
        assert _incidents(db, "site-a-r0") == 1 and _incidents(db, "site-a-r1") == 1
        assert b.log_count(RELEASED) == 1 and _unreleased(db) == 0
        # The due month was pushed once, by the old active; the new one queues nothing again.
        assert [(r[1], r[2]) for r in _push_rows(db)] == [("delivered", 1)]
        assert len(receiver.stored()) == 1
    finally:
        for gw in (a, b):
            if gw.proc is not None and gw.proc.poll() is None:
                gw.proc.send_signal(signal.SIGCONT)
            gw.stop()
