"""``/readyz`` is 503 while the database or the broker is down; ``/health`` (liveness) stays
200 (issue 10 §6). Real PostgreSQL (its own server, stopped and started) and Mosquitto."""

from __future__ import annotations

import httpx
import pytest

from tests.support import Broker, Database, InProcessGateway, gateway_settings, wait_until

pytestmark = pytest.mark.integration


def _get(gw: InProcessGateway, path: str) -> tuple[int, dict[str, object]]:
    r = httpx.get(gw.api_url + path, timeout=10)
    return r.status_code, r.json()


def test_readyz_follows_the_database_and_the_broker(private_pg: Database, broker: Broker) -> None:
    db = private_pg
    settings = gateway_settings(db, broker)
    with InProcessGateway(settings) as gw:
        wait_until(lambda: _get(gw, "/readyz")[0] == 200, 15, "ready")
        assert _get(gw, "/readyz")[1] == {
            "status": "ready", "broker_connected": True, "database_up": True,
            "role": "active"}  # fmt: skip
        broker.server.stop()
        try:
            wait_until(lambda: _get(gw, "/readyz")[0] == 503, 15, "not ready without broker")
            assert _get(gw, "/readyz")[1]["broker_connected"] is False
            assert _get(gw, "/health")[0] == 200
        finally:
            broker.server.start()
        wait_until(lambda: _get(gw, "/readyz")[0] == 200, 30, "ready again")
        db.server.stop(mode="fast")
        try:
            wait_until(lambda: _get(gw, "/readyz")[0] == 503, 20, "not ready without database")
            code, body = _get(gw, "/readyz")
            assert code == 503 and body["database_up"] is False and body["status"] == "not ready"
            assert _get(gw, "/health")[0] == 200
        finally:
            db.server.start()
        wait_until(lambda: _get(gw, "/readyz")[0] == 200, 60, "ready after the database")
