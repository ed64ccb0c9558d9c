"""Prometheus metrics of the gateway: base units, ``_total`` counters, no per-device labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
