"""Broker credentials and access control: Mosquitto password and ACL files.

Every device has its own MQTT username (its device id) and password. The broker's ACL lets a
device publish only under ``<prefix>/v1/<its site>/<its id>/{event,telemetry,state}`` and
subscribe to and read only its own ``ack`` and ``config`` topics (built from
:class:`devices.protocol.Channel`); the gateway account reads everything and
writes acks and config. A cell's gateway account (``ServiceAccount.sites``, written for each
of ``broker.cells``, :mod:`gateway.cells`) does the same for its own sites' topics only.
Anonymous clients are refused by the broker configuration, which also binds every client id
to its user name (``use_username_as_clientid``, :mod:`gateway.localsvc`).

The password hash format is Mosquitto 2's ``$7$`` (PBKDF2-HMAC-SHA512), so the database can
keep the hash (never the password) and the files can be regenerated from it at any time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from devices.protocol import (
    Channel,
    downlink_filters,
    format_topic,
    protocol_filter,
    site_filter,
)
from gateway.registry_rules import ID_RE

# What a device may do, from the protocol's own channel list: publish on its uplink channels,
# subscribe to (and receive) only its own downlink ones. Exact topics, no patterns: a device
# can neither subscribe to a wildcard nor to another device's acks or configuration.
DEVICE_PUBLISHES: tuple[Channel, ...] = tuple(ch for ch in Channel if ch.uplink)
DEVICE_SUBSCRIBES: tuple[Channel, ...] = tuple(
    ch for ch in Channel if not ch.uplink and ch is not Channel.COMMAND
)
# Commands (a gas detector's valve shut-off) are read only by the devices that take them,
# and by the home hub of a child sensor (the hub forwards them over its radio).

# The gateway's second, small connection reads the broker's $SYS counters (gateway.brokerstats).
# With client ids bound to user names, it needs an account of its own: under the gateway's
# account it would take over (and, connecting with a clean session, wipe) the gateway's
# persistent session. The account shares the gateway's password and may read $SYS only.
SYS_MONITOR_SUFFIX = "-sys"
_CHILD_READS: tuple[Channel, ...] = (*DEVICE_SUBSCRIBES, Channel.COMMAND)

_ITERATIONS = 101  # Mosquitto's own default for $7$ hashes
_ID = ID_RE  # the registry's id rule (gateway.registry_rules)


class BrokerAuthError(ValueError):
    """A username or topic element that the broker files cannot hold safely."""


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Hash a password in Mosquitto's ``$7$`` format."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    return f"$7${_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """Check a password against a ``$7$`` hash (used by tests and the installer CLI)."""
    try:
        _, alg, iterations, salt_b64, digest_b64 = hashed.split("$")
    except ValueError:
        return False
    if alg != "7":
        return False
    digest = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(salt_b64), int(iterations)
    )
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


def new_password() -> str:
    """A fresh device password (printed once to the installer, stored only hashed)."""
    return secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class DeviceAccount:
    """A device's broker account. A home hub also publishes for its ``children`` (child
    sensors with no account of their own) and reads their acks, config and commands."""

    device_id: str
    site_id: str
    password_hash: str
    children: tuple[str, ...] = ()
    commands: bool = False


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The gateway (or another trusted service) with read access to every device topic.

    ``can_inject`` grants write access to every device topic: for test and replay tools only.
    ``sites`` (a cell's gateway, :mod:`gateway.cells`): read access to those sites' topics
    only, write access to their devices' acks, config and commands, and a ``$SYS`` monitor
    account of its own (``<username>-sys``), like the main gateway account's.
    """

    username: str
    password_hash: str
    can_inject: bool = False
    sites: tuple[str, ...] = ()


def _check_id(value: str, what: str) -> str:
    if not _ID.fullmatch(value):
        raise BrokerAuthError(f"{what} {value!r} must match [A-Za-z0-9_-]{{1,64}}")
    return value


def render_password_file(
    service: ServiceAccount,
    devices: Iterable[DeviceAccount],
    extra: Iterable[ServiceAccount] = (),
) -> str:
    services = [service, *extra]
    lines = [f"{_check_id(s.username, 'username')}:{s.password_hash}" for s in services]
    monitors = [(service.username + SYS_MONITOR_SUFFIX, service.password_hash)]
    monitors += [(s.username + SYS_MONITOR_SUFFIX, s.password_hash) for s in extra if s.sites]
    lines += [f"{_check_id(name, 'username')}:{pw}" for name, pw in monitors]
    reserved = {s.username for s in services} | {name for name, _ in monitors}
    for d in devices:
        # The broker binds a client id to its user name: a device named like a service
        # account would share the gateway's session (or any service's) and its ACL.
        if d.device_id in reserved:
            raise BrokerAuthError(f"device id {d.device_id!r} is a reserved service account")
        lines.append(f"{_check_id(d.device_id, 'device id')}:{d.password_hash}")
    return "\n".join(lines) + "\n"


def render_acl(
    prefix: str,
    service: ServiceAccount,
    devices: Iterable[DeviceAccount],
    extra: Iterable[ServiceAccount] = (),
) -> str:
    """ACL text. ``extra`` accounts (e.g. a monitoring tool) get read-only access."""
    _check_id(prefix, "prefix")
    out = [
        "# Generated by `safehome broker sync`; do not edit by hand.",
        f"user {service.username}",
        f"topic read {protocol_filter(prefix)}",
        *(f"topic write {f}" for f in downlink_filters(prefix)),
        "topic read $SYS/#",
        "",
        f"user {service.username}{SYS_MONITOR_SUFFIX}",
        "topic read $SYS/#",
        "",
    ]
    for s in extra:
        if s.sites:  # a cell's gateway: its own sites' topics only
            out.append(f"user {s.username}")
            for site_id in s.sites:
                site = _check_id(site_id, "site id")
                out.append(f"topic read {site_filter(prefix, site)}")
                out += [f"topic write {f}" for f in downlink_filters(prefix, site)]
            out += ["topic read $SYS/#", "", f"user {s.username}{SYS_MONITOR_SUFFIX}"]
            out += ["topic read $SYS/#", ""]
            continue
        everything = protocol_filter(prefix)
        out += [f"user {s.username}", f"topic read {everything}", "topic read $SYS/#"]
        out += [f"topic write {everything}", ""] if s.can_inject else [""]
    for d in devices:
        site, dev = _check_id(d.site_id, "site id"), _check_id(d.device_id, "device id")
        out.append(f"user {dev}")
        out += [f"topic write {format_topic(prefix, site, dev, ch)}" for ch in DEVICE_PUBLISHES]
        out += [f"topic read {format_topic(prefix, site, dev, ch)}" for ch in DEVICE_SUBSCRIBES]
        if d.commands:
            out.append(f"topic read {format_topic(prefix, site, dev, Channel.COMMAND)}")
        for child_id in d.children:
            child = _check_id(child_id, "device id")
            out += [
                f"topic write {format_topic(prefix, site, child, ch)}" for ch in DEVICE_PUBLISHES
            ]
            out += [f"topic read {format_topic(prefix, site, child, ch)}" for ch in _CHILD_READS]
        out.append("")
    return "\n".join(out)


def write_auth_files(
    directory: Path,
    prefix: str,
    service: ServiceAccount,
    devices: Iterable[DeviceAccount],
    *,
    owner: tuple[int, int] | None = None,
    extra: Iterable[ServiceAccount] = (),
) -> tuple[Path, Path]:
    """Atomically replace ``passwd`` and ``acl`` in ``directory``; return their paths."""
    devs = list(devices)
    others = list(extra)
    written = []
    for name, text in (
        ("passwd", render_password_file(service, devs, others)),
        ("acl", render_acl(prefix, service, devs, others)),
    ):
        path = directory / name
        tmp = directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if owner is not None:
            os.chown(tmp, *owner)
        tmp.replace(path)
        written.append(path)
    return written[0], written[1]
