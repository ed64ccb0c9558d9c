"""The loop shared by the workers that claim due rows from the database (escalation timers,
notification outbox): handle a batch, go again at once while batches come back full, else
sleep until woken (:meth:`PollingWorker.wake`, e.g. right after an enqueue committed) or
until the poll interval ends. A database outage is logged once when it starts and once when
it ends, and retried every poll interval meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

import psycopg


class PollingWorker(ABC):
    """Subclasses implement :meth:`run_once`; ``name`` prefixes the outage log lines, which go
    to the subclass's ``logger``."""

    def __init__(
        self, name: str, *, poll_interval_s: float, batch_size: int, logger: logging.Logger
    ) -> None:
        self._worker_name = name
        self._log = logger
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._db_down = False

    def wake(self) -> None:
        """Look for due rows now."""
        self._wake.set()

    @abstractmethod
    async def run_once(self) -> int:
        """Claim and handle one batch of due rows; return how many were claimed."""

    async def run(self) -> None:
        """Work until cancelled."""
        while True:
            try:
                handled = await self.run_once()
                if self._db_down:
                    self._db_down = False
                    self._log.info("%s: database back", self._worker_name)
            except psycopg.OperationalError as exc:
                handled = 0
                if not self._db_down:
                    self._db_down = True
                    self._log.warning(
                        "%s: database unavailable",
                        self._worker_name,
                        extra={"error": type(exc).__name__},
                    )
            if handled >= self._batch_size:
                continue  # more may be due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
            self._wake.clear()
