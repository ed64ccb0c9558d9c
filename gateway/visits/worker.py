"""The periodic visiting-care sweep (:func:`gateway.visits.service.sweep`) as a polling
worker: every ``poll_interval_s`` it tells supervisors of newly overdue visits and opens
door-knock tasks for silent homes; with ``notices`` it also queues the day's overdue notices
to supervisors through the outbox (:mod:`gateway.visits.notices`). The sweep is idempotent,
so a takeover (failover) or a restart neither repeats a notice nor duplicates a task.

The runtime starts it next to its other workers, e.g.
``VisitsSweeper(runtime.api_pool, load_visits_config()).run()`` as a task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from psycopg_pool import ConnectionPool

from gateway.pollworker import PollingWorker
from gateway.visits.config import VisitsConfig
from gateway.visits.notices import enqueue_overdue_notices
from gateway.visits.service import sweep

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 300.0


class VisitsSweeper(PollingWorker):
    """Runs the sweep on a pooled (sync, autocommit) connection in a worker thread."""

    def __init__(
        self,
        pool: ConnectionPool[Any],
        cfg: VisitsConfig,
        *,
        poll_interval_s: float = DEFAULT_INTERVAL_S,
        notices: bool = False,
        sites: Sequence[str] | None = None,
    ) -> None:
        super().__init__("visits sweep", poll_interval_s=poll_interval_s, batch_size=1 << 30,
                         logger=log)  # fmt: skip
        self._pool = pool
        self._cfg = cfg
        self._notices = notices  # overdue notices through the outbox (gateway.visits.notices)
        self._sites = sites  # a cell's sites only (gateway.cells); None: every site

    def _sweep(self) -> int:
        with self._pool.connection() as conn:
            result = sweep(conn, self._cfg, sites=self._sites)
            queued = (
                enqueue_overdue_notices(conn, self._cfg, sites=self._sites) if self._notices else 0
            )
        return result.notices + result.tasks_opened + queued

    async def run_once(self) -> int:
        """One sweep; how many notices and tasks it made."""
        return await asyncio.to_thread(self._sweep)
