"""Ingest against a real Mosquitto and PostgreSQL/TimescaleDB."""

from __future__ import annotations

import time
import uuid

import numpy as np
import orjson
import pytest

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

# The gateway's MQTT session runs on either implementation; both must pass every ingest test.
CLIENTS = pytest.mark.parametrize("client", ["native", "paho"])


def _now_ms() -> int:
    return int(time.time() * 1000)


def _topic(site: str, dev: str, channel: str) -> str:
    return f"{PREFIX}/v1/{site}/{dev}/{channel}"


@CLIENTS
def test_every_message_kind_is_stored_once_and_events_are_acked(
    db: Database, broker: Broker, client: str
) -> None:
    creds = {c.device_id: c for c in make_site(db, broker)}
    settings = gateway_settings(db, broker, SAFEHOME_MQTT__CLIENT=client)
    with InProcessGateway(settings) as gw:
        assert gw.runtime.session.client == client
        bs, wr, bt = creds["site-a-bs0"], creds["site-a-wr0"], creds["site-a-bt0"]
        with (
            DeviceClient(broker.port, bs.device_id, bs.password) as bed,
            DeviceClient(broker.port, wr.device_id, wr.password) as wear,
            DeviceClient(broker.port, bt.device_id, bt.password) as button,
        ):
            button.subscribe(_topic("site-a", bt.device_id, "ack"))
            t = _now_ms()
            for i in range(5):
                bed.publish(
                    _topic("site-a", bs.device_id, "telemetry"),
                    p.encode_vitals(bs.device_id, f"v{i}", i, t + i * 1000, presence=True,
                                    hr=62.0, rr=14.0, movement=0.1),
                )  # fmt: skip
            acc = np.zeros((50, 3))
            acc[:, 1] = -1.0
            wear.publish(
                _topic("site-a", wr.device_id, "telemetry"),
                p.encode_accel(wr.device_id, "a0", 0, t, samples=acc),
            )
            press = p.encode_event(bt.device_id, "press-1", 7, t, event="press")
            button.publish(_topic("site-a", bt.device_id, "event"), press)
            button.publish(_topic("site-a", bt.device_id, "event"), press)  # device retry
            button.publish(
                _topic("site-a", bt.device_id, "state"),
                p.encode_state(bt.device_id, "st-1", 8, t, online=True, battery=90),
            )
            wait_until(lambda: len(button.acks) >= 2, 10, "two app-level acks")
            statuses = sorted(orjson.loads(a)["status"] for a in button.acks)
            assert statuses == ["duplicate", "stored"]
        wait_until(lambda: db.scalar("SELECT count(*) FROM readings") == 5, 10, "readings")
        wait_until(lambda: db.scalar("SELECT count(*) FROM device_state") == 1, 10, "state")
    assert db.scalar("SELECT count(*) FROM device_events") == 1
    assert db.scalar("SELECT count(*) FROM accel") == 1
    n, raw = db.rows("SELECT n, samples FROM accel")[0]
    stored = np.frombuffer(raw, dtype="<i2").reshape(n, 3)
    assert stored[0].tolist() == [0, -1000, 0]
    assert db.scalar("SELECT count(*) FROM dead_letters") == 0


@CLIENTS
def test_bad_input_lands_in_dead_letters_with_its_reason(
    db: Database, broker: Broker, client: str
) -> None:
    from gateway.brokerauth import ServiceAccount, hash_password

    injector_pw = uuid.uuid4().hex
    broker.extra.append(ServiceAccount("injector", hash_password(injector_pw), can_inject=True))
    creds = {c.device_id: c for c in make_site(db, broker, beds=2)}
    # A decommissioned device the broker still knows (refused: issue 9 §3).
    with db.connect() as conn:
        conn.execute("UPDATE devices SET active = false WHERE device_id = 'site-a-bs1'")
    settings = gateway_settings(
        db, broker, SAFEHOME_INGEST__MAX_PAYLOAD_BYTES="2048", SAFEHOME_MQTT__CLIENT=client
    )
    bt = creds["site-a-bt0"]
    t = _now_ms()
    cases = {
        "malformed_json": (bt.device_id, "event", b'{"v":1,'),
        # over the 2048-byte cap, within the packet limit (cap + 1 KiB) the gateway announces
        "oversized": (bt.device_id, "event", b'{"pad":"' + b"x" * 2500 + b'"}'),
        "identity_mismatch": (
            bt.device_id,
            "event",
            p.encode_event("site-a-bt1", "m1", 1, t, event="press"),
        ),
        "schema": (bt.device_id, "event", p.encode_event(bt.device_id, "m2", 2, t, event="dance")),
        "out_of_range": (
            creds["site-a-bs0"].device_id,
            "telemetry",
            p.encode_vitals(
                "site-a-bs0", "m3", 3, t, presence=True, hr=900.0, rr=14.0, movement=0.1
            ),
        ),
        # Telemetry from a wrong clock is refused (an alarm never is: test_alarm_durability).
        "timestamp_out_of_range": (
            bt.device_id,
            "telemetry",
            p.encode_heartbeat(bt.device_id, "m4", 4, t + 3_600_000, battery=90),
        ),
        "decommissioned": (
            "site-a-bs1",
            "telemetry",
            p.encode_vitals(
                "site-a-bs1", "m5", 5, t, presence=True, hr=60.0, rr=14.0, movement=0.1
            ),
        ),
        "unknown_device": (
            "site-a-ghost",
            "telemetry",
            p.encode_vitals(
                "site-a-ghost", "m6", 6, t, presence=True, hr=60.0, rr=14.0, movement=0.1
            ),
        ),
    }
    with (
        InProcessGateway(settings) as gw,
        DeviceClient(broker.port, "injector", injector_pw) as inj,
    ):
        for dev, channel, payload in cases.values():
            inj.publish(_topic("site-a", dev, channel), payload)
        inj.publish(f"{PREFIX}/v1/site-a/{bt.device_id}/bogus", b"{}")
        wait_until(
            lambda: db.scalar("SELECT count(*) FROM dead_letters") == len(cases) + 1,
            10,
            "dead letters",
        )
        body = gw.runtime.metrics.registry.get_sample_value(
            "safehome_ingest_dead_letters_total", {"reason": "malformed_json"}
        )
        assert body == 1.0
    got = dict(db.rows("SELECT reason, count(*) FROM dead_letters GROUP BY reason"))
    expected = dict.fromkeys(cases, 1) | {"bad_topic": 1}
    assert got == expected
    # The oversized payload is kept only up to its cap, with its real size recorded.
    size, kept = db.rows("SELECT payload_size, length(payload) FROM dead_letters "
                         "WHERE reason = 'oversized'")[0]  # fmt: skip
    assert size > 2500 and kept == settings.ingest.dead_letter_payload_bytes
    assert db.scalar("SELECT count(*) FROM readings") == 0
    assert db.scalar("SELECT count(*) FROM device_events") == 0


@CLIENTS
def test_receiver_set_heartbeat_interval_is_published_retained(
    db: Database, broker: Broker, client: str
) -> None:
    creds = {c.device_id: c for c in make_site(db, broker)}
    with db.connect() as conn:
        conn.execute("UPDATE devices SET heartbeat_interval_s = 45 WHERE device_id = 'site-a-bt0'")
    settings = gateway_settings(
        db, broker, SAFEHOME_INGEST__REGISTRY_REFRESH_S="0.5", SAFEHOME_MQTT__CLIENT=client
    )
    bt = creds["site-a-bt0"]
    with InProcessGateway(settings):
        time.sleep(1.5)  # at least one registry refresh while connected
        # A device subscribing afterwards still gets it: the broker keeps it retained.
        with DeviceClient(broker.port, bt.device_id, bt.password) as dev:
            dev.subscribe(_topic("site-a", bt.device_id, "config"))
            wait_until(lambda: bool(dev.acks), 5, "retained config")
            assert p.decode_config(dev.acks[0]).heartbeat_s == 45
