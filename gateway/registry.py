"""The device registry as the ingest path sees it: an in-memory snapshot of active devices.

Loaded from the ``devices`` table and refreshed periodically; a message from a device that
is not in the snapshot triggers an early refresh (a device commissioned a moment ago), at
most once per ``min_refresh_s``. The gateway's own registry routes call
:meth:`RegistryCache.invalidate` after each change, so a device registered through the API is
known to ingest from its first message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from devices.protocol import DeviceKind
from gateway.storage import devices as devices_repo


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device_id: str
    site_id: str
    kind: DeviceKind
    location_id: str | None
    bed_id: str | None
    resident_id: str | None
    heartbeat_interval_s: int | None


def load_devices(conn: psycopg.Connection[Any]) -> dict[str, DeviceInfo]:
    return {
        d.device_id: DeviceInfo(d.device_id, d.site_id, DeviceKind(d.kind), d.location_id,
                                d.bed_id, d.resident_id, d.heartbeat_interval_s)
        for d in devices_repo.active_devices(conn)
    }  # fmt: skip


class RegistryCache:
    """Snapshot of active devices, shared by the ingest writer threads.

    A refresh replaces the snapshot (one reference assignment) and never mutates it, so a
    reader on another thread sees the old snapshot or the new one, whole.
    """

    def __init__(self, refresh_s: float, min_refresh_s: float = 1.0) -> None:
        self._devices: dict[str, DeviceInfo] = {}
        self._decommissioned: frozenset[str] = frozenset()
        self._refresh_s = refresh_s
        self._min_refresh_s = min_refresh_s
        self._loaded_at = -1e18

    def __len__(self) -> int:
        return len(self._devices)

    @property
    def devices(self) -> dict[str, DeviceInfo]:
        return self._devices

    def due(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) - self._loaded_at >= self._refresh_s

    def refresh(self, conn: psycopg.Connection[Any]) -> None:
        self._devices = load_devices(conn)
        self._decommissioned = devices_repo.decommissioned_ids(conn)
        conn.commit()
        self._loaded_at = time.monotonic()

    def get(self, device_id: str) -> DeviceInfo | None:
        return self._devices.get(device_id)

    def decommissioned(self, device_id: str) -> bool:
        """Whether ``device_id`` is a decommissioned device (its traffic is refused)."""
        return device_id in self._decommissioned

    def invalidate(self) -> None:
        """The registry changed (a device registered, bound, replaced, decommissioned): refresh
        at the next chance, and let a message from a device not yet in the snapshot refresh
        it at once rather than waiting out ``min_refresh_s``."""
        self._loaded_at = -1e18

    def may_refresh_for_unknown(self) -> bool:
        return time.monotonic() - self._loaded_at >= self._min_refresh_s
