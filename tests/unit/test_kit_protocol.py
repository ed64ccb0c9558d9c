"""Protocol v1 kinds of the safe-home kit: golden payloads, rejects, commands, hub ACL."""

from __future__ import annotations

from typing import Any

import pytest

from devices.mqttcodec import Received
from devices.protocol import (
    ALARM_EVENT_TYPES,
    HUB_CHILD_KINDS,
    KIT_KINDS,
    Channel,
    DeviceKind,
    Envelope,
    Event,
    Message,
    ProtocolError,
    Reading,
    RejectReason,
    State,
    Topic,
    command_topic,
    decode,
    decode_command,
    encode,
    encode_command,
    encode_occupancy,
    message_types,
    parse_topic,
)
from gateway.brokerauth import DeviceAccount, ServiceAccount, render_acl, render_password_file
from gateway.ingest_rows import alarm_with_wrong_clock
from gateway.kit.hubs import with_hubs
from gateway.registry import DeviceInfo
from gateway.storage.kit import KitDevice

NOW = 1_767_225_600.0
TS = 1_767_225_599_250
SITE = "hz-xihu-01"
E, T, S = Channel.EVENT, Channel.TELEMETRY, Channel.STATE
DOOR, PIR = DeviceKind.DOOR_CONTACT, DeviceKind.MOTION_SENSOR
SMOKE, GAS, LEAK, HUB = (
    DeviceKind.SMOKE_DETECTOR,
    DeviceKind.GAS_DETECTOR,
    DeviceKind.WATER_LEAK,
    DeviceKind.HOME_HUB,
)


def env(device: str, channel: Channel, type_: str) -> Envelope:
    return Envelope(SITE, device, channel, "m1", 7, TS / 1000.0, type_)


def head(device: str, type_: str) -> str:
    return f'"v":1,"dev":"{device}","id":"m1","seq":7,"ts":{TS},"type":"{type_}"'


def dec(device: str, channel: Channel, kind: DeviceKind, payload: str) -> Message:
    return decode(Topic("shg", SITE, device, channel), payload.encode(), kind, now=NOW)


def ev(device: str, type_: str, **data: Any) -> Event:
    return Event(env(device, E, type_), data)


# (device, channel, kind, payload, expected): the wire texts of docs/device-protocol.md
GOLDEN: list[tuple[str, Channel, DeviceKind, str, Message]] = [
    ("door-1", E, DOOR, "{" + head("door-1", "open") + "}", ev("door-1", "open")),
    ("door-1", E, DOOR, "{" + head("door-1", "close") + "}", ev("door-1", "close")),
    ("door-1", E, DOOR, "{" + head("door-1", "tamper") + "}", ev("door-1", "tamper")),
    (
        "pir-1",
        E,
        PIR,
        "{" + head("pir-1", "motion") + ',"holdoff_s":60}',
        ev("pir-1", "motion", holdoff_s=60),
    ),
    (
        "pir-1",
        T,
        PIR,
        "{" + head("pir-1", "occupancy") + ',"count":4,"interval_s":900}',
        Reading(env("pir-1", T, "occupancy"), steps=4, interval_s=900),
    ),
    ("smoke-1", E, SMOKE, "{" + head("smoke-1", "alarm") + "}", ev("smoke-1", "alarm")),
    ("smoke-1", E, SMOKE, "{" + head("smoke-1", "test") + "}", ev("smoke-1", "test")),
    ("smoke-1", E, SMOKE, "{" + head("smoke-1", "clear") + "}", ev("smoke-1", "clear")),
    (
        "gas-1",
        E,
        GAS,
        "{" + head("gas-1", "alarm") + ',"level":"high","lel_pct":25}',
        ev("gas-1", "alarm", level="high", lel_pct=25),
    ),
    ("gas-1", E, GAS, "{" + head("gas-1", "clear") + "}", ev("gas-1", "clear")),
    (
        "gas-1",
        E,
        GAS,
        "{" + head("gas-1", "valve_shut") + ',"cause":"command","cmd_id":"c-1"}',
        ev("gas-1", "valve_shut", cause="command", cmd_id="c-1"),
    ),
    ("leak-1", E, LEAK, "{" + head("leak-1", "leak") + "}", ev("leak-1", "leak")),
    ("leak-1", E, LEAK, "{" + head("leak-1", "dry") + "}", ev("leak-1", "dry")),
    (
        "leak-1",
        E,
        LEAK,
        "{" + head("leak-1", "low_battery") + ',"battery":9}',
        ev("leak-1", "low_battery", battery=9),
    ),
    (
        "smoke-1",
        T,
        SMOKE,
        "{" + head("smoke-1", "heartbeat") + ',"battery":88}',
        Reading(env("smoke-1", T, "heartbeat"), battery=88),
    ),
    (
        "hub-1",
        S,
        HUB,
        "{" + head("hub-1", "offline") + "}",
        State(env("hub-1", S, "offline"), False),
    ),
    (
        "door-1",
        S,
        DOOR,
        "{" + head("door-1", "online") + ',"battery":70,"rssi":-80}',
        State(env("door-1", S, "online"), True, 70, None, -80),
    ),
]


@pytest.mark.parametrize(
    ("device", "channel", "kind", "payload", "expected"),
    GOLDEN,
    ids=[f"{g[2].value}-{g[4].envelope.type}" for g in GOLDEN],
)
def test_golden_payloads_decode_and_round_trip(
    device: str, channel: Channel, kind: DeviceKind, payload: str, expected: Message
) -> None:
    msg = dec(device, channel, kind, payload)
    assert msg == expected
    assert dec(device, channel, kind, encode(msg).decode()) == expected


@pytest.mark.parametrize("kind", sorted(KIT_KINDS))
def test_every_kit_kind_has_heartbeat_battery_tamper_and_a_last_will(kind: DeviceKind) -> None:
    assert "heartbeat" in message_types(kind, T)
    assert {"tamper", "low_battery"} <= message_types(kind, E)
    assert {"online", "offline"} == message_types(kind, S)


@pytest.mark.parametrize(
    ("kind", "payload", "reason"),
    [
        (GAS, ',"level":"medium"', RejectReason.OUT_OF_RANGE),
        (GAS, ',"level":2', RejectReason.SCHEMA),
        (GAS, "", RejectReason.SCHEMA),
        (PIR, ',"holdoff_s":-1', RejectReason.OUT_OF_RANGE),
        (PIR, ',"holdoff_s":true', RejectReason.SCHEMA),
    ],
)
def test_bad_kit_events_are_refused(kind: DeviceKind, payload: str, reason: RejectReason) -> None:
    type_ = "alarm" if kind is GAS else "motion"
    with pytest.raises(ProtocolError) as err:
        dec("d-1", E, kind, "{" + head("d-1", type_) + payload + "}")
    assert err.value.reason is reason


def test_occupancy_needs_an_interval_and_a_count() -> None:
    for body in (',"count":3', ',"interval_s":900', ',"count":-1,"interval_s":900'):
        with pytest.raises(ProtocolError):
            dec("pir-1", T, PIR, "{" + head("pir-1", "occupancy") + body + "}")
    raw = encode_occupancy("pir-1", "m1", 7, TS, count=2, interval_s=60)
    assert dec("pir-1", T, PIR, raw.decode()) == Reading(
        env("pir-1", T, "occupancy"), steps=2, interval_s=60
    )


def test_a_smoke_detector_cannot_send_a_buttons_press() -> None:
    with pytest.raises(ProtocolError) as err:
        dec("smoke-1", E, SMOKE, "{" + head("smoke-1", "press") + "}")
    assert err.value.reason is RejectReason.SCHEMA


def test_hazard_alarms_are_alarm_events_and_a_test_press_is_not() -> None:
    """Smoke and gas ``alarm`` and a water ``leak`` get the alarm guarantee (pending marker,
    clock re-stamping); each alarm type belongs to its kinds only, and ``test`` is no alarm."""
    accepting = {t: {k for k in DeviceKind if t in message_types(k, E)} for t in ALARM_EVENT_TYPES}
    assert accepting["alarm"] == {SMOKE, GAS}
    assert accepting["leak"] == {LEAK}
    assert accepting["press"] == {DeviceKind.BUTTON}
    assert "test" not in ALARM_EVENT_TYPES and "clear" not in ALARM_EVENT_TYPES
    assert "dry" not in ALARM_EVENT_TYPES


def test_a_hazard_alarm_from_a_wrong_clock_is_restamped_and_a_test_press_is_not() -> None:
    """Like a press: an implausible device time never refuses a smoke alarm (it takes the
    receive time); a test press keeps being refused for it (dead-lettered)."""
    info = DeviceInfo("smoke-1", SITE, SMOKE, "l1", None, "r1", None)
    topic = Topic("shg", SITE, "smoke-1", E)
    late = NOW + 86400.0 * 30  # the device's clock a month behind the receive time

    def received(type_: str) -> Received:
        payload = ("{" + head("smoke-1", type_) + "}").encode()
        return Received(1, 1, 1, "shg/v1/s/smoke-1/event", payload, late, False)

    alarm = alarm_with_wrong_clock(topic, received("alarm"), info, 65536)
    assert alarm is not None
    msg, error = alarm
    assert msg.envelope.ts == late and msg.envelope.type == "alarm"
    assert error == pytest.approx(TS / 1000.0 - late)
    assert alarm_with_wrong_clock(topic, received("test"), info, 65536) is None


def test_old_kinds_are_unchanged() -> None:
    assert message_types(DeviceKind.BUTTON, E) == {"press", "long_press", "cancel", "low_battery"}
    assert DeviceKind.BUTTON in HUB_CHILD_KINDS and HUB not in HUB_CHILD_KINDS


def test_valve_command_round_trip_and_topic() -> None:
    raw = encode_command(GAS, "c-1", "valve_shut")
    assert raw == b'{"v":1,"id":"c-1","cmd":"valve_shut"}'
    assert decode_command(raw, GAS).command == "valve_shut"
    with pytest.raises(ValueError, match="no command"):
        encode_command(SMOKE, "c-1", "valve_shut")
    with pytest.raises(ProtocolError):
        decode_command(raw, SMOKE)
    t = command_topic("shg", SITE, "gas-1")
    assert t == f"shg/v1/{SITE}/gas-1/command"
    assert parse_topic(t).channel is Channel.COMMAND
    with pytest.raises(ProtocolError) as err:  # devices never publish commands
        decode(parse_topic(t), raw, GAS, now=NOW)
    assert err.value.reason is RejectReason.BAD_TOPIC


def _accounts() -> list[DeviceAccount]:
    links = [
        KitDevice("hub-1", "s", "home_hub", None, True),
        KitDevice("door-1", "s", "door_contact", "hub-1", True),
        KitDevice("gas-1", "s", "gas_detector", "hub-1", True),
        KitDevice("gas-9", "s", "gas_detector", None, True),
        KitDevice("bt-1", "s", "button", None, True),
    ]
    accounts = [DeviceAccount(d.device_id, d.site_id, "h") for d in links]
    return with_hubs(accounts, links)


def test_a_hub_may_publish_for_exactly_its_children() -> None:
    accounts = _accounts()
    assert [a.device_id for a in accounts] == ["hub-1", "gas-9", "bt-1"]  # children: no login
    passwd = render_password_file(ServiceAccount("gateway", "h"), accounts)
    assert "door-1:" not in passwd and "hub-1:h" in passwd
    acl = render_acl("shg", ServiceAccount("gateway", "h"), accounts)
    hub = acl.split("user hub-1\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert "topic write shg/v1/s/door-1/event" in hub
    assert "topic write shg/v1/s/gas-1/state" in hub  # a child's last will, from the hub
    assert "topic read shg/v1/s/gas-1/command" in hub  # the hub forwards the valve command
    assert "topic write shg/v1/s/hub-1/state" in hub
    assert not any("gas-9" in line or "bt-1" in line for line in hub)
    gas9 = acl.split("user gas-9\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert "topic read shg/v1/s/gas-9/command" in gas9  # its own valve, direct connection
    button = acl.split("user bt-1\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert not any("command" in line for line in button)
    assert "topic write shg/v1/+/+/command" in acl.split("\n\n", 1)[0]  # the gateway sends
