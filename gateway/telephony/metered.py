"""Click-to-call measured: a :class:`TelephonyAdapter` wrapper that counts each attempt
(``safehome_calls_total{adapter, result}``: ``placed`` or ``failed``) and observes how long
the adapter took to place it (``safehome_call_provider_seconds{adapter}``: the provider's
request for Aliyun; next to nothing for the desk phone, which sends nothing), and the count
of recorded outcomes (the same counter, ``result`` the outcome code). Labels are the adapter
and a fixed vocabulary: never a number, a name or an id."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from gateway.telephony.adapter import CallRequest, Channel, Placement, TelephonyAdapter
from gateway.telephony.phones import CallOutcome

if TYPE_CHECKING:
    from gateway.metrics import Metrics


class MeteredAdapter:
    """``inner`` with every placement counted and timed."""

    def __init__(self, inner: TelephonyAdapter, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    @property
    def channel(self) -> Channel:
        return self._inner.channel

    @property
    def needs_caller_phone(self) -> bool:
        return self._inner.needs_caller_phone

    def place(self, request: CallRequest) -> Placement:
        """Place through ``inner``; count the result and observe the time taken."""
        start = time.monotonic()
        placement = self._inner.place(request)
        elapsed = time.monotonic() - start
        channel = self._inner.channel
        self._metrics.call_provider_seconds.labels(adapter=channel).observe(elapsed)
        self._metrics.calls.labels(adapter=channel, result=placement.status).inc()
        return placement


def count_outcome(metrics: Metrics | None, adapter: str, outcome: CallOutcome) -> None:
    """Count one recorded outcome (``result`` = its code) of a call through ``adapter``."""
    if metrics is not None:
        metrics.calls.labels(adapter=adapter, result=outcome.value).inc()
