"""The project's own services for a single machine (demo, evaluation, small sites).

``safehome services up`` starts a private PostgreSQL + TimescaleDB and a private Mosquitto
under ``<var_dir>`` on the ports in the settings, creates the database, role and secrets
(files of mode 0600 under ``<var_dir>/secrets``) and applies the schema. Production sites
point the gateway at their own managed services instead (README, "Existing services").
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import psycopg

from gateway.brokerauth import ServiceAccount, hash_password
from gateway.brokersync import BrokerSync
from gateway.cells import cell_accounts
from gateway.commissioning import device_accounts
from gateway.localsvc import MosquittoServer, PostgresServer
from gateway.settings import Settings, load_settings
from gateway.storage import timescale
from gateway.storage.migrate import migrate

SECRET_FILES = {
    "SAFEHOME_DATABASE__PASSWORD_FILE": "db_password",
    "SAFEHOME_MQTT__PASSWORD_FILE": "mqtt_password",
    "SAFEHOME_API__JWT_SECRET_FILE": "jwt_secret",
    # The audit chain's anchors are on by default with the project's own services.
    "SAFEHOME_AUDIT__ANCHOR_KEY_FILE": "audit_anchor_key",
}
# The schema owner's password (migrations only): never handed to the gateway process.
OWNER_SECRET = ("SAFEHOME_DATABASE__OWNER_PASSWORD_FILE", "db_owner_password")


def _secret_file(sdir: Path, name: str) -> Path:
    path = sdir / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return path


def ensure_secrets(var_dir: Path) -> dict[str, str]:
    """Create the local secrets once; return the environment that points the gateway's
    settings at them (the owner's password file is created too, but not returned)."""
    sdir = var_dir / "secrets"
    sdir.mkdir(parents=True, exist_ok=True)
    sdir.chmod(0o700)
    _secret_file(sdir, OWNER_SECRET[1])
    return {var: str(_secret_file(sdir, name)) for var, name in SECRET_FILES.items()}


def local_broker_env(settings: Settings) -> dict[str, str]:
    """Point ``broker.*`` at the local Mosquitto's files (when not configured otherwise), so
    the gateway manages device accounts there: installers can register devices against the
    local services. Devices reach that broker where the gateway does, without TLS."""
    if settings.broker.passwd_path is not None:
        return {}
    mqtt_dir = settings.var_dir / "mqtt"
    return {
        "SAFEHOME_BROKER__PASSWD_PATH": str(mqtt_dir / "passwd"),
        "SAFEHOME_BROKER__ACL_PATH": str(mqtt_dir / "acl"),
        "SAFEHOME_BROKER__PID_PATH": str(mqtt_dir / "mosquitto.pid"),
        "SAFEHOME_BROKER__PUBLIC_HOST": settings.mqtt.host,
        "SAFEHOME_BROKER__PUBLIC_PORT": str(settings.mqtt.port),
        "SAFEHOME_BROKER__PUBLIC_TLS": "false",
    }


def local_owner_user(settings: Settings) -> str:
    """The owner role of the local database: ``database.owner_user`` or ``<user>_owner``."""
    return settings.database.owner_user or f"{settings.database.user}_owner"


def settings_with_local_secrets(config_file: Path | None) -> tuple[Settings, dict[str, str]]:
    """Settings whose secrets come from ``<var_dir>/secrets`` (created if missing), with the
    local owner role for migrations; the returned environment is the gateway's (no owner)."""
    base = load_settings(config_file)
    env = ensure_secrets(base.var_dir) | local_broker_env(base)
    owner = {
        "SAFEHOME_DATABASE__OWNER_USER": local_owner_user(base),
        OWNER_SECRET[0]: str(base.var_dir / "secrets" / OWNER_SECRET[1]),
    }
    merged = dict(os.environ) | env | owner
    if config_file is not None:
        merged["SAFEHOME_CONFIG"] = str(config_file)
    return load_settings(config_file, environ=merged), env


class LocalServices:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        var = settings.var_dir
        self.postgres = PostgresServer(var / "pg", settings.database.port)
        self.mosquitto = MosquittoServer(
            var / "mqtt", settings.mqtt.port, max_packet_size=settings.mqtt_packet_limit
        )

    def _service_account(self) -> ServiceAccount:
        pw = self.settings.mqtt.password
        if pw is None:
            raise RuntimeError("mqtt.password is not set (see ensure_secrets)")
        return ServiceAccount(self.settings.mqtt.username, hash_password(pw.get_secret_value()))

    def _cell_accounts(self, service: ServiceAccount) -> list[ServiceAccount]:
        """The gateway accounts of the cells sharing the broker (``broker.cells``)."""
        return cell_accounts(self.settings.broker.cells, service.username, service.password_hash)

    def up(self) -> None:
        d = self.settings.database
        if d.password is None or d.owner_user is None or d.owner_password is None:
            raise RuntimeError("database passwords are not set (see settings_with_local_secrets)")
        self.postgres.init()
        self.postgres.start()
        self.postgres.ensure_database(
            d.name, d.owner_user, d.owner_password.get_secret_value(),
            app_user=d.user, app_password=d.password.get_secret_value(),
        )  # fmt: skip
        with psycopg.connect(d.owner_conninfo(), autocommit=True) as conn:
            migrate(conn, app_role=d.user)
            timescale.apply_policies(conn, timescale.detect(conn), self.settings.retention)
        with psycopg.connect(d.conninfo(), autocommit=True) as conn:
            devices = device_accounts(conn)
        service = self._service_account()
        cells = self._cell_accounts(service)
        self.mosquitto.init(self.settings.mqtt.prefix, service, devices, cells)
        self.mosquitto.start()
        self.mosquitto.reload()

    def sync_broker(self) -> int:
        """Broker accounts from the registry; the broker reloaded. When the gateway manages
        the broker's files (``broker.*``), the same writer as the gateway's API is used, under
        its lock, so the two never interleave."""
        sync = BrokerSync(self.settings)
        if sync.managed and self.mosquitto.running():
            with psycopg.connect(self.settings.database.conninfo()) as conn, conn.transaction():
                return sync.apply(conn)
        with psycopg.connect(self.settings.database.conninfo(), autocommit=True) as conn:
            devices = device_accounts(conn)
        service = self._service_account()
        cells = self._cell_accounts(service)
        self.mosquitto.set_accounts(self.settings.mqtt.prefix, service, devices, cells)
        self.mosquitto.reload()
        return len(devices)

    def down(self) -> None:
        self.mosquitto.stop()
        self.postgres.stop()

    def describe(self) -> str:
        s = self.settings
        pg = "running" if self.postgres.running() else "stopped"
        mq = "running" if self.mosquitto.running() else "stopped"
        return (
            f"PostgreSQL+TimescaleDB  127.0.0.1:{s.database.port}  db={s.database.name}  ({pg}, "
            f"data {self.postgres.data_dir})\n"
            f"Mosquitto               127.0.0.1:{s.mqtt.port}  ({mq}, "
            f"data {self.mosquitto.directory})"
        )


def sync_broker_files(settings: Settings) -> int:
    return LocalServices(settings).sync_broker()
