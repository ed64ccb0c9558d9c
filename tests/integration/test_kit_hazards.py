"""The safe-home kit against the real broker and database (issue 12 §1–2).

A home hub publishes for its child smoke detector under the child's id; the broker refuses
the hub's publications for a device that is not its child, and a child cannot log in itself.
A smoke detector's test press is stored and raises nothing; its alarm raises a priority-1
``smoke_alarm`` incident that climbs the hazard ladder ("call 119" first). Smoke and gas
alarms are in the alarm guarantee (issue 9): a pending marker is written with the event, the
live path marks it handled, and a gateway down past ``catch_up_s`` raises them on restart.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from devices import protocol as p
from devices.emulator import EmulatorConfig, EmulatorError, Options, emulate, infer_kind
from gateway import acceptance
from gateway import commissioning as com
from gateway.brokersync import mqtt_login_code
from gateway.errors import ConflictError
from tests.integration.test_alarm_durability import _ingest_only
from tests.integration.test_installer_api import Inst, inst  # noqa: F401 (the fixture)
from tests.support import (
    PREFIX,
    Broker,
    Database,
    DeviceClient,
    InProcessGateway,
    gateway_settings,
    make_site,
    register_kit_device,
    wait_until,
)

pytestmark = pytest.mark.integration


def _no_broker(conn: Any) -> None:
    """The test syncs the broker itself (``broker.sync``) after the registry changes."""


def _event(dev: str, msg_id: str, type_: str, **data: Any) -> bytes:
    return p.encode_event(dev, msg_id, 1, int(time.time() * 1000), event=type_, data=data)


def _topic(dev: str) -> str:
    return f"{PREFIX}/v1/site-a/{dev}/event"


def _stored(db: Database, msg_id: str) -> bool:
    return bool(db.scalar("SELECT count(*) FROM device_events WHERE msg_id = %s", (msg_id,)))


def _markers(db: Database) -> list[tuple[Any, ...]]:
    return db.rows(
        "SELECT device_id, msg_id, type, handled_by, outcome, incident_id FROM pending_alarms "
        "ORDER BY device_id, msg_id"
    )


def _first_tier(db: Database, incident_id: int) -> Any:
    return db.scalar(
        "SELECT data->>'name' FROM audit_log WHERE target = %s "
        "AND action = 'escalation.tier' ORDER BY seq LIMIT 1",
        (f"incident:{incident_id}",),
    )


def test_hazard_alarms_acked_then_down_longer_than_catch_up_raise_their_own_incidents(
    db: Database, broker: Broker
) -> None:
    """Smoke and gas alarms acked by an ingest whose analysis never ran (a gateway killed
    right after the ack), down for longer than ``catch_up_s``: the restart raises exactly one
    smoke_alarm and one gas_alarm incident (hazard ladder, "call 119" first), apart from the
    resident's emergency call pressed meanwhile; the detector's test press raises nothing."""
    creds = {c.device_id: c for c in make_site(db, broker, wearables=False)}
    button = creds["site-a-bt0"]
    hub, hub_pw = register_kit_device(db, "home_hub", "H8")
    smoke, _ = register_kit_device(db, "smoke_detector", "S8", hub=hub)
    gas, _ = register_kit_device(db, "gas_detector", "G8", hub=hub)
    with db.connect() as conn:
        for dev in (smoke, gas):
            com.bind_device(conn, com.find_device(conn, dev), None, "site-a-r0", "site-a-l0")
    broker.sync(db)
    settings = gateway_settings(db, broker, SAFEHOME_ANALYSIS__CATCH_UP_S="0.5")
    alarm_ms = int(time.time() * 1000)
    sent = [
        (smoke, "test-8", p.encode_event(smoke, "test-8", 1, alarm_ms, event="test")),
        (smoke, "alarm-8", p.encode_event(smoke, "alarm-8", 2, alarm_ms, event="alarm")),
        (gas, "gas-8", p.encode_event(gas, "gas-8", 1, alarm_ms, event="alarm",
                                      data={"level": "high", "lel_pct": 25.0})),
    ]  # fmt: skip
    with _ingest_only(settings), DeviceClient(broker.port, hub, hub_pw) as client:
        for dev in (smoke, gas):
            client.subscribe(f"{PREFIX}/v1/site-a/{dev}/ack")
        for dev, _, raw in sent:
            client.publish(_topic(dev), raw)
        wait_until(lambda: len(client.acks) == len(sent), 15, "the app-level acks")
        assert {str(orjson.loads(a)["status"]) for a in client.acks} == {"stored"}
        with DeviceClient(broker.port, button.device_id, button.password) as bt:
            bt.subscribe(f"{PREFIX}/v1/site-a/{button.device_id}/ack")
            bt.publish(
                _topic(button.device_id),
                p.encode_event(button.device_id, "press-8", 1, alarm_ms, event="press"),
            )
            wait_until(lambda: bool(bt.acks), 10, "the press acked")
    assert sorted((m[1], m[2], m[3]) for m in _markers(db)) == [
        ("alarm-8", "alarm", None),
        ("gas-8", "alarm", None),
        ("press-8", "press", None),
    ]  # the test press has no marker
    assert db.scalar("SELECT count(*) FROM incidents") == 0
    time.sleep(1.5)  # down for three times catch_up_s: the rebuild no longer replays them
    with InProcessGateway(settings) as gw:
        wait_until(
            lambda: db.scalar("SELECT count(*) FROM pending_alarms WHERE handled_at IS NULL") == 0,
            15,
            "every alarm handled",
        )
        rows = db.rows(
            "SELECT id, type, priority, resident_id, technical, trigger_count, first_trigger_at, "
            "reason, details FROM incidents ORDER BY type"
        )
        assert [(r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
            ("emergency_call", 1, "site-a-r0", False, 1),
            ("gas_alarm", 1, "site-a-r0", False, 1),
            ("smoke_alarm", 1, "site-a-r0", False, 1),
        ]
        by_type = {r[1]: r for r in rows}
        hazards = [by_type["smoke_alarm"][0], by_type["gas_alarm"][0]]
        for itype in ("smoke_alarm", "gas_alarm"):
            _, *_, first, reason, details = by_type[itype]
            assert abs(first.timestamp() * 1000 - alarm_ms) < 2  # the alarm's own time
            assert "119" in reason and details["raised_by"] == "recovery"
        wait_until(
            lambda: all(_first_tier(db, i) is not None for i in hazards), 15, "the first tiers"
        )
        assert [_first_tier(db, i) for i in hazards] == ["call_119", "call_119"]
        assert "high" in by_type["gas_alarm"][7]  # the stored event's level
        recovered = gw.runtime.metrics.registry.get_sample_value(
            "safehome_alarms_recovered_total", {"outcome": "raised"}
        )
    assert recovered == 3.0
    assert sorted((m[1], m[3], m[4], m[5]) for m in _markers(db)) == sorted(
        (mid, "recovery", "raised", by_type[t][0])
        for mid, t in (("alarm-8", "smoke_alarm"), ("gas-8", "gas_alarm"),
                       ("press-8", "emergency_call"))
    )  # fmt: skip
    assert (
        db.scalar("SELECT count(*) FROM detections WHERE kind IN ('smoke_alarm', 'gas_alarm')") == 2
    )
    assert db.scalar("SELECT count(*) FROM incidents") == 3


def test_a_hub_reports_a_smoke_alarm_that_climbs_the_hazard_ladder(
    db: Database, broker: Broker
) -> None:
    make_site(db, broker, wearables=False)
    hub, hub_pw = register_kit_device(db, "home_hub", "H1")
    smoke, smoke_pw = register_kit_device(db, "smoke_detector", "S1", hub=hub)
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
        # The alarm's marker was handled by the live path, with this incident; the test press
        # (no alarm) left none.
        assert _markers(db) == [(smoke, "alarm-1", "alarm", "analysis", "raised", incident_id)]
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
    hub, _ = register_kit_device(db, "home_hub", "H2")
    door, _ = register_kit_device(db, "door_contact", "D2", hub=hub)
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
    hub, hub_pw = register_kit_device(db, "home_hub", "H5")
    kids = {
        kind: register_kit_device(db, kind, f"{kind}-5", hub=hub)[0]
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
        # The leak is an alarm event: its marker was taken by the test's observation; the
        # smoke detector's test press has none.
        assert db.rows("SELECT type, handled_by, outcome FROM pending_alarms") == [
            ("leak", "analysis", "test_observation")
        ]


def test_device_emulate_plays_a_kit_sensor_through_its_hub(db: Database, broker: Broker) -> None:
    make_site(db, broker, wearables=False, buttons=False)
    hub, hub_pw = register_kit_device(db, "home_hub", "H7")
    pir, pir_pw = register_kit_device(db, "motion_sensor", "P7", hub=hub)
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
