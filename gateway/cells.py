"""Cells: one gateway (pair) serving a subset of sites (issue 15 §5, docs/operations.md).

A deployment that outgrows one machine partitions its sites into cells, each with its own
broker, gateway pair and database. The ``[cell]`` settings section names the cell and the
sites it serves; :func:`apply_cell` derives from it everything that must differ between two
cells' gateways:

- MQTT subscriptions: the uplink filters (``event``, ``telemetry``, ``state``) of each served
  site (:func:`devices.protocol.uplink_filters`) instead of ``<prefix>/v1/+/+/+``, so the
  broker never delivers another cell's messages and analysis only sees its own sites;
- the MQTT client id (``<mqtt.client_id>-<cell>``): two cells' gateways on one broker never
  take over each other's persistent session (a failover pair within a cell shares it);
- the database ``application_name`` (``<name>@<cell>``), for ``pg_stat_activity``;
- the failover advisory lock (``failover.lock_key``, when left at its default, is mixed with
  the cell id): the pairs of two cells on one database never contend for one lease.

No ``[cell]`` (``cell.id`` empty): every site, today's names and filters, unchanged.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from devices.protocol import subscription_filter, uplink_filters
from gateway.settings.cell import CELL_ID, CellSettings

if TYPE_CHECKING:
    from gateway.settings import Settings

__all__ = ["CELL_ID", "CellSettings", "apply_cell", "cell_lock_key", "subscription_filters"]


def subscription_filters(cell: CellSettings, prefix: str) -> list[str]:
    """The gateway's MQTT subscription filters: every site's topics without a cell (today's
    single ``<prefix>/v1/+/+/+``), else the uplink filters of each served site."""
    if not cell.enabled:
        return [subscription_filter(prefix)]
    return [f for site in cell.sites for f in uplink_filters(prefix, site)]


def cell_lock_key(base: int, cell_id: str) -> int:
    """The failover lock of a cell's pair: the base key mixed with the cell id (signed 64-bit)."""
    key = (base ^ (zlib.crc32(cell_id.encode()) << 32)) & (2**64 - 1)
    return key - 2**64 if key >= 2**63 else key


def apply_cell(settings: Settings) -> Settings:
    """The settings as this cell's gateway runs them (unchanged without a cell)."""
    cell = settings.cell
    if not cell.enabled:
        return settings
    mqtt = settings.mqtt.model_copy(update={"client_id": f"{settings.mqtt.client_id}-{cell.id}"})
    db = settings.database
    db = db.model_copy(update={"application_name": f"{db.application_name}@{cell.id}"})
    failover = settings.failover
    default_key = type(failover).model_fields["lock_key"].default
    if failover.lock_key == default_key:
        lock_key = cell_lock_key(failover.lock_key, cell.id)
        failover = failover.model_copy(update={"lock_key": lock_key})
    return settings.model_copy(update={"mqtt": mqtt, "database": db, "failover": failover})
