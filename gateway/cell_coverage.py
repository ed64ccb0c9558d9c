"""Cell coverage: every site with devices is served by exactly one live cell (issue 15 §5).

Cells partition the sites by configuration (``[cell] sites``), one file per cell: nothing but
this check notices a site registered in the shared registry and listed in no cell's file, or
listed in two. A site no cell serves is heard by nobody: its devices keep retrying events the
gateway never acknowledges, and no detector sees them go silent. A site two cells serve gets
every alarm raised twice.

So the active gateway of each cell claims its sites in ``cell_sites`` every
``cell.coverage_interval_s`` and reads back the sites with active devices that no cell claimed
within three intervals, and the sites two live cells claim. Both are Prometheus gauges with
alert rules (deploy/prometheus/alerts.yml) and are logged once per change, with site ids only.
Without a cell the gateway serves every site: the check does not run and both gauges stay 0.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import psycopg
from prometheus_client import CollectorRegistry, Gauge

from gateway.settings import DatabaseSettings
from gateway.settings.cell import CellSettings
from gateway.storage import cell_coverage

log = logging.getLogger("gateway.cell_coverage")

LIVE_INTERVALS = 3.0
"""A claim renewed within this many intervals is live (one missed renewal is not a gap)."""


@dataclass(frozen=True, slots=True)
class Coverage:
    unserved: tuple[str, ...]
    """Sites with active devices and no live claim: heard by nobody."""
    double: tuple[str, ...]
    """Sites claimed by two live cells: raised twice."""


class CoverageWatch:
    """Claims one cell's sites and watches the coverage of all (run by the active gateway).

    Made by every gateway, so that the gauges are always exported (0 without a cell);
    :meth:`check_once` and :meth:`run` need a cell."""

    def __init__(
        self, database: DatabaseSettings, cell: CellSettings, registry: CollectorRegistry
    ) -> None:
        self._database = database
        self._cell = cell
        self.last = Coverage((), ())
        self._unserved = Gauge(
            "safehome_cell_unserved_sites",
            "Sites with active devices that no live cell serves (heard by nobody)",
            registry=registry,
        )
        self._double = Gauge(
            "safehome_cell_double_served_sites",
            "Sites that two live cells serve (their alarms raised twice)",
            registry=registry,
        )

    @property
    def fresh_s(self) -> float:
        return LIVE_INTERVALS * self._cell.coverage_interval_s

    def check_once(self) -> Coverage:
        """Renew the claim, read the coverage, update the gauges; log when it changed."""
        if not self._cell.enabled:
            raise ValueError("cell coverage needs a cell (cell.id)")
        with psycopg.connect(self._database.conninfo(), autocommit=True) as conn:
            cell_coverage.claim(conn, self._cell.id, self._cell.sites)
            now = Coverage(
                tuple(cell_coverage.unserved(conn, self.fresh_s)),
                tuple(cell_coverage.double_served(conn, self.fresh_s)),
            )
        self._unserved.set(len(now.unserved))
        self._double.set(len(now.double))
        self._log_change(now)
        self.last = now
        return now

    def _log_change(self, now: Coverage) -> None:
        before = self.last
        if now.unserved != before.unserved:
            if now.unserved:
                log.error("sites served by no cell: nobody hears their alarms",
                          extra={"cell": self._cell.id, "sites": list(now.unserved)})  # fmt: skip
            else:
                log.info("every site with devices is served by a cell",
                         extra={"cell": self._cell.id})  # fmt: skip
        if now.double != before.double:
            if now.double:
                log.error("sites served by two cells: their alarms are raised twice",
                          extra={"cell": self._cell.id, "sites": list(now.double)})  # fmt: skip
            else:
                log.info("no site is served by two cells", extra={"cell": self._cell.id})

    async def run(self) -> None:
        """Check every ``cell.coverage_interval_s`` until cancelled."""
        failing = False
        while True:
            try:
                await asyncio.to_thread(self.check_once)
                failing = False
            except psycopg.OperationalError as exc:
                if not failing:
                    log.warning("cell coverage check skipped: database unavailable",
                                extra={"error": type(exc).__name__})  # fmt: skip
                failing = True
            await asyncio.sleep(self._cell.coverage_interval_s)
