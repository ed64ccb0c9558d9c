"""Private PostgreSQL + TimescaleDB and Mosquitto instances owned by the project.

Used by the test fixtures (each test session gets its own data directories and free ports on
127.0.0.1, and tests stop, kill and restart the servers at will) and by the demo (a
persistent instance under ``var/``). Nothing here touches system-wide services.

When run as root the servers run as the ``postgres`` / ``mosquitto`` system users, which
own their data directories: PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.brokerauth import DeviceAccount, ServiceAccount, write_auth_files
from gateway.settings import MQTT_PACKET_OVERHEAD, IngestSettings
from gateway.storage import bootstrap

log = logging.getLogger(__name__)
_SQL_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class LocalServiceError(RuntimeError):
    """A private server could not be initialised, started or stopped."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() >= deadline:
                msg = f"nothing listening on {host}:{port} after {timeout_s}s"
                raise LocalServiceError(msg) from None
            time.sleep(0.05)


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _live_pid(pid_file: Path) -> int | None:
    """The pid on the first line of ``pid_file`` if that process is alive, else None."""
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def _service_user(name: str) -> pwd.struct_passwd | None:
    """The system user to run a server as when we are root; None when not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError as exc:
        raise LocalServiceError(f"running as root needs the system user {name!r}") from exc


def _chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    os.chown(path, user.pw_uid, user.pw_gid)
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def _make_traversable(path: Path) -> None:
    """Let a dropped-privilege server reach ``path`` (o+x on each parent we own)."""
    if os.geteuid() != 0:
        return
    for parent in [path, *path.parents]:
        if parent == Path("/"):
            break
        with contextlib.suppress(OSError):
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)


def _run(cmd: list[str], user: pwd.struct_passwd | None, *, timeout: float = 120) -> str:
    full = ["runuser", "-u", user.pw_name, "--", *cmd] if user is not None else cmd
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        output = (proc.stderr or proc.stdout)[-2000:]
        raise LocalServiceError(f"{Path(cmd[0]).name} failed ({proc.returncode}): {output}")
    return proc.stdout


def pg_bindir() -> Path:
    """Directory of initdb/pg_ctl: $SAFEHOME_PG_BINDIR, else PostgreSQL 15's, else pg_config."""
    env = os.environ.get("SAFEHOME_PG_BINDIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path("/usr/lib/postgresql/15/bin"))
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    for cand in candidates:
        if (cand / "pg_ctl").exists() and (cand / "initdb").exists():
            return cand
    raise LocalServiceError("PostgreSQL server binaries not found (run scripts/setup.sh)")


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster with timescaledb preloaded, listening on 127.0.0.1."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    superuser: str = "postgres"
    fsync: bool = True

    def __post_init__(self) -> None:
        self._bindir = pg_bindir()
        self._user = _service_user("postgres")

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; keep ours short and private.
        return Path(tempfile.gettempdir()) / f".safehome-pg-{self.port}"

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster if it does not exist (idempotent)."""
        if self.initialised():
            self._write_conf()
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        _make_traversable(self.data_dir.parent)
        _chown_tree(self.data_dir, self._user)
        _run(
            [
                str(self._bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.superuser,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            self._user,
        )
        self._write_conf()

    def _write_conf(self) -> None:
        conf = self.data_dir / "safehome.conf"
        conf.write_text(
            "\n".join(
                [
                    "# managed by gateway.localsvc",
                    f"listen_addresses = '{self.host}'",
                    f"port = {self.port}",
                    f"unix_socket_directories = '{self.socket_dir}'",
                    "shared_preload_libraries = 'timescaledb'",
                    "timescaledb.telemetry_level = off",
                    "max_connections = 200",
                    "shared_buffers = 256MB",
                    "max_wal_size = 2GB",
                    f"fsync = {'on' if self.fsync else 'off'}",
                    "log_min_messages = warning",
                    "",
                ]
            )
        )
        main = self.data_dir / "postgresql.conf"
        text = main.read_text()
        if "include_if_exists = 'safehome.conf'" not in text:
            main.write_text(text + "\ninclude_if_exists = 'safehome.conf'\n")
        _chown_tree(self.data_dir, self._user)

    def start(self, timeout_s: float = 60) -> None:
        if self.running():
            return
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        _chown_tree(self.socket_dir, self._user)
        _run(
            [
                str(self._bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(timeout_s)),
                "start",
            ],
            self._user,
            timeout=timeout_s + 10,
        )
        wait_for_port(self.host, self.port, timeout_s)

    def pid(self) -> int | None:
        return _live_pid(self.data_dir / "postmaster.pid")

    def pause(self) -> list[int]:
        """SIGSTOP the server and all its backends (a database that hangs rather than fails:
        connections stay open, queries never answer). Returns the stopped pids; :meth:`resume`
        continues them. For tests and benchmarks."""
        pid = self.pid()
        if pid is None:
            raise LocalServiceError("postgres is not running")
        pids = [pid, *_descendants(pid)]
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGSTOP)
        return pids

    @staticmethod
    def resume(pids: list[int]) -> None:
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)

    def running(self) -> bool:
        return self.pid() is not None

    def stop(self, mode: str = "fast", timeout_s: float = 60) -> None:
        if not self.running():
            return
        _run(
            [str(self._bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"],
            self._user,
            timeout=timeout_s,
        )

    def psql_admin(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL as the superuser over the private Unix socket."""
        return _run(
            [
                str(self._bindir / "psql"),
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                self.superuser,
                "-d",
                dbname,
                "-v",
                "ON_ERROR_STOP=1",
                "-qAt",
                "-c",
                sql,
            ],
            self._user,
        )

    def ensure_database(
        self,
        name: str,
        owner: str,
        password: str,
        *,
        app_user: str | None = None,
        app_password: str | None = None,
    ) -> None:
        """Create (or update the password of) a login role and a database it owns.

        With ``app_user``, also the application's login role (it owns nothing; migrating
        grants its privileges). A database of an older version, where the application role
        owned everything, is handed over to ``owner`` (database and objects).
        """
        for ident in (name, owner, *([app_user] if app_user else [])):
            if not _SQL_IDENT.fullmatch(ident):
                raise LocalServiceError(f"invalid database identifier {ident!r}")
        if app_user == owner:
            raise LocalServiceError("the application role must differ from the owner role")
        self._ensure_role(owner, password)
        if app_user is not None:
            self._ensure_role(app_user, app_password or "")
        exists = self.psql_admin(bootstrap.database_exists(name)).strip()
        if not exists:
            self.psql_admin(bootstrap.create_database(name, owner))
        elif app_user is not None:
            self.psql_admin(bootstrap.hand_over_database(name, owner))
            self.psql_admin(bootstrap.reassign_owned(app_user, owner), dbname=name)
        # The extension needs a superuser to create; the owner then uses it.
        self.psql_admin(bootstrap.CREATE_TIMESCALEDB, dbname=name)

    def _ensure_role(self, role: str, password: str) -> None:
        self.psql_admin(bootstrap.ensure_login_role(role, password))


@dataclass
class MosquittoServer:
    """A private Mosquitto broker: persistence on, no anonymous access, per-device ACL."""

    directory: Path
    port: int
    host: str = "127.0.0.1"
    # Queue sizes: size them for the longest gateway outage a site must survive.
    # Mosquitto's default of 1000 queued messages silently drops QoS 1 traffic.
    max_queued_messages: int = 5_000_000
    # Packets over this size are refused (the client is disconnected): the device payload cap
    # plus framing (``Settings.mqtt_packet_limit``; callers with settings pass theirs).
    max_packet_size: int = IngestSettings().max_payload_bytes + MQTT_PACKET_OVERHEAD

    def __post_init__(self) -> None:
        self._user = _service_user("mosquitto")

    @property
    def conf_file(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def pid_file(self) -> Path:
        return self.directory / "mosquitto.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / "mosquitto.log"

    def init(
        self,
        prefix: str,
        service: ServiceAccount,
        devices: list[DeviceAccount] | None = None,
        extra_services: list[ServiceAccount] | None = None,
    ) -> None:
        """Write configuration and auth files (idempotent; keeps persisted sessions)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o750)
        _make_traversable(self.directory.parent)
        user_line = f"user {self._user.pw_name}" if self._user is not None else ""
        self.conf_file.write_text(
            "\n".join(
                [
                    "# managed by gateway.localsvc",
                    "per_listener_settings false",
                    f"listener {self.port} {self.host}",
                    "allow_anonymous false",
                    # A client's id is its user name, whatever it sends: a device can take
                    # over neither another device's session nor the gateway's.
                    "use_username_as_clientid true",
                    f"password_file {self.directory / 'passwd'}",
                    f"acl_file {self.directory / 'acl'}",
                    "persistence true",
                    f"persistence_location {self.directory}/",
                    "autosave_interval 30",
                    "persistent_client_expiration 14d",
                    f"max_queued_messages {self.max_queued_messages}",
                    "max_queued_bytes 0",
                    "max_inflight_messages 0",
                    f"max_packet_size {self.max_packet_size}",
                    "set_tcp_nodelay true",
                    "max_keepalive 600",
                    f"pid_file {self.pid_file}",
                    f"log_dest file {self.log_file}",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "connection_messages false",
                    "log_timestamp_format %Y-%m-%dT%H:%M:%S",
                    user_line,
                    "",
                ]
            )
        )
        self.set_accounts(prefix, service, devices or [], extra_services or [])

    def set_accounts(
        self,
        prefix: str,
        service: ServiceAccount,
        devices: list[DeviceAccount],
        extra_services: list[ServiceAccount] | None = None,
    ) -> None:
        """Rewrite passwd/acl; a running broker picks them up on :meth:`reload`."""
        owner = (self._user.pw_uid, self._user.pw_gid) if self._user is not None else None
        write_auth_files(
            self.directory, prefix, service, devices, owner=owner, extra=extra_services or []
        )
        _chown_tree(self.directory, self._user)

    def pid(self) -> int | None:
        return _live_pid(self.pid_file)

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout_s: float = 15) -> None:
        if self.running():
            return
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.pid_file.unlink(missing_ok=True)
        proc = subprocess.run(
            [binary, "-c", str(self.conf_file), "-d"], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise LocalServiceError(f"mosquitto failed to start: {proc.stderr[-2000:]}")
        try:
            wait_for_port(self.host, self.port, timeout_s)
        except LocalServiceError:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise LocalServiceError(f"mosquitto did not come up: {tail}") from None

    def reload(self) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGHUP)

    def stop(self, timeout_s: float = 15, sig: int = signal.SIGTERM) -> None:
        """Stop (SIGTERM saves the persistence file; SIGKILL simulates a crash)."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise LocalServiceError(f"mosquitto (pid {pid}) did not stop within {timeout_s}s")
