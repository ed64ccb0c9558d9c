"""Every stored alarm becomes exactly one incident (issue 9 §2–4), against the real database
and broker: a press acked and then never analysed (the gateway stopped before its analysis),
a restart long after ``catch_up_s``, the recovery racing the live path, alarms from devices
bound to no resident, a decommissioned device, and wrong device clocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from analytics.types import Detection, DetectionKind
from devices import protocol as p
from gateway.analysis import DetectionRecord, PostgresStore
from gateway.commissioning import DeviceCredential
from gateway.escalation import intake
from gateway.escalation.recovery import recover_once
from gateway.ingest import IngestPipeline
from gateway.metrics import Metrics
from gateway.mqttsession import MqttSession
from gateway.settings import AnalysisSettings, Settings
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


def _topic(site: str, dev: str, channel: str) -> str:
    return f"{PREFIX}/v1/{site}/{dev}/{channel}"


@contextmanager
def _ingest_only(settings: Settings) -> Iterator[IngestPipeline]:
    """The gateway's ingest without its analysis: what a gateway killed right after the ack,
    before analysing, leaves behind (stored, acked, never analysed)."""
    pipeline = IngestPipeline(
        settings.database, settings.ingest, settings.mqtt.prefix, Metrics(), None
    )
    session = MqttSession(settings.mqtt, pipeline.enqueue, [f"{settings.mqtt.prefix}/v1/+/+/+"])
    pipeline.attach(session)
    pipeline.start()
    session.start()
    try:
        wait_until(session.connected.is_set, 10, "ingest connected")
        yield pipeline
    finally:
        session.stop()
        pipeline.stop()


def _press(
    broker: Broker, cred: DeviceCredential, msg_id: str, ts_ms: int, event: str = "press"
) -> str:
    """Publish an alarm and return the gateway's application-level ack status."""
    with DeviceClient(broker.port, cred.device_id, cred.password) as dev:
        dev.subscribe(_topic(cred.site_id, cred.device_id, "ack"))
        dev.publish(
            _topic(cred.site_id, cred.device_id, "event"),
            p.encode_event(cred.device_id, msg_id, 1, ts_ms, event=event),
        )
        wait_until(lambda: bool(dev.acks), 10, "app-level ack")
        ack = orjson.loads(dev.acks[0])
        return str(ack["status"]) + ("/" + ack["reason"] if ack.get("reason") else "")


def _incidents(db: Database, itype: str = "emergency_call") -> list[tuple[Any, ...]]:
    return db.rows(
        "SELECT id, subject, resident_id, first_trigger_at, raised_at, reason, details, "
        "trigger_count FROM incidents WHERE type = %s ORDER BY id",
        (itype,),
    )


def test_press_acked_then_down_longer_than_catch_up_raises_exactly_one_incident(
    db: Database, broker: Broker
) -> None:
    creds = {c.device_id: c for c in make_site(db, broker, wearables=False)}
    button = creds["site-a-bt0"]
    settings = gateway_settings(db, broker, SAFEHOME_ANALYSIS__CATCH_UP_S="0.5")
    pressed_ms = int(time.time() * 1000)
    with _ingest_only(settings):
        assert _press(broker, button, "press-1", pressed_ms) == "stored"
    assert db.scalar("SELECT count(*) FROM pending_alarms WHERE handled_at IS NULL") == 1
    assert db.scalar("SELECT count(*) FROM incidents") == 0
    time.sleep(1.5)  # down for three times catch_up_s: the rebuild no longer replays the press
    with InProcessGateway(settings):
        wait_until(lambda: len(_incidents(db)) == 1, 15, "the recovered incident")
        time.sleep(1.0)  # anything the live path would add shows now
    rows = _incidents(db)
    assert len(rows) == 1
    _, subject, resident, first, raised, reason, details, count = rows[0]
    assert resident == "site-a-r0" and subject == "site-a-r0" and count == 1
    assert abs(first.timestamp() * 1000 - pressed_ms) < 2  # the alarm's own time
    assert (raised - first).total_seconds() >= 1.5
    assert details["raised_by"] == "recovery" and details["raised_after_s"] >= 1.5
    assert "after the alarm was received" in reason and "recovered" in reason
    handled = db.rows("SELECT handled_by, outcome, incident_id FROM pending_alarms")
    assert handled == [("recovery", "raised", rows[0][0])]
    assert db.scalar("SELECT count(*) FROM detections WHERE kind = 'emergency_call'") == 1
    assert db.scalar("SELECT count(*) FROM incident_escalations") == 1
    with InProcessGateway(settings):  # another restart raises nothing more
        time.sleep(1.0)
    assert len(_incidents(db)) == 1


def test_restart_within_catch_up_raises_once_with_the_replay_running_too(
    db: Database, broker: Broker
) -> None:
    """The rebuild replays the press (the live path) and the recovery sees its marker."""
    creds = {c.device_id: c for c in make_site(db, broker, wearables=False)}
    button = creds["site-a-bt0"]
    settings = gateway_settings(db, broker)  # catch_up_s 120: the rebuild replays the press
    with _ingest_only(settings):
        assert _press(broker, button, "press-1", int(time.time() * 1000)) == "stored"
    with InProcessGateway(settings):
        wait_until(lambda: len(_incidents(db)) == 1, 15, "the incident")
        assert _press(broker, button, "press-2", int(time.time() * 1000)) == "stored"
        wait_until(
            lambda: db.scalar("SELECT count(*) FROM pending_alarms WHERE handled_at IS NULL") == 0,
            10,
            "both alarms handled",
        )
        time.sleep(1.0)
    rows = _incidents(db)
    assert len(rows) == 1 and rows[0][7] == 2  # the live press joined the recovered incident
    outcomes = sorted(db.rows("SELECT msg_id, handled_by, outcome FROM pending_alarms"))
    assert outcomes == [("press-1", "recovery", "raised"), ("press-2", "analysis", "joined")]


def _race_site(db: Database, n: int) -> None:
    with db.connect() as conn:
        conn.execute("INSERT INTO sites (site_id, name, kind) VALUES ('s1', 'S', 'nursing_home')")
        for i in range(n):
            conn.execute(
                "INSERT INTO residents (resident_id, elder_code, site_id, display_name, "
                "care_level) VALUES (%s, %s, 's1', 'R', 2)",
                (f"r{i}", f"E{i}"),
            )
            conn.execute(
                "INSERT INTO devices (device_id, site_id, kind, model, serial, resident_id, "
                "mqtt_password_hash) VALUES (%s, 's1', 'button', 'B', %s, %s, 'x')",
                (f"d{i}", f"s{i}", f"r{i}"),
            )
            conn.execute(
                "INSERT INTO pending_alarms (device_id, msg_id, site_id, type, time, "
                "received_at, created_at) VALUES (%s, 'm', 's1', 'press', now(), now(), "
                "now() - interval '1 hour')",
                (f"d{i}",),
            )


def test_recovery_racing_the_live_path_raises_each_alarm_once(db: Database) -> None:
    n = 40
    _race_site(db, n)
    now = time.time()
    records = [
        DetectionRecord.of(
            Detection(DetectionKind.EMERGENCY_CALL, f"r{i}", now, "button pressed"),
            site_id="s1",
            resident_id=f"r{i}",
            device_id=f"d{i}",
            location_id=None,
            alarms=((f"d{i}", "m"),),
        )
        for i in range(n)
    ]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def live() -> None:
        try:
            with db.connect() as conn:
                start.wait()
                for rec in records:  # one store transaction per alarm, as the runner writes
                    conn.execute("SELECT 1")
                    PostgresStore._write(conn, [rec], [], [], intake.on_detections_stored)
        except BaseException as exc:
            errors.append(exc)

    def recovery() -> None:
        try:
            with db.connect() as conn:
                start.wait()
                while recover_once(
                    conn, before=datetime.now(UTC), analysis=AnalysisSettings(), limit=3
                ):
                    pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=live), threading.Thread(target=recovery)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    rows = db.rows("SELECT resident_id, trigger_count FROM incidents ORDER BY resident_id")
    assert len(rows) == n and all(count == 1 for _, count in rows)
    assert db.scalar("SELECT count(*) FROM pending_alarms WHERE handled_at IS NULL") == 0
    assert db.scalar("SELECT count(*) FROM pending_alarms WHERE incident_id IS NULL") == 0
    by = dict(db.rows("SELECT handled_by, count(*) FROM pending_alarms GROUP BY 1"))
    assert sum(by.values()) == n
    assert db.scalar("SELECT count(*) FROM incident_escalations") == n
