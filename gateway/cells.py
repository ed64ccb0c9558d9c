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
- on a broker shared by cells (``broker.cells`` lists them): the broker account
  ``<mqtt.username>-<cell>``, which ``safehome broker sync`` writes for each listed cell with
  read access to that cell's sites' topics only (:func:`cell_accounts`);
- the database ``application_name`` (``<name>@<cell>``), for ``pg_stat_activity``;
- the failover advisory lock (``failover.lock_key``, when left at its default, is mixed with
  the cell id): the pairs of two cells on one database never contend for one lease;
- the database-wide workers (alarm recovery, escalation and its pages, the notification
  outbox, the visits sweep) claim only the served sites' rows (:func:`served_sites`), so two
  cells may share one database: a cell that is down leaves its alarms pending for itself.

No ``[cell]`` (``cell.id`` empty): every site, today's names and filters, unchanged.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from devices.protocol import subscription_filter, uplink_filters
from gateway.brokerauth import ServiceAccount
from gateway.settings.cell import CELL_ID, CellSettings
from gateway.settings.sections import SettingsError

if TYPE_CHECKING:
    from gateway.settings import Settings

__all__ = [
    "CELL_ID",
    "CellSettings",
    "apply_cell",
    "cell_accounts",
    "cell_lock_key",
    "cell_username",
    "served_sites",
    "subscription_filters",
]


def served_sites(cell: CellSettings) -> tuple[str, ...] | None:
    """The site filter of the database-wide workers (alarm recovery, escalation, the
    notification outbox, the visits sweep): the cell's sites, or None (every site) without a
    cell. Two cells sharing one database each work only on their own sites' rows."""
    return cell.sites if cell.enabled else None


def subscription_filters(cell: CellSettings, prefix: str) -> list[str]:
    """The gateway's MQTT subscription filters: every site's topics without a cell (today's
    single ``<prefix>/v1/+/+/+``), else the uplink filters of each served site."""
    if not cell.enabled:
        return [subscription_filter(prefix)]
    return [f for site in cell.sites for f in uplink_filters(prefix, site)]


def cell_username(username: str, cell_id: str) -> str:
    """The broker account of a cell's gateway on a shared broker: ``<mqtt.username>-<cell>``."""
    return f"{username}-{cell_id}"


def cell_accounts(
    cells: Sequence[CellSettings], username: str, password_hash: str
) -> list[ServiceAccount]:
    """The gateway accounts of the cells sharing a broker (``broker.cells``), each limited to
    its cell's sites (:func:`gateway.brokerauth.render_acl`), with the gateway's password."""
    return [ServiceAccount(cell_username(username, c.id), password_hash, sites=c.sites)
            for c in cells]  # fmt: skip


def cell_lock_key(base: int, cell_id: str) -> int:
    """The failover lock of a cell's pair: the base key mixed with the cell id (signed 64-bit)."""
    key = (base ^ (zlib.crc32(cell_id.encode()) << 32)) & (2**64 - 1)
    return key - 2**64 if key >= 2**63 else key


def apply_cell(settings: Settings) -> Settings:
    """The settings as this cell's gateway runs them (unchanged without a cell)."""
    cell = settings.cell
    if not cell.enabled:
        return settings
    update = {"client_id": f"{settings.mqtt.client_id}-{cell.id}"}
    listed = {c.id: c for c in settings.broker.cells}
    if cell.id in listed:  # a broker shared by cells: this cell's own, narrowed account
        if set(listed[cell.id].sites) != set(cell.sites):
            raise SettingsError(f"cell {cell.id!r}: cell.sites differ from its broker.cells entry")
        update["username"] = cell_username(settings.mqtt.username, cell.id)
    mqtt = settings.mqtt.model_copy(update=update)
    db = settings.database
    db = db.model_copy(update={"application_name": f"{db.application_name}@{cell.id}"})
    failover = settings.failover
    default_key = type(failover).model_fields["lock_key"].default
    if failover.lock_key == default_key:
        lock_key = cell_lock_key(failover.lock_key, cell.id)
        failover = failover.model_copy(update={"lock_key": lock_key})
    return settings.model_copy(update={"mqtt": mqtt, "database": db, "failover": failover})
