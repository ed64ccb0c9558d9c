"""The settings sections: one model a ``[section]`` of the TOML files (see
:mod:`gateway.settings` for where the values come from)."""

from __future__ import annotations

import ipaddress
from dataclasses import fields
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from gateway.settings.cell import CellSettings, check_broker_cells, parse_broker_cells

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent

# Room for an MQTT PUBLISH's fixed header, topic (prefix/v1/site/device/channel: ids are at
# most 64 characters) and properties on top of the payload cap.
MQTT_PACKET_OVERHEAD = 1024


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
    # The role that owns the schema and runs `safehome db migrate` (migration 0014); the
    # gateway itself connects as ``user`` with only the privileges it needs. None: one role
    # owns everything and the gateway runs as it (older installations; warned at start-up).
    owner_user: str | None = None
    owner_password: SecretStr | None = None
    pool_min: int = Field(2, ge=1)
    pool_max: int = Field(10, ge=1)
    connect_timeout_s: float = Field(5.0, gt=0)
    # A database connection that stops answering (a partition, a dead host: no RST ever comes)
    # is given up after about this long: TCP keepalives on idle connections and a TCP user
    # timeout on unacknowledged writes (a commit), so the gateway notices, logs the outage and
    # reconnects instead of waiting for the kernel's ~15 min retransmission limit.
    dead_after_s: float = Field(20.0, ge=3, le=3600)
    # After this long without a database the gateway keeps retrying; it only logs.
    retry_min_s: float = Field(0.2, gt=0)
    retry_max_s: float = Field(5.0, gt=0)
    # Every connection of the gateway carries this name; with failover enabled each process
    # appends its own instance tag (a standby ends a frozen holder's sessions by it).
    application_name: str = Field("safehome-gateway", min_length=1, max_length=40)

    def conninfo(self) -> str:
        """libpq connection string (password included when set)."""
        return self._conninfo(self.user, self.password, self.application_name)

    @property
    def app_role(self) -> str | None:
        """The role to grant privileges to after migrating (None: single-role setup)."""
        return self.user if self.owner_user and self.owner_user != self.user else None

    def owner_conninfo(self) -> str:
        """libpq connection string of the owner role (migrations); ``user`` without one."""
        if self.owner_user is None:
            return self.conninfo()
        return self._conninfo(self.owner_user, self.owner_password, "safehome-migrate")

    def _conninfo(self, user: str, password: SecretStr | None, application: str) -> str:
        parts = {
            "host": self.host,
            "port": str(self.port),
            "dbname": self.name,
            "user": user,
            "connect_timeout": str(max(1, int(self.connect_timeout_s))),
            "application_name": application,
            "keepalives": "1",
            "keepalives_idle": str(max(1, int(self.dead_after_s / 2))),
            "keepalives_interval": str(max(1, int(self.dead_after_s / 6))),
            "keepalives_count": "3",
            "tcp_user_timeout": str(int(self.dead_after_s * 1000)),
        }
        if password is not None:
            parts["password"] = password.get_secret_value()
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
    # Byte budget for received messages the gateway has not finished with yet (stored and
    # acked, or dead-lettered): once used, the native client stops reading the socket (TCP
    # backpressure, keepalive kept) until acks free room. The receive maximum bounds the count,
    # this the bytes. The paho client caps its receive maximum to budget / packet limit instead.
    max_inflight_bytes: int = Field(32 * 1024 * 1024, ge=1024 * 1024)
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
    # Per-device rate (token buckets, gateway.ratelimit): a device may send
    # ``rate_limit_per_s`` messages a second on average, bursts of ``rate_limit_burst``.
    # Telemetry and state beyond it are dropped, counted (dead_letters_total{reason=
    # "rate_limited"}) and recorded as one dead letter per device per batch; valid events
    # (alarms) are always stored.
    rate_limit_per_s: float = Field(50.0, gt=0)
    rate_limit_burst: int = Field(500, ge=1)
    # ... and payload bytes a second (a few large messages are as costly as many small ones).
    # The bucket may go into debt: one message over the burst passes when it is not empty.
    rate_limit_bytes_per_s: int = Field(256 * 1024, ge=1024)
    rate_limit_burst_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_future_s: float = Field(300.0, ge=0)
    max_age_s: float = Field(7 * 86400.0, gt=0)
    dead_letter_payload_bytes: int = Field(2048, ge=0)
    registry_refresh_s: float = Field(5.0, gt=0)
    # Device events (button presses, SOS, fall flags, ...) are stored by their own writer the
    # moment they arrive, instead of waiting in a telemetry batch (see gateway.ingest).
    event_lane: bool = True
    # An alarm (press, SOS, fall flag) stamped more than max_future_s ahead, or more than
    # this far behind its receive time, comes from a wrong device clock: it is stored and
    # raised with the receive time, flagged, never refused (docs/device-protocol.md).
    alarm_max_lag_s: float = Field(900.0, gt=0)


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
    # Installers' access tokens; their sessions last installer_session_max_s (refresh).
    installer_token_ttl_s: int = Field(900, ge=60, le=86400)
    # -- hardening (issue 10 §3) --
    # Request bodies larger than this are refused with 413 before they are read (the CSV
    # import's own limit, commissioning.import_max_bytes, must fit under it).
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    # Sign-in throttling: failures per user name / per client address within the window.
    login_window_s: float = Field(300.0, gt=0)
    login_max_failures_per_user: int = Field(5, ge=1)
    login_max_failures_per_address: int = Field(20, ge=1)
    # Password hashes verified at once (argon2id: ~64 MiB and tens of ms each), and sign-ins
    # allowed to wait for one; beyond that a sign-in gets 429 at once.
    login_hash_concurrency: int = Field(2, ge=1)
    login_queue_max: int = Field(32, ge=1)
    # Sessions (refresh tokens, rotated on use): a session ends when unused for
    # refresh_idle_s, and at the latest session_max_s after sign-in (installers:
    # installer_session_max_s); then sign in again.
    refresh_idle_s: int = Field(2 * 3600, ge=60)
    session_max_s: int = Field(12 * 3600, ge=60)
    installer_session_max_s: int = Field(4 * 3600, ge=60)
    # An open live-feed stream re-checks its session this often (ends on revocation/expiry).
    stream_recheck_s: float = Field(30.0, gt=0, le=60)
    # HTTPS: certificate chain and private key (PEM). Without them the API refuses to listen
    # on a non-loopback address unless allow_insecure_http is true.
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    allow_insecure_http: bool = False
    # The staff console re-reads the open incidents this often whatever the live stream
    # delivers (GET /console/config): at most 10 s, so no missed event hides an alarm longer.
    console_reconcile_s: float = Field(10.0, ge=0.5, le=10.0)

    @model_validator(mode="after")
    def _check_tls(self) -> ApiSettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("api.tls_certfile and api.tls_keyfile must be set together")
        if (
            self.tls_certfile is None
            and not self.allow_insecure_http
            and not is_loopback(self.host)
        ):
            raise ValueError(
                f"api.host {self.host!r} is not a loopback address: set api.tls_certfile and "
                "api.tls_keyfile to serve HTTPS, or api.allow_insecure_http = true to accept "
                "plain HTTP on the network"
            )
        return self


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
    # The safe-home kit: door contacts, motion sensors, smoke/gas/water detectors, home hubs.
    heartbeat_kit_s: float = Field(300.0, gt=0)
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
    # Numeric RoutineParams fields set for every resident (analytics.routine), e.g. the demo's
    # short night-exit tolerance so each scripted scene shows within minutes (config/demo.toml).
    routine_overrides: dict[str, float] = Field(default_factory=dict)

    @field_validator("routine_overrides")
    @classmethod
    def _known_routine_fields(cls, value: dict[str, float]) -> dict[str, float]:
        from analytics.routine import RoutineParams  # noqa: PLC0415 (pure, only when set)

        known = {f.name for f in fields(RoutineParams) if f.type in ("float", "int")}
        unknown = sorted(k for k in value if k not in known or k in ("care_level", "utc_offset_s"))
        if unknown:
            raise ValueError(f"not numeric routine parameters: {', '.join(unknown)}")
        return value


class AlarmSettings(_Section):
    """Alarm durability (``gateway.escalation.recovery``): every stored alarm event (press,
    SOS, fall flag) has a pending marker until its incident exists; the recovery raises the
    incident for markers still pending this long (or records why not), at start-up for every
    marker of the previous run and then every ``recovery_interval_s``. Keep the grace above
    ``analysis.fall_confirm_window_s`` + ``analysis.check_interval_s`` so a fall flag's
    confirmation window runs out in the analysis first."""

    recovery_grace_s: float = Field(60.0, ge=0)
    recovery_interval_s: float = Field(5.0, gt=0)
    recovery_batch_size: int = Field(100, ge=1, le=10_000)


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


class BrokerSettings(_Section):
    """The broker's auth files the gateway manages when installers register devices.

    Device registration, rotation and decommissioning rewrite Mosquitto's password file and
    ACL from the registry and send the broker SIGHUP (its pid from ``pid_path``) before the
    API answers. Unset paths: the gateway does not manage the broker and those routes answer
    503. Not ``*_file``: ``SAFEHOME_*_FILE`` variables name secret files.
    ``public_host``/``public_port``/``public_tls`` are what DEVICES connect to (printed in
    the device configuration), not the gateway's own ``mqtt.host``.
    """

    passwd_path: Path | None = None
    acl_path: Path | None = None
    pid_path: Path | None = None
    public_host: str = Field("127.0.0.1", min_length=1, max_length=253)
    public_port: int = Field(8883, ge=1, le=65535)
    public_tls: bool = True
    # How long to wait for the reloaded broker to accept (or refuse) changed credentials.
    apply_timeout_s: float = Field(5.0, gt=0, le=60)
    # Cells sharing this broker (gateway.cells): one gateway account each, limited to the
    # cell's sites. Empty (the default): the one gateway account of today.
    cells: tuple[CellSettings, ...] = ()

    @field_validator("cells", mode="before")
    @classmethod
    def _parse_cells(cls, value: object) -> object:
        return parse_broker_cells(value)  # the environment: a JSON list

    @field_validator("cells")
    @classmethod
    def _check_cells(cls, cells: tuple[CellSettings, ...]) -> tuple[CellSettings, ...]:
        return check_broker_cells(cells)

    @property
    def managed(self) -> bool:
        return self.passwd_path is not None and self.acl_path is not None


class CommissioningSettings(_Section):
    """Installer acceptance tests (``gateway.acceptance``)."""

    acceptance_timeout_s: float = Field(300.0, ge=10, le=600)
    acceptance_max_timeout_s: float = Field(600.0, ge=10, le=600)
    # A device clock may run this far behind the gateway and its test events still count.
    clock_slack_s: float = Field(5.0, ge=0, le=300)
    import_max_bytes: int = Field(2_000_000, ge=1024)


class AuditSettings(_Section):
    """Anchors of the audit chain outside the database (``gateway.audit_anchor``).

    The gateway appends the chain head (seq, hash) with an HMAC under ``anchor_key`` to
    ``anchor_path`` every ``anchor_interval_s`` (when the head moved), and so does
    ``safehome audit verify``; verify checks the chain against every anchor. The key is a
    secret the database never sees (``SAFEHOME_AUDIT__ANCHOR_KEY[_FILE]``); without one no
    anchors are written and verify checks the chain only internally (and says so).
    """

    anchor_key: SecretStr | None = None
    anchor_path: Path | None = None  # default: <var_dir>/audit/anchors.jsonl
    anchor_interval_s: float = Field(60.0, gt=0)
    # A later entry may be this much older than the one before it (DB clock steps) before
    # verify calls it back-dated.
    clock_step_tolerance_s: float = Field(1.0, ge=0, le=3600)
    # A read of an incident's details is audited once per user and incident within this
    # window (a duty shift), not on every console refresh.
    read_window_s: float = Field(8 * 3600.0, ge=0, le=86400)


class MetricsSettings(_Section):
    """Prometheus metrics (``/metrics``): care-path figures read from the database."""

    # A scrape reads the database at most this often (a scrape storm cannot load it).
    carepath_cache_s: float = Field(10.0, ge=0, le=300)
    # An incident/attempt/page id still missing this long after a higher one is given up
    # (a rolled-back insert); transactions of the gateway are far shorter.
    carepath_gap_timeout_s: float = Field(60.0, gt=0, le=3600)
    # Subscribe to the broker's $SYS counters (dropped messages, clients) and export them.
    broker_sys: bool = True


class VisitsSettings(_Section):
    """Visiting care (探访关爱, gateway.visits): how often overdue visits are noticed and
    silent homes get a door-knock task; the plans and levels are in ``config_path``."""

    sweep_interval_s: float = Field(300.0, gt=0)
    config_path: Path | None = None  # None: the shipped config/visits.toml


class FailoverSettings(_Section):
    """Active/standby failover (gateway.lease): two gateways on one database and broker."""

    # Off: this gateway is always active (one process per site, the default).
    enabled: bool = False
    # The PostgreSQL advisory lock both processes contend for (one per gateway pair/cell).
    lock_key: int = Field(0x5AFE0023, ge=-(2**63), le=2**63 - 1)
    # The holder renews its heartbeat, and a standby tries to take the lease, this often.
    check_interval_s: float = Field(1.0, gt=0, le=60)
    # The holder fences itself (stops its MQTT session and exits) when its last successful
    # renewal was sent longer ago than this (a partition from the database, a frozen process).
    lease_ttl_s: float = Field(4.0, gt=0, le=600)
    # A standby ends the sessions of a holder whose heartbeat is older than this, which
    # releases the lock (must exceed lease_ttl_s: the holder has fenced itself by then).
    takeover_after_s: float = Field(8.0, gt=0, le=1200)

    @model_validator(mode="after")
    def _check_timing(self) -> FailoverSettings:
        if self.lease_ttl_s < 2 * self.check_interval_s:
            raise ValueError("failover.lease_ttl_s must be at least twice check_interval_s")
        if self.takeover_after_s < self.lease_ttl_s + 2 * self.check_interval_s:
            raise ValueError(
                "failover.takeover_after_s must exceed lease_ttl_s by two check_interval_s"
            )
        return self


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"
