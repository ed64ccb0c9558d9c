"""The native MQTT client (gateway.mqttclient via MqttSession) against a real Mosquitto.

The broker is the project's own (password file, ACL, persistence). Devices are real paho
connections with their own credentials. The paho implementation is run through the ingest
integration tests at the end, so both ``mqtt.client`` choices stay working.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from gateway.commissioning import DeviceCredential
from gateway.mqttsession import MqttSession, Received
from gateway.settings import Settings
from tests.support import (
    PREFIX,
    Broker,
    Database,
    DeviceClient,
    gateway_settings,
    make_site,
    wait_until,
)

pytestmark = pytest.mark.integration

SUBSCRIPTION = [f"{PREFIX}/v1/+/+/+"]


class Inbox:
    """Collects what the session delivers (from its network thread)."""

    def __init__(self) -> None:
        self.items: list[Received] = []
        self._lock = threading.Lock()

    def __call__(self, rec: Received) -> None:
        with self._lock:
            self.items.append(rec)

    def take(self) -> list[Received]:
        with self._lock:
            out, self.items = self.items, []
            return out

    def payloads(self) -> set[bytes]:
        with self._lock:
            return {r.payload for r in self.items}

    def __len__(self) -> int:
        with self._lock:
            return len(self.items)


@contextmanager
def session(
    settings: Settings, inbox: Inbox, client_id: str | None = None
) -> Iterator[MqttSession]:
    s = MqttSession(settings.mqtt, inbox, SUBSCRIPTION, client_id=client_id)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _button(db: Database, broker: Broker) -> DeviceCredential:
    creds = make_site(db, broker, wearables=False)
    return next(c for c in creds if c.kind == "button")


def _topic(dev: DeviceCredential, channel: str = "event") -> str:
    return f"{PREFIX}/v1/{dev.site_id}/{dev.device_id}/{channel}"


def _publish_all(
    dev: DeviceCredential, broker: Broker, payloads: list[bytes], qos: int = 1
) -> None:
    with DeviceClient(broker.port, dev.device_id, dev.password) as client:
        for p in payloads:
            client.publish(_topic(dev), p, qos=qos)


def _messages(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == text]


def _cut_connection(s: MqttSession) -> None:
    """Simulate a network failure: the TCP connection dies under the client."""
    native = s._native
    assert native is not None and native._transport is not None
    native._transport.shutdown(socket.SHUT_RDWR)


def test_receives_device_messages_with_their_metadata(db: Database, broker: Broker) -> None:
    dev = _button(db, broker)
    broker.set_max_packet_size(db, 1 << 20)  # for the 512 KB message below
    settings = gateway_settings(db, broker)
    assert settings.mqtt.client == "native"
    inbox = Inbox()
    with session(settings, inbox) as s:
        assert s.wait_connected(10)
        assert s.client == "native" and s.generation == 1 and s.alive
        payloads = [f"m{i}".encode() for i in range(20)]
        _publish_all(dev, broker, payloads)
        _publish_all(dev, broker, [b"q0"], qos=0)
        big = bytes(range(256)) * 2000  # 512 KB: larger than one 256 KiB read
        _publish_all(dev, broker, [big])
        wait_until(lambda: len(inbox) == 22, 10, "22 messages")
        got = inbox.take()
    assert [r.payload for r in got[:20]] == payloads
    assert {r.topic for r in got} == {_topic(dev)}
    assert all(r.qos == 1 and r.generation == 1 and not r.dup for r in got[:20])
    assert len({r.mid for r in got[:20]}) == 20 and all(1 <= r.mid <= 0xFFFF for r in got[:20])
    assert got[20].qos == 0 and got[20].mid == 0 and got[20].payload == b"q0"
    assert got[21].payload == big and got[21].qos == 1
    assert all(abs(r.received_at - time.time()) < 30 for r in got)
    assert s.alive and s.failed is None


def test_unacked_messages_are_redelivered_after_a_reconnect_acked_ones_are_not(
    db: Database, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    dev = _button(db, broker)
    settings = gateway_settings(db, broker)
    inbox = Inbox()
    with session(settings, inbox) as s:
        assert s.wait_connected(10)
        payloads = [f"m{i}".encode() for i in range(10)]
        _publish_all(dev, broker, payloads)
        wait_until(lambda: len(inbox) == 10, 10, "10 messages")
        first = inbox.take()
        acked, unacked = first[:6], first[6:]
        assert s.ack_many(1, [r.mid for r in acked])
        time.sleep(0.3)  # the broker has processed the acks
        _cut_connection(s)
        wait_until(lambda: s.generation == 2 and s.connected.is_set(), 10, "reconnect")
        wait_until(lambda: len(inbox) >= 4, 10, "redelivery")
        time.sleep(0.5)
        again = inbox.take()
        # Stale acks (connection 1) are refused: the packet ids now belong to connection 2.
        assert not s.ack_many(1, [r.mid for r in unacked])
        assert s.ack_many(2, [r.mid for r in again])
    assert sorted(r.payload for r in again) == sorted(r.payload for r in unacked)
    assert all(r.dup and r.generation == 2 for r in again)
    assert {r.mid for r in again} == {r.mid for r in unacked}
    assert len(_messages(caplog, "broker connected")) == 1
    assert len(_messages(caplog, "broker connection lost")) == 1
    restored = _messages(caplog, "broker connection restored")
    assert len(restored) == 1 and restored[0].__dict__["session_present"] is True
    # Everything was acked on connection 2: a new session gets nothing back.
    inbox2 = Inbox()
    with session(settings, inbox2) as s2:
        assert s2.wait_connected(10)
        time.sleep(1.0)
    assert len(inbox2) == 0


def test_persistent_session_receives_what_was_published_while_away(
    db: Database, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    dev = _button(db, broker)
    settings = gateway_settings(db, broker)
    inbox = Inbox()
    with session(settings, inbox) as s:
        assert s.wait_connected(10)
    assert not s.connected.is_set()
    assert _messages(caplog, "broker connection lost") == []  # an intentional stop
    payloads = [f"away{i}".encode() for i in range(25)]
    _publish_all(dev, broker, payloads)
    with session(settings, inbox) as s:
        assert s.wait_connected(10)
        wait_until(lambda: len(inbox) == 25, 10, "queued messages")
        got = inbox.take()
        assert s.ack_many(s.generation, [r.mid for r in got])
    assert [r.payload for r in got] == payloads
    connected = _messages(caplog, "broker connected")
    assert [r.__dict__["session_present"] for r in connected] == [False, True]


def test_broker_restart_reconnects_with_the_session_and_loses_nothing(
    db: Database, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    dev = _button(db, broker)
    settings = gateway_settings(db, broker)
    inbox = Inbox()
    with session(settings, inbox) as s:
        assert s.wait_connected(10)
        before = [f"before{i}".encode() for i in range(10)]
        _publish_all(dev, broker, before)
        wait_until(lambda: len(inbox) == 10, 10, "messages before the restart")
        first = inbox.take()
        assert s.ack_many(1, [r.mid for r in first[:5]])
        time.sleep(0.3)
        broker.server.stop()
        wait_until(lambda: not s.connected.is_set(), 10, "the loss to be noticed")
        broker.server.start()
        wait_until(s.connected.is_set, 15, "reconnect")
        assert s.generation == 2
        after = [f"after{i}".encode() for i in range(10)]
        _publish_all(dev, broker, after)
        wait_until(lambda: inbox.payloads() >= set(before[5:]) | set(after), 10, "all messages")
        got = inbox.take()
        assert s.ack_many(2, [r.mid for r in got])
    assert sorted(r.payload for r in got) == sorted(before[5:] + after)
    assert len(_messages(caplog, "broker connection lost")) == 1
    restored = _messages(caplog, "broker connection restored")
    assert len(restored) == 1 and restored[0].__dict__["session_present"] is True


def test_wrong_password_is_refused_logged_once_and_retried(
    db: Database, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    settings = gateway_settings(db, broker, SAFEHOME_MQTT__PASSWORD="not-the-password")
    inbox = Inbox()
    with session(settings, inbox) as s:
        native = s._native
        assert native is not None
        wait_until(lambda: native.stats.refused >= 3, 15, "three refused attempts")
        assert not s.connected.is_set()
        assert s.generation == 0 and s.alive
        assert not s.ack_many(0, [1])
    refused = _messages(caplog, "broker refused the gateway connection")
    assert len(refused) == 1
    assert refused[0].levelno == logging.ERROR
    assert "0x86" in refused[0].__dict__["reason"] or "0x87" in refused[0].__dict__["reason"]
    assert _messages(caplog, "broker connected") == []


def test_publish_qos1_reaches_a_subscribed_device_even_when_queued_before_connect(
    db: Database, broker: Broker
) -> None:
    dev = _button(db, broker)
    settings = gateway_settings(db, broker)
    ack_topic = _topic(dev, "ack")
    with DeviceClient(broker.port, dev.device_id, dev.password) as device:
        device.subscribe(ack_topic)
        s = MqttSession(settings.mqtt, Inbox(), SUBSCRIPTION)
        s.publish(ack_topic, b'{"queued": true}')  # before start: sent once connected
        s.start()
        try:
            assert s.wait_connected(10)
            for i in range(50):
                s.publish(ack_topic, f'{{"n": {i}}}'.encode())
            wait_until(lambda: len(device.acks) == 51, 10, "51 acks at the device")
            native = s._native
            assert native is not None
            wait_until(lambda: native.stats.published == 51, 5, "PUBACKs from the broker")
            assert native.stats.publish_refused == 0
        finally:
            s.stop()
    assert device.acks[0] == b'{"queued": true}'
    assert device.acks[1:] == [f'{{"n": {i}}}'.encode() for i in range(50)]


def test_publish_outside_the_acl_is_refused_and_counted(db: Database, broker: Broker) -> None:
    make_site(db, broker, wearables=False)
    settings = gateway_settings(db, broker)
    with session(settings, Inbox()) as s:
        assert s.wait_connected(10)
        s.publish(f"{PREFIX}/v1/site-a/site-a-bt0/event", b"{}")  # the gateway may not write here
        native = s._native
        assert native is not None
        wait_until(lambda: native.stats.publish_refused == 1, 5, "refused publish")
        assert s.connected.is_set()
