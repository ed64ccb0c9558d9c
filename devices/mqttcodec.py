"""The MQTT wire format, with no I/O: every packet the project writes or reads, in one place.

Used by the gateway's MQTT 5 client (:mod:`gateway.mqttclient`), the simulated devices' MQTT
3.1.1 transport (:mod:`devices.mqtt311`) and broker sync's login probe
(:mod:`gateway.brokersync`). Like the sans-I/O cores of aiomqtt/paho/gmqtt, nothing here owns a
socket, a thread, a clock or a lock: encoders return ``bytes``, and :class:`Decoder` turns bytes
the owner has read into packets through two callbacks. The same bytes therefore behave the same
in the client, the tests and the fuzzers.

* **Encoders** (``encode_*``) build CONNECT, SUBSCRIBE, PUBLISH, PUBACK, DISCONNECT for MQTT 5
  (``protocol_level=5``, the default) or 3.1.1 (``protocol_level=4``: no properties).
* **Decoder** (MQTT 5, the gateway's receive path). The owner reads into :meth:`Decoder.writable`
  (one ``recv_into`` of up to 256 KiB) and reports the count to :meth:`Decoder.received`, which
  parses *every* complete packet in it. A QoS 0/1 PUBLISH becomes one :class:`Received`: a few
  index operations, two slices and one object a message, no syscall, no lock, no log. A packet
  split across reads stays in the buffer until the rest arrives; a packet bigger than the buffer
  grows it to the packet's exact size (then it shrinks back), so large payloads cost no
  quadratic copying.
* **Frames** (:func:`split_frame`, :func:`decode_publish_311`): the smaller 3.1.1 reader the
  simulated devices use (they receive acks and configs only).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "CallbackError",
    "Decoder",
    "MalformedPacketError",
    "ProtocolViolationError",
    "Received",
    "decode_connack",
    "decode_disconnect",
    "decode_puback",
    "decode_publish_311",
    "decode_pubrel",
    "decode_qos2_packet_id",
    "decode_suback",
    "decode_varint",
    "encode_connect",
    "encode_disconnect",
    "encode_pubacks",
    "encode_publish",
    "encode_string",
    "encode_subscribe",
    "encode_varint",
    "parse_properties",
    "publish_first_byte",
    "publish_packet",
    "reason_name",
    "split_frame",
]

MQTT5: Final = 5
MQTT311: Final = 4

CHUNK_SIZE = 256 * 1024
MAX_REMAINING_LENGTH = 268_435_455  # largest Variable Byte Integer (4 bytes)

# Packet types (first byte's high nibble) and the fixed first bytes of the packets we parse.
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
PUBREC = 0x50
PUBREL = 0x62  # flags 0b0010 are mandatory
SUBACK = 0x90
PINGREQ = b"\xc0\x00"
PINGRESP = 0xD0
DISCONNECT = 0xE0

# Subscription options byte (MQTT 5 §3.8.3.1).
SUB_QOS1 = 0x01
SUB_NO_LOCAL = 0x04
SUB_RETAIN_AS_PUBLISHED = 0x08
SUB_RETAIN_IF_NEW = 0x10  # Retain Handling 1
GATEWAY_SUBSCRIPTION = SUB_QOS1 | SUB_NO_LOCAL | SUB_RETAIN_IF_NEW  # 0x15

# Property identifiers used here (MQTT 5 §2.2.2.2).
PROP_SESSION_EXPIRY = 0x11
PROP_SERVER_KEEP_ALIVE = 0x13
PROP_RECEIVE_MAXIMUM = 0x21
PROP_TOPIC_ALIAS = 0x23
PROP_MAXIMUM_QOS = 0x24
PROP_RETAIN_AVAILABLE = 0x25
PROP_USER_PROPERTY = 0x26
PROP_MAXIMUM_PACKET_SIZE = 0x27
PROP_REASON_STRING = 0x1F
PROP_SUBSCRIPTION_IDENTIFIER = 0x0B

_BYTE_PROPS = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
_TWO_BYTE_PROPS = frozenset({0x13, 0x21, 0x22, 0x23})
_FOUR_BYTE_PROPS = frozenset({0x02, 0x11, 0x18, 0x27})
_VARINT_PROPS = frozenset({0x0B})
_UTF8_PROPS = frozenset({0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F})
_BINARY_PROPS = frozenset({0x09, 0x16})
_REPEATABLE_PROPS = frozenset({PROP_USER_PROPERTY, PROP_SUBSCRIPTION_IDENTIFIER})

REASON_NAMES: dict[int, str] = {
    0x00: "Success", 0x01: "Granted QoS 1", 0x02: "Granted QoS 2",
    0x04: "Disconnect with Will Message", 0x10: "No matching subscribers",
    0x11: "No subscription existed", 0x18: "Continue authentication", 0x19: "Re-authenticate",
    0x80: "Unspecified error", 0x81: "Malformed Packet", 0x82: "Protocol Error",
    0x83: "Implementation specific error", 0x84: "Unsupported Protocol Version",
    0x85: "Client Identifier not valid", 0x86: "Bad User Name or Password",
    0x87: "Not authorized", 0x88: "Server unavailable", 0x89: "Server busy", 0x8A: "Banned",
    0x8B: "Server shutting down", 0x8C: "Bad authentication method",
    0x8D: "Keep Alive timeout", 0x8E: "Session taken over", 0x8F: "Topic Filter invalid",
    0x90: "Topic Name invalid", 0x91: "Packet Identifier in use",
    0x92: "Packet Identifier not found", 0x93: "Receive Maximum exceeded",
    0x94: "Topic Alias invalid", 0x95: "Packet too large", 0x96: "Message rate too high",
    0x97: "Quota exceeded", 0x98: "Administrative action", 0x99: "Payload format invalid",
    0x9A: "Retain not supported", 0x9B: "QoS not supported", 0x9C: "Use another server",
    0x9D: "Server moved", 0x9E: "Shared Subscriptions not supported",
    0x9F: "Connection rate exceeded", 0xA0: "Maximum connect time",
    0xA1: "Subscription Identifiers not supported",
    0xA2: "Wildcard Subscriptions not supported",
}  # fmt: skip

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_PUBACK_BASE = 0x4002_0000  # a PUBACK is the big-endian u32 0x4002_0000 | packet id
_ONE_BYTE: Final = tuple(bytes((n,)) for n in range(0x80))  # the common remaining lengths


def reason_name(code: int) -> str:
    """``"Not authorized (0x87)"``: what the logs show for a reason code."""
    return f"{REASON_NAMES.get(code, 'Unknown reason')} (0x{code:02X})"


@dataclass(frozen=True, slots=True)
class Received:
    """One message as it came off the wire, with what is needed to acknowledge it."""

    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes
    received_at: float
    dup: bool


class MalformedPacketError(ValueError):
    """The broker sent bytes that are not a valid MQTT packet (reason code 0x81)."""

    reason_code = 0x81


class ProtocolViolationError(ValueError):
    """The broker sent a valid packet it must not send here (reason code 0x82 or more)."""

    def __init__(self, message: str, reason_code: int = 0x82) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class CallbackError(Exception):
    """A :class:`Decoder` callback raised: not the broker's fault (the error is ``__cause__``)."""


# encoding ----------------------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """MQTT Variable Byte Integer: 7 bits a byte, least significant first, high bit = more."""
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"variable byte integer out of range: {value}")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes | bytearray, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it) of the Variable Byte Integer at ``pos``.

    Raises :class:`MalformedPacketError` for a fifth byte and :class:`IndexError` when the
    integer runs past ``end`` (the caller knows whether that means "wait for more data").
    """
    value = 0
    shift = 0
    for i in range(pos, pos + 4):
        if i >= end:
            raise IndexError("variable byte integer runs past the data")
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    raise MalformedPacketError("variable byte integer longer than 4 bytes")


def encode_string(text: str) -> bytes:
    """UTF-8 Encoded String (§1.5.4): two length bytes, then the text."""
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF or "\x00" in text:
        raise ValueError("MQTT strings hold at most 65535 bytes and no U+0000")
    return _U16.pack(len(raw)) + raw


def _binary(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("MQTT binary data holds at most 65535 bytes")
    return _U16.pack(len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_varint(len(body)) + body


def encode_connect(
    client_id: str,
    *,
    username: str | None = None,
    password: bytes | None = None,
    keepalive_s: int = 60,
    clean_start: bool = False,
    session_expiry_s: int = 0,
    receive_maximum: int = 65535,
    maximum_packet_size: int = 0,
    will_topic: str | None = None,
    will_payload: bytes = b"",
    will_qos: int = 0,
    will_retain: bool = False,
    protocol_level: int = MQTT5,
) -> bytes:
    """CONNECT (§3.1): MQTT 5 (``protocol_level=5``) or 3.1.1 (``4``, no properties).

    MQTT 5 properties: Session Expiry Interval when non-zero, Receive Maximum when below its
    default 65535, Maximum Packet Size when non-zero (the broker must not send us a larger
    packet). Topic Alias Maximum is left out (0: the broker must not send topic aliases). A
    will (``will_topic``) has no will properties. ``clean_start`` is 3.1.1's Clean Session.
    """
    if protocol_level not in (MQTT5, MQTT311):
        raise ValueError("protocol level is 5 (MQTT 5) or 4 (MQTT 3.1.1)")
    if not 0 <= keepalive_s <= 0xFFFF:
        raise ValueError("keepalive must fit two bytes")
    if not 1 <= receive_maximum <= 0xFFFF:
        raise ValueError("receive maximum must be 1..65535")
    if not 0 <= maximum_packet_size <= MAX_REMAINING_LENGTH + 5:
        raise ValueError("maximum packet size out of range")
    if will_qos not in (0, 1, 2):
        raise ValueError("will QoS is 0, 1 or 2")
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    flags |= 0x02 if clean_start else 0
    if will_topic is not None:
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
    body = encode_string("MQTT") + bytes((protocol_level, flags)) + _U16.pack(keepalive_s)
    if protocol_level == MQTT5:
        props = b""
        if session_expiry_s:
            props += bytes((PROP_SESSION_EXPIRY,)) + _U32.pack(session_expiry_s)
        if receive_maximum != 0xFFFF:
            props += bytes((PROP_RECEIVE_MAXIMUM,)) + _U16.pack(receive_maximum)
        if maximum_packet_size:
            props += bytes((PROP_MAXIMUM_PACKET_SIZE,)) + _U32.pack(maximum_packet_size)
        body += encode_varint(len(props)) + props
    body += encode_string(client_id)
    if will_topic is not None:
        body += (b"\x00" if protocol_level == MQTT5 else b"") + encode_string(will_topic)
        body += _binary(will_payload)
    if username is not None:
        body += encode_string(username)
    if password is not None:
        body += _binary(password)
    return _packet(0x10, body)


def encode_subscribe(
    packet_id: int, filters: Sequence[tuple[str, int]], *, protocol_level: int = MQTT5
) -> bytes:
    """SUBSCRIBE (§3.8): no properties, one options byte per topic filter (3.1.1: the QoS)."""
    if not filters:
        raise ValueError("SUBSCRIBE needs at least one topic filter")
    body = _U16.pack(packet_id) + (b"\x00" if protocol_level == MQTT5 else b"")
    for topic_filter, options in filters:
        if not topic_filter or options & 0xC0 or options & 0x03 == 3 or options & 0x30 == 0x30:
            raise ValueError(f"invalid subscription {topic_filter!r} / 0x{options:02x}")
        if protocol_level != MQTT5 and options & 0xFC:
            raise ValueError("MQTT 3.1.1 subscription options are the QoS only")
        body += encode_string(topic_filter) + bytes((options,))
    return _packet(0x82, body)


def publish_packet(
    first: int, topic_field: bytes, packet_id: int, payload: bytes, properties: bytes
) -> bytes:
    """PUBLISH from its parts, unchecked (hot path): ``topic_field`` is the encoded topic
    (:func:`encode_string`), ``properties`` the encoded property list (``b""`` in 3.1.1)."""
    if packet_id:
        head = topic_field + _U16.pack(packet_id) + properties
    else:
        head = topic_field + properties
    return b"".join((bytes((first,)), encode_varint(len(head) + len(payload)), head, payload))


def publish_first_byte(qos: int, retain: bool, dup: bool = False) -> int:
    """The fixed header's first byte of a PUBLISH."""
    return PUBLISH | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)


def encode_publish(
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    retain: bool = False,
    packet_id: int = 0,
    dup: bool = False,
    protocol_level: int = MQTT5,
) -> bytes:
    """PUBLISH (§3.3) without properties."""
    if qos not in (0, 1) or (qos == 0) != (packet_id == 0) or (dup and qos == 0):
        raise ValueError("QoS 0 has no packet id and no DUP; QoS 1 needs a packet id")
    return publish_packet(
        publish_first_byte(qos, retain, dup),
        encode_string(topic),
        packet_id,
        payload,
        b"\x00" if protocol_level == MQTT5 else b"",
    )


def encode_pubacks(mids: Sequence[int]) -> bytes:
    """Successful PUBACKs for ``mids``, back to back: ``0x40 0x02 <id hi> <id lo>`` each
    (the same bytes in 3.1.1; MQTT 5 lets a successful PUBACK omit its reason code)."""
    return struct.pack(f"!{len(mids)}I", *[_PUBACK_BASE | mid for mid in mids])


def encode_disconnect(reason_code: int = 0) -> bytes:
    """DISCONNECT (§3.14); reason 0 (normal) uses the two-byte short form (3.1.1's only one)."""
    return b"\xe0\x00" if reason_code == 0 else bytes((DISCONNECT, 2, reason_code, 0))


def encode_pubrec(packet_id: int, reason_code: int) -> bytes:
    """PUBREC (§3.5) with a reason code."""
    return bytes((PUBREC, 3)) + _U16.pack(packet_id) + bytes((reason_code,))


def encode_pubcomp(packet_id: int, reason_code: int) -> bytes:
    """PUBCOMP (§3.7) with a reason code."""
    return bytes((0x70, 3)) + _U16.pack(packet_id) + bytes((reason_code,))


# MQTT 3.1.1 reading (the simulated devices) -------------------------------------------------

CONNACK_311_REASONS: Final = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


def split_frame(data: bytes | bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """(body start, body end) of the packet at ``pos`` (the body may not all be there yet), or
    None while its remaining length is incomplete. A remaining length longer than 4 bytes
    raises :class:`MalformedPacketError`."""
    try:
        length, body = decode_varint(data, pos + 1, end)
    except IndexError:
        return None
    return body, body + length


def decode_publish_311(first: int, body: bytes) -> tuple[str, int, bytes]:
    """(topic, packet id (0 for QoS 0), payload) of a 3.1.1 PUBLISH body."""
    if len(body) < 2:
        raise MalformedPacketError("short PUBLISH")
    pos = 2 + ((body[0] << 8) | body[1])
    try:
        topic = body[2:pos].decode()
    except UnicodeDecodeError:
        raise MalformedPacketError("topic is not UTF-8") from None
    mid = 0
    if (first >> 1) & 0x03:
        if len(body) < pos + 2:
            raise MalformedPacketError("short PUBLISH")
        mid = (body[pos] << 8) | body[pos + 1]
        pos += 2
    return topic, mid, body[pos:]


# decoding -----------------------------------------------------------------------------------


def parse_properties(data: bytes, pos: int, end: int) -> tuple[dict[int, Any], int]:
    """The property list at ``pos`` (its length first) → ({id: value}, position after it).

    User properties come back as a list of (name, value); Subscription Identifiers as a list of
    ints. A truncated or unknown property, or a repeated one that may not repeat, is malformed.
    """
    try:
        length, pos = decode_varint(data, pos, end)
    except IndexError:
        raise MalformedPacketError("property length runs past the packet") from None
    stop = pos + length
    if stop > end:
        raise MalformedPacketError("properties run past the packet")
    props: dict[int, Any] = {}
    try:
        while pos < stop:
            ident = data[pos]
            pos += 1
            value: Any
            if ident in _BYTE_PROPS:
                value = data[pos]
                pos += 1
            elif ident in _TWO_BYTE_PROPS:
                value = (data[pos] << 8) | data[pos + 1]
                pos += 2
            elif ident in _FOUR_BYTE_PROPS:
                (value,) = _U32.unpack_from(data, pos)
                pos += 4
            elif ident in _VARINT_PROPS:
                value, pos = decode_varint(data, pos, stop)
            elif ident in _UTF8_PROPS or ident in _BINARY_PROPS:
                n = (data[pos] << 8) | data[pos + 1]
                raw = data[pos + 2 : pos + 2 + n]
                pos += 2 + n
                value = raw.decode("utf-8") if ident in _UTF8_PROPS else raw
            elif ident == PROP_USER_PROPERTY:
                n = (data[pos] << 8) | data[pos + 1]
                name = data[pos + 2 : pos + 2 + n].decode("utf-8")
                pos += 2 + n
                n = (data[pos] << 8) | data[pos + 1]
                text = data[pos + 2 : pos + 2 + n].decode("utf-8")
                pos += 2 + n
                value = (name, text)
            else:
                raise MalformedPacketError(f"unknown property 0x{ident:02x}")
            if pos > stop:
                raise MalformedPacketError(f"property 0x{ident:02x} runs past the properties")
            if ident in _REPEATABLE_PROPS:
                props.setdefault(ident, []).append(value)
            elif ident in props:
                raise MalformedPacketError(f"property 0x{ident:02x} given twice")
            else:
                props[ident] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise MalformedPacketError(f"bad properties: {exc}") from None
    return props, stop


PacketHandler = Callable[[int, bytes, int, int], None]


class Decoder:
    """Turns the byte stream from the broker into packets, many per read.

    The owner reads into :meth:`writable` and reports the count to :meth:`received`. Each
    complete QoS 0/1 PUBLISH becomes a :class:`Received` passed to ``on_publish``; every other
    packet (including a QoS 2 PUBLISH) goes to ``on_packet(first_byte, data, body, end)`` where
    ``data[body:end]`` is the packet after its fixed header. ``generation`` is stamped on each
    message; ``on_packet`` may change it (a CONNACK does) and the next message sees the change.
    """

    def __init__(
        self,
        on_publish: Callable[[Received], None],
        on_packet: PacketHandler,
        chunk_size: int = CHUNK_SIZE,
        max_packet_size: int = MAX_REMAINING_LENGTH + 5,
    ) -> None:
        self._on_publish = on_publish
        self._on_packet = on_packet
        self._chunk = chunk_size
        self._max_packet = max_packet_size
        self._buf = bytearray(chunk_size)
        self._view = memoryview(self._buf)
        self._end = 0  # bytes held
        self._need = 0  # bytes needed before parsing is worth trying again
        self.generation = 0
        self.messages = 0  # QoS 0/1 PUBLISH packets delivered
        self.payload_bytes = 0  # their payloads' total size (the client's byte budget)

    def reset(self) -> None:
        """Forget a partial packet (new connection)."""
        self._end = 0
        self._need = 0
        if len(self._buf) != self._chunk:
            self._resize(self._chunk)

    @property
    def buffered(self) -> int:
        return self._end

    def writable(self) -> memoryview:
        """The free end of the buffer, to ``recv_into``."""
        return self._view[self._end :]

    def feed(self, data: bytes, now: float = 0.0) -> None:
        """Copy ``data`` in (as many reads as it takes) and parse; for tests and tools."""
        view = memoryview(data)
        while view:
            room = self.writable()
            n = min(len(room), len(view))
            room[:n] = view[:n]
            del room
            view = view[n:]
            self.received(n, now)

    def received(self, n: int, now: float) -> None:
        """``n`` more bytes are in the buffer: handle every complete packet."""
        end = self._end + n
        self._end = end
        if end < self._need:
            return
        data = self._view[:end].tobytes()
        pos = self._parse(data, end, now)
        rest = end - pos
        if rest:
            self._view[:rest] = data[pos:end]
        self._end = rest
        need = self._need
        if need > len(self._buf):
            self._resize(need)
        elif len(self._buf) > self._chunk and need <= self._chunk:
            self._resize(self._chunk)

    def _resize(self, size: int) -> None:
        # A new buffer rather than an in-place resize: an exported memoryview would forbid that.
        buf = bytearray(size)
        buf[: self._end] = self._view[: self._end]
        self._view.release()
        self._buf = buf
        self._view = memoryview(buf)

    def _parse(self, data: bytes, end: int, now: float) -> int:
        """Handle the complete packets of ``data[:end]``; return where the incomplete rest starts.

        This is the hot path, written for speed: no function call per packet except the two
        callbacks, the common one-byte remaining length and property-free PUBLISH inline.
        """
        pos = 0
        generation = self.generation
        deliver = self._on_publish
        control = self._on_packet
        count = 0
        nbytes = 0
        try:
            while end - pos >= 2:
                first = data[pos]
                length = data[pos + 1]
                if length < 0x80:
                    body = pos + 2
                else:
                    try:
                        length, body = decode_varint(data, pos + 1, end)
                    except IndexError:  # the remaining length itself is incomplete
                        self._need = end - pos + 1
                        return pos
                stop = body + length
                if stop > end:
                    if stop - pos > self._max_packet:
                        raise ProtocolViolationError(
                            f"packet of {stop - pos} bytes is over our maximum packet size", 0x95
                        )
                    self._need = stop - pos
                    return pos
                if first & 0xF4 == 0x30:  # PUBLISH, QoS 0 or 1
                    topic_end = body + 2 + ((data[body] << 8) | data[body + 1])
                    if first & 0x02:
                        mid = (data[topic_end] << 8) | data[topic_end + 1]
                        p = topic_end + 2
                        if not mid:
                            raise MalformedPacketError("QoS 1 PUBLISH with packet id 0")
                    else:
                        if first & 0x08:
                            raise MalformedPacketError("QoS 0 PUBLISH with DUP set")
                        mid = 0
                        p = topic_end
                    if p >= stop:
                        raise MalformedPacketError("PUBLISH header runs past the packet")
                    if data[p]:
                        p = self._publish_properties(data, p, stop)
                    else:
                        p += 1
                    if topic_end == body + 2:
                        raise ProtocolViolationError(
                            "PUBLISH without a topic name (topic aliases are not enabled)", 0x94
                        )
                    topic = data[body + 2 : topic_end].decode("utf-8")
                    count += 1
                    nbytes += stop - p
                    try:
                        deliver(
                            Received(
                                generation,
                                mid,
                                (first >> 1) & 1,
                                topic,
                                data[p:stop],
                                now,
                                first & 0x08 != 0,
                            )
                        )
                    except BaseException as exc:
                        raise CallbackError from exc
                else:
                    control(first, data, body, stop)
                    generation = self.generation
                pos = stop
        except (IndexError, UnicodeDecodeError) as exc:
            raise MalformedPacketError(f"bad packet: {exc}") from None
        finally:
            self.messages += count
            self.payload_bytes += nbytes
        self._need = 0 if pos == end else end - pos + 1
        return pos

    @staticmethod
    def _publish_properties(data: bytes, pos: int, stop: int) -> int:
        props, pos = parse_properties(data, pos, stop)
        if PROP_TOPIC_ALIAS in props:
            raise ProtocolViolationError("topic alias received but none was allowed", 0x94)
        return pos


# MQTT 5 control packets from the broker (``data[pos:end]`` is the packet after its fixed header)


def decode_connack(data: bytes, pos: int, end: int) -> tuple[bool, int, dict[int, Any]]:
    """CONNACK (§3.2): (session present, reason code, properties)."""
    if end - pos < 2:
        raise MalformedPacketError("short CONNACK")
    flags, code = data[pos], data[pos + 1]
    if flags & 0xFE:
        raise MalformedPacketError("CONNACK reserved flags set")
    props, _ = parse_properties(data, pos + 2, end) if end - pos > 2 else ({}, end)
    return bool(flags & 0x01), code, props


def decode_puback(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """PUBACK (§3.4): (packet id, reason code; 0 when left out)."""
    if end - pos < 2:
        raise MalformedPacketError("short PUBACK")
    return (data[pos] << 8) | data[pos + 1], data[pos + 2] if end - pos > 2 else 0


def decode_suback(data: bytes, pos: int, end: int) -> tuple[int, list[int]]:
    """SUBACK (§3.9): (packet id, one reason code per topic filter)."""
    if end - pos < 3:
        raise MalformedPacketError("short SUBACK")
    mid = (data[pos] << 8) | data[pos + 1]
    _, pos = parse_properties(data, pos + 2, end)
    return mid, list(data[pos:end])


def decode_disconnect(data: bytes, pos: int, end: int) -> str:
    """DISCONNECT (§3.14) from the broker, for the logs: its reason and reason string."""
    code = data[pos] if end > pos else 0
    text = None
    if end - pos > 1:
        props, _ = parse_properties(data, pos + 1, end)
        text = props.get(PROP_REASON_STRING)
    return f"broker sent DISCONNECT {reason_name(code)}" + (f": {text}" if text else "")


def decode_pubrel(data: bytes, pos: int, end: int) -> int:
    """PUBREL (§3.6): its packet id."""
    if end - pos < 2:
        raise MalformedPacketError("short PUBREL")
    return (data[pos] << 8) | data[pos + 1]


def decode_qos2_packet_id(first: int, data: bytes, pos: int, end: int) -> int:
    """The packet id of a PUBLISH the :class:`Decoder` did not deliver (QoS 2); QoS 3 is
    malformed."""
    if first & 0x06 != 0x04:
        raise MalformedPacketError("PUBLISH with QoS 3")
    topic_end = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if topic_end + 2 > end:
        raise MalformedPacketError("short QoS 2 PUBLISH")
    return (data[topic_end] << 8) | data[topic_end + 1]
