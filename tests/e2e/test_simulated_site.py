"""Simulator → broker → gateway → TimescaleDB: what was sent is what is stored, exactly."""

from __future__ import annotations

import asyncio

import pytest

from devices.protocol import RowKind
from devices.simulator import SimulationConfig, run_simulation
from tests.support import (
    Broker,
    Database,
    InProcessGateway,
    gateway_settings,
    make_site,
    manifest_for,
    wait_until,
)

pytestmark = pytest.mark.e2e

TABLES = {
    RowKind.READINGS: "readings",
    RowKind.ACCEL: "accel",
    RowKind.EVENTS: "device_events",
    RowKind.STATE: "device_state",
}


def test_fifty_devices_for_sixty_seconds_are_stored_exactly(db: Database, broker: Broker) -> None:
    creds = make_site(db, broker, beds=25, wearables=True, buttons=False)
    assert len(creds) == 50
    settings = gateway_settings(db, broker)
    with InProcessGateway(settings):
        report = asyncio.run(
            run_simulation(
                SimulationConfig(manifest=manifest_for(creds, broker), duration_s=60,
                                 heartbeat_s=20, settle_s=5)
            )
        )  # fmt: skip
        expected = report.expected_rows
        assert sum(report.unconfirmed.values()) == 0
        assert expected[RowKind.READINGS] >= 25 * 55  # 1 Hz vitals from 25 bed sensors
        assert expected[RowKind.ACCEL] >= 25 * 55  # 1 s batches from 25 wearables

        def stored() -> dict[RowKind, int]:
            return {k: int(db.scalar(f"SELECT count(*) FROM {t}")) for k, t in TABLES.items()}

        wait_until(lambda: stored() == {k: expected.get(k, 0) for k in TABLES}, 30,
                   f"stored rows to equal {expected}")  # fmt: skip
    assert db.scalar("SELECT count(*) FROM dead_letters") == 0
    # Every accelerometer batch holds its 50 samples at 50 Hz.
    assert db.rows("SELECT DISTINCT n, fs FROM accel") == [(50, 50.0)]
