"""Typed settings: TOML defaults in ``config/``, an optional site overlay, environment overrides.

Order of precedence (highest first):

1. environment variables ``SAFEHOME_<SECTION>__<KEY>`` (e.g. ``SAFEHOME_MQTT__PORT=1884``);
2. the TOML file named by ``SAFEHOME_CONFIG`` (an operator's overlay, e.g.
   ``/etc/safehome/gateway.toml``);
3. ``config/default.toml`` shipped with the project.

Secrets (database and broker passwords, the API signing key) never come from TOML: a TOML
file that sets one is refused. They come from the environment, either directly
(``SAFEHOME_MQTT__PASSWORD``) or from a file (``SAFEHOME_MQTT__PASSWORD_FILE=/run/secrets/mqtt``).

Settings are built by :func:`load_settings`, never at import time.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.notify.settings import NotifySettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "default.toml"
ENV_PREFIX = "SAFEHOME_"

# (section, key) pairs that hold secrets: refused in TOML, accepted from env or *_FILE.
SECRET_KEYS: frozenset[tuple[str, str]] = frozenset(
    {
        ("database", "password"),
        ("mqtt", "password"),
        ("api", "jwt_secret"),
        # notify: webhook URLs/signing secrets and bot URLs (which embed their keys).
        ("notify", "webhooks"),
        ("notify", "bots"),
    }
)


class SettingsError(Exception):
    """Settings could not be loaded; ``str(err)`` names every bad key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(5432, ge=1, le=65535)
    name: str = "safehome"
    user: str = "safehome"
    password: SecretStr | None = None
    pool_min: int = Field(2, ge=1)
    pool_max: int = Field(10, ge=1)
    connect_timeout_s: float = Field(5.0, gt=0)
    # After this long without a database the gateway keeps retrying; it only logs.
    retry_min_s: float = Field(0.2, gt=0)
    retry_max_s: float = Field(5.0, gt=0)

    def conninfo(self) -> str:
        """libpq connection string (password included when set)."""
        parts = {
            "host": self.host,
            "port": str(self.port),
            "dbname": self.name,
            "user": self.user,
            "connect_timeout": str(max(1, int(self.connect_timeout_s))),
            "application_name": "safehome-gateway",
        }
        if self.password is not None:
            parts["password"] = self.password.get_secret_value()
        return " ".join(f"{k}={_quote(v)}" for k, v in parts.items())


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    prefix: str = Field("shg", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    client_id: str = Field("safehome-gateway", min_length=1, max_length=64)
    username: str = "gateway"
    password: SecretStr | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)
    # The broker keeps the gateway's subscription and queued messages this long while
    # the gateway is away (MQTT 5 session expiry). Size it to the longest outage to survive.
    session_expiry_s: int = Field(7 * 86400, ge=60)
    # MQTT 5 receive maximum: how many unacknowledged QoS 1 messages the broker may have in
    # flight to the gateway. This bounds the gateway's in-memory queue; the broker queues
    # the rest on disk. Messages are acknowledged only once stored.
    receive_maximum: int = Field(65535, ge=1, le=65535)
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    tls: bool = False
    ca_file: Path | None = None
    # MQTT client implementation: "native" (gateway.mqttclient, built for throughput: big
    # reads, many packets parsed per read) or "paho" (paho-mqtt, kept for comparison).
    client: Literal["native", "paho"] = "native"


class IngestSettings(_Section):
    batch_size: int = Field(5000, ge=1, le=100_000)
    max_delay_ms: int = Field(50, ge=1, le=10_000)
    max_payload_bytes: int = Field(65536, ge=256)
    max_future_s: float = Field(300.0, ge=0)
    max_age_s: float = Field(7 * 86400.0, gt=0)
    dead_letter_payload_bytes: int = Field(2048, ge=0)
    registry_refresh_s: float = Field(5.0, gt=0)
    # Device events (button presses, SOS, fall flags, ...) are stored by their own writer the
    # moment they arrive, instead of waiting in a telemetry batch (see gateway.ingest).
    event_lane: bool = True


class RetentionSettings(_Section):
    """How long each time series is kept, in days, and how often retention runs."""

    readings_days: int = Field(400, ge=1)
    accel_days: int = Field(3, ge=1)
    device_events_days: int = Field(3650, ge=1)
    device_state_days: int = Field(400, ge=1)
    dead_letters_days: int = Field(90, ge=1)
    # Community edition only: compress chunks older than this.
    compress_after_days: int = Field(2, ge=1)
    interval_s: float = Field(3600.0, gt=0)


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    jwt_secret: SecretStr | None = None
    token_ttl_s: int = Field(900, ge=60, le=86400)


class AnalysisSettings(_Section):
    """The analysis runner (``gateway.analysis``): cadence, queue, and detector timing.

    Times in seconds. Heartbeat intervals are per device kind (a device's own
    ``heartbeat_interval_s`` in the registry wins); a device is silent after
    ``deadline_factor`` intervals without a message.
    """

    check_interval_s: float = Field(5.0, gt=0)
    # Batches of stored messages (each at most ingest.batch_size) waiting for analysis. When
    # full the ingest writer waits: its next messages stay unacknowledged at the broker.
    queue_size: int = Field(64, ge=1)
    fall_confirm_window_s: float = Field(30.0, ge=0)
    fall_merge_window_s: float = Field(10.0, ge=0)
    heartbeat_button_s: float = Field(300.0, gt=0)
    heartbeat_bed_sensor_s: float = Field(60.0, gt=0)
    heartbeat_wearable_s: float = Field(120.0, gt=0)
    deadline_factor: float = Field(2.5, gt=1)
    group_hold_s: float = Field(900.0, ge=0)
    vitals_min_duration_s: float = Field(120.0, ge=0)
    vitals_recover_s: float = Field(60.0, ge=0)
    vitals_baseline_min_duration_s: float = Field(600.0, ge=0)
    # Start-up rebuild, replayed from the stored streams: events, steps and heartbeats of the
    # last rebuild_events_s; bed readings thinned to one per rebuild_sample_step_s for the last
    # rebuild_samples_s; every message (accelerometer and readings at full rate, alarms
    # included) of the last catch_up_s, so nothing stored just before a crash goes unanalysed.
    rebuild_events_s: float = Field(36 * 3600.0, ge=0)
    rebuild_samples_s: float = Field(6 * 3600.0, ge=0)
    rebuild_sample_step_s: float = Field(60.0, gt=0)
    catch_up_s: float = Field(120.0, ge=0)
    # Conditions open in the database that no detector re-raises within this long after a
    # start are resolved as "not re-established" (at least a device deadline + group hold).
    reconcile_after_s: float = Field(1800.0, ge=0)
    registry_refresh_s: float = Field(30.0, gt=0)
    state_save_interval_s: float = Field(60.0, gt=0)


class EscalationSettings(_Section):
    """The escalation worker (``gateway.escalation.worker``) and its ladder file."""

    enabled: bool = True
    # Ladders (default + per-site overrides); a relative path is under the project root.
    ladder_config: Path = Path("config/escalation.toml")
    poll_interval_s: float = Field(1.0, gt=0)
    batch_size: int = Field(50, ge=1, le=1000)

    def ladder_path(self) -> Path:
        """The ladder file as an absolute path."""
        path = self.ladder_config
        return path if path.is_absolute() else PROJECT_ROOT / path


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class Settings(BaseSettings):
    """All gateway settings. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    database: DatabaseSettings = DatabaseSettings()
    mqtt: MqttSettings = MqttSettings()
    ingest: IngestSettings = IngestSettings()
    retention: RetentionSettings = RetentionSettings()
    api: ApiSettings = ApiSettings()
    log: LogSettings = LogSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    notify: NotifySettings = NotifySettings()
    escalation: EscalationSettings = EscalationSettings()
    var_dir: Path = PROJECT_ROOT / "var"

    @field_validator("var_dir")
    @classmethod
    def _absolute_var_dir(cls, value: Path) -> Path:
        return value if value.is_absolute() else PROJECT_ROOT / value

    @model_validator(mode="after")
    def _check_ranges(self) -> Settings:
        if self.database.pool_min > self.database.pool_max:
            raise ValueError("database.pool_min must not exceed database.pool_max")
        if self.mqtt.reconnect_min_s > self.mqtt.reconnect_max_s:
            raise ValueError("mqtt.reconnect_min_s must not exceed mqtt.reconnect_max_s")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings merges TOML layers, secret files and the environment itself (so that
        # *_FILE variables and SAFEHOME_CONFIG are understood); pydantic only validates.
        return (init_settings,)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise SettingsError(f"settings file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}") from exc
    for section, key in sorted(SECRET_KEYS):
        if key in data.get(section, {}):
            env = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
            raise SettingsError(
                f"{path}: {section}.{key} is a secret and must not be stored in a TOML file; "
                f"set {env} or {env}_FILE instead"
            )
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _secrets_from_files(environ: dict[str, str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for section, key in SECRET_KEYS:
        name = f"{ENV_PREFIX}{section.upper()}__{key.upper()}_FILE"
        path = environ.get(name)
        if not path:
            continue
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"{name}: cannot read {path}: {exc.strerror}") from exc
        found.setdefault(section, {})[key] = value
    return found


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(settings)"
        lines.append(f"  {key}: {err['msg']}")
    return "invalid settings:\n" + "\n".join(lines)


def _from_environment(environ: dict[str, str]) -> dict[str, Any]:
    """``SAFEHOME_<SECTION>__<KEY>=value`` → {section: {key: value}}; ``*_FILE`` excluded."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name.endswith("_FILE") or name == "SAFEHOME_CONFIG":
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SettingsError(f"{name}: conflicts with another variable")
        node[parts[-1]] = value
    return out


def load_settings(
    config_file: Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Build the settings from the TOML layers and the environment; raise SettingsError."""
    env = dict(os.environ if environ is None else environ)
    data = _read_toml(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else {}
    overlay = config_file or (Path(env["SAFEHOME_CONFIG"]) if env.get("SAFEHOME_CONFIG") else None)
    if overlay is not None:
        data = _merge(data, _read_toml(overlay))
    data = _merge(data, _secrets_from_files(env))
    data = _merge(data, _from_environment(env))
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
