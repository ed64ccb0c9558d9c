"""Dedupe and reconcile: at most one open raise per condition.

A condition is ``(kind, subject, condition)`` (:attr:`DetectionRecord.key`). While one is
open, a second raise of it is its continuation (after a restart the detectors find again what
was already stored) and is not written (one that carries alarm events is passed on marked
:attr:`~DetectionRecord.continued`, for the intake to hand their markers to the open
incident); a resolution is written against the open raise (its
``started``), and a resolution with nothing open is dropped. Instants (:data:`ONE_SHOT`) pass
through. Conditions restored at start-up that no detector raises again within the grace are
resolved by :meth:`OpenConditions.reconcile`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from analytics.routine import format_duration
from gateway.analysis.records import ONE_SHOT, DetectionRecord


@dataclass(slots=True)
class _Open:
    record: DetectionRecord
    restored: bool
    confirmed: bool = False


class OpenConditions:
    """The conditions open now, each with the raise that opened it."""

    def __init__(self, on_continued: Callable[[], object] | None = None) -> None:
        self._open: dict[tuple[str, str, str], _Open] = {}
        self._on_continued = on_continued

    def restore(self, records: Iterable[DetectionRecord]) -> None:
        """Conditions stored open before the start (reconciled unless raised again)."""
        for rec in records:
            self._open[rec.key] = _Open(rec, restored=True)

    def admit(self, rec: DetectionRecord) -> DetectionRecord | None:
        """The record to write for ``rec``, or None when nothing is to be written."""
        if rec.kind in ONE_SHOT:
            return rec
        key = rec.key
        current = self._open.get(key)
        if not rec.resolved:
            if current is not None:
                current.confirmed = True  # still going on: the open raise stands
                if self._on_continued is not None:
                    self._on_continued()
                if rec.alarms:  # its alarm markers go to the open incident
                    return replace(rec, started=current.record.started, continued=True)
                return None
            self._open[key] = _Open(rec, restored=False)
            return rec
        if current is None:
            return None  # nothing open to resolve
        del self._open[key]
        if rec.started != current.record.started:
            return replace(rec, started=current.record.started)
        return rec

    def reconcile(self, now: float, grace_s: float) -> list[DetectionRecord]:
        """Resolutions of the restored conditions no detector raised again (to admit)."""
        why = (
            "no longer detected: not re-established within "
            f"{format_duration(grace_s)} after the gateway restarted"
        )
        return [
            replace(
                c.record,
                time=now,
                resolved=True,
                reason=why,
                details={**c.record.details, "reconciled": True},
            )
            for c in self._open.values()
            if c.restored and not c.confirmed
        ]

    def is_open(self, key: tuple[str, str, str]) -> bool:
        return key in self._open

    def __len__(self) -> int:
        return len(self._open)
