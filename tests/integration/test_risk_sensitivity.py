"""Risk categories set the detection sensitivity (issue 13 §1), end to end on the real
database: a supervisor's category (``resident_risks``) is loaded with the registry, and the
analysis runner, given ``config/visits.toml``'s ``[sensitivity]``, raises the no-activity
alert of a high-risk elder earlier than that of a default elder fed the very same stream
(virtual clock; the detections stored in PostgreSQL)."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from analytics.routine import day_start, local_day
from analytics.types import DetectionKind
from gateway.analysis import AnalysisRunner, PostgresStore
from gateway.ingest import StoredMessage
from gateway.replay import VirtualClock
from gateway.settings import AnalysisSettings
from gateway.storage import visits as visits_store
from gateway.storage.analysis import load_registry
from gateway.visits.config import load_visits_config
from tests.support import Broker, Database, gateway_settings, make_site
from tests.unit.test_analysis_runner import Stream

pytestmark = pytest.mark.integration

OFF = 8 * 3600.0
H = 3600.0
BEDS = {"site-a-r0": "site-a-bs0", "site-a-r1": "site-a-bs1"}


def test_a_high_risk_elder_gets_the_no_activity_alert_earlier(db: Database, broker: Broker) -> None:
    make_site(db, broker, beds=2, wearables=False, buttons=False)
    with db.connect() as conn:
        visits_store.set_risks(conn, "site-a-r0", ["high_risk"])  # r1: no category
        registry = load_registry(conn)
    assert registry.residents["site-a-r0"].categories == frozenset({"high_risk"})
    assert registry.residents["site-a-r1"].categories == frozenset()
    sensitivity = load_visits_config().sensitivity
    assert sensitivity["high_risk"].no_activity_factor < 1.0

    day = local_day(time.time(), OFF) - 1  # yesterday, site time
    morning = day_start(day, OFF) + 5 * H  # 05:00
    settings = gateway_settings(db, broker)
    store = PostgresStore(settings.database)
    clock = VirtualClock(morning)
    runner = AnalysisRunner(
        AnalysisSettings.model_validate({"check_interval_s": 60.0}), store, clock=clock,
        sensitivity=sensitivity,
    )  # fmt: skip
    stream = Stream(registry)
    # The same morning for both: in bed at 05:01, up at 06:00 (before any not-up deadline),
    # then no activity at all; the bed sensor keeps reporting (heartbeats every minute).
    messages: list[StoredMessage] = []
    for bed in BEDS.values():
        messages.append(stream.event(bed, morning + 60, "bed_entry"))
        messages.append(stream.event(bed, morning + H, "bed_exit"))
        messages += [stream.heartbeat(bed, morning + 60 * k) for k in range(2, 8 * 60)]
    messages.sort(key=lambda m: m.received_at)
    try:
        runner.rebuild()
        i = 0
        while clock.now < morning + 8 * H:  # until 13:00
            clock.now += 60.0
            while i < len(messages) and messages[i].received_at <= clock.now:
                runner.feed([messages[i]])
                i += 1
            runner.advance()
        runner.flush(force=True)
    finally:
        store.close()

    rows = db.rows(
        "SELECT subject, time, details FROM detections WHERE kind = %s AND NOT resolved "
        "ORDER BY time",
        (DetectionKind.NO_ACTIVITY.value,),
    )
    first: dict[str, datetime] = {}
    limits: dict[str, float] = {}
    for subject, at, details in rows:
        first.setdefault(str(subject), at)
        limits.setdefault(str(subject), float(details["limit_s"]))
    assert set(first) == set(BEDS), rows
    # care level 2: 5 h of waking time; high risk (factor 0.6): 3 h
    assert limits["site-a-r1"] == 5 * H
    assert limits["site-a-r0"] == pytest.approx(5 * H * sensitivity["high_risk"].no_activity_factor)
    earlier = (first["site-a-r1"] - first["site-a-r0"]).total_seconds()
    assert earlier == pytest.approx(5 * H - limits["site-a-r0"], abs=120.0)
    assert not db.rows("SELECT 1 FROM detections WHERE kind = 'not_up'")
