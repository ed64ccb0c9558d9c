"""The analysis store of a cell's gateway: only the cell's sites (gateway.cells).

A cell's gateway receives only its sites' messages; its analysis must not know the other
sites' devices either, or it would take them for silent devices, and must not restore or
reconcile another site's open findings. :class:`CellStore` wraps the runner's store and narrows
what it reads (registry, rebuild state) to the served sites; writes pass through unchanged.
Without a cell the runner gets its store as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.analysis.records import (
    DetectionRecord,
    RebuildState,
    RegistrySnapshot,
    RoutineDay,
    VitalsDay,
)
from gateway.analysis.store import AnalysisStore
from gateway.cells import CellSettings
from gateway.settings import AnalysisSettings


class CellStore:
    """``inner`` seen from a cell serving ``sites`` (an :class:`AnalysisStore`)."""

    def __init__(self, inner: AnalysisStore, sites: Sequence[str]) -> None:
        self._inner = inner
        self.sites = frozenset(sites)

    def _narrow(self, snapshot: RegistrySnapshot) -> RegistrySnapshot:
        return RegistrySnapshot(
            devices={d: i for d, i in snapshot.devices.items() if i.site_id in self.sites},
            residents={r: i for r, i in snapshot.residents.items() if i.site_id in self.sites},
            utc_offsets={s: o for s, o in snapshot.utc_offsets.items() if s in self.sites},
        )

    def registry(self) -> RegistrySnapshot:
        return self._narrow(self._inner.registry())

    def load(self, now: float, settings: AnalysisSettings) -> RebuildState:
        state = self._inner.load(now, settings)
        registry = self._narrow(state.registry)
        subjects = set(registry.devices) | set(registry.residents)

        def ours(rec: DetectionRecord) -> bool:
            return rec.site_id in self.sites if rec.site_id else rec.subject in subjects

        return RebuildState(
            registry=registry,
            routine_days=state.routine_days,  # both read only for subjects of the registry
            vitals_days=state.vitals_days,
            open_detections=[r for r in state.open_detections if ours(r)],
            devices={d: r for d, r in state.devices.items() if d in registry.devices},
            history=[sm for sm in state.history if sm.device.site_id in self.sites],
            catch_up_from=state.catch_up_from,
        )

    def write(
        self,
        detections: Sequence[DetectionRecord],
        routine_days: Sequence[RoutineDay],
        vitals_days: Sequence[VitalsDay],
    ) -> int:
        return self._inner.write(detections, routine_days, vitals_days)

    def close(self) -> None:
        self._inner.close()


def scoped(store: AnalysisStore, cell: CellSettings) -> AnalysisStore:
    """The store the runner of ``cell``'s gateway uses (``store`` itself without a cell)."""
    return CellStore(store, cell.sites) if cell.enabled else store
