"""Care-path metrics of a running gateway (real PostgreSQL, real Mosquitto), and systemd's
notify protocol spoken by the gateway (a real AF_UNIX datagram socket)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.sdnotify import SdNotifier
from gateway.workflow.service import Actor, IncidentService, Trigger
from gateway.workflow.transitions import IncidentType, Role
from tests.support import (
    Broker,
    Database,
    InProcessGateway,
    gateway_settings,
    make_site,
    settings_env,
    wait_until,
)

pytestmark = pytest.mark.integration

STAFF = Actor("duty-1", Role.DUTY_STAFF)


def scrape(gw: InProcessGateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) → value."""
    resp = httpx.get(f"{gw.api_url}/metrics", timeout=10)
    assert resp.status_code == 200
    out = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def gw(db: Database, broker: Broker) -> Iterator[InProcessGateway]:
    make_site(db, broker, site_id="site-a", beds=2)
    # The workflow workers are off: this test writes the rows they would, and counts them.
    settings = gateway_settings(
        db, broker, SAFEHOME_METRICS__CAREPATH_CACHE_S="0",
        SAFEHOME_NOTIFY__ENABLED="false", SAFEHOME_ESCALATION__ENABLED="false",
    )  # fmt: skip
    with InProcessGateway(settings) as running:
        yield running


def test_incidents_escalation_pages_and_notifications_are_counted(
    gw: InProcessGateway, db: Database
) -> None:
    before = scrape(gw)  # the collector counts from its first read on
    assert value(before, "safehome_carepath_up") == 1.0
    now = datetime.now(UTC)
    with db.connect() as conn:
        # A fall raised 75 s ago, acknowledged now: one sample in the (60, 90] bucket.
        past = IncidentService(conn, clock=lambda: now - timedelta(seconds=75))
        fall, _ = past.raise_or_join(
            Trigger(IncidentType.FALL, "site-a", now - timedelta(seconds=75), "test",
                    resident_id="site-a-r0")
        )  # fmt: skip
        svc = IncidentService(conn)
        svc.acknowledge(fall.id, STAFF)
        call, _ = svc.raise_or_join(
            Trigger(IncidentType.EMERGENCY_CALL, "site-a", now, "test", resident_id="site-a-r1")
        )
        conn.execute(
            "INSERT INTO staff_pages (incident_id, site_id, tier, tier_name, sequence, role, "
            "kind, message) VALUES (%s, 'site-a', 0, 'duty', 0, 'duty_staff', 'page', 'P1')",
            (call.id,),
        )
        conn.execute(
            "SELECT audit_append('system', 'escalation.tier', %s, '{\"tier\": 1}'::jsonb)",
            (f"incident:{call.id}",),
        )
        conn.execute(
            "INSERT INTO contacts (contact_id, resident_id, kind, display_name, relation, phone) "
            "VALUES ('c-m1', 'site-a-r1', 'family', 'Son', 'son', '13800000001')"
        )
        outbox_id = conn.execute(
            "INSERT INTO notification_outbox (incident_id, contact_id, channel, payload, "
            "created_at, next_attempt_at) VALUES (%s, 'c-m1', 'sms', '{}', "
            "now() - interval '5 minutes', now() - interval '2 minutes') RETURNING id",
            (call.id,),
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO notification_attempts (outbox_id, incident_id, contact_id, channel, "
            "attempt, result, duration_ms) VALUES (%s, %s, 'c-m1', 'sms', 1, 'transient', 12)",
            (outbox_id, call.id),
        )
    m = scrape(gw)
    assert value(m, "safehome_incident_events_total", event="raised", type="fall",
                 priority=str(fall.priority)) == 1  # fmt: skip
    assert value(m, "safehome_incident_events_total", event="acknowledged", type="fall",
                 priority=str(fall.priority)) == 1  # fmt: skip
    assert value(m, "safehome_incident_events_total", event="raised", type="emergency_call",
                 priority=str(call.priority)) == 1  # fmt: skip
    p = str(fall.priority)
    tta = "safehome_incident_time_to_acknowledge_seconds"
    assert value(m, f"{tta}_count", priority=p) == 1
    assert value(m, f"{tta}_bucket", priority=p, le="60.0") == 0
    assert value(m, f"{tta}_bucket", priority=p, le="90.0") == 1
    assert 74 <= value(m, f"{tta}_sum", priority=p) <= 90
    assert value(m, "safehome_escalation_tiers_reached_total", tier="1") == 1
    assert value(m, "safehome_staff_pages_total", kind="page") == 1
    assert value(m, "safehome_notification_attempts_total", channel="sms", result="transient") == 1
    assert value(m, "safehome_notification_outbox_depth") == 1
    assert value(m, "safehome_notification_outbox_oldest_age_seconds") >= 290
    assert value(m, "safehome_notification_outbox_overdue_seconds") >= 110
    unacked = {"technical": "false", "priority": str(call.priority)}
    assert value(m, "safehome_incidents_unacknowledged", **unacked) == 1
    assert value(m, "safehome_incidents_unacknowledged_oldest_age_seconds", **unacked) >= 0
    # Counters only grow: a second scrape counts nothing twice.
    again = scrape(gw)
    assert value(again, "safehome_staff_pages_total", kind="page") == 1
    assert value(again, f"{tta}_count", priority=p) == 1


def test_a_row_committed_after_a_higher_id_is_still_counted(
    gw: InProcessGateway, db: Database
) -> None:
    """Identity ids are taken at insert, visible at commit: a late commit below the highest
    id already read is counted when it appears (the cursor waits for the gap)."""
    with db.connect() as conn:
        incident, _ = IncidentService(conn).raise_or_join(
            Trigger(IncidentType.FALL, "site-a", datetime.now(UTC), "t", resident_id="site-a-r0")
        )
    scrape(gw)
    insert = (
        "INSERT INTO staff_pages (incident_id, site_id, tier, tier_name, sequence, role, kind, "
        "message) VALUES (%s, 'site-a', 0, 'duty', %s, 'duty_staff', 'reminder', 'R')"
    )
    with psycopg.connect(db.conninfo()) as slow, db.connect() as fast:
        slow.execute(insert, (incident.id, 1))  # lower id, not yet committed
        fast.execute(insert, (incident.id, 2))  # higher id, committed (autocommit)
        assert value(scrape(gw), "safehome_staff_pages_total", kind="reminder") == 1
        slow.commit()
    assert value(scrape(gw), "safehome_staff_pages_total", kind="reminder") == 2


def test_cache_bounds_database_reads(db: Database, broker: Broker) -> None:
    make_site(db, broker, site_id="site-a", beds=1)
    settings = gateway_settings(db, broker, SAFEHOME_METRICS__CAREPATH_CACHE_S="300")
    with InProcessGateway(settings) as gw:
        scrape(gw)
        with db.connect() as conn:
            IncidentService(conn).raise_or_join(
                Trigger(IncidentType.FALL, "site-a", datetime.now(UTC), "t",
                        resident_id="site-a-r0")
            )  # fmt: skip
        m = scrape(gw)  # within the cache period: the database was not read again
        assert value(m, "safehome_incident_events_total", event="raised", type="fall",
                     priority="1") == 0  # fmt: skip


def test_mqtt_client_broker_and_process_metrics(gw: InProcessGateway) -> None:
    m = scrape(gw)
    assert value(m, "safehome_mqtt_client_connects_total") >= 1
    assert value(m, "process_resident_memory_bytes") > 0
    # The broker's $SYS counters arrive through the gateway's own subscription (Mosquitto
    # publishes them every 10 s; the first, retained, values may predate our connections).
    wait_until(
        lambda: value(scrape(gw), "safehome_broker_clients_connected") >= 2,
        30, "broker $SYS counters",
    )  # fmt: skip
    assert ("safehome_broker_publish_messages_dropped_total", ()) in scrape(gw)
    # The monitor connects under its own account: the broker binds client ids to user names,
    # so under the gateway's account it would have taken over the gateway's session.
    assert value(scrape(gw), "safehome_mqtt_client_connection_losses_total") == 0


def test_gateway_speaks_sd_notify(db: Database, broker: Broker, tmp_path: Path) -> None:
    """READY=1 once serving, WATCHDOG=1 while healthy, STOPPING=1 when stopping."""
    make_site(db, broker, site_id="site-a", beds=1)
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)
        notifier = SdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "600000"})
        gw = InProcessGateway(gateway_settings(db, broker), notifier=notifier)
        with gw:
            got = [sock.recv(256).decode() for _ in range(3)]
            assert got[0] == "READY=1\nSTATUS=serving"
            assert got[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
            assert gw.runtime.healthy()
            gw.runtime.analysis.stop()  # a worker gone: no more pings (and the process ends)
            assert not gw.runtime.healthy()
        rest: list[str] = []
        while not rest or rest[-1] != "STOPPING=1\nSTATUS=stopping":
            rest.append(sock.recv(256).decode())
        assert set(rest[:-1]) <= {"WATCHDOG=1"}


def test_every_metric_of_the_alerts_and_dashboard_is_exported(gw: InProcessGateway) -> None:
    """A rule or panel naming a metric the gateway does not export would never fire or show.
    Node-exporter metrics and Prometheus' own ``up`` come from elsewhere."""
    from tests.unit.test_deploy_monitoring import referenced_metrics

    wanted = {n for n in referenced_metrics() if n != "up" and not n.startswith("node_")}

    def exported() -> set[str]:
        text = httpx.get(f"{gw.api_url}/metrics", timeout=10).text
        names = set()
        for family in text_string_to_metric_families(text):
            # A family is exported even before its first labelled sample (TYPE and HELP).
            base = family.name
            kinds = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
            names |= {base} | {base + s for s in kinds.get(family.type, [])}
            names |= {s.name for s in family.samples}
        return names

    # The broker's $SYS counters appear once Mosquitto has published them (every 10 s).
    wait_until(lambda: wanted <= exported(), 30, f"exported: {sorted(wanted - exported())}")


def test_safehome_gateway_run_notifies_systemd(
    db: Database, broker: Broker, tmp_path: Path
) -> None:
    """The real command under a systemd-like environment ($NOTIFY_SOCKET, $WATCHDOG_USEC):
    READY=1, watchdog pings, and STOPPING=1 on SIGTERM, then a clean exit."""
    make_site(db, broker, site_id="site-a", beds=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOME_")}
    env.update(settings_env(gateway_settings(db, broker)))
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(60)
        env |= {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "900000"}
        with open(tmp_path / "gateway.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "gateway", "run"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                assert sock.recv(256) == b"READY=1\nSTATUS=serving"
                assert sock.recv(256) == b"WATCHDOG=1"
                proc.send_signal(signal.SIGTERM)
                while (msg := sock.recv(256)) == b"WATCHDOG=1":
                    pass
                assert msg == b"STOPPING=1\nSTATUS=stopping"
                assert proc.wait(timeout=60) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
