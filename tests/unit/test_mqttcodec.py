"""MQTT 3.1.1 side of devices.mqttcodec (the simulated devices and broker sync's login probe),
against bytes written out by hand from the MQTT 3.1.1 specification (OASIS, 2014): §3.1
CONNECT, §3.3 PUBLISH, §3.8 SUBSCRIBE. The MQTT 5 side is in test_mqttclient.py."""

from __future__ import annotations

import pytest

from devices.mqttcodec import (
    MQTT311,
    MalformedPacketError,
    decode_publish_311,
    encode_connect,
    encode_disconnect,
    encode_pubacks,
    encode_publish,
    encode_subscribe,
    split_frame,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace("|", " "))


def test_connect_311_clean_session_credentials_no_will() -> None:
    """Broker sync's probe: protocol level 4, flags 0xC2 (user, password, clean), keepalive 10."""
    packet = encode_connect(
        "c", username="u", password=b"pw", keepalive_s=10, clean_start=True, protocol_level=MQTT311
    )
    body = h("00 04 4D 51 54 54 | 04 | C2 | 00 0A | 00 01 63 | 00 01 75 | 00 02 70 77")
    assert packet == bytes((0x10, len(body))) + body


def test_connect_311_will_sits_between_client_id_and_username() -> None:
    packet = encode_connect(
        "c",
        username="u",
        password=b"p",
        keepalive_s=60,
        clean_start=True,
        will_topic="w",
        will_payload=b"x",
        will_qos=1,
        will_retain=True,
        protocol_level=MQTT311,
    )
    body = h(
        "00 04 4D 51 54 54 | 04 | EE | 00 3C | 00 01 63 | 00 01 77 | 00 01 78 | 00 01 75 | 00 01 70"
    )
    assert packet == bytes((0x10, len(body))) + body


def test_connect_5_will_has_an_empty_will_property_list() -> None:
    packet = encode_connect("c", keepalive_s=0, will_topic="w", will_payload=b"")
    body = h("00 04 4D 51 54 54 | 05 | 04 | 00 00 | 00 | 00 01 63 | 00 | 00 01 77 | 00 00")
    assert packet == bytes((0x10, len(body))) + body


def test_subscribe_and_publish_311_have_no_property_lists() -> None:
    assert encode_subscribe(7, [("a/b", 1)], protocol_level=MQTT311) == h(
        "82 08 | 00 07 | 00 03 61 2F 62 | 01"
    )
    assert encode_publish("t", b"P", qos=1, packet_id=2, protocol_level=MQTT311) == h(
        "32 06 | 00 01 74 | 00 02 | 50"
    )
    assert encode_publish("t", b"", protocol_level=MQTT311) == h("30 03 00 01 74")
    with pytest.raises(ValueError, match=r"3\.1\.1"):
        encode_subscribe(1, [("a", 0x15)], protocol_level=MQTT311)


def test_disconnect_and_puback_are_the_same_bytes_in_both_versions() -> None:
    assert encode_disconnect() == h("E0 00")
    assert encode_pubacks([1, 0x1234]) == h("40 02 00 01 | 40 02 12 34")


def test_decode_publish_311() -> None:
    assert decode_publish_311(0x32, h("00 01 74 | 01 02 | 50 51")) == ("t", 0x0102, b"PQ")
    assert decode_publish_311(0x30, h("00 01 74 | 50")) == ("t", 0, b"P")
    with pytest.raises(MalformedPacketError):
        decode_publish_311(0x32, h("00 01 74 | 01"))
    with pytest.raises(MalformedPacketError):
        decode_publish_311(0x30, h("00 01 FF"))


def test_split_frame_waits_for_the_remaining_length_and_reports_the_body() -> None:
    assert split_frame(h("30"), 0, 1) is None
    assert split_frame(h("30 80"), 0, 2) is None
    assert split_frame(h("30 80 01"), 0, 3) == (3, 131)
    assert split_frame(bytearray(h("90 03 00 01 00")), 0, 5) == (2, 5)
    with pytest.raises(MalformedPacketError):
        split_frame(h("30 80 80 80 80 01"), 0, 6)
