"""The safe-home kit against the real broker and database (issue 12 §1–2).

A home hub publishes for its child smoke detector under the child's id; the broker refuses
the hub's publications for a device that is not its child, and a child cannot log in itself.
A smoke detector's test press is stored and raises nothing; its alarm raises a priority-1
``smoke_alarm`` incident that climbs the hazard ladder ("call 119" first).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from devices import protocol as p
from devices.emulator import EmulatorConfig, EmulatorError, Options, emulate, infer_kind
from gateway import acceptance
from gateway import commissioning as com
from gateway.brokersync import mqtt_login_code
from gateway.errors import ConflictError
from tests.integration.test_installer_api import Inst, inst  # noqa: F401 (the fixture)
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


def _no_broker(conn: Any) -> None:
    """The test syncs the broker itself (``broker.sync``) after the registry changes."""


def _register(db: Database, kind: str, serial: str, hub: str | None = None) -> tuple[str, str]:
    with db.connect() as conn:
        values = {"kind": kind, "model": "KIT1", "serial": serial, "hub_id": hub}
        return com.register_device(conn, "site-a", values, _no_broker)


def _event(dev: str, msg_id: str, type_: str, **data: Any) -> bytes:
    return p.encode_event(dev, msg_id, 1, int(time.time() * 1000), event=type_, data=data)


def _topic(dev: str) -> str:
    return f"{PREFIX}/v1/site-a/{dev}/event"


def _stored(db: Database, msg_id: str) -> bool:
    return bool(db.scalar("SELECT count(*) FROM device_events WHERE msg_id = %s", (msg_id,)))


def test_a_hub_reports_a_smoke_alarm_that_climbs_the_hazard_ladder(
    db: Database, broker: Broker
) -> None:
    make_site(db, broker, wearables=False)
    hub, hub_pw = _register(db, "home_hub", "H1")
    smoke, smoke_pw = _register(db, "smoke_detector", "S1", hub=hub)
    assert (hub, smoke) == ("hub-H1", "smoke-S1")
    with db.connect() as conn:
        com.bind_device(conn, com.find_device(conn, smoke), None, "site-a-r0", "site-a-l0")
    broker.sync(db)
    # A child has no broker account: only its hub speaks for it.
    assert mqtt_login_code("127.0.0.1", broker.port, smoke, smoke_pw) != 0
    settings = gateway_settings(db, broker)
    with InProcessGateway(settings), DeviceClient(broker.port, hub, hub_pw) as client:
        # Not its child: the broker drops it (the next publication, allowed, is stored first).
        client.publish(_topic("site-a-bt0"), _event("site-a-bt0", "forged-1", "press"))
        client.publish(_topic(smoke), _event(smoke, "test-1", "test"))
        wait_until(lambda: _stored(db, "test-1"), 15, "the test press stored")
        assert not _stored(db, "forged-1")
        client.publish(_topic(smoke), _event(smoke, "alarm-1", "alarm"))
        wait_until(
            lambda: db.scalar("SELECT count(*) FROM incidents") == 1, 15, "the smoke incident"
        )
        rows = db.rows("SELECT id, type, priority, resident_id, technical, reason FROM incidents")
        incident_id, itype, priority, resident, technical, reason = rows[0]
        assert (itype, priority, resident, technical) == ("smoke_alarm", 1, "site-a-r0", False)
        assert "119" in reason
        # The detector's test press was recorded (stored above) and raised no detection.
        assert db.scalar("SELECT count(*) FROM detections WHERE kind = 'smoke_alarm'") == 1

        def first_tier() -> Any:
            return db.scalar(
                "SELECT data->>'name' FROM audit_log WHERE target = %s "
                "AND action = 'escalation.tier' ORDER BY seq LIMIT 1",
                (f"incident:{incident_id}",),
            )

        wait_until(lambda: first_tier() is not None, 15, "the first escalation tier")
        assert first_tier() == "call_119"
        # The alarm clears: recorded as a resolved detection; the incident stays for staff.
        client.publish(_topic(smoke), _event(smoke, "clear-1", "clear"))
        wait_until(
            lambda: bool(db.scalar("SELECT count(*) FROM detections WHERE resolved")),
            15,
            "the clear",
        )
        assert db.scalar("SELECT state FROM incidents WHERE id = %s", (incident_id,)) == "raised"


def test_hub_children_are_replaced_and_a_hub_with_children_is_not_retired(
    db: Database, broker: Broker
) -> None:
    make_site(db, broker, wearables=False, buttons=False)
    hub, _ = _register(db, "home_hub", "H2")
    door, _ = _register(db, "door_contact", "D2", hub=hub)
    with db.connect() as conn:
        with pytest.raises(ConflictError, match="not a home_hub"):
            com.register_device(
                conn, "site-a", {"kind": "door_contact", "model": "KIT1", "serial": "D3",
                                 "hub_id": door}, _no_broker,
            )  # fmt: skip
        with pytest.raises(ConflictError, match="active child"):
            com.decommission(conn, hub, "broken", _no_broker)
        new_door, _ = com.replace_device(conn, door, {"serial": "D4"}, _no_broker)
        new_hub, _ = com.replace_device(conn, hub, {"serial": "H3"}, _no_broker)
        accounts = {a.device_id: a for a in com.device_accounts(conn)}
    assert new_door not in accounts and door not in accounts  # children never log in
    assert accounts[new_hub].children == (new_door,)
    assert hub not in accounts


def test_kit_sensors_pass_their_acceptance_tests_through_the_hub(
    db: Database, broker: Broker
) -> None:
    make_site(db, broker, wearables=False, buttons=False)
    hub, hub_pw = _register(db, "home_hub", "H5")
    kids = {
        kind: _register(db, kind, f"{kind}-5", hub=hub)[0]
        for kind in ("door_contact", "motion_sensor", "smoke_detector", "water_leak")
    }
    with db.connect() as conn:
        for dev in kids.values():
            com.bind_device(conn, com.find_device(conn, dev), None, "site-a-r0", "site-a-l0")
        tests = {
            kind: acceptance.start_test(conn, com.find_device(conn, dev), "installer-1", 600)
            for kind, dev in kids.items()
        }
    broker.sync(db)
    presses = {
        "door_contact": ["open", "close"],
        "motion_sensor": ["motion"],
        "smoke_detector": ["test"],
        "water_leak": ["leak", "dry"],
    }
    settings = gateway_settings(db, broker)
    with InProcessGateway(settings), DeviceClient(broker.port, hub, hub_pw) as client:
        for kind, types in presses.items():
            for n, type_ in enumerate(types):
                client.publish(_topic(kids[kind]), _event(kids[kind], f"{kind}-{n}", type_))

        def views() -> dict[str, dict[str, Any]]:
            with db.connect() as conn:
                return {
                    kind: acceptance.evaluate(conn, acceptance.find_test(conn, test_id), 5.0)
                    for kind, test_id in tests.items()
                }

        wait_until(lambda: all(v["status"] == "passed" for v in views().values()), 20, "every step")
        steps = {kind: [s["name"] for s in v["steps"]] for kind, v in views().items()}
        assert steps == {
            "door_contact": ["open", "close"],
            "motion_sensor": ["motion"],
            "smoke_detector": ["test_button"],
            "water_leak": ["leak", "dry"],
        }
        # The leak was the test's awaited alarm step: observed, not raised.
        wait_until(
            lambda: bool(
                db.scalar("SELECT count(*) FROM acceptance_observations WHERE kind = 'water_leak'")
            ),
            15,
            "the leak observed",
        )
        assert db.scalar("SELECT count(*) FROM incidents") == 0


def test_device_emulate_plays_a_kit_sensor_through_its_hub(db: Database, broker: Broker) -> None:
    make_site(db, broker, wearables=False, buttons=False)
    hub, hub_pw = _register(db, "home_hub", "H7")
    pir, pir_pw = _register(db, "motion_sensor", "P7", hub=hub)
    broker.sync(db)

    def config(dev: str, password: str) -> EmulatorConfig:
        return EmulatorConfig(
            device_id=dev, site_id="site-a", host="127.0.0.1", port=broker.port, tls=False,
            username=dev, password=password, client_id=dev,
            topic_prefix=f"{PREFIX}/v1/site-a/{dev}", heartbeat_s=60.0,
        )  # fmt: skip

    assert infer_kind(config(pir, pir_pw), ["walk"], None) is p.DeviceKind.MOTION_SENSOR
    with pytest.raises(EmulatorError) as refused:  # the child has no account of its own
        asyncio.run(emulate(config(pir, pir_pw), ["walk"], kind=p.DeviceKind.MOTION_SENSOR,
                            options=Options(ack_wait_s=5.0), report=lambda _: None))  # fmt: skip
    assert refused.value.code in (3, 4)
    reports: list[dict[str, Any]] = []
    with InProcessGateway(gateway_settings(db, broker)):
        results = asyncio.run(
            emulate(
                config(pir, pir_pw).via_hub(config(hub, hub_pw)), ["walk", "tamper"],
                kind=p.DeviceKind.MOTION_SENSOR, options=Options(ack_wait_s=20.0),
                report=reports.append,
            )
        )  # fmt: skip
    assert [(r.type, r.status) for r in results] == [
        ("motion", p.AckStatus.STORED),
        ("tamper", p.AckStatus.STORED),
    ]
    assert db.scalar("SELECT count(*) FROM device_events WHERE device_id = %s", (pir,)) == 2


def test_installer_api_registers_a_hub_and_its_children(inst: Inst) -> None:  # noqa: F811
    with inst.client("installer") as c:

        def register(kind: str, serial: str, hub: str | None = None) -> Any:
            body = {"kind": kind, "model": "KIT1", "serial": serial, "hub_id": hub}
            return c.post("/sites/site-a/devices", json=body)

        hub = register("home_hub", "H-9")
        assert hub.status_code == 201, hub.text
        hub_cfg = hub.json()["config"]
        door = register("door_contact", "D-9", "hub-H-9")
        assert door.status_code == 201, door.text
        assert door.json()["config"]["device_id"] == "door-D-9"
        wrong = register("motion_sensor", "P-9", "door-D-9")
        assert wrong.status_code == 409 and "home_hub" in wrong.json()["detail"]
        assert "safehome device register --kind home_hub" in wrong.json()["hint"]
        retire = c.post("/devices/hub-H-9/decommission", json={"reason": "test"})
        assert retire.status_code == 409 and "door-D-9" in retire.json()["detail"]
    assert inst.db.scalar("SELECT hub_id FROM devices WHERE device_id = 'door-D-9'") == "hub-H-9"
    # The broker took the new accounts at once: the hub speaks for its child, which is stored.
    mqtt = hub_cfg["mqtt"]
    with DeviceClient(inst.broker.port, mqtt["username"], mqtt["password"]) as client:
        assert not client.refused
        client.subscribe(f"{PREFIX}/v1/site-a/door-D-9/ack")
        client.publish(_topic("door-D-9"), _event("door-D-9", "open-9", "open"))
        wait_until(lambda: bool(client.acks), 15, "the gateway's ack of the child's event")
    assert _stored(inst.db, "open-9")
