"""Where the runner's output goes and its durable state comes from.

:class:`AnalysisStore` is the plug point; :class:`PostgresStore` is the production store
(its SQL is in :mod:`gateway.storage.analysis` and, for the start-up replay,
:mod:`gateway.storage.analysis_history`), :class:`MemoryStore` the in-memory one for replay,
benchmarks and tests (a real implementation with the same rules).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

import psycopg

import gateway.storage.analysis as sql
import gateway.storage.analysis_history as history_sql
from analytics.routine import DaySummary
from analytics.vitals import VitalsParams
from devices.protocol import DeviceKind
from gateway.analysis.records import (
    ONE_SHOT,
    Conn,
    DetectionRecord,
    RebuildState,
    RegistrySnapshot,
    RoutineDay,
    StoredHook,
    StoreUnavailableError,
    VitalsDay,
    utc,
)
from gateway.ingest import StoredMessage
from gateway.settings import AnalysisSettings, DatabaseSettings

CancelHook = Callable[[Conn, str, float, str | None], None]
"""Called with (connection, resident id, device time, device id) of a resident's cancel."""

_LAST_SEEN_LOOKBACK_S: Final = 30 * 86400.0
_ROUTINE_DAYS_KEPT: Final = 45

__all__ = ["AnalysisStore", "CancelHook", "MemoryStore", "PostgresStore", "StoredHook"]


class AnalysisStore(Protocol):
    """Where the runner's output goes and its durable state comes from (plug point)."""

    def load(self, now: float, settings: AnalysisSettings) -> RebuildState:
        """What the runner needs to rebuild its state at ``now``."""
        ...

    def registry(self) -> RegistrySnapshot:
        """The current registry (refreshed periodically by the runner)."""
        ...

    def write(
        self,
        detections: Sequence[DetectionRecord],
        routine_days: Sequence[RoutineDay],
        vitals_days: Sequence[VitalsDay],
    ) -> int:
        """Store everything in one transaction; return how many detections were new.

        Raises :class:`StoreUnavailableError` when the store cannot be reached (the caller
        retries the same records later)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class MemoryStore:
    """The store kept in memory, for replay, benchmarks and tests.

    Same rules as the database: a detection is stored once per identity, a resolution
    closes its raise, instants are closed when raised, day rows are upserted. It holds no
    raw streams, so a rebuild from it restores the registry, day rows and open conditions.
    """

    def __init__(self, registry: RegistrySnapshot) -> None:
        self._registry = registry
        self.detections: list[DetectionRecord] = []
        """Stored detections in the order they were written."""
        self.routine_days: dict[tuple[str, int], DaySummary] = {}
        self.vitals_days: dict[tuple[str, int], VitalsDay] = {}
        self._identities: set[tuple[str, str, str, int, bool]] = set()
        self._open: dict[tuple[str, str, str, int], DetectionRecord] = {}

    def load(self, now: float, settings: AnalysisSettings) -> RebuildState:
        days: dict[str, list[DaySummary]] = {}
        for (subject, _), summary in sorted(self.routine_days.items()):
            days.setdefault(subject, []).append(summary)
        return RebuildState(
            registry=self._registry,
            routine_days=days,
            vitals_days=list(self.vitals_days.values()),
            open_detections=list(self._open.values()),
        )

    def registry(self) -> RegistrySnapshot:
        return self._registry

    def write(
        self,
        detections: Sequence[DetectionRecord],
        routine_days: Sequence[RoutineDay],
        vitals_days: Sequence[VitalsDay],
    ) -> int:
        new = 0
        for rec in detections:
            identity = rec.identity
            if rec.continued or identity in self._identities:
                continue
            self._identities.add(identity)
            self.detections.append(rec)
            new += 1
            episode = identity[:4]
            if rec.resolved:
                self._open.pop(episode, None)
            elif rec.kind not in ONE_SHOT:
                self._open[episode] = rec
        for day in routine_days:
            self.routine_days[(day.subject, day.summary.day)] = day.summary
        for vd in vitals_days:
            self.vitals_days[(vd.subject, vd.day)] = vd
        return new

    def close(self) -> None:
        """Nothing to release."""


class PostgresStore:
    """The store in the gateway's database (tables of migration ``0003_detections``).

    Owns one connection, used by one thread at a time (the runner's start-up, then its
    worker). Connection failures raise :class:`StoreUnavailableError`; the next call
    reconnects.
    """

    def __init__(
        self,
        settings: DatabaseSettings,
        *,
        on_stored: StoredHook | None = None,
        on_cancel: CancelHook | None = None,
    ) -> None:
        self._settings = settings
        self._conn: Conn | None = None
        # The incident workflow's hooks (gateway.escalation.intake): ``on_stored`` runs in
        # the transaction that stores detections, with the rows really inserted, so a
        # detection is stored if and only if the workflow took it; ``on_cancel`` receives
        # the resident's "I'm OK" (see :meth:`cancel`).
        self._on_stored = on_stored
        self._on_cancel = on_cancel

    def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._settings.conninfo(), autocommit=True)
        return self._conn

    def _run(self, fn: Callable[[Conn], Any]) -> Any:
        try:
            return fn(self._connection())
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self.close()
            raise StoreUnavailableError(f"database unavailable: {type(exc).__name__}") from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- registry -------------------------------------------------------------------------

    def registry(self) -> RegistrySnapshot:
        snapshot: RegistrySnapshot = self._run(sql.load_registry)
        return snapshot

    # -- rebuild --------------------------------------------------------------------------

    def load(self, now: float, settings: AnalysisSettings) -> RebuildState:
        state: RebuildState = self._run(lambda conn: self._load(conn, now, settings))
        return state

    @staticmethod
    def _load(conn: Conn, now: float, s: AnalysisSettings) -> RebuildState:
        registry = sql.load_registry(conn)
        devices = registry.devices
        today = math.floor(now / 86400.0)
        catch_from = utc(now - s.catch_up_s)
        events_from = utc(now - max(s.rebuild_events_s, s.catch_up_s))
        samples_from = utc(now - max(s.rebuild_samples_s, s.catch_up_s))
        beds = [d for d, i in devices.items() if i.kind is DeviceKind.BED_SENSOR]
        others = [d for d, i in devices.items() if i.kind is not DeviceKind.BED_SENSOR]
        history: list[StoredMessage] = [
            *history_sql.sparse_readings(conn, devices, others, events_from, catch_from),
            *history_sql.recent_readings(conn, devices, catch_from),
            *history_sql.thinned_vitals(
                conn, devices, beds, samples_from, catch_from, step_s=s.rebuild_sample_step_s
            ),
            *history_sql.events(conn, devices, events_from),
            *history_sql.states(conn, devices, events_from),
            *history_sql.accel(conn, devices, catch_from),
        ]
        history.sort(key=lambda sm: sm.received_at)
        return RebuildState(
            registry=registry,
            routine_days=sql.load_routine_days(conn, today - _ROUTINE_DAYS_KEPT),
            vitals_days=sql.load_vitals_days(conn, today - VitalsParams().baseline_days - 2),
            open_detections=sql.load_open_detections(conn),
            devices=sql.load_last_seen(conn, utc(now - _LAST_SEEN_LOOKBACK_S)),
            history=history,
            catch_up_from=now - s.catch_up_s,
        )

    # -- output ---------------------------------------------------------------------------

    def write(
        self,
        detections: Sequence[DetectionRecord],
        routine_days: Sequence[RoutineDay],
        vitals_days: Sequence[VitalsDay],
    ) -> int:
        new: int = self._run(
            lambda conn: sql.write_output(
                conn, detections, routine_days, vitals_days, self._on_stored
            )
        )
        return new

    def cancel(self, resident_id: str, at: float, device_id: str | None) -> None:
        """Hand the resident's "I'm OK" (device time ``at``) to the ``on_cancel`` hook."""
        hook = self._on_cancel
        if hook is not None:
            self._run(lambda conn: hook(conn, resident_id, at, device_id))

    @staticmethod
    def store_detections(
        conn: Conn, detections: Sequence[DetectionRecord]
    ) -> list[DetectionRecord]:
        """Insert detections (a copy of a stored one is ignored) and close what a resolution
        resolves, in the caller's transaction; return the records really inserted."""
        return sql.store_detections(conn, detections)

    @staticmethod
    def _write(
        conn: Conn,
        detections: Sequence[DetectionRecord],
        routine_days: Sequence[RoutineDay],
        vitals_days: Sequence[VitalsDay],
        on_stored: StoredHook | None = None,
    ) -> int:
        return sql.write_output(conn, detections, routine_days, vitals_days, on_stored)
