"""What the analysis runner knows, writes and reads back: plain records, no I/O.

* :class:`ResidentInfo` and :class:`RegistrySnapshot`: the registry as analysis sees it
  (codes only, no personal data; each site's UTC offset);
* :class:`DetectionRecord`: a detection with its context, as stored, and its identity;
* :class:`RoutineDay` and :class:`VitalsDay`: the day rows the runner saves;
* :class:`DeviceRestore` and :class:`RebuildState`: what a store hands back at start-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import psycopg

from analytics.routine import DaySummary
from analytics.types import DetailValue, Detection, DetectionKind
from gateway.facts import DEFAULT_UTC_OFFSET_S
from gateway.ingest import StoredMessage
from gateway.registry import DeviceInfo

Conn = psycopg.Connection[tuple[Any, ...]]
"""A database connection as the analysis stores use it."""

ONE_SHOT: Final = frozenset({DetectionKind.FALL, DetectionKind.EMERGENCY_CALL})
"""Findings that are instants, not conditions: they have no resolution."""


class AnalysisError(RuntimeError):
    """The analysis runner cannot take input (stopped, or its worker died)."""


class StoreUnavailableError(AnalysisError):
    """The store cannot be reached now; the runner keeps its output and retries."""


@dataclass(frozen=True, slots=True)
class ResidentInfo:
    """A resident as analysis sees it (codes only, no personal data)."""

    resident_id: str
    site_id: str
    care_level: int = 2
    status: str = "home"  # home | away | hospital
    categories: frozenset[str] = frozenset()  # risk categories: detection sensitivity
    away_periods: tuple[tuple[float, float], ...] = ()
    """The family's away periods (随家人外出), (start, end) epoch seconds: their days are not
    learned from (alerts are not paused here; the incident intake holds them back)."""

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


def utc(t: float) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(t, UTC)


def opt_float(value: Any) -> float | None:
    """A nullable column as a float."""
    return None if value is None else float(value)


def opt_int(value: Any) -> int | None:
    """A nullable numeric column as an int."""
    return None if value is None else round(float(value))


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
    continued: bool = False
    """A raise of a condition already open, carrying alarm events (a detector's repeated
    ``alarm`` while it still sounds): not stored as a detection (the open raise stands), but
    handed to the intake so their markers are taken by the open incident (no new trigger)."""

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
            "time": utc(self.time).isoformat(timespec="milliseconds"),
            "started": utc(self.started).isoformat(timespec="milliseconds"),
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
    door_opened: float | None = None
    """A door contact's last ``open`` event (device time), for "door not opened for days"."""


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


StoredHook = Callable[[Conn, Sequence[DetectionRecord]], None]
"""Called in the storing transaction with the detections that were new (not duplicates)."""
