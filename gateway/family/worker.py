"""The periodic release of findings held back by away periods that ran out
(:func:`gateway.family.release.release_ended`) as a polling worker on the API pool."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import ConnectionPool

from gateway.family.release import release_ended
from gateway.pollworker import PollingWorker

log = logging.getLogger(__name__)


class AwayReleaser(PollingWorker):
    """Every ``poll_interval_s``: findings of ended away periods still going on raise."""

    def __init__(
        self,
        pool: ConnectionPool[Any],
        *,
        poll_interval_s: float,
        sites: Sequence[str] | None = None,
    ) -> None:
        super().__init__("away release", poll_interval_s=poll_interval_s, batch_size=1 << 30,
                         logger=log)  # fmt: skip
        self._pool = pool
        self._sites = sites  # a cell's sites (gateway.cells.served_sites); None: all

    def _release(self) -> int:
        with self._pool.connection() as conn:
            return release_ended(conn, datetime.now(UTC), self._sites)

    async def run_once(self) -> int:
        return await asyncio.to_thread(self._release)
