"""A second hazard while the first is open, through MQTT to the incident (real services).

Two smoke detectors of one home (bound to the home, no resident: the place's incident) speak
through their hub. The first alarm raises the smoke incident; the second detector's alarm
joins it at once as a trigger (a spreading fire), not after the alarm recovery's grace
(60 s by default, kept here); the first detector repeating its alarm while it still sounds
adds nothing (its marker taken by the open incident); a re-alarm after its clear is a
trigger again; once staff resolved the incident a new alarm raises a new one.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from devices import protocol as p
from gateway import commissioning as com
from gateway.workflow.service import Actor, IncidentService
from gateway.workflow.transitions import Outcome, Role
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

STAFF = Actor("staff-kit", Role.DUTY_STAFF)


def _event(dev: str, msg_id: str, type_: str) -> bytes:
    return p.encode_event(dev, msg_id, 1, int(time.time() * 1000), event=type_)


def _incidents(db: Database) -> list[tuple[Any, ...]]:
    return db.rows(
        "SELECT id, type, state, resident_id, subject, trigger_count FROM incidents ORDER BY id"
    )


def _triggered(db: Database, incident_id: int) -> int:
    return int(
        db.scalar(
            "SELECT count(*) FROM incident_events WHERE incident_id = %s AND kind = 'triggered'",
            (incident_id,),
        )
    )


def _marker(db: Database, msg_id: str) -> tuple[Any, ...] | None:
    rows = db.rows(
        "SELECT handled_by, outcome, incident_id FROM pending_alarms WHERE msg_id = %s",
        (msg_id,),
    )
    return rows[0] if rows and rows[0][0] is not None else None


def test_a_second_detector_joins_the_open_smoke_incident_at_once(
    db: Database, broker: Broker
) -> None:
    make_site(db, broker, wearables=False, buttons=False)
    hub, hub_pw = register_kit_device(db, "home_hub", "HS1")
    kitchen, _ = register_kit_device(db, "smoke_detector", "SK1", hub=hub)
    bedroom, _ = register_kit_device(db, "smoke_detector", "SB1", hub=hub)
    with db.connect() as conn:
        for dev in (kitchen, bedroom):  # the home's, bound to no resident
            com.bind_device(conn, com.find_device(conn, dev), None, None, "site-a-l0")
    broker.sync(db)
    settings = gateway_settings(db, broker)
    assert settings.alarms.recovery_grace_s >= 60.0  # a join comes from the live path

    def send(dev: str, msg_id: str, type_: str) -> None:
        client.publish(f"{PREFIX}/v1/site-a/{dev}/event", _event(dev, msg_id, type_))

    with InProcessGateway(settings), DeviceClient(broker.port, hub, hub_pw) as client:
        send(kitchen, "k-alarm-1", "alarm")
        wait_until(lambda: _marker(db, "k-alarm-1") is not None, 15, "the first alarm raised")
        [(incident, itype, state, resident, subject, count)] = _incidents(db)
        assert (itype, state, resident, subject, count) == (
            "smoke_alarm", "raised", None, "site-a-l0", 1
        )  # fmt: skip
        assert _marker(db, "k-alarm-1") == ("analysis", "raised", incident)

        send(bedroom, "b-alarm-1", "alarm")  # the fire spreads to the bedroom
        wait_until(lambda: _marker(db, "b-alarm-1") is not None, 15, "the second alarm taken")
        assert _marker(db, "b-alarm-1") == ("analysis", "joined", incident)
        assert [r[5] for r in _incidents(db)] == [2]
        assert _triggered(db, incident) == 1

        send(kitchen, "k-alarm-2", "alarm")  # the kitchen still sounds: its repeat
        wait_until(lambda: _marker(db, "k-alarm-2") is not None, 15, "the repeat taken")
        assert _marker(db, "k-alarm-2") == ("analysis", "already_raised", incident)
        assert [r[5] for r in _incidents(db)] == [2]  # no new trigger, no new incident

        send(kitchen, "k-clear-1", "clear")
        send(kitchen, "k-alarm-3", "alarm")  # alarms again after its clear
        wait_until(lambda: _marker(db, "k-alarm-3") is not None, 15, "the re-alarm taken")
        assert _marker(db, "k-alarm-3") == ("analysis", "joined", incident)
        assert [r[5] for r in _incidents(db)] == [3]
        assert _triggered(db, incident) == 2
        # Each detector's own condition: the kitchen's clear left the bedroom's open.
        assert db.rows(
            "SELECT device_id, count(*) FILTER (WHERE resolved) FROM detections "
            "WHERE kind = 'smoke_alarm' GROUP BY device_id ORDER BY device_id"
        ) == [(bedroom, 0), (kitchen, 1)]

        with db.connect() as conn:
            service = IncidentService(conn)
            service.acknowledge(incident, STAFF)
            service.resolve(incident, STAFF, Outcome.FALSE_ALARM)
        send(kitchen, "k-clear-2", "clear")
        send(kitchen, "k-alarm-4", "alarm")  # a new alarm after the incident was resolved
        wait_until(lambda: _marker(db, "k-alarm-4") is not None, 15, "the new alarm raised")
        rows = _incidents(db)
        assert [(r[1], r[2], r[5]) for r in rows] == [
            ("smoke_alarm", "resolved", 3),
            ("smoke_alarm", "raised", 1),
        ]
        second = rows[1][0]
        assert _marker(db, "k-alarm-4") == ("analysis", "raised", second)
        send(bedroom, "b-alarm-2", "alarm")  # the bedroom never cleared: still its alarm
        wait_until(lambda: _marker(db, "b-alarm-2") is not None, 15, "the bedroom's repeat")
        assert _marker(db, "b-alarm-2") == ("analysis", "already_raised", second)
        assert [(r[2], r[5]) for r in _incidents(db)] == [("resolved", 3), ("raised", 1)]
    assert db.scalar("SELECT count(*) FROM pending_alarms WHERE handled_at IS NULL") == 0
