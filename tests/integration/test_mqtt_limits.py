"""Size and rate limits against the real broker and database (issue 10 §2): an oversize
publish is refused by the broker, a flooding device is limited and counted while another
device's press is stored and raised, and the gateway's memory stays bounded while the
database hangs and a device floods it with large payloads."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices import protocol as p
from gateway.settings import MQTT_PACKET_OVERHEAD
from tests.support import (
    PREFIX,
    Broker,
    Database,
    DeviceClient,
    GatewayProcess,
    InProcessGateway,
    gateway_settings,
    make_site,
    wait_until,
)

pytestmark = pytest.mark.integration


def _topic(dev: Any, channel: str) -> str:
    return p.format_topic(PREFIX, dev.site_id, dev.device_id, channel)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _heartbeat(dev: Any, i: int, pad: int = 0) -> bytes:
    obj = orjson.loads(p.encode_heartbeat(dev.device_id, f"hb-{i}", i, _now_ms(), battery=80))
    if pad:
        obj["pad"] = "x" * pad  # an unknown field: size only
    return orjson.dumps(obj)


def test_oversize_publish_is_refused_by_the_broker(db: Database, broker: Broker) -> None:
    creds = {c.device_id: c for c in make_site(db, broker, wearables=False)}
    bt, bs = creds["site-a-bt0"], creds["site-a-bs0"]
    settings = gateway_settings(db, broker)
    cap = settings.ingest.max_payload_bytes
    assert broker.server.max_packet_size == settings.mqtt_packet_limit == cap + MQTT_PACKET_OVERHEAD
    with InProcessGateway(settings) as gw:
        gone = threading.Event()
        reasons: list[str] = []
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=bt.device_id,
                             protocol=mqtt.MQTTv5)  # fmt: skip
        client.username_pw_set(bt.device_id, bt.password)

        def on_disconnect(c: Any, u: Any, f: Any, rc: Any, pr: Any) -> None:
            reasons.append(str(rc))
            gone.set()

        client.on_disconnect = on_disconnect
        # paho would refuse locally a packet over the CONNACK's Maximum Packet Size: read it
        # to prove the broker announces the limit, then lift it to send the attack anyway.
        connack: dict[str, Any] = {}
        client.on_connect = lambda c, u, f, rc, pr: connack.update(max=pr.MaximumPacketSize)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        try:
            wait_until(lambda: "max" in connack, 5, "CONNACK")
            assert connack["max"] == settings.mqtt_packet_limit
            client._connack_props = None  # type: ignore[attr-defined]
            big = b"{" + b" " * (settings.mqtt_packet_limit + 10) + b"}"
            client.publish(_topic(bt, "telemetry"), big, qos=1)
            assert gone.wait(10), "the broker kept a client that sent an oversize packet"
        finally:
            client.loop_stop()
        # A payload just over the device cap but within the packet limit reaches the gateway
        # and is dead-lettered as oversized (the gateway's own check).
        with DeviceClient(broker.port, bs.device_id, bs.password) as dev:
            dev.publish(_topic(bs, "telemetry"), _heartbeat(bs, 1, pad=cap))
        wait_until(
            lambda: db.scalar("SELECT count(*) FROM dead_letters WHERE reason = 'oversized'") == 1,
            10,
            "the oversized dead letter",
        )
        assert gw.runtime.session.connected.is_set()
    limit = settings.mqtt_packet_limit
    assert db.scalar("SELECT count(*) FROM dead_letters WHERE payload_size > %s", (limit,)) == 0


def _rate_limited(gw: InProcessGateway) -> float:
    value: float = gw.runtime.metrics.dead_letters.labels("rate_limited")._value.get()
    return value


def test_flooding_device_is_limited_and_counted_while_other_alarms_are_stored_and_raised(
    db: Database, broker: Broker
) -> None:
    creds = {c.device_id: c for c in make_site(db, broker, beds=2, wearables=False)}
    flooder, other = creds["site-a-bt0"], creds["site-a-bt1"]
    settings = gateway_settings(
        db, broker, SAFEHOME_INGEST__RATE_LIMIT_PER_S="5", SAFEHOME_INGEST__RATE_LIMIT_BURST="10"
    )
    flood = 400
    with InProcessGateway(settings) as gw:
        with (
            DeviceClient(broker.port, flooder.device_id, flooder.password) as bad,
            DeviceClient(broker.port, other.device_id, other.password) as good,
        ):
            bad.subscribe(_topic(flooder, "ack"))
            good.subscribe(_topic(other, "ack"))
            for i in range(flood):
                bad._client.publish(_topic(flooder, "telemetry"), _heartbeat(flooder, i), qos=1)
            # the flooder's own alarm, sent while it is far over its limit, is stored too
            bad.publish(_topic(flooder, "event"), p.encode_event(
                flooder.device_id, "flooder-press", flood, _now_ms(), event="press"))  # fmt: skip
            good.publish(_topic(other, "event"), p.encode_event(
                other.device_id, "other-press", 1, _now_ms(), event="press"))  # fmt: skip
            wait_until(lambda: bool(good.acks) and bool(bad.acks), 15, "both presses acked")
            assert orjson.loads(good.acks[0])["status"] == "stored"
            assert orjson.loads(bad.acks[0])["status"] == "stored"
            wait_until(
                lambda: db.scalar("SELECT count(*) FROM readings") + _rate_limited(gw) >= flood,
                20,
                "every flood message stored or counted",
            )
        wait_until(
            lambda: db.scalar(
                "SELECT count(*) FROM incidents WHERE type = 'emergency_call' AND state = 'raised'"
            ) == 2,
            20,
            "both emergency calls raised",
        )  # fmt: skip
        limited = _rate_limited(gw)
    stored = db.scalar("SELECT count(*) FROM readings WHERE device_id = %s", (flooder.device_id,))
    assert stored + limited == flood
    assert 5 <= stored < flood / 4, stored  # about the burst (10) and 5/s while it lasted
    rows = db.rows(
        "SELECT device_id, detail FROM dead_letters WHERE reason = 'rate_limited' "
        "ORDER BY received_at"
    )
    # aggregated: a row per device and batch, never one per message; the counts add up
    assert 1 <= len(rows) < limited / 5, (len(rows), limited)
    assert {r[0] for r in rows} == {flooder.device_id}
    counts = [re.match(r"(\d+) messages", str(r[1])) for r in rows]
    assert sum(int(m.group(1)) for m in counts if m is not None) == limited
    assert db.scalar("SELECT count(*) FROM device_events") == 2


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_memory_stays_bounded_while_the_database_hangs_under_a_flood_of_large_payloads(
    private_pg: Database, broker: Broker, tmp_path: Path
) -> None:
    db = private_pg
    creds = {c.device_id: c for c in make_site(db, broker, beds=3, wearables=False)}
    flooders = [creds[f"site-a-bs{i}"] for i in range(3)]
    button = creds["site-a-bt0"]
    payload_cap = 1_000_000
    settings = gateway_settings(
        db, broker,
        SAFEHOME_INGEST__MAX_PAYLOAD_BYTES=str(payload_cap),
        SAFEHOME_MQTT__KEEPALIVE_S="5",
    )  # fmt: skip
    broker.set_max_packet_size(db, settings.mqtt_packet_limit)
    budget = 8 * 1024 * 1024
    extra = {
        "SAFEHOME_INGEST__MAX_PAYLOAD_BYTES": str(payload_cap),
        "SAFEHOME_MQTT__KEEPALIVE_S": "5",
        "SAFEHOME_MQTT__MAX_INFLIGHT_BYTES": str(budget),
    }
    gw = GatewayProcess(settings, tmp_path / "gateway.log", extra).start()
    paused: list[int] = []
    try:
        with DeviceClient(broker.port, button.device_id, button.password) as bt:
            bt.publish(_topic(button, "event"), p.encode_event(
                button.device_id, "before", 1, _now_ms(), event="press"))  # fmt: skip
            wait_until(lambda: db.scalar("SELECT count(*) FROM device_events") == 1, 15, "warm")
        time.sleep(1)
        base = _rss_kb(gw.proc.pid)
        paused = db.server.pause()
        n, size = 150, 900_000
        for dev in flooders:
            with DeviceClient(broker.port, dev.device_id, dev.password) as c:
                for i in range(n // len(flooders)):
                    c.publish(_topic(dev, "telemetry"), _heartbeat(dev, i, pad=size))
        # 135 MB sent; the gateway reads its byte budget, then lets TCP hold the rest.
        peak = base
        for _ in range(20):  # 10 s: two keepalive periods and more
            peak = max(peak, _rss_kb(gw.proc.pid))
            time.sleep(0.5)
        growth_mb = (peak - base) / 1024
        assert growth_mb < 80, f"RSS grew {growth_mb:.0f} MB for a {budget >> 20} MiB budget"
        assert gw.log_count("mqtt byte budget used: reading paused until stored messages free it")
        db.server.resume(paused)
        paused = []
        with DeviceClient(broker.port, button.device_id, button.password) as bt:
            bt.publish(_topic(button, "event"), p.encode_event(
                button.device_id, "after", 2, _now_ms(), event="press"))  # fmt: skip
            wait_until(
                lambda: db.scalar("SELECT count(*) FROM device_events WHERE msg_id = 'after'") == 1,
                60,
                "the press after the flood",
            )
        wait_until(
            lambda: db.scalar("SELECT count(*) FROM readings") + (
                db.scalar("SELECT coalesce(sum(substring(detail from '^[0-9]+')::int), 0) "
                          "FROM dead_letters WHERE reason = 'rate_limited'")
            ) == n,
            60,
            "every flood message stored or counted",
        )  # fmt: skip
        # keepalive survived the pause: the broker connection was never lost
        assert gw.log_count("broker connection lost") == 0
    finally:
        if paused:
            db.server.resume(paused)
        gw.stop()
