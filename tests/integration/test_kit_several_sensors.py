"""Several motion sensors and door contacts in one home (real PostgreSQL and Mosquitto).

``bind_device`` lets a resident (or a bed) have several motion sensors and door contacts;
every other kind stays one per resident and per bed (a second smoke detector, a second
button are refused with the hint). Through the hub, the back door's opening clears the
home's "door not opened for days" raised while the front door stayed shut.
"""

from __future__ import annotations

import time

import pytest

from devices import protocol as p
from gateway import commissioning as com
from gateway.errors import ConflictError
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


def _register(db: Database, kind: str, serial: str, hub: str | None = None) -> str:
    return register_kit_device(db, kind, serial, hub)[0]


def _bind(db: Database, dev: str, *, bed: str | None = None, resident: str | None = None) -> None:
    with db.connect() as conn:
        com.bind_device(conn, com.find_device(conn, dev), bed, resident, "site-a-l0")


def test_a_home_binds_several_motion_sensors_and_doors_and_any_door_counts(
    db: Database, broker: Broker
) -> None:
    make_site(db, broker, wearables=False)
    hub, hub_pw = register_kit_device(db, "home_hub", "HM1")
    pirs = [_register(db, "motion_sensor", f"PM{i}", hub=hub) for i in (1, 2)]
    front, back = (_register(db, "door_contact", f"DM{i}", hub=hub) for i in (1, 2))
    for dev in (*pirs, front, back):
        _bind(db, dev, resident="site-a-r0")
    second_bed_pir = _register(db, "motion_sensor", "PM3", hub=hub)
    _bind(db, second_bed_pir, bed="site-a-b0")  # per bed too
    smoke = [_register(db, "smoke_detector", f"SM{i}", hub=hub) for i in (1, 2)]
    _bind(db, smoke[0], resident="site-a-r0")
    with pytest.raises(ConflictError, match="already has a smoke_detector") as refused:
        _bind(db, smoke[1], resident="site-a-r0")
    assert "unbind it first" in str(refused.value.hint)
    button = _register(db, "button", "BM2")
    with pytest.raises(ConflictError, match="the bed already has a button"):
        _bind(db, button, bed="site-a-b0")  # make_site's button holds the bed
    assert db.rows(
        "SELECT kind, count(*) FROM devices WHERE resident_id = 'site-a-r0' GROUP BY kind "
        "ORDER BY kind"
    ) == [("door_contact", 2), ("motion_sensor", 2), ("smoke_detector", 1)]
    broker.sync(db)

    settings = gateway_settings(
        db, broker,
        SAFEHOME_KIT__DOOR_UNUSED_DAYS=str(2.0 / 86400),  # two seconds
        SAFEHOME_ANALYSIS__CHECK_INTERVAL_S="0.2",
    )  # fmt: skip

    def send(dev: str, msg_id: str, type_: str) -> None:
        raw = p.encode_event(dev, msg_id, 1, int(time.time() * 1000), event=type_)
        client.publish(f"{PREFIX}/v1/site-a/{dev}/event", raw)

    def door_unused(resolved: bool) -> int:
        return int(
            db.scalar(
                "SELECT count(*) FROM detections WHERE kind = 'door_unused' AND resolved = %s",
                (resolved,),
            )
        )

    with InProcessGateway(settings), DeviceClient(broker.port, hub, hub_pw) as client:
        send(front, "front-open", "open")
        send(front, "front-close", "close")
        send(pirs[1], "pir2-motion", "motion")  # inside: the bedroom sensor
        wait_until(lambda: door_unused(False) == 1, 20, "door not opened for days")
        send(back, "back-open", "open")  # out through the back door
        wait_until(lambda: door_unused(True) == 1, 20, "cleared by the back door")
        rows = db.rows(
            "SELECT subject, resident_id FROM detections WHERE kind = 'door_unused' ORDER BY id"
        )
        assert rows == [("site-a-r0", "site-a-r0")] * 2  # one home
        assert db.scalar("SELECT count(*) FROM incidents WHERE type = 'door_unused'") == 1
