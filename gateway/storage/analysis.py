"""The analysis runner's SQL: detections and day rows written, the registry and its own
tables read back (tables of migration ``0003_detections``).

Every function takes the caller's connection and runs in the caller's transaction (if any);
:class:`gateway.analysis.PostgresStore` owns the connection and composes these into a
rebuild. The replay of stored messages is in :mod:`gateway.storage.analysis_history`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import orjson
from psycopg.types.json import Jsonb

from analytics.routine import DaySummary
from analytics.types import DetectionKind
from gateway.analysis.records import (
    ONE_SHOT,
    Conn,
    DetectionRecord,
    DeviceRestore,
    RegistrySnapshot,
    ResidentInfo,
    RoutineDay,
    StoredHook,
    VitalsDay,
    opt_float,
    utc,
)
from gateway.registry import load_devices

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
# The risk categories as visiting care counts them (resident_risks and the registry flags).
_RESIDENTS = """
SELECT r.resident_id, r.site_id, r.care_level, r.status,
       array(SELECT category FROM resident_risks k WHERE k.resident_id = r.resident_id
             UNION SELECT 'high_risk' WHERE r.high_risk
             UNION SELECT 'living_alone' WHERE r.lives_alone)
FROM residents r
"""
# The family's away periods (随家人外出, gateway.family.away) with their effective end, the
# latest few of each resident (those a learned routine can still contain); a period called
# off before it began never was in force.
_AWAY_PERIODS = """
SELECT resident_id, s, e FROM (
    SELECT resident_id, extract(epoch FROM starts_at)::float8 AS s,
           extract(epoch FROM least(ends_at, coalesce(ended_at, ends_at)))::float8 AS e,
           row_number() OVER (PARTITION BY resident_id ORDER BY starts_at DESC) AS n
    FROM away_periods
    WHERE least(ends_at, coalesce(ended_at, ends_at)) > starts_at
) p
WHERE n <= 16
ORDER BY resident_id, s
"""
_SITE_OFFSETS = "SELECT site_id, utc_offset_s FROM sites"
_ROUTINE_DAYS = """
SELECT subject, day, rise_s, bed_s, active_minutes, away, bed_data
FROM routine_days WHERE day >= %s ORDER BY day
"""
_VITALS_DAYS = "SELECT subject, day, heart_rate, breathing_rate FROM vitals_days WHERE day >= %s"
_OPEN_DETECTIONS = """
SELECT kind, subject, condition, site_id, resident_id, device_id, location_id,
       extract(epoch FROM time), extract(epoch FROM started), reason, details
FROM detections WHERE NOT resolved AND closed_at IS NULL
"""
_LAST_SEEN = """
SELECT d.device_id,
       extract(epoch FROM greatest(r.received_at, e.received_at, s.received_at)),
       s.offline AND s.received_at >= greatest(r.received_at, e.received_at, s.received_at),
       extract(epoch FROM o.time)
FROM devices d
LEFT JOIN LATERAL (SELECT received_at FROM readings WHERE device_id = d.device_id
                   AND time >= %(since)s ORDER BY time DESC LIMIT 1) r ON true
LEFT JOIN LATERAL (SELECT received_at FROM device_events WHERE device_id = d.device_id
                   AND time >= %(since)s ORDER BY time DESC LIMIT 1) e ON true
LEFT JOIN LATERAL (SELECT received_at, NOT online AS offline FROM device_state
                   WHERE device_id = d.device_id AND time >= %(since)s
                   ORDER BY received_at DESC LIMIT 1) s ON true
LEFT JOIN LATERAL (SELECT time FROM device_events WHERE device_id = d.device_id
                   AND d.kind = 'door_contact' AND type = 'open' AND time >= %(since)s
                   ORDER BY time DESC LIMIT 1) o ON true
WHERE d.active
"""


# -- registry ---------------------------------------------------------------------------------


def load_registry(conn: Conn) -> RegistrySnapshot:
    """Active devices, residents (table ``residents``, with their family's away periods:
    ``away_periods``) and site UTC offsets (``sites``)."""
    away: dict[str, list[tuple[float, float]]] = {}
    for rid, start, end in conn.execute(_AWAY_PERIODS).fetchall():
        away.setdefault(str(rid), []).append((float(start), float(end)))
    residents = {
        str(rid): ResidentInfo(
            str(rid),
            str(site),
            int(level),
            str(status),
            frozenset(cats),
            tuple(away.get(str(rid), ())),
        )
        for rid, site, level, status, cats in conn.execute(_RESIDENTS).fetchall()
    }
    offsets = {str(site): float(off) for site, off in conn.execute(_SITE_OFFSETS).fetchall()}
    return RegistrySnapshot(load_devices(conn), residents, offsets)


# -- the runner's own tables, read back -------------------------------------------------------


def load_routine_days(conn: Conn, since_day: int) -> dict[str, list[DaySummary]]:
    """Day summaries (table ``routine_days``) from ``since_day`` on, by subject, in day order."""
    routine: dict[str, list[DaySummary]] = {}
    for subject, day, rise, bed, active, away, bed_data in conn.execute(
        _ROUTINE_DAYS, (since_day,)
    ).fetchall():
        routine.setdefault(str(subject), []).append(
            DaySummary(
                int(day),
                opt_float(rise),
                opt_float(bed),
                tuple(float(x) for x in active),
                bool(away),
                bool(bed_data),
            )
        )
    return routine


def load_vitals_days(conn: Conn, since_day: int) -> list[VitalsDay]:
    """Vitals day histograms (table ``vitals_days``) from ``since_day`` on."""
    return [
        VitalsDay(str(subject), int(day), tuple(hr), tuple(rr))
        for subject, day, hr, rr in conn.execute(_VITALS_DAYS, (since_day,)).fetchall()
    ]


def load_open_detections(conn: Conn) -> list[DetectionRecord]:
    """The raised conditions not resolved nor closed (table ``detections``)."""
    return [
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


def load_last_seen(conn: Conn, since: datetime) -> dict[str, DeviceRestore]:
    """Each active device's last receive time since ``since`` (readings, events, states),
    whether its last state said offline, and a door contact's last opening."""
    return {
        str(dev): DeviceRestore(float(seen), bool(offline), opt_float(opened))
        for dev, seen, offline, opened in conn.execute(_LAST_SEEN, {"since": since}).fetchall()
        if seen is not None
    }


# -- output -----------------------------------------------------------------------------------


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()


def store_detections(conn: Conn, detections: Sequence[DetectionRecord]) -> list[DetectionRecord]:
    """Insert detections (a copy of a stored one is ignored) and close what a resolution
    resolves, in the caller's transaction; return the records really inserted."""
    inserted: list[DetectionRecord] = []
    for r in detections:
        started = utc(r.started)
        closed = utc(r.time) if r.kind in ONE_SHOT and not r.resolved else None
        cur = conn.execute(
            _INSERT_DETECTION,
            (r.kind.value, r.subject, r.condition, r.site_id, r.resident_id, r.device_id,
             r.location_id, r.technical, utc(r.time), started, r.resolved, closed,
             r.reason, Jsonb(dict(r.details), dumps=_dumps)),
        )  # fmt: skip
        if cur.rowcount > 0:
            inserted.append(r)
        if r.resolved:
            conn.execute(
                _CLOSE_DETECTION,
                (utc(r.time), r.kind.value, r.subject, r.condition, started),
            )
    return inserted


def upsert_day_rows(
    conn: Conn, routine_days: Sequence[RoutineDay], vitals_days: Sequence[VitalsDay]
) -> None:
    """Upsert day rows by (subject, day) in the caller's transaction."""
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


def write_output(
    conn: Conn,
    detections: Sequence[DetectionRecord],
    routine_days: Sequence[RoutineDay],
    vitals_days: Sequence[VitalsDay],
    on_stored: StoredHook | None = None,
) -> int:
    """Store detections and day rows in one transaction, ``on_stored`` with the new
    detections in it (and the continuations, :attr:`DetectionRecord.continued`, which are
    not stored, in their order); return how many detections were new."""
    with conn.transaction():
        inserted = store_detections(conn, [d for d in detections if not d.continued])
        upsert_day_rows(conn, routine_days, vitals_days)
        new = {id(d) for d in inserted}
        hand = [d for d in detections if d.continued or id(d) in new]
        if on_stored is not None and hand:
            on_stored(conn, hand)
    return len(inserted)
