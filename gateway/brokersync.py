"""Keep the broker's password file and ACL in step with the registry, from the running gateway.

When an installer registers, rotates or decommissions a device through the API, the gateway
rewrites Mosquitto's ``passwd`` and ``acl`` files from the registry (every active device;
the same rules as ``safehome broker sync``, :mod:`gateway.brokerauth`), sends the broker
SIGHUP (pid from ``broker.pid_path``) and waits until the broker has really loaded the new
files before the API answers.

How "really loaded" is known: every rewrite carries a *reload canary*, an account named
``<mqtt.username>-reload`` with a fresh random password and no ACL entry (it can do nothing).
The canary's new password is accepted only once the broker has read this very version of
the files, so a successful MQTT CONNECT with it proves the reload (and, since Mosquitto
re-checks connected clients on reload, that removed or rotated devices are refused).

The rewrite runs in the caller's database transaction under an advisory lock, so two API
requests (or two gateway processes) never interleave their files, and the files always
reflect the registry as of the change being made.

A broker shared by cells (``broker.cells``, :mod:`gateway.cells`) also gets one gateway account
per cell, ``<mqtt.username>-<cell>``, that may read only its cell's sites' topics and write
only their devices' acks, config and commands; without ``broker.cells`` the files are exactly
as before. If anything fails, the caller's
transaction rolls back and :meth:`BrokerSync.resync` restores the files from the committed
registry.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from devices.mqttcodec import MQTT311, encode_connect, encode_disconnect
from gateway.brokerauth import (
    SYS_MONITOR_SUFFIX,
    ServiceAccount,
    hash_password,
    new_password,
    render_acl,
    render_password_file,
)
from gateway.cells import cell_accounts, cell_username
from gateway.kit.hubs import kit_accounts
from gateway.privatefile import replace_keeping_owner
from gateway.settings import Settings
from gateway.storage import devices as devices_repo

log = logging.getLogger(__name__)

_LOCK_KEY = 0x5AFE_0015
CANARY_SUFFIX = "-reload"


class BrokerSyncError(RuntimeError):
    """The broker's files could not be written, or the broker did not apply them."""


def mqtt_login_code(
    host: str,
    port: int,
    username: str,
    password: str,
    *,
    tls: bool = False,
    ca_file: Path | None = None,
    timeout_s: float = 2.0,
) -> int:
    """CONNECT (MQTT 3.1.1, clean session, no will) and return the CONNACK return code.

    0 = accepted, 4 = bad user name or password, 5 = not authorised. The connection is
    closed at once (DISCONNECT): nothing is published or subscribed.
    """
    client_id = f"probe-{uuid.uuid4().hex[:12]}"
    packet = encode_connect(
        client_id,
        username=username,
        password=password.encode(),
        keepalive_s=10,
        clean_start=True,
        protocol_level=MQTT311,
    )
    raw = socket.create_connection((host, port), timeout=timeout_s)
    sock: Any = raw
    try:
        if tls:
            ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            sock = ctx.wrap_socket(raw, server_hostname=host)
        sock.sendall(packet)
        head = b""
        while len(head) < 4:
            chunk = sock.recv(4 - len(head))
            if not chunk:
                raise BrokerSyncError("the broker closed the connection before CONNACK")
            head += chunk
        if head[0] != 0x20:
            raise BrokerSyncError(f"unexpected reply to CONNECT: {head[0]:#x}")
        code = head[3]
        if code == 0:
            sock.sendall(encode_disconnect())
        return int(code)
    finally:
        sock.close()


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` atomically, keeping the existing file's owner and mode (0600 if new).

    The temporary file is created O_EXCL | O_NOFOLLOW in a private (0700) folder, through
    directory descriptors (:mod:`gateway.privatefile`): the broker's user may write to the
    folder of these files, and a symlink it plants there is replaced, never followed."""
    replace_keeping_owner(path, text.encode("utf-8"))


class BrokerSync:
    """Rewrites the broker's auth files from the registry and confirms the reload."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._broker = settings.broker
        self._mqtt = settings.mqtt

    @property
    def managed(self) -> bool:
        return self._broker.managed

    @property
    def reserved_usernames(self) -> frozenset[str]:
        """Broker accounts that are not devices (a device may not take these ids)."""
        cells = [cell_username(self._mqtt.username, c.id) for c in self._broker.cells]
        return frozenset(
            {self._mqtt.username, self._mqtt.username + CANARY_SUFFIX, *cells}
            | {name + SYS_MONITOR_SUFFIX for name in (self._mqtt.username, *cells)}
        )

    def _service(self) -> ServiceAccount:
        pw = self._mqtt.password
        if pw is None:
            raise BrokerSyncError("mqtt.password is not set: cannot write the gateway's account")
        return ServiceAccount(self._mqtt.username, hash_password(pw.get_secret_value()))

    def apply(self, conn: psycopg.Connection[Any]) -> int:
        """Rewrite the files from ``conn``'s view of the registry; reload; wait for the broker.

        Call inside the transaction that changes the devices (its uncommitted rows are what
        the files get). Returns the number of device accounts written.
        """
        b = self._broker
        if b.passwd_path is None or b.acl_path is None:
            raise BrokerSyncError("broker.passwd_path / broker.acl_path are not configured")
        devices_repo.lock_accounts(conn, _LOCK_KEY)
        devices = kit_accounts(conn, devices_repo.device_accounts(conn))  # hubs: their children
        service = self._service()
        # A broker shared by cells: each cell's gateway account, narrowed to its sites.
        cells = cell_accounts(b.cells, service.username, service.password_hash)
        canary_pw = new_password()
        canary = ServiceAccount(self._mqtt.username + CANARY_SUFFIX, hash_password(canary_pw))
        try:
            passwd = render_password_file(service, devices, [canary, *cells])
            _write_atomic(b.passwd_path, passwd)
            _write_atomic(b.acl_path, render_acl(self._mqtt.prefix, service, devices, cells))
        except OSError as exc:
            raise BrokerSyncError(f"cannot write the broker's files: {exc.strerror}") from exc
        self._reload()
        self._confirm(canary.username, canary_pw)
        log.info("broker accounts applied", extra={"devices": len(devices)})
        return len(devices)

    def resync(self, conninfo: str) -> None:
        """Best effort after a failed change: files from the committed registry again."""
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
                self.apply(conn)
        except (BrokerSyncError, psycopg.Error) as exc:
            log.error("broker resync failed", extra={"error": str(exc)[:200]})

    def _reload(self) -> None:
        pid_path = self._broker.pid_path
        if pid_path is None:
            raise BrokerSyncError("broker.pid_path is not configured: cannot reload the broker")
        try:
            pid = int(pid_path.read_text().split("\n", 1)[0].strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError) as exc:
            raise BrokerSyncError(f"cannot signal the broker (pid file {pid_path}): {exc}") from exc

    def _confirm(self, username: str, password: str) -> None:
        deadline = time.monotonic() + self._broker.apply_timeout_s
        last = "no answer"
        while True:
            try:
                code = mqtt_login_code(
                    self._mqtt.host, self._mqtt.port, username, password,
                    tls=self._mqtt.tls, ca_file=self._mqtt.ca_file,
                )  # fmt: skip
                if code == 0:
                    return
                last = f"CONNACK {code}"
            except (OSError, BrokerSyncError) as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise BrokerSyncError(
                    f"the broker did not apply the new accounts within "
                    f"{self._broker.apply_timeout_s}s ({last})"
                )
            time.sleep(0.05)
