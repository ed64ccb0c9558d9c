"""Every stored alarm becomes exactly one incident (issue 9 §2–4), against the real database
and broker: a press acked and then never analysed (the gateway stopped before its analysis),
a restart long after ``catch_up_s``, the recovery racing the live path, alarms from devices
bound to no resident, a decommissioned device, and wrong device clocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from analytics.types import Detection, DetectionKind
from devices import protocol as p
from gateway.analysis import DetectionRecord, PostgresStore
from gateway.commissioning import DeviceCredential, apply_site_definition
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
    GatewayProcess,
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
    with InProcessGateway(settings) as gw:
        wait_until(lambda: len(_incidents(db)) == 1, 15, "the recovered incident")
        time.sleep(1.0)  # anything the live path would add shows now
        recovered = gw.runtime.metrics.registry.get_sample_value(
            "safehome_alarms_recovered_total", {"outcome": "raised"}
        )
    assert recovered == 1.0
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


def test_gateway_killed_right_after_the_ack_raises_exactly_one_incident(
    db: Database, broker: Broker, tmp_path: Path
) -> None:
    """kill -9 of the gateway process the moment the press is acked (whether or not its
    analysis got to it), down for longer than catch_up_s: exactly one incident."""
    creds = {c.device_id: c for c in make_site(db, broker, wearables=False)}
    button = creds["site-a-bt0"]
    settings = gateway_settings(db, broker)
    timers = {"SAFEHOME_ANALYSIS__CATCH_UP_S": "0.5"}
    gw = GatewayProcess(settings, tmp_path / "gateway.log", timers).start()
    try:
        pressed_ms = int(time.time() * 1000)
        assert _press(broker, button, "press-1", pressed_ms) == "stored"
        gw.kill()
        time.sleep(1.5)
        gw = GatewayProcess(settings, tmp_path / "gateway.log", timers).start()
        wait_until(lambda: len(_incidents(db)) == 1, 15, "the incident")
        wait_until(
            lambda: db.scalar("SELECT count(*) FROM pending_alarms WHERE handled_at IS NULL") == 0,
            10,
            "the alarm handled",
        )
        time.sleep(1.0)
    finally:
        gw.stop()
    rows = _incidents(db)
    assert len(rows) == 1 and rows[0][7] == 1
    assert abs(rows[0][3].timestamp() * 1000 - pressed_ms) < 2


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
                while recover_once(conn, older_than_s=0.0, analysis=AnalysisSettings(), limit=3):
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


def _registry_states_site(db: Database, broker: Broker) -> dict[str, DeviceCredential]:
    """A room with a resident's bed, a bathroom with a pull-cord, a vacant bed, an unbound
    button, a button whose acceptance test expired, and one to be decommissioned."""
    button = {"kind": "button", "model": "BT1"}
    definition = {
        "site": {"id": "s3", "name": "Site 3", "kind": "nursing_home"},
        "locations": [
            {"id": "room-1", "kind": "room", "label": "101"},
            {"id": "bath-1", "kind": "room", "label": "101 bathroom"},
            {"id": "room-2", "kind": "room", "label": "102"},
        ],
        "beds": [
            {"id": "bed-1", "code": "BED-1", "location": "room-1"},
            {"id": "bed-2", "code": "BED-2", "location": "room-2"},
        ],
        "residents": [{"id": "res-1", "code": "E1", "name": "R", "bed": "bed-1", "care_level": 2}],
        "devices": [
            {**button, "id": "cord", "serial": "1", "location": "bath-1"},
            {**button, "id": "vacant", "serial": "2", "bed": "bed-2", "location": "room-2"},
            {**button, "id": "loose", "serial": "3"},
            {**button, "id": "tested", "serial": "4", "location": "bath-1"},
            {**button, "id": "retired", "serial": "5", "bed": "bed-1", "location": "room-1"},
        ],
    }
    with db.connect() as conn:
        creds = apply_site_definition(conn, definition)
        conn.execute(
            "INSERT INTO acceptance_tests (test_id, device_id, site_id, kind, installer, "
            "started_at, expires_at) VALUES ('t1', 'tested', 's3', 'button', 'u1', "
            "now() - interval '1 hour', now() - interval '50 minutes')"
        )
    broker.sync(db)
    return {c.device_id: c for c in creds}


def test_alarms_of_devices_bound_to_no_resident_raise_place_incidents(
    db: Database, broker: Broker
) -> None:
    creds = _registry_states_site(db, broker)
    settings = gateway_settings(db, broker)
    with InProcessGateway(settings) as gw:
        with db.connect() as conn:  # decommissioned after the broker sync: still connects
            conn.execute(
                "UPDATE devices SET active = false, decommissioned_at = now() "
                "WHERE device_id = 'retired'"
            )
        gw.runtime.registry_changed()
        now = int(time.time() * 1000)
        for dev in ("cord", "vacant", "loose", "tested"):
            assert _press(broker, creds[dev], f"{dev}-1", now) == "stored", dev
        assert _press(broker, creds["retired"], "retired-1", now) == "rejected/decommissioned"
        wait_until(lambda: len(_incidents(db)) == 3, 15, "three place incidents")
        wait_until(
            lambda: db.scalar("SELECT count(*) FROM pending_alarms WHERE handled_at IS NULL") == 0,
            10,
            "every alarm handled",
        )
        time.sleep(0.5)
        decommissioned = gw.runtime.metrics.registry.get_sample_value(
            "safehome_ingest_dead_letters_total", {"reason": "decommissioned"}
        )
    rows = _incidents(db)
    places = {r[1]: r for r in rows}
    assert set(places) == {"bath-1", "room-2", "s3"}  # the cord and the expired test share one
    assert all(r[2] is None for r in rows)  # no resident
    assert places["bath-1"][7] == 2 and places["s3"][6]["level"] == "site"
    assert (
        places["room-2"][6]["device"] == "vacant" and "bound to no resident" in places["room-2"][5]
    )
    assert db.scalar("SELECT count(*) FROM incident_escalations") == 3
    assert db.rows("SELECT device_id, reason FROM dead_letters") == [("retired", "decommissioned")]
    assert decommissioned == 1.0
    assert db.scalar("SELECT count(*) FROM pending_alarms") == 4


def test_wrong_device_clocks_never_cost_an_alarm(db: Database, broker: Broker) -> None:
    creds = {c.device_id: c for c in make_site(db, broker, wearables=False)}
    button = creds["site-a-bt0"]
    settings = gateway_settings(db, broker)
    with InProcessGateway(settings):
        sent = time.time()
        assert _press(broker, button, "ahead", int((sent + 400) * 1000)) == "stored"
        wait_until(lambda: len(_incidents(db)) == 1, 10, "the alarm's incident")
        wait_until(lambda: len(_incidents(db, "device_clock_wrong")) == 1, 10, "clock wrong")
        assert _press(broker, button, "ahead", int((sent + 400) * 1000)) == "duplicate"
        assert _press(broker, button, "behind", int((sent - 3600) * 1000)) == "stored"
        wait_until(
            lambda: db.scalar("SELECT count(*) FROM pending_alarms WHERE handled_at IS NULL") == 0,
            10,
            "both alarms handled",
        )
        time.sleep(0.5)
        assert len(_incidents(db, "device_clock_wrong")) == 1  # once per device
        alarm = _incidents(db)
        assert len(alarm) == 1 and alarm[0][7] == 2  # the second press joined
        _, _, _, first, _, reason, details, _ = alarm[0]
        assert abs(first.timestamp() - sent) < 5  # the receive time, not the device's
        assert details["clock_wrong"] is True and "clock was wrong" in reason
        assert db.scalar("SELECT count(*) FROM device_events") == 2
        assert db.scalar("SELECT count(*) FROM dead_letters") == 0
        # The clock is right again: a heartbeat with a plausible time clears the incident.
        with DeviceClient(broker.port, button.device_id, button.password) as dev:
            dev.publish(
                _topic("site-a", button.device_id, "telemetry"),
                p.encode_heartbeat(button.device_id, "hb-1", 3, int(time.time() * 1000),
                                   battery=80),
            )  # fmt: skip
        wait_until(
            lambda: (
                db.scalar("SELECT state FROM incidents WHERE type = 'device_clock_wrong'")
                == "resolved"
            ),
            10,
            "clock-wrong incident cleared",
        )
        # Telemetry with a wrong clock is still dead-lettered, as before.
        with DeviceClient(broker.port, button.device_id, button.password) as dev:
            dev.publish(
                _topic("site-a", button.device_id, "telemetry"),
                p.encode_heartbeat(button.device_id, "hb-2", 4, int((time.time() + 400) * 1000),
                                   battery=80),
            )  # fmt: skip
        wait_until(lambda: db.scalar("SELECT count(*) FROM dead_letters") == 1, 10, "dead")
    markers = db.rows("SELECT msg_id, clock_wrong, device_time FROM pending_alarms ORDER BY 1")
    assert [(m, w) for m, w, _ in markers] == [("ahead", True), ("behind", True)]
    assert abs(markers[0][2].timestamp() - (sent + 400)) < 1


def test_fall_flags_raise_through_the_analysis_or_record_the_residents_cancel(
    db: Database, broker: Broker
) -> None:
    """A fall flag's marker is taken when the analysis confirms the fall; a flag the resident
    cancelled is recorded by the recovery (outcome ``cancelled``), nothing raised."""
    creds = {c.device_id: c for c in make_site(db, broker, beds=2, buttons=False)}
    settings = gateway_settings(
        db, broker,
        SAFEHOME_ANALYSIS__FALL_CONFIRM_WINDOW_S="3",
        SAFEHOME_ANALYSIS__CHECK_INTERVAL_S="0.2",
        SAFEHOME_ALARMS__RECOVERY_GRACE_S="5",
        SAFEHOME_ALARMS__RECOVERY_INTERVAL_S="0.5",
    )  # fmt: skip
    falls, cancels = creds["site-a-wr0"], creds["site-a-wr1"]
    with InProcessGateway(settings):
        now = int(time.time() * 1000)
        assert _press(broker, falls, "fall-1", now, event="fall") == "stored"
        with DeviceClient(broker.port, cancels.device_id, cancels.password) as dev:
            for mid, event in (("fall-2", "fall"), ("ok-2", "cancel")):  # "I'm OK" at once
                dev.publish(
                    _topic("site-a", cancels.device_id, "event"),
                    p.encode_event(cancels.device_id, mid, 1, now + 300, event=event),
                )
        wait_until(lambda: len(_incidents(db, "fall")) == 1, 10, "the fall incident")
        wait_until(
            lambda: db.scalar("SELECT count(*) FROM pending_alarms WHERE handled_at IS NULL") == 0,
            15,
            "the cancelled flag recorded",
        )
        time.sleep(0.5)
    assert [r[2] for r in _incidents(db, "fall")] == ["site-a-r0"]
    assert db.scalar("SELECT count(*) FROM incidents") == 1
    marks = db.rows("SELECT msg_id, handled_by, outcome, note FROM pending_alarms ORDER BY 1")
    assert [m[:3] for m in marks] == [
        ("fall-1", "analysis", "raised"),
        ("fall-2", "recovery", "cancelled"),
    ]
    assert "cancelled by the resident" in marks[1][3]


def test_periodic_recovery_raises_an_alarm_the_running_analysis_never_took(
    db: Database, broker: Broker
) -> None:
    """No restart: an alarm stored and acked whose analysis never came (a stuck or dead
    analysis thread) is raised by the periodic pass once older than the grace."""
    make_site(db, broker, wearables=False)
    settings = gateway_settings(
        db, broker,
        SAFEHOME_ALARMS__RECOVERY_GRACE_S="1",
        SAFEHOME_ALARMS__RECOVERY_INTERVAL_S="0.2",
    )  # fmt: skip
    with InProcessGateway(settings) as gw:
        with db.connect() as conn, conn.transaction():  # what ingest commits, nothing more
            conn.execute(
                "INSERT INTO device_events VALUES (now(), 'site-a-bt0', 'lost-1', 1, 'press', "
                "'{}', now())"
            )
            conn.execute(
                "INSERT INTO pending_alarms (device_id, msg_id, site_id, type, time, "
                "received_at) VALUES ('site-a-bt0', 'lost-1', 'site-a', 'press', now(), now())"
            )
        wait_until(lambda: len(_incidents(db)) == 1, 10, "the recovered incident")
        assert gw.runtime.analysis.alive
    marker = db.rows("SELECT handled_by, outcome FROM pending_alarms")
    assert marker == [("recovery", "raised")]
    assert db.scalar("SELECT (raised_at - first_trigger_at) >= interval '1 second' FROM incidents")
