"""Nothing lost, nothing stored twice: gateway crash, database outage, broker restart."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    Broker,
    Database,
    GatewayProcess,
    InProcessGateway,
    StreamPublisher,
    gateway_settings,
    make_site,
    wait_until,
)

pytestmark = pytest.mark.integration


def _stored_ids(db: Database) -> list[str]:
    return [r[0] for r in db.rows("SELECT msg_id FROM readings")]


def _assert_exactly(
    db: Database, sent: set[str], attempted: set[str] | None = None, timeout_s: float = 30
) -> None:
    """Every confirmed message stored exactly once; with ``attempted``, unconfirmed ones
    (the broker went away before its PUBACK) may be stored too, once, and nothing else."""
    wait_until(lambda: sent <= set(_stored_ids(db)), timeout_s, f"{len(sent)} stored readings")
    time.sleep(0.5)  # anything extra (a duplicate would have to slip past the index) shows now
    stored = _stored_ids(db)
    assert len(stored) == len(set(stored)), "a message was stored twice"
    if attempted is None:
        assert set(stored) == sent
    else:
        assert sent <= set(stored) <= attempted


def test_gateway_killed_mid_stream_loses_nothing(
    db: Database, broker: Broker, tmp_path: Path
) -> None:
    creds = [c for c in make_site(db, broker, beds=10, wearables=False, buttons=False)]
    settings = gateway_settings(db, broker)
    gw = GatewayProcess(settings, tmp_path / "gateway.log").start()
    try:
        with StreamPublisher(broker.port, creds, rate_per_device=20) as pub:
            wait_until(lambda: db.scalar("SELECT count(*) FROM readings") > 300, 20, "traffic")
            gw.kill()
            time.sleep(2)  # the stream goes on; the broker queues for the gateway's session
            gw = GatewayProcess(settings, tmp_path / "gateway.log").start()
            time.sleep(2)
            pub.stop()
        assert pub.failed == 0
        assert len(pub.sent_ids) > 1000
        _assert_exactly(db, pub.sent_ids)
    finally:
        gw.stop()


def test_database_outage_of_30s_loses_nothing_and_logs_once(
    private_pg: Database, broker: Broker, tmp_path: Path
) -> None:
    db = private_pg
    creds = make_site(db, broker, beds=5, wearables=False, buttons=False)
    settings = gateway_settings(db, broker)
    gw = GatewayProcess(settings, tmp_path / "gateway.log").start()
    try:
        with StreamPublisher(broker.port, creds, rate_per_device=10) as pub:
            wait_until(lambda: db.scalar("SELECT count(*) FROM readings") > 50, 20, "traffic")
            db.server.stop(mode="fast")
            time.sleep(30)
            db.server.start()
            time.sleep(3)
            pub.stop()
        _assert_exactly(db, pub.sent_ids)
        assert len(pub.sent_ids) > 5 * 10 * 30
        assert gw.log_count("database unavailable; holding messages unacknowledged") == 1
        assert gw.log_count("database available again") == 1
    finally:
        gw.stop()


@contextlib.contextmanager
def partitioned(port: int) -> Iterator[None]:
    """A network partition from a local TCP port: netfilter drops every packet to and from it,
    so neither side is told anything (no RST, no FIN), as when a link or a host dies. A
    userspace proxy cannot model this: its kernel would acknowledge the gateway's bytes and
    keepalive probes."""
    table = f"shg_partition_{port}"
    nft = ["nft", "-f", "-"]
    rules = (
        f"table inet {table} {{\n"
        "  chain in { type filter hook input priority -10; policy accept;\n"
        f"    tcp dport {port} drop\n    tcp sport {port} drop\n  }}\n}}\n"
    )
    subprocess.run(nft, input=rules.encode(), check=True)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], check=True)


def test_a_silent_database_is_given_up_logged_once_and_nothing_is_lost(
    private_pg: Database, broker: Broker, tmp_path: Path
) -> None:
    """A real partition from PostgreSQL (packets dropped, no reset, unlike the fault matrix's
    userspace proxy): the gateway notices (pool timeouts; a write in flight is given up by the
    TCP user timeout of ``database.dead_after_s``), logs the outage once, holds everything
    unacknowledged, and stores all of it once the link is back."""
    db = private_pg
    creds = make_site(db, broker, beds=3, wearables=False, buttons=False)
    settings = gateway_settings(db, broker)
    gw = GatewayProcess(settings, tmp_path / "gateway.log").start()
    down = "database unavailable; holding messages unacknowledged"
    try:
        with StreamPublisher(broker.port, creds, rate_per_device=10) as pub:
            wait_until(lambda: db.scalar("SELECT count(*) FROM readings") > 30, 20, "traffic")
            with partitioned(db.server.port):
                wait_until(lambda: gw.log_count(down) == 1, 60, "the outage noticed")
            wait_until(lambda: gw.log_count("database available again") == 1, 60, "back")
            time.sleep(2)
            pub.stop()
        _assert_exactly(db, pub.sent_ids)
        assert gw.log_count(down) == 1
    finally:
        gw.stop()


def test_broker_restart_mid_stream_loses_nothing(db: Database, broker: Broker) -> None:
    creds = make_site(db, broker, beds=5, wearables=False, buttons=False)
    settings = gateway_settings(db, broker)
    with (
        InProcessGateway(settings) as gw,
        StreamPublisher(broker.port, creds, rate_per_device=20) as pub,
    ):
        wait_until(lambda: db.scalar("SELECT count(*) FROM readings") > 100, 20, "traffic")
        broker.server.stop()
        broker.server.start()
        wait_until(gw.runtime.session.connected.is_set, 15, "gateway reconnect")
        time.sleep(3)
        pub.stop(settle_s=15)
    assert len(pub.sent_ids) > 200
    _assert_exactly(db, pub.sent_ids, pub.attempted_ids)
