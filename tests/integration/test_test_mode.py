# ruff: noqa: F811 - fixtures imported from other test modules are parameters here
"""Test mode never silences a resident (issue 10 §5), through the real broker, ingest,
analysis, intake, API and PostgreSQL.

* the press the test waits for is a test observation; test mode ends with it (audited);
  the next press of the same button is a real incident;
* the console's ``/test-mode`` lists the bed under test with its deadline while the test
  waits (staff of the site; not another site's);
* starting and finishing a test are audited; tests longer than 10 minutes are refused.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from analytics.types import DetectionKind
from gateway import acceptance
from gateway.analysis import DetectionRecord
from gateway.commissioning import apply_site_definition, find_device
from gateway.escalation import intake
from tests.integration.test_installer_api import (  # noqa: F401 - the fixture
    Inst,
    _open_incidents,
    _press,
    _progress,
    _site_a_password,
    _user_id,
    inst,
)
from tests.support import Database, wait_until

pytestmark = pytest.mark.integration


def _audit(inst: Inst, target: str) -> list[tuple[Any, ...]]:
    return inst.db.rows(
        "SELECT actor, action, data->>'test_id' FROM audit_log WHERE target = %s "
        "AND action LIKE 'device.test.%%' ORDER BY seq",
        (target,),
    )


def test_a_press_that_is_not_the_awaited_step_raises_a_real_incident(inst: Inst) -> None:
    port = inst.broker.port
    pw = _site_a_password(inst, "site-a-bt0")
    installer = _user_id(inst.db, "inst-a")
    with inst.client("installer") as c:
        assert c.post("/devices/site-a-bt0/acceptance", json={"timeout_s": 601}).status_code == 422
        start = c.post("/devices/site-a-bt0/acceptance", json={"timeout_s": 600})
        assert start.status_code == 201, start.text
        test_id = start.json()["test_id"]
        with inst.client("duty_staff") as staff:
            banner = staff.get("/test-mode").json()
            assert [(b["test_id"], b["device_id"], b["bed_code"]) for b in banner] == [
                (test_id, "site-a-bt0", "BED-site-a-0000")]  # fmt: skip
            assert 590 <= banner[0]["remaining_s"] <= 600 and banner[0]["location"]
            assert staff.get("/test-mode?site=site-b").status_code == 403
        with inst.client("installer_b") as other:
            assert other.get("/test-mode").json() == []
        # The installer's press: the awaited step, a test observation, and test mode ends.
        _press(port, "site-a-bt0", pw, "site-a", "t-1")
        wait_until(lambda: _progress(c, test_id)["observations"] != [], 15, "observation")
        view = _progress(c, test_id)
        assert view["test_mode"] is False and view["steps_done_at"] is not None
        assert view["status"] == "passed"
        assert _open_incidents(inst.db, "site-a-r0") == []
        with inst.client("duty_staff") as staff:
            assert staff.get("/test-mode").json() == []
        # The resident presses while the test is still open: a real call for help.
        _press(port, "site-a-bt0", pw, "site-a", "resident-1")
        wait_until(lambda: len(_open_incidents(inst.db, "site-a-r0")) == 1, 15, "real incident")
        assert len(_progress(c, test_id)["observations"]) == 1
        rec = c.post(f"/acceptance/{test_id}/finish", json={"notes": "ok"}).json()
        assert rec["result"] == "passed"
    assert _audit(inst, "device:site-a-bt0") == [
        (installer, "device.test.start", test_id),
        ("system", "device.test.steps_done", test_id),
        (installer, "device.test.finish", test_id),
    ]


def test_a_bed_under_test_raises_real_incidents_from_other_devices_and_alarms(
    inst: Inst,
) -> None:
    """A button bound to the bed of a bed sensor under test is not silenced either."""
    port = inst.broker.port
    pw = _site_a_password(inst, "site-a-bt1")
    with inst.client("installer") as c:
        bed_test = c.post("/devices/site-a-bs1/acceptance", json={"timeout_s": 300}).json()
        _press(port, "site-a-bt1", pw, "site-a", "resident-2")
        wait_until(lambda: len(_open_incidents(inst.db, "site-a-r1")) == 1, 15, "real incident")
        assert _progress(c, bed_test["test_id"])["observations"] == []
        aborted = c.post(f"/acceptance/{bed_test['test_id']}/finish", json={"abort": True})
        assert aborted.json()["result"] == "aborted"
    assert [a[1] for a in _audit(inst, "device:site-a-bs1")] == [
        "device.test.start", "device.test.finish"]  # fmt: skip


# -- the intake's rule, batch by batch (no broker) -------------------------------------------


def _site(db: Database) -> None:
    definition = {
        "site": {"id": "s1", "name": "S1", "kind": "nursing_home"},
        "locations": [{"id": "l1", "kind": "room", "label": "Room 1"}],
        "beds": [{"id": "b1", "code": "BED-0001", "location": "l1"}],
        "residents": [{"id": "r1", "code": "ELD-0001", "name": "R", "bed": "b1", "care_level": 2}],
        "devices": [
            {"id": "bt1", "kind": "button", "model": "BT1", "serial": "bt1", "bed": "b1",
             "location": "l1"},
            {"id": "wr1", "kind": "wearable", "model": "WR1", "serial": "wr1", "resident": "r1",
             "location": "l1"},
        ],
    }  # fmt: skip
    with db.connect() as conn:
        apply_site_definition(conn, definition)


def _rec(kind: DetectionKind, device: str, t: float) -> DetectionRecord:
    return DetectionRecord(
        kind=kind, subject="r1", condition="", time=t, started=round(t, 3), resolved=False,
        reason="test", details={}, site_id="s1", resident_id="r1", device_id=device,
    )  # fmt: skip


def _store(db: Database, records: list[DetectionRecord]) -> None:
    with db.connect() as conn, conn.transaction():
        intake.on_detections_stored(conn, records)


def _counts(db: Database, test_id: str) -> tuple[int, int]:
    incidents = int(db.scalar("SELECT coalesce(sum(trigger_count), 0) FROM incidents"))
    observed = int(db.scalar(
        "SELECT count(*) FROM acceptance_observations WHERE test_id = %s", (test_id,)))  # fmt: skip
    return incidents, observed


def _start(db: Database, device: str) -> str:
    with db.connect() as conn:
        return acceptance.start_test(conn, find_device(conn, device), "u-inst", 300)


def test_only_the_awaited_step_is_diverted(db: Database) -> None:
    _site(db)
    test_id = _start(db, "bt1")
    now = time.time()
    # A press from before the test (a device that was offline, now delivering): real.
    _store(db, [_rec(DetectionKind.EMERGENCY_CALL, "bt1", now - 60)])
    assert _counts(db, test_id) == (1, 0)
    # Two presses in one batch: the first is the step, the second is real.
    _store(db, [_rec(DetectionKind.EMERGENCY_CALL, "bt1", now + 1),
                _rec(DetectionKind.EMERGENCY_CALL, "bt1", now + 2)])  # fmt: skip
    assert _counts(db, test_id) == (2, 1)
    assert db.scalar("SELECT steps_done_at IS NOT NULL FROM acceptance_tests") is True


def test_a_wearable_under_test_diverts_its_first_fall_only(db: Database) -> None:
    _site(db)
    test_id = _start(db, "wr1")
    now = time.time()
    _store(db, [_rec(DetectionKind.NOT_WORN, "wr1", now + 1)])  # not a step: real
    assert _counts(db, test_id) == (1, 0)
    _store(db, [_rec(DetectionKind.FALL, "wr1", now + 2)])  # the motion step
    assert _counts(db, test_id) == (1, 1)
    _store(db, [_rec(DetectionKind.FALL, "wr1", now + 3)])  # test mode is over: real
    assert _counts(db, test_id) == (2, 1)
    with db.connect() as conn:
        assert acceptance.active_tests(conn, "s1") == []
