"""Home hubs: one MQTT connection that publishes for its child sensors under their own ids.

Registry rules (register, replace, decommission; called from :mod:`gateway.commissioning`)
and the broker accounts they produce: a child has no account of its own, its hub's ACL
lists the child's topics (:func:`gateway.brokerauth.render_acl`), so the broker lets a hub
publish for exactly its own children and nobody else for them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import psycopg

from devices.protocol import COMMANDS, HUB_CHILD_KINDS, DeviceKind
from gateway.brokerauth import DeviceAccount
from gateway.errors import ConflictError, InvalidError, NotFoundError
from gateway.storage import kit as store

log = logging.getLogger(__name__)

KIT_PREFIX: Mapping[str, str] = {
    DeviceKind.HOME_HUB.value: "hub",
    DeviceKind.DOOR_CONTACT.value: "door",
    DeviceKind.MOTION_SENSOR.value: "pir",
    DeviceKind.SMOKE_DETECTOR.value: "smoke",
    DeviceKind.GAS_DETECTOR.value: "gas",
    DeviceKind.WATER_LEAK.value: "leak",
}
"""Default device id prefixes of the kit's kinds (``<prefix>-<serial>``)."""

_COMMAND_KINDS = frozenset(k.value for k in COMMANDS)


class HubError(ConflictError):
    """A child/hub relation that the registry refuses (wrong kind, other site, retired hub)."""


def with_hubs(
    accounts: Sequence[DeviceAccount], links: Sequence[store.KitDevice]
) -> list[DeviceAccount]:
    """Broker accounts with the kit applied: children dropped (they never connect), each hub
    given its active children, devices that take commands allowed to read them."""
    info = {d.device_id: d for d in links}
    children: dict[str, list[str]] = {}
    for d in links:
        if d.hub_id is not None:
            children.setdefault(d.hub_id, []).append(d.device_id)
    out: list[DeviceAccount] = []
    for acc in accounts:
        link = info.get(acc.device_id)
        if link is not None and link.hub_id is not None:
            continue
        kids = tuple(sorted(children.get(acc.device_id, ())))
        commands = link is not None and link.kind in _COMMAND_KINDS
        out.append(replace(acc, children=kids, commands=commands) if kids or commands else acc)
    return out


def kit_accounts(
    conn: psycopg.Connection[Any], accounts: Sequence[DeviceAccount]
) -> list[DeviceAccount]:
    """:func:`with_hubs` over the registry seen by ``conn``."""
    return with_hubs(accounts, store.active_links(conn))


def attach(conn: psycopg.Connection[Any], device_id: str, kind: str, hub_id: str | None) -> None:
    """Make ``device_id`` (just registered, same transaction) a child of ``hub_id``."""
    if hub_id is None:
        return
    hub = store.find(conn, hub_id)
    child = store.find(conn, device_id)
    if hub is None:
        raise NotFoundError(f"unknown hub {hub_id!r}", "list the devices: safehome device list")
    if hub.kind != DeviceKind.HOME_HUB.value:
        raise HubError(
            f"device {hub_id!r} is a {hub.kind}, not a home_hub",
            "register the hub first: safehome device register --kind home_hub ...",
        )
    if not hub.active:
        raise HubError(f"hub {hub_id!r} is decommissioned", "give the home's active hub")
    if kind not in {k.value for k in HUB_CHILD_KINDS}:
        raise InvalidError(f"a {kind} cannot report through a hub",
                           "only kit sensors and call buttons have a hub")  # fmt: skip
    if child is None or child.site_id != hub.site_id:
        raise HubError(f"hub {hub_id!r} belongs to another site", "give a hub of this site")
    store.set_hub(conn, device_id, hub_id)
    log.info("device attached to hub", extra={"device": device_id, "hub": hub_id})


def inherit(conn: psycopg.Connection[Any], old_id: str, new_id: str) -> None:
    """A replacement keeps the old device's hub; a replaced hub hands over its children."""
    old = store.find(conn, old_id)
    if old is None:
        return
    if old.hub_id is not None:
        store.set_hub(conn, new_id, old.hub_id)
    for child in store.active_children(conn, old_id):
        store.set_hub(conn, child, new_id)


def check_retire(conn: psycopg.Connection[Any], device_id: str) -> None:
    """A hub with active children may not be decommissioned (they would fall silent)."""
    kids = store.active_children(conn, device_id)
    if kids:
        raise HubError(
            f"hub {device_id!r} still has active child sensors: {', '.join(kids[:5])}",
            f"replace the hub (safehome device replace {device_id} --serial ...) "
            "or decommission its children first",
        )
