"""Two cells on one machine (issue 15 §5, gateway.cells): one real broker, one real database,
two gateway runtimes with the same base MQTT client id and different ``[cell]`` settings,
cell A serving site A and cell B site B. A press at site A reaches, is stored and analysed by,
and raises its incident through cell A's gateway only; cell B's gateway never receives a
message of site A; neither gateway takes the other's MQTT session."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from devices import protocol as p
from gateway.brokersync import BrokerSync
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
    broker_env,
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


class Listener:
    """A real MQTT 5 client of a gateway account (client id = user name, as the broker binds
    them): the SUBACK / PUBACK reason codes it gets and the topics it receives."""

    def __init__(self, port: int, username: str, password: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._lock = threading.Lock()
        self.topics: list[str] = []
        self.subacks: dict[int, bool] = {}  # mid -> granted
        self.connected = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5
        )
        self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._port = port

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            self.connected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with self._lock:
            self.subacks[mid] = not any(rc.is_failure for rc in codes)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.topics.append(str(msg.topic))

    def __enter__(self) -> Listener:
        self._client.connect("127.0.0.1", self._port, keepalive=30)
        self._client.loop_start()
        assert self.connected.wait(5), "CONNACK refused or missing"
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def subscribe(self, topic: str) -> bool:
        """Subscribe (QoS 1); whether the broker granted it."""
        _, mid = self._client.subscribe(topic, qos=1)
        assert mid is not None
        wait_until(lambda: mid in self.subacks, 5, f"SUBACK for {topic}")
        return self.subacks[mid]

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish (QoS 1); whether the broker accepted it (PUBACK without a failure code)."""
        codes: list[bool] = []
        self._client.on_publish = lambda c, u, mid, rc, p: codes.append(not rc.is_failure)
        self._client.publish(topic, payload, qos=1).wait_for_publish(5)
        wait_until(lambda: bool(codes), 5, f"PUBACK for {topic}")
        return codes[0]

    def received(self) -> list[str]:
        with self._lock:
            return list(self.topics)


def _shared_broker(db: Database, broker: Broker, **cells: str) -> Settings:
    """Settings for gateways whose broker is shared by ``cells`` (cell id -> its site), the
    broker's files written by the gateway's own writer (``safehome broker sync``): a gateway
    account per cell, limited to its site (gateway.brokersync, gateway.cells)."""
    listed = [{"id": cell, "sites": [site]} for cell, site in cells.items()]
    env = {**broker_env(broker), "SAFEHOME_BROKER__CELLS": orjson.dumps(listed).decode()}
    settings = gateway_settings(db, broker, **env)
    with db.connect() as conn, conn.transaction():
        BrokerSync(settings).apply(conn)
    return settings


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


def _cell(settings: Settings, cell_id: str, *sites: str) -> Settings:
    """``settings`` as cell ``cell_id``'s gateway has them. On a broker shared by cells
    (``broker.cells``) it connects with its own account, ``<mqtt.username>-<cell>``: the
    broker binds a session to the user name (use_username_as_clientid)."""
    return settings.model_copy(update={"cell": CellSettings(id=cell_id, sites=sites)})


def test_two_cells_each_serve_only_their_own_sites(db: Database, broker: Broker) -> None:
    creds = make_site(db, broker, site_id="site-a", beds=1, wearables=False)
    creds += make_site(db, broker, site_id="site-b", beds=1, wearables=False)
    button = {c.site_id: c for c in creds if c.kind == "button"}
    assert set(button) == {"site-a", "site-b"}
    # One base client id for both: the cell id tells them apart (brokers that do not bind
    # sessions to user names, e.g. EMQX; Mosquitto here binds them to the accounts).
    # Each cell's gateway account on the shared broker, narrowed to its site.
    base = _shared_broker(db, broker, **{"cell-a": "site-a", "cell-b": "site-b"})
    seen_a, seen_b = Seen(), Seen()
    with (
        InProcessGateway(_cell(base, "cell-a", "site-a"), sink=seen_a) as gw_a,
        InProcessGateway(_cell(base, "cell-b", "site-b"), sink=seen_b) as gw_b,
    ):
        id_a, id_b = gw_a.runtime.settings.mqtt.client_id, gw_b.runtime.settings.mqtt.client_id
        assert (id_a, id_b) == (f"{base.mqtt.client_id}-cell-a", f"{base.mqtt.client_id}-cell-b")
        users = gw_a.runtime.settings.mqtt.username, gw_b.runtime.settings.mqtt.username
        assert users == ("gateway-cell-a", "gateway-cell-b")

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


def test_each_cells_broker_account_reads_and_writes_only_its_own_sites(
    db: Database, broker: Broker
) -> None:
    creds = make_site(db, broker, site_id="site-a", beds=1, wearables=False)
    creds += make_site(db, broker, site_id="site-b", beds=1, wearables=False)
    button = {c.site_id: c for c in creds if c.kind == "button"}
    _shared_broker(db, broker, **{"cell-a": "site-a", "cell-b": "site-b"})
    pw = broker.gateway_password
    with (
        Listener(broker.port, "gateway-cell-a", pw) as cell_a,
        Listener(broker.port, "gateway-cell-b", pw) as cell_b,
        Listener(broker.port, "gateway", pw) as everything,  # today's account: unchanged
    ):
        # Each cell's gateway subscribes as today's gateway does (every site) and to the other
        # cell's site by name. Mosquitto 2.0 grants a SUBSCRIBE whatever its filter and checks
        # the read ACL on every message it would deliver: a cell receives only its own sites.
        for cell in (cell_a, cell_b, everything):
            for f in (p.subscription_filter(PREFIX), f"{PREFIX}/#"):
                cell.subscribe(f)
        for f in (*p.uplink_filters(PREFIX, "site-a"), *p.uplink_filters(PREFIX, "site-b")):
            cell_a.subscribe(f)
            cell_b.subscribe(f)

        for site in ("site-a", "site-b"):
            cred = button[site]
            with DeviceClient(broker.port, cred.device_id, cred.password) as dev:
                payload = p.encode_event(cred.device_id, f"press-{site}", 1,
                                         int(time.time() * 1000), event="press")  # fmt: skip
                assert dev.publish(p.format_topic(PREFIX, site, cred.device_id, "event"),
                                   payload) == "0"  # fmt: skip
        topic = {s: p.format_topic(PREFIX, s, button[s].device_id, "event") for s in button}
        # Today's account receives both presses, once per matching subscription (two).
        wait_until(lambda: len(everything.received()) == 4, 10, "both presses, all sites")
        assert set(everything.received()) == set(topic.values())
        # Site A's press matched three of cell A's subscriptions, and so did site B's; the
        # presses were taken before these reads, so anything of site B's would be here.
        wait_until(lambda: len(cell_a.received()) == 3, 10, "cell A: site A's press")
        wait_until(lambda: len(cell_b.received()) == 3, 10, "cell B: site B's press")
        assert set(cell_a.received()) == {topic["site-a"]}
        assert set(cell_b.received()) == {topic["site-b"]}

        # Writes: its own sites' acks and config only.
        ack = p.encode_ack("m1", "stored")
        assert cell_a.publish(p.ack_topic(PREFIX, "site-a", button["site-a"].device_id), ack)
        assert not cell_a.publish(p.ack_topic(PREFIX, "site-b", button["site-b"].device_id), ack)
        assert not cell_a.publish(topic["site-a"], b"{}")  # not a device's uplink
