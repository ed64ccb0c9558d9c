"""A healthy failover pair raises no alert: the standby's /metrics must not look like an
outage to the rules of deploy/prometheus/alerts.yml (two real gateway processes, real
PostgreSQL and Mosquitto). The standby never connects to the broker (SafehomeBrokerDisconnected
excludes it by ``safehome_failover_active``), but it does reach the database: its
``safehome_database_up`` is 1, or SafehomeDatabaseDown would page for every standby."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.workflow.service import IncidentService, Trigger
from gateway.workflow.transitions import IncidentType
from tests.integration.test_failover import _api_port, _pair
from tests.support import Broker, Database, GatewayProcess, make_site, wait_until

pytestmark = pytest.mark.integration


def _samples(gw: GatewayProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"http://127.0.0.1:{_api_port(gw)}/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _gauges(gw: GatewayProcess) -> dict[str, float]:
    return {name: v for (name, labels), v in _samples(gw).items() if not labels}


def _raised_falls(gw: GatewayProcess) -> float:
    labels = frozenset({("event", "raised"), ("type", "fall"), ("priority", "1")})
    return _samples(gw).get(("safehome_incident_events_total", labels), 0.0)


def test_a_healthy_pair_exports_nothing_an_alert_fires_on(
    db: Database, broker: Broker, tmp_path: Path
) -> None:
    make_site(db, broker, site_id="site-a", beds=1)
    with _pair(db, broker, tmp_path) as (a, b, _):
        wait_until(lambda: _gauges(a).get("safehome_database_up") == 1.0, 30, "active: db up")
        wait_until(lambda: _gauges(b).get("safehome_database_up") == 1.0, 30, "standby: db up")
        active, standby = _gauges(a), _gauges(b)
        assert active["safehome_failover_active"] == 1.0 and active["safehome_broker_up"] == 1.0
        assert standby["safehome_failover_active"] == 0.0  # broker_up 0: excluded by the rule
        for gauges in (active, standby):
            assert gauges["safehome_carepath_up"] == 1.0
        # Both read the care path from the one database: one fall is counted by each, so the
        # dashboard and the rules take the max over instances (a sum would count it twice).
        with db.connect() as conn:
            IncidentService(conn).raise_or_join(
                Trigger(
                    IncidentType.FALL, "site-a", datetime.now(UTC), "t", resident_id="site-a-r0"
                )
            )
        wait_until(lambda: _raised_falls(a) == _raised_falls(b) == 1.0, 30, "the fall counted")


def test_the_standby_says_when_it_cannot_reach_the_database(
    private_pg: Database, broker: Broker, tmp_path: Path
) -> None:
    """The standby's gauge follows its lease attempts: 0 while the database is down."""
    make_site(private_pg, broker, site_id="site-a", beds=1)
    with _pair(private_pg, broker, tmp_path) as (_, b, _settings):
        wait_until(lambda: _gauges(b).get("safehome_database_up") == 1.0, 30, "standby: db up")
        private_pg.server.stop(mode="fast")
        try:
            wait_until(lambda: _gauges(b).get("safehome_database_up") == 0.0, 30, "db down")
        finally:
            private_pg.server.start()
