"""SQL of cell coverage (migration 0037; the logic is in :mod:`gateway.cell_coverage`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import Connection

Conn = Connection[Any]

_CLAIM = b"""
INSERT INTO cell_sites (cell_id, site_id, seen_at)
SELECT %(cell)s, site, now() FROM unnest(%(sites)s::text[]) AS site
ON CONFLICT (cell_id, site_id) DO UPDATE SET seen_at = now()
"""

_FORGET = b"DELETE FROM cell_sites WHERE cell_id = %(cell)s AND site_id <> ALL(%(sites)s::text[])"

# Sites with an active device and no claim renewed within the freshness window.
_UNSERVED = b"""
SELECT s.site_id FROM sites s
WHERE EXISTS (SELECT 1 FROM devices d WHERE d.site_id = s.site_id AND d.active)
  AND NOT EXISTS (SELECT 1 FROM cell_sites c WHERE c.site_id = s.site_id
                  AND c.seen_at > now() - %(fresh)s * interval '1 second')
ORDER BY s.site_id
"""

_DOUBLE = b"""
SELECT site_id FROM cell_sites WHERE seen_at > now() - %(fresh)s * interval '1 second'
GROUP BY site_id HAVING count(*) > 1 ORDER BY site_id
"""


def claim(conn: Conn, cell_id: str, sites: Sequence[str]) -> None:
    """Renew ``cell_id``'s claim on ``sites`` and drop its claims on any other site."""
    with conn.transaction():
        params = {"cell": cell_id, "sites": list(sites)}
        conn.execute(_CLAIM, params)
        conn.execute(_FORGET, params)


def unserved(conn: Conn, fresh_s: float) -> list[str]:
    """Sites with active devices that no cell claimed within ``fresh_s``."""
    return [str(r[0]) for r in conn.execute(_UNSERVED, {"fresh": fresh_s}).fetchall()]


def double_served(conn: Conn, fresh_s: float) -> list[str]:
    """Sites claimed by more than one cell within ``fresh_s``."""
    return [str(r[0]) for r in conn.execute(_DOUBLE, {"fresh": fresh_s}).fetchall()]
