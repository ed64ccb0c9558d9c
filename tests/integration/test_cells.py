"""Two cells on one machine (issue 15 §5, gateway.cells): one real broker, one real database,
two gateway runtimes with the same base MQTT client id and different ``[cell]`` settings,
cell A serving site A and cell B site B. A press at site A reaches, is stored and analysed by,
and raises its incident through cell A's gateway only; cell B's gateway never receives a
message of site A; neither gateway takes the other's MQTT session."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import orjson
import pytest

from devices import protocol as p
from gateway.brokerauth import ServiceAccount
from gateway.cells import CellSettings
from gateway.commissioning import DeviceCredential
from gateway.ingest import StoredMessage
from gateway.settings import Settings
from tests.support import (
    PREFIX,
    Broker,
    Database,
    DeviceClient,
    InProcessGateway,
    gateway_settings,
    make_site,
    wait_until,
)

pytestmark = pytest.mark.integration


class Seen:
    """A runtime's extra sink: the (site, device, message id) of every batch it stored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[tuple[str, str, str]] = []

    def __call__(self, batch: Sequence[StoredMessage]) -> None:
        with self._lock:
            self.items.extend(
                (m.device.site_id, m.device.device_id, m.message.envelope.msg_id) for m in batch
            )

    def sites(self) -> set[str]:
        with self._lock:
            return {site for site, _, _ in self.items}

    def ids(self) -> set[str]:
        with self._lock:
            return {mid for _, _, mid in self.items}


def _press(broker: Broker, cred: DeviceCredential, msg_id: str) -> str:
    """Publish a press; return the application-level ack status (a gateway stored it)."""
    base = f"{PREFIX}/v1/{cred.site_id}/{cred.device_id}"
    with DeviceClient(broker.port, cred.device_id, cred.password) as dev:
        dev.subscribe(f"{base}/ack")
        payload = p.encode_event(cred.device_id, msg_id, 1, int(time.time() * 1000), event="press")
        assert dev.publish(f"{base}/event", payload) == "0"
        wait_until(lambda: bool(dev.acks), 10, "app-level ack")
        return str(orjson.loads(dev.acks[0])["status"])


def _received(gw: InProcessGateway) -> float:
    """MQTT messages this gateway's ingest received (every channel)."""
    registry = gw.runtime.metrics.registry
    return sum(
        registry.get_sample_value("safehome_ingest_messages_total", {"channel": ch}) or 0.0
        for ch in ("event", "telemetry", "state")
    )


def _incidents(db: Database, site: str) -> int:
    return int(
        db.scalar(
            "SELECT count(*) FROM incidents WHERE site_id = %s AND type = 'emergency_call'",
            (site,),
        )
    )


def _cell(settings: Settings, cell_id: str, *sites: str, username: str | None = None) -> Settings:
    update: dict[str, object] = {"cell": CellSettings(id=cell_id, sites=sites)}
    if username is not None:
        # The broker binds a session to the user name (use_username_as_clientid), so on one
        # broker each cell's gateway has its own account (docs/operations.md, cells). Only
        # the main gateway account has a $SYS monitor account: no broker_sys for this one.
        update["mqtt"] = settings.mqtt.model_copy(update={"username": username})
        update["metrics"] = settings.metrics.model_copy(update={"broker_sys": False})
    return settings.model_copy(update=update)


def test_two_cells_each_serve_only_their_own_sites(db: Database, broker: Broker) -> None:
    # Cell B's gateway account on the shared broker: the gateway's password; write access to
    # device topics for its acks (the test broker's extra accounts write all or nothing).
    broker.extra.append(ServiceAccount("gateway-cell-b", broker.service.password_hash, True))
    creds = make_site(db, broker, site_id="site-a", beds=1, wearables=False)
    creds += make_site(db, broker, site_id="site-b", beds=1, wearables=False)
    button = {c.site_id: c for c in creds if c.kind == "button"}
    assert set(button) == {"site-a", "site-b"}
    # One base client id for both: the cell id tells them apart (brokers that do not bind
    # sessions to user names, e.g. EMQX; Mosquitto here binds them to the accounts).
    base = gateway_settings(db, broker)
    seen_a, seen_b = Seen(), Seen()
    with (
        InProcessGateway(_cell(base, "cell-a", "site-a"), sink=seen_a) as gw_a,
        InProcessGateway(
            _cell(base, "cell-b", "site-b", username="gateway-cell-b"), sink=seen_b
        ) as gw_b,
    ):
        id_a, id_b = gw_a.runtime.settings.mqtt.client_id, gw_b.runtime.settings.mqtt.client_id
        assert (id_a, id_b) == (f"{base.mqtt.client_id}-cell-a", f"{base.mqtt.client_id}-cell-b")

        assert _press(broker, button["site-a"], "press-a") == "stored"
        wait_until(lambda: _incidents(db, "site-a") == 1, 15, "site A's incident")
        wait_until(lambda: "press-a" in seen_a.ids(), 10, "cell A analysed the press")
        assert _received(gw_b) == 0 and seen_b.items == []

        # Cell B serves its own site. The broker took site A's press (and cell A acked it)
        # before this one was sent: had cell B subscribed to site A, it would have it first.
        assert _press(broker, button["site-b"], "press-b") == "stored"
        wait_until(lambda: _incidents(db, "site-b") == 1, 15, "site B's incident")
        wait_until(lambda: "press-b" in seen_b.ids(), 10, "cell B analysed the press")
        assert seen_a.sites() == {"site-a"} and seen_a.ids() == {"press-a"}
        assert seen_b.sites() == {"site-b"} and seen_b.ids() == {"press-b"}
        assert _received(gw_a) == 1 and _received(gw_b) == 1

        # Neither gateway took over the other's persistent session.
        for gw in (gw_a, gw_b):
            stats = gw.runtime.session.stats
            assert stats is not None
            assert (stats.connects, stats.connection_losses) == (1, 0)
            assert gw.runtime.session.connected.is_set()
    assert _incidents(db, "site-a") == 1 and _incidents(db, "site-b") == 1
