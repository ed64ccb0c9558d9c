"""After an away period (随家人外出) ends: a routine finding it held back whose condition is
still going on (no activity yet, not up yet) raises its incident now, through the same
incident intake as any finding. So ending the period early by mistake, or an elder left at
home while the family thought otherwise, never leaves a condition silenced.

:func:`release_ended` runs when the family ends a period (at once) and periodically
(:class:`gateway.family.worker.AwayReleaser`) for periods that simply run out. Idempotent:
each suppression is looked at once (``released_at``; rows locked with SKIP LOCKED, so two
gateways never raise twice)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from analytics.types import DetectionKind
from gateway.analysis import DetectionRecord
from gateway.escalation import intake
from gateway.storage import family_away as store
from gateway.workflow.service import IncidentService

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

NOTE = "; still going on after the away period (随家人外出) ended"


def _record(row: dict[str, Any], now: datetime) -> DetectionRecord:
    """The held-back finding as of ``now`` (so only a period in force now holds it back
    again); its episode start stays the detection's."""
    return DetectionRecord(
        kind=DetectionKind(row["kind"]),
        subject=row["subject"],
        condition=row["condition"],
        time=now.timestamp(),
        started=round(float(row["started"]), 3),
        resolved=False,
        reason=row["reason"] + NOTE,
        details=dict(row["details"] or {}) | {"away_ended": True},
        site_id=row["site_id"],
        resident_id=row["resident_id"],
        device_id=row["device_id"],
        location_id=row["location_id"],
    )


def release_ended(conn: Conn, now: datetime, sites: Sequence[str] | None = None) -> int:
    """Raise the incidents of held-back findings of ended periods still going on; how many
    findings were handed to the intake (one that another period covers now is held back
    again, for that period). With ``sites`` (a cell's) only those sites' findings."""
    with conn.transaction():
        rows = store.unreleased_open(conn, now, sites)
        if rows:
            service = IncidentService(conn)
            for row in rows:
                intake.take(conn, service, _record(row, now), {}, by="away_ended")
        store.mark_released(conn, [int(r["suppression_id"]) for r in rows], now)
    if rows:
        log.info("held-back findings raised after away mode ended", extra={"count": len(rows)})
    return len(rows)
