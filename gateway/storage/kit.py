"""SQL of the safe-home kit (issue 12): home hubs and their child sensors.

A child sensor (``devices.hub_id`` set, migration 0026) reports through its home hub, which
publishes under the child's own id; the child has no broker account of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class KitDevice:
    """An active device as the broker files need it: its kind and its hub, if any."""

    device_id: str
    site_id: str
    kind: str
    hub_id: str | None
    active: bool


def active_links(conn: psycopg.Connection[Any]) -> list[KitDevice]:
    """Every active device with its kind and hub (for the broker's passwd and ACL)."""
    rows = conn.execute(
        "SELECT device_id, site_id, kind, hub_id FROM devices WHERE active ORDER BY device_id"
    ).fetchall()
    return [KitDevice(str(d), str(s), str(k), None if h is None else str(h), True)
            for d, s, k, h in rows]  # fmt: skip


def find(conn: psycopg.Connection[Any], device_id: str) -> KitDevice | None:
    row = conn.execute(
        "SELECT device_id, site_id, kind, hub_id, active FROM devices WHERE device_id = %s",
        (device_id,),
    ).fetchone()
    if row is None:
        return None
    d, s, k, h, a = row
    return KitDevice(str(d), str(s), str(k), None if h is None else str(h), bool(a))


def set_hub(conn: psycopg.Connection[Any], device_id: str, hub_id: str | None) -> None:
    conn.execute("UPDATE devices SET hub_id = %s WHERE device_id = %s", (hub_id, device_id))


def active_children(conn: psycopg.Connection[Any], hub_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT device_id FROM devices WHERE hub_id = %s AND active ORDER BY device_id",
        (hub_id,),
    ).fetchall()
    return [str(r[0]) for r in rows]
