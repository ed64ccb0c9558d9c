"""The system under fault: services, the site, the gateway process, the page receiver.

* :class:`GatewayProc` — ``safehome gateway run`` as a real OS process with a generated
  overlay config (``SAFEHOME_CONFIG``) and secrets in its environment, reaching the database
  and the broker through a :class:`~tests.faultkit.proxy.TcpProxy` each, so a test can
  ``kill -9`` it, partition it, or run it under libfaketime with its clock off.
* :class:`Receiver` — a local HTTP server standing for every outside channel (family
  webhooks, the on-duty user's pager): it records each delivery with its arrival time and can
  be told to fail a path with 5xx or to hang past the notifier's timeout.
* :func:`site_definition` / :func:`install_site` — the fleet's site: beds with a resident, a
  bed sensor and a button each, optionally a location-bound pull cord and an unbound button;
  a duty-staff user on shift (with a pager channel when staff paging exists); contacts.
* :class:`ServerPool` — a private PostgreSQL (optionally on a small tmpfs of its own, the
  "volume full" fault) with a migrated template and a fresh database per fault, for
  ``bench/faults.py`` and the tests that stop or fill their server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

from devices.protocol import DeviceKind
from gateway.api.auth import create_user
from gateway.brokerauth import ServiceAccount, hash_password
from gateway.commissioning import DeviceCredential, apply_site_definition
from gateway.escalation.roster import DutyRole, add_shift
from gateway.localsvc import LocalServiceError, MosquittoServer, PostgresServer, free_port
from gateway.settings import Settings
from gateway.storage.migrate import migrate
from tests.faultkit.fleet import DeviceSpec
from tests.faultkit.proxy import TcpProxy
from tests.support import PREFIX, Broker, Database

FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
FAKETIME_SHIM = Path(__file__).resolve().parent / "faketime_shim"
SITE = "fm"
DUTY_USER = "fm-duty"
PAGER_CHANNEL = "webhook:pager"
FAMILY_CHANNELS = ("webhook:family", "webhook:family2")

Toml = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# configuration


def toml_text(data: Mapping[str, Any], prefix: str = "") -> str:
    """A small TOML writer for nested tables of scalars and lists (our overlay files)."""
    scalars: list[str] = []
    tables: list[str] = []
    for key, value in data.items():
        name = json.dumps(key) if not key.replace("_", "").isalnum() else key
        if isinstance(value, Mapping) and not _inline(value):
            tables.append(toml_text(value, f"{prefix}{name}."))
        else:
            scalars.append(f"{name} = {_toml_value(value)}")
    head = f"[{prefix[:-1]}]\n" if prefix and scalars else ""
    return head + "".join(s + "\n" for s in scalars) + "".join(tables)


def _inline(value: Mapping[str, Any]) -> bool:
    return all(not isinstance(v, Mapping) for v in value.values()) and all(
        k.isdigit() for k in value
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(f"no TOML for {type(value).__name__}")


def merge(base: Toml, over: Mapping[str, Any]) -> Toml:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def ladder(tiers: list[Toml]) -> Toml:
    return {"ladder": {"priority_scale": {"1": 1.0}, "tiers": tiers}}


def ladder_text(data: Toml) -> str:
    lines = ["[ladder]", 'priority_scale = { "1" = 1.0 }']
    for tier in data["ladder"]["tiers"]:
        lines.append("[[ladder.tiers]]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in tier.items())
    return "\n".join(lines) + "\n"


# The default ladder of a fault run: the duty staff are paged once and stay the audience for
# the whole run (a fault must show that the page happens, not the ladder's later tiers).
DEFAULT_TIERS: list[Toml] = [
    {"name": "duty_staff", "audience": "duty_staff", "timeout_s": 3600.0},
    {"name": "emergency", "audience": "emergency", "timeout_s": 3600.0,
     "instruction": "无人确认此告警 / No one has acknowledged this alarm: call 120 now."},
]  # fmt: skip


def base_config(settings_dir: Path) -> Toml:
    """Timers scaled for the fault matrix: every window is seconds, not minutes."""
    config = _base_config(settings_dir)
    if "alarms" in Settings.model_fields:  # alarm durability (pending markers, recovery)
        config["alarms"] = {"recovery_grace_s": 3.0, "recovery_interval_s": 1.0}
    return config


def _base_config(settings_dir: Path) -> Toml:
    return {
        "database": {"retry_min_s": 0.1, "retry_max_s": 0.5, "connect_timeout_s": 2.0},
        "mqtt": {"keepalive_s": 5, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        "ingest": {"registry_refresh_s": 1.0},
        "log": {"level": "INFO", "format": "json"},
        "analysis": {
            "check_interval_s": 0.5,
            # the start-up catch-up window: a "10-minute" outage is any downtime longer
            "catch_up_s": 2.0,
            "fall_confirm_window_s": 2.0,
            "reconcile_after_s": 5.0,
            "group_hold_s": 0.0,
            "registry_refresh_s": 1.0,
            "state_save_interval_s": 2.0,
        },
        "notify": {
            "poll_interval_s": 0.2,
            "max_attempts": 2,
            "backoff_base_s": 0.2,
            "backoff_max_s": 0.5,
            "backoff_jitter": 0.0,
            "channel_deadline_s": 5.0,
            "lease_s": 5.0,
            "webhooks": {name: {"timeout_s": 1.0} for name in (*FAMILY_CHANNELS, PAGER_CHANNEL)},
        },
        "escalation": {"poll_interval_s": 0.2, "ladder_config": str(settings_dir / "ladder.toml")},
    }


# ---------------------------------------------------------------------------------------------
# the page / notification receiver


@dataclass(frozen=True, slots=True)
class Delivery:
    path: str
    at: float
    body: dict[str, Any]
    delivery_id: str | None = None  # X-Safehome-Delivery: the same id on an at-least-once resend

    @property
    def incident_id(self) -> int | None:
        value = self.body.get("incident_id")
        return int(value) if isinstance(value, int) else None


class Receiver:
    """Every outside channel: ``POST /<path>`` is recorded; ``fail(path)`` answers 503,
    ``hang(path)`` answers only after ``hang_s`` (past the notifier's timeout)."""

    def __init__(self, hang_s: float = 3.0) -> None:
        self.deliveries: list[Delivery] = []
        self.refused: list[Delivery] = []
        self.behaviour: dict[str, str] = {}
        self.hang_s = hang_s
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                at = time.time()
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"raw": raw.decode(errors="replace")}
                path = self.path.strip("/")
                mode = receiver.behaviour.get(path, "ok")
                item = Delivery(path, at, body if isinstance(body, dict) else {"body": body},
                                self.headers.get("X-Safehome-Delivery"))  # fmt: skip
                with receiver._lock:
                    (receiver.deliveries if mode == "ok" else receiver.refused).append(item)
                if mode == "hang":
                    time.sleep(receiver.hang_s)
                code = 200 if mode == "ok" else 503
                with contextlib.suppress(OSError):
                    self.send_response(code)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def fail(self, path: str) -> None:
        self.behaviour[path] = "fail"

    def hang(self, path: str) -> None:
        self.behaviour[path] = "hang"

    def heal(self, path: str) -> None:
        self.behaviour.pop(path, None)

    def received(self, path: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.path == path]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# ---------------------------------------------------------------------------------------------
# the site


@dataclass
class Site:
    """What the fleet and the ledger need to know about the site."""

    site_id: str
    devices: list[DeviceSpec]
    buttons: list[str]  # bed buttons (resident known through the bed)
    sensors: list[str]
    resident_of: dict[str, str | None]  # device -> resident id (None: location/unbound)
    location_button: str | None = None
    unbound_button: str | None = None
    duty_user: str = ""
    paging: bool = False  # the staff pager channel exists (staff paging off-console)
    credentials: list[DeviceCredential] = field(default_factory=list)


def site_definition(
    site_id: str,
    beds: int,
    *,
    location_button: bool = False,
    unbound_button: bool = False,
    contacts: bool = False,
) -> dict[str, Any]:
    locations: list[dict[str, Any]] = []
    bed_rows: list[dict[str, Any]] = []
    residents: list[dict[str, Any]] = []
    devices: list[dict[str, Any]] = []
    people: list[dict[str, Any]] = []
    for i in range(beds):
        loc, bed, res = f"{site_id}-l{i}", f"{site_id}-b{i}", f"{site_id}-r{i}"
        locations.append({"id": loc, "kind": "room", "label": f"Room {100 + i}"})
        bed_rows.append({"id": bed, "code": f"BED-{site_id}-{i:04d}", "location": loc})
        residents.append({"id": res, "code": f"ELD-{site_id}-{i:04d}", "name": f"R{i}",
                          "bed": bed, "care_level": 2})  # fmt: skip
        devices.append({"id": f"{site_id}-bs{i}", "kind": "bed_sensor", "model": "BS1",
                        "serial": f"{site_id}-bs{i}", "bed": bed, "location": loc})  # fmt: skip
        devices.append({"id": f"{site_id}-bt{i}", "kind": "button", "model": "BT1",
                        "serial": f"{site_id}-bt{i}", "bed": bed, "location": loc})  # fmt: skip
        if contacts:
            people.append({"id": f"{site_id}-c{i}", "resident": res, "name": f"C{i}",
                           "channels": list(FAMILY_CHANNELS)})  # fmt: skip
    if location_button:
        loc = f"{site_id}-bath"
        locations.append({"id": loc, "kind": "room", "label": "Bathroom"})
        devices.append({"id": f"{site_id}-cord", "kind": "button", "model": "BT1",
                        "serial": f"{site_id}-cord", "location": loc})  # fmt: skip
    if unbound_button:
        devices.append({"id": f"{site_id}-spare", "kind": "button", "model": "BT1",
                        "serial": f"{site_id}-spare"})  # fmt: skip
    return {
        "site": {"id": site_id, "name": f"Fault matrix {site_id}", "kind": "nursing_home"},
        "locations": locations,
        "beds": bed_rows,
        "residents": residents,
        "devices": devices,
        "contacts": people,
    }


def has_table(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def install_site(
    db: Database,
    broker: Broker,
    *,
    beds: int,
    period_s: float = 0.5,
    location_button: bool = False,
    unbound_button: bool = False,
    contacts: bool = False,
    site_id: str = SITE,
) -> Site:
    """Create the site, a duty-staff user on shift (with a pager when paging exists), the
    devices' broker accounts; return the fleet's device list."""
    definition = site_definition(
        site_id, beds, location_button=location_button, unbound_button=unbound_button,
        contacts=contacts,
    )  # fmt: skip
    return install(db, broker, definition, period_s=period_s)


def install(
    db: Database, broker: Broker, definition: dict[str, Any], *, period_s: float = 0.5
) -> Site:
    """:func:`install_site` for any site definition (e.g. the benchmark's big site)."""
    site_id = str(definition["site"]["id"])
    now = datetime.now(UTC)
    with db.connect() as conn:
        creds = apply_site_definition(conn, definition)
        user_id = create_user(conn, DUTY_USER, "duty_staff", uuid.uuid4().hex, site_id=site_id)
        add_shift(conn, site_id, user_id=user_id, role=DutyRole.DUTY_STAFF,
                  starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=1))  # fmt: skip
        paging = has_table(conn, "staff_channels")
        if paging:
            conn.execute(
                "INSERT INTO staff_channels (user_id, position, channel) VALUES (%s, 0, %s)",
                (user_id, PAGER_CHANNEL),
            )
    broker.sync(db)
    return site_from(definition, creds, user_id=user_id, period_s=period_s, paging=paging)


def site_from(
    definition: dict[str, Any],
    creds: list[DeviceCredential],
    *,
    user_id: str,
    period_s: float,
    paging: bool,
) -> Site:
    site_id = str(definition["site"]["id"])
    bed_resident = {r["bed"]: r["id"] for r in definition["residents"]}
    specs: list[DeviceSpec] = []
    resident_of: dict[str, str | None] = {}
    buttons: list[str] = []
    sensors: list[str] = []
    location_button = unbound_button = None
    for c in creds:
        kind = DeviceKind(c.kind)
        specs.append(DeviceSpec(c.device_id, site_id, kind, c.password,
                                period_s if kind is DeviceKind.BED_SENSOR else 1.0))  # fmt: skip
        resident_of[c.device_id] = bed_resident.get(c.bed_id) if c.bed_id else None
        if kind is DeviceKind.BED_SENSOR:
            sensors.append(c.device_id)
        elif kind is DeviceKind.WEARABLE:
            continue
        elif c.device_id.endswith("-cord"):
            location_button = c.device_id
        elif c.device_id.endswith("-spare"):
            unbound_button = c.device_id
        else:
            buttons.append(c.device_id)
    return Site(site_id, specs, buttons, sensors, resident_of, location_button,
                unbound_button, user_id, paging, list(creds))  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the gateway process


@dataclass
class GatewayProc:
    """The gateway as its own OS process, reaching PostgreSQL and the broker through proxies."""

    root: Path
    db: Database
    broker: Broker
    receiver: Receiver
    config: Toml = field(default_factory=dict)
    tiers: list[Toml] = field(default_factory=lambda: list(DEFAULT_TIERS))
    faketime: str | None = None  # e.g. "+1h": libfaketime offset of the gateway's clock
    db_proxy: TcpProxy = field(init=False)
    mqtt_proxy: TcpProxy = field(init=False)
    proxied: bool = True  # False: straight to the database and broker (benchmarks)
    proc: subprocess.Popen[bytes] | None = field(init=False, default=None)
    api_port: int = field(init=False, default=0)
    starts: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_proxy = TcpProxy(self.db.port).start()
        self.mqtt_proxy = TcpProxy(self.broker.port).start()
        self.client_id = "gw-" + uuid.uuid4().hex[:8]
        self.jwt = uuid.uuid4().hex + uuid.uuid4().hex
        self.log_path = self.root / "gateway.log"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def write_config(self) -> Path:
        cfg = merge(base_config(self.root), {
            "database": {"host": "127.0.0.1", "name": self.db.name, "user": self.db.user,
                         "port": self.db_proxy.port if self.proxied else self.db.port},
            "mqtt": {"host": "127.0.0.1", "prefix": PREFIX, "client_id": self.client_id,
                     "port": self.mqtt_proxy.port if self.proxied else self.broker.port},
            "api": {"host": "127.0.0.1", "port": self.api_port},
        })  # fmt: skip
        cfg = merge(cfg, self.config)
        (self.root / "ladder.toml").write_text(ladder_text(ladder(self.tiers)))
        path = self.root / "gateway.toml"
        path.write_text(toml_text(cfg))
        return path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SAFEHOME_", "FAKETIME"))}
        env.pop("LD_PRELOAD", None)
        env.update({
            "SAFEHOME_CONFIG": str(self.write_config()),
            "SAFEHOME_DATABASE__PASSWORD": self.db.password,
            "SAFEHOME_MQTT__PASSWORD": self.broker.gateway_password,
            "SAFEHOME_API__JWT_SECRET": self.jwt,
        })  # fmt: skip
        for name, path in (("webhook:family", "family"), ("webhook:family2", "family2"),
                           (PAGER_CHANNEL, "pager")):  # fmt: skip
            env[f"SAFEHOME_NOTIFY__WEBHOOKS__{name.upper()}__URL"] = self.receiver.url(path)
        if self.faketime is not None:
            if not FAKETIME_LIB.exists():
                raise RuntimeError(f"{FAKETIME_LIB} missing: run scripts/setup.sh (faketime)")
            env["LD_PRELOAD"] = str(FAKETIME_LIB)
            env["FAKETIME"] = self.faketime
            env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"  # timers keep running normally
            env["FAKETIME_DONT_RESET"] = "1"
            # time.sleep through select(): see faketime_shim/sitecustomize.py
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(FAKETIME_SHIM), env.get("PYTHONPATH", "")) if p
            )
        return env

    def start(self, *, wait: bool = True, timeout_s: float = 60) -> GatewayProc:
        if self.api_port == 0:
            self.api_port = free_port()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "gateway", "run"],
                env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=Path.cwd(),
            )  # fmt: skip
        self.starts += 1
        if wait:
            self.wait_ready(timeout_s)
        return self

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{self.api}/health", timeout=1) as r:  # noqa: S310
                data = json.loads(r.read())
                return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            h = self.health()
            if h is not None and h.get("broker_connected"):
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited ({self.proc.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not ready after {timeout_s}s:\n{self.tail()}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """``kill -9``: no shutdown, no flush, nothing."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def close(self) -> None:
        self.stop()
        self.db_proxy.close()
        self.mqtt_proxy.close()

    def rss_kb(self) -> int:
        if self.proc is None:
            return 0
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_messages(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    item = json.loads(line)
                    if isinstance(item, dict):
                        out.append(item)
        return out

    def metric(self, name: str) -> float:
        """Sum of a Prometheus metric's samples (0 when absent or unreachable)."""
        try:
            with urllib.request.urlopen(f"{self.api}/metrics", timeout=3) as r:  # noqa: S310
                text = r.read().decode()
        except OSError:
            return 0.0
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def __enter__(self) -> GatewayProc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# private servers (bench, and the faults that stop or fill their PostgreSQL)

OWNER_USER = "safehome_owner"
APP_USER = "safehome"
TEMPLATE = "fm_template"


@dataclass
class ServerPool:
    """A private PostgreSQL with a migrated template; ``tmpfs_mb`` puts its whole data
    directory (tables and WAL) on a tmpfs of that size (root only), so it can be filled."""

    root: Path
    tmpfs_mb: int | None = None
    server: PostgresServer = field(init=False)
    owner_password: str = field(default_factory=lambda: uuid.uuid4().hex)
    app_password: str = field(default_factory=lambda: uuid.uuid4().hex)
    mounted: bool = field(init=False, default=False)

    @property
    def volume(self) -> Path:
        return self.root / "volume"

    def start(self) -> ServerPool:
        self.volume.mkdir(parents=True, exist_ok=True)
        if self.tmpfs_mb is not None:
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={self.tmpfs_mb}m,mode=0755", "tmpfs",
                 str(self.volume)], check=True, capture_output=True,
            )  # fmt: skip
            self.mounted = True
        self.server = PostgresServer(self.volume / "pg", free_port(), fsync=False)
        self.server.init()
        if self.tmpfs_mb is not None:  # keep WAL small enough for the volume
            conf = self.server.data_dir / "safehome.conf"
            conf.write_text(
                conf.read_text() + "shared_buffers = 32MB\nmax_wal_size = 64MB\n"
                "min_wal_size = 32MB\nwal_keep_size = 0\n"
            )
        self.server.start()
        self.server.ensure_database(
            TEMPLATE, OWNER_USER, self.owner_password, app_user=APP_USER,
            app_password=self.app_password,
        )  # fmt: skip
        with psycopg.connect(
            f"host=127.0.0.1 port={self.server.port} dbname={TEMPLATE} "
            f"user={OWNER_USER} password={self.owner_password}"
        ) as conn:
            migrate(conn, app_role=APP_USER)
        self.server.psql_admin(
            f'ALTER DATABASE "{TEMPLATE}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false'
        )
        return self

    def database(self) -> Database:
        """A fresh database copied from the template (retried while the template is busy)."""
        name = "f_" + uuid.uuid4().hex[:12]
        for attempt in range(30):
            try:
                self.server.psql_admin(
                    f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}" OWNER "{OWNER_USER}"'
                )
                break
            except LocalServiceError:
                if attempt == 29:
                    raise
                self.server.psql_admin(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{TEMPLATE}' AND pid <> pg_backend_pid()"
                )
                time.sleep(0.1)
        return Database(self.server, name, APP_USER, self.app_password, OWNER_USER,
                        self.owner_password)  # fmt: skip

    def drop(self, db: Database) -> None:
        if self.server.running():
            with contextlib.suppress(LocalServiceError):
                self.server.psql_admin(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')

    def free_bytes(self) -> int:
        st = os.statvfs(self.volume)
        return st.f_bavail * st.f_frsize

    @contextlib.contextmanager
    def full_volume(self, leave_bytes: int = 0) -> Iterator[Path]:
        """Fill the database volume with a ballast file (``ENOSPC`` for PostgreSQL) until the
        block exits, then free it again (what an operator does: make room)."""
        ballast = self.volume / "ballast"
        size = max(0, self.free_bytes() - leave_bytes)
        subprocess.run(["fallocate", "-l", str(size), str(ballast)], check=True)
        try:
            yield ballast
        finally:
            ballast.unlink(missing_ok=True)

    def close(self) -> None:
        with contextlib.suppress(LocalServiceError):
            self.server.stop(mode="immediate")
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.volume)], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def new_broker(root: Path, gateway_password: str | None = None) -> Broker:
    """A private Mosquitto with the gateway's service account (devices added by sync)."""
    password = gateway_password or "gw-" + uuid.uuid4().hex[:12]
    server = MosquittoServer(root / ("mq-" + uuid.uuid4().hex[:8]), free_port())
    service = ServiceAccount("gateway", hash_password(password))
    server.init(PREFIX, service, [])
    server.start()
    return Broker(server, service, password)


def close_broker(broker: Broker) -> None:
    if broker.server.running():
        broker.server.stop()
    shutil.rmtree(broker.server.directory, ignore_errors=True)
