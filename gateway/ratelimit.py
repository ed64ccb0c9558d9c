"""Per-device message rate limit: one token bucket per device (pure logic, thread-safe).

A device may send ``rate_per_s`` messages a second on average and bursts of ``burst``. The
ingest pipeline asks :meth:`DeviceRateLimiter.allow` once per message, before decoding it;
what it does with a message over the limit is its own rule (:mod:`gateway.ingest`: telemetry
and state are dropped and counted, valid events are stored anyway). Time is passed in, so
the limiter is tested without clocks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float  # when ``tokens`` was last brought up to date


class DeviceRateLimiter:
    """Token buckets keyed by device id. Memory: one small bucket per device seen (the
    callers only ask for registered devices, so the set is bounded by the registry)."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()  # two ingest writer threads share the buckets

    def allow(self, device: str, now: float) -> bool:
        """Take a token for one message of ``device`` at ``now`` (seconds); False: over."""
        with self._lock:
            b = self._buckets.get(device)
            if b is None:
                self._buckets[device] = _Bucket(self.burst - 1.0, now)
                return True
            if now > b.at:
                b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate_per_s)
                b.at = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return True
            return False

    def forget(self, device: str) -> None:
        """Drop a device's bucket (e.g. decommissioned)."""
        with self._lock:
            self._buckets.pop(device, None)
