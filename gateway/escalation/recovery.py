"""Alarm recovery: every stored alarm becomes an incident, whatever the crash timing.

The ingest transaction that stores an alarm event (button press or long press, SOS, device
fall flag, a smoke or gas detector's alarm, a water leak) also writes its pending marker
(``pending_alarms``, migration 0017); the intake (:mod:`gateway.escalation.intake`) clears
it in the transaction that raises or joins the alarm's incident. A marker still pending means
the analysis never got to the alarm: the gateway was killed after the ack and stayed down
longer than ``analysis.catch_up_s``, or the analysis thread died, or it was stopped before
analysing what it held.

:class:`AlarmRecovery` handles such markers:

* at start-up (:meth:`AlarmRecovery.startup`, before the analysis rebuilds its state), every
  marker written before this start, whatever its age (fall flags only once their
  confirmation window has run out; younger ones are left to the analysis's replay);
* then every ``alarms.recovery_interval_s``, the markers pending longer than
  ``alarms.recovery_grace_s``.

For each marker, in one transaction that holds its row lock (``FOR UPDATE SKIP LOCKED``; the
intake locks the same row and acts only on an unhandled marker, so the two paths never both
raise):

* a fall flag the resident cancelled ("I'm OK" from one of their devices within the fall
  confirmation window) → handled, outcome ``cancelled``, the reason in ``note``; nothing raised;
* otherwise the detection is stored (``ON CONFLICT DO NOTHING`` on its identity, the same
  identity the analysis would give it) and handed to the intake, which raises or joins the
  incident with the alarm's original time, marks the marker handled (``by = recovery``) and
  says in the reason and details how late it was raised. A device under an acceptance test
  is observed by the test, as on the live path. An alarm from a device bound to no resident
  raises the place's incident.
* a smoke or gas alarm raises its hazard incident (``smoke_alarm`` / ``gas_alarm``, the
  hazard ladder, never merged with care incidents), a water leak its ``water_leak``: the
  detection the kit runner (:func:`gateway.kit.runner.alarm_detection`) would have stored;
* an alarm whose device's clock was wrong also raises that device's technical incident
  "device clock wrong" (joined when already open).

The analysis marks nothing itself: a fall flag it dropped because the resident cancelled is
recorded here once the grace has passed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter

from analytics.falls import clock_time
from analytics.types import Detection, DetectionKind
from gateway import acceptance
from gateway.analysis import DetectionRecord, PostgresStore, clock_wrong_detection
from gateway.escalation import intake
from gateway.kit.runner import alarm_detection
from gateway.settings import AlarmSettings, AnalysisSettings
from gateway.storage import pending_alarms
from gateway.storage.pending_alarms import PendingAlarm
from gateway.workflow.service import IncidentService

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


def _record(alarm: PendingAlarm, confirm_window_s: float) -> DetectionRecord:
    """The detection the analysis would have stored for the alarm (same identity)."""
    at = clock_time(alarm.time, alarm.utc_offset_s)
    if alarm.type == "fall":
        det = Detection(
            kind=DetectionKind.FALL,
            subject=alarm.subject,
            time=alarm.time + confirm_window_s,
            reason=(
                f"Fall at {at}: reported by the wearable's own fall flag; "
                f"not cancelled within {confirm_window_s:g} s."
            ),
            details={"sources": "device_flag", "device_flag": True, "recovered": True},
            started=alarm.time,
        )
    elif (kit := _kit_detection(alarm)) is not None:
        det = replace(kit, details={**kit.details, "recovered": True})
    else:
        if alarm.type == "sos":
            reason = f"SOS button pressed at {at}"
        else:
            how = "long-pressed" if alarm.type == "long_press" else "pressed"
            reason = f"emergency call button {how} at {at}"
        det = Detection(
            kind=DetectionKind.EMERGENCY_CALL,
            subject=alarm.subject,
            time=alarm.time,
            reason=reason,
            details={"source": alarm.kind or "", "event": alarm.type, "recovered": True},
        )
    return DetectionRecord.of(
        det,
        site_id=alarm.site_id,
        resident_id=alarm.resident_id,
        device_id=alarm.device_id,
        location_id=alarm.location_id,
        alarms=((alarm.device_id, alarm.msg_id),),
    )


def _kit_detection(alarm: PendingAlarm) -> Detection | None:
    """A smoke, gas or water leak alarm's detection, as the kit runner builds it."""
    return alarm_detection(
        alarm.kind, alarm.type, subject=alarm.subject, t=alarm.time,
        utc_offset=alarm.utc_offset_s, device_id=alarm.device_id, data=alarm.data,
    )  # fmt: skip


def recover_once(
    conn: Conn,
    *,
    older_than_s: float,
    analysis: AnalysisSettings,
    limit: int,
    sites: Sequence[str] | None = None,
) -> list[str]:
    """Handle up to ``limit`` markers written more than ``older_than_s`` ago (the database's
    clock: a gateway clock off by an hour changes nothing), in one transaction.

    Returns the outcome of each claimed marker (``raised``, ``joined``, ``cancelled``,
    ``test_observation``, ``already_raised``, or ``failed``: left pending, retried).
    ``conn`` must be in autocommit mode. ``sites``: only those sites' markers (a cell's
    gateway, :mod:`gateway.cells`; another cell's alarms wait for their own cell)."""
    confirm = analysis.fall_confirm_window_s
    with conn.transaction():
        alarms = pending_alarms.claim(conn, older_than_s, confirm, limit, sites)
        if not alarms:
            return []
        service = IncidentService(conn)
        records = [_record(a, confirm) for a in alarms]
        testing = acceptance.tests_in_progress(conn, records)
        return [
            _recover(conn, service, alarm, rec, testing=testing, confirm_window_s=confirm)
            for alarm, rec in zip(alarms, records, strict=True)
        ]


def _recover(
    conn: Conn,
    service: IncidentService,
    alarm: PendingAlarm,
    rec: DetectionRecord,
    *,
    testing: dict[str, str],
    confirm_window_s: float,
) -> str:
    late = max(0.0, datetime.now(UTC).timestamp() - alarm.received_at)
    if alarm.type == "fall":
        cancel = pending_alarms.first_cancel(
            conn, alarm.subject, _utc(alarm.time), _utc(alarm.time + confirm_window_s)
        )
        if cancel is not None:
            note = (
                f'fall flag cancelled by the resident ("I\'m OK") at '
                f"{clock_time(cancel, alarm.utc_offset_s)}, within its "
                f"{confirm_window_s:g} s window"
            )
            pending_alarms.mark_cancelled(conn, alarm.device_id, alarm.msg_id, note)
            log.info("pending fall flag: resident cancelled", extra={"device": alarm.device_id})
            return "cancelled"
    PostgresStore.store_detections(conn, [rec])
    outcome = intake.take(
        conn, service, rec, testing, by="recovery", note=f"raised {late:.0f} s after receipt"
    )
    if alarm.clock_wrong and alarm.device_time is not None:
        started = round(alarm.received_at, 3)
        det = clock_wrong_detection(alarm.device_id, started, alarm.device_time - alarm.time)
        clock = DetectionRecord.of(
            det, site_id=alarm.site_id, resident_id=None, device_id=alarm.device_id,
            location_id=alarm.location_id,
        )  # fmt: skip
        PostgresStore.store_detections(conn, [clock])
        intake.take(conn, service, clock, {}, by="recovery")
    log.warning(
        "pending alarm recovered",
        extra={"device": alarm.device_id, "type": alarm.type, "outcome": outcome,
               "late_s": round(late, 1)},
    )  # fmt: skip
    return outcome or "failed"


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class AlarmRecovery:
    """Runs :func:`recover_once` at start-up and periodically, on its own connection."""

    def __init__(
        self,
        conninfo: str,
        settings: AlarmSettings,
        analysis: AnalysisSettings,
        *,
        registry: CollectorRegistry | None = None,
        sites: Sequence[str] | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._sites = sites  # None: every site
        self._settings = settings
        self._analysis = analysis
        self._conn: Conn | None = None
        self.recovered = 0
        self._outcomes = Counter(
            "safehome_alarms_recovered",
            "Stored alarms the recovery handled (their incident did not exist), by outcome",
            ["outcome"],
            registry=registry or CollectorRegistry(auto_describe=True),
        )

    def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo, autocommit=True)
        return self._conn

    def _drain(self, older_than_s: float) -> int:
        total = 0
        limit = self._settings.recovery_batch_size
        while True:
            try:
                outcomes = recover_once(
                    self._connection(),
                    older_than_s=older_than_s,
                    analysis=self._analysis,
                    limit=limit,
                    sites=self._sites,
                )
            except (psycopg.OperationalError, psycopg.InterfaceError):
                self.close()
                raise
            for outcome in outcomes:
                self._outcomes.labels(outcome).inc()
            n = len(outcomes)
            total += n
            if n < limit:
                break
        self.recovered += total
        return total

    def startup(self) -> int:
        """Every marker of the previous run (written before now), whatever its age."""
        n = self._drain(0.0)
        if n:
            log.warning("pending alarms of the previous run recovered", extra={"alarms": n})
        return n

    def run_once(self) -> int:
        """The markers pending longer than ``recovery_grace_s``."""
        return self._drain(self._settings.recovery_grace_s)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def pending_count(conn: Conn, sites: Sequence[str] | None = None) -> int:
    """Markers not handled yet, of ``sites`` when given (for /health and tests)."""
    return pending_alarms.pending_count(conn, sites)


__all__: Sequence[str] = ["AlarmRecovery", "PendingAlarm", "pending_count", "recover_once"]
