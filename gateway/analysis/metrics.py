"""The analysis runner's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AnalysisMetrics:
    """The runner's Prometheus metrics (no per-device or per-resident labels)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.messages = Counter(
            "safehome_analysis_messages", "Stored messages analysed", registry=r
        )
        self.detections = Counter(
            "safehome_analysis_detections",
            "Detections written (state: raised or resolved)",
            ["kind", "state"],
            registry=r,
        )
        self.duplicates = Counter(
            "safehome_analysis_duplicates",
            "Detections computed again (start-up catch-up) and already stored",
            registry=r,
        )
        self.continued = Counter(
            "safehome_analysis_continued",
            "Raises taken as the continuation of a condition already open (after a restart)",
            registry=r,
        )
        self.fall_candidates = Counter(
            "safehome_analysis_fall_candidates",
            "Falls found in accelerometer signals (before fusion and confirmation)",
            registry=r,
        )
        self.falls_cancelled = Counter(
            "safehome_analysis_falls_cancelled",
            "Suspected falls the resident cancelled within the window",
            registry=r,
        )
        self.checks = Counter("safehome_analysis_checks", "Periodic detector checks", registry=r)
        self.backpressure = Counter(
            "safehome_analysis_backpressure",
            "Times the ingest writer waited for room in the analysis queue",
            registry=r,
        )
        self.store_errors = Counter(
            "safehome_analysis_store_errors", "Failed writes to the store (retried)", registry=r
        )
        self.queue_depth = Gauge(
            "safehome_analysis_queue_batches", "Stored batches waiting for analysis", registry=r
        )
        self.lag_seconds = Histogram(
            "safehome_analysis_lag_seconds",
            "MQTT receive to analysed, per batch (its oldest message)",
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
        )
