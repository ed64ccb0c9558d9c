"""MQTT 5 packet encoding and decoding (devices.mqttcodec) and gateway.mqttclient, against bytes
from the spec.

Every expected byte string below is written out by hand from the MQTT 5.0 specification
(OASIS, 2019): §1.5.5 Variable Byte Integer, §2.2.2 properties, §3.1 CONNECT, §3.2 CONNACK,
§3.3 PUBLISH, §3.4 PUBACK, §3.8 SUBSCRIBE, §3.14 DISCONNECT.

The last part runs the client against a scripted fake broker on 127.0.0.1, for behaviour a
real Mosquitto will not show on demand (malformed packets, QoS 2, a silent broker).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devices.mqttcodec import (
    GATEWAY_SUBSCRIPTION,
    Decoder,
    MalformedPacketError,
    ProtocolViolationError,
    Received,
    decode_varint,
    encode_connect,
    encode_disconnect,
    encode_pubacks,
    encode_publish,
    encode_subscribe,
    encode_varint,
    parse_properties,
)
from gateway.mqttclient import MqttClient


def h(text: str) -> bytes:
    """Hex with spaces and ``|`` separators, for readable literals."""
    return bytes.fromhex(text.replace("|", " "))


# variable byte integers (§1.5.5, table 1-1's boundaries) --------------------------------------

VARINTS = [
    (0, "00"),
    (127, "7F"),
    (128, "80 01"),
    (16_383, "FF 7F"),
    (16_384, "80 80 01"),
    (2_097_151, "FF FF 7F"),
    (2_097_152, "80 80 80 01"),
    (268_435_455, "FF FF FF 7F"),
]


@pytest.mark.parametrize(("value", "encoded"), VARINTS)
def test_variable_byte_integer_boundaries(value: int, encoded: str) -> None:
    raw = h(encoded)
    assert encode_varint(value) == raw
    assert decode_varint(raw + b"\xaa", 0, len(raw) + 1) == (value, len(raw))


def test_variable_byte_integer_limits() -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_varint(268_435_456)
    with pytest.raises(ValueError, match="out of range"):
        encode_varint(-1)
    with pytest.raises(MalformedPacketError):
        decode_varint(h("FF FF FF FF 7F"), 0, 5)  # a fifth byte is malformed
    with pytest.raises(IndexError):
        decode_varint(h("80 80"), 0, 2)  # incomplete: the caller waits for more


# encoding -------------------------------------------------------------------------------------


def test_connect_with_credentials_and_session_properties() -> None:
    packet = encode_connect(
        "gw",
        username="gateway",
        password=b"pw",
        keepalive_s=30,
        clean_start=False,
        session_expiry_s=604_800,
        receive_maximum=100,
    )
    assert packet == h(
        "10 24"  # CONNECT, remaining length 36
        "| 00 04 4D 51 54 54"  # protocol name "MQTT"
        "| 05"  # protocol version 5
        "| C0"  # flags: user name, password; clean start 0, no will
        "| 00 1E"  # keep alive 30 s
        "| 08 | 11 00 09 3A 80 | 21 00 64"  # properties: session expiry 604800, receive max 100
        "| 00 02 67 77"  # client id "gw"
        "| 00 07 67 61 74 65 77 61 79"  # user name "gateway"
        "| 00 02 70 77"  # password "pw" (binary data)
    )


def test_connect_minimal_with_clean_start_and_default_receive_maximum() -> None:
    # Receive Maximum 65535 is the default and is left out; no Topic Alias Maximum ever.
    assert encode_connect("c", keepalive_s=60, clean_start=True) == h(
        "10 0E | 00 04 4D 51 54 54 | 05 | 02 | 00 3C | 00 | 00 01 63"
    )


def test_subscribe_with_no_local_and_retain_handling_1() -> None:
    assert GATEWAY_SUBSCRIPTION == 0b0001_0101  # retain handling 1, no local, QoS 1
    assert encode_subscribe(1, [("shg/v1/+/+/+", GATEWAY_SUBSCRIPTION)]) == h(
        "82 12"  # SUBSCRIBE (flags 0010), remaining length 18
        "| 00 01"  # packet id 1
        "| 00"  # no properties
        "| 00 0C 73 68 67 2F 76 31 2F 2B 2F 2B 2F 2B"  # "shg/v1/+/+/+"
        "| 15"  # options
    )


def test_subscribe_several_filters() -> None:
    assert encode_subscribe(0x0102, [("a", 0x01), ("b/#", 0x00)]) == h(
        "82 0D | 01 02 | 00 | 00 01 61 | 01 | 00 03 62 2F 23 | 00"  # 2+1+3+1+5+1 = 13
    )
    with pytest.raises(ValueError, match="invalid subscription"):
        encode_subscribe(1, [("a", 0x30)])  # retain handling 3 is reserved


def test_publish_encoding() -> None:
    assert encode_publish("a/b", b"hi", qos=1, packet_id=0x1234) == h(
        "32 0A | 00 03 61 2F 62 | 12 34 | 00 | 68 69"
    )
    assert encode_publish("t", b"", qos=0, retain=True) == h("31 04 | 00 01 74 | 00")
    assert encode_publish("t", b"x", qos=1, packet_id=7, dup=True) == h(
        "3A 07 | 00 01 74 | 00 07 | 00 | 78"
    )
    payload = b"p" * 200  # two-byte remaining length: 3 + 2 + 1 + 200 = 206 = CE 01
    assert encode_publish("t", payload, qos=1, packet_id=1)[:9] == h("32 CE 01 00 01 74 00 01 00")
    with pytest.raises(ValueError):
        encode_publish("t", b"", qos=1)  # QoS 1 needs a packet id


def test_pubacks_and_disconnect() -> None:
    assert encode_pubacks([1, 0x1234, 0xFFFF]) == h("40 02 00 01 | 40 02 12 34 | 40 02 FF FF")
    assert encode_pubacks([]) == b""
    assert encode_disconnect(0) == h("E0 00")
    assert encode_disconnect(0x81) == h("E0 02 81 00")


# properties -------------------------------------------------------------------------------------


def test_parse_properties_of_every_type() -> None:
    props_body = h(
        "01 01"  # payload format indicator (byte)
        "| 02 00 00 00 3C"  # message expiry interval 60 (four bytes)
        "| 21 00 14"  # receive maximum 20 (two bytes)
        "| 0B 80 01"  # subscription identifier 128 (variable byte integer)
        "| 03 00 02 6A 73"  # content type "js" (UTF-8 string)
        "| 09 00 02 00 FF"  # correlation data (binary)
        "| 26 00 01 6B 00 01 76"  # user property k=v
        "| 26 00 01 6B 00 01 77"  # user property k=w (may repeat)
    )
    data = bytes([len(props_body)]) + props_body + b"rest"
    props, end = parse_properties(data, 0, len(data))
    assert end == 1 + len(props_body)
    assert props == {
        0x01: 1,
        0x02: 60,
        0x21: 20,
        0x0B: [128],
        0x03: "js",
        0x09: b"\x00\xff",
        0x26: [("k", "v"), ("k", "w")],
    }


@pytest.mark.parametrize(
    "data",
    [
        h("02 21 00 14"),  # a two-byte property crossing the end of the properties
        h("06 21 00 14 21 00 15"),  # receive maximum twice
        h("02 FF 00"),  # unknown property
        h("05 03 00 09 61 62"),  # string longer than the properties
        h("09"),  # length beyond the data
    ],
)
def test_malformed_properties(data: bytes) -> None:
    with pytest.raises(MalformedPacketError):
        parse_properties(data, 0, len(data))


# decoding the stream ----------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.packets: list[tuple[int, bytes]] = []

    def on_publish(self, rec: Received) -> None:
        self.messages.append(rec)

    def on_packet(self, first: int, data: bytes, pos: int, end: int) -> None:
        self.packets.append((first, data[pos:end]))


def decoder(chunk: int = 1024) -> tuple[Decoder, Sink]:
    sink = Sink()
    dec = Decoder(sink.on_publish, sink.on_packet, chunk_size=chunk)
    dec.generation = 3
    return dec, sink


QOS1_AB = h("32 0A | 00 03 61 2F 62 | 12 34 | 00 | 68 69")  # QoS 1 "a/b" id 0x1234 "hi"
QOS0_PROPS = h(
    "31 15"  # PUBLISH QoS 0, retain; remaining length 21
    "| 00 01 74"  # topic "t"
    "| 10 | 01 01 | 02 00 00 00 3C | 26 00 01 6B 00 01 76 | 0B 05"  # 16 bytes of properties
    "| 78"  # payload "x"
)
DUP_EMPTY = h("3A 06 | 00 01 74 | 00 07 | 00")  # QoS 1 DUP, topic "t", id 7, empty payload
CONNACK = h("20 03 01 00 00")  # session present, success, no properties


def test_publish_without_properties() -> None:
    dec, sink = decoder()
    dec.feed(QOS1_AB, now=12.5)
    assert sink.messages == [Received(3, 0x1234, 1, "a/b", b"hi", 12.5, False)]
    assert dec.buffered == 0 and dec.messages == 1


def test_publish_with_properties_and_dup() -> None:
    dec, sink = decoder()
    dec.feed(QOS0_PROPS + DUP_EMPTY, now=1.0)
    assert sink.messages == [
        Received(3, 0, 0, "t", b"x", 1.0, False),
        Received(3, 7, 1, "t", b"", 1.0, True),
    ]


def test_several_packets_in_one_read_with_control_packets_between() -> None:
    dec, sink = decoder()
    pingresp = h("D0 00")
    dec.feed(CONNACK + QOS1_AB + pingresp + QOS0_PROPS + QOS1_AB)
    assert [m.payload for m in sink.messages] == [b"hi", b"x", b"hi"]
    assert sink.packets == [(0x20, h("01 00 00")), (0xD0, b"")]
    assert dec.buffered == 0


def test_generation_changed_by_a_control_packet_applies_to_the_next_messages() -> None:
    sink = Sink()

    def on_packet(first: int, data: bytes, pos: int, end: int) -> None:
        dec.generation = 4

    dec = Decoder(sink.on_publish, on_packet, chunk_size=1024)
    dec.feed(QOS1_AB + CONNACK + QOS1_AB)
    assert [m.generation for m in sink.messages] == [0, 4]


def test_packets_split_across_reads_at_every_byte() -> None:
    stream = QOS1_AB + QOS0_PROPS + CONNACK + DUP_EMPTY
    for cut in range(1, len(stream)):
        dec, sink = decoder()
        dec.feed(stream[:cut])
        dec.feed(stream[cut:])
        assert [m.payload for m in sink.messages] == [b"hi", b"x", b""], cut
        assert len(sink.packets) == 1


def test_byte_by_byte() -> None:
    dec, sink = decoder()
    for b in QOS1_AB * 3:
        dec.feed(bytes([b]))
    assert [m.mid for m in sink.messages] == [0x1234] * 3


def test_large_payload_grows_the_buffer_then_shrinks_it() -> None:
    payload = bytes(range(256)) * 1000  # remaining length 6 + 256,000 = 256,006 = 86 D0 0F
    packet = encode_publish("t", payload, qos=1, packet_id=9)
    assert packet[:4] == h("32 86 D0 0F")
    dec, sink = decoder(chunk=4096)
    dec.feed(packet + QOS1_AB)
    assert [m.payload for m in sink.messages] == [payload, b"hi"]
    assert len(dec.writable()) == 4096  # back to the normal chunk size


def test_incomplete_remaining_length_waits_for_more() -> None:
    packet = encode_publish("t", b"p" * 300, qos=0)
    dec, sink = decoder()
    dec.feed(packet[:2])  # first byte + first byte of a two-byte remaining length
    assert sink.messages == [] and dec.buffered == 2
    dec.feed(packet[2:])
    assert len(sink.messages) == 1


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (h("32 05 | 00 03 61 2F 62"), MalformedPacketError),  # QoS 1 without packet id
        (h("32 08 | 00 03 61 2F 62 | 00 00 | 00"), MalformedPacketError),  # packet id 0
        (h("38 04 | 00 01 74 | 00"), MalformedPacketError),  # QoS 0 with DUP
        (h("30 04 | 00 09 74 00"), MalformedPacketError),  # topic longer than the packet
        (h("30 05 | 00 02 C3 28 | 00"), MalformedPacketError),  # topic not UTF-8
        (h("30 05 | 00 01 74 | 05 01"), MalformedPacketError),  # properties past the packet
        (h("30 FF FF FF FF 7F"), MalformedPacketError),  # five-byte remaining length
        (h("30 06 | 00 00 | 03 23 00 01"), ProtocolViolationError),  # topic alias
        (h("30 03 | 00 00 | 00"), ProtocolViolationError),  # empty topic, no alias
    ],
)
def test_malformed_publish(data: bytes, error: type[Exception]) -> None:
    dec, sink = decoder()
    with pytest.raises(error):
        dec.feed(data)
    assert sink.messages == []


def test_qos2_publish_goes_to_the_control_handler() -> None:
    dec, sink = decoder()
    qos2 = h("34 07 | 00 01 74 | 00 05 | 00 | 78")
    dec.feed(qos2)
    assert sink.messages == [] and sink.packets == [(0x34, qos2[2:])]


def test_callback_errors_are_not_mistaken_for_malformed_packets() -> None:
    def boom(rec: Received) -> None:
        raise IndexError("a bug in the consumer")

    dec = Decoder(boom, lambda *a: None, chunk_size=1024)
    with pytest.raises(Exception) as info:
        dec.feed(QOS1_AB)
    assert not isinstance(info.value, MalformedPacketError)
    assert isinstance(info.value.__cause__, IndexError)


# behaviour against a scripted fake broker -------------------------------------------------------


class FakeBroker:
    """Accepts connections on 127.0.0.1 and runs ``script(peer, n)`` for the n-th one."""

    def __init__(
        self, script: Callable[[Peer, int], None], tls: ssl.SSLContext | None = None
    ) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._tls = tls
        self._server.settimeout(0.05)
        self.port = int(self._server.getsockname()[1])
        self._script = script
        self.connections = 0
        self.errors: list[BaseException] = []
        self._peers: list[Peer] = []
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closing:
            try:
                sock, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            peer = Peer(sock)
            self._peers.append(peer)
            t = threading.Thread(target=self._handle, args=(peer, self.connections), daemon=True)
            self._threads.append(t)
            t.start()

    def _handle(self, peer: Peer, n: int) -> None:
        try:
            if self._tls is not None:
                peer.sock = self._tls.wrap_socket(peer.sock, server_side=True)
            self._script(peer, n)
        except (OSError, EOFError):
            pass
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            peer.close()

    def close(self) -> None:
        self._closing = True
        self._thread.join(5)
        self._server.close()
        for peer in self._peers:
            peer.close()
        for t in self._threads:
            t.join(5)


class Peer:
    """The broker's side of one connection: read whole packets, write bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.settimeout(10)
        self._buf = b""

    def packet(self) -> bytes:
        """The next whole packet from the client."""
        while True:
            if len(self._buf) >= 2:
                try:
                    length, body = decode_varint(self._buf, 1, len(self._buf))
                except IndexError:
                    length, body = -1, 0
                if length >= 0 and len(self._buf) >= body + length:
                    out, self._buf = self._buf[: body + length], self._buf[body + length :]
                    return out
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("client closed")
            self._buf += data

    def handshake(self, connack: bytes = CONNACK) -> int:
        """CONNECT → ``connack`` → SUBSCRIBE → SUBACK (QoS 1); the subscribe packet id."""
        assert self.packet()[0] == 0x10
        self.sock.sendall(connack)
        sub = self.packet()
        assert sub[0] == 0x82
        self.sock.sendall(bytes([0x90, 4, sub[2], sub[3], 0, 1]))
        return (sub[2] << 8) | sub[3]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def writer(self) -> Callable[[bytes | None], None]:
        """Start this connection's one writer thread; ``post(data)`` queues bytes, sent in
        order however long the client takes to read them (``post(None)`` ends the thread).

        Two threads must not write one socket (their bytes could interleave mid-packet), and a
        plain ``sendall`` gives up after the socket timeout while a paused client reads
        nothing: the script's own thread must stay free to read the client's pings.
        """
        out: queue.Queue[bytes | None] = queue.Queue()

        def run() -> None:
            while (data := out.get()) is not None:
                view = memoryview(data)
                while view:
                    try:
                        view = view[self.sock.send(view) :]
                    except TimeoutError:
                        continue  # the client is not reading (yet): keep waiting
                    except OSError:
                        return  # the connection is gone

        threading.Thread(target=run, daemon=True).start()
        return out.put

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@pytest.fixture
def fake() -> Iterator[Callable[[Callable[[Peer, int], None]], FakeBroker]]:
    brokers: list[FakeBroker] = []

    def make(script: Callable[[Peer, int], None], tls: ssl.SSLContext | None = None) -> FakeBroker:
        b = FakeBroker(script, tls)
        brokers.append(b)
        return b

    yield make
    for b in brokers:
        b.close()


def client_for(broker: FakeBroker, inbox: list[Received], **kw: Any) -> MqttClient:
    kw.setdefault("reconnect_min_s", 0.05)
    kw.setdefault("reconnect_max_s", 0.2)
    return MqttClient("127.0.0.1", broker.port, "test-client", inbox.append, ["shg/v1/+/+/+"], **kw)


def publish_id(packet: bytes) -> bytes:
    """The packet id bytes of a QoS 1 PUBLISH with a one-byte remaining length."""
    topic_len = (packet[2] << 8) | packet[3]
    return packet[4 + topic_len : 6 + topic_len]


def wait_for(pred: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_malformed_packet_closes_with_0x81_and_reconnects(
    fake: Callable[..., FakeBroker], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[bytes] = []

    def script(peer: Peer, n: int) -> None:
        peer.handshake()
        if n == 1:
            peer.send(QOS1_AB + h("32 05 00 03 61 2F 62"))  # a good message, then a bad one
            seen.append(peer.packet())  # the client's DISCONNECT
        else:
            peer.send(QOS1_AB)
            peer.packet()

    broker = fake(script)
    inbox: list[Received] = []
    disconnects: list[str] = []
    client = client_for(broker, inbox, on_disconnect=disconnects.append)
    client.start()
    try:
        wait_for(lambda: client.generation == 2 and len(inbox) == 2)
    finally:
        client.stop()
    assert seen == [h("E0 02 81 00")]
    assert [r.generation for r in inbox] == [1, 2]
    assert client.stats.malformed_packets == 1 and client.alive
    assert len(disconnects) == 1 and "Malformed Packet" in disconnects[0]
    warnings = [r for r in caplog.records if "invalid packet" in r.getMessage()]
    assert len(warnings) == 1
    assert broker.errors == []


def test_qos2_is_refused_with_pubrec_and_counted(fake: Callable[..., FakeBroker]) -> None:
    replies: list[bytes] = []

    def script(peer: Peer, n: int) -> None:
        peer.handshake()
        peer.send(h("34 07 | 00 01 74 | 00 05 | 00 | 78") + QOS1_AB)
        replies.append(peer.packet())
        peer.packet()

    broker = fake(script)
    inbox: list[Received] = []
    client = client_for(broker, inbox)
    client.start()
    try:
        wait_for(lambda: len(replies) == 1 and len(inbox) == 1)
        assert client.stats.qos2_rejected == 1 and client.connected
    finally:
        client.stop()
    assert replies == [h("50 03 00 05 83")]  # PUBREC, id 5, Implementation specific error
    assert inbox[0].payload == b"hi"


def test_acks_go_out_in_one_write_and_stale_generations_are_dropped(
    fake: Callable[..., FakeBroker],
) -> None:
    got: list[bytes] = []

    def script(peer: Peer, n: int) -> None:
        peer.handshake()
        peer.send(QOS1_AB)
        while True:
            got.append(peer.packet())

    broker = fake(script)
    inbox: list[Received] = []
    client = client_for(broker, inbox)
    client.start()
    try:
        wait_for(lambda: len(inbox) == 1)
        assert client.ack_many(1, [1, 2, 0x1234])
        assert not client.ack_many(0, [5])
        wait_for(lambda: len(got) == 3)
    finally:
        client.stop()
    assert got[:3] == [h("40 02 00 01"), h("40 02 00 02"), h("40 02 12 34")]


def test_keepalive_pings_and_a_silent_broker_is_dropped(fake: Callable[..., FakeBroker]) -> None:
    pings: list[float] = []

    def script(peer: Peer, n: int) -> None:
        peer.handshake(h("20 06 00 00 03 13 00 02"))  # Server Keep Alive: 2 s
        if n == 1:
            pkt = peer.packet()
            pings.append(time.monotonic())
            assert pkt == h("C0 00")
            peer.send(h("D0 00"))
            assert peer.packet() == h("C0 00")  # pinged again, then we go silent
            with contextlib.suppress(EOFError):
                peer.packet()  # until the client gives up on us and closes
        else:
            peer.packet()

    broker = fake(script)
    client = client_for(broker, [], keepalive_s=60)
    started = time.monotonic()
    client.start()
    try:
        wait_for(lambda: client.generation == 2, 10)
    finally:
        client.stop()
    assert pings and 0.8 < pings[0] - started < 2.5  # half the server's keep alive
    assert client.stats.connection_losses == 1


def test_outgoing_publishes_respect_receive_maximum_and_are_resent_with_dup(
    fake: Callable[..., FakeBroker],
) -> None:
    first: list[bytes] = []
    second: list[bytes] = []

    def script(peer: Peer, n: int) -> None:
        if n == 1:
            peer.handshake(h("20 06 00 00 03 21 00 02"))  # broker's Receive Maximum: 2
            first.append(peer.packet())
            first.append(peer.packet())
            peer.sock.settimeout(0.5)
            with contextlib.suppress(TimeoutError):
                first.append(peer.packet())  # must not come: two are in flight
            # Acknowledge the first one only, then read the third, then drop the connection.
            peer.send(b"\x40\x02" + publish_id(first[0]))
            peer.sock.settimeout(5)
            first.append(peer.packet())
        else:
            peer.handshake(h("20 03 01 00 00"))  # session present
            second.append(peer.packet())
            second.append(peer.packet())
            for pkt in second:
                peer.send(b"\x40\x02" + publish_id(pkt))
            peer.packet()

    broker = fake(script)
    client = client_for(broker, [])
    client.start()
    try:
        wait_for(lambda: client.connected)
        for i in range(3):
            client.publish(f"shg/v1/s/d{i}/ack", b"ok")
        wait_for(lambda: len(second) == 2 and client.stats.published == 3, 10)
    finally:
        client.stop()
    assert len(first) == 3
    assert [p[0] for p in first] == [0x32, 0x32, 0x32]
    assert first[0][2:19] == b"\x00\x0fshg/v1/s/d0/ack"
    # Resent with DUP (0x3A), same packet ids, after the reconnect with the session present.
    assert [p[0] for p in second] == [0x3A, 0x3A]
    assert {p[2:] for p in second} == {first[1][2:], first[2][2:]}


def test_refused_connack_is_reported_and_retried(
    fake: Callable[..., FakeBroker],
) -> None:
    def script(peer: Peer, n: int) -> None:
        peer.packet()
        peer.send(h("20 03 00 86 00"))  # Bad User Name or Password

    broker = fake(script)
    refused: list[str] = []
    client = client_for(broker, [], on_refused=refused.append)
    client.start()
    try:
        wait_for(lambda: len(refused) >= 3)
        assert not client.connected and client.generation == 0
    finally:
        client.stop()
    assert refused[0] == "Bad User Name or Password (0x86)"


def test_stop_sends_a_normal_disconnect(fake: Callable[..., FakeBroker]) -> None:
    last: list[bytes] = []

    def script(peer: Peer, n: int) -> None:
        peer.handshake()
        last.append(peer.packet())

    broker = fake(script)
    disconnects: list[str] = []
    client = client_for(broker, [], on_disconnect=disconnects.append)
    client.start()
    wait_for(lambda: client.connected)
    client.stop()
    assert last == [h("E0 00")]
    assert disconnects == []  # an intentional stop is not a lost connection
    assert client.alive and client.failed is None


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_error_in_on_message_ends_the_thread_visibly(
    fake: Callable[..., FakeBroker], caplog: pytest.LogCaptureFixture
) -> None:
    def script(peer: Peer, n: int) -> None:
        peer.handshake()
        peer.send(QOS1_AB)
        peer.packet()

    def broken(rec: Received) -> None:
        raise KeyError("bug")

    broker = fake(script)
    disconnects: list[str] = []
    client = MqttClient(
        "127.0.0.1", broker.port, "c", broken, ["t"], on_disconnect=disconnects.append
    )
    caplog.set_level(logging.ERROR)
    client.start()
    try:
        wait_for(lambda: not client.alive)
    finally:
        client.stop()
    assert isinstance(client.failed, KeyError)
    assert not client.connected
    assert disconnects == ["mqtt client thread failed"]


def test_tls_session_receives_acks_and_publishes(
    fake: Callable[..., FakeBroker], tmp_path: Path
) -> None:
    """TLS: the SSL object is shared by the reader and the writers under the I/O lock."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    got: list[bytes] = []
    many = b"".join(
        encode_publish("t/x", bytes([i % 256]) * 3000, qos=1, packet_id=i) for i in range(1, 301)
    )

    def script(peer: Peer, n: int) -> None:
        peer.handshake()
        peer.send(many)
        while True:
            got.append(peer.packet())

    broker = fake(script, server_ctx)
    inbox: list[Received] = []
    client = client_for(broker, inbox, ssl_context=ssl.create_default_context(cafile=str(cert)))
    client.start()
    try:
        wait_for(lambda: len(inbox) == 300)
        assert client.ack_many(1, [r.mid for r in inbox])
        client.publish("shg/v1/s/d/ack", b"ok")
        wait_for(lambda: len(got) == 301)
    finally:
        client.stop()
    assert [r.payload[:1] for r in inbox] == [bytes([i % 256]) for i in range(1, 301)]
    assert got[:300] == [b"\x40\x02" + i.to_bytes(2, "big") for i in range(1, 301)]
    assert got[300][0] == 0x32
    assert broker.errors == []


def test_byte_budget_stops_reading_keeps_the_connection_alive_and_resumes_on_release(
    fake: Callable[..., FakeBroker],
) -> None:
    n, size, budget = 40, 100_000, 1_000_000
    pings: list[bytes] = []

    def script(peer: Peer, conn: int) -> None:
        peer.handshake(h("20 06 00 00 03 13 00 02"))  # Server Keep Alive: 2 s
        # One writer, like a broker's output queue: the PINGRESPs go out behind the messages
        # the paused client has not read, and nobody gives up while the client is paused
        # (the stream is larger than the kernel's socket buffers may hold).
        post = peer.writer()
        try:
            for i in range(n):
                post(encode_publish("shg/v1/s/d/telemetry", bytes(size), qos=1, packet_id=i + 1))
            while True:  # answer pings; acks are ignored
                try:
                    pkt = peer.packet()
                except EOFError:
                    return
                if pkt == h("C0 00"):
                    pings.append(pkt)
                    post(h("D0 00"))
        finally:
            post(None)

    broker = fake(script)
    inbox: list[Received] = []
    client = client_for(broker, inbox, keepalive_s=60, max_inflight_bytes=budget, chunk_size=65536)
    client.start()
    try:
        wait_for(lambda: client.paused, 10)
        held = len(inbox)
        assert held * size >= budget and held * size <= budget + 65536 + size
        # Two keepalive pings answered while paused: past 1.5 x 2 s, a silent connection
        # would have been dropped (waited for, not timed: the second ping may come late).
        wait_for(lambda: len(pings) >= 2, 20)
        assert len(inbox) == held and client.paused  # not a byte read meanwhile
        assert client.generation == 1 and client.connected
        assert client.inflight_bytes == held * size
        released = held * size
        client.release(released)  # the owner stored and acked them: reading resumes
        deadline = time.monotonic() + 10
        while len(inbox) < n:
            assert time.monotonic() < deadline, "not resumed"
            done = len(inbox) * size
            client.release(done - released)
            released = done
            time.sleep(0.01)
        assert client.stats.backpressure_pauses >= 1 and client.stats.connection_losses == 0
    finally:
        client.stop()
