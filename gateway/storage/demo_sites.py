"""SQL of the demo's site clocks (``safehome demo``, issue 11 §1): the demo runs each site on
a clock that reads a chosen local time at the start (its UTC offset), so every scripted
scene plays whatever the hour."""

from __future__ import annotations

from typing import Any

import psycopg

from gateway import audit

Conn = psycopg.Connection[Any]


def set_site_clock(conn: Conn, site_id: str, utc_offset_s: int, *, actor: str = "demo") -> None:
    """Set a site's UTC offset (audited: ``site.clock``)."""
    with conn.transaction():
        conn.execute(
            "UPDATE sites SET utc_offset_s = %s WHERE site_id = %s", (utc_offset_s, site_id)
        )
        audit.append(conn, actor, "site.clock", f"site:{site_id}", {"utc_offset_s": utc_offset_s})


# A SQL boolean over ``sites s``: the site runs on the clock the demo set (its offset is the
# one of a demo ``site.clock``), so pages label it 演示时钟, not an odd zone like UTC-1:54.
DEMO_CLOCK_SQL = (
    "EXISTS (SELECT 1 FROM audit_log a "
    "WHERE a.target = 'site:' || s.site_id AND a.action = 'site.clock' "
    "AND a.actor = 'demo' AND (a.data->>'utc_offset_s')::int = s.utc_offset_s)"
)
