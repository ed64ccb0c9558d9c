"""Detections become incidents; the resident's "I'm OK" reaches the incident workflow.

:func:`on_detections_stored` is the hook :class:`gateway.analysis.PostgresStore` calls inside
the transaction that stores new detections (only rows that were really inserted), so a
detection is stored if and only if its incident was raised or joined and, for a new
incident, its escalation timer was started (``incident_escalations``, due at once):

* a raise (care or technical) → :meth:`IncidentService.raise_or_join`;
* a continuation carrying alarm events (:attr:`DetectionRecord.continued`: a smoke detector
  repeating its ``alarm`` while it still sounds) → its markers are taken by the open incident
  (outcome ``already_raised``, no new trigger); with no open incident any more (resolved
  while the device still sounds) it raises a new one;
* a resolved technical detection → :meth:`IncidentService.clear` of the open incident of
  that subject and type (when it is still raised or acknowledged);
* resolved care detections change nothing (a human closes care incidents);
* a raise by a device in an acceptance test (TEST MODE, :mod:`gateway.acceptance`) that is
  the step the test waits for (:func:`gateway.acceptance.awaited`: its first press or fall)
  is stored as an observation of the test instead; any other raise of a device under test
  is a real incident (test mode never silences a resident);
* a routine finding (not up, no activity, night bed exit, not worn) of a resident away with
  the family (随家人外出, :mod:`gateway.family.away`) is recorded as suppressed instead;
  alarms (emergency call, fall, smoke, gas, water) are never suppressed;
* an alarm (emergency call, fall) of a device bound to no resident (a pull-cord bound to a
  room, a vacant bed, an unbound device, a device whose test mode expired; other care
  findings of such a device concern nobody and raise nothing) raises a care incident of the place:
  subject = its location, else its site (``resident_id`` NULL; one open per subject and type,
  migration 0017), escalated like any other.

Pending alarms (migration 0017): a detection that accounts for stored alarm events
(:attr:`DetectionRecord.alarms`) first locks their ``pending_alarms`` markers. Markers that
another path (the recovery, or an earlier run) already handled mean the alarm has its
incident: nothing is raised again. Otherwise the markers are marked handled with the
outcome and the incident, in the same savepoint as the raise, so an alarm's marker is
cleared if and only if its incident exists (or the test observed it). The incident keeps the
alarm's original time (``first_trigger_at``) and its details say how long after receipt it
was raised (``raised_after_s``) and whether the device's clock was wrong.

:func:`on_resident_cancel` is called by the analysis runner for a button ``cancel`` /
wearable cancel event after the detections before it were stored, and calls
:meth:`IncidentService.cancel_by_resident` (too late, already acknowledged or nothing
open: logged, nothing changes); a cancel from a device in an acceptance test is stored as an
observation of the test and cancels nothing.

Each item runs in its own savepoint: a bad item is logged and skipped without undoing the
others (its alarm markers stay pending, for the recovery); connection failures propagate so
the store retries the whole batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg

from analytics.types import HAZARDS, DetectionKind
from gateway import acceptance
from gateway.family import away
from gateway.storage import escalation, incidents, pending_alarms
from gateway.storage.pending_alarms import Marker
from gateway.workflow.service import IncidentNotFoundError, IncidentService, Trigger
from gateway.workflow.transitions import IncidentType, WorkflowError

if TYPE_CHECKING:
    from gateway.analysis import DetectionRecord

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


def start_escalation(conn: Conn, incident_id: int, site_id: str) -> None:
    """Start the escalation timer of a new incident (due now: tier 1 at the next poll)."""
    escalation.start(conn, incident_id, site_id)


PLACE_KINDS = frozenset({DetectionKind.EMERGENCY_CALL, DetectionKind.FALL}) | HAZARDS
"""Alarms: raised for the place when no resident is bound. A vacant bed's routine findings
(not up, no activity) concern nobody and still raise nothing."""
LATE_NOTE_S = 10.0
"""An alarm raised this long or longer after it was received says so in its reason."""


def on_detections_stored(conn: Conn, records: Sequence[DetectionRecord]) -> None:
    """Raise/join or clear incidents for newly stored detections (in the caller's txn)."""
    service = IncidentService(conn)
    # Devices in an installer's acceptance test (TEST MODE): observations, not incidents.
    testing = acceptance.tests_in_progress(conn, records)
    for rec in records:
        take(conn, service, rec, testing)


def take(
    conn: Conn,
    service: IncidentService,
    rec: DetectionRecord,
    testing: dict[str, str],
    *,
    by: str = "analysis",
    note: str | None = None,
) -> str | None:
    """Turn one stored detection into its incident (see the module documentation), in a
    savepoint. Returns the alarm outcome recorded on its markers (``raised``, ``joined``,
    ``test_observation``, ``already_raised``), or None (no markers, or it failed)."""
    if rec.site_id is None:
        log.warning(
            "detection without a site: no incident",
            extra={"kind": rec.kind.value, "subject": rec.subject},
        )
        return None
    try:
        with conn.transaction():
            markers: list[Marker] = []
            if rec.alarms and not rec.resolved:
                markers, handled = pending_alarms.lock(conn, rec.alarms)
                if handled and not markers:
                    log.info(
                        "alarm already raised: nothing raised again",
                        extra={"kind": rec.kind.value, "device": rec.device_id, "by": by},
                    )
                    return "already_raised"
            if rec.resolved:
                _clear(conn, service, rec)
                return None
            if rec.continued:
                if not markers:
                    return None
                open_id = _open_incident(conn, rec)
                if open_id is not None:
                    note = "continuation: the device's alarm is still going on (no new trigger)"
                    pending_alarms.handle(conn, markers, by, "already_raised", open_id, note=note)
                    return "already_raised"
                # The incident was resolved while the device still sounds: a new one (below).
            if rec.device_id in testing and acceptance.awaited(conn, testing[rec.device_id], rec):
                acceptance.observe(conn, testing[rec.device_id], rec)
                pending_alarms.handle(conn, markers, by, "test_observation", None, note=note)
                return "test_observation" if markers else None
            if away.suppress(conn, rec):
                return None
            incident, created = service.raise_or_join(_trigger(rec, markers, by))
            if created:
                start_escalation(conn, incident.id, incident.site_id)
            outcome = "raised" if created else "joined"
            pending_alarms.handle(conn, markers, by, outcome, incident.id, note=note)
            return outcome if markers else None
    except (WorkflowError, psycopg.IntegrityError, psycopg.DataError) as exc:
        log.warning(
            "detection not turned into an incident",
            extra={"kind": rec.kind.value, "subject": rec.subject, "error": str(exc)[:200]},
        )
        return None


def _trigger(rec: DetectionRecord, markers: Sequence[Marker], by: str) -> Trigger:
    """The incident trigger of a detection: a care detection of a device bound to no
    resident is the place's (its location, else its site); alarm timing in the details."""
    assert rec.site_id is not None
    details: dict[str, Any] = dict(rec.details)
    reason = rec.reason
    resident_id = rec.resident_id
    subject: str | None = rec.subject if rec.technical else None
    if rec.kind in PLACE_KINDS and resident_id is None:
        subject = rec.location_id or rec.site_id
        level = "location" if rec.location_id else "site"
        details.update(level=level, device=rec.device_id, no_resident=True)
        reason += f" (device {rec.device_id} is bound to no resident: {level} {subject})"
    if markers:
        received = min(m.received_at for m in markers)
        late = max(0.0, time.time() - received)
        details.update(
            raised_after_s=round(late, 3),
            raised_by=by,
            received_at=datetime.fromtimestamp(received, UTC).isoformat(timespec="milliseconds"),
        )
        if by == "recovery" or late >= LATE_NOTE_S:
            reason += f"; raised {late:.0f} s after the alarm was received"
            if by == "recovery":
                reason += " (recovered: it had not been analysed, e.g. the gateway was down)"
        wrong = [m for m in markers if m.clock_wrong]
        if wrong:
            device_time = wrong[0].device_time
            details.update(
                clock_wrong=True,
                device_time=None if device_time is None
                else datetime.fromtimestamp(device_time, UTC).isoformat(timespec="seconds"),
            )  # fmt: skip
            reason += "; the device's clock was wrong: the receive time is used"
    return Trigger(
        type=IncidentType.from_detection(rec.kind),
        site_id=rec.site_id,
        time=datetime.fromtimestamp(rec.time, UTC),
        reason=reason,
        resident_id=resident_id,
        subject=subject,
        details=details,
    )


def _open_incident(conn: Conn, rec: DetectionRecord) -> int | None:
    """The open incident a raise of ``rec`` would join, if any."""
    trigger = _trigger(rec, (), "analysis")
    itype = trigger.type.value
    if trigger.type.technical:
        return incidents.open_of(conn, itype, subject=trigger.key_subject, technical=True)
    if trigger.resident_id is not None:
        return incidents.open_of(conn, itype, resident_id=trigger.resident_id)
    return incidents.open_of(conn, itype, subject=trigger.key_subject)


def _clear(conn: Conn, service: IncidentService, rec: DetectionRecord) -> None:
    if not rec.technical:
        return
    open_id = incidents.open_technical(conn, rec.subject, rec.kind.value)
    if open_id is not None:
        service.clear(open_id)


def on_resident_cancel(conn: Conn, resident_id: str, at: float, device_id: str | None) -> None:
    """The resident's "I'm OK" (device time ``at``): cancel their open alarm in its window;
    from a device in an acceptance test: a test observation, no alarm cancelled."""
    if device_id is not None:
        with conn.transaction():
            test_id = acceptance.running_test_of(conn, device_id)
            if test_id is not None:
                acceptance.observe_cancel(conn, test_id, device_id, at)
                return
    try:
        IncidentService(conn).cancel_by_resident(
            resident_id, datetime.fromtimestamp(at, UTC), device_id
        )
    except IncidentNotFoundError:
        log.info("resident cancel: nothing open to cancel", extra={"device": device_id})
    except WorkflowError as exc:
        log.info("resident cancel refused", extra={"device": device_id, "error": str(exc)})
