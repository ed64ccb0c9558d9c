"""Device protocol v1: topics, payload schemas, decoder and encoders.

This module is the wire contract between devices and the gateway; ``docs/device-protocol.md``
describes the same contract for device vendors and installers. Keep the two in step.

The decoder sits on the gateway's ingest hot path (tens of thousands of messages a second), so
it parses with ``orjson``, validates by hand with exact type checks (``type(x) is int`` so that
JSON ``true`` is never taken for ``1``) and builds each decoded value in one constructor call.
Every rejection raises :class:`ProtocolError` with a reason from the closed set
:class:`RejectReason` and a short detail that never echoes the payload.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt
import orjson

from devices.errors import DevicesError

__all__ = [
    "ACCEL_FS",
    "COMMANDS",
    "DEFAULT_PREFIX",
    "GAS_LEVELS",
    "HUB_CHILD_KINDS",
    "KIT_KINDS",
    "PROTOCOL_VERSION",
    "AccelBatch",
    "Ack",
    "AckStatus",
    "Channel",
    "Command",
    "DeviceConfig",
    "DeviceKind",
    "Envelope",
    "Event",
    "Message",
    "ProtocolError",
    "Reading",
    "RejectReason",
    "RowKind",
    "State",
    "Topic",
    "ack_topic",
    "command_topic",
    "config_topic",
    "decode",
    "decode_ack",
    "decode_command",
    "decode_config",
    "device_topic_prefix",
    "downlink_filters",
    "encode",
    "encode_accel",
    "encode_ack",
    "encode_command",
    "encode_config",
    "encode_event",
    "encode_heartbeat",
    "encode_hr",
    "encode_occupancy",
    "encode_state",
    "encode_steps",
    "encode_vitals",
    "format_topic",
    "is_valid_id",
    "is_valid_prefix",
    "message_types",
    "parse_topic",
    "protocol_filter",
    "row_kind",
    "site_filter",
    "subscription_filter",
    "topic_prefix_of",
    "uplink_filters",
]

PROTOCOL_VERSION: Final = 1
DEFAULT_PREFIX: Final = "shg"
ACCEL_FS: Final = 50.0
"""The only accelerometer sampling rate protocol v1 accepts (Hz)."""

MAX_ACCEL_SAMPLES: Final = 250
MAX_ACCEL_G: Final = 16.0


# --------------------------------------------------------------------------------------------
# Enumerations and errors
# --------------------------------------------------------------------------------------------


class Channel(StrEnum):
    """Last topic segment. The first three flow device→gateway, the others gateway→device."""

    EVENT = "event"
    TELEMETRY = "telemetry"
    STATE = "state"
    ACK = "ack"
    CONFIG = "config"
    COMMAND = "command"  # gateway→device: a one-off command (a gas detector's valve shut-off)

    @property
    def uplink(self) -> bool:
        """True for the channels a device publishes on."""
        return self in _UPLINK


_UPLINK: Final = frozenset({Channel.EVENT, Channel.TELEMETRY, Channel.STATE})


class DeviceKind(StrEnum):
    BUTTON = "button"
    BED_SENSOR = "bed_sensor"
    WEARABLE = "wearable"
    # The safe-home kit (issue 12). Most kit sensors report through a HOME_HUB, which
    # publishes for each child sensor under the child's own id (see docs/device-protocol.md).
    HOME_HUB = "home_hub"
    DOOR_CONTACT = "door_contact"
    MOTION_SENSOR = "motion_sensor"
    SMOKE_DETECTOR = "smoke_detector"
    GAS_DETECTOR = "gas_detector"
    WATER_LEAK = "water_leak"


KIT_KINDS: Final = frozenset(
    {
        DeviceKind.HOME_HUB,
        DeviceKind.DOOR_CONTACT,
        DeviceKind.MOTION_SENSOR,
        DeviceKind.SMOKE_DETECTOR,
        DeviceKind.GAS_DETECTOR,
        DeviceKind.WATER_LEAK,
    }
)
"""Kinds of the safe-home kit; :mod:`gateway.kit` analyses their messages."""

HUB_CHILD_KINDS: Final = (KIT_KINDS - {DeviceKind.HOME_HUB}) | {DeviceKind.BUTTON}
"""Kinds that may report through a home hub (the kit's 433 MHz call button included)."""

GAS_LEVELS: Final = ("low", "high")
"""A gas detector's alarm levels (``low``: above the first threshold, e.g. 10 % LEL)."""


class RejectReason(StrEnum):
    """Why a message was refused. Closed set: dead letters, metrics and ``rejected`` acks use it."""

    OVERSIZED = "oversized"
    MALFORMED_JSON = "malformed_json"
    BAD_TOPIC = "bad_topic"
    SCHEMA = "schema"
    OUT_OF_RANGE = "out_of_range"
    IDENTITY_MISMATCH = "identity_mismatch"
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    UNKNOWN_DEVICE = "unknown_device"
    DECOMMISSIONED = "decommissioned"
    RATE_LIMITED = "rate_limited"


ALARM_EVENT_TYPES: Final = frozenset({"press", "long_press", "sos", "fall", "alarm", "leak"})
"""Event types that are alarms: each stored one becomes an incident (or a recorded reason
why not), and an implausible device time never refuses one (it takes the receive time).
``alarm`` is only valid for smoke and gas detectors, ``leak`` only for water leak sensors; a
detector's ``test`` press is not an alarm (recorded, never escalated)."""


class AckStatus(StrEnum):
    """Status of the gateway's application-level acknowledgement of an event."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class RowKind(StrEnum):
    """Which table a decoded message is stored in (``readings``, ``accel``, ...)."""

    READINGS = "readings"
    ACCEL = "accel"
    EVENTS = "events"
    STATE = "state"


class ProtocolError(DevicesError):
    """A message that breaks the protocol.

    ``reason`` is one of :class:`RejectReason`; ``detail`` is a short, log-safe explanation
    (field names and limits, never payload contents); ``msg_id`` is the message's ``id`` when
    it could be read before the fault was found (so a ``rejected`` ack can be sent), else None.
    """

    def __init__(self, reason: RejectReason, detail: str, msg_id: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.msg_id = msg_id


# --------------------------------------------------------------------------------------------
# Topics
# --------------------------------------------------------------------------------------------

_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MSG_ID_RE: Final = re.compile(r"[!-~]{1,64}")  # printable ASCII, no space
_CHANNELS: Final[Mapping[str, Channel]] = {c.value: c for c in Channel}


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed ``<prefix>/v1/<site>/<device>/<channel>`` topic."""

    prefix: str
    site: str
    device: str
    channel: Channel

    def __str__(self) -> str:
        return f"{self.prefix}/v1/{self.site}/{self.device}/{self.channel.value}"


def is_valid_id(value: str) -> bool:
    """True if ``value`` is a valid site or device id (``[A-Za-z0-9_-]{1,64}``)."""
    return _ID_RE.fullmatch(value) is not None


def is_valid_prefix(prefix: str) -> bool:
    """True if ``prefix`` can start v1 topics (no wildcards, no ``$``, no empty levels)."""
    try:
        _topic_re(prefix)
    except ProtocolError:
        return False
    return True


def _check_prefix(prefix: str) -> None:
    if (
        not prefix
        or prefix.startswith(("$", "/"))
        or prefix.endswith("/")
        or "//" in prefix
        or any(c in prefix for c in "+#\x00")
    ):
        raise ProtocolError(RejectReason.BAD_TOPIC, "invalid topic prefix")


@functools.lru_cache(maxsize=64)
def _topic_re(prefix: str) -> re.Pattern[str]:
    _check_prefix(prefix)
    return re.compile(
        re.escape(prefix)
        + r"/v1/([A-Za-z0-9_-]{1,64})/([A-Za-z0-9_-]{1,64})/"
        + r"(event|telemetry|state|ack|config|command)"
    )


@functools.lru_cache(maxsize=1 << 16)
def parse_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> Topic:
    """Parse a topic of protocol v1 under ``prefix``.

    Raises :class:`ProtocolError` (reason ``bad_topic``). Results are cached (topics repeat per
    device), so the cost on the hot path is a dictionary look-up.
    """
    match = _topic_re(prefix).fullmatch(topic)
    if match is None:
        raise ProtocolError(
            RejectReason.BAD_TOPIC, "topic does not match <prefix>/v1/<site>/<device>/<channel>"
        )
    site, device, channel = match.groups()
    return Topic(prefix, site, device, _CHANNELS[channel])


def format_topic(prefix: str, site: str, device: str, channel: Channel | str) -> str:
    """Build ``<prefix>/v1/<site>/<device>/<channel>``; raises ``ProtocolError(bad_topic)``."""
    _topic_re(prefix)  # validates (cached)
    if _ID_RE.fullmatch(site) is None or _ID_RE.fullmatch(device) is None:
        raise ProtocolError(
            RejectReason.BAD_TOPIC, "site and device ids must match [A-Za-z0-9_-]{1,64}"
        )
    ch = _CHANNELS.get(str(channel))
    if ch is None:
        raise ProtocolError(RejectReason.BAD_TOPIC, "unknown channel")
    return f"{prefix}/v1/{site}/{device}/{ch.value}"


def subscription_filter(prefix: str = DEFAULT_PREFIX) -> str:
    """``<prefix>/v1/+/+/+``: every v1 topic of every site.

    Note that it also matches the gateway's own ``ack`` and ``config`` publications; subscribe
    with MQTT 5 ``no_local`` or use :func:`uplink_filters` instead.
    """
    _topic_re(prefix)
    return f"{prefix}/v1/+/+/+"


def uplink_filters(prefix: str = DEFAULT_PREFIX, site: str = "+") -> tuple[str, str, str]:
    """The device→gateway filters (``event``, ``telemetry``, ``state``) of one or all sites."""
    _topic_re(prefix)
    if site != "+" and _ID_RE.fullmatch(site) is None:
        raise ProtocolError(RejectReason.BAD_TOPIC, "invalid site id")
    return (
        f"{prefix}/v1/{site}/+/event",
        f"{prefix}/v1/{site}/+/telemetry",
        f"{prefix}/v1/{site}/+/state",
    )


def downlink_filters(prefix: str = DEFAULT_PREFIX, site: str = "+") -> tuple[str, ...]:
    """The gateway→device filters (``ack``, ``config``, ``command``) of every device of one or
    all sites: what the gateway's account (a cell's: of its sites) may write (broker ACL)."""
    _topic_re(prefix)
    if site != "+" and _ID_RE.fullmatch(site) is None:
        raise ProtocolError(RejectReason.BAD_TOPIC, "invalid site id")
    return tuple(
        f"{prefix}/v1/{site}/+/{c.value}" for c in (Channel.ACK, Channel.CONFIG, Channel.COMMAND)
    )


def site_filter(prefix: str, site: str) -> str:
    """``<prefix>/v1/<site>/#``: every topic of one site (a cell's gateway account may read
    these, broker ACL patterns)."""
    _topic_re(prefix)
    if _ID_RE.fullmatch(site) is None:
        raise ProtocolError(RejectReason.BAD_TOPIC, "invalid site id")
    return f"{prefix}/v1/{site}/#"


def protocol_filter(prefix: str = DEFAULT_PREFIX) -> str:
    """``<prefix>/v1/#``: every topic of protocol v1, any depth (broker ACL patterns)."""
    _topic_re(prefix)
    return f"{prefix}/v1/#"


def device_topic_prefix(prefix: str, site: str, device: str) -> str:
    """``<prefix>/v1/<site>/<device>``: the topics of one device, without the channel (what
    an installer loads onto the device)."""
    return format_topic(prefix, site, device, Channel.EVENT).rsplit("/", 1)[0]


def topic_prefix_of(topic: str) -> str:
    """The ``<prefix>`` of a topic that looks like ``<prefix>/v1/…`` ('' when it does not)."""
    at = topic.find("/v1/")
    return topic[:at] if at > 0 else ""


def ack_topic(prefix: str, site: str, device: str) -> str:
    """Where the gateway publishes application-level acks for ``device``."""
    return format_topic(prefix, site, device, Channel.ACK)


def config_topic(prefix: str, site: str, device: str) -> str:
    """Where the gateway publishes ``device``'s retained configuration."""
    return format_topic(prefix, site, device, Channel.CONFIG)


def command_topic(prefix: str, site: str, device: str) -> str:
    """Where the gateway publishes one-off commands for ``device`` (not retained)."""
    return format_topic(prefix, site, device, Channel.COMMAND)


# --------------------------------------------------------------------------------------------
# Decoded values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """Fields every message carries. ``ts`` is the device timestamp in epoch seconds."""

    site: str
    device: str
    channel: Channel
    msg_id: str
    seq: int
    ts: float
    type: str


@dataclass(frozen=True, slots=True)
class Reading:
    """A time-series sample (table ``readings``): ``vitals``, ``hr``, ``steps``, ``heartbeat``,
    ``occupancy`` (a motion sensor's trigger count, kept in ``steps``)."""

    envelope: Envelope
    presence: bool | None = None
    heart_rate: float | None = None
    breathing_rate: float | None = None
    movement: float | None = None
    steps: int | None = None
    battery: int | None = None
    worn: bool | None = None
    interval_s: int | None = None  # ``occupancy``: the counting interval (``steps`` = count)


@dataclass(frozen=True, slots=True, eq=False)
class AccelBatch:
    """One accelerometer batch (table ``accel``): ``samples`` has shape (n, 3), in g.

    Compared by identity (numpy arrays have no boolean equality).
    """

    envelope: Envelope
    fs: float
    samples: npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Event:
    """A discrete device event (table ``device_events``); ``data`` holds the non-envelope fields."""

    envelope: Envelope
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class State:
    """Connection state (table ``device_state``): ``online``/``offline``, incl. the last will."""

    envelope: Envelope
    online: bool
    battery: int | None = None
    firmware: str | None = None
    rssi: int | None = None


Message: TypeAlias = Reading | AccelBatch | Event | State


def row_kind(channel: Channel, type_: str) -> RowKind:
    """The table a message of ``channel``/``type_`` is stored in."""
    if channel is Channel.EVENT:
        return RowKind.EVENTS
    if channel is Channel.STATE:
        return RowKind.STATE
    if channel is Channel.TELEMETRY:
        return RowKind.ACCEL if type_ == "accel" else RowKind.READINGS
    raise ValueError(f"channel {channel} carries no stored rows")


# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------

_ENVELOPE_KEYS: Final = frozenset({"v", "dev", "id", "seq", "ts", "type"})
_NUMBER_TYPES: Final = frozenset({int, float})

_Decoder: TypeAlias = Callable[[dict[str, Any], Envelope], Message]


def _schema(detail: str, msg_id: str | None) -> ProtocolError:
    return ProtocolError(RejectReason.SCHEMA, detail, msg_id)


def _range(detail: str, msg_id: str | None) -> ProtocolError:
    return ProtocolError(RejectReason.OUT_OF_RANGE, detail, msg_id)


def _number(obj: dict[str, Any], key: str, lo: float, hi: float, mid: str) -> float:
    value: Any = obj.get(key)
    t = type(value)
    if t is not float and t is not int:
        raise _schema(f"{key} must be a number", mid)
    if not lo <= value <= hi:
        raise _range(f"{key} must be within {lo:g}..{hi:g}", mid)
    return float(value)


def _opt_number(obj: dict[str, Any], key: str, lo: float, hi: float, mid: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    t = type(value)
    if t is not float and t is not int:
        raise _schema(f"{key} must be a number or null", mid)
    if not lo <= value <= hi:
        raise _range(f"{key} must be within {lo:g}..{hi:g}", mid)
    return float(value)


def _int(obj: dict[str, Any], key: str, lo: int, hi: int, mid: str) -> int:
    value = obj.get(key)
    if type(value) is not int:
        raise _schema(f"{key} must be an integer", mid)
    if not lo <= value <= hi:
        raise _range(f"{key} must be within {lo}..{hi}", mid)
    return value


def _opt_int(obj: dict[str, Any], key: str, lo: int, hi: int, mid: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not int:
        raise _schema(f"{key} must be an integer or null", mid)
    if not lo <= value <= hi:
        raise _range(f"{key} must be within {lo}..{hi}", mid)
    return value


def _bool(obj: dict[str, Any], key: str, mid: str) -> bool:
    value = obj.get(key)
    if type(value) is not bool:
        raise _schema(f"{key} must be a boolean", mid)
    return value


def _event_data(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in _ENVELOPE_KEYS}


def _d_vitals(obj: dict[str, Any], env: Envelope) -> Message:
    mid = env.msg_id
    return Reading(
        env,
        _bool(obj, "presence", mid),
        _opt_number(obj, "hr", 20.0, 250.0, mid),
        _opt_number(obj, "rr", 0.0, 80.0, mid),
        _number(obj, "movement", 0.0, 1.0, mid),
    )


def _d_hr(obj: dict[str, Any], env: Envelope) -> Message:
    return Reading(env, heart_rate=_number(obj, "hr", 20.0, 250.0, env.msg_id))


def _d_steps(obj: dict[str, Any], env: Envelope) -> Message:
    return Reading(env, steps=_int(obj, "steps", 0, 10000, env.msg_id))


def _d_heartbeat_battery(obj: dict[str, Any], env: Envelope) -> Message:
    return Reading(env, battery=_int(obj, "battery", 0, 100, env.msg_id))


def _d_heartbeat_opt_battery(obj: dict[str, Any], env: Envelope) -> Message:
    return Reading(env, battery=_opt_int(obj, "battery", 0, 100, env.msg_id))


def _d_heartbeat_wearable(obj: dict[str, Any], env: Envelope) -> Message:
    mid = env.msg_id
    return Reading(env, battery=_int(obj, "battery", 0, 100, mid), worn=_bool(obj, "worn", mid))


def _d_accel(obj: dict[str, Any], env: Envelope) -> Message:
    mid = env.msg_id
    fs = obj.get("fs")
    if type(fs) is not int and type(fs) is not float:
        raise _schema("fs must be a number", mid)
    if fs != ACCEL_FS:
        raise _range(f"fs must be {ACCEL_FS:g}", mid)
    x = obj.get("x")
    y = obj.get("y")
    z = obj.get("z")
    if type(x) is not list or type(y) is not list or type(z) is not list:
        raise _schema("x, y and z must be arrays", mid)
    n = len(x)
    if len(y) != n or len(z) != n:
        raise _schema("x, y and z must have equal lengths", mid)
    if not 1 <= n <= MAX_ACCEL_SAMPLES:
        raise _range(f"x, y and z must hold 1..{MAX_ACCEL_SAMPLES} samples", mid)
    kinds = set(map(type, x))
    kinds.update(map(type, y))
    kinds.update(map(type, z))
    if not kinds <= _NUMBER_TYPES:
        raise _schema("x, y and z must hold numbers only", mid)
    wide = np.empty((n, 3), dtype=np.float64)  # float64 first: no overflow on huge values
    wide[:, 0] = x
    wide[:, 1] = y
    wide[:, 2] = z
    if not np.abs(wide).max() <= MAX_ACCEL_G:
        raise _range(f"accelerations must be within ±{MAX_ACCEL_G:g} g", mid)
    return AccelBatch(env, float(fs), wide.astype(np.float32))


def _d_event(obj: dict[str, Any], env: Envelope) -> Message:
    return Event(env, _event_data(obj))


def _d_low_battery(obj: dict[str, Any], env: Envelope) -> Message:
    _int(obj, "battery", 0, 100, env.msg_id)
    return Event(env, _event_data(obj))


def _d_fall(obj: dict[str, Any], env: Envelope) -> Message:
    _opt_number(obj, "peak_g", 0.0, 32.0, env.msg_id)
    return Event(env, _event_data(obj))


def _state_fields(obj: dict[str, Any], env: Envelope, online: bool) -> State:
    mid = env.msg_id
    fw = obj.get("fw")
    if fw is not None and (type(fw) is not str or not 1 <= len(fw) <= 64):
        raise _schema("fw must be a string of 1..64 characters", mid)
    return State(
        env,
        online,
        _opt_int(obj, "battery", 0, 100, mid),
        fw,
        _opt_int(obj, "rssi", -150, 0, mid),
    )


def _d_online(obj: dict[str, Any], env: Envelope) -> Message:
    return _state_fields(obj, env, True)


def _d_offline(obj: dict[str, Any], env: Envelope) -> Message:
    return _state_fields(obj, env, False)


_STATE_TYPES: Final[dict[str, _Decoder]] = {"online": _d_online, "offline": _d_offline}


def _d_motion(obj: dict[str, Any], env: Envelope) -> Message:
    _opt_int(obj, "holdoff_s", 0, 3600, env.msg_id)
    return Event(env, _event_data(obj))


def _d_occupancy(obj: dict[str, Any], env: Envelope) -> Message:
    mid = env.msg_id
    interval = _int(obj, "interval_s", 10, 86400, mid)
    return Reading(env, steps=_int(obj, "count", 0, 100000, mid), interval_s=interval)


def _d_gas_alarm(obj: dict[str, Any], env: Envelope) -> Message:
    mid = env.msg_id
    level = obj.get("level")
    if type(level) is not str:
        raise _schema("level must be a string", mid)
    if level not in GAS_LEVELS:
        raise _range(f"level must be one of {', '.join(GAS_LEVELS)}", mid)
    _opt_number(obj, "lel_pct", 0.0, 100.0, mid)
    return Event(env, _event_data(obj))


def _d_valve(obj: dict[str, Any], env: Envelope) -> Message:
    mid = env.msg_id
    cause = obj.get("cause")
    if cause is not None and cause not in ("local", "command"):
        raise _range("cause must be local or command", mid)
    return Event(env, _event_data(obj))


_KIT_COMMON_EVENTS: Final[dict[str, _Decoder]] = {
    "tamper": _d_event,  # the case was opened or the sensor removed from its mount
    "tamper_clear": _d_event,
    "low_battery": _d_low_battery,
}
_KIT_TELEMETRY: Final[dict[str, _Decoder]] = {"heartbeat": _d_heartbeat_opt_battery}

_DECODERS: Final[dict[tuple[DeviceKind, Channel], dict[str, _Decoder]]] = {
    (DeviceKind.BUTTON, Channel.EVENT): {
        "press": _d_event,
        "long_press": _d_event,
        "cancel": _d_event,
        "low_battery": _d_low_battery,
    },
    (DeviceKind.BUTTON, Channel.TELEMETRY): {"heartbeat": _d_heartbeat_battery},
    (DeviceKind.BUTTON, Channel.STATE): _STATE_TYPES,
    (DeviceKind.BED_SENSOR, Channel.EVENT): {"bed_exit": _d_event, "bed_entry": _d_event},
    (DeviceKind.BED_SENSOR, Channel.TELEMETRY): {
        "vitals": _d_vitals,
        "heartbeat": _d_heartbeat_opt_battery,
    },
    (DeviceKind.BED_SENSOR, Channel.STATE): _STATE_TYPES,
    (DeviceKind.WEARABLE, Channel.EVENT): {
        "sos": _d_event,
        "fall": _d_fall,
        "worn": _d_event,
        "not_worn": _d_event,
        "cancel": _d_event,
        "low_battery": _d_low_battery,
    },
    (DeviceKind.WEARABLE, Channel.TELEMETRY): {
        "accel": _d_accel,
        "hr": _d_hr,
        "steps": _d_steps,
        "heartbeat": _d_heartbeat_wearable,
    },
    (DeviceKind.WEARABLE, Channel.STATE): _STATE_TYPES,
    # -- the safe-home kit ----------------------------------------------------------------
    (DeviceKind.HOME_HUB, Channel.EVENT): _KIT_COMMON_EVENTS,
    (DeviceKind.HOME_HUB, Channel.TELEMETRY): _KIT_TELEMETRY,
    (DeviceKind.HOME_HUB, Channel.STATE): _STATE_TYPES,
    (DeviceKind.DOOR_CONTACT, Channel.EVENT): {
        "open": _d_event,
        "close": _d_event,
        **_KIT_COMMON_EVENTS,
    },
    (DeviceKind.DOOR_CONTACT, Channel.TELEMETRY): _KIT_TELEMETRY,
    (DeviceKind.DOOR_CONTACT, Channel.STATE): _STATE_TYPES,
    (DeviceKind.MOTION_SENSOR, Channel.EVENT): {"motion": _d_motion, **_KIT_COMMON_EVENTS},
    (DeviceKind.MOTION_SENSOR, Channel.TELEMETRY): {
        "occupancy": _d_occupancy,
        "heartbeat": _d_heartbeat_opt_battery,
    },
    (DeviceKind.MOTION_SENSOR, Channel.STATE): _STATE_TYPES,
    (DeviceKind.SMOKE_DETECTOR, Channel.EVENT): {
        "alarm": _d_event,
        "test": _d_event,
        "clear": _d_event,
        **_KIT_COMMON_EVENTS,
    },
    (DeviceKind.SMOKE_DETECTOR, Channel.TELEMETRY): _KIT_TELEMETRY,
    (DeviceKind.SMOKE_DETECTOR, Channel.STATE): _STATE_TYPES,
    (DeviceKind.GAS_DETECTOR, Channel.EVENT): {
        "alarm": _d_gas_alarm,
        "test": _d_event,
        "clear": _d_event,
        "valve_shut": _d_valve,
        **_KIT_COMMON_EVENTS,
    },
    (DeviceKind.GAS_DETECTOR, Channel.TELEMETRY): _KIT_TELEMETRY,
    (DeviceKind.GAS_DETECTOR, Channel.STATE): _STATE_TYPES,
    (DeviceKind.WATER_LEAK, Channel.EVENT): {
        "leak": _d_event,
        "dry": _d_event,
        **_KIT_COMMON_EVENTS,
    },
    (DeviceKind.WATER_LEAK, Channel.TELEMETRY): _KIT_TELEMETRY,
    (DeviceKind.WATER_LEAK, Channel.STATE): _STATE_TYPES,
}


def message_types(kind: DeviceKind, channel: Channel) -> frozenset[str]:
    """The message ``type`` values protocol v1 accepts for ``kind`` on ``channel``."""
    return frozenset(_DECODERS.get((kind, channel), ()))


def decode(
    topic: Topic,
    payload: bytes,
    kind: DeviceKind,
    *,
    now: float,
    max_payload_bytes: int = 65536,
    max_future_s: float = 300.0,
    max_age_s: float = 7 * 86400.0,
) -> Message:
    """Validate and decode one uplink message published on ``topic`` by a device of ``kind``.

    ``now`` is the receive time (epoch seconds). The device timestamp must be at most
    ``max_future_s`` ahead of ``now`` and, except on the ``state`` channel (retained messages
    and the last will are delivered long after they were written), at most ``max_age_s`` old.
    Raises :class:`ProtocolError`.
    """
    if len(payload) > max_payload_bytes:
        raise ProtocolError(RejectReason.OVERSIZED, f"payload exceeds {max_payload_bytes} bytes")
    channel = topic.channel
    types = _DECODERS.get((kind, channel))
    if types is None:
        raise ProtocolError(RejectReason.BAD_TOPIC, f"devices do not publish on {channel.value}")
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ProtocolError(
            RejectReason.MALFORMED_JSON, "payload is not valid UTF-8 JSON"
        ) from None
    if type(obj) is not dict:
        raise ProtocolError(RejectReason.SCHEMA, "payload must be a JSON object")

    msg_id = obj.get("id")
    if type(msg_id) is not str or _MSG_ID_RE.fullmatch(msg_id) is None:
        raise ProtocolError(RejectReason.SCHEMA, "id must be 1..64 printable ASCII characters")
    v = obj.get("v")
    if type(v) is not int or v != PROTOCOL_VERSION:
        raise ProtocolError(RejectReason.SCHEMA, "v must be 1", msg_id)
    dev = obj.get("dev")
    if type(dev) is not str:
        raise ProtocolError(RejectReason.SCHEMA, "dev must be a string", msg_id)
    if dev != topic.device:
        raise ProtocolError(
            RejectReason.IDENTITY_MISMATCH, "dev differs from the topic's device", msg_id
        )
    seq = obj.get("seq")
    if type(seq) is not int:
        raise ProtocolError(RejectReason.SCHEMA, "seq must be an integer", msg_id)
    if seq < 0:
        raise ProtocolError(RejectReason.OUT_OF_RANGE, "seq must be >= 0", msg_id)
    ts_ms = obj.get("ts")
    if type(ts_ms) is not int:
        raise ProtocolError(RejectReason.SCHEMA, "ts must be integer epoch milliseconds", msg_id)
    ts = ts_ms / 1000.0
    if ts > now + max_future_s:
        raise ProtocolError(
            RejectReason.TIMESTAMP_OUT_OF_RANGE, f"ts is more than {max_future_s:g} s ahead", msg_id
        )
    if ts < now - max_age_s and channel is not Channel.STATE:
        raise ProtocolError(
            RejectReason.TIMESTAMP_OUT_OF_RANGE, f"ts is more than {max_age_s:g} s old", msg_id
        )
    mtype = obj.get("type")
    if type(mtype) is not str:
        raise ProtocolError(RejectReason.SCHEMA, "type must be a string", msg_id)
    decoder = types.get(mtype)
    if decoder is None:
        raise ProtocolError(
            RejectReason.SCHEMA, f"unknown type for a {kind.value} on {channel.value}", msg_id
        )
    return decoder(obj, Envelope(topic.site, topic.device, channel, msg_id, seq, ts, mtype))


# --------------------------------------------------------------------------------------------
# Encoders (devices, simulator, tests)
# --------------------------------------------------------------------------------------------

_dumps = orjson.dumps
_NUMPY_OPT: Final = orjson.OPT_SERIALIZE_NUMPY


def _envelope(dev: str, msg_id: str, seq: int, ts_ms: int, type_: str) -> dict[str, Any]:
    return {"v": 1, "dev": dev, "id": msg_id, "seq": seq, "ts": ts_ms, "type": type_}


def _optional(obj: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """``obj`` with those of ``fields`` that are not None (optional fields are omitted)."""
    obj.update((key, value) for key, value in fields.items() if value is not None)
    return obj


def encode_vitals(
    dev: str,
    msg_id: str,
    seq: int,
    ts_ms: int,
    *,
    presence: bool,
    hr: float | None,
    rr: float | None,
    movement: float,
) -> bytes:
    """A bed sensor's 1 Hz ``vitals`` telemetry (``hr``/``rr`` null when not measured)."""
    obj = _envelope(dev, msg_id, seq, ts_ms, "vitals")
    obj.update(presence=presence, hr=hr, rr=rr, movement=movement)
    return _dumps(obj)


def encode_accel(
    dev: str,
    msg_id: str,
    seq: int,
    ts_ms: int,
    *,
    samples: npt.NDArray[np.floating[Any]],
    fs: float = ACCEL_FS,
) -> bytes:
    """A wearable's ``accel`` batch; ``samples`` has shape (n, 3) in g, rounded to milli-g.

    Cheapest when ``samples`` is the transpose of a C-contiguous (3, n) array."""
    if samples.ndim != 2 or samples.shape[1] != 3:
        raise ValueError("samples must have shape (n, 3)")
    axes = np.round(samples.T, 3)  # (3, n); C-contiguous rows when samples is an axes-first .T
    if not axes.flags.c_contiguous:
        axes = np.ascontiguousarray(axes)
    obj = _envelope(dev, msg_id, seq, ts_ms, "accel")
    obj.update(fs=int(fs) if float(fs).is_integer() else fs, x=axes[0], y=axes[1], z=axes[2])
    return _dumps(obj, option=_NUMPY_OPT)


def encode_hr(dev: str, msg_id: str, seq: int, ts_ms: int, *, hr: float) -> bytes:
    """A wearable's ``hr`` telemetry (bpm)."""
    return _dumps(_optional(_envelope(dev, msg_id, seq, ts_ms, "hr"), hr=hr))


def encode_steps(dev: str, msg_id: str, seq: int, ts_ms: int, *, steps: int) -> bytes:
    """A wearable's ``steps`` telemetry: steps since its previous ``steps`` message."""
    return _dumps(_optional(_envelope(dev, msg_id, seq, ts_ms, "steps"), steps=steps))


def encode_heartbeat(
    dev: str,
    msg_id: str,
    seq: int,
    ts_ms: int,
    *,
    battery: int | None = None,
    worn: bool | None = None,
) -> bytes:
    """A ``heartbeat`` telemetry; fields left None are omitted."""
    obj = _envelope(dev, msg_id, seq, ts_ms, "heartbeat")
    return _dumps(_optional(obj, battery=battery, worn=worn))


def encode_occupancy(
    dev: str, msg_id: str, seq: int, ts_ms: int, *, count: int, interval_s: int
) -> bytes:
    """A motion sensor's ``occupancy`` telemetry: motion triggers counted over ``interval_s``
    seconds ending at ``ts`` (stored in the ``steps`` column of ``readings``)."""
    obj = _envelope(dev, msg_id, seq, ts_ms, "occupancy")
    obj.update(count=count, interval_s=interval_s)
    return _dumps(obj)


def encode_event(
    dev: str,
    msg_id: str,
    seq: int,
    ts_ms: int,
    *,
    event: str,
    data: Mapping[str, Any] | None = None,
) -> bytes:
    """An ``event`` payload of type ``event`` with extra fields ``data`` (e.g. ``battery``)."""
    obj = _envelope(dev, msg_id, seq, ts_ms, event)
    if data:
        for key, value in data.items():
            if key in _ENVELOPE_KEYS:
                raise ValueError(f"event data may not contain envelope field {key!r}")
            obj[key] = value
    return _dumps(obj)


def encode_state(
    dev: str,
    msg_id: str,
    seq: int,
    ts_ms: int,
    *,
    online: bool,
    battery: int | None = None,
    fw: str | None = None,
    rssi: int | None = None,
) -> bytes:
    """A ``state`` payload (``online``/``offline``); the last will is an ``offline`` one."""
    obj = _envelope(dev, msg_id, seq, ts_ms, "online" if online else "offline")
    return _dumps(_optional(obj, battery=battery, fw=fw, rssi=rssi))


def _ts_ms(ts: float) -> int:
    return round(ts * 1000.0)


def encode(message: Message) -> bytes:
    """Encode a decoded message back into its payload (inverse of :func:`decode`)."""
    env = message.envelope
    head = (env.device, env.msg_id, env.seq, _ts_ms(env.ts))
    if isinstance(message, AccelBatch):
        return encode_accel(*head, samples=message.samples, fs=message.fs)
    if isinstance(message, Event):
        return encode_event(*head, event=env.type, data=message.data)
    if isinstance(message, State):
        return encode_state(
            *head,
            online=message.online,
            battery=message.battery,
            fw=message.firmware,
            rssi=message.rssi,
        )
    if env.type == "vitals":
        if message.presence is None or message.movement is None:
            raise ValueError("vitals need presence and movement")
        return encode_vitals(
            *head,
            presence=message.presence,
            hr=message.heart_rate,
            rr=message.breathing_rate,
            movement=message.movement,
        )
    if env.type == "hr":
        if message.heart_rate is None:
            raise ValueError("hr needs heart_rate")
        return encode_hr(*head, hr=message.heart_rate)
    if env.type == "steps":
        if message.steps is None:
            raise ValueError("steps needs steps")
        return encode_steps(*head, steps=message.steps)
    if env.type == "heartbeat":
        return encode_heartbeat(*head, battery=message.battery, worn=message.worn)
    if env.type == "occupancy":
        if message.steps is None or message.interval_s is None:
            raise ValueError("occupancy needs a count and an interval")
        return encode_occupancy(*head, count=message.steps, interval_s=message.interval_s)
    raise ValueError(f"no encoder for reading type {env.type!r}")


# --------------------------------------------------------------------------------------------
# Gateway → device: application-level ack and configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    """The gateway's answer to one event: ``stored``, ``duplicate`` or ``rejected`` + reason."""

    msg_id: str
    status: AckStatus
    reason: str | None = None


def encode_ack(msg_id: str, status: AckStatus | str, reason: str | None = None) -> bytes:
    """Payload of an ack. ``reason`` (a :class:`RejectReason` value) is required for ``rejected``
    and must be None otherwise."""
    st = AckStatus(status)
    if (st is AckStatus.REJECTED) != (reason is not None):
        raise ValueError("reason is required for rejected acks and only for them")
    return _dumps({"v": 1, "id": msg_id, "status": st.value, "reason": reason})


def decode_ack(payload: bytes) -> Ack:
    """Parse an ack payload; raises :class:`ProtocolError`."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ProtocolError(RejectReason.MALFORMED_JSON, "ack is not valid JSON") from None
    if type(obj) is not dict or obj.get("v") != 1 or type(obj.get("v")) is not int:
        raise ProtocolError(RejectReason.SCHEMA, "ack must be an object with v = 1")
    msg_id = obj.get("id")
    if type(msg_id) is not str or _MSG_ID_RE.fullmatch(msg_id) is None:
        raise ProtocolError(RejectReason.SCHEMA, "ack id must be 1..64 printable ASCII characters")
    try:
        status = AckStatus(str(obj.get("status")))
    except ValueError:
        raise ProtocolError(RejectReason.SCHEMA, "unknown ack status", msg_id) from None
    reason = obj.get("reason")
    if reason is not None and type(reason) is not str:
        raise ProtocolError(RejectReason.SCHEMA, "ack reason must be a string or null", msg_id)
    return Ack(msg_id, status, reason)


MIN_HEARTBEAT_S: Final = 10
MAX_HEARTBEAT_S: Final = 86400


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """Receiver-set device configuration, published retained on the ``config`` channel."""

    heartbeat_s: int = 300


def encode_config(config: DeviceConfig) -> bytes:
    if not MIN_HEARTBEAT_S <= config.heartbeat_s <= MAX_HEARTBEAT_S:
        raise ValueError(f"heartbeat_s must be within {MIN_HEARTBEAT_S}..{MAX_HEARTBEAT_S}")
    return _dumps({"v": 1, "heartbeat_s": config.heartbeat_s})


def decode_config(payload: bytes) -> DeviceConfig:
    """Parse a ``config`` payload; raises :class:`ProtocolError`."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ProtocolError(RejectReason.MALFORMED_JSON, "config is not valid JSON") from None
    if type(obj) is not dict or obj.get("v") != 1 or type(obj.get("v")) is not int:
        raise ProtocolError(RejectReason.SCHEMA, "config must be an object with v = 1")
    hb = obj.get("heartbeat_s")
    if type(hb) is not int:
        raise ProtocolError(RejectReason.SCHEMA, "heartbeat_s must be an integer")
    if not MIN_HEARTBEAT_S <= hb <= MAX_HEARTBEAT_S:
        raise ProtocolError(
            RejectReason.OUT_OF_RANGE,
            f"heartbeat_s must be within {MIN_HEARTBEAT_S}..{MAX_HEARTBEAT_S}",
        )
    return DeviceConfig(hb)


# --------------------------------------------------------------------------------------------
# Gateway → device: commands (not retained; a hub forwards its children's)
# --------------------------------------------------------------------------------------------

COMMANDS: Final[Mapping[DeviceKind, frozenset[str]]] = {
    DeviceKind.GAS_DETECTOR: frozenset({"valve_shut"}),
}
"""The commands each kind accepts (a gas detector with a valve actuator: shut the valve)."""


@dataclass(frozen=True, slots=True)
class Command:
    """A one-off command: ``id`` is echoed by the device's event that reports its effect."""

    msg_id: str
    command: str


def encode_command(kind: DeviceKind, msg_id: str, command: str) -> bytes:
    """Payload of a command for a device of ``kind``; ``ValueError`` if it has no such command."""
    if command not in COMMANDS.get(kind, frozenset()):
        raise ValueError(f"a {kind.value} has no command {command!r}")
    if _MSG_ID_RE.fullmatch(msg_id) is None:
        raise ValueError("msg_id must be 1..64 printable ASCII characters")
    return _dumps({"v": 1, "id": msg_id, "cmd": command})


def decode_command(payload: bytes, kind: DeviceKind) -> Command:
    """Parse a command payload (device side); raises :class:`ProtocolError`."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ProtocolError(RejectReason.MALFORMED_JSON, "command is not valid JSON") from None
    if type(obj) is not dict or obj.get("v") != 1 or type(obj.get("v")) is not int:
        raise ProtocolError(RejectReason.SCHEMA, "command must be an object with v = 1")
    msg_id = obj.get("id")
    if type(msg_id) is not str or _MSG_ID_RE.fullmatch(msg_id) is None:
        raise ProtocolError(RejectReason.SCHEMA, "command id must be 1..64 printable characters")
    cmd = obj.get("cmd")
    if type(cmd) is not str or cmd not in COMMANDS.get(kind, frozenset()):
        raise ProtocolError(RejectReason.SCHEMA, f"unknown command for a {kind.value}", msg_id)
    return Command(msg_id, cmd)
