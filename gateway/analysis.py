"""The analysis runner: stored messages in, detections out, one worker thread.

Flow (one direction, like the rest of the gateway)::

    ingest writer ──sink──▶ submit() ──bounded queue──▶ worker thread
                                                         │ feed(): per message, O(1) + the
                                                         │   fall detector's vectorised update
                                                         │ advance(): every check_interval_s,
                                                         │   poll/check every detector
                                                         └─▶ AnalysisStore.write (batched)

* The ingest writer calls :meth:`AnalysisRunner.submit` after each committed (and acked)
  batch. The queue holds at most ``analysis.queue_size`` batches; when it is full ``submit``
  waits, so the ingest writer stops taking messages and the broker keeps the following ones
  unacknowledged (backpressure). Nothing is ever dropped. If the worker has died ``submit``
  raises :class:`AnalysisError` instead of waiting forever, and the runtime's watchdog fails
  the process; whatever was stored but not analysed is caught up at the next start.
* The ingest event lane (device events: button presses, SOS, fall flags, ...) calls
  :meth:`AnalysisRunner.submit_urgent` instead: those batches never wait for room and are
  analysed before any queued batch, even in the middle of one or of the periodic checks
  (looked for between messages and between residents), and what they find is written at once.
* State is per device and per resident: a :class:`~analytics.falls.FallDetector` per wearable;
  a :class:`~analytics.fall_fusion.FallFusion`, :class:`~analytics.routine.RoutineMonitor` and
  :class:`~analytics.vitals.VitalsMonitor` per resident, fed by the resident's bed sensor,
  wearable and button; one :class:`~analytics.device_health.DeviceHealthTracker` for every
  device, grouped by location (home or room) and site. A device bound to no resident is
  analysed on its own (its bed, else its own id, stands in for the resident).
* Time: signal processing uses the device timestamps of the messages; device health uses the
  gateway's receive times; "now" for the periodic checks comes from an injected clock, so
  :mod:`gateway.replay` and the tests run the same code on a virtual clock.
* Alarms: a button ``press``/``long_press`` or a wearable ``sos`` becomes an
  ``EMERGENCY_CALL`` at once (it also confirms an open fall episode); ``cancel`` is the
  resident's "I'm OK" for a suspected fall; falls are confirmed when their window expires.

Persistence goes through :class:`AnalysisStore`: :class:`PostgresStore` in production,
:class:`MemoryStore` for replay, benchmarks and tests (a real in-memory implementation, same
rules). A detection is written once: a condition is identified by ``(kind, subject,
condition, started)`` with a data-derived ``started``, and the database ignores a second copy.
While a condition is open a second raise of the same ``(kind, subject, condition)`` is taken as
its continuation and not written; its resolution is written against the open raise.

Rebuild on start (:meth:`AnalysisRunner.rebuild`), bounded by the ``rebuild_*`` settings: the
registry (devices with location and site, residents with care level and status, site UTC
offsets); each device's last receive time and last connection state; routine day summaries and
vitals day histograms from the runner's own tables (``routine_days``, ``vitals_days``: the
runner counts each day's usable bed readings as the vitals baseline does and saves the counts
every ``state_save_interval_s``, so the baseline never needs two weeks of 1 Hz readings read
back); the conditions still open; then a replay,
in receive order, of recent stored messages through the normal path (events, steps and
heartbeats of ``rebuild_events_s``; bed readings thinned to one per ``rebuild_sample_step_s``
for ``rebuild_samples_s``; everything, accelerometer included, of the last ``catch_up_s`` with
alarms on, so a message stored just before a crash is still analysed). Findings that come out
again are deduplicated by their identity. Open conditions that no detector re-raises within
``reconcile_after_s`` are resolved as "not re-established after the restart".

Known limits: a resident's care level is read when their monitors are created (a change applies
at the next start; away/hospital status applies at the next registry refresh); the device
health tracker uses one UTC offset (China's) for its waking-time rule, whatever the site.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import orjson
import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from psycopg.types.json import Jsonb

from analytics.device_health import DeviceHealthParams, DeviceHealthTracker
from analytics.fall_fusion import FallFusion, FusionParams
from analytics.falls import FallDetector, FallParams, clock_time
from analytics.routine import DaySummary, RoutineMonitor, RoutineParams, format_duration
from analytics.types import DetailValue, Detection, DetectionKind
from analytics.vitals import HR_BINS, RR_BINS, VitalsMonitor, VitalsParams
from devices.protocol import (
    ACCEL_FS,
    AccelBatch,
    Channel,
    DeviceKind,
    Envelope,
    Event,
    Reading,
    State,
)
from gateway.ingest import StoredMessage
from gateway.registry import DeviceInfo, load_devices
from gateway.settings import AnalysisSettings, DatabaseSettings

log = logging.getLogger(__name__)

Clock = Callable[[], float]

DEFAULT_UTC_OFFSET_S: Final = 8 * 3600.0
ONE_SHOT: Final = frozenset({DetectionKind.FALL, DetectionKind.EMERGENCY_CALL})
"""Findings that are instants, not conditions: they have no resolution."""

_BED_CONTEXT_S: Final = 30.0
"""The fall fusion is told the bed state on every change and at least this often (its
context goes stale after two minutes); telling it every 1 Hz sample would only cost time."""
_LAST_SEEN_LOOKBACK_S: Final = 30 * 86400.0
_ROUTINE_DAYS_KEPT: Final = 45
_RETRY_MIN_S: Final = 0.5
_RETRY_MAX_S: Final = 30.0


class AnalysisError(RuntimeError):
    """The analysis runner cannot take input (stopped, or its worker died)."""


class StoreUnavailableError(AnalysisError):
    """The store cannot be reached now; the runner keeps its output and retries."""


# --------------------------------------------------------------------------------------------
# What the runner knows about devices and residents
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResidentInfo:
    """A resident as analysis sees it (codes only, no personal data)."""

    resident_id: str
    site_id: str
    care_level: int = 2
    status: str = "home"  # home | away | hospital

    @property
    def away(self) -> bool:
        return self.status != "home"


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """Active devices, residents and each site's UTC offset (seconds)."""

    devices: Mapping[str, DeviceInfo]
    residents: Mapping[str, ResidentInfo] = field(default_factory=dict)
    utc_offsets: Mapping[str, float] = field(default_factory=dict)

    def utc_offset(self, site_id: str) -> float:
        return self.utc_offsets.get(site_id, DEFAULT_UTC_OFFSET_S)


# --------------------------------------------------------------------------------------------
# What the runner writes and reads back
# --------------------------------------------------------------------------------------------


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _plain(value: object) -> DetailValue:
    """A detail value as plain JSON: numpy scalars unwrapped, non-finite numbers as null."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


@dataclass(frozen=True, slots=True)
class DetectionRecord:
    """A :class:`~analytics.types.Detection` with its context, as stored.

    ``condition`` is ``details["condition"]`` where the detector names sub-conditions
    (vitals, apnea), else ``""``. ``started`` is the episode start (the detection time for
    instants), rounded to the millisecond: with ``kind``, ``subject``, ``condition`` and
    ``resolved`` it identifies the row, so computing the same finding twice stores it once.
    """

    kind: DetectionKind
    subject: str
    condition: str
    time: float
    started: float
    resolved: bool
    reason: str
    details: Mapping[str, DetailValue]
    site_id: str | None = None
    resident_id: str | None = None
    device_id: str | None = None
    location_id: str | None = None
    alarms: tuple[tuple[str, str], ...] = ()
    """The stored alarm events (device id, message id) this finding accounts for: the
    intake takes their pending markers (``pending_alarms``) in the transaction that raises
    the incident, and raises nothing when another path already took them."""

    @classmethod
    def of(
        cls,
        det: Detection,
        *,
        site_id: str | None,
        resident_id: str | None,
        device_id: str | None,
        location_id: str | None,
        alarms: tuple[tuple[str, str], ...] = (),
    ) -> DetectionRecord:
        condition = det.details.get("condition")
        started = det.started if det.started is not None else det.time
        return cls(
            kind=det.kind,
            subject=det.subject,
            condition=condition if isinstance(condition, str) else "",
            time=det.time,
            started=round(started, 3),
            resolved=det.resolved,
            reason=det.reason,
            details={k: _plain(v) for k, v in det.details.items()},
            site_id=site_id,
            resident_id=resident_id,
            device_id=device_id,
            location_id=location_id,
            alarms=alarms,
        )

    @property
    def technical(self) -> bool:
        return self.kind.technical

    @property
    def key(self) -> tuple[str, str, str]:
        """The condition, whatever its episode: at most one is open at a time."""
        return (self.kind.value, self.subject, self.condition)

    @property
    def identity(self) -> tuple[str, str, str, int, bool]:
        """The stored row's identity (the database's unique index)."""
        return (*self.key, round(self.started * 1000.0), self.resolved)

    def to_json(self) -> dict[str, Any]:
        """JSON object of the record (times as ISO 8601 UTC)."""
        return {
            "kind": self.kind.value,
            "subject": self.subject,
            "condition": self.condition,
            "resolved": self.resolved,
            "technical": self.technical,
            "time": _utc(self.time).isoformat(timespec="milliseconds"),
            "started": _utc(self.started).isoformat(timespec="milliseconds"),
            "site_id": self.site_id,
            "resident_id": self.resident_id,
            "device_id": self.device_id,
            "location_id": self.location_id,
            "reason": self.reason,
            "details": dict(self.details),
        }


@dataclass(frozen=True, slots=True)
class RoutineDay:
    """One day summary of one subject (upserted by day)."""

    subject: str
    summary: DaySummary


@dataclass(frozen=True, slots=True)
class VitalsDay:
    """Histograms of one subject's usable bed readings on one local day (upserted by day)."""

    subject: str
    day: int
    heart_rate: tuple[int, ...]
    breathing_rate: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DeviceRestore:
    """A device's last receive time before the start, and whether it had gone offline."""

    last_seen: float
    offline: bool = False


@dataclass(frozen=True, slots=True)
class RebuildState:
    """Everything :meth:`AnalysisRunner.rebuild` restores, as read from a store."""

    registry: RegistrySnapshot
    routine_days: Mapping[str, Sequence[DaySummary]] = field(default_factory=dict)
    vitals_days: Sequence[VitalsDay] = ()
    open_detections: Sequence[DetectionRecord] = ()
    devices: Mapping[str, DeviceRestore] = field(default_factory=dict)
    history: Sequence[StoredMessage] = ()
    """Recent stored messages in receive order, replayed through the normal path."""
    catch_up_from: float = math.inf
    """History received at or after this time is handled in full, alarms included."""


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
            if identity in self._identities:
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


# --------------------------------------------------------------------------------------------
# PostgreSQL store
# --------------------------------------------------------------------------------------------

_Conn = psycopg.Connection[tuple[Any, ...]]
StoredHook = Callable[[_Conn, Sequence[DetectionRecord]], None]
"""Called in the storing transaction with the detections that were new (not duplicates)."""
CancelHook = Callable[[_Conn, str, float, str | None], None]
"""Called with (connection, resident id, device time, device id) of a resident's cancel."""

_INSERT_DETECTION = """
INSERT INTO detections (kind, subject, condition, site_id, resident_id, device_id, location_id,
                        technical, time, started, resolved, closed_at, reason, details)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (kind, subject, condition, started, resolved) DO NOTHING
"""
_CLOSE_DETECTION = """
UPDATE detections SET closed_at = %s
WHERE kind = %s AND subject = %s AND condition = %s AND started = %s
  AND NOT resolved AND closed_at IS NULL
"""
_UPSERT_ROUTINE = """
INSERT INTO routine_days (subject, day, rise_s, bed_s, active_minutes, away, bed_data)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (subject, day) DO UPDATE SET rise_s = EXCLUDED.rise_s, bed_s = EXCLUDED.bed_s,
    active_minutes = EXCLUDED.active_minutes, away = EXCLUDED.away,
    bed_data = EXCLUDED.bed_data, updated_at = now()
"""
_UPSERT_VITALS = """
INSERT INTO vitals_days (subject, day, heart_rate, breathing_rate) VALUES (%s, %s, %s, %s)
ON CONFLICT (subject, day) DO UPDATE SET heart_rate = EXCLUDED.heart_rate,
    breathing_rate = EXCLUDED.breathing_rate, updated_at = now()
"""
_OPEN_DETECTIONS = """
SELECT kind, subject, condition, site_id, resident_id, device_id, location_id,
       extract(epoch FROM time), extract(epoch FROM started), reason, details
FROM detections WHERE NOT resolved AND closed_at IS NULL
"""
_LAST_SEEN = """
SELECT d.device_id,
       extract(epoch FROM greatest(r.received_at, e.received_at, s.received_at)),
       s.offline AND s.received_at >= greatest(r.received_at, e.received_at, s.received_at)
FROM devices d
LEFT JOIN LATERAL (SELECT received_at FROM readings WHERE device_id = d.device_id
                   AND time >= %(since)s ORDER BY time DESC LIMIT 1) r ON true
LEFT JOIN LATERAL (SELECT received_at FROM device_events WHERE device_id = d.device_id
                   AND time >= %(since)s ORDER BY time DESC LIMIT 1) e ON true
LEFT JOIN LATERAL (SELECT received_at, NOT online AS offline FROM device_state
                   WHERE device_id = d.device_id AND time >= %(since)s
                   ORDER BY received_at DESC LIMIT 1) s ON true
WHERE d.active
"""
_SPARSE_READINGS = """
SELECT extract(epoch FROM time), device_id, msg_id, seq, type, presence, heart_rate,
       breathing_rate, movement, steps, battery, worn, extract(epoch FROM received_at)
FROM readings
WHERE device_id = ANY(%s) AND time >= %s AND time < %s
  AND (type = 'heartbeat' OR (type = 'steps' AND steps > 0))
"""
_THINNED_VITALS = """
SELECT extract(epoch FROM max(time)), device_id, (array_agg(presence ORDER BY time DESC))[1],
       max(movement), extract(epoch FROM max(received_at))
FROM readings
WHERE device_id = ANY(%s) AND type = 'vitals' AND time >= %s AND time < %s
GROUP BY device_id, floor(extract(epoch FROM time) / %s)
"""
_RECENT_READINGS = """
SELECT extract(epoch FROM time), device_id, msg_id, seq, type, presence, heart_rate,
       breathing_rate, movement, steps, battery, worn, extract(epoch FROM received_at)
FROM readings WHERE time >= %s
"""
_EVENTS = """
SELECT extract(epoch FROM time), device_id, msg_id, seq, type, data,
       extract(epoch FROM received_at)
FROM device_events WHERE time >= %s
"""
_STATES = """
SELECT extract(epoch FROM time), device_id, msg_id, seq, online, battery, firmware, rssi,
       extract(epoch FROM received_at)
FROM device_state WHERE time >= %s
"""
_ACCEL = """
SELECT extract(epoch FROM time), device_id, msg_id, seq, fs, n, samples,
       extract(epoch FROM received_at)
FROM accel WHERE time >= %s
"""


def _opt_int(value: Any) -> int | None:
    return None if value is None else round(float(value))


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


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
        self._conn: _Conn | None = None
        # The incident workflow's hooks (gateway.escalation.intake): ``on_stored`` runs in
        # the transaction that stores detections, with the rows really inserted, so a
        # detection is stored if and only if the workflow took it; ``on_cancel`` receives
        # the resident's "I'm OK" (see :meth:`cancel`).
        self._on_stored = on_stored
        self._on_cancel = on_cancel

    def _connection(self) -> _Conn:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._settings.conninfo(), autocommit=True)
        return self._conn

    def _run(self, fn: Callable[[_Conn], Any]) -> Any:
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
        snapshot: RegistrySnapshot = self._run(self._registry)
        return snapshot

    @staticmethod
    def _registry(conn: _Conn) -> RegistrySnapshot:
        devices = load_devices(conn)
        residents = {
            str(rid): ResidentInfo(str(rid), str(site), int(level), str(status))
            for rid, site, level, status in conn.execute(
                "SELECT resident_id, site_id, care_level, status FROM residents"
            ).fetchall()
        }
        offsets = {
            str(site): float(off)
            for site, off in conn.execute("SELECT site_id, utc_offset_s FROM sites").fetchall()
        }
        return RegistrySnapshot(devices, residents, offsets)

    # -- rebuild --------------------------------------------------------------------------

    def load(self, now: float, settings: AnalysisSettings) -> RebuildState:
        state: RebuildState = self._run(lambda conn: self._load(conn, now, settings))
        return state

    def _load(self, conn: _Conn, now: float, s: AnalysisSettings) -> RebuildState:
        registry = self._registry(conn)
        devices = registry.devices
        today = math.floor(now / 86400.0)
        routine: dict[str, list[DaySummary]] = {}
        for subject, day, rise, bed, active, away, bed_data in conn.execute(
            "SELECT subject, day, rise_s, bed_s, active_minutes, away, bed_data "
            "FROM routine_days WHERE day >= %s ORDER BY day",
            (today - _ROUTINE_DAYS_KEPT,),
        ).fetchall():
            routine.setdefault(str(subject), []).append(
                DaySummary(
                    int(day),
                    _opt_float(rise),
                    _opt_float(bed),
                    tuple(float(x) for x in active),
                    bool(away),
                    bool(bed_data),
                )
            )
        vitals = [
            VitalsDay(str(subject), int(day), tuple(hr), tuple(rr))
            for subject, day, hr, rr in conn.execute(
                "SELECT subject, day, heart_rate, breathing_rate FROM vitals_days WHERE day >= %s",
                (today - VitalsParams().baseline_days - 2,),
            ).fetchall()
        ]
        open_detections = [
            DetectionRecord(
                kind=DetectionKind(str(kind)),
                subject=str(subject),
                condition=str(condition),
                time=float(t),
                started=round(float(started), 3),
                resolved=False,
                reason=str(reason),
                details=dict(details),
                site_id=site,
                resident_id=resident,
                device_id=device,
                location_id=location,
            )
            for (
                kind,
                subject,
                condition,
                site,
                resident,
                device,
                location,
                t,
                started,
                reason,
                details,
            ) in conn.execute(_OPEN_DETECTIONS).fetchall()
        ]
        restore = {
            str(dev): DeviceRestore(float(seen), bool(offline))
            for dev, seen, offline in conn.execute(
                _LAST_SEEN, {"since": _utc(now - _LAST_SEEN_LOOKBACK_S)}
            ).fetchall()
            if seen is not None
        }
        catch_from = now - s.catch_up_s
        events_from = now - max(s.rebuild_events_s, s.catch_up_s)
        samples_from = now - max(s.rebuild_samples_s, s.catch_up_s)
        beds = [d for d, i in devices.items() if i.kind is DeviceKind.BED_SENSOR]
        others = [d for d, i in devices.items() if i.kind is not DeviceKind.BED_SENSOR]
        history: list[StoredMessage] = []
        add = history.append
        for row in conn.execute(
            _SPARSE_READINGS, (others, _utc(events_from), _utc(catch_from))
        ).fetchall():
            _add_reading(devices, row, add)
        for row in conn.execute(_RECENT_READINGS, (_utc(catch_from),)).fetchall():
            _add_reading(devices, row, add)
        for t, dev, presence, movement, received in conn.execute(
            _THINNED_VITALS, (beds, _utc(samples_from), _utc(catch_from), s.rebuild_sample_step_s)
        ).fetchall():
            info = devices.get(str(dev))
            if info is not None:
                env = Envelope(info.site_id, info.device_id, Channel.TELEMETRY, "rebuild", 0,
                               float(t), "vitals")  # fmt: skip
                add(StoredMessage(info, Reading(env, bool(presence), None, None,
                                                float(movement)), float(received)))  # fmt: skip
        for t, dev, mid, seq, type_, data, received in conn.execute(
            _EVENTS, (_utc(events_from),)
        ).fetchall():
            info = devices.get(str(dev))
            if info is not None:
                env = Envelope(info.site_id, info.device_id, Channel.EVENT, str(mid), int(seq),
                               float(t), str(type_))  # fmt: skip
                clock = data.get("clock")  # an alarm stored with its receive time (ingest)
                error = clock.get("error_s") if isinstance(clock, dict) else None
                wrong = float(error) if isinstance(error, int | float) else None
                add(StoredMessage(info, Event(env, dict(data)), float(received), wrong))
        for t, dev, mid, seq, online, battery, fw, rssi, received in conn.execute(
            _STATES, (_utc(events_from),)
        ).fetchall():
            info = devices.get(str(dev))
            if info is not None:
                env = Envelope(info.site_id, info.device_id, Channel.STATE, str(mid), int(seq),
                               float(t), "online" if online else "offline")  # fmt: skip
                state = State(env, bool(online), _opt_int(battery), fw, _opt_int(rssi))
                add(StoredMessage(info, state, float(received)))
        for t, dev, mid, seq, fs, n, raw, received in conn.execute(
            _ACCEL, (_utc(catch_from),)
        ).fetchall():
            info = devices.get(str(dev))
            if info is not None:
                milli = np.frombuffer(raw, dtype="<i2").reshape(int(n), 3)
                samples = (milli.astype(np.float32) / np.float32(1000.0)).astype(np.float32)
                env = Envelope(info.site_id, info.device_id, Channel.TELEMETRY, str(mid),
                               int(seq), float(t), "accel")  # fmt: skip
                add(StoredMessage(info, AccelBatch(env, float(fs), samples), float(received)))
        history.sort(key=lambda sm: sm.received_at)
        return RebuildState(
            registry=registry,
            routine_days=routine,
            vitals_days=vitals,
            open_detections=open_detections,
            devices=restore,
            history=history,
            catch_up_from=catch_from,
        )

    # -- output ---------------------------------------------------------------------------

    def write(
        self,
        detections: Sequence[DetectionRecord],
        routine_days: Sequence[RoutineDay],
        vitals_days: Sequence[VitalsDay],
    ) -> int:
        new: int = self._run(
            lambda conn: self._write(conn, detections, routine_days, vitals_days, self._on_stored)
        )
        return new

    def cancel(self, resident_id: str, at: float, device_id: str | None) -> None:
        """Hand the resident's "I'm OK" (device time ``at``) to the ``on_cancel`` hook."""
        hook = self._on_cancel
        if hook is not None:
            self._run(lambda conn: hook(conn, resident_id, at, device_id))

    @staticmethod
    def store_detections(
        conn: _Conn, detections: Sequence[DetectionRecord]
    ) -> list[DetectionRecord]:
        """Insert detections (a copy of a stored one is ignored) and close what a resolution
        resolves, in the caller's transaction; return the records really inserted."""
        inserted: list[DetectionRecord] = []
        for r in detections:
            started = _utc(r.started)
            closed = _utc(r.time) if r.kind in ONE_SHOT and not r.resolved else None
            cur = conn.execute(
                _INSERT_DETECTION,
                (r.kind.value, r.subject, r.condition, r.site_id, r.resident_id, r.device_id,
                 r.location_id, r.technical, _utc(r.time), started, r.resolved, closed,
                 r.reason, Jsonb(dict(r.details), dumps=_dumps)),
            )  # fmt: skip
            if cur.rowcount > 0:
                inserted.append(r)
            if r.resolved:
                conn.execute(
                    _CLOSE_DETECTION,
                    (_utc(r.time), r.kind.value, r.subject, r.condition, started),
                )
        return inserted

    @staticmethod
    def _write(
        conn: _Conn,
        detections: Sequence[DetectionRecord],
        routine_days: Sequence[RoutineDay],
        vitals_days: Sequence[VitalsDay],
        on_stored: StoredHook | None = None,
    ) -> int:
        with conn.transaction():
            inserted = PostgresStore.store_detections(conn, detections)
            new = len(inserted)
            # Day rows come by the thousand (every resident's, each state_save_interval_s):
            # executemany pipelines them instead of one round trip each, so the worker is
            # soon free again for an alarm (5,000 vitals rows: ~0.23 s instead of 0.5-0.9 s).
            with conn.cursor() as cur:
                if routine_days:
                    cur.executemany(
                        _UPSERT_ROUTINE,
                        [(d.subject, d.summary.day, d.summary.rise_s, d.summary.bed_s,
                          list(d.summary.active_minutes), d.summary.away, d.summary.bed_data)
                         for d in routine_days],
                    )  # fmt: skip
                if vitals_days:
                    cur.executemany(
                        _UPSERT_VITALS,
                        [(v.subject, v.day, list(v.heart_rate), list(v.breathing_rate))
                         for v in vitals_days],
                    )  # fmt: skip
            if on_stored is not None and inserted:
                on_stored(conn, inserted)
        return new


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()


def _add_reading(
    devices: Mapping[str, DeviceInfo],
    row: tuple[Any, ...],
    add: Callable[[StoredMessage], None],
) -> None:
    t, dev, mid, seq, type_, presence, hr, rr, movement, steps, battery, worn, received = row
    info = devices.get(str(dev))
    if info is None:
        return
    env = Envelope(
        info.site_id, info.device_id, Channel.TELEMETRY, str(mid), int(seq), float(t), str(type_)
    )
    reading = Reading(
        env,
        presence,
        _opt_float(hr),
        _opt_float(rr),
        _opt_float(movement),
        None if steps is None else int(steps),
        _opt_int(battery),
        worn,
    )
    add(StoredMessage(info, reading, float(received)))


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


class AnalysisMetrics:
    """The runner's Prometheus metrics (no per-device or per-resident labels)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.messages = Counter(
            "safehome_analysis_messages", "Stored messages analysed", registry=r
        )
        self.detections = Counter(
            "safehome_analysis_detections",
            "Detections written (state: raised or resolved)",
            ["kind", "state"],
            registry=r,
        )
        self.duplicates = Counter(
            "safehome_analysis_duplicates",
            "Detections computed again (start-up catch-up) and already stored",
            registry=r,
        )
        self.continued = Counter(
            "safehome_analysis_continued",
            "Raises taken as the continuation of a condition already open (after a restart)",
            registry=r,
        )
        self.fall_candidates = Counter(
            "safehome_analysis_fall_candidates",
            "Falls found in accelerometer signals (before fusion and confirmation)",
            registry=r,
        )
        self.falls_cancelled = Counter(
            "safehome_analysis_falls_cancelled",
            "Suspected falls the resident cancelled within the window",
            registry=r,
        )
        self.checks = Counter("safehome_analysis_checks", "Periodic detector checks", registry=r)
        self.backpressure = Counter(
            "safehome_analysis_backpressure",
            "Times the ingest writer waited for room in the analysis queue",
            registry=r,
        )
        self.store_errors = Counter(
            "safehome_analysis_store_errors", "Failed writes to the store (retried)", registry=r
        )
        self.queue_depth = Gauge(
            "safehome_analysis_queue_batches", "Stored batches waiting for analysis", registry=r
        )
        self.lag_seconds = Histogram(
            "safehome_analysis_lag_seconds",
            "MQTT receive to analysed, per batch (its oldest message)",
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
        )


# --------------------------------------------------------------------------------------------
# Per-resident and per-device state
# --------------------------------------------------------------------------------------------


class _Resident:
    """Monitors of one resident (or of a device bound to no resident)."""

    __slots__ = (
        "bed_device",
        "bed_reported",
        "bed_reported_at",
        "fall_flags",
        "fusion",
        "hist_day",
        "hist_dirty",
        "hr_hist",
        "location",
        "resident_id",
        "routine",
        "rr_hist",
        "site",
        "subject",
        "utc_offset",
        "vitals",
        "wearable",
    )

    def __init__(
        self,
        subject: str,
        *,
        resident_id: str | None,
        site: str,
        location: str | None,
        utc_offset: float,
        routine: RoutineMonitor,
        vitals: VitalsMonitor,
        fusion: FallFusion,
    ) -> None:
        self.subject = subject
        self.resident_id = resident_id
        self.site = site
        self.location = location
        self.utc_offset = utc_offset
        self.routine = routine
        self.vitals = vitals
        self.fusion = fusion
        self.bed_device: str | None = None
        self.wearable: str | None = None
        self.bed_reported: bool | None = None
        self.bed_reported_at = -math.inf
        self.hist_day: int | None = None
        self.hr_hist = [0] * HR_BINS
        self.rr_hist = [0] * RR_BINS
        self.hist_dirty = False
        # Device fall flags not yet decided by the fusion: (device time, device, message id).
        self.fall_flags: list[tuple[float, str, str]] = []


class _Device:
    __slots__ = ("detector", "info", "resident")

    def __init__(self, info: DeviceInfo, resident: _Resident, detector: FallDetector | None):
        self.info = info
        self.resident = resident
        self.detector = detector


@dataclass(slots=True)
class _OpenCondition:
    record: DetectionRecord
    restored: bool
    confirmed: bool = False


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------


class AnalysisRunner:
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
    ) -> None:
        self.settings = settings
        self._store = store
        # The resident's "I'm OK" (resident id, device time, device id), handed over after
        # the detections queued before it are stored (e.g. PostgresStore.cancel).
        self._on_cancel = on_cancel
        self._pending_cancels: list[tuple[str, float, str | None]] = []
        self._clock = clock
        self._m = AnalysisMetrics(metrics_registry or CollectorRegistry(auto_describe=True))
        self._registry = RegistrySnapshot({})
        self._devices: dict[str, _Device] = {}
        self._residents: dict[str, _Resident] = {}
        self._history: Mapping[str, Sequence[DaySummary]] = {}
        self._restore: Mapping[str, DeviceRestore] = {}
        s = settings
        self._health = DeviceHealthTracker(
            DeviceHealthParams(
                heartbeat_interval_s={
                    DeviceKind.BUTTON.value: s.heartbeat_button_s,
                    DeviceKind.BED_SENSOR.value: s.heartbeat_bed_sensor_s,
                    DeviceKind.WEARABLE.value: s.heartbeat_wearable_s,
                },
                deadline_factor=s.deadline_factor,
                group_hold_s=s.group_hold_s,
            )
        )
        self._vitals_limits = VitalsParams()
        # output
        self._open: dict[tuple[str, str, str], _OpenCondition] = {}
        self._pending: list[DetectionRecord] = []
        # day rows by (subject, day): a later row of the same day replaces an unwritten one
        self._pending_days: dict[tuple[str, int], RoutineDay] = {}
        self._pending_vitals: dict[tuple[str, int], VitalsDay] = {}
        self._quiet = False  # no per-detection log lines while rebuilding
        # Devices with an open "device clock wrong" condition: since when (receive time).
        self._clock_wrong: dict[str, float] = {}
        # timing
        self._next_check = -math.inf
        self._next_save = -math.inf
        self._next_registry = math.inf
        self._reconcile_at = math.inf
        self._reconcile_grace = 0.0
        self._retry_at = -math.inf
        self._retry_delay = _RETRY_MIN_S
        self._store_down_since: float | None = None
        # worker
        self._queue: queue.Queue[Sequence[StoredMessage] | None] = queue.Queue(s.queue_size)
        self._urgent: deque[Sequence[StoredMessage]] = deque()
        self._thread = threading.Thread(target=self._run, name="analysis", daemon=True)
        self._closing = False
        self.last_beat = time.monotonic()
        self._error: BaseException | None = None
        self._congested = False

    # -- synchronous core ---------------------------------------------------------------------

    def rebuild(self) -> None:
        """Restore state from the store (see the module documentation). Call once, first."""
        now = self._clock()
        started = time.perf_counter()
        state = self._store.load(now, self.settings)
        self._registry = state.registry
        self._history = state.routine_days
        self._restore = state.devices
        for info in state.registry.devices.values():
            self._bind(info, now)
        self._restore_vitals(state.vitals_days, now)
        for rec in state.open_detections:
            self._open[rec.key] = _OpenCondition(rec, restored=True)
            if rec.kind is DetectionKind.DEVICE_CLOCK_WRONG:
                self._clock_wrong[rec.subject] = rec.started
        self._quiet = True
        for sm in state.history:
            self._handle(sm, alarms=sm.received_at >= state.catch_up_from)
        self._health.resume(now)
        self._check(now)
        self._quiet = False
        self._history, self._restore = {}, {}
        self._reconcile_grace = max(
            self.settings.reconcile_after_s,
            max(self._deadlines(), default=0.0) + self.settings.group_hold_s,
        )
        if state.open_detections:
            self._reconcile_at = now + self._reconcile_grace
        self._next_check = now + self.settings.check_interval_s
        self._next_save = now + self.settings.state_save_interval_s
        self._next_registry = now + self.settings.registry_refresh_s
        queued = len(self._pending)
        self.flush(force=True)
        log.info(
            "analysis state rebuilt",
            extra={
                "devices": len(self._devices),
                "residents": len(self._residents),
                "replayed": len(state.history),
                "open_conditions": len(state.open_detections),
                "detections": queued,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    def feed(self, messages: Sequence[StoredMessage]) -> None:
        """Analyse stored messages (in the order they were stored).

        Urgent batches (:meth:`submit_urgent`) that arrive meanwhile go first."""
        urgent = self._urgent
        for sm in messages:
            if urgent:
                self._feed_urgent()
            self._handle(sm, alarms=True)
        self._m.messages.inc(len(messages))

    def _feed_urgent(self) -> None:
        """Analyse the urgent batches in hand and write what they found at once."""
        urgent = self._urgent
        if not urgent:
            return
        while urgent:
            batch = urgent.popleft()
            for sm in batch:
                self._handle(sm, alarms=True)
            self._m.messages.inc(len(batch))
        self.flush()

    def registry_changed(self) -> None:
        """The device registry changed: reload bindings at the next step (any thread)."""
        self._next_registry = -math.inf

    def advance(self, now: float | None = None) -> None:
        """Run what is due at ``now`` (default: the clock): checks, saves, then write."""
        if now is None:
            now = self._clock()
        s = self.settings
        if now >= self._next_check:
            self._check(now)
            self._next_check = now + s.check_interval_s
        if now >= self._reconcile_at:
            self._reconcile(now)
            self._reconcile_at = math.inf
        if now >= self._next_save:
            self._save_vitals()
            self._next_save = now + s.state_save_interval_s
        if now >= self._next_registry:
            self._refresh_registry(now)
            self._next_registry = now + s.registry_refresh_s
        self.flush()

    def flush(self, *, force: bool = False) -> None:
        """Write pending detections and day rows; on a store outage keep them for later."""
        if not (self._pending or self._pending_days or self._pending_vitals):
            self._flush_cancels()
            return
        mono = time.monotonic()
        if not force and mono < self._retry_at:
            return
        try:
            new = self._store.write(
                self._pending,
                list(self._pending_days.values()),
                list(self._pending_vitals.values()),
            )
        except StoreUnavailableError as exc:
            self._m.store_errors.inc()
            if self._store_down_since is None:
                self._store_down_since = mono
                log.error(
                    "analysis store unavailable; keeping detections to retry",
                    extra={"error": str(exc), "pending": len(self._pending)},
                )
            self._retry_at = mono + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2.0, _RETRY_MAX_S)
            if force:
                raise
            return
        if self._store_down_since is not None:
            log.warning(
                "analysis store available again",
                extra={"outage_s": round(mono - self._store_down_since, 3)},
            )
            self._store_down_since = None
        self._retry_delay = _RETRY_MIN_S
        self._retry_at = -math.inf
        duplicates = len(self._pending) - new
        if duplicates:
            self._m.duplicates.inc(duplicates)
        self._pending = []
        self._pending_days.clear()
        self._pending_vitals.clear()
        self._flush_cancels()

    def _flush_cancels(self) -> None:
        """Hand over queued resident cancels (their alarms are stored by now)."""
        while self._pending_cancels and self._on_cancel is not None:
            resident_id, t, device_id = self._pending_cancels[0]
            try:
                self._on_cancel(resident_id, t, device_id)
            except StoreUnavailableError:
                return  # kept: retried with the next flush
            except Exception:
                log.exception("resident cancel hook failed", extra={"device": device_id})
            self._pending_cancels.pop(0)

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

    # -- registry -------------------------------------------------------------------------------

    def _deadlines(self) -> list[float]:
        s = self.settings
        kinds = [s.heartbeat_button_s, s.heartbeat_bed_sensor_s, s.heartbeat_wearable_s]
        own = [float(d.info.heartbeat_interval_s or 0) for d in self._devices.values()]
        return [s.deadline_factor * x for x in kinds + own]

    def _bind(self, info: DeviceInfo, now: float) -> _Device:
        """Start analysing a device (or follow a change of its registry entry)."""
        previous = self._devices.get(info.device_id)
        subject = info.resident_id or info.bed_id or info.device_id
        res = self._residents.get(subject) or self._new_resident(subject, info, now)
        detector: FallDetector | None = None
        if info.kind is DeviceKind.WEARABLE:
            res.wearable = info.device_id
            if previous is not None and previous.resident is res:
                detector = previous.detector
            if detector is None:
                detector = FallDetector(FallParams(fs=ACCEL_FS, utc_offset_s=res.utc_offset))
        elif info.kind is DeviceKind.BED_SENSOR:
            res.bed_device = info.device_id
        dev = _Device(info, res, detector)
        self._devices[info.device_id] = dev
        restore = self._restore.get(info.device_id)
        self._health.register(
            info.device_id,
            info.kind.value,
            site=info.site_id,
            location=info.location_id or info.device_id,
            now=now,
            heartbeat_interval_s=(
                None if info.heartbeat_interval_s is None else float(info.heartbeat_interval_s)
            ),
            last_seen=None if restore is None else restore.last_seen,
            offline=restore is not None and restore.offline,
        )
        if info.kind is DeviceKind.WEARABLE:
            resident = self._registry.residents.get(res.resident_id or "")
            self._health.set_care_paused(
                info.device_id, now, resident is not None and resident.away
            )
        if previous is not None and previous.info != info:
            log.info("device binding changed", extra={"device": info.device_id})
        return dev

    def _new_resident(self, subject: str, info: DeviceInfo, now: float) -> _Resident:
        resident = self._registry.residents.get(info.resident_id or "")
        off = self._registry.utc_offset(info.site_id)
        s = self.settings
        routine = RoutineMonitor(
            subject,
            RoutineParams.for_care_level(
                resident.care_level if resident is not None else 2,
                utc_offset_s=off,
                **s.routine_overrides,
            ),
            history=self._history.get(subject, ()),
        )
        vitals = VitalsMonitor(
            subject,
            replace(
                self._vitals_limits,
                utc_offset_s=off,
                min_duration_s=s.vitals_min_duration_s,
                recover_s=s.vitals_recover_s,
                baseline_min_duration_s=s.vitals_baseline_min_duration_s,
            ),
        )
        fusion = FallFusion(
            subject,
            FusionParams(
                confirm_window_s=s.fall_confirm_window_s,
                merge_window_s=s.fall_merge_window_s,
                utc_offset_s=off,
            ),
        )
        res = _Resident(
            subject,
            resident_id=info.resident_id,
            site=info.site_id,
            location=info.location_id,
            utc_offset=off,
            routine=routine,
            vitals=vitals,
            fusion=fusion,
        )
        if resident is not None and resident.away:
            routine.set_away(now, True)
        self._residents[subject] = res
        return res

    def _refresh_registry(self, now: float) -> None:
        try:
            snapshot = self._store.registry()
        except StoreUnavailableError:
            return  # the flush that follows reports the outage
        old = self._registry
        self._registry = snapshot
        for device_id, info in snapshot.devices.items():
            dev = self._devices.get(device_id)
            if dev is None or dev.info != info:
                self._bind(info, now)
        for device_id in [d for d in self._devices if d not in snapshot.devices]:
            del self._devices[device_id]
            self._health.remove(device_id, now)
            log.info("device no longer analysed", extra={"device": device_id})
        for rid, resident in snapshot.residents.items():
            before = old.residents.get(rid)
            if (before is not None and before.away) == resident.away:
                continue  # unchanged (a resident new to the registry counts as at home)
            res = self._residents.get(rid)
            if res is None:
                continue
            res.routine.set_away(now, resident.away)
            if res.wearable is not None:
                self._health.set_care_paused(res.wearable, now, resident.away)
            state = "paused" if resident.away else "resumed"
            log.info(f"resident monitoring {state}", extra={"resident": rid})

    # -- messages -------------------------------------------------------------------------------

    def _handle(self, sm: StoredMessage, *, alarms: bool) -> None:
        info = sm.device
        dev = self._devices.get(info.device_id)
        if dev is None or (dev.info is not info and dev.info != info):
            dev = self._bind(info, sm.received_at)
        else:
            dev.info = info
        msg = sm.message
        env = msg.envelope
        device_id = info.device_id
        health = self._health
        kind = type(msg)
        if self._clock_wrong or sm.clock_error_s is not None:
            self._device_clock(dev, sm)
        if kind is AccelBatch:
            health.on_seen(device_id, sm.received_at)
            if alarms and dev.detector is not None:
                assert isinstance(msg, AccelBatch)
                found = dev.detector.update(env.ts, msg.samples)
                if found:
                    fusion = dev.resident.fusion
                    for candidate in found:
                        fusion.add_candidate(candidate)
                    self._m.fall_candidates.inc(len(found))
            return
        if kind is Reading:
            assert isinstance(msg, Reading)
            health.on_seen(device_id, sm.received_at)
            self._reading(dev, msg, env, sm.received_at)
            return
        if kind is Event:
            assert isinstance(msg, Event)
            health.on_seen(device_id, sm.received_at)
            self._event(dev, msg, env, sm.received_at, alarms)
            return
        assert isinstance(msg, State)
        health.on_state(device_id, sm.received_at, msg.online)
        if msg.battery is not None:
            health.on_battery(device_id, sm.received_at, float(msg.battery))

    def _reading(self, dev: _Device, msg: Reading, env: Envelope, received: float) -> None:
        res = dev.resident
        t = env.ts
        type_ = env.type
        if type_ == "vitals":
            presence = bool(msg.presence)
            movement = msg.movement if msg.movement is not None else 0.0
            res.routine.on_bed_sample(t, presence, movement)
            res.vitals.on_sample(t, presence, msg.heart_rate, msg.breathing_rate, movement)
            if presence and movement < self._vitals_limits.artefact_movement:
                self._count_vitals(res, t, msg.heart_rate, msg.breathing_rate)
            if presence != res.bed_reported or t - res.bed_reported_at >= _BED_CONTEXT_S:
                res.fusion.bed_presence(t, presence)
                res.bed_reported = presence
                res.bed_reported_at = t
        elif type_ == "steps":
            if msg.steps:
                res.routine.on_steps(t, msg.steps)
        elif type_ == "heartbeat":
            device_id = dev.info.device_id
            if msg.battery is not None:
                self._health.on_battery(device_id, received, float(msg.battery))
            if msg.worn is not None:
                self._health.on_worn(device_id, received, msg.worn)
            if dev.info.kind is DeviceKind.BED_SENSOR:
                res.routine.on_bed_heartbeat(t)

    def _event(
        self, dev: _Device, msg: Event, env: Envelope, received: float, alarms: bool
    ) -> None:
        res = dev.resident
        t = env.ts
        type_ = env.type
        if type_ in ("press", "long_press", "sos"):
            res.routine.on_activity(t)
            if alarms:
                self._emergency(dev, env)
        elif type_ == "cancel":
            res.routine.on_activity(t)
            if alarms:
                if self._on_cancel is not None and res.resident_id is not None:
                    self._pending_cancels.append((res.resident_id, t, dev.info.device_id))
                cancelled = res.fusion.cancel(t)
                if cancelled:
                    self._m.falls_cancelled.inc(len(cancelled))
                    if not self._quiet:
                        log.info(
                            "suspected fall cancelled by the resident",
                            extra={"subject": res.subject, "device": dev.info.device_id},
                        )
        elif type_ == "fall":
            if alarms:
                res.fusion.device_fall_flag(t)
                res.fall_flags.append((t, dev.info.device_id, env.msg_id))
        elif type_ in ("bed_exit", "bed_entry"):
            in_bed = type_ == "bed_entry"
            if in_bed:
                res.routine.on_bed_entry(t)
            else:
                res.routine.on_bed_exit(t)
            res.fusion.bed_presence(t, in_bed)
            res.bed_reported = in_bed
            res.bed_reported_at = t
        elif type_ in ("worn", "not_worn"):
            self._health.on_worn(dev.info.device_id, received, type_ == "worn")
        elif type_ == "low_battery":
            battery = msg.data.get("battery")
            if isinstance(battery, int | float):
                self._health.on_battery(dev.info.device_id, received, float(battery))

    def _emergency(self, dev: _Device, env: Envelope) -> None:
        res = dev.resident
        button = dev.info.kind is DeviceKind.BUTTON
        for call in res.fusion.sos(env.ts):
            details = dict(call.details)
            details.update(source=dev.info.kind.value, event=env.type)
            reason = call.reason
            if button:
                how = "long-pressed" if env.type == "long_press" else "pressed"
                reason = f"emergency call button {how} at {clock_time(env.ts, res.utc_offset)}"
                fall_started = details.get("fall_started")
                if isinstance(fall_started, float | int):
                    reason += f", {env.ts - fall_started:.0f} s after a suspected fall"
            self._emit_resident(
                res,
                replace(call, reason=reason, details=details),
                dev.info.device_id,
                alarms=((dev.info.device_id, env.msg_id),),
            )

    def _device_clock(self, dev: _Device, sm: StoredMessage) -> None:
        """An alarm with an implausible device time raises "device clock wrong" (once: a
        condition); any later message with a plausible time clears it."""
        device_id = dev.info.device_id
        error = sm.clock_error_s
        if error is None:
            since = self._clock_wrong.get(device_id)
            if since is None or sm.received_at <= since + 0.001:
                return
            del self._clock_wrong[device_id]
            det = Detection(
                kind=DetectionKind.DEVICE_CLOCK_WRONG,
                subject=device_id,
                time=sm.received_at,
                reason="device clock right again: a message came with a plausible time",
                resolved=True,
                started=since,
            )
        else:
            if device_id in self._clock_wrong:
                return
            started = round(sm.received_at, 3)
            self._clock_wrong[device_id] = started
            det = clock_wrong_detection(device_id, started, error)
        self._emit(
            DetectionRecord.of(
                det,
                site_id=dev.info.site_id,
                resident_id=None,
                device_id=device_id,
                location_id=dev.info.location_id,
            )
        )

    def _count_vitals(self, res: _Resident, t: float, hr: float | None, rr: float | None) -> None:
        """Day histograms of usable readings, the same selection as the vitals baseline."""
        day = math.floor((t + res.utc_offset) / 86400.0)
        if day != res.hist_day:
            if res.hist_day is not None and day < res.hist_day:
                return  # a late reading of a day already closed
            self._close_vitals_day(res)
            res.hist_day = day
        limits = self._vitals_limits
        if hr is not None and limits.hr_valid_min <= hr <= limits.hr_valid_max:
            res.hr_hist[int(hr + 0.5)] += 1
            res.hist_dirty = True
        if rr is not None and 0.0 < rr <= limits.rr_valid_max:
            i = int(rr + 0.5)
            if i < RR_BINS:
                res.rr_hist[i] += 1
                res.hist_dirty = True

    def _close_vitals_day(self, res: _Resident) -> None:
        if res.hist_day is not None and res.hist_dirty:
            self._queue_vitals(res)
        res.hr_hist = [0] * HR_BINS
        res.rr_hist = [0] * RR_BINS
        res.hist_dirty = False

    def _save_vitals(self) -> None:
        for res in self._residents.values():
            if res.hist_dirty and res.hist_day is not None:
                self._queue_vitals(res)
                res.hist_dirty = False

    def _queue_vitals(self, res: _Resident) -> None:
        assert res.hist_day is not None
        self._pending_vitals[(res.subject, res.hist_day)] = VitalsDay(
            res.subject, res.hist_day, tuple(res.hr_hist), tuple(res.rr_hist)
        )

    def _restore_vitals(self, days: Sequence[VitalsDay], now: float) -> None:
        by_subject: dict[str, list[VitalsDay]] = {}
        for vd in days:
            by_subject.setdefault(vd.subject, []).append(vd)
        for subject, rows in by_subject.items():
            res = self._residents.get(subject)
            if res is None:
                continue
            res.vitals.load_histograms(
                {v.day: _padded(v.heart_rate, HR_BINS) for v in rows},
                {v.day: _padded(v.breathing_rate, RR_BINS) for v in rows},
            )
            today = math.floor((now + res.utc_offset) / 86400.0)
            for v in rows:
                if v.day == today:  # the day in progress goes on counting from here
                    res.hist_day = today
                    res.hr_hist = [int(x) for x in _padded(v.heart_rate, HR_BINS)]
                    res.rr_hist = [int(x) for x in _padded(v.breathing_rate, RR_BINS)]

    # -- checks and output ----------------------------------------------------------------------

    def _check(self, now: float) -> None:
        self._m.checks.inc()
        urgent = self._urgent
        for res in list(self._residents.values()):  # (urgent batches may add residents)
            if urgent:
                self._feed_urgent()
            for det in res.fusion.poll(now):
                self._emit_resident(res, det, res.wearable, alarms=self._fall_alarms(res, det))
            if res.fall_flags:
                # Flags the fusion dropped (cancelled): the recovery records why, from the
                # stored cancel, once their marker is older than alarms.recovery_grace_s.
                horizon = now - 2 * (self.settings.fall_confirm_window_s
                                     + self.settings.fall_merge_window_s)  # fmt: skip
                res.fall_flags = [f for f in res.fall_flags if f[0] >= horizon]
            for det in res.routine.check(now):
                self._emit_resident(res, det, res.bed_device)
            if res.bed_device is not None:
                for det in res.vitals.check(now):
                    self._emit_resident(res, det, res.bed_device)
            for summary in res.routine.drain_summaries():
                self._pending_days[(res.subject, summary.day)] = RoutineDay(res.subject, summary)
        for det in self._health.check(now):
            self._emit_health(det)

    def _fall_alarms(self, res: _Resident, det: Detection) -> tuple[tuple[str, str], ...]:
        """The device fall flags a confirmed fall accounts for (taken off the list)."""
        if not res.fall_flags:
            return ()
        first = (det.started if det.started is not None else det.time) - (
            self.settings.fall_merge_window_s
        )
        mine = [f for f in res.fall_flags if first <= f[0] <= det.time]
        if mine:
            res.fall_flags = [f for f in res.fall_flags if f not in mine]
        return tuple((d, m) for _, d, m in mine)

    def _emit_resident(
        self,
        res: _Resident,
        det: Detection,
        device_id: str | None,
        alarms: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._emit(
            DetectionRecord.of(
                det,
                site_id=res.site,
                resident_id=res.resident_id,
                device_id=device_id,
                location_id=res.location,
                alarms=alarms,
            )
        )

    def _emit_health(self, det: Detection) -> None:
        kind = det.kind
        if kind is DetectionKind.HUB_OFFLINE:
            site = det.details.get("site")
            rec = DetectionRecord.of(
                det,
                site_id=site if isinstance(site, str) else None,
                resident_id=None,
                device_id=None,
                location_id=det.subject,
            )
        elif kind is DetectionKind.SITE_OFFLINE:
            rec = DetectionRecord.of(
                det, site_id=det.subject, resident_id=None, device_id=None, location_id=None
            )
        else:  # about one device
            dev = self._devices.get(det.subject)
            info = dev.info if dev is not None else None
            rec = DetectionRecord.of(
                det,
                site_id=info.site_id if info else None,
                resident_id=dev.resident.resident_id if dev else None,
                device_id=det.subject,
                location_id=info.location_id if info else None,
            )
        self._emit(rec)

    def _emit(self, rec: DetectionRecord) -> None:
        """Queue a record for writing, keeping one open raise per condition."""
        if rec.kind not in ONE_SHOT:
            key = rec.key
            current = self._open.get(key)
            if not rec.resolved:
                if current is not None:
                    current.confirmed = True  # still going on: the open raise stands
                    self._m.continued.inc()
                    return
                self._open[key] = _OpenCondition(rec, restored=False)
            else:
                if current is None:
                    return  # nothing open to resolve
                del self._open[key]
                if rec.started != current.record.started:
                    rec = replace(rec, started=current.record.started)
        self._queue_record(rec)

    def _queue_record(self, rec: DetectionRecord) -> None:
        self._pending.append(rec)
        state = "resolved" if rec.resolved else "raised"
        self._m.detections.labels(rec.kind.value, state).inc()
        if not self._quiet:
            log.info(
                f"detection {state}",
                extra={"kind": rec.kind.value, "subject": rec.subject, "site": rec.site_id},
            )

    def _reconcile(self, now: float) -> None:
        """Resolve open conditions restored at start-up that no detector has re-raised."""
        stale = [c for c in self._open.values() if c.restored and not c.confirmed]
        for cond in stale:
            rec = cond.record
            self._emit(
                replace(
                    rec,
                    time=now,
                    resolved=True,
                    reason=(
                        "no longer detected: not re-established within "
                        f"{format_duration(self._reconcile_grace)} after the gateway restarted"
                    ),
                    details={**rec.details, "reconciled": True},
                )
            )
        if stale:
            log.info("restored conditions reconciled", extra={"resolved": len(stale)})


def clock_wrong_detection(device_id: str, started: float, error_s: float) -> Detection:
    """The "device clock wrong" finding of ``device_id`` (an alarm came ``error_s`` off)."""
    way = "ahead of" if error_s > 0 else "behind"
    return Detection(
        kind=DetectionKind.DEVICE_CLOCK_WRONG,
        subject=device_id,
        time=started,
        reason=(
            f"device clock wrong: an alarm came stamped {abs(error_s):.0f} s {way} the "
            "gateway's clock; it was stored and raised with the time it was received"
        ),
        details={"clock_error_s": round(error_s, 3)},
        started=started,
    )


def _padded(values: Sequence[int], n: int) -> npt.NDArray[np.float64]:
    out = np.zeros(n, dtype=np.float64)
    k = min(n, len(values))
    out[:k] = np.asarray(values[:k], dtype=np.float64)
    return out
