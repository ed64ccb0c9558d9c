"""Detections end to end: devices → Mosquitto → ingest → analysis → ``detections`` table.

Settings are shortened (checks every 0.5 s, a 2 s fall window, heartbeats every 2 s) so that
each case takes seconds. Signals carry device timestamps from the recent past and are published
in a burst: the detectors work on device time, the confirmation windows and deadlines on the
gateway's clock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pytest

from analytics.routine import DaySummary, day_start, local_day
from analytics.types import DetectionKind
from devices import protocol as p
from gateway.analysis import DetectionRecord, PostgresStore, RoutineDay, VitalsDay
from gateway.replay import replay
from gateway.settings import AnalysisSettings, DatabaseSettings, Settings
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
from tests.unit.test_analysis_runner import SUPINE, fall_signal, still_signal

pytestmark = pytest.mark.integration

SITE = "site-a"
BED, WEAR, BUTTON = "site-a-bs0", "site-a-wr0", "site-a-bt0"
OFF = 8 * 3600.0

SHORT = {
    "SAFEHOME_ANALYSIS__CHECK_INTERVAL_S": "0.5",
    "SAFEHOME_ANALYSIS__FALL_CONFIRM_WINDOW_S": "2",
    "SAFEHOME_ANALYSIS__HEARTBEAT_BUTTON_S": "2",
    "SAFEHOME_ANALYSIS__HEARTBEAT_BED_SENSOR_S": "2",
    "SAFEHOME_ANALYSIS__HEARTBEAT_WEARABLE_S": "2",
    "SAFEHOME_ANALYSIS__GROUP_HOLD_S": "5",
    "SAFEHOME_ANALYSIS__VITALS_MIN_DURATION_S": "10",
    "SAFEHOME_ANALYSIS__VITALS_RECOVER_S": "5",
    "SAFEHOME_ANALYSIS__REGISTRY_REFRESH_S": "1",
}


def _topic(dev: str, channel: str) -> str:
    return f"{PREFIX}/v1/{SITE}/{dev}/{channel}"


def _rows(db: Database, kind: str) -> list[tuple[object, ...]]:
    return db.rows(
        "SELECT subject, resolved, resident_id, device_id, location_id, started, reason "
        "FROM detections WHERE kind = %s ORDER BY id",
        (kind,),
    )


def _setup(db: Database, broker: Broker, short: bool = True) -> tuple[Settings, dict[str, str]]:
    creds = {c.device_id: c.password for c in make_site(db, broker)}
    return gateway_settings(db, broker, **(SHORT if short else {})), creds


@contextmanager
def alive(
    broker: Broker, creds: dict[str, str], devices: list[str]
) -> Iterator[dict[str, DeviceClient]]:
    """Connected devices sending a heartbeat every second (so only the others fall silent)."""
    clients = {d: DeviceClient(broker.port, d, creds[d]) for d in devices}
    for c in clients.values():
        c.__enter__()
    stop = threading.Event()

    def beat() -> None:
        seq = 0
        while not stop.wait(1.0):
            seq += 1
            for dev, client in clients.items():
                ts = int(time.time() * 1000)
                worn = True if dev == WEAR else None  # a wearable says whether it is worn
                payload = p.encode_heartbeat(
                    dev, f"hb-{seq}", 10_000 + seq, ts, battery=80, worn=worn
                )
                client.publish(_topic(dev, "telemetry"), payload)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield clients
    finally:
        stop.set()
        thread.join(5)
        for c in clients.values():
            c.__exit__()


def test_fall_is_one_detection_and_a_restart_does_not_repeat_it(
    db: Database, broker: Broker
) -> None:
    settings, creds = _setup(db, broker)
    signal = np.concatenate([still_signal(10.0), fall_signal(), still_signal(10.0, SUPINE)])
    t0 = time.time() - 40.0  # device time: the fall happened half a minute ago
    impact = t0 + 10.0 + 6.6
    with alive(broker, creds, [BED, WEAR, BUTTON]) as clients:
        with InProcessGateway(settings):
            wear = clients[WEAR]
            for k in range(0, len(signal), 50):
                ts = int((t0 + k / 50.0) * 1000)
                payload = p.encode_accel(WEAR, f"a{k}", k, ts, samples=signal[k : k + 50])
                wear.publish(_topic(WEAR, "telemetry"), payload)
            wait_until(lambda: len(_rows(db, "fall")) == 1, 15, "one FALL row")
            time.sleep(1.5)  # three more checks: nothing else comes
        fall = _rows(db, "fall")
        assert len(fall) == 1
        subject, resolved, resident, device, location, started, reason = fall[0]
        assert (subject, resolved, resident, device, location) == (
            "site-a-r0", False, "site-a-r0", WEAR, "site-a-l0",
        )  # fmt: skip
        assert isinstance(started, datetime) and abs(started.timestamp() - impact) < 0.05
        assert "not cancelled within 2 s" in str(reason)
        # restart: the start-up catch-up analyses the stored accelerometer batches again and
        # finds the same fall, which is already stored
        with InProcessGateway(settings) as gw:
            registry = gw.runtime.metrics.registry
            wait_until(
                lambda: (registry.get_sample_value("safehome_analysis_checks_total") or 0) > 2,
                10,
                "analysis checks after the restart",
            )
            assert registry.get_sample_value("safehome_analysis_duplicates_total") == 1.0
    assert len(_rows(db, "fall")) == 1
    assert db.scalar("SELECT count(*) FROM detections WHERE NOT technical") == 1


def test_abnormal_vitals_are_one_detection_and_one_resolution(db: Database, broker: Broker) -> None:
    settings, creds = _setup(db, broker)
    t0 = time.time() - 200.0
    with (
        alive(broker, creds, [BED, WEAR, BUTTON]) as clients,
        InProcessGateway(settings),
    ):
        bed = clients[BED]
        for i in range(180):  # 40 s calm, 80 s at 140 bpm, 60 s calm
            hr = 140.0 if 40 <= i < 120 else 62.0
            ts = int((t0 + i) * 1000)
            payload = p.encode_vitals(BED, f"v{i}", i, ts, presence=True, hr=hr, rr=14.0,
                                      movement=0.05)  # fmt: skip
            bed.publish(_topic(BED, "telemetry"), payload)
        wait_until(lambda: len(_rows(db, "vitals_abnormal")) == 2, 15, "raise + resolution")
        time.sleep(1.0)
    rows = _rows(db, "vitals_abnormal")
    assert [r[1] for r in rows] == [False, True]  # one raise, one resolution
    assert rows[0][0] == "site-a-r0" and rows[0][3] == BED
    assert rows[0][5] == rows[1][5]  # the resolution names the episode it closes
    assert "heart rate 1" in str(rows[0][6]) and "above the limit of 120 bpm" in str(rows[0][6])
    assert db.scalar(
        "SELECT closed_at IS NOT NULL FROM detections WHERE kind = 'vitals_abnormal' "
        "AND NOT resolved"
    )
    # Nothing else of the vitals (the bed routine may rightly add "not up" when the test runs
    # in the site's morning: an elder in bed after 06:30; that is not this test's subject).
    assert (
        db.scalar("SELECT count(*) FROM detections WHERE NOT technical AND kind <> 'not_up'") == 2
    )


def test_silent_device_is_one_detection_kept_open_across_a_restart(
    db: Database, broker: Broker
) -> None:
    settings, creds = _setup(db, broker)
    with alive(broker, creds, [BED, WEAR]):  # the button never reports
        with InProcessGateway(settings):
            wait_until(lambda: len(_rows(db, "device_offline")) == 1, 15, "DEVICE_OFFLINE")
            time.sleep(1.5)
        with InProcessGateway(settings) as gw:
            registry = gw.runtime.metrics.registry
            wait_until(
                lambda: (registry.get_sample_value("safehome_analysis_continued_total") or 0) == 1,
                15,
                "the restarted runner to find the button still silent",
            )
            time.sleep(1.0)
    rows = _rows(db, "device_offline")
    assert len(rows) == 1
    subject, resolved, resident, device, location, _, reason = rows[0]
    assert (subject, resolved, resident, device, location) == (
        BUTTON, False, "site-a-r0", BUTTON, "site-a-l0",
    )  # fmt: skip
    assert "silent since" in str(reason)
    assert db.scalar("SELECT count(*) FROM detections") == 1
    assert db.scalar("SELECT count(*) FROM detections WHERE closed_at IS NULL") == 1


def test_inactivity_through_replay_on_a_virtual_clock_into_the_database(
    db: Database, broker: Broker, tmp_path: Path
) -> None:
    settings, _ = _setup(db, broker, short=False)  # hourly timescales: default settings
    day = local_day(time.time(), OFF) - 1  # yesterday, local time
    start = day_start(day, OFF) + 5 * 3600.0  # 05:00: in bed, and stays there until 09:30
    lines = []

    def record(channel: str, payload: bytes, t: float) -> None:
        lines.append(
            orjson.dumps(
                {"topic": _topic(BED, channel), "payload": orjson.loads(payload), "received_at": t}
            )
        )

    record("event", p.encode_event(BED, "e0", 0, int(start * 1000), event="bed_entry"), start)
    for k in range(1, 4 * 60 + 31):
        t = start + 60.0 * k
        record("telemetry", p.encode_heartbeat(BED, f"h{k}", k, int(t * 1000)), t)
    path = tmp_path / "morning.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    store = PostgresStore(settings.database)
    try:
        result = replay(
            path, settings.analysis.model_copy(update={"check_interval_s": 10.0}), store
        )
    finally:
        store.close()
    assert result.messages == len(lines) and not result.rejected
    rows = _rows(db, "not_up")
    assert len(rows) == 1
    subject, resolved, _, device, _, started, reason = rows[0]
    assert (subject, resolved, device) == ("site-a-r0", False, BED)
    # cold start (care level 2): expected up by 06:30, alert after 60 + 30 min: 08:00
    assert isinstance(started, datetime)
    assert started.timestamp() == day_start(day, OFF) + 8 * 3600.0
    assert "routine not learned yet" in str(reason)
    assert db.scalar("SELECT count(*) FROM detections WHERE NOT technical") == 1


def test_store_writes_once_and_loads_what_a_rebuild_needs(db: Database, broker: Broker) -> None:
    """The PostgreSQL store on its own: idempotent writes, open conditions, day rows, last
    receive times, and the recent streams a rebuild replays (windows and thinning)."""
    make_site(db, broker)
    now = time.time()
    with db.connect() as conn:

        def reading(dev: str, t: float, type_: str, **cols: object) -> None:
            names = ", ".join(["time", "device_id", "msg_id", "seq", "type", "received_at", *cols])
            marks = ", ".join(["to_timestamp(%s)"] + ["%s"] * 4 + ["to_timestamp(%s)"]
                              + ["%s"] * len(cols))  # fmt: skip
            conn.execute(
                f"INSERT INTO readings ({names}) VALUES ({marks})".encode(),
                (t, dev, f"{type_}-{t}", 1, type_, t + 0.1, *cols.values()),
            )

        reading(WEAR, now - 3 * 3600, "heartbeat", battery=70, worn=True)
        reading(WEAR, now - 2 * 3600, "steps", steps=12)
        reading(WEAR, now - 2 * 3600 - 60, "steps", steps=0)  # no activity: not replayed
        reading(WEAR, now - 3600, "hr", heart_rate=70)  # only replayed in the catch-up window
        minute = math.floor((now - 9000) / 60) * 60  # 2.5 h ago: one reading kept per minute
        for k, movement in enumerate((0.07, 0.09, 0.08)):
            reading(BED, minute + 5 + 10 * k, "vitals", presence=True, movement=movement)
        reading(BED, now - 30, "vitals", presence=True, movement=0.1, heart_rate=61)
        reading(WEAR, now - 25, "hr", heart_rate=72)
        for age, mid in ((10 * 3600, "old-press"), (60, "new-press")):
            conn.execute(
                "INSERT INTO device_events VALUES (to_timestamp(%s), %s, %s, 1, 'press', '{}', "
                "to_timestamp(%s))",
                (now - age, BUTTON, mid, now - age),
            )
        conn.execute(
            "INSERT INTO device_state VALUES (to_timestamp(%s), %s, 'will', 2, false, NULL, "
            "NULL, NULL, to_timestamp(%s))",
            (now - 10, BUTTON, now - 10),  # its last will, after its last press
        )
        samples = (np.tile([0, 1000, 0], (50, 1))).astype("<i2").tobytes()
        conn.execute(
            "INSERT INTO accel VALUES (to_timestamp(%s), %s, 'acc', 3, 50, 50, %s, "
            "to_timestamp(%s))",
            (now - 20, WEAR, samples, now - 19),
        )
    dbs = DatabaseSettings(
        host="127.0.0.1", port=db.port, name=db.name, user=db.user, password=db.password
    )
    store = PostgresStore(dbs)
    try:
        base = DetectionRecord(
            kind=DetectionKind.DEVICE_OFFLINE, subject=BUTTON, condition="", time=now - 100,
            started=now - 200, resolved=False, reason="silent", details={"deadline_s": 5.0},
            site_id=SITE, device_id=BUTTON,
        )  # fmt: skip
        high = "heart_rate_high"
        vitals = replace(base, kind=DetectionKind.VITALS_ABNORMAL, subject="site-a-r0",
                         condition=high, details={"condition": high})  # fmt: skip
        fall = replace(base, kind=DetectionKind.FALL, subject="site-a-r0")
        back = replace(base, time=now - 50, resolved=True, reason="back")
        assert store.write([base, vitals, fall], [], []) == 3
        assert store.write([base, fall, back], [], []) == 1  # computed again: stored once
        yesterday = local_day(now, OFF) - 1
        summary = DaySummary(yesterday, 6.5 * 3600, 21.5 * 3600, (1.0,) * 24)
        hist = VitalsDay("site-a-r0", yesterday, (0,) * 60 + (5,) + (0,) * 195, (0,) * 64)
        store.write([], [RoutineDay("site-a-r0", summary)], [hist])
        store.write([], [RoutineDay("site-a-r0", replace(summary, rise_s=7 * 3600.0))], [hist])
        state = store.load(now, AnalysisSettings())
    finally:
        store.close()
    assert {r.kind for r in state.open_detections} == {DetectionKind.VITALS_ABNORMAL}
    assert state.open_detections[0].condition == "heart_rate_high"
    assert db.scalar("SELECT count(*) FROM detections WHERE closed_at IS NOT NULL") == 2
    assert state.routine_days["site-a-r0"] == [replace(summary, rise_s=7 * 3600.0)]
    assert list(state.vitals_days) == [hist]
    assert set(state.registry.devices) == {BED, WEAR, BUTTON}
    assert state.registry.residents["site-a-r0"].care_level == 2
    assert state.registry.utc_offset(SITE) == OFF
    assert state.devices[BUTTON].offline and not state.devices[WEAR].offline
    assert state.devices[BUTTON].last_seen == pytest.approx(now - 10, abs=1e-3)
    assert state.devices[WEAR].last_seen == pytest.approx(now - 25 + 0.1, abs=1e-3)
    kinds = [(sm.device.device_id, sm.message.envelope.type) for sm in state.history]
    assert kinds == [
        (BUTTON, "press"),  # 10 h ago: the routine sees activity; no alarm (before catch-up)
        (WEAR, "heartbeat"),
        (BED, "vitals"),  # the minute with three readings, thinned to one (max movement)
        (WEAR, "steps"),
        (BUTTON, "press"),
        (BED, "vitals"),
        (WEAR, "hr"),
        (WEAR, "accel"),
        (BUTTON, "offline"),
    ]
    assert [sm.received_at >= state.catch_up_from for sm in state.history] == [
        False, False, False, False, True, True, True, True, True,
    ]  # fmt: skip
    thinned = state.history[2].message
    assert isinstance(thinned, p.Reading) and thinned.movement == pytest.approx(0.09)
    assert thinned.envelope.ts == pytest.approx(minute + 25, abs=1e-3)
    accel = state.history[-2].message
    assert isinstance(accel, p.AccelBatch) and accel.samples.shape == (50, 3)
    assert float(accel.samples[0, 1]) == 1.0
