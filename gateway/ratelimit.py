"""Per-device rate limit: token buckets for messages and for bytes (pure logic, thread-safe).

A device may send ``rate_per_s`` messages a second on average, bursts of ``burst``, and
``bytes_per_s`` payload bytes a second, bursts of ``burst_bytes``. The byte bucket may go into
debt: a message is allowed while the bucket is not empty, then its size is taken, so one message
larger than the burst still passes once in a while (the payload cap bounds its size) and the
debt is paid back before the next. The ingest pipeline asks :meth:`DeviceRateLimiter.allow`
once per message, before decoding it; what happens to a message over the limit is its rule
(:mod:`gateway.ingest`: telemetry and state are dropped and counted, valid events stored).
Time is passed in, so the limiter is tested without clocks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    messages: float
    nbytes: float
    at: float  # when the tokens were last brought up to date


class DeviceRateLimiter:
    """Token buckets keyed by device id. Memory: one small bucket per device seen (the
    callers only ask for registered devices, so the set is bounded by the registry)."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        bytes_per_s: float = float("inf"),
        burst_bytes: int = 2**62,
    ) -> None:
        if rate_per_s <= 0 or burst < 1 or bytes_per_s <= 0 or burst_bytes < 1:
            raise ValueError("rates must be > 0 and bursts >= 1")
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.bytes_per_s = bytes_per_s
        self.burst_bytes = float(burst_bytes)
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()  # two ingest writer threads share the buckets

    def allow(self, device: str, now: float, nbytes: int = 0) -> bool:
        """Take the tokens of one message of ``nbytes`` from ``device`` at ``now`` (seconds);
        False: over the limit (nothing is taken)."""
        with self._lock:
            b = self._buckets.get(device)
            if b is None:
                b = self._buckets[device] = _Bucket(self.burst, self.burst_bytes, now)
            elif now > b.at:
                elapsed = now - b.at
                b.messages = min(self.burst, b.messages + elapsed * self.rate_per_s)
                b.nbytes = min(self.burst_bytes, b.nbytes + elapsed * self.bytes_per_s)
                b.at = now
            if b.messages >= 1.0 and b.nbytes > 0.0:
                b.messages -= 1.0
                b.nbytes -= nbytes
                return True
            return False

    def describe(self) -> str:
        """The limit in words, for dead-letter details."""
        text = f"{self.rate_per_s:g} msg/s, burst {self.burst:g}"
        if self.bytes_per_s != float("inf"):
            text += f"; {self.bytes_per_s:g} B/s, burst {self.burst_bytes:g} B"
        return text

    def forget(self, device: str) -> None:
        """Drop a device's bucket (e.g. decommissioned)."""
        with self._lock:
            self._buckets.pop(device, None)
