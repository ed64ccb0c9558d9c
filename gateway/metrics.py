"""Prometheus metrics of the gateway: base units, ``_total`` counters, no per-device labels."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.mqttclient import ClientStats

_LATENCY_BUCKETS = (
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip


class Metrics:
    """All gateway metrics on their own registry (several gateways may share a test process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter(
            "safehome_ingest_messages", "MQTT messages received", ["channel"], registry=r
        )
        self.rows = Counter(
            "safehome_ingest_rows", "Rows stored (duplicates excluded)", ["table"], registry=r
        )
        self.duplicates = Counter(
            "safehome_ingest_duplicates",
            "Messages already stored (redelivery or retry)",
            registry=r,
        )
        self.dead_letters = Counter(
            "safehome_ingest_dead_letters",
            "Messages rejected to dead letters",
            ["reason"],
            registry=r,
        )
        self.out_of_order = Counter(
            "safehome_ingest_out_of_order",
            "Messages whose sequence number is below one already seen from the device",
            registry=r,
        )
        self.batches = Counter("safehome_ingest_batches", "Committed batches", registry=r)
        self.stale_acks = Counter(
            "safehome_ingest_stale_acks",
            "Acks skipped because the message came on an earlier broker connection",
            registry=r,
        )
        self.commit_seconds = Histogram(
            "safehome_ingest_commit_seconds",
            "Time to store one batch",
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.lag_seconds = Histogram(
            "safehome_ingest_lag_seconds",
            "Device timestamp to database commit, per message",
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.event_lane_seconds = Histogram(
            "safehome_ingest_event_lane_seconds",
            "Event lane: MQTT receive to database commit, per device event",
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.queue_depth = Gauge(
            "safehome_ingest_queue_depth", "Messages received and not yet stored", registry=r
        )
        self.db_up = Gauge("safehome_database_up", "1 while the database is reachable", registry=r)
        self.broker_up = Gauge("safehome_broker_up", "1 while connected to the broker", registry=r)
        self.mqtt_inflight_bytes = Gauge(
            "safehome_mqtt_inflight_bytes",
            "Payload bytes received from the broker and not yet stored and acked (byte budget)",
            registry=r,
        )
        self.mqtt_backpressure_pauses = Gauge(
            "safehome_mqtt_backpressure_pauses",
            "Times reading from the broker stopped because the byte budget was used (total)",
            registry=r,
        )
        self.db_outages = Counter(
            "safehome_database_outages", "Times the database became unreachable", registry=r
        )
        self.page_acks = Counter(
            "safehome_paging_acks",
            "Page acknowledgements from the message itself, by way (link, sms) and result",
            ["via", "result"],
            registry=r,
        )
        # Click-to-call (gateway.telephony.metered): attempts and outcomes, provider time.
        self.calls = Counter(
            "safehome_calls",
            "Calls by adapter and result (placed, failed, or the outcome recorded)",
            ["adapter", "result"],
            registry=r,
        )
        self.call_provider_seconds = Histogram(
            "safehome_call_provider_seconds",
            "Time the telephony adapter took to place one call (the provider request)",
            ["adapter"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        # process_* (CPU, memory, open files, start time) and python_info.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r, platform=None)


_CLIENT_STATS_HELP = {
    "connects": "Accepted connections to the broker",
    "refused": "Connections the broker refused (CONNACK error)",
    "connection_losses": "Accepted connections that ended unexpectedly",
    "malformed_packets": "Malformed packets from the broker",
    "protocol_errors": "Protocol errors of the broker",
    "qos2_rejected": "QoS 2 messages refused (the gateway subscribes at QoS 1)",
    "subscriptions_refused": "Subscriptions the broker refused",
    "published": "Messages the gateway published (acks, configuration)",
    "publish_refused": "Publishes the broker refused",
    "publish_dropped": "Publishes dropped (queue of the disconnected client full)",
}


class ClientStatsCollector(Collector):
    """The MQTT client's own counters (gateway.mqttclient.ClientStats) as
    ``safehome_mqtt_client_<name>_total``; nothing while no native client runs."""

    def __init__(self, stats: Callable[[], ClientStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        if stats is None:
            return
        for field in dataclasses.fields(stats):
            help_text = _CLIENT_STATS_HELP.get(field.name, field.name.replace("_", " "))
            family = CounterMetricFamily(f"safehome_mqtt_client_{field.name}", help_text)
            family.add_metric([], float(getattr(stats, field.name)))
            yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())
