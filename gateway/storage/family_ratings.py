"""SQL of family ratings (issue 13 §7, migration 0034): a family member's 1-5 star rating of
how an incident of their relative was handled, and the monthly count and average per site."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.Connection[Any]

# The care incident, only when it is of a relative linked to the user and the resident
# shares incidents with the family (else the family never saw it).
_INCIDENT_SQL = """
SELECT i.id, i.resident_id, i.site_id, i.state, i.resolved_at
FROM incidents i
JOIN family_links f ON f.resident_id = i.resident_id AND f.user_id = %s
JOIN residents r ON r.resident_id = i.resident_id
WHERE i.id = %s AND NOT i.technical AND r.consent_family_incidents
"""


def rateable_incident(conn: Conn, user_id: str, incident_id: int) -> dict[str, Any] | None:
    """The incident if the family user may see (and so rate) it, else None."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_INCIDENT_SQL, (user_id, incident_id)).fetchone()


def rating(conn: Conn, incident_id: int, user_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT incident_id, stars, comment, created_at, updated_at FROM incident_ratings "
            "WHERE incident_id = %s AND user_id = %s",
            (incident_id, user_id),
        ).fetchone()


def save(
    conn: Conn,
    incident: dict[str, Any],
    user_id: str,
    *,
    stars: int,
    comment: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Insert the user's rating of the incident, or change it (``updated_at``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO incident_ratings (incident_id, user_id, resident_id, site_id, stars, "
            "comment, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (incident_id, user_id) DO UPDATE SET stars = EXCLUDED.stars, "
            "comment = EXCLUDED.comment, updated_at = EXCLUDED.updated_at "
            "RETURNING incident_id, stars, comment, created_at, updated_at",
            (incident["id"], user_id, incident["resident_id"], incident["site_id"], stars,
             comment, now, now),
        ).fetchone()  # fmt: skip
    assert row is not None
    return row


def of_resident(conn: Conn, user_id: str, resident_id: str) -> list[dict[str, Any]]:
    """The user's ratings of the resident's incidents, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT incident_id, stars, comment, created_at, updated_at FROM incident_ratings "
            "WHERE user_id = %s AND resident_id = %s "
            "ORDER BY created_at DESC LIMIT 50",
            (user_id, resident_id),
        ).fetchall()


def monthly_by_site(
    conn: Conn, site_ids: Sequence[str] | None, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Per site (of ``site_ids``; None: every site): how many ratings were given in
    [start, end) and their average."""
    sites = None if site_ids is None else list(site_ids)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT site_id, count(*) AS ratings, round(avg(stars), 2)::float8 AS average, "
            "sum(stars)::int AS stars_total "
            "FROM incident_ratings WHERE (%s::text[] IS NULL OR site_id = ANY(%s)) "
            "AND created_at >= %s "
            "AND created_at < %s GROUP BY site_id ORDER BY site_id",
            (sites, sites, start, end),
        ).fetchall()
