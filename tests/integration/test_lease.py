"""The gateway lease (gateway.lease) against the real database, two holders in one process
with short timings: mutual exclusion, hand-over on release, a silent holder's sessions
ended and the holder fenced when it wakes. The process-level scenarios (kill -9, SIGSTOP,
partition) are in test_failover.py."""

from __future__ import annotations

import threading

import psycopg
import pytest

from gateway.lease import Lease, instance_name
from gateway.mqttsession import MqttSession
from gateway.settings import FailoverSettings
from tests.support import Broker, Database, gateway_settings, wait_until

pytestmark = pytest.mark.integration

FAST = FailoverSettings(check_interval_s=0.2, lease_ttl_s=0.6, takeover_after_s=1.2)


def _lease(db: Database, lost: list[str]) -> Lease:
    return Lease(FAST, db.conninfo(), instance_name("safehome-test"), on_lost=lost.append)


def test_one_holder_at_a_time_and_hand_over_on_release(db: Database) -> None:
    lost: list[str] = []
    a, b = _lease(db, lost), _lease(db, lost)
    try:
        assert a.acquire_once() and a.token == 1
        a.start_guard()
        assert a.valid()
        assert not b.acquire_once()  # held, and the heartbeat is fresh: nobody is ended
        wait_until(
            lambda: db.scalar("SELECT heartbeat_at > acquired_at FROM gateway_lease"),
            5, "a renewal",
        )  # fmt: skip
        assert not b.acquire_once()
        a.release()
        assert not a.valid()
        assert b.acquire_once() and b.token == 2  # the fencing token moves on
        holder = db.rows("SELECT holder, token FROM gateway_lease")
        assert holder == [(b.holder, 2)]
        assert lost == []  # a clean release is not a loss
    finally:
        a.release()
        b.release()


def test_silent_holder_is_ended_and_fenced_when_it_wakes(db: Database) -> None:
    lost_a: list[str] = []
    a, b = _lease(db, lost_a), _lease(db, [])
    # Another connection of the same process (a worker's), named like all of them.
    worker = psycopg.connect(db.conninfo() + f" application_name={a.holder}", autocommit=True)
    try:
        assert a.acquire_once()  # and then never renews: frozen
        assert not b.acquire_once()
        wait_until(b.acquire_once, 10, "the standby's takeover", step_s=0.2)
        assert b.token == 2
        with pytest.raises(psycopg.OperationalError):
            worker.execute("SELECT 1")  # its transactions can no longer commit
        assert not a.valid()  # past its deadline already
        a.start_guard()  # it wakes: the first check fences it
        wait_until(lambda: bool(lost_a), 5, "the old holder fenced")
        assert len(lost_a) == 1
        b.start_guard()
        assert b.valid()
    finally:
        worker.close()
        a.release()
        b.release()


def test_a_holder_whose_lease_session_ended_cannot_confirm(db: Database) -> None:
    """What the MQTT session asks before reconnecting: the lease session was ended (a
    standby took over, an administrator, a cut link), so the holder is fenced at once."""
    lost: list[str] = []
    a = _lease(db, lost)
    try:
        assert a.acquire_once()
        assert a.confirm() and a.valid()
        ended = db.scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 2000)) "
            "FROM pg_stat_activity WHERE application_name = %s",
            (a.holder,),
        )
        assert ended == 1
        assert not a.confirm()
        assert not a.valid() and len(lost) == 1 and "renewal failed" in lost[0]
    finally:
        a.release()


@pytest.mark.parametrize("client", ["native", "paho"])
def test_mqtt_session_connects_only_once_allowed(db: Database, broker: Broker, client: str) -> None:
    settings = gateway_settings(db, broker, SAFEHOME_MQTT__CLIENT=client)
    allowed = threading.Event()
    asked: list[bool] = []

    def gate() -> bool:
        asked.append(allowed.is_set())
        return allowed.is_set()

    session = MqttSession(settings.mqtt, lambda rec: None, ["shg/v1/+/+/+"], may_connect=gate)
    session.start()
    try:
        wait_until(lambda: len(asked) >= 2, 10, "the gate asked")
        assert not session.connected.is_set()
        allowed.set()
        wait_until(session.connected.is_set, 10, "connected once allowed")
        assert asked[-1] is True
    finally:
        session.stop()


def test_failover_timings_must_leave_the_holder_time_to_fence_itself() -> None:
    with pytest.raises(ValueError, match="takeover_after_s"):
        FailoverSettings(check_interval_s=1, lease_ttl_s=4, takeover_after_s=5)
    with pytest.raises(ValueError, match="lease_ttl_s"):
        FailoverSettings(check_interval_s=1, lease_ttl_s=1.5, takeover_after_s=10)
