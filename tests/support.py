"""Helpers shared by the integration and end-to-end tests (no fakes: real services only)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg

from gateway.brokerauth import ServiceAccount
from gateway.commissioning import (
    DeviceCredential,
    apply_site_definition,
    device_accounts,
    register_device,
)
from gateway.localsvc import MosquittoServer, PostgresServer
from gateway.settings import Settings, load_settings

PREFIX = "shg"


@dataclass
class Database:
    """A test database: ``user`` is the gateway's role (no ownership), ``owner`` the schema's."""

    server: PostgresServer
    name: str
    user: str
    password: str
    owner: str
    owner_password: str

    @property
    def port(self) -> int:
        return self.server.port

    def conninfo(self, *, owner: bool = False) -> str:
        user, password = (self.owner, self.owner_password) if owner else (self.user, self.password)
        return f"host=127.0.0.1 port={self.port} dbname={self.name} user={user} password={password}"

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.conninfo(), autocommit=True)

    def connect_owner(self) -> psycopg.Connection[tuple[Any, ...]]:
        """As the schema owner (what the gateway cannot do: DDL, tampering)."""
        return psycopg.connect(self.conninfo(owner=True), autocommit=True)

    def scalar(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        with self.connect() as conn:
            row = conn.execute(query.encode(), params).fetchone()
            return None if row is None else row[0]

    def rows(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return conn.execute(query.encode(), params).fetchall()


@dataclass
class Broker:
    server: MosquittoServer
    service: ServiceAccount
    gateway_password: str
    extra: list[ServiceAccount] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    def sync(self, db: Database) -> None:
        """Load every active device of the registry into the broker's passwd/ACL."""
        with db.connect() as conn:
            accounts = device_accounts(conn)
        self.server.set_accounts(PREFIX, self.service, accounts, self.extra)
        self.server.reload()
        time.sleep(0.2)  # mosquitto applies SIGHUP on its next loop iteration

    def set_max_packet_size(self, db: Database, size: int) -> None:
        """Restart the broker with another packet limit (before clients connect)."""
        self.server.stop()
        self.server.max_packet_size = size
        self.server.init(PREFIX, self.service, [], self.extra)
        self.server.start()
        self.sync(db)


def gateway_settings(db: Database, broker: Broker, **overrides: str) -> Settings:
    env = {
        "SAFEHOME_DATABASE__HOST": "127.0.0.1",
        "SAFEHOME_DATABASE__PORT": str(db.port),
        "SAFEHOME_DATABASE__NAME": db.name,
        "SAFEHOME_DATABASE__USER": db.user,
        "SAFEHOME_DATABASE__PASSWORD": db.password,
        "SAFEHOME_DATABASE__RETRY_MAX_S": "1",
        "SAFEHOME_MQTT__PORT": str(broker.port),
        "SAFEHOME_MQTT__PREFIX": PREFIX,
        "SAFEHOME_MQTT__PASSWORD": broker.gateway_password,
        "SAFEHOME_MQTT__CLIENT_ID": "gw-" + uuid.uuid4().hex[:8],
        "SAFEHOME_MQTT__RECONNECT_MIN_S": "0.2",
        "SAFEHOME_MQTT__RECONNECT_MAX_S": "1",
        "SAFEHOME_API__PORT": "0",
        "SAFEHOME_API__JWT_SECRET": "test-" + uuid.uuid4().hex + uuid.uuid4().hex,
        "SAFEHOME_LOG__FORMAT": "text",
    }
    env.update(overrides)
    return load_settings(environ=env)


def run_cli(db: Database, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``safehome <args>`` as its own process against ``db`` (no other SAFEHOME_ setting)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOME_")}
    env.update({
        "SAFEHOME_DATABASE__HOST": "127.0.0.1",
        "SAFEHOME_DATABASE__PORT": str(db.port),
        "SAFEHOME_DATABASE__NAME": db.name,
        "SAFEHOME_DATABASE__USER": db.user,
        "SAFEHOME_DATABASE__PASSWORD": db.password,
    })  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        check=False, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def broker_env(broker: Broker) -> dict[str, str]:
    """Settings that let the gateway manage the test broker's accounts (device registration
    rewrites its passwd/ACL and reloads it); devices connect to it without TLS."""
    return {
        "SAFEHOME_BROKER__PASSWD_PATH": str(broker.server.directory / "passwd"),
        "SAFEHOME_BROKER__ACL_PATH": str(broker.server.directory / "acl"),
        "SAFEHOME_BROKER__PID_PATH": str(broker.server.pid_file),
        "SAFEHOME_BROKER__PUBLIC_HOST": "127.0.0.1",
        "SAFEHOME_BROKER__PUBLIC_PORT": str(broker.port),
        "SAFEHOME_BROKER__PUBLIC_TLS": "false",
    }


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that reproduces ``settings`` in a gateway subprocess."""
    d, m = settings.database, settings.mqtt
    assert d.password is not None and m.password is not None
    assert settings.api.jwt_secret is not None
    return {
        "SAFEHOME_DATABASE__PORT": str(d.port),
        "SAFEHOME_DATABASE__NAME": d.name,
        "SAFEHOME_DATABASE__USER": d.user,
        "SAFEHOME_DATABASE__PASSWORD": d.password.get_secret_value(),
        "SAFEHOME_DATABASE__RETRY_MAX_S": str(d.retry_max_s),
        "SAFEHOME_MQTT__PORT": str(m.port),
        "SAFEHOME_MQTT__PREFIX": m.prefix,
        "SAFEHOME_MQTT__PASSWORD": m.password.get_secret_value(),
        "SAFEHOME_MQTT__CLIENT_ID": m.client_id,
        "SAFEHOME_MQTT__RECONNECT_MIN_S": str(m.reconnect_min_s),
        "SAFEHOME_MQTT__RECONNECT_MAX_S": str(m.reconnect_max_s),
        "SAFEHOME_API__PORT": str(settings.api.port),
        "SAFEHOME_API__JWT_SECRET": settings.api.jwt_secret.get_secret_value(),
        "SAFEHOME_LOG__FORMAT": "json",
    } | _broker_settings_env(settings)


def _broker_settings_env(settings: Settings) -> dict[str, str]:
    b = settings.broker
    if b.passwd_path is None or b.acl_path is None:
        return {}
    env = {
        "SAFEHOME_BROKER__PASSWD_PATH": str(b.passwd_path),
        "SAFEHOME_BROKER__ACL_PATH": str(b.acl_path),
        "SAFEHOME_BROKER__PUBLIC_HOST": b.public_host,
        "SAFEHOME_BROKER__PUBLIC_PORT": str(b.public_port),
        "SAFEHOME_BROKER__PUBLIC_TLS": str(b.public_tls).lower(),
    }
    if b.pid_path is not None:
        env["SAFEHOME_BROKER__PID_PATH"] = str(b.pid_path)
    return env


def register_kit_device(
    db: Database, kind: str, serial: str, hub: str | None = None, *, site_id: str = "site-a"
) -> tuple[str, str]:
    """Register one device (a home hub, or a kit sensor behind ``hub``): its id and password.
    The broker is not synced here: the test calls ``broker.sync`` once its devices exist."""
    with db.connect() as conn:
        values = {"kind": kind, "model": "KIT1", "serial": serial, "hub_id": hub}
        return register_device(conn, site_id, values, lambda _conn: None)


def make_site(
    db: Database,
    broker: Broker,
    *,
    site_id: str = "site-a",
    beds: int = 1,
    wearables: bool = True,
    buttons: bool = True,
    kind: str = "nursing_home",
) -> list[DeviceCredential]:
    """Create a site with ``beds`` beds/residents and their devices; sync the broker."""
    locations, bed_rows, residents, devices = [], [], [], []
    for i in range(beds):
        loc, bed, res = f"{site_id}-l{i}", f"{site_id}-b{i}", f"{site_id}-r{i}"
        locations.append({"id": loc, "kind": "room", "label": f"Room {100 + i}"})
        bed_rows.append({"id": bed, "code": f"BED-{site_id}-{i:04d}", "location": loc})
        residents.append(
            {"id": res, "code": f"ELD-{site_id}-{i:04d}", "name": f"Resident {i}",
             "bed": bed, "care_level": 2}
        )  # fmt: skip
        devices.append(
            {"id": f"{site_id}-bs{i}", "kind": "bed_sensor", "model": "BS1",
             "serial": f"{site_id}-bs{i}", "bed": bed, "location": loc}
        )  # fmt: skip
        if wearables:
            devices.append(
                {"id": f"{site_id}-wr{i}", "kind": "wearable", "model": "WR1",
                 "serial": f"{site_id}-wr{i}", "resident": res, "location": loc}
            )  # fmt: skip
        if buttons:
            devices.append(
                {"id": f"{site_id}-bt{i}", "kind": "button", "model": "BT1",
                 "serial": f"{site_id}-bt{i}", "bed": bed, "location": loc}
            )  # fmt: skip
    definition = {
        "site": {"id": site_id, "name": f"Site {site_id}", "kind": kind},
        "locations": locations,
        "beds": bed_rows,
        "residents": residents,
        "devices": devices,
    }
    with db.connect() as conn:
        creds = apply_site_definition(conn, definition)
    broker.sync(db)
    return creds


def wait_until(pred: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(step_s)


def access_token(api_url: str, username: str, password: str, *, timeout_s: float = 30) -> str:
    """Sign ``username`` in through the API (POST /auth/token) and return the bearer access
    token; a refused sign-in fails the test."""
    form = {"username": username, "password": password}
    resp = httpx.post(f"{api_url}/auth/token", data=form, timeout=timeout_s)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def bearer_client(api_url: str, token: str | None, *, timeout_s: float = 30) -> httpx.Client:
    """An HTTP client of the API sending ``token`` as the bearer (none: anonymous)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=api_url, headers=headers, timeout=timeout_s)


def signed_in_client(api_url: str, username: str, password: str) -> httpx.Client:
    """An HTTP client of the API signed in as ``username`` (see access_token)."""
    return bearer_client(api_url, access_token(api_url, username, password))


class DeviceClient:
    """A real MQTT device connection (paho, its own thread), for integration tests."""

    def __init__(
        self, broker_port: int, username: str, password: str | None, client_id: str | None = None
    ) -> None:
        """The client id is the user name (the broker binds them anyway) unless given."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.username = username
        self.acks: list[bytes] = []
        self.connect_rc: list[str] = []
        self.disconnects: list[str] = []
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or username, protocol=mqtt.MQTTv5,
        )  # fmt: skip
        if password is not None:
            self._client.username_pw_set(username, password)
        self._client.on_connect = lambda c, u, f, rc, p: self.connect_rc.append(str(rc))
        self._client.on_message = lambda c, u, m: self.acks.append(bytes(m.payload))
        self._client.on_disconnect = lambda c, u, f, rc, p: self.disconnects.append(str(rc))
        self._port = broker_port
        self._mqtt = mqtt

    def __enter__(self) -> DeviceClient:
        self._client.connect("127.0.0.1", self._port, keepalive=30)
        self._client.loop_start()
        wait_until(lambda: bool(self.connect_rc), 5, "CONNACK")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def refused(self) -> bool:
        return bool(self.connect_rc) and self.connect_rc[-1] != "Success"

    def subscribe(self, topic: str) -> None:
        self._client.subscribe(topic, qos=1)
        time.sleep(0.2)

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 5, retain: bool = False
    ) -> str:
        """Publish and wait for the broker's PUBACK; return the broker's reason code."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout_s)
        return str(getattr(info, "rc", ""))


class InProcessGateway:
    """Run a real gateway Runtime on its own event loop in a background thread."""

    def __init__(self, settings: Settings, **runtime_kwargs: Any) -> None:
        self.settings = settings
        self._kwargs = runtime_kwargs
        self.runtime: Any = None
        self._thread: Any = None
        self._loop: Any = None
        self._error: BaseException | None = None
        self._ready = False

    def __enter__(self) -> InProcessGateway:
        import asyncio
        import threading

        from gateway.runtime import Runtime

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            async with Runtime(self.settings, **self._kwargs) as rt:
                self.runtime = rt
                self._ready = True
                await rt.run()

        def target() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()
        wait_until(lambda: self._ready or self._error is not None, 30, "gateway start")
        if self._error is not None:
            raise self._error
        assert self.runtime is not None
        wait_until(self.runtime.session.connected.is_set, 10, "gateway broker connection")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self.runtime is not None:
            self._loop.call_soon_threadsafe(self.runtime.request_stop)
        self._thread.join(30)
        assert not self._thread.is_alive(), "gateway did not stop"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.runtime.api_port}"


class StreamPublisher:
    """Real devices streaming 1 Hz-style ``vitals`` as fast as asked, in a background thread.

    Only messages the broker acknowledged with success (PUBACK, reason 0) count as sent;
    ``sent_ids`` is what the database must end up holding, exactly.
    """

    def __init__(
        self, broker_port: int, creds: list[DeviceCredential], rate_per_device: float
    ) -> None:
        import threading

        self.broker_port = broker_port
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, int], str] = {}
        self._early: dict[tuple[int, int], bool] = {}
        self.sent_ids: set[str] = set()
        # Published but never confirmed (the connection dropped before the PUBACK): the broker
        # may or may not have taken them; a real device would resend them with the same id.
        self.attempted_ids: set[str] = set()
        self.failed = 0
        self._interval = 1.0 / rate_per_device
        self._devices = creds
        self._clients: list[Any] = []
        for i, c in enumerate(creds):
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=f"pub-{c.device_id}", protocol=mqtt.MQTTv5
            )
            client.username_pw_set(c.device_id, c.password)
            client.reconnect_delay_set(1, 2)
            client.on_publish = self._on_publish_for(i)
            self._clients.append(client)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_publish_for(self, idx: int) -> Callable[..., None]:
        def on_publish(client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
            with self._lock:
                msg_id = self._pending.pop((idx, mid), None)
                if msg_id is None:  # PUBACK raced ahead of publish() returning
                    self._early[(idx, mid)] = not rc.is_failure
                    return
                self._settle(msg_id, not rc.is_failure)

        return on_publish

    def _settle(self, msg_id: str, ok: bool) -> None:
        if ok:
            self.sent_ids.add(msg_id)
        else:
            self.failed += 1

    def __enter__(self) -> StreamPublisher:
        for c in self._clients:
            c.connect("127.0.0.1", self._port_of(c), keepalive=10)
            c.loop_start()
        self._thread.start()
        return self

    def _port_of(self, client: Any) -> int:
        return self.broker_port

    def _run(self) -> None:
        from devices import protocol as p

        seq = 0
        while not self._stop.is_set():
            t0 = time.monotonic()
            seq += 1
            ts = int(time.time() * 1000)
            for idx, (c, cred) in enumerate(zip(self._clients, self._devices, strict=True)):
                msg_id = f"{cred.device_id}-{seq}"
                payload = p.encode_vitals(
                    cred.device_id, msg_id, seq, ts, presence=True, hr=60.0, rr=14.0, movement=0.1
                )
                topic = f"{PREFIX}/v1/{cred.site_id}/{cred.device_id}/telemetry"
                # Never hold our lock inside paho: its callbacks take it (lock order).
                # While disconnected paho answers "no connection" but still queues the
                # message and sends it after reconnecting: it counts as attempted either way.
                info = c.publish(topic, payload, qos=1)
                self.attempted_ids.add(msg_id)
                with self._lock:
                    ok = self._early.pop((idx, info.mid), None)
                    if ok is None:
                        self._pending[(idx, info.mid)] = msg_id
                    else:
                        self._settle(msg_id, ok)
            self._stop.wait(max(0.0, self._interval - (time.monotonic() - t0)))

    def stop(self, settle_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join()
        wait_until(lambda: not self._pending, settle_s, "outstanding PUBACKs", 0.05)

    def close(self) -> None:
        for c in self._clients:
            c.disconnect()
            c.loop_stop()

    def __exit__(self, *exc: object) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
        self.close()


class GatewayProcess:
    """The gateway as a real OS process (``safehome gateway run``), logs captured to a file."""

    def __init__(
        self, settings: Settings, log_path: Any, env: dict[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        self.env = env or {}  # extra SAFEHOME_* settings (analysis timers, ...)
        self.proc: Any = None

    def start(self, wait_for: str = "broker connected") -> GatewayProcess:
        """Start and wait for ``wait_for`` in the log (a failover standby: "standby: ...")."""
        import os
        import subprocess
        import sys

        env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOME_")}
        env.update(settings_env(self.settings))
        env.update(self.env)
        log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self._log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "gateway", "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: wait_for in self.log_text(), 30, "gateway start")
        return self

    def log_text(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def log_count(self, message: str) -> int:
        import json

        n = 0
        for line in self.log_text().splitlines():
            try:
                if json.loads(line).get("msg") == message:
                    n += 1
            except ValueError:
                continue
        return n

    def kill(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        if not self._log.closed:
            self._log.close()


def manifest_for(creds: list[DeviceCredential], broker: Broker, site: str = "site-a") -> Any:
    """A simulator manifest for devices created by :func:`make_site`."""
    from devices.manifest import ManifestDevice, SiteManifest
    from devices.protocol import DeviceKind
    from devices.transport import BrokerEndpoint

    devices = tuple(
        ManifestDevice(
            id=c.device_id,
            kind=DeviceKind(c.kind),
            password=c.password,
            bed=c.bed_id,
            resident=c.resident_id or (c.bed_id.replace("-b", "-r") if c.bed_id else None),
            location=c.location_id,
        )
        for c in creds
    )
    return SiteManifest(
        site=site, devices=devices, prefix=PREFIX, broker=BrokerEndpoint("127.0.0.1", broker.port)
    )
