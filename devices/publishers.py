"""Builds the publisher the simulated devices use (the factory of :mod:`devices.transport`'s
contract, kept apart so that the contract never imports its implementations)."""

from __future__ import annotations

from devices.mqtt311 import AsyncioPublisher
from devices.paho_transport import PahoPublisher
from devices.transport import BrokerEndpoint, MqttVersion, Publisher, TransportKind

__all__ = ["make_publisher"]


def make_publisher(
    endpoint: BrokerEndpoint,
    *,
    kind: TransportKind = TransportKind.ASYNCIO,
    version: MqttVersion = MqttVersion.V311,
    keepalive_s: int = 60,
    connect_timeout_s: float = 10.0,
    max_inflight: int = 100,
) -> Publisher:
    """Build a publisher on the running loop. The asyncio transport speaks MQTT 3.1.1 only."""
    if kind is TransportKind.ASYNCIO:
        if version is not MqttVersion.V311:
            raise ValueError("the asyncio transport speaks MQTT 3.1.1 only; use paho for MQTT 5")
        return AsyncioPublisher(
            endpoint,
            keepalive_s=keepalive_s,
            connect_timeout_s=connect_timeout_s,
            max_inflight=max_inflight,
        )
    return PahoPublisher(
        endpoint,
        version=version,
        keepalive_s=keepalive_s,
        connect_timeout_s=connect_timeout_s,
        max_inflight=max_inflight,
    )
