"""SQL of supervision: the staffing-ratio inputs of a nursing home (residents by current
assessment level, the care-staff roster) and the district totals (counts only, no names)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.Connection[Any]


def site_info(conn: Conn, site_id: str) -> tuple[str, int] | None:
    """(kind, utc_offset_s) of the site, or None."""
    row = conn.execute(
        "SELECT kind, utc_offset_s FROM sites WHERE site_id = %s", (site_id,)
    ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


def nursing_homes(conn: Conn, site_ids: Sequence[str] | None) -> list[str]:
    rows = conn.execute(
        "SELECT site_id FROM sites WHERE kind = 'nursing_home' "
        "AND (%s::text[] IS NULL OR site_id = ANY(%s)) ORDER BY site_id",
        (site_ids, site_ids),
    ).fetchall()
    return [str(r[0]) for r in rows]


def resident_levels(conn: Conn, site_id: str) -> list[str | None]:
    """The current assessment level of every resident at home in the site (None: never
    assessed)."""
    rows = conn.execute(
        "SELECT (SELECT level FROM assessments a WHERE a.resident_id = r.resident_id "
        "        ORDER BY assessed_on DESC, id DESC LIMIT 1) "
        "FROM residents r WHERE r.site_id = %s AND r.status = 'home'",
        (site_id,),
    ).fetchall()
    return [None if r[0] is None else str(r[0]) for r in rows]


def care_rota(
    conn: Conn, site_id: str, start: datetime, end: datetime
) -> list[tuple[str, datetime, datetime]]:
    """Duty-staff roster shifts of the site overlapping ``start``–``end``."""
    rows = conn.execute(
        "SELECT user_id, starts_at, ends_at FROM duty_shifts WHERE site_id = %s "
        "AND role = 'duty_staff' AND starts_at < %s AND ends_at > %s ORDER BY starts_at",
        (site_id, end, start),
    ).fetchall()
    return [(str(r[0]), r[1], r[2]) for r in rows]


_TOTALS_SQL = """
SELECT
  (SELECT count(*) FROM residents WHERE site_id = ANY(%(s)s) AND bed_id IS NOT NULL),
  (SELECT count(*) FROM devices WHERE site_id = ANY(%(s)s) AND active),
  (SELECT count(*) FROM devices d WHERE d.site_id = ANY(%(s)s) AND d.active AND (
       SELECT online FROM device_state x WHERE x.device_id = d.device_id
       ORDER BY time DESC LIMIT 1)),
  (SELECT count(*) FROM incidents WHERE site_id = ANY(%(s)s) AND NOT technical
       AND raised_at >= %(a)s AND raised_at < %(b)s),
  (SELECT count(*) FROM incidents WHERE site_id = ANY(%(s)s) AND NOT technical
       AND raised_at >= %(a)s AND raised_at < %(b)s
       AND acknowledged_at <= raised_at + make_interval(secs => %(t)s)),
  (SELECT percentile_cont(0.5) WITHIN GROUP (
       ORDER BY extract(epoch FROM acknowledged_at - raised_at))
   FROM incidents WHERE site_id = ANY(%(s)s) AND NOT technical
       AND raised_at >= %(a)s AND raised_at < %(b)s AND acknowledged_at IS NOT NULL),
  (SELECT count(*) FROM visits v JOIN residents r ON r.resident_id = v.resident_id
       WHERE r.site_id = ANY(%(s)s) AND v.kind = 'phone'
       AND v.visited_at >= %(a)s AND v.visited_at < %(b)s),
  (SELECT count(*) FROM visits v JOIN residents r ON r.resident_id = v.resident_id
       WHERE r.site_id = ANY(%(s)s) AND v.kind = 'home'
       AND v.visited_at >= %(a)s AND v.visited_at < %(b)s),
  (SELECT count(*) FROM door_knock_tasks WHERE site_id = ANY(%(s)s)
       AND created_at >= %(a)s AND created_at < %(b)s),
  (SELECT count(*) FROM door_knock_tasks WHERE site_id = ANY(%(s)s) AND state = 'open')
"""


def district_totals(
    conn: Conn, site_ids: Sequence[str], start: datetime, end: datetime, answer_s: int
) -> dict[str, Any]:
    """Counts over ``site_ids`` for ``start``–``end`` (no personal data)."""
    row = conn.execute(
        _TOTALS_SQL, {"s": list(site_ids), "a": start, "b": end, "t": answer_s}
    ).fetchone()
    assert row is not None
    keys = ("beds_served", "devices", "devices_online", "alarms", "alarms_answered_in_target",
            "median_answer_s", "phone_visits", "home_visits", "door_knock_tasks",
            "door_knock_open")  # fmt: skip
    out = dict(zip(keys, row, strict=True))
    out["median_answer_s"] = None if row[5] is None else float(row[5])
    return out


def home_visited_residents(
    conn: Conn, site_ids: Sequence[str], start: datetime, end: datetime
) -> set[str]:
    """Residents of the sites with at least one home visit in ``start``–``end``."""
    rows = conn.execute(
        "SELECT DISTINCT v.resident_id FROM visits v "
        "JOIN residents r ON r.resident_id = v.resident_id "
        "WHERE r.site_id = ANY(%s) AND v.kind = 'home' AND v.visited_at >= %s "
        "AND v.visited_at < %s",
        (list(site_ids), start, end),
    ).fetchall()
    return {str(r[0]) for r in rows}


_BEDS_SQL = """
SELECT b.bed_code, r.elder_code,
       (SELECT level FROM assessments a WHERE a.resident_id = r.resident_id
        ORDER BY assessed_on DESC, id DESC LIMIT 1) AS level,
       coalesce((SELECT string_agg(category, ' ' ORDER BY category) FROM resident_risks k
                 WHERE k.resident_id = r.resident_id), '') AS categories,
       (SELECT count(*) FROM visits v WHERE v.resident_id = r.resident_id AND v.kind = 'phone'
        AND v.visited_at >= %(a)s AND v.visited_at < %(b)s) AS phone_visits,
       (SELECT count(*) FROM visits v WHERE v.resident_id = r.resident_id AND v.kind = 'home'
        AND v.visited_at >= %(a)s AND v.visited_at < %(b)s) AS home_visits,
       (SELECT count(*) FROM door_knock_tasks t WHERE t.resident_id = r.resident_id
        AND t.created_at >= %(a)s AND t.created_at < %(b)s) AS door_knocks,
       (SELECT count(*) FROM incidents i WHERE i.resident_id = r.resident_id AND NOT i.technical
        AND i.raised_at >= %(a)s AND i.raised_at < %(b)s) AS alarms,
       (SELECT count(*) FROM incidents i WHERE i.resident_id = r.resident_id AND NOT i.technical
        AND i.raised_at >= %(a)s AND i.raised_at < %(b)s
        AND i.acknowledged_at <= i.raised_at + make_interval(secs => %(t)s)) AS answered_in_target,
       (SELECT count(*) FROM service_records x WHERE x.bed_id = b.bed_id
        AND x.delivered_at >= %(a)s AND x.delivered_at < %(b)s) AS services
FROM residents r JOIN beds b ON b.bed_id = r.bed_id
WHERE r.site_id = %(s)s
ORDER BY b.bed_code
"""


def bed_month(
    conn: Conn, site_id: str, start: datetime, end: datetime, answer_s: int
) -> list[dict[str, Any]]:
    """One row per occupied bed of the site for ``start``–``end`` (codes, no names)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            _BEDS_SQL, {"s": site_id, "a": start, "b": end, "t": answer_s}
        ).fetchall()


# -- district assignment -----------------------------------------------------------------


def unset_site_district(conn: Conn, site_id: str) -> bool:
    """Take the site out of its district; False when it had none."""
    cur = conn.execute("DELETE FROM site_districts WHERE site_id = %s", (site_id,))
    return cur.rowcount > 0


def site_district(conn: Conn, site_id: str) -> str | None:
    row = conn.execute(
        "SELECT district_id FROM site_districts WHERE site_id = %s", (site_id,)
    ).fetchone()
    return None if row is None else str(row[0])


_DISTRICTS_SQL = """
SELECT d.district_id,
       coalesce((SELECT array_agg(site_id ORDER BY site_id) FROM site_districts s
                 WHERE s.district_id = d.district_id), '{}') AS sites,
       coalesce((SELECT array_agg(u.user_id ORDER BY u.user_id) FROM user_districts u
                 JOIN users x ON x.user_id = u.user_id AND x.role = 'district_supervisor'
                 WHERE u.district_id = d.district_id), '{}') AS supervisors,
       (SELECT count(*) FROM user_districts u
        JOIN users x ON x.user_id = u.user_id AND x.role = 'community_worker'
        WHERE u.district_id = d.district_id) AS workers
FROM (SELECT district_id FROM site_districts UNION SELECT district_id FROM user_districts) d
WHERE (%(d)s::text IS NULL OR d.district_id = %(d)s)
ORDER BY d.district_id
"""


def districts(conn: Conn, district_id: str | None = None) -> list[dict[str, Any]]:
    """Every district that has a site or a user (or just ``district_id``): its sites, its
    supervisors' user ids and how many community workers it has."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_DISTRICTS_SQL, {"d": district_id}).fetchall()


# -- the monthly per-bed report (PDF) ------------------------------------------------------

_BED_REPORT_SQL = """
SELECT b.bed_id, b.bed_code, r.resident_id, r.elder_code, r.created_at,
       coalesce((SELECT array_agg(DISTINCT c ORDER BY c) FROM (
                     SELECT category AS c FROM resident_risks k
                     WHERE k.resident_id = r.resident_id
                     UNION ALL SELECT 'high_risk' WHERE r.high_risk
                     UNION ALL SELECT 'living_alone' WHERE r.lives_alone) cats),
                '{}') AS categories,
       coalesce((SELECT jsonb_object_agg(service, n) FROM (
                     SELECT x.service, count(*) AS n FROM service_records x
                     WHERE x.bed_id = b.bed_id AND x.delivered_at >= %(a)s
                       AND x.delivered_at < %(b)s GROUP BY x.service) s),
                '{}'::jsonb) AS services,
       (SELECT count(*) FROM visits v WHERE v.resident_id = r.resident_id
        AND v.visited_at >= %(a)s AND v.visited_at < %(b)s) AS visits_done,
       (SELECT count(*) FROM incidents i WHERE i.resident_id = r.resident_id AND NOT i.technical
        AND i.raised_at >= %(a)s AND i.raised_at < %(b)s) AS alarms,
       (SELECT count(*) FROM incidents i WHERE i.resident_id = r.resident_id AND NOT i.technical
        AND i.raised_at >= %(a)s AND i.raised_at < %(b)s
        AND i.acknowledged_at <= i.raised_at + make_interval(secs => %(t)s)) AS answered_in_target,
       (SELECT percentile_cont(0.5) WITHIN GROUP (
            ORDER BY extract(epoch FROM i.acknowledged_at - i.raised_at))
        FROM incidents i WHERE i.resident_id = r.resident_id AND NOT i.technical
        AND i.raised_at >= %(a)s AND i.raised_at < %(b)s
        AND i.acknowledged_at IS NOT NULL) AS median_answer_s
FROM residents r JOIN beds b ON b.bed_id = r.bed_id
WHERE r.site_id = %(s)s
ORDER BY b.bed_code
"""


def bed_report_rows(
    conn: Conn, site_id: str, start: datetime, end: datetime, answer_s: int
) -> list[dict[str, Any]]:
    """One row per occupied bed of the site for ``start``–``end``: codes (no names), risk
    categories, services by type, visits, care alarms and answer times."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            _BED_REPORT_SQL, {"s": site_id, "a": start, "b": end, "t": answer_s}
        ).fetchall()


def device_beds(conn: Conn, site_id: str) -> dict[str, str]:
    """Device id -> bed id of the site's devices on a bed or worn by a bed's resident."""
    rows = conn.execute(
        "SELECT d.device_id, coalesce(d.bed_id, r.bed_id) FROM devices d "
        "LEFT JOIN residents r ON r.resident_id = d.resident_id "
        "WHERE d.site_id = %s AND coalesce(d.bed_id, r.bed_id) IS NOT NULL",
        (site_id,),
    ).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def site_names(conn: Conn, site_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
    """Site id -> (name, utc_offset_s) of the sites that exist."""
    rows = conn.execute(
        "SELECT site_id, name, utc_offset_s FROM sites WHERE site_id = ANY(%s)", (list(site_ids),)
    ).fetchall()
    return {str(r[0]): (str(r[1]), int(r[2])) for r in rows}
