"""The broker refuses anonymous clients, wrong passwords and publishing on others' topics."""

from __future__ import annotations

import threading
import time

import pytest

from devices import protocol as p
from tests.support import PREFIX, Broker, Database, DeviceClient, make_site

pytestmark = pytest.mark.integration


def test_anonymous_and_wrong_password_are_refused(db: Database, broker: Broker) -> None:
    creds = make_site(db, broker)
    with DeviceClient(broker.port, "nobody", None) as anon:
        assert anon.refused
    with DeviceClient(broker.port, creds[0].device_id, "not-the-password") as wrong:
        assert wrong.refused
    with DeviceClient(broker.port, creds[0].device_id, creds[0].password) as right:
        assert not right.refused


def test_device_cannot_publish_on_another_devices_topic(db: Database, broker: Broker) -> None:
    creds = {c.device_id: c for c in make_site(db, broker, beds=2)}
    mine, other = creds["site-a-bt0"], creds["site-a-bt1"]
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    reasons: dict[int, str] = {}
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="acl-test", protocol=mqtt.MQTTv5)
    client.username_pw_set(mine.device_id, mine.password)

    def on_publish(c: object, u: object, mid: int, rc: object, props: object) -> None:
        reasons[mid] = str(rc)
        if len(reasons) == 3:
            done.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        t = int(time.time() * 1000)
        own = client.publish(
            f"{PREFIX}/v1/site-a/{mine.device_id}/event",
            p.encode_event(mine.device_id, "x1", 1, t, event="press"),
            qos=1,
        )
        foreign = client.publish(
            f"{PREFIX}/v1/site-a/{other.device_id}/event",
            p.encode_event(other.device_id, "x2", 2, t, event="press"),
            qos=1,
        )
        other_site = client.publish(
            f"{PREFIX}/v1/site-b/{mine.device_id}/event",
            p.encode_event(mine.device_id, "x3", 3, t, event="press"),
            qos=1,
        )
        assert done.wait(5)
    finally:
        client.disconnect()
        client.loop_stop()
    # Accepted (no subscriber is connected in this test, which MQTT 5 reports as 0x10).
    assert reasons[own.mid] in {"Success", "No matching subscribers"}
    assert reasons[foreign.mid] == "Not authorized"
    assert reasons[other_site.mid] == "Not authorized"
