"""Fuzzing the two decoders that read attacker-controlled bytes (issue 10 §7).

* ``devices.protocol``: topics, uplink payloads and acks, from any device. The only error a
  decoder may raise is :class:`devices.protocol.ProtocolError` (the dead-letter path).
* ``devices.mqttcodec``: the byte stream from the broker (which relays device payloads).
  :class:`~devices.mqttcodec.Decoder` and :func:`~devices.mqttcodec.parse_properties` may
  raise only :class:`MalformedPacketError` / :class:`ProtocolViolationError` (the connection
  is then closed with that reason code); the client's control-packet handler also ends a
  connection with its internal "connection closed" / "refused" signals.

Each test is bounded: ``FUZZ_EXAMPLES`` examples (``SAFEHOME_FUZZ_EXAMPLES`` overrides it, e.g.
for a long nightly run) of bounded size, and a generous per-example deadline that catches a
hang or a quadratic blow-up, not ordinary slowness of a loaded machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices import mqttcodec as mc
from devices import protocol as p
from gateway import mqttclient, mqtttransport

FUZZ_EXAMPLES = int(os.environ.get("SAFEHOME_FUZZ_EXAMPLES", "200"))
FUZZ_DEADLINE = timedelta(seconds=2)
fuzz = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=FUZZ_DEADLINE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
    database=None,
)

NOW = 1_800_000_000.0
PREFIX = "shg"
IDS = st.sampled_from(["dev-1", "site-a", "x", "A_b-9"]) | st.text(max_size=70)

# JSON values shaped like protocol v1 payloads: the envelope keys with plausible and
# implausible values, plus the type-specific fields of every message type.
_FIELDS = [
    "v", "id", "dev", "seq", "ts", "type", "presence", "hr", "rr", "movement", "battery",
    "steps", "worn", "fs", "samples", "peak_g", "fw", "rssi", "online", "data", "status",
    "reason", "heartbeat_s",
]  # fmt: skip
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=80)
    | st.sampled_from(["press", "sos", "fall", "vitals", "accel", "online", "dev-1", "stored"])
    | st.just(int(NOW * 1000))
    | st.just(1)
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)
_PAYLOAD_OBJ = st.dictionaries(st.sampled_from(_FIELDS), _JSON, max_size=10)
_ACCEL = st.lists(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=3, max_size=3),
    max_size=60,
)


def _dumps(obj: object) -> bytes:
    # stdlib json: integers beyond 64 bits and Infinity (not JSON) reach the decoder too
    return json.dumps(obj).encode()


def _valid_envelope(kind: p.DeviceKind, channel: p.Channel) -> st.SearchStrategy[dict[str, Any]]:
    types = sorted(p.message_types(kind, channel)) or ["press"]
    return st.fixed_dictionaries(
        {
            "v": st.just(1),
            "id": st.sampled_from(["m-1", "x" * 64, "x" * 65, ""]),
            "dev": st.sampled_from(["dev-1", "dev-2"]),
            "seq": st.integers(min_value=-2, max_value=2**63),
            "ts": st.integers(min_value=0, max_value=2**53),
            "type": st.sampled_from(types),
        },
        optional={f: _SCALARS for f in _FIELDS[6:]} | {"samples": _ACCEL},
    )


def _payloads(kind: p.DeviceKind, channel: p.Channel) -> st.SearchStrategy[bytes]:
    objs = _PAYLOAD_OBJ | _valid_envelope(kind, channel) | _JSON
    as_json = objs.map(_dumps)
    return as_json | st.binary(max_size=512) | as_json.map(lambda b: b[: len(b) // 2])


@fuzz
@given(st.data())
def test_protocol_decode_raises_only_protocol_errors(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(list(p.DeviceKind)))
    channel = data.draw(st.sampled_from(list(p.Channel)))
    payload = data.draw(_payloads(kind, channel))
    topic = p.Topic(PREFIX, "site-a", "dev-1", channel)
    try:
        msg = p.decode(topic, payload, kind, now=NOW, max_payload_bytes=4096)
    except p.ProtocolError as exc:
        assert isinstance(exc.reason, str) and exc.reason in set(p.RejectReason)
        return
    assert msg.envelope.device == "dev-1" and msg.envelope.channel is channel
    p.encode(msg)  # what decodes re-encodes


@fuzz
@given(st.text(max_size=300) | st.builds("/".join, st.lists(IDS, max_size=7)))
def test_parse_topic_raises_only_protocol_errors(topic: str) -> None:
    try:
        t = p.parse_topic(topic, PREFIX)
    except p.ProtocolError:
        return
    assert p.format_topic(PREFIX, t.site, t.device, t.channel) == topic


@fuzz
@given(_PAYLOAD_OBJ.map(_dumps) | st.binary(max_size=300))
def test_decode_ack_raises_only_protocol_errors(payload: bytes) -> None:
    with contextlib.suppress(p.ProtocolError):
        p.decode_ack(payload)


# MQTT ------------------------------------------------------------------------------------

_PACKET_TYPES = st.integers(0, 255) | st.sampled_from(
    [0x20, 0x30, 0x31, 0x32, 0x33, 0x38, 0x3A, 0x40, 0x62, 0x90, 0xD0, 0xE0]
)


@st.composite
def _packets(draw: st.DrawFn) -> bytes:
    """One packet with a correct remaining length and a random body (or a broken header)."""
    first = draw(_PACKET_TYPES)
    body = draw(st.binary(max_size=300))
    if draw(st.integers(0, 9)) == 0:  # a lying or overlong remaining length
        return bytes((first,)) + draw(st.binary(min_size=1, max_size=6)) + body
    return bytes((first,)) + mc.encode_varint(len(body)) + body


@st.composite
def _publishes(draw: st.DrawFn) -> bytes:
    """A PUBLISH built field by field, so the fuzzer reaches deep into the parser."""
    qos = draw(st.integers(0, 1))
    first = 0x30 | (qos << 1) | draw(st.sampled_from([0, 1, 8, 9]))
    topic = draw(st.binary(max_size=40))
    tlen = draw(st.sampled_from([len(topic), len(topic) + 1, 0xFFFF]))
    head = tlen.to_bytes(2, "big") + topic
    if qos:
        head += draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
    props = draw(st.binary(max_size=40))
    head += draw(st.sampled_from([b"\x00", mc.encode_varint(len(props)) + props]))
    body = head + draw(st.binary(max_size=100))
    return bytes((first,)) + mc.encode_varint(len(body)) + body


_STREAMS = st.lists(_packets() | _publishes(), min_size=1, max_size=8).map(b"".join)


def _feed_in_pieces(decoder: mc.Decoder, stream: bytes, cuts: list[int]) -> None:
    pos = 0
    for cut in [*sorted(c % (len(stream) + 1) for c in cuts), len(stream)]:
        decoder.feed(stream[pos:cut], NOW)
        pos = max(pos, cut)


@fuzz
@given(_STREAMS | st.binary(max_size=600), st.lists(st.integers(0, 10_000), max_size=5))
def test_mqtt_decoder_raises_only_malformed_or_protocol_errors(
    stream: bytes, cuts: list[int]
) -> None:
    got: list[mc.Received] = []
    controls: list[int] = []
    decoder = mc.Decoder(got.append, lambda first, data, pos, end: controls.append(first), 64, 2048)
    try:
        _feed_in_pieces(decoder, stream, cuts)
    except (mc.MalformedPacketError, mc.ProtocolViolationError) as exc:
        assert 0x80 <= exc.reason_code <= 0xA2
        return
    assert decoder.messages == len(got)
    assert decoder.payload_bytes == sum(len(r.payload) for r in got)
    assert decoder.buffered <= len(stream)


@fuzz
@given(st.binary(max_size=200))
def test_parse_properties_raises_only_malformed(data: bytes) -> None:
    try:
        _, end = mc.parse_properties(data, 0, len(data))
    except mc.MalformedPacketError:
        return
    assert end <= len(data)


_ENDS_CONNECTION = (
    mc.MalformedPacketError,
    mc.ProtocolViolationError,
    mqtttransport.ConnectionClosedError,
    mqtttransport.RefusedError,
)


@fuzz
@given(_STREAMS, st.booleans())
def test_mqtt_client_control_packets_raise_only_connection_ending_errors(
    stream: bytes, accepted: bool
) -> None:
    """The client's own handler (CONNACK, PUBACK, SUBACK, PINGRESP, DISCONNECT, QoS 2, ...)
    on a client that is not connected (writes go nowhere)."""
    client = mqttclient.MqttClient("127.0.0.1", 1, "fuzz", lambda rec: None, ["shg/v1/+/+/+"])
    client._accepted = accepted
    decoder = mc.Decoder(lambda rec: None, client._on_packet, 64, 4096)
    started = time.monotonic()
    with contextlib.suppress(*_ENDS_CONNECTION):
        decoder.feed(stream, NOW)
    assert time.monotonic() - started < FUZZ_DEADLINE.total_seconds()
