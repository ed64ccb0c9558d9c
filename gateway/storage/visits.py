"""SQL of visiting care: districts, assessments, risk categories, worker assignments,
visits, door-knock tasks and overdue-visit notices (migration 0029).

Functions run on the caller's connection and inside the caller's transaction; they return
plain rows (dicts or dataclasses), never raise HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from gateway.storage.demo_sites import DEMO_CLOCK_SQL

Conn = psycopg.Connection[Any]


# -- scope: districts and assignments ----------------------------------------------------


def set_site_district(conn: Conn, site_id: str, district_id: str) -> None:
    conn.execute(
        "INSERT INTO site_districts (site_id, district_id) VALUES (%s, %s) "
        "ON CONFLICT (site_id) DO UPDATE SET district_id = EXCLUDED.district_id",
        (site_id, district_id),
    )


def set_user_district(conn: Conn, user_id: str, district_id: str) -> None:
    conn.execute(
        "INSERT INTO user_districts (user_id, district_id) VALUES (%s, %s) "
        "ON CONFLICT (user_id) DO UPDATE SET district_id = EXCLUDED.district_id",
        (user_id, district_id),
    )


def user_district(conn: Conn, user_id: str) -> str | None:
    row = conn.execute(
        "SELECT district_id FROM user_districts WHERE user_id = %s", (user_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def district_site_ids(conn: Conn, district_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT site_id FROM site_districts WHERE district_id = %s ORDER BY site_id",
        (district_id,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def user_role(conn: Conn, user_id: str) -> str | None:
    row = conn.execute(
        "SELECT role FROM users WHERE user_id = %s AND active", (user_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def assign_worker(conn: Conn, resident_id: str, user_id: str) -> None:
    conn.execute(
        "INSERT INTO worker_assignments (resident_id, user_id) VALUES (%s, %s) "
        "ON CONFLICT (resident_id) DO UPDATE SET user_id = EXCLUDED.user_id, "
        "assigned_at = now()",
        (resident_id, user_id),
    )


def worker_of(conn: Conn, resident_id: str) -> str | None:
    row = conn.execute(
        "SELECT user_id FROM worker_assignments WHERE resident_id = %s", (resident_id,)
    ).fetchone()
    return None if row is None else str(row[0])


@dataclass(frozen=True, slots=True)
class ResidentScope:
    """Where a resident lives: site, district, the site's UTC offset, the worker."""

    resident_id: str
    site_id: str
    district_id: str | None
    utc_offset_s: int
    worker_id: str | None


def resident_scope(conn: Conn, resident_id: str) -> ResidentScope | None:
    row = conn.execute(
        "SELECT r.resident_id, r.site_id, d.district_id, s.utc_offset_s, w.user_id "
        "FROM residents r JOIN sites s ON s.site_id = r.site_id "
        "LEFT JOIN site_districts d ON d.site_id = r.site_id "
        "LEFT JOIN worker_assignments w ON w.resident_id = r.resident_id "
        "WHERE r.resident_id = %s",
        (resident_id,),
    ).fetchone()
    if row is None:
        return None
    return ResidentScope(str(row[0]), str(row[1]), row[2], int(row[3]), row[4])


# -- assessments and risk categories ---------------------------------------------------


def add_assessment(
    conn: Conn,
    resident_id: str,
    *,
    level: str,
    assessor: str,
    assessed_on: date,
    next_due: date,
    notes: str | None,
    recorded_by: str,
) -> int:
    row = conn.execute(
        "INSERT INTO assessments (resident_id, level, assessor, assessed_on, next_due, notes, "
        "recorded_by) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (resident_id, level, assessor, assessed_on, next_due, notes, recorded_by),
    ).fetchone()
    assert row is not None
    return int(row[0])


def assessments_of(conn: Conn, resident_id: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, level, assessor, assessed_on, next_due, notes, recorded_by, recorded_at "
            "FROM assessments WHERE resident_id = %s ORDER BY assessed_on DESC, id DESC",
            (resident_id,),
        ).fetchall()


def set_risks(conn: Conn, resident_id: str, categories: Iterable[str]) -> None:
    cats = sorted(set(categories))
    conn.execute(
        "DELETE FROM resident_risks WHERE resident_id = %s AND NOT (category = ANY(%s))",
        (resident_id, cats),
    )
    for cat in cats:
        conn.execute(
            "INSERT INTO resident_risks (resident_id, category) VALUES (%s, %s) "
            "ON CONFLICT DO NOTHING",
            (resident_id, cat),
        )


# One row per resident: current assessment, categories, worker, last visit of each kind.
# The registry's flags count as categories too (high_risk, lives_alone → living_alone).
_CARDS_SQL = """
SELECT r.resident_id, r.elder_code, r.display_name, r.site_id, r.status, r.high_risk,
       r.lives_alone, r.created_at, s.utc_offset_s, {demo_clock} AS demo_clock,
       s.kind AS site_kind, d.district_id,
       w.user_id AS worker_id, b.bed_code,
       a.level, a.assessor, a.assessed_on, a.next_due,
       coalesce((SELECT array_agg(DISTINCT c ORDER BY c) FROM (
                     SELECT category AS c FROM resident_risks k
                     WHERE k.resident_id = r.resident_id
                     UNION ALL SELECT 'high_risk' WHERE r.high_risk
                     UNION ALL SELECT 'living_alone' WHERE r.lives_alone) cats),
                '{}') AS categories,
       (SELECT max(visited_at) FROM visits v
        WHERE v.resident_id = r.resident_id AND v.kind = 'phone') AS last_phone,
       (SELECT max(visited_at) FROM visits v
        WHERE v.resident_id = r.resident_id AND v.kind = 'home') AS last_home,
       (SELECT max(least(p.ends_at, coalesce(p.ended_at, p.ends_at))) FROM away_periods p
        WHERE p.resident_id = r.resident_id AND p.starts_at <= now()
          AND least(p.ends_at, coalesce(p.ended_at, p.ends_at)) > now()) AS away_until
FROM residents r
JOIN sites s ON s.site_id = r.site_id
LEFT JOIN site_districts d ON d.site_id = r.site_id
LEFT JOIN worker_assignments w ON w.resident_id = r.resident_id
LEFT JOIN beds b ON b.bed_id = r.bed_id
LEFT JOIN LATERAL (
    SELECT level, assessor, assessed_on, next_due FROM assessments x
    WHERE x.resident_id = r.resident_id ORDER BY assessed_on DESC, id DESC LIMIT 1
) a ON true
WHERE (%(site)s::text IS NULL OR r.site_id = %(site)s)
  AND (%(worker)s::text IS NULL OR w.user_id = %(worker)s)
  AND (%(district)s::text IS NULL OR d.district_id = %(district)s)
  AND (%(resident)s::text IS NULL OR r.resident_id = %(resident)s)
  AND (%(sites)s::text[] IS NULL OR r.site_id = ANY(%(sites)s::text[]))
ORDER BY r.site_id, r.resident_id
""".replace("{demo_clock}", DEMO_CLOCK_SQL)


def resident_cards(
    conn: Conn,
    *,
    site_id: str | None = None,
    worker_id: str | None = None,
    district_id: str | None = None,
    resident_id: str | None = None,
    sites: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Residents with their visiting-care facts, filtered by every filter given (``sites``:
    a cell's sites, :mod:`gateway.cells`)."""
    params = {"site": site_id, "worker": worker_id, "district": district_id,
              "resident": resident_id,
              "sites": None if sites is None else list(sites)}  # fmt: skip
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_CARDS_SQL, params).fetchall()


# -- visits ----------------------------------------------------------------------------


def proof_matches(conn: Conn, resident_id: str, code: str) -> bool:
    """Whether ``code`` is the elder's code or the code of the elder's bed."""
    row = conn.execute(
        "SELECT 1 FROM residents r LEFT JOIN beds b ON b.bed_id = r.bed_id "
        "WHERE r.resident_id = %s AND (r.elder_code = %s OR b.bed_code = %s)",
        (resident_id, code, code),
    ).fetchone()
    return row is not None


def insert_visit(
    conn: Conn,
    resident_id: str,
    *,
    kind: str,
    visitor_id: str,
    visited_at: datetime,
    outcome: str,
    notes: str | None,
    concerns: list[str],
    proof_code: str | None,
    proof_method: str | None,
    task_id: int | None = None,
) -> int:
    row = conn.execute(
        "INSERT INTO visits (resident_id, kind, visitor_id, visited_at, outcome, notes, "
        "concerns, proof_code, proof_method, task_id) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (resident_id, kind, visitor_id, visited_at, outcome, notes, Jsonb(concerns),
         proof_code, proof_method, task_id),
    ).fetchone()  # fmt: skip
    assert row is not None
    return int(row[0])


def visits_of(conn: Conn, resident_id: str, limit: int = 50) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, kind, visitor_id, visited_at, outcome, notes, concerns, proof_method, "
            "task_id FROM visits WHERE resident_id = %s ORDER BY visited_at DESC LIMIT %s",
            (resident_id, limit),
        ).fetchall()


# -- door-knock tasks ------------------------------------------------------------------

_TASK_COLUMNS = (
    "t.id, t.resident_id, t.site_id, t.incident_id, t.worker_id, t.reason, t.created_by, "
    "t.created_at, t.due_at, t.state, t.result, t.done_at, t.done_by"
)


def insert_task(
    conn: Conn,
    resident_id: str,
    *,
    site_id: str,
    incident_id: int | None,
    worker_id: str | None,
    reason: str,
    created_by: str,
    due_at: datetime,
) -> tuple[int, bool]:
    """Open a task (or find the open one of that elder and reason): (id, created)."""
    row = conn.execute(
        "INSERT INTO door_knock_tasks (resident_id, site_id, incident_id, worker_id, reason, "
        "created_by, due_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (resident_id, reason) WHERE state = 'open' DO NOTHING RETURNING id",
        (resident_id, site_id, incident_id, worker_id, reason, created_by, due_at),
    ).fetchone()
    if row is not None:
        return int(row[0]), True
    row = conn.execute(
        "SELECT id FROM door_knock_tasks WHERE resident_id = %s AND reason = %s AND state = 'open'",
        (resident_id, reason),
    ).fetchone()
    assert row is not None
    return int(row[0]), False


def tasks(
    conn: Conn,
    *,
    worker_id: str | None = None,
    site_id: str | None = None,
    open_only: bool = True,
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_TASK_COLUMNS}, r.elder_code, r.display_name, s.utc_offset_s, "  # noqa: S608
            f"{DEMO_CLOCK_SQL} AS demo_clock "
            "FROM door_knock_tasks t JOIN residents r ON r.resident_id = t.resident_id "
            "JOIN sites s ON s.site_id = t.site_id "
            "WHERE (%(w)s::text IS NULL OR t.worker_id = %(w)s) "
            "AND (%(s)s::text IS NULL OR t.site_id = %(s)s) "
            "AND (NOT %(o)s OR t.state = 'open') ORDER BY t.due_at, t.id",
            {"w": worker_id, "s": site_id, "o": open_only},
        ).fetchall()


def task_for_update(conn: Conn, task_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_TASK_COLUMNS} FROM door_knock_tasks t WHERE t.id = %s FOR UPDATE",  # noqa: S608
            (task_id,),
        ).fetchone()


def finish_task(conn: Conn, task_id: int, *, result: str, by: str, at: datetime) -> None:
    conn.execute(
        "UPDATE door_knock_tasks SET state = 'done', result = %s, done_by = %s, done_at = %s "
        "WHERE id = %s",
        (result, by, at, task_id),
    )


def silent_home_residents(conn: Conn, sites: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(resident, site) of home-care elders whose home has active devices and every one of
    them is in an open device_offline incident, or whose home hub is offline (of ``sites``
    only, when given)."""
    rows = conn.execute(
        """
        SELECT r.resident_id, r.site_id FROM residents r
        JOIN beds b ON b.bed_id = r.bed_id
        JOIN locations l ON l.location_id = b.location_id AND l.kind = 'home'
        WHERE (%(sites)s::text[] IS NULL OR r.site_id = ANY(%(sites)s::text[]))
          AND (EXISTS (SELECT 1 FROM incidents i WHERE i.subject = l.location_id
                      AND i.type = 'hub_offline' AND i.technical
                      AND i.state IN ('raised', 'acknowledged', 'dispatched', 'on_scene'))
           OR (EXISTS (SELECT 1 FROM devices d WHERE d.location_id = l.location_id AND d.active)
               AND NOT EXISTS (
                   SELECT 1 FROM devices d WHERE d.location_id = l.location_id AND d.active
                   AND NOT EXISTS (
                       SELECT 1 FROM incidents i WHERE i.subject = d.device_id
                       AND i.type = 'device_offline' AND i.technical
                       AND i.state IN ('raised', 'acknowledged', 'dispatched', 'on_scene')))))
        ORDER BY r.resident_id
        """,
        {"sites": None if sites is None else list(sites)},
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def unresolved_inactivity(
    conn: Conn, minutes: int, sites: Sequence[str] | None = None
) -> list[tuple[int, str, str]]:
    """(incident, resident, type) of open no-activity / not-up / door-not-opened-for-days
    alerts raised more than ``minutes`` ago, of elders with a community worker, with no
    door-knock task yet (oldest first; of ``sites`` only, when given)."""
    rows = conn.execute(
        """
        SELECT i.id, i.resident_id, i.type FROM incidents i
        JOIN worker_assignments w ON w.resident_id = i.resident_id
        WHERE i.type IN ('no_activity', 'not_up', 'door_unused') AND NOT i.technical
          AND i.state IN ('raised', 'acknowledged', 'dispatched', 'on_scene')
          AND i.raised_at < now() - %(minutes)s * interval '1 minute'
          AND (%(sites)s::text[] IS NULL OR i.site_id = ANY(%(sites)s::text[]))
          AND NOT EXISTS (SELECT 1 FROM door_knock_tasks t WHERE t.incident_id = i.id)
        ORDER BY i.raised_at
        """,
        {"minutes": minutes, "sites": None if sites is None else list(sites)},
    ).fetchall()
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


# -- overdue notices -------------------------------------------------------------------


def insert_notice(conn: Conn, resident_id: str, kind: str, due_on: date, site_id: str) -> bool:
    """Record that the supervisor was told of this overdue visit; False if already told."""
    row = conn.execute(
        "INSERT INTO visit_notices (resident_id, kind, due_on, site_id) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING RETURNING 1",
        (resident_id, kind, due_on, site_id),
    ).fetchone()
    return row is not None


def notices(conn: Conn, site_id: str | None, limit: int = 100) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT n.resident_id, r.elder_code, n.kind, n.due_on, n.site_id, n.noticed_at "
            "FROM visit_notices n JOIN residents r ON r.resident_id = n.resident_id "
            "WHERE %(s)s::text IS NULL OR n.site_id = %(s)s "
            "ORDER BY n.noticed_at DESC LIMIT %(l)s",
            {"s": site_id, "l": limit},
        ).fetchall()


def site_supervisors(conn: Conn, site_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT user_id FROM users WHERE site_id = %s AND role = 'supervisor' AND active "
        "ORDER BY user_id",
        (site_id,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def family_linked(conn: Conn, user_id: str, resident_id: str) -> bool:
    """Whether the family user ``user_id`` is linked to ``resident_id``."""
    row = conn.execute(
        "SELECT 1 FROM family_links WHERE user_id = %s AND resident_id = %s",
        (user_id, resident_id),
    ).fetchone()
    return row is not None


def family_visits(conn: Conn, resident_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """Recent visits and door-knock results of a resident, as the family sees them (no
    visitor ids, no notes, no codes)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT v.kind, v.visited_at, v.outcome, t.result AS door_knock_result "
            "FROM visits v LEFT JOIN door_knock_tasks t ON t.id = v.task_id "
            "WHERE v.resident_id = %s ORDER BY v.visited_at DESC LIMIT %s",
            (resident_id, limit),
        ).fetchall()


# -- service records (home-care beds) --------------------------------------------------


def insert_service(
    conn: Conn,
    resident_id: str,
    *,
    service: str,
    staff_id: str,
    delivered_at: datetime,
    minutes: int | None,
    proof_code: str,
    proof_method: str,
    notes: str | None,
) -> int:
    row = conn.execute(
        "INSERT INTO service_records (resident_id, bed_id, service, staff_id, delivered_at, "
        "minutes, proof_code, proof_method, notes) "
        "SELECT resident_id, bed_id, %s, %s, %s, %s, %s, %s, %s FROM residents "
        "WHERE resident_id = %s RETURNING id",
        (service, staff_id, delivered_at, minutes, proof_code, proof_method, notes,
         resident_id),
    ).fetchone()  # fmt: skip
    assert row is not None
    return int(row[0])


def services_of(conn: Conn, resident_id: str, limit: int = 50) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, service, staff_id, delivered_at, minutes, proof_method, notes "
            "FROM service_records WHERE resident_id = %s ORDER BY delivered_at DESC LIMIT %s",
            (resident_id, limit),
        ).fetchall()
