"""Typed settings: TOML defaults in ``config/``, an optional site overlay, environment overrides.

Order of precedence (highest first):

1. environment variables ``SAFEHOME_<SECTION>__<KEY>`` (e.g. ``SAFEHOME_MQTT__PORT=1884``);
2. the TOML file named by ``SAFEHOME_CONFIG`` (an operator's overlay, e.g.
   ``/etc/safehome/gateway.toml``);
3. ``config/default.toml`` shipped with the project.

Secrets (every ``SecretStr`` field at any depth: database and broker passwords, the API
signing key, ``notify.smtp.password``, ``notify.sms.access_key_secret``, webhook and bot URLs,
``notify.voice.access_key_secret``, ``notify.wechat.app_secret``, ``paging.ack_secret``,
``paging.inbound_sms_secret``, ``platform.secret``)
never come from TOML: a TOML file that sets one is refused, naming the key. They come from the
environment, either directly (``SAFEHOME_MQTT__PASSWORD``) or from a file
(``SAFEHOME_MQTT__PASSWORD_FILE=/run/secrets/mqtt``). A ``…_FILE`` variable of a key that is
not a secret (``SAFEHOME_MQTT__CA_FILE``) is an ordinary setting.

Settings are built by :func:`load_settings`, never at import time.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import (
    BaseModel,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.notify.settings import NotifySettings
from gateway.paging.settings import PagingSettings
from gateway.platform.settings import PlatformSettings
from gateway.settings.cell import CellSettings
from gateway.settings.family import FamilySettings
from gateway.settings.kit import KitSettings
from gateway.settings.sections import (
    MQTT_PACKET_OVERHEAD,
    PROJECT_ROOT,
    AlarmSettings,
    AnalysisSettings,
    ApiSettings,
    AuditSettings,
    BrokerSettings,
    CommissioningSettings,
    DatabaseSettings,
    EscalationSettings,
    FailoverSettings,
    IngestSettings,
    LogSettings,
    MetricsSettings,
    MqttSettings,
    RetentionSettings,
    SettingsError,
    VisitsSettings,
    is_loopback,
)
from gateway.telephony.settings import TelephonySettings

DEFAULT_CONFIG = PROJECT_ROOT / "config" / "default.toml"
ENV_PREFIX = "SAFEHOME_"

# A key path of a secret: section, key, ... ("*" stands for any key of a dict, e.g. a
# webhook's name). Derived from the models (see secret_paths): every SecretStr field at any
# depth is refused in TOML and accepted from the environment or from a *_FILE variable.
SecretPath = tuple[str, ...]


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
    alarms: AlarmSettings = AlarmSettings()
    paging: PagingSettings = PagingSettings()
    broker: BrokerSettings = BrokerSettings()
    commissioning: CommissioningSettings = CommissioningSettings()
    audit: AuditSettings = AuditSettings()
    metrics: MetricsSettings = MetricsSettings()
    failover: FailoverSettings = FailoverSettings()
    cell: CellSettings = CellSettings()
    visits: VisitsSettings = VisitsSettings()
    platform: PlatformSettings = PlatformSettings()
    family: FamilySettings = FamilySettings()  # ratings, away mode (gateway.family)
    kit: KitSettings = KitSettings()  # the safe-home kit's care findings (gateway.kit)
    telephony: TelephonySettings = TelephonySettings()  # click-to-call (gateway.telephony)
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
        if self.commissioning.import_max_bytes > self.api.max_body_bytes:
            raise ValueError("commissioning.import_max_bytes must not exceed api.max_body_bytes")
        return self

    @property
    def mqtt_packet_limit(self) -> int:
        """Largest MQTT packet, in bytes, in either direction: the device payload cap
        (``ingest.max_payload_bytes``) plus room for the fixed header, topic and properties.

        The broker refuses larger publishes (``max_packet_size``, generated by
        :mod:`gateway.localsvc`) and the gateway announces it as its Maximum Packet Size.
        A payload between the cap and this limit still reaches the gateway and is
        dead-lettered as ``oversized``.
        """
        return self.ingest.max_payload_bytes + MQTT_PACKET_OVERHEAD

    def audit_anchor_path(self) -> Path:
        """Where the audit anchors live (``audit.anchor_path``, else under ``var_dir``)."""
        return self.audit.anchor_path or self.var_dir / "audit" / "anchors.jsonl"

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


def _secret_paths_of(annotation: Any, prefix: SecretPath) -> Iterator[SecretPath]:
    if annotation is SecretStr:
        yield prefix
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            yield from _secret_paths_of(info.annotation, (*prefix, name))
    elif get_origin(annotation) in (dict, Mapping):
        yield from _secret_paths_of(get_args(annotation)[1], (*prefix, "*"))
    else:  # unions (X | None), lists: the key holds a secret if any member does
        for arg in get_args(annotation):
            yield from _secret_paths_of(arg, prefix)


def secret_paths(model: type[BaseModel]) -> frozenset[SecretPath]:
    """Every SecretStr field of ``model``, at any depth, as a key path."""
    return frozenset(_secret_paths_of(model, ()))


def secret_env(path: SecretPath) -> str:
    """The environment variable of a key path (``*_FILE`` is its file variant)."""
    return ENV_PREFIX + "__".join(part.upper() for part in path)


def _is_secret(path: SecretPath) -> bool:
    return any(
        len(pattern) == len(path) and all(p in ("*", k) for p, k in zip(pattern, path, strict=True))
        for pattern in SECRET_PATHS
    )


def _secrets_in(data: dict[str, Any], prefix: SecretPath = ()) -> Iterator[SecretPath]:
    for key, value in data.items():
        path = (*prefix, str(key))
        if _is_secret(path):
            yield path
        elif isinstance(value, dict):
            yield from _secrets_in(value, path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise SettingsError(f"settings file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}") from exc
    found = sorted(_secrets_in(data))
    if found:
        lines = [
            f"  {'.'.join(key)} is a secret: set {secret_env(key)} or {secret_env(key)}_FILE"
            for key in found
        ]
        raise SettingsError(
            f"{path}: secrets must not be stored in a TOML file:\n" + "\n".join(lines)
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


def _env_path(name: str) -> SecretPath:
    return tuple(name[len(ENV_PREFIX) :].lower().split("__"))


def _secret_file_path(name: str) -> SecretPath | None:
    """The secret a ``SAFEHOME_…_FILE`` variable names, or None (an ordinary variable)."""
    if not name.startswith(ENV_PREFIX) or not name.endswith("_FILE"):
        return None
    path = _env_path(name[: -len("_FILE")])
    return path if _is_secret(path) else None


def _put(out: dict[str, Any], name: str, path: SecretPath, value: str) -> None:
    node = out
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SettingsError(f"{name}: conflicts with another variable")
    node[path[-1]] = value


def _secrets_from_files(environ: dict[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, file in sorted(environ.items()):
        path = _secret_file_path(name)
        if path is None or not file:
            continue
        try:
            value = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"{name}: cannot read {file}: {exc.strerror}") from exc
        _put(found, name, path, value)
    return found


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(settings)"
        lines.append(f"  {key}: {err['msg']}")
    return "invalid settings:\n" + "\n".join(lines)


def _from_environment(environ: dict[str, str]) -> dict[str, Any]:
    """``SAFEHOME_<SECTION>__<KEY>=value`` → {section: {key: value}}; secret ``*_FILE``
    variables excluded (read by :func:`_secrets_from_files`)."""
    out: dict[str, Any] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == "SAFEHOME_CONFIG":
            continue
        if _secret_file_path(name) is not None:
            continue
        _put(out, name, _env_path(name), value)
    return out


SECRET_PATHS: frozenset[SecretPath] = secret_paths(Settings)


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


__all__ = [
    "DEFAULT_CONFIG",
    "ENV_PREFIX",
    "MQTT_PACKET_OVERHEAD",
    "PROJECT_ROOT",
    "SECRET_PATHS",
    "AlarmSettings",
    "AnalysisSettings",
    "ApiSettings",
    "AuditSettings",
    "BrokerSettings",
    "CellSettings",
    "CommissioningSettings",
    "DatabaseSettings",
    "EscalationSettings",
    "FailoverSettings",
    "IngestSettings",
    "LogSettings",
    "MetricsSettings",
    "MqttSettings",
    "RetentionSettings",
    "SecretPath",
    "Settings",
    "SettingsError",
    "is_loopback",
    "load_settings",
    "secret_env",
    "secret_paths",
]
