"""Topic filters and broker ACL patterns come from devices.protocol only (issue 14 §2)."""

from __future__ import annotations

import pytest

from devices.protocol import (
    ProtocolError,
    device_topic_prefix,
    downlink_filters,
    protocol_filter,
    subscription_filter,
    topic_prefix_of,
    uplink_filters,
)
from gateway.brokerauth import DeviceAccount, ServiceAccount, render_acl


def test_filters_of_a_prefix() -> None:
    assert subscription_filter("shg") == "shg/v1/+/+/+"
    assert protocol_filter("shg") == "shg/v1/#"
    assert downlink_filters("shg") == (
        "shg/v1/+/+/ack",
        "shg/v1/+/+/config",
        "shg/v1/+/+/command",
    )
    assert uplink_filters("p", "s1") == (
        "p/v1/s1/+/event",
        "p/v1/s1/+/telemetry",
        "p/v1/s1/+/state",
    )
    with pytest.raises(ProtocolError):
        protocol_filter("bad+prefix")


def test_topic_prefix_of() -> None:
    assert topic_prefix_of("shg/v1/s/d/event") == "shg"
    assert topic_prefix_of("a/b/v1/s/d/event") == "a/b"
    assert topic_prefix_of("/v1/s/d/event") == ""
    assert topic_prefix_of("nothing") == ""


def test_the_broker_acl_is_built_from_the_protocol_filters() -> None:
    acl = render_acl(
        "shg",
        ServiceAccount("gateway", "h"),
        [DeviceAccount("dev-1", "site-1", "h")],
        extra=[ServiceAccount("tool", "h", can_inject=True)],
    )
    lines = acl.splitlines()
    at = lines.index("user gateway")
    gateway = lines[at + 1 : at + 2 + len(downlink_filters("shg"))]
    assert gateway == [
        f"topic read {protocol_filter('shg')}",
        *(f"topic write {f}" for f in downlink_filters("shg")),
    ]
    assert f"topic write {protocol_filter('shg')}" in lines  # the injecting tool
    assert "topic write shg/v1/site-1/dev-1/event" in lines


def test_device_topic_prefix() -> None:
    assert device_topic_prefix("shg", "site-1", "dev-1") == "shg/v1/site-1/dev-1"
    with pytest.raises(ProtocolError):
        device_topic_prefix("shg", "site/1", "dev-1")
