"""The fault matrix (issue 9 §6): one fault at a time against the real system, with a ledger.

Each test runs one fault of :mod:`tests.faultkit.matrix` — the gateway as its own process
behind TCP proxies, a real Mosquitto and PostgreSQL/TimescaleDB, a scripted fleet sending
sequence-numbered alarms and telemetry — and passes only with 0 lost alarms, 0 duplicate
incidents, every alarm incident paged, and the fault's own checks. Each prints its line
(recovery time and books); ``bench/faults.py`` runs the same functions. See
``docs/fault-matrix.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faultkit.ledger import FaultResult
from tests.faultkit.matrix import Env, run_fault
from tests.faultkit.stack import ServerPool
from tests.support import Broker, Database

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

VOLUME_MB = 192


@pytest.fixture(scope="module")
def fault_pool(services_root: Path) -> Iterator[ServerPool]:
    """The faults' own PostgreSQL (stopped, filled): tables and WAL on a small tmpfs."""
    pool = ServerPool(services_root / "faults-pg", tmpfs_mb=VOLUME_MB).start()
    yield pool
    pool.close()


@pytest.fixture
def pool_db(fault_pool: ServerPool) -> Iterator[Database]:
    if not fault_pool.server.running():
        fault_pool.server.start()
    database = fault_pool.database()
    yield database
    fault_pool.drop(database)


def _check(result: FaultResult) -> None:
    print(result.line())  # the fault's line: recovery time and books (pytest -s shows it)
    assert result.passed, result.explain()
    assert not result.report.lost and not result.report.duplicates


def test_gateway_kill_9_with_a_long_downtime(db: Database, broker: Broker, tmp_path: Path) -> None:
    _check(run_fault("gateway_kill", Env(tmp_path, db, broker)))


def test_postgres_down(
    pool_db: Database, fault_pool: ServerPool, broker: Broker, tmp_path: Path
) -> None:
    _check(run_fault("postgres_down", Env(tmp_path, pool_db, broker, fault_pool)))


def test_broker_restart(db: Database, broker: Broker, tmp_path: Path) -> None:
    _check(run_fault("broker_restart", Env(tmp_path, db, broker)))


def test_partition_gateway_broker(db: Database, broker: Broker, tmp_path: Path) -> None:
    _check(run_fault("partition_broker", Env(tmp_path, db, broker)))


def test_partition_gateway_database(db: Database, broker: Broker, tmp_path: Path) -> None:
    _check(run_fault("partition_database", Env(tmp_path, db, broker)))


def test_database_volume_full(
    pool_db: Database, fault_pool: ServerPool, broker: Broker, tmp_path: Path
) -> None:
    _check(run_fault("volume_full", Env(tmp_path, pool_db, broker, fault_pool)))


def test_device_and_gateway_clocks_off_by_an_hour(
    db: Database, broker: Broker, tmp_path: Path
) -> None:
    _check(run_fault("clocks", Env(tmp_path, db, broker)))


def test_out_of_order_and_replayed_backlog(db: Database, broker: Broker, tmp_path: Path) -> None:
    _check(run_fault("backlog", Env(tmp_path, db, broker)))


def test_one_device_flooding(db: Database, broker: Broker, tmp_path: Path) -> None:
    _check(run_fault("flood", Env(tmp_path, db, broker)))


def test_notifier_failing_with_5xx_and_timeouts(
    db: Database, broker: Broker, tmp_path: Path
) -> None:
    _check(run_fault("notifier_failing", Env(tmp_path, db, broker)))


def test_silent_device_and_dropped_connection(db: Database, broker: Broker, tmp_path: Path) -> None:
    _check(run_fault("silent_device", Env(tmp_path, db, broker)))
