"""Site manifest: the devices of one site and how they reach the broker.

Written by ``safehome site create-demo`` (or by an installer) and read by the simulator. It
holds every device's MQTT password, so it is a secret: :func:`save_manifest` writes it with
mode 0600, and ``repr`` never shows passwords. It holds no personal data: ``resident``, ``bed``
and ``location`` are codes, never names, phone numbers or addresses.

JSON layout::

    {
      "site": "hz-xihu-01",
      "prefix": "shg",
      "utc_offset_s": 28800,
      "broker": {"host": "127.0.0.1", "port": 1883, "tls": false, "ca_file": null},
      "devices": [
        {"id": "bed-7f3a9c01", "kind": "bed_sensor", "password": "…",
         "bed": "B-101-1", "resident": "R0001", "location": "room-101"}
      ]
    }

Unknown keys are ignored so that the file can carry more than the simulator needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from analytics.types import DEFAULT_UTC_OFFSET_S
from devices.errors import ManifestError
from devices.protocol import DEFAULT_PREFIX, DeviceKind, is_valid_id, is_valid_prefix
from devices.transport import BrokerEndpoint

DEFAULT_SITE_UTC_OFFSET_S = int(DEFAULT_UTC_OFFSET_S)  # a manifest without its own offset

__all__ = [
    "BrokerEndpoint",
    "ManifestDevice",
    "SiteManifest",
    "load_manifest",
    "manifest_from_dict",
    "manifest_to_dict",
    "save_manifest",
]


@dataclass(frozen=True, slots=True)
class ManifestDevice:
    """One device: its id is also its MQTT client id and username."""

    id: str
    kind: DeviceKind
    password: str = field(repr=False)
    bed: str | None = None
    resident: str | None = None
    location: str | None = None


@dataclass(frozen=True, slots=True)
class SiteManifest:
    site: str
    devices: tuple[ManifestDevice, ...]
    prefix: str = DEFAULT_PREFIX
    utc_offset_s: int = DEFAULT_SITE_UTC_OFFSET_S
    broker: BrokerEndpoint = field(default_factory=BrokerEndpoint)

    def device(self, device_id: str) -> ManifestDevice:
        for dev in self.devices:
            if dev.id == device_id:
                return dev
        raise KeyError(device_id)

    def of_kind(self, kind: DeviceKind) -> tuple[ManifestDevice, ...]:
        return tuple(d for d in self.devices if d.kind is kind)


def _opt_str(obj: Mapping[str, Any], key: str, where: str, path: str | None) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 128:
        raise ManifestError(f"{key} must be a non-empty string", path=path, field=f"{where}.{key}")
    return value


def manifest_from_dict(data: Mapping[str, Any], *, path: str | None = None) -> SiteManifest:
    """Validate and build a manifest from its JSON object."""
    if not isinstance(data, Mapping):
        raise ManifestError("manifest must be a JSON object", path=path)
    site = data.get("site")
    if not isinstance(site, str) or not is_valid_id(site):
        raise ManifestError("site must match [A-Za-z0-9_-]{1,64}", path=path, field="site")
    prefix = data.get("prefix", DEFAULT_PREFIX)
    if not isinstance(prefix, str) or not is_valid_prefix(prefix):
        raise ManifestError("invalid MQTT topic prefix", path=path, field="prefix")
    offset = data.get("utc_offset_s", DEFAULT_SITE_UTC_OFFSET_S)
    if type(offset) is not int or not -14 * 3600 <= offset <= 14 * 3600:
        raise ManifestError(
            "utc_offset_s must be an integer within ±14 h", path=path, field="utc_offset_s"
        )
    broker = _broker(data.get("broker", {}), path)
    raw_devices = data.get("devices")
    if not isinstance(raw_devices, Sequence) or isinstance(raw_devices, str | bytes):
        raise ManifestError("devices must be a list", path=path, field="devices")
    devices: list[ManifestDevice] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_devices):
        where = f"devices[{i}]"
        if not isinstance(raw, Mapping):
            raise ManifestError("device must be an object", path=path, field=where)
        dev_id = raw.get("id")
        if not isinstance(dev_id, str) or not is_valid_id(dev_id):
            raise ManifestError("id must match [A-Za-z0-9_-]{1,64}", path=path, field=f"{where}.id")
        if dev_id in seen:
            raise ManifestError("duplicate device id", path=path, field=f"{where}.id")
        seen.add(dev_id)
        try:
            kind = DeviceKind(str(raw.get("kind")))
        except ValueError:
            raise ManifestError(
                f"kind must be one of {', '.join(k.value for k in DeviceKind)}",
                path=path,
                field=f"{where}.kind",
            ) from None
        password = raw.get("password")
        if not isinstance(password, str) or not password:
            raise ManifestError(
                "password must be a non-empty string", path=path, field=f"{where}.password"
            )
        devices.append(
            ManifestDevice(
                dev_id,
                kind,
                password,
                bed=_opt_str(raw, "bed", where, path),
                resident=_opt_str(raw, "resident", where, path),
                location=_opt_str(raw, "location", where, path),
            )
        )
    return SiteManifest(site, tuple(devices), prefix, offset, broker)


def _broker(raw: Any, path: str | None) -> BrokerEndpoint:
    if not isinstance(raw, Mapping):
        raise ManifestError("broker must be an object", path=path, field="broker")
    host = raw.get("host", "127.0.0.1")
    port = raw.get("port", 1883)
    tls = raw.get("tls", False)
    ca_file = raw.get("ca_file")
    if not isinstance(host, str) or not host:
        raise ManifestError("host must be a non-empty string", path=path, field="broker.host")
    if type(port) is not int or not 1 <= port <= 65535:
        raise ManifestError(
            "port must be an integer within 1..65535", path=path, field="broker.port"
        )
    if type(tls) is not bool:
        raise ManifestError("tls must be a boolean", path=path, field="broker.tls")
    if ca_file is not None and not isinstance(ca_file, str):
        raise ManifestError("ca_file must be a string or null", path=path, field="broker.ca_file")
    return BrokerEndpoint(host, port, tls, ca_file)


def manifest_to_dict(manifest: SiteManifest) -> dict[str, Any]:
    """The JSON object of a manifest (includes the passwords)."""
    b = manifest.broker
    return {
        "site": manifest.site,
        "prefix": manifest.prefix,
        "utc_offset_s": manifest.utc_offset_s,
        "broker": {"host": b.host, "port": b.port, "tls": b.tls, "ca_file": b.ca_file},
        "devices": [
            {
                "id": d.id,
                "kind": d.kind.value,
                "password": d.password,
                "bed": d.bed,
                "resident": d.resident,
                "location": d.location,
            }
            for d in manifest.devices
        ],
    }


def load_manifest(path: str | os.PathLike[str]) -> SiteManifest:
    """Read and validate a manifest JSON file; raises :class:`ManifestError`."""
    p = Path(path)
    try:
        data = orjson.loads(p.read_bytes())
    except OSError as exc:
        raise ManifestError(f"cannot read: {exc.strerror}", path=str(p)) from None
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"invalid JSON at line {exc.lineno}", path=str(p)) from None
    return manifest_from_dict(data, path=str(p))


def save_manifest(manifest: SiteManifest, path: str | os.PathLike[str]) -> None:
    """Write a manifest as JSON, readable by its owner only (it holds device passwords)."""
    p = Path(path)
    data = orjson.dumps(manifest_to_dict(manifest), option=orjson.OPT_INDENT_2)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data + b"\n")
