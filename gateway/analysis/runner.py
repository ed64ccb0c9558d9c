"""The analysis runner: the synchronous core (:mod:`gateway.analysis.core`) on a worker
thread, fed through a bounded queue (see the package documentation for the flow)."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from prometheus_client import CollectorRegistry

from gateway.analysis.core import AnalysisCore, Clock
from gateway.analysis.metrics import AnalysisMetrics
from gateway.analysis.records import AnalysisError, StoreUnavailableError
from gateway.analysis.store import AnalysisStore
from gateway.ingest import StoredMessage
from gateway.settings import AnalysisSettings
from gateway.settings.kit import KitSettings
from gateway.visits.sensitivity import Sensitivity

log = logging.getLogger("gateway.analysis")


class AnalysisRunner(AnalysisCore):
    """Owns every detector's state; fed with stored messages, writes detections to a store.

    Synchronous core (used as is by replay and benchmarks): :meth:`rebuild`, :meth:`feed`,
    :meth:`advance`, :meth:`flush`. Threaded use (the gateway): :meth:`start` (rebuild, then
    the worker thread), :meth:`submit` (the ingest sink), :meth:`stop`.
    """

    def __init__(
        self,
        settings: AnalysisSettings,
        store: AnalysisStore,
        *,
        metrics_registry: CollectorRegistry | None = None,
        clock: Clock = time.time,
        on_cancel: Callable[[str, float, str | None], None] | None = None,
        sensitivity: Mapping[str, Sensitivity] | None = None,
        kit: KitSettings | None = None,
    ) -> None:
        super().__init__(
            settings,
            store,
            AnalysisMetrics(metrics_registry or CollectorRegistry(auto_describe=True)),
            clock=clock,
            on_cancel=on_cancel,
            sensitivity=sensitivity,
            kit=kit,
        )
        self._queue: queue.Queue[Sequence[StoredMessage] | None] = queue.Queue(settings.queue_size)
        self._thread = threading.Thread(target=self._run, name="analysis", daemon=True)
        self._closing = False
        self.last_beat = time.monotonic()
        self._error: BaseException | None = None
        self._congested = False

    # -- threaded use ---------------------------------------------------------------------------

    def start(self) -> None:
        """Rebuild, then start the worker thread."""
        self.rebuild()
        self._thread.start()

    def submit(self, batch: Sequence[StoredMessage]) -> None:
        """The ingest sink: hand over a committed batch; waits while the queue is full.

        Raises :class:`AnalysisError` if the runner is stopping or its worker has died."""
        if not batch:
            return
        self._check_running()
        try:
            self._queue.put_nowait(batch)
            return
        except queue.Full:
            self._m.backpressure.inc()
            if not self._congested:
                self._congested = True
                log.warning("analysis queue full; ingest waits for analysis")
        while True:
            try:
                self._queue.put(batch, timeout=0.5)
                return
            except queue.Full:
                self._check_running()

    def submit_urgent(self, batch: Sequence[StoredMessage]) -> None:
        """The ingest event lane's sink: analysed before everything queued, never waits.

        Alarms are few (the event channel), so this queue needs no bound of its own.
        Raises :class:`AnalysisError` if the runner is stopping or its worker has died."""
        if not batch:
            return
        self._check_running()
        self._urgent.append(batch)
        # Wakes an idle worker; a busy one looks at urgent batches between messages.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(())

    def _check_running(self) -> None:
        if self._closing or self._error is not None or not self._thread.is_alive():
            raise AnalysisError("the analysis runner is not running")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Analyse what is queued, write everything, stop the worker."""
        self._closing = True
        deadline = time.monotonic() + timeout_s
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:
                self._queue.put(None, timeout=0.2)  # behind everything already queued
                break
            except queue.Full:
                continue
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.error("analysis runner did not stop in time")
        self._store.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def failed(self) -> BaseException | None:
        return self._error

    def _run(self) -> None:
        try:
            while True:
                self.last_beat = time.monotonic()  # the gateway's watchdog looks at it
                timeout = min(max(self._next_check - self._clock(), 0.0), 0.2)
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    item = ()
                self._feed_urgent()
                if item is None:
                    break
                if item:
                    self.feed(item)
                    # Receive (by ingest) to analysed, of the batch's oldest message.
                    self._m.lag_seconds.observe(max(0.0, time.time() - item[0].received_at))
                depth = self._queue.qsize()
                self._m.queue_depth.set(depth)
                if self._congested and depth < self.settings.queue_size // 2:
                    self._congested = False
                    log.info("analysis caught up with ingest")
                self.advance()
            self._feed_urgent()
            self.advance()
            try:
                self.flush(force=True)
            except StoreUnavailableError:
                log.error(
                    "analysis stopped with unwritten detections; the next start recomputes them",
                    extra={"pending": len(self._pending)},
                )
            log.info("analysis runner stopped")
        except BaseException as exc:  # a bug, not bad input: fail the process loudly
            self._error = exc
            log.exception("analysis runner stopped by an unexpected error")
            raise
