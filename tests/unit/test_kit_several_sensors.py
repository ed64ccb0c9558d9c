"""A home with several motion sensors and door contacts: any of them is activity, and each
door is tracked on its own (a back door closing does not close the open front door)."""

from __future__ import annotations

from analytics.types import DetectionKind
from devices.protocol import DeviceKind
from gateway.analysis import RegistrySnapshot
from gateway.commissioning import SEVERAL_PER_HOME
from gateway.registry import DeviceInfo
from tests.unit.test_analysis_runner import SITE, make_rig
from tests.unit.test_home_activity import (
    M,
    day,
    kit_registry,
    learned,
    raised,
    routine_day,
    run,
)


def test_a_back_door_closing_leaves_the_front_door_open_at_night() -> None:
    ha = learned()
    feed = [*routine_day(8)]
    run(ha, day(9, 2), day(8, 0), feed)
    ha.on_door(day(9, 2) + 14 * M, True, "front")  # opened at 02:14, left open
    ha.on_door(day(9, 2) + 15 * M, True, "back")
    ha.on_door(day(9, 2) + 16 * M, False, "back")  # only the back door closes
    found = raised(run(ha, day(9, 3), day(9, 2) + 17 * M))
    assert [d.kind for d in found] == [DetectionKind.DOOR_OPEN_AT_NIGHT]
    assert "front door opened at 02:14 and not closed" in found[0].reason
    ha.on_door(day(9, 3.1), False, "front")
    closed = run(ha, day(9, 3.2), day(9, 3.15))
    assert [(d.kind, d.resolved) for d in closed] == [(DetectionKind.DOOR_OPEN_AT_NIGHT, True)]


def _two_of_each() -> RegistrySnapshot:
    reg = kit_registry()
    devices = dict(reg.devices)
    for dev, kind in (("pir2", DeviceKind.MOTION_SENSOR), ("door2", DeviceKind.DOOR_CONTACT)):
        devices[dev] = DeviceInfo(dev, SITE, kind, "home1", None, "r1", None)
    return RegistrySnapshot(devices, reg.residents, reg.utc_offsets)


def test_motion_from_either_sensor_is_the_home_s_activity() -> None:
    """A learned routine on the living-room PIR; on day 7 the elder is only seen by the
    bedroom PIR: no "no activity", one home; without it the silence is raised."""
    t0 = day(0, 6)
    for second_sensor_sees_her in (True, False):
        rig = make_rig(t0, registry=_two_of_each(), tune={"check_interval_s": 60.0})
        s = rig.stream
        msgs = []
        for d in range(7):
            t = day(d, 7)
            while t <= day(d, 21.5):
                msgs.append(s.event("pir1", t, "motion"))
                t += 30 * M
        t = day(7, 7)
        while t <= day(7, 18):  # day 7: she stays in the bedroom
            if second_sensor_sees_her:
                msgs.append(s.event("pir2", t, "motion"))
            t += 30 * M
        t = t0
        while t < day(7, 18):
            msgs += [s.heartbeat("hub1", t), s.heartbeat("pir1", t + 1), s.heartbeat("pir2", t + 2)]
            t += 5 * M
        rig.run(day(7, 18), msgs, step=60.0)
        care = [(r.kind, r.subject) for r in rig.store.detections
                if not r.resolved and not r.technical and r.started >= day(7, 0)]  # fmt: skip
        if second_sensor_sees_her:
            assert care == [], care
        else:
            assert care == [(DetectionKind.NOT_UP, "r1")], care  # one home, both sensors


def test_only_motion_sensors_and_door_contacts_may_be_several() -> None:
    assert frozenset({"motion_sensor", "door_contact"}) == SEVERAL_PER_HOME
