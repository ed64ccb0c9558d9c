"""Device protocol v1: topic grammar, golden payloads, every reject reason, round trips, acks."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import orjson
import pytest

from devices.protocol import (
    AccelBatch,
    Ack,
    AckStatus,
    Channel,
    DeviceConfig,
    DeviceKind,
    Envelope,
    Event,
    Message,
    ProtocolError,
    Reading,
    RejectReason,
    RowKind,
    State,
    Topic,
    ack_topic,
    config_topic,
    decode,
    decode_ack,
    decode_config,
    encode,
    encode_accel,
    encode_ack,
    encode_config,
    encode_event,
    encode_heartbeat,
    encode_hr,
    encode_state,
    encode_steps,
    encode_vitals,
    format_topic,
    is_valid_id,
    is_valid_prefix,
    message_types,
    parse_topic,
    row_kind,
    subscription_filter,
    uplink_filters,
)

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
TS = 1_767_225_599_250  # 0.75 s before NOW, in ms
SITE = "hz-xihu-01"

BUTTON = DeviceKind.BUTTON
BED = DeviceKind.BED_SENSOR
WEAR = DeviceKind.WEARABLE


def topic(device: str, channel: Channel) -> Topic:
    return Topic("shg", SITE, device, channel)


def env(device: str, channel: Channel, type_: str, msg_id: str = "m1", seq: int = 7) -> Envelope:
    return Envelope(SITE, device, channel, msg_id, seq, TS / 1000.0, type_)


def head(device: str, type_: str) -> str:
    return f'"v":1,"dev":"{device}","id":"m1","seq":7,"ts":{TS},"type":"{type_}"'


def dec(
    device: str, channel: Channel, kind: DeviceKind, payload: str | bytes, **kw: Any
) -> Message:
    raw = payload.encode() if isinstance(payload, str) else payload
    return decode(topic(device, channel), raw, kind, now=NOW, **kw)


# --------------------------------------------------------------------------------------------
# Topics
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("shg/v1/hz-xihu-01/btn-7f3a/event", Topic("shg", "hz-xihu-01", "btn-7f3a", Channel.EVENT)),
        ("shg/v1/s/d/telemetry", Topic("shg", "s", "d", Channel.TELEMETRY)),
        ("shg/v1/S_1/D-2/state", Topic("shg", "S_1", "D-2", Channel.STATE)),
        ("shg/v1/s/d/ack", Topic("shg", "s", "d", Channel.ACK)),
        ("shg/v1/s/d/config", Topic("shg", "s", "d", Channel.CONFIG)),
        (f"shg/v1/{'a' * 64}/{'b' * 64}/event", Topic("shg", "a" * 64, "b" * 64, Channel.EVENT)),
    ],
)
def test_parse_topic_valid(text: str, expected: Topic) -> None:
    assert parse_topic(text, "shg") == expected
    assert str(expected) == text


def test_parse_topic_custom_prefix() -> None:
    assert parse_topic("tenant/shg/v1/s/d/event", "tenant/shg") == Topic(
        "tenant/shg", "s", "d", Channel.EVENT
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "shg/v1/s/d",  # no channel
        "shg/v1/s/d/event/extra",
        "shg/v2/s/d/event",  # other version
        "other/v1/s/d/event",  # other prefix
        "shg/v1//d/event",  # empty site
        "shg/v1/s//event",  # empty device
        "shg/v1/s/d/alarm",  # unknown channel
        "shg/v1/s/d/Event",  # channels are lower case
        "shg/v1/s/d+x/event",
        "shg/v1/s/d#/event",
        "shg/v1/s/d.x/event",
        "shg/v1/s/d x/event",
        "shg/v1/s/张三/event",  # non-ASCII (and never a person's name)
        f"shg/v1/s/{'d' * 65}/event",  # too long
        "shg/v1/s/d/event\n",
        "/shg/v1/s/d/event",
    ],
)
def test_parse_topic_invalid(text: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_topic(text, "shg")
    assert info.value.reason is RejectReason.BAD_TOPIC


@pytest.mark.parametrize("prefix", ["", "$SYS", "a/+/b", "a/#", "a//b", "/a", "a/"])
def test_invalid_prefixes(prefix: str) -> None:
    assert not is_valid_prefix(prefix)
    with pytest.raises(ProtocolError):
        parse_topic("x/v1/s/d/event", prefix)
    with pytest.raises(ProtocolError):
        subscription_filter(prefix)


def test_topic_helpers() -> None:
    assert format_topic("shg", "s1", "d1", Channel.TELEMETRY) == "shg/v1/s1/d1/telemetry"
    assert format_topic("shg", "s1", "d1", "event") == "shg/v1/s1/d1/event"
    assert subscription_filter() == "shg/v1/+/+/+"
    assert subscription_filter("x") == "x/v1/+/+/+"
    assert uplink_filters("shg") == ("shg/v1/+/+/event", "shg/v1/+/+/telemetry", "shg/v1/+/+/state")
    assert uplink_filters("shg", "s1")[0] == "shg/v1/s1/+/event"
    assert ack_topic("shg", "s1", "d1") == "shg/v1/s1/d1/ack"
    assert config_topic("shg", "s1", "d1") == "shg/v1/s1/d1/config"
    for bad in ("d/1", "d+", "", "x" * 65):
        assert not is_valid_id(bad)
        with pytest.raises(ProtocolError):
            format_topic("shg", "s1", bad, Channel.EVENT)
    with pytest.raises(ProtocolError):
        format_topic("shg", "s1", "d1", "alarm")
    with pytest.raises(ProtocolError):
        uplink_filters("shg", "s/1")


def test_channels() -> None:
    assert {c for c in Channel if c.uplink} == {Channel.EVENT, Channel.TELEMETRY, Channel.STATE}


def test_message_types_and_row_kinds() -> None:
    assert message_types(BUTTON, Channel.EVENT) == {"press", "long_press", "cancel", "low_battery"}
    assert message_types(BED, Channel.TELEMETRY) == {"vitals", "heartbeat"}
    assert message_types(WEAR, Channel.TELEMETRY) == {"accel", "hr", "steps", "heartbeat"}
    assert message_types(WEAR, Channel.ACK) == frozenset()
    assert row_kind(Channel.TELEMETRY, "accel") is RowKind.ACCEL
    assert row_kind(Channel.TELEMETRY, "vitals") is RowKind.READINGS
    assert row_kind(Channel.EVENT, "press") is RowKind.EVENTS
    assert row_kind(Channel.STATE, "offline") is RowKind.STATE
    with pytest.raises(ValueError, match="no stored rows"):
        row_kind(Channel.ACK, "x")


# --------------------------------------------------------------------------------------------
# Golden payloads
# --------------------------------------------------------------------------------------------

E, T, S = Channel.EVENT, Channel.TELEMETRY, Channel.STATE

GOLDEN: list[tuple[str, Channel, DeviceKind, str, Message]] = [
    # button
    ("btn-1", E, BUTTON, "{" + head("btn-1", "press") + "}", Event(env("btn-1", E, "press"), {})),
    (
        "btn-1",
        E,
        BUTTON,
        "{" + head("btn-1", "long_press") + "}",
        Event(env("btn-1", E, "long_press"), {}),
    ),
    ("btn-1", E, BUTTON, "{" + head("btn-1", "cancel") + "}", Event(env("btn-1", E, "cancel"), {})),
    (
        "btn-1",
        E,
        BUTTON,
        "{" + head("btn-1", "low_battery") + ',"battery":9}',
        Event(env("btn-1", E, "low_battery"), {"battery": 9}),
    ),
    (
        "btn-1",
        T,
        BUTTON,
        "{" + head("btn-1", "heartbeat") + ',"battery":87}',
        Reading(env("btn-1", T, "heartbeat"), battery=87),
    ),
    # bed sensor
    (
        "bed-1",
        T,
        BED,
        "{" + head("bed-1", "vitals") + ',"presence":true,"hr":62.5,"rr":14,"movement":0.12}',
        Reading(env("bed-1", T, "vitals"), True, 62.5, 14.0, 0.12),
    ),
    (
        "bed-1",
        T,
        BED,
        "{" + head("bed-1", "vitals") + ',"presence":false,"hr":null,"rr":null,"movement":0}',
        Reading(env("bed-1", T, "vitals"), False, None, None, 0.0),
    ),
    (
        "bed-1",
        T,
        BED,
        "{" + head("bed-1", "vitals") + ',"presence":true,"movement":0.7}',  # hr/rr omitted
        Reading(env("bed-1", T, "vitals"), True, None, None, 0.7),
    ),
    (
        "bed-1",
        E,
        BED,
        "{" + head("bed-1", "bed_exit") + "}",
        Event(env("bed-1", E, "bed_exit"), {}),
    ),
    (
        "bed-1",
        E,
        BED,
        "{" + head("bed-1", "bed_entry") + "}",
        Event(env("bed-1", E, "bed_entry"), {}),
    ),
    (
        "bed-1",
        T,
        BED,
        "{" + head("bed-1", "heartbeat") + "}",
        Reading(env("bed-1", T, "heartbeat")),
    ),
    (
        "bed-1",
        T,
        BED,
        "{" + head("bed-1", "heartbeat") + ',"battery":100}',
        Reading(env("bed-1", T, "heartbeat"), battery=100),
    ),
    # wearable
    (
        "wr-1",
        T,
        WEAR,
        "{" + head("wr-1", "hr") + ',"hr":71}',
        Reading(env("wr-1", T, "hr"), heart_rate=71.0),
    ),
    (
        "wr-1",
        T,
        WEAR,
        "{" + head("wr-1", "steps") + ',"steps":112}',
        Reading(env("wr-1", T, "steps"), steps=112),
    ),
    (
        "wr-1",
        T,
        WEAR,
        "{" + head("wr-1", "heartbeat") + ',"battery":54,"worn":true}',
        Reading(env("wr-1", T, "heartbeat"), battery=54, worn=True),
    ),
    ("wr-1", E, WEAR, "{" + head("wr-1", "sos") + "}", Event(env("wr-1", E, "sos"), {})),
    (
        "wr-1",
        E,
        WEAR,
        "{" + head("wr-1", "fall") + ',"peak_g":3.62}',
        Event(env("wr-1", E, "fall"), {"peak_g": 3.62}),
    ),
    ("wr-1", E, WEAR, "{" + head("wr-1", "fall") + "}", Event(env("wr-1", E, "fall"), {})),
    ("wr-1", E, WEAR, "{" + head("wr-1", "worn") + "}", Event(env("wr-1", E, "worn"), {})),
    ("wr-1", E, WEAR, "{" + head("wr-1", "not_worn") + "}", Event(env("wr-1", E, "not_worn"), {})),
    ("wr-1", E, WEAR, "{" + head("wr-1", "cancel") + "}", Event(env("wr-1", E, "cancel"), {})),
    (
        "wr-1",
        E,
        WEAR,
        "{" + head("wr-1", "low_battery") + ',"battery":14}',
        Event(env("wr-1", E, "low_battery"), {"battery": 14}),
    ),
    # state, any kind
    (
        "bed-1",
        S,
        BED,
        "{" + head("bed-1", "online") + ',"fw":"2.3.1","rssi":-61}',
        State(env("bed-1", S, "online"), True, None, "2.3.1", -61),
    ),
    (
        "btn-1",
        S,
        BUTTON,
        "{" + head("btn-1", "offline") + ',"battery":80}',
        State(env("btn-1", S, "offline"), False, 80, None, None),
    ),
    (
        "wr-1",
        S,
        WEAR,
        "{" + head("wr-1", "online") + "}",
        State(env("wr-1", S, "online"), True),
    ),
]


@pytest.mark.parametrize(
    ("device", "channel", "kind", "payload", "expected"),
    GOLDEN,
    ids=[f"{g[2].value}-{g[4].envelope.type}-{i}" for i, g in enumerate(GOLDEN)],
)
def test_golden_payloads(
    device: str, channel: Channel, kind: DeviceKind, payload: str, expected: Message
) -> None:
    assert dec(device, channel, kind, payload) == expected


def test_golden_accel() -> None:
    payload = (
        "{" + head("wr-1", "accel") + ',"fs":50,'
        '"x":[0.01,-0.02,3.5],"y":[0,0.5,-16],"z":[1,0.98,16.0]}'
    )
    msg = dec("wr-1", T, WEAR, payload)
    assert isinstance(msg, AccelBatch)
    assert msg.envelope == env("wr-1", T, "accel")
    assert msg.fs == 50.0
    assert msg.samples.dtype == np.float32
    assert msg.samples.shape == (3, 3)
    assert msg.samples.flags.c_contiguous
    np.testing.assert_allclose(
        msg.samples,
        np.array([[0.01, 0.0, 1.0], [-0.02, 0.5, 0.98], [3.5, -16.0, 16.0]], dtype=np.float32),
    )


def test_event_data_keeps_extra_fields() -> None:
    msg = dec("btn-1", E, BUTTON, "{" + head("btn-1", "press") + ',"ext":{"k":1}}')
    assert isinstance(msg, Event)
    assert msg.data == {"ext": {"k": 1}}


def test_unknown_extra_fields_are_ignored_for_readings() -> None:
    msg = dec("btn-1", T, BUTTON, "{" + head("btn-1", "heartbeat") + ',"battery":5,"x":1}')
    assert msg == Reading(env("btn-1", T, "heartbeat"), battery=5)


# --------------------------------------------------------------------------------------------
# Reject reasons
# --------------------------------------------------------------------------------------------


def rejects(
    device: str,
    channel: Channel,
    kind: DeviceKind,
    payload: str | bytes,
    reason: RejectReason,
    **kw: Any,
) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        dec(device, channel, kind, payload, **kw)
    assert info.value.reason is reason, info.value.detail
    return info.value


def test_reject_oversized() -> None:
    payload = "{" + head("btn-1", "press") + ',"pad":"' + "x" * 70000 + '"}'
    err = rejects("btn-1", E, BUTTON, payload, RejectReason.OVERSIZED)
    assert err.msg_id is None
    small = "{" + head("btn-1", "press") + "}"
    rejects("btn-1", E, BUTTON, small, RejectReason.OVERSIZED, max_payload_bytes=10)


@pytest.mark.parametrize("payload", [b"", b"{", b"not json", b'{"v":1,}', b"\xff\xfe{}", b"NaN"])
def test_reject_malformed_json(payload: bytes) -> None:
    rejects("btn-1", E, BUTTON, payload, RejectReason.MALFORMED_JSON)


@pytest.mark.parametrize("channel", [Channel.ACK, Channel.CONFIG])
def test_reject_downlink_channels(channel: Channel) -> None:
    rejects("btn-1", channel, BUTTON, "{" + head("btn-1", "press") + "}", RejectReason.BAD_TOPIC)


@pytest.mark.parametrize(
    ("device", "channel", "kind", "payload"),
    [
        ("btn-1", E, BUTTON, "[1,2]"),
        ("btn-1", E, BUTTON, '"press"'),
        ("btn-1", E, BUTTON, '{"v":1,"dev":"btn-1","seq":7,"ts":1,"type":"press"}'),  # no id
        ("btn-1", E, BUTTON, '{"v":1,"dev":"btn-1","id":"","seq":7,"ts":1,"type":"press"}'),
        ("btn-1", E, BUTTON, '{"v":1,"dev":"btn-1","id":"a b","seq":7,"ts":1,"type":"press"}'),
        ("btn-1", E, BUTTON, '{"v":1,"dev":"btn-1","id":7,"seq":7,"ts":1,"type":"press"}'),
        ("btn-1", E, BUTTON, "{" + head("btn-1", "press").replace('"v":1', '"v":2') + "}"),
        ("btn-1", E, BUTTON, "{" + head("btn-1", "press").replace('"v":1', '"v":true') + "}"),
        ("btn-1", E, BUTTON, "{" + head("btn-1", "press").replace('"v":1', '"v":1.0') + "}"),
        (
            "btn-1",
            E,
            BUTTON,
            "{" + head("btn-1", "press").replace('"dev":"btn-1"', '"dev":5') + "}",
        ),
        ("btn-1", E, BUTTON, "{" + head("btn-1", "press").replace('"seq":7', '"seq":"7"') + "}"),
        ("btn-1", E, BUTTON, "{" + head("btn-1", "press").replace('"seq":7', '"seq":7.0') + "}"),
        ("btn-1", E, BUTTON, "{" + head("btn-1", "press").replace('"seq":7', '"seq":true') + "}"),
        (
            "btn-1",
            E,
            BUTTON,
            "{" + head("btn-1", "press").replace(f'"ts":{TS}', '"ts":1.5e12') + "}",
        ),
        ("btn-1", E, BUTTON, "{" + head("btn-1", "press").replace(f'"ts":{TS},', "") + "}"),
        (
            "btn-1",
            E,
            BUTTON,
            "{" + head("btn-1", "press").replace('"type":"press"', '"type":1') + "}",
        ),
        ("btn-1", E, BUTTON, "{" + head("btn-1", "sos") + "}"),  # not a button event
        ("btn-1", T, BUTTON, "{" + head("btn-1", "press") + "}"),  # event type on telemetry
        ("bed-1", T, BED, "{" + head("bed-1", "accel") + "}"),
        ("btn-1", E, BUTTON, "{" + head("btn-1", "low_battery") + "}"),  # battery missing
        ("btn-1", E, BUTTON, "{" + head("btn-1", "low_battery") + ',"battery":"9"}'),
        ("btn-1", T, BUTTON, "{" + head("btn-1", "heartbeat") + "}"),  # battery required
        ("btn-1", T, BUTTON, "{" + head("btn-1", "heartbeat") + ',"battery":50.5}'),
        ("btn-1", T, BUTTON, "{" + head("btn-1", "heartbeat") + ',"battery":true}'),
        ("bed-1", T, BED, "{" + head("bed-1", "vitals") + ',"presence":1,"movement":0}'),
        ("bed-1", T, BED, "{" + head("bed-1", "vitals") + ',"presence":true}'),
        (
            "bed-1",
            T,
            BED,
            "{" + head("bed-1", "vitals") + ',"presence":true,"hr":"60","movement":0}',
        ),
        (
            "bed-1",
            T,
            BED,
            "{" + head("bed-1", "vitals") + ',"presence":true,"hr":true,"movement":0}',
        ),
        ("wr-1", T, WEAR, "{" + head("wr-1", "hr") + ',"hr":null}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "steps") + ',"steps":1.5}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "heartbeat") + ',"battery":50}'),  # worn missing
        ("wr-1", T, WEAR, "{" + head("wr-1", "heartbeat") + ',"battery":50,"worn":"yes"}'),
        ("wr-1", E, WEAR, "{" + head("wr-1", "fall") + ',"peak_g":"3"}'),
        ("wr-1", S, WEAR, "{" + head("wr-1", "online") + ',"fw":7}'),
        ("wr-1", S, WEAR, "{" + head("wr-1", "online") + ',"fw":""}'),
        ("wr-1", S, WEAR, "{" + head("wr-1", "online") + ',"rssi":-60.5}'),
        ("wr-1", S, WEAR, "{" + head("wr-1", "restarting") + "}"),
        ("wr-1", T, WEAR, "{" + head("wr-1", "accel") + ',"fs":50,"x":[1],"y":[1]}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "accel") + ',"fs":"50","x":[1],"y":[1],"z":[1]}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "accel") + ',"fs":50,"x":[1,2],"y":[1],"z":[1]}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "accel") + ',"fs":50,"x":1,"y":[1],"z":[1]}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "accel") + ',"fs":50,"x":["1"],"y":[1],"z":[1]}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "accel") + ',"fs":50,"x":[null],"y":[1],"z":[1]}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "accel") + ',"fs":50,"x":[true],"y":[1],"z":[1]}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "accel") + ',"fs":50,"x":[[1]],"y":[1],"z":[1]}'),
    ],
)
def test_reject_schema(device: str, channel: Channel, kind: DeviceKind, payload: str) -> None:
    rejects(device, channel, kind, payload, RejectReason.SCHEMA)


@pytest.mark.parametrize(
    ("device", "channel", "kind", "payload"),
    [
        ("btn-1", E, BUTTON, "{" + head("btn-1", "press").replace('"seq":7', '"seq":-1') + "}"),
        ("btn-1", T, BUTTON, "{" + head("btn-1", "heartbeat") + ',"battery":101}'),
        ("btn-1", T, BUTTON, "{" + head("btn-1", "heartbeat") + ',"battery":-1}'),
        ("btn-1", E, BUTTON, "{" + head("btn-1", "low_battery") + ',"battery":250}'),
        ("bed-1", T, BED, "{" + head("bed-1", "vitals") + ',"presence":true,"hr":19,"movement":0}'),
        (
            "bed-1",
            T,
            BED,
            "{" + head("bed-1", "vitals") + ',"presence":true,"hr":251,"movement":0}',
        ),
        ("bed-1", T, BED, "{" + head("bed-1", "vitals") + ',"presence":true,"rr":81,"movement":0}'),
        ("bed-1", T, BED, "{" + head("bed-1", "vitals") + ',"presence":true,"rr":-1,"movement":0}'),
        ("bed-1", T, BED, "{" + head("bed-1", "vitals") + ',"presence":true,"movement":1.01}'),
        ("bed-1", T, BED, "{" + head("bed-1", "vitals") + ',"presence":true,"movement":-0.1}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "hr") + ',"hr":300}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "steps") + ',"steps":-1}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "steps") + ',"steps":10001}'),
        ("wr-1", E, WEAR, "{" + head("wr-1", "fall") + ',"peak_g":40}'),
        ("wr-1", S, WEAR, "{" + head("wr-1", "online") + ',"rssi":5}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "accel") + ',"fs":100,"x":[1],"y":[1],"z":[1]}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "accel") + ',"fs":50,"x":[],"y":[],"z":[]}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "accel") + ',"fs":50,"x":[16.5],"y":[0],"z":[0]}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "accel") + ',"fs":50,"x":[0],"y":[0],"z":[-17]}'),
        ("wr-1", T, WEAR, "{" + head("wr-1", "accel") + ',"fs":50,"x":[1e300],"y":[0],"z":[0]}'),
    ],
)
def test_reject_out_of_range(device: str, channel: Channel, kind: DeviceKind, payload: str) -> None:
    rejects(device, channel, kind, payload, RejectReason.OUT_OF_RANGE)


def test_reject_too_many_accel_samples() -> None:
    n = 251
    arr = ",".join(["0"] * n)
    payload = "{" + head("wr-1", "accel") + f',"fs":50,"x":[{arr}],"y":[{arr}],"z":[{arr}]}}'
    rejects("wr-1", T, WEAR, payload, RejectReason.OUT_OF_RANGE)
    arr = ",".join(["0"] * 250)
    payload = "{" + head("wr-1", "accel") + f',"fs":50,"x":[{arr}],"y":[{arr}],"z":[{arr}]}}'
    msg = dec("wr-1", T, WEAR, payload)
    assert isinstance(msg, AccelBatch)
    assert msg.samples.shape == (250, 3)


def test_reject_identity_mismatch_carries_msg_id() -> None:
    payload = "{" + head("btn-2", "press") + "}"  # dev says btn-2, topic says btn-1
    err = rejects("btn-1", E, BUTTON, payload, RejectReason.IDENTITY_MISMATCH)
    assert err.msg_id == "m1"


def test_reject_timestamps() -> None:
    future = (
        "{" + head("btn-1", "press").replace(f'"ts":{TS}', f'"ts":{int((NOW + 301) * 1000)}') + "}"
    )
    rejects("btn-1", E, BUTTON, future, RejectReason.TIMESTAMP_OUT_OF_RANGE)
    ok_future = future.replace(str(int((NOW + 301) * 1000)), str(int((NOW + 299) * 1000)))
    assert isinstance(dec("btn-1", E, BUTTON, ok_future), Event)
    old_ms = int((NOW - 7 * 86400 - 1) * 1000)
    old = "{" + head("btn-1", "press").replace(f'"ts":{TS}', f'"ts":{old_ms}') + "}"
    rejects("btn-1", E, BUTTON, old, RejectReason.TIMESTAMP_OUT_OF_RANGE)
    rejects("btn-1", E, BUTTON, old.replace(str(old_ms), "-5"), RejectReason.TIMESTAMP_OUT_OF_RANGE)
    rejects("btn-1", E, BUTTON, ok_future, RejectReason.TIMESTAMP_OUT_OF_RANGE, max_future_s=10.0)
    # state messages (retained, last will) are exempt from the age limit, not the future limit
    will = "{" + head("btn-1", "offline").replace(f'"ts":{TS}', f'"ts":{old_ms}') + "}"
    assert dec("btn-1", S, BUTTON, will) == State(
        dataclasses.replace(env("btn-1", S, "offline"), ts=old_ms / 1000.0), False
    )


def test_unknown_device_is_a_reason() -> None:
    assert RejectReason("unknown_device") is RejectReason.UNKNOWN_DEVICE
    assert {r.value for r in RejectReason} == {
        "oversized",
        "malformed_json",
        "bad_topic",
        "schema",
        "out_of_range",
        "identity_mismatch",
        "timestamp_out_of_range",
        "unknown_device",
        "decommissioned",
        "rate_limited",
    }


def test_error_details_never_echo_payload() -> None:
    secret = "SECRET-VALUE-123"
    cases = [
        ("{" + head("btn-1", secret) + "}", BUTTON, E),
        (
            "{" + head("btn-1", "press").replace('"dev":"btn-1"', f'"dev":"{secret}"') + "}",
            BUTTON,
            E,
        ),
        ("{" + head("bed-1", "vitals") + f',"presence":"{secret}","movement":0}}', BED, T),
        (f'{{"garbage":"{secret}"', BUTTON, E),
    ]
    for payload, kind, channel in cases:
        device = "bed-1" if kind is BED else "btn-1"
        with pytest.raises(ProtocolError) as info:
            dec(device, channel, kind, payload)
        assert secret not in str(info.value)
        assert secret not in info.value.detail
        assert len(info.value.detail) < 120


def test_schema_errors_carry_msg_id_once_known() -> None:
    err = rejects("btn-1", E, BUTTON, "{" + head("btn-1", "sos") + "}", RejectReason.SCHEMA)
    assert err.msg_id == "m1"
    err = rejects("btn-1", E, BUTTON, '{"v":1}', RejectReason.SCHEMA)
    assert err.msg_id is None


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


def encoded_samples() -> list[tuple[str, Channel, DeviceKind, bytes]]:
    rng = np.random.default_rng(3)
    samples = rng.normal(0.0, 0.4, (50, 3)) + np.array([0.0, 0.0, 1.0])
    return [
        (
            "bed-1",
            T,
            BED,
            encode_vitals("bed-1", "a1", 1, TS, presence=True, hr=61.5, rr=15.2, movement=0.05),
        ),
        (
            "bed-1",
            T,
            BED,
            encode_vitals("bed-1", "a2", 2, TS, presence=False, hr=None, rr=None, movement=0.0),
        ),
        ("bed-1", T, BED, encode_heartbeat("bed-1", "a3", 3, TS)),
        ("wr-1", T, WEAR, encode_accel("wr-1", "a4", 4, TS, samples=samples)),
        ("wr-1", T, WEAR, encode_hr("wr-1", "a5", 5, TS, hr=72.5)),
        ("wr-1", T, WEAR, encode_steps("wr-1", "a6", 6, TS, steps=40)),
        ("wr-1", T, WEAR, encode_heartbeat("wr-1", "a7", 7, TS, battery=44, worn=False)),
        ("wr-1", E, WEAR, encode_event("wr-1", "a8", 8, TS, event="fall", data={"peak_g": 3.4})),
        ("btn-1", E, BUTTON, encode_event("btn-1", "a9", 9, TS, event="press")),
        ("btn-1", T, BUTTON, encode_heartbeat("btn-1", "a10", 10, TS, battery=90)),
        (
            "btn-1",
            S,
            BUTTON,
            encode_state("btn-1", "a11", 11, TS, online=True, battery=90, fw="1.2", rssi=-70),
        ),
        ("btn-1", S, BUTTON, encode_state("btn-1", "a12", 12, TS, online=False)),
    ]


@pytest.mark.parametrize("case", encoded_samples(), ids=lambda c: c[3][:60].decode())
def test_encode_decode_round_trip(case: tuple[str, Channel, DeviceKind, bytes]) -> None:
    device, channel, kind, payload = case
    msg = dec(device, channel, kind, payload)
    again = encode(msg)
    assert orjson.loads(again) == orjson.loads(payload)
    msg2 = dec(device, channel, kind, again)
    if isinstance(msg, AccelBatch):
        assert isinstance(msg2, AccelBatch)
        assert msg2.envelope == msg.envelope
        np.testing.assert_array_equal(msg2.samples, msg.samples)
    else:
        assert msg2 == msg


def test_encode_accel_rounds_to_milli_g_and_accepts_axes_first() -> None:
    axes = np.array([[0.12345, -1.0], [0.0, 0.5], [1.00049, 0.9996]])  # (3, n) rows x, y, z
    payload = orjson.loads(encode_accel("wr-1", "a", 1, TS, samples=axes.T))
    assert payload["x"] == [0.123, -1.0]
    assert payload["y"] == [0.0, 0.5]
    assert payload["z"] == [1.0, 1.0]
    assert payload["fs"] == 50
    with pytest.raises(ValueError, match="shape"):
        encode_accel("wr-1", "a", 1, TS, samples=axes)


def test_encode_event_refuses_envelope_fields() -> None:
    with pytest.raises(ValueError, match="envelope"):
        encode_event("wr-1", "a", 1, TS, event="fall", data={"seq": 3})


# --------------------------------------------------------------------------------------------
# Acks and configuration
# --------------------------------------------------------------------------------------------


def test_ack_encoding() -> None:
    assert orjson.loads(encode_ack("01HZX3", "stored")) == {
        "v": 1,
        "id": "01HZX3",
        "status": "stored",
        "reason": None,
    }
    assert decode_ack(encode_ack("01HZX3", AckStatus.DUPLICATE)) == Ack(
        "01HZX3", AckStatus.DUPLICATE
    )
    rejected = encode_ack("m1", "rejected", RejectReason.OUT_OF_RANGE)
    assert orjson.loads(rejected)["reason"] == "out_of_range"
    assert decode_ack(rejected) == Ack("m1", AckStatus.REJECTED, "out_of_range")
    with pytest.raises(ValueError, match="reason"):
        encode_ack("m1", "rejected")
    with pytest.raises(ValueError, match="reason"):
        encode_ack("m1", "stored", "schema")
    with pytest.raises(ValueError):
        encode_ack("m1", "lost")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"[]",
        b'{"v":2,"id":"m","status":"stored"}',
        b'{"v":1,"status":"stored"}',
        b'{"v":1,"id":"m","status":"kept"}',
        b'{"v":1,"id":"m","status":"stored","reason":5}',
    ],
)
def test_decode_ack_rejects(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_ack(payload)


def test_config_encoding() -> None:
    assert orjson.loads(encode_config(DeviceConfig(60))) == {"v": 1, "heartbeat_s": 60}
    assert decode_config(b'{"v":1,"heartbeat_s":120}') == DeviceConfig(120)
    with pytest.raises(ValueError):
        encode_config(DeviceConfig(1))
    for bad in (b"{", b'{"v":1}', b'{"v":1,"heartbeat_s":"60"}'):
        with pytest.raises(ProtocolError):
            decode_config(bad)
    with pytest.raises(ProtocolError) as info:
        decode_config(b'{"v":1,"heartbeat_s":5}')
    assert info.value.reason is RejectReason.OUT_OF_RANGE
