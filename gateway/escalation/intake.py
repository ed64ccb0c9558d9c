"""Detections become incidents; the resident's "I'm OK" reaches the incident workflow.

:func:`on_detections_stored` is the hook :class:`gateway.analysis.PostgresStore` calls inside
the transaction that stores new detections (only rows that were really inserted), so a
detection is stored if and only if its incident was raised or joined and, for a new
incident, its escalation timer was started (``incident_escalations``, due at once):

* a raise (care or technical) → :meth:`IncidentService.raise_or_join`;
* a resolved technical detection → :meth:`IncidentService.clear` of the open incident of
  that subject and type (when it is still raised or acknowledged);
* resolved care detections change nothing (a human closes care incidents);
* a raise by a device in an acceptance test (TEST MODE, :mod:`gateway.acceptance`) that is
  the step the test waits for (:func:`gateway.acceptance.awaited`: its first press or fall)
  is stored as an observation of the test instead; any other raise of a device under test
  is a real incident (test mode never silences a resident).

:func:`on_resident_cancel` is called by the analysis runner for a button ``cancel`` /
wearable cancel event after the detections before it were stored, and calls
:meth:`IncidentService.cancel_by_resident` (too late, already acknowledged or nothing
open: logged, nothing changes); a cancel from a device in an acceptance test is stored as an
observation of the test and cancels nothing.

Each item runs in its own savepoint: a bad item (e.g. a care detection of a device bound to
no resident) is logged and skipped without undoing the others; connection failures
propagate so the store retries the whole batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg

from gateway import acceptance
from gateway.workflow.service import IncidentNotFoundError, IncidentService, Trigger
from gateway.workflow.transitions import IncidentType, WorkflowError

if TYPE_CHECKING:
    from gateway.analysis import DetectionRecord

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

_START_ESCALATION = b"""
INSERT INTO incident_escalations (incident_id, site_id, next_at)
VALUES (%s, %s, now())
ON CONFLICT (incident_id) DO NOTHING
"""

_OPEN_TECHNICAL = b"""
SELECT id FROM incidents
WHERE subject = %s AND type = %s AND technical AND state IN ('raised', 'acknowledged')
"""


def start_escalation(conn: Conn, incident_id: int, site_id: str) -> None:
    """Start the escalation timer of a new incident (due now: tier 1 at the next poll)."""
    conn.execute(_START_ESCALATION, (incident_id, site_id))


def on_detections_stored(conn: Conn, records: Sequence[DetectionRecord]) -> None:
    """Raise/join or clear incidents for newly stored detections (in the caller's txn)."""
    service = IncidentService(conn)
    # Devices in an installer's acceptance test (TEST MODE): observations, not incidents.
    testing = acceptance.tests_in_progress(conn, records)
    for rec in records:
        if rec.site_id is None:
            log.warning(
                "detection without a site: no incident",
                extra={"kind": rec.kind.value, "subject": rec.subject},
            )
            continue
        try:
            with conn.transaction():
                if rec.resolved:
                    _clear(conn, service, rec)
                elif rec.device_id in testing and acceptance.awaited(
                    conn, testing[rec.device_id], rec
                ):
                    acceptance.observe(conn, testing[rec.device_id], rec)
                else:
                    trigger = Trigger(
                        type=IncidentType.from_detection(rec.kind),
                        site_id=rec.site_id,
                        time=datetime.fromtimestamp(rec.time, UTC),
                        reason=rec.reason,
                        resident_id=rec.resident_id,
                        subject=rec.subject if rec.technical else None,
                        details=dict(rec.details),
                    )
                    incident, created = service.raise_or_join(trigger)
                    if created:
                        start_escalation(conn, incident.id, incident.site_id)
        except (WorkflowError, psycopg.IntegrityError, psycopg.DataError) as exc:
            log.warning(
                "detection not turned into an incident",
                extra={"kind": rec.kind.value, "subject": rec.subject, "error": str(exc)[:200]},
            )


def _clear(conn: Conn, service: IncidentService, rec: DetectionRecord) -> None:
    if not rec.technical:
        return
    row = conn.execute(_OPEN_TECHNICAL, (rec.subject, rec.kind.value)).fetchone()
    if row is not None:
        service.clear(int(row[0]))


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
