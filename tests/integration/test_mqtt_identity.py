"""MQTT identity against the real broker: a client id is its user name, so no device can take
over the gateway's session or another device's connection; a device subscribes only to its own
ack and config topics (issue 10 §1)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices import protocol as p
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


class Intruder:
    """A device connecting with its own password but a client id of its choosing."""

    def __init__(
        self, port: int, username: str, password: str, client_id: str, *, clean: bool = True
    ) -> None:
        self.connected = threading.Event()
        self.reason: str | None = None
        self.granted: list[str] = []
        self.subscribed = threading.Event()
        self.received: list[str] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda c, u, m: self.received.append(m.topic)
        self.client.connect("127.0.0.1", port, clean_start=clean)
        self.client.loop_start()
        assert self.connected.wait(5), "no CONNACK"

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.reason = str(rc)
        self.connected.set()

    def _on_subscribe(self, c: Any, u: Any, mid: int, codes: list[Any], props: Any) -> None:
        self.granted = [str(rc) for rc in codes]
        self.subscribed.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _topic(dev: Any, channel: str) -> str:
    return p.format_topic(PREFIX, dev.site_id, dev.device_id, channel)


def _press(dev: Any, msg_id: str, seq: int) -> bytes:
    return p.encode_event(dev.device_id, msg_id, seq, int(time.time() * 1000), event="press")


def test_device_using_the_gateways_client_id_leaves_the_running_gateway_connected(
    db: Database, broker: Broker
) -> None:
    creds = {c.device_id: c for c in make_site(db, broker, beds=2)}
    attacker, victim = creds["site-a-bt0"], creds["site-a-bt1"]
    settings = gateway_settings(db, broker)
    with InProcessGateway(settings) as gw:
        session = gw.runtime.session
        generation = session.generation
        for client_id in (settings.mqtt.client_id, settings.mqtt.username, "safehome-gateway"):
            intruder = Intruder(broker.port, attacker.device_id, attacker.password, client_id)
            try:
                assert intruder.reason == "Success"  # accepted, but as itself
                time.sleep(0.5)
                assert session.connected.is_set() and session.generation == generation
            finally:
                intruder.close()
        # The gateway still receives and stores: a press of another device is stored.
        with DeviceClient(broker.port, victim.device_id, victim.password) as dev:
            dev.subscribe(_topic(victim, "ack"))
            dev.publish(_topic(victim, "event"), _press(victim, "after-intrusion", 1))
            wait_until(lambda: bool(dev.acks), 10, "the press's ack")
            assert orjson.loads(dev.acks[0])["status"] == "stored"
        assert session.generation == generation, "the gateway was knocked off the broker"
    assert db.scalar("SELECT count(*) FROM device_events WHERE msg_id = 'after-intrusion'") == 1


def test_device_cannot_wipe_the_gateways_persistent_session_while_it_is_down(
    db: Database, broker: Broker
) -> None:
    creds = {c.device_id: c for c in make_site(db, broker, beds=2)}
    attacker, victim = creds["site-a-bt0"], creds["site-a-bt1"]
    settings = gateway_settings(db, broker)
    with InProcessGateway(settings):
        pass  # the broker now holds the gateway's persistent session
    with DeviceClient(broker.port, victim.device_id, victim.password) as dev:
        rc = dev.publish(_topic(victim, "event"), _press(victim, "queued-press", 1))
        assert rc in {"Success", "0"}, rc
    # A clean start with the gateway's client id (and with its user name) would discard the
    # gateway's session and the queued press, if the broker let a device use that id.
    for client_id in (settings.mqtt.client_id, settings.mqtt.username):
        Intruder(broker.port, attacker.device_id, attacker.password, client_id).close()
    with InProcessGateway(settings):
        wait_until(
            lambda: (
                db.scalar("SELECT count(*) FROM device_events WHERE msg_id = 'queued-press'") == 1
            ),
            15,
            "the press queued while the gateway was down",
        )


def test_device_using_another_devices_client_id_does_not_disconnect_it(
    db: Database, broker: Broker
) -> None:
    creds = {c.device_id: c for c in make_site(db, broker, beds=2)}
    attacker, victim = creds["site-a-bt0"], creds["site-a-bt1"]
    with DeviceClient(broker.port, victim.device_id, victim.password) as dev:
        assert not dev.refused
        intruder = Intruder(broker.port, attacker.device_id, attacker.password, victim.device_id)
        try:
            time.sleep(0.5)
            assert dev.disconnects == [], "the victim was disconnected"
            rc = dev.publish(_topic(victim, "event"), _press(victim, "still-here", 1))
            assert rc in {"Success", "No matching subscribers", "0"}, rc
        finally:
            intruder.close()
        assert dev.disconnects == []


def test_device_subscribes_only_to_its_own_ack_and_config_topics(
    db: Database, broker: Broker
) -> None:
    creds = {c.device_id: c for c in make_site(db, broker, beds=2)}
    mine, other = creds["site-a-bt0"], creds["site-a-bt1"]
    settings = gateway_settings(db, broker)
    filters = [
        _topic(mine, "ack"),
        _topic(mine, "config"),
        _topic(other, "ack"),
        _topic(other, "config"),
        f"{PREFIX}/v1/site-a/+/ack",
        f"{PREFIX}/#",
        "#",
        "$SYS/#",
    ]
    spy = Intruder(broker.port, mine.device_id, mine.password, "spy-" + uuid.uuid4().hex[:6])
    try:
        spy.client.subscribe([(f, 1) for f in filters])
        assert spy.subscribed.wait(5)
        # Mosquitto's ACL file does not refuse a SUBSCRIBE (every filter is granted); it
        # checks each message at delivery against the subscriber's read rules. What matters,
        # and what is checked below: nothing but the device's own ack and config reaches it.
        granted = dict(zip(filters, spy.granted, strict=True))
        assert granted[_topic(mine, "ack")] == "Granted QoS 1"
        assert granted[_topic(mine, "config")] == "Granted QoS 1"
        with InProcessGateway(settings) as gw:
            for dev in (mine, other):
                gw.runtime.session.publish(
                    _topic(dev, "ack"), p.encode_ack(f"m-{dev.device_id}", "stored")
                )
                gw.runtime.session.publish(_topic(dev, "config"), b'{"v":1,"heartbeat_s":60}')
            # The other device's own messages on its uplink topics are not readable either.
            with DeviceClient(broker.port, other.device_id, other.password) as dev2:
                dev2.publish(_topic(other, "event"), _press(other, "other-press", 1))
            wait_until(lambda: len(set(spy.received)) >= 2, 10, "own ack and config")
            time.sleep(1.0)
        assert set(spy.received) == {_topic(mine, "ack"), _topic(mine, "config")}
    finally:
        spy.close()
