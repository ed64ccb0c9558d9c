"""The simulator behind ``safehome simulate``: a site's devices as virtual devices over MQTT.

Every device of the site manifest connects with its own credentials (paced ramp-up), publishes
its ``online`` state with a retained ``offline`` last will, then streams like the real thing
(see :mod:`devices.virtual`), while a :class:`~devices.scenario.Scenario` scripts incidents.
Events are published at QoS 1 and retried with the same id and seq, with exponential backoff,
until the gateway's application-level ack arrives (``rejected`` is final), exactly as
``docs/device-protocol.md`` requires.

One asyncio loop drives all devices: a scheduler wakes 20 times per stream period and advances
one slice of the devices each time, so the load is spread evenly over the second.

Accounting (:class:`SimulationReport`) counts, per device and per kind of stored row, what was
handed to the broker and what the broker acknowledged (PUBACK), so tests can compare the rows
the gateway stored with what was sent. Events count once per distinct event (retries are
counted apart); the last wills the broker publishes for scripted connection cuts are counted
in ``wills``; publications whose connection ended before their PUBACK are ``unconfirmed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from io import BufferedWriter
from pathlib import Path
from typing import Any, Final

import orjson

from devices.manifest import ManifestDevice, SiteManifest
from devices.protocol import (
    AckStatus,
    Channel,
    DeviceKind,
    ProtocolError,
    RowKind,
    decode_ack,
    decode_config,
    format_topic,
)
from devices.publishers import make_publisher
from devices.scenario import IncidentKind, Scenario, ScheduledIncident, SilenceMode, bind_scenario
from devices.signals import DailyRoutine, ResidentModel
from devices.transport import (
    Link,
    LinkSpec,
    MqttVersion,
    Publisher,
    TransportKind,
)
from devices.virtual import (
    BedSensorDevice,
    ButtonDevice,
    KitSensorDevice,
    Outgoing,
    VirtualDevice,
    WearableDevice,
    make_virtual_device,
)

__all__ = [
    "DeviceReport",
    "EventOutcome",
    "IncidentRecord",
    "ShutdownMode",
    "SimulationConfig",
    "SimulationReport",
    "run_simulation",
]

log = logging.getLogger(__name__)

_ROWS: Final = (RowKind.READINGS, RowKind.ACCEL, RowKind.EVENTS, RowKind.STATE)
_ROW_INDEX: Final = {row: i for i, row in enumerate(_ROWS)}
_EVENTS: Final = _ROW_INDEX[RowKind.EVENTS]
_STATE: Final = _ROW_INDEX[RowKind.STATE]
_TICKS_PER_PERIOD: Final = 20
_PROGRESS_EVERY_S: Final = 30.0


class ShutdownMode(StrEnum):
    """How devices leave at the end of a run."""

    OFFLINE = "offline"  # publish a retained ``offline`` state, then DISCONNECT
    DISCONNECT = "disconnect"  # DISCONNECT only (no message; the will is discarded)


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """What to simulate and how.

    ``duration_s`` counts from the end of the connection ramp (None: the scenario's duration,
    else until ``stop`` is set). ``clock`` gives device timestamps (epoch seconds): inject a
    shifted clock to simulate another time of day; the run itself is always real time.
    ``heartbeat_s`` is the heartbeat interval until the gateway's ``config`` says otherwise.
    ``stream_rate_hz`` (load tests only) sends vitals and accel batches that many times per
    second, each accel batch then holding 50/rate samples. ``record_path``: JSON lines of
    everything published (the replay format).
    """

    manifest: SiteManifest
    scenario: Scenario | None = None
    duration_s: float | None = None
    seed: int = 0
    clock: Callable[[], float] = time.time
    heartbeat_s: float = 300.0
    stream_rate_hz: float = 1.0
    connect_rate: float = 200.0
    ack_timeout_s: float = 5.0
    ack_backoff_max_s: float = 60.0
    reconnect_max_s: float = 30.0
    settle_s: float = 10.0
    record_path: str | None = None
    transport: TransportKind = TransportKind.ASYNCIO
    mqtt_version: MqttVersion = MqttVersion.V311
    keepalive_s: int = 60
    shutdown: ShutdownMode = ShutdownMode.OFFLINE


@dataclass(frozen=True, slots=True)
class DeviceReport:
    """What one device sent. Per row kind: ``published`` (handed to the broker; events counted
    once per distinct event), ``acked`` (PUBACK received; events: distinct events with at least
    one PUBACK), ``refused`` (PUBACK with an MQTT 5 error code), ``unconfirmed`` (connection
    ended before the PUBACK: may or may not have been delivered; not used for events, which
    are retried). ``not_sent``: messages generated while the device could not publish.
    ``wills``: scripted connection cuts, each making the broker publish the last will."""

    device: str
    kind: DeviceKind
    published: Mapping[RowKind, int]
    acked: Mapping[RowKind, int]
    refused: Mapping[RowKind, int]
    unconfirmed: Mapping[RowKind, int]
    not_sent: int
    event_retries: int
    connects: int
    connect_failures: int
    connection_losses: int
    wills: int


@dataclass(frozen=True, slots=True)
class EventOutcome:
    """One distinct event and what became of it (``status`` None: never acked by the gateway)."""

    device: str
    msg_id: str
    seq: int
    type: str
    ts: float
    attempts: int
    broker_acked: bool
    status: AckStatus | None
    reason: str | None
    acked_at: float | None


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """A scripted incident as it happened (``at``: clock time, epoch seconds)."""

    at: float
    kind: IncidentKind
    device: str
    detail: Mapping[str, Any] = field(default_factory=dict)


def _totals(devices: Mapping[str, DeviceReport], attr: str) -> dict[RowKind, int]:
    out = dict.fromkeys(_ROWS, 0)
    for rep in devices.values():
        counts: Mapping[RowKind, int] = getattr(rep, attr)
        for row, n in counts.items():
            out[row] += n
    return out


@dataclass(frozen=True, slots=True)
class SimulationReport:
    """The outcome of a run. Times are clock times (epoch seconds); ``steady_at`` is the end
    of the connection ramp, the origin of scenario times; ``publish_rate`` is broker-acked
    messages per second between ``steady_at`` and the start of the shutdown."""

    site: str
    started_at: float
    steady_at: float
    ended_at: float
    devices: Mapping[str, DeviceReport]
    events: tuple[EventOutcome, ...]
    incidents: tuple[IncidentRecord, ...]
    publish_rate: float

    @property
    def published(self) -> dict[RowKind, int]:
        return _totals(self.devices, "published")

    @property
    def acked(self) -> dict[RowKind, int]:
        return _totals(self.devices, "acked")

    @property
    def unconfirmed(self) -> dict[RowKind, int]:
        return _totals(self.devices, "unconfirmed")

    @property
    def wills(self) -> int:
        return sum(d.wills for d in self.devices.values())

    @property
    def expected_rows(self) -> dict[RowKind, int]:
        """Rows the gateway should hold: broker-acked messages, plus one state row per will."""
        rows = self.acked
        rows[RowKind.STATE] += self.wills
        return rows

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (totals, per-device counts, events, incidents)."""

        def rows(m: Mapping[RowKind, int]) -> dict[str, int]:
            return {k.value: v for k, v in m.items()}

        return {
            "site": self.site,
            "started_at": self.started_at,
            "steady_at": self.steady_at,
            "ended_at": self.ended_at,
            "publish_rate": round(self.publish_rate, 1),
            "published": rows(self.published),
            "acked": rows(self.acked),
            "unconfirmed": rows(self.unconfirmed),
            "wills": self.wills,
            "expected_rows": rows(self.expected_rows),
            "devices": {
                dev_id: {
                    "kind": d.kind.value,
                    "published": rows(d.published),
                    "acked": rows(d.acked),
                    "refused": rows(d.refused),
                    "unconfirmed": rows(d.unconfirmed),
                    "not_sent": d.not_sent,
                    "event_retries": d.event_retries,
                    "connects": d.connects,
                    "connect_failures": d.connect_failures,
                    "connection_losses": d.connection_losses,
                    "wills": d.wills,
                }
                for dev_id, d in self.devices.items()
            },
            "events": [
                {
                    "device": e.device,
                    "id": e.msg_id,
                    "seq": e.seq,
                    "type": e.type,
                    "ts": e.ts,
                    "attempts": e.attempts,
                    "broker_acked": e.broker_acked,
                    "status": None if e.status is None else e.status.value,
                    "reason": e.reason,
                    "acked_at": e.acked_at,
                }
                for e in self.events
            ],
            "incidents": [
                {"at": i.at, "kind": i.kind.value, "device": i.device, **i.detail}
                for i in self.incidents
            ],
        }


# --------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------


class _Recorder:
    """Writes ``{"topic", "payload", "received_at"}`` JSON lines (the replay format)."""

    def __init__(self, path: str) -> None:
        self._fh: BufferedWriter = Path(path).open("wb")  # noqa: SIM115 - closed by close()
        self._topics: dict[str, bytes] = {}

    def write(self, topic: str, payload: bytes, at: float) -> None:
        prefix = self._topics.get(topic)
        if prefix is None:
            prefix = self._topics[topic] = b'{"topic":' + orjson.dumps(topic) + b',"payload":'
        self._fh.write(prefix + payload + b',"received_at":' + repr(at).encode() + b"}\n")

    def close(self) -> None:
        self._fh.close()


@dataclass(slots=True)
class _PendingEvent:
    device: str
    out: Outgoing
    attempts: int = 0
    next_at: float = 0.0
    broker_acked: bool = False
    status: AckStatus | None = None
    reason: str | None = None
    acked_at: float | None = None


class _Device:
    """One simulated device: its virtual device, its link and its accounting."""

    __slots__ = (
        "_failures",
        "_reconnect",
        "acked",
        "connect_failures",
        "connection_losses",
        "connects",
        "entry",
        "event_retries",
        "events",
        "is_up",
        "link",
        "muted",
        "not_sent",
        "offline_by_scenario",
        "pending",
        "published",
        "refused",
        "sim",
        "topics",
        "unconfirmed",
        "vdev",
        "wills",
    )

    def __init__(self, sim: _Simulation, entry: ManifestDevice, vdev: VirtualDevice) -> None:
        self.sim = sim
        self.entry = entry
        self.vdev = vdev
        m = sim.manifest
        self.topics = {
            ch: format_topic(m.prefix, m.site, entry.id, ch)
            for ch in (Channel.TELEMETRY, Channel.EVENT, Channel.STATE, Channel.ACK, Channel.CONFIG)
        }
        self.link: Link = sim.publisher.open(
            LinkSpec(
                client_id=entry.id,
                username=entry.id,
                password=entry.password,
                will_topic=self.topics[Channel.STATE],
                subscriptions=(self.topics[Channel.ACK], self.topics[Channel.CONFIG]),
            ),
            self,
        )
        self.pending: dict[int, tuple[int, _PendingEvent | None]] = {}
        self.events: dict[str, _PendingEvent] = {}
        self.published = [0, 0, 0, 0]
        self.acked = [0, 0, 0, 0]
        self.refused = [0, 0, 0, 0]
        self.unconfirmed = [0, 0, 0, 0]
        self.not_sent = 0
        self.event_retries = 0
        self.connects = 0
        self.connect_failures = 0
        self.connection_losses = 0
        self.wills = 0
        self.muted = False
        self.offline_by_scenario = False
        self.is_up = False
        self._failures = 0
        self._reconnect: asyncio.TimerHandle | None = None

    # -- connection ---------------------------------------------------------------------------

    def connect(self) -> None:
        self._reconnect = None
        if self.sim.closing or self.offline_by_scenario:
            return
        will = self.vdev.state(self.sim.clock(), online=False)  # own id/seq/ts, set at connect
        self.sim.wills_armed[self.entry.id] = will
        self.link.connect(will.payload)

    def link_connected(self) -> None:
        self.connects += 1
        self.is_up = True
        self._failures = 0
        self.sim.connected += 1
        now = self.sim.clock()
        self.send(self.vdev.state(now, online=True), now)
        for ev in self.events.values():  # unacked events: send again now
            if ev.status is None:
                self._send_event(ev, now)

    def link_failed(self, reason: str, *, refused: bool) -> None:
        was_connected = self._abandon_pending()
        if was_connected:
            self.connection_losses += 1
            self.sim.connected -= 1
        else:
            self.connect_failures += 1
        self.sim.note_failure(self.entry.id, reason, refused=refused)
        self._failures += 1
        if not self.sim.closing:
            delay = min(self.sim.config.reconnect_max_s, 2.0 ** min(self._failures, 10))
            delay *= random.uniform(0.5, 1.5)
            self._reconnect = self.sim.loop.call_later(delay, self.connect)

    def link_closed(self) -> None:
        if self._abandon_pending():
            self.sim.connected -= 1

    def _abandon_pending(self) -> bool:
        """Forget publications in flight; True if the device had been connected."""
        for row, ev in self.pending.values():
            if ev is None:
                self.unconfirmed[row] += 1
        self.pending.clear()
        was_up = self.is_up
        self.is_up = False
        return was_up

    def link_published(self, token: int, ok: bool) -> None:
        entry = self.pending.pop(token, None)
        if entry is None:
            return
        row, ev = entry
        self.sim.acked_total += 1
        if not ok:
            self.refused[row] += 1
        elif ev is None:
            self.acked[row] += 1
        elif not ev.broker_acked:
            ev.broker_acked = True
            self.acked[row] += 1

    def link_message(self, topic: str, payload: bytes) -> None:
        if topic == self.topics[Channel.ACK]:
            try:
                ack = decode_ack(payload)
            except ProtocolError as exc:
                self.sim.note_bad_downlink("ack", exc)
                return
            ev = self.events.get(ack.msg_id)
            if ev is None or ev.status is not None:
                return  # an ack for a retry we already settled
            ev.status = ack.status
            ev.reason = ack.reason
            ev.acked_at = self.sim.clock()
            self.sim.unacked_events -= 1
        elif topic == self.topics[Channel.CONFIG]:
            if not payload:
                return  # retained config cleared
            try:
                config = decode_config(payload)
            except ProtocolError as exc:
                self.sim.note_bad_downlink("config", exc)
                return
            self.vdev.set_heartbeat_interval(float(config.heartbeat_s), self.sim.clock())

    # -- publishing ---------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return not self.muted and self.link.connected

    def send(self, out: Outgoing, now: float) -> None:
        """Publish a telemetry or state message (events go through :meth:`send_event`)."""
        topic = self.topics[out.channel]
        token = self.link.publish(topic, out.payload, qos=1, retain=out.retain)
        row = _ROW_INDEX[out.row]
        if token is None:
            self.not_sent += 1
            return
        self.pending[token] = (row, None)
        self.published[row] += 1
        rec = self.sim.recorder
        if rec is not None:
            rec.write(topic, out.payload, now)

    def send_event(self, out: Outgoing, now: float) -> None:
        ev = _PendingEvent(self.entry.id, out, next_at=now)
        self.events[out.msg_id] = ev
        self.sim.event_log.append(ev)
        self.sim.unacked_events += 1
        if self.active:
            self._send_event(ev, now)

    def _send_event(self, ev: _PendingEvent, now: float) -> None:
        topic = self.topics[Channel.EVENT]
        token = self.link.publish(topic, ev.out.payload, qos=1, retain=False)
        if token is None:
            return
        if ev.attempts == 0:
            self.published[_EVENTS] += 1
        else:
            self.event_retries += 1
        ev.attempts += 1
        cfg = self.sim.config
        backoff = min(cfg.ack_timeout_s * 2.0 ** (ev.attempts - 1), cfg.ack_backoff_max_s)
        ev.next_at = now + backoff * random.uniform(0.8, 1.2)
        self.pending[token] = (_EVENTS, ev)
        rec = self.sim.recorder
        if rec is not None:
            rec.write(topic, ev.out.payload, now)

    def retry_events(self, now: float) -> None:
        for ev in self.events.values():
            if ev.status is None and now >= ev.next_at:
                self._send_event(ev, now)
        if len(self.events) > 64:  # keep only the unsettled ones
            self.events = {k: v for k, v in self.events.items() if v.status is None}

    def step(self, now: float) -> None:
        """One stream period."""
        for out in self.vdev.tick(now):
            if out.channel is Channel.EVENT:
                self.send_event(out, now)
            else:
                self.send(out, now)
        if self.events:
            self.retry_events(now)

    # -- scripted silence ---------------------------------------------------------------------

    def silence(self, mode: SilenceMode, now: float) -> None:
        if mode is SilenceMode.MUTE:
            self.muted = True
            return
        self.offline_by_scenario = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            self._reconnect = None
        if mode is SilenceMode.WILL:
            if self.link.connected:
                self.wills += 1
                will = self.sim.wills_armed.get(self.entry.id)
                if will is not None and self.sim.recorder is not None:
                    self.sim.recorder.write(self.topics[Channel.STATE], will.payload, now)
            self.link.drop()
        else:
            self.link.disconnect()

    def resume(self) -> None:
        self.muted = False
        if self.offline_by_scenario:
            self.offline_by_scenario = False
            if not self.link.connected:
                self.connect()

    def report(self) -> DeviceReport:
        def rows(values: list[int]) -> dict[RowKind, int]:
            return dict(zip(_ROWS, values, strict=True))

        return DeviceReport(
            device=self.entry.id,
            kind=self.entry.kind,
            published=rows(self.published),
            acked=rows(self.acked),
            refused=rows(self.refused),
            unconfirmed=rows(self.unconfirmed),
            not_sent=self.not_sent,
            event_retries=self.event_retries,
            connects=self.connects,
            connect_failures=self.connect_failures,
            connection_losses=self.connection_losses,
            wills=self.wills,
        )


class _Simulation:
    def __init__(self, config: SimulationConfig, publisher: Publisher) -> None:
        self.config = config
        self.manifest = config.manifest
        self.clock = config.clock
        self.publisher = publisher
        self.loop = asyncio.get_running_loop()
        self.recorder = _Recorder(config.record_path) if config.record_path else None
        self.closing = False
        self.connected = 0
        self.acked_total = 0
        self.unacked_events = 0
        self.event_log: list[_PendingEvent] = []
        self.incidents: list[IncidentRecord] = []
        self.wills_armed: dict[str, Outgoing] = {}
        self._failure_logged = False
        self._refusals = 0
        self._bad_downlinks = 0
        if config.stream_rate_hz <= 0 or config.connect_rate <= 0:
            raise ValueError("stream_rate_hz and connect_rate must be positive")
        period = 1.0 / config.stream_rate_hz
        now = self.clock()
        seq_start = int(now * 1000)
        residents: dict[str, ResidentModel] = {}
        self.devices: list[_Device] = []
        for entry in self.manifest.devices:
            key = entry.resident or entry.bed or entry.id
            resident = residents.get(key)
            if resident is None:
                routine_rng = random.Random(f"{config.seed}:{key}")
                resident = residents[key] = ResidentModel(
                    DailyRoutine.sample(routine_rng), utc_offset_s=self.manifest.utc_offset_s
                )
            vdev = make_virtual_device(
                entry.kind,
                entry.id,
                seed=config.seed,
                resident=resident,
                now=now,
                heartbeat_s=config.heartbeat_s,
                period_s=period,
                seq_start=seq_start,
            )
            if isinstance(vdev, KitSensorDevice):
                vdev.play_household()  # door contacts and motion sensors: the household model
            self.devices.append(_Device(self, entry, vdev))
        self.by_id = {d.entry.id: d for d in self.devices}

    # -- bookkeeping used by devices ----------------------------------------------------------

    def note_failure(self, device: str, reason: str, *, refused: bool) -> None:
        if refused:
            self._refusals += 1
        if not self._failure_logged:
            self._failure_logged = True
            log.warning(
                "device connection failed (further failures are counted, not logged)",
                extra={"device": device, "reason": reason, "refused": refused},
            )

    def note_bad_downlink(self, what: str, exc: ProtocolError) -> None:
        self._bad_downlinks += 1
        if self._bad_downlinks == 1:
            log.warning(
                "invalid downlink message ignored (further ones are counted)",
                extra={"what": what, "reason": exc.reason.value, "detail": exc.detail},
            )

    # -- phases -------------------------------------------------------------------------------

    async def ramp(self, stop: asyncio.Event) -> None:
        """Connect every device, ``connect_rate`` per second."""
        rate = self.config.connect_rate
        batch = max(1, math.ceil(rate / 50.0))
        start = self.loop.time()
        for i, dev in enumerate(self.devices):
            if stop.is_set():
                return
            dev.connect()
            if (i + 1) % batch == 0:
                delay = start + (i + 1) / rate - self.loop.time()
                await asyncio.sleep(max(delay, 0.0))
        await self.poll(lambda: self.connected >= len(self.devices), 10.0)

    async def poll(self, done: Callable[[], bool], seconds: float) -> bool:
        """Wait until ``done()`` (checked every 50 ms) or ``seconds`` have passed."""
        deadline = self.loop.time() + seconds
        while True:
            if done():
                return True
            if self.loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)

    async def run_streams(self, until: float | None, stop: asyncio.Event) -> None:
        period = 1.0 / self.config.stream_rate_hz
        slots = _TICKS_PER_PERIOD
        buckets: list[list[_Device]] = [[] for _ in range(slots)]
        for i, dev in enumerate(self.devices):
            buckets[i % slots].append(dev)
        step_s = period / slots
        deadline = self.loop.time()
        k = 0
        behind_logged = False
        next_progress = self.loop.time() + _PROGRESS_EVERY_S
        last_acked = self.acked_total
        while not stop.is_set() and (until is None or self.loop.time() < until):
            now = self.clock()
            for dev in buckets[k]:
                if dev.active:
                    dev.step(now)
            k = (k + 1) % slots
            deadline += step_s
            t = self.loop.time()
            if t >= next_progress:
                log.info(
                    "simulation progress",
                    extra={
                        "connected": self.connected,
                        "acked_per_s": round((self.acked_total - last_acked) / _PROGRESS_EVERY_S),
                        "unacked_events": self.unacked_events,
                    },
                )
                last_acked = self.acked_total
                next_progress = t + _PROGRESS_EVERY_S
            if deadline > t:
                await asyncio.sleep(deadline - t)
            else:
                if t - deadline > period and not behind_logged:
                    behind_logged = True
                    log.warning("simulator cannot keep up; streams are late (logged once)")
                if t - deadline > period:
                    deadline = t  # give up on the backlog rather than burst
                await asyncio.sleep(0)

    def schedule(
        self, incidents: tuple[ScheduledIncident, ...], origin: float
    ) -> list[asyncio.TimerHandle]:
        return [self.loop.call_at(origin + s.at_s, self.fire, s) for s in incidents]

    def fire(self, s: ScheduledIncident) -> None:
        dev = self.by_id[s.device]
        inc = s.incident
        now = self.clock()
        detail: dict[str, Any] = {}
        vdev = dev.vdev
        kind = inc.kind
        if kind is IncidentKind.BUTTON_PRESS and isinstance(vdev, ButtonDevice):
            out = vdev.press(now, long=inc.long_press)
            dev.send_event(out, now)
            detail["msg_id"] = out.msg_id
            if inc.cancel_after_s is not None:
                self.loop.call_later(inc.cancel_after_s, self._cancel, dev)
        elif kind is IncidentKind.SOS and isinstance(vdev, WearableDevice):
            out = vdev.sos(now)
            dev.send_event(out, now)
            detail["msg_id"] = out.msg_id
            if inc.cancel_after_s is not None:
                self.loop.call_later(inc.cancel_after_s, self._cancel, dev)
        elif kind is IncidentKind.FALL and isinstance(vdev, WearableDevice):
            impact = vdev.start_fall(now, peak_g=inc.peak_g, floor_s=inc.duration_s, flag=inc.flag)
            detail["impact_at"] = impact
            detail["peak_g"] = inc.peak_g
        elif kind is IncidentKind.NOT_UP and isinstance(vdev, BedSensorDevice):
            end = None if inc.duration_s is None else now + inc.duration_s
            vdev.resident.override(now, end, in_bed=True)
        elif kind is IncidentKind.NIGHT_BED_EXIT and isinstance(vdev, BedSensorDevice):
            resident = vdev.resident
            exit_at = now if resident.in_bed(now) else now + 60.0
            if exit_at > now:
                resident.override(now, exit_at, in_bed=True)  # gets into bed first
            end = None if inc.duration_s is None else exit_at + inc.duration_s
            resident.override(exit_at, end, in_bed=False)
            detail["exit_at"] = exit_at
        elif kind is IncidentKind.DEVICE_SILENT:
            dev.silence(inc.mode, now)
            detail["mode"] = inc.mode.value
            if inc.duration_s is not None:
                self.loop.call_later(inc.duration_s, dev.resume)
        elif kind is IncidentKind.LOW_BATTERY:
            out = vdev.low_battery(now, inc.battery)
            dev.send_event(out, now)
            detail["msg_id"] = out.msg_id
        self.incidents.append(IncidentRecord(now, kind, dev.entry.id, detail))
        log.info("incident", extra={"kind": kind.value, "device": dev.entry.id})

    def _cancel(self, dev: _Device) -> None:
        vdev = dev.vdev
        if isinstance(vdev, ButtonDevice | WearableDevice):
            now = self.clock()
            dev.send_event(vdev.cancel(now), now)

    async def settle(self, seconds: float) -> None:
        """Wait for PUBACKs in flight and the gateway's acks of events, retrying events."""

        def done() -> bool:
            if not any(d.pending for d in self.devices) and self.unacked_events <= 0:
                return True
            now = self.clock()
            for dev in self.devices:
                if dev.events and dev.active:
                    dev.retry_events(now)
            return False

        await self.poll(done, seconds)

    async def shutdown(self) -> None:
        self.closing = True
        for dev in self.devices:
            if dev._reconnect is not None:
                dev._reconnect.cancel()
        if self.config.shutdown is ShutdownMode.OFFLINE:
            now = self.clock()
            for dev in self.devices:
                if dev.active:
                    dev.send(dev.vdev.state(now, online=False), now)
            await self.poll(lambda: not any(d.pending for d in self.devices), 5.0)
        for dev in self.devices:
            dev.link.disconnect()
        await self.poll(lambda: self.connected <= 0, 5.0)


async def run_simulation(
    config: SimulationConfig,
    *,
    publisher: Publisher | None = None,
    stop: asyncio.Event | None = None,
) -> SimulationReport:
    """Run the simulation until ``duration_s`` has passed or ``stop`` is set; then let
    outstanding acks arrive (``settle_s``), take the devices offline and report.

    ``publisher`` replaces the MQTT transport built from the manifest (tests, custom brokers).
    On cancellation the devices are disconnected and the cancellation propagates.
    """
    stop = stop or asyncio.Event()
    own_publisher = publisher is None
    if publisher is None:
        publisher = make_publisher(
            config.manifest.broker,
            kind=config.transport,
            version=config.mqtt_version,
            keepalive_s=config.keepalive_s,
        )
    sim = _Simulation(config, publisher)
    scenario = config.scenario or Scenario()
    incidents = bind_scenario(scenario, config.manifest)
    duration = config.duration_s if config.duration_s is not None else scenario.duration_s
    counts = {k.value: len(config.manifest.of_kind(k)) for k in DeviceKind}
    log.info("simulation starting", extra={"site": config.manifest.site, **counts})
    started_at = steady_at = sim.clock()
    publish_rate = 0.0
    timers: list[asyncio.TimerHandle] = []
    try:
        streams = asyncio.create_task(sim.run_streams(None, stop), name="sim-streams")
        try:
            await sim.ramp(stop)
            steady_at = sim.clock()
            origin = sim.loop.time()
            log.info(
                "devices connected",
                extra={"connected": sim.connected, "devices": len(sim.devices)},
            )
            timers = sim.schedule(incidents, origin)
            acked_at_origin = sim.acked_total
            if duration is None:
                await stop.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=duration)
            window = max(sim.loop.time() - origin, 1e-9)
            publish_rate = (sim.acked_total - acked_at_origin) / window
        finally:
            stop.set()
            for t in timers:
                t.cancel()
            streams.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await streams
        await sim.settle(config.settle_s)
        await sim.shutdown()
    except asyncio.CancelledError:
        sim.closing = True
        for dev in sim.devices:
            dev.link.disconnect()
        raise
    finally:
        if own_publisher:
            await publisher.aclose()
        if sim.recorder is not None:
            sim.recorder.close()
    ended_at = sim.clock()
    report = SimulationReport(
        site=config.manifest.site,
        started_at=started_at,
        steady_at=steady_at,
        ended_at=ended_at,
        devices={d.entry.id: d.report() for d in sim.devices},
        events=tuple(
            EventOutcome(
                device=e.device,
                msg_id=e.out.msg_id,
                seq=e.out.seq,
                type=e.out.type,
                ts=e.out.ts_ms / 1000.0,
                attempts=e.attempts,
                broker_acked=e.broker_acked,
                status=e.status,
                reason=e.reason,
                acked_at=e.acked_at,
            )
            for e in sim.event_log
        ),
        incidents=tuple(sim.incidents),
        publish_rate=publish_rate,
    )
    log.info(
        "simulation finished",
        extra={
            "publish_rate": round(publish_rate, 1),
            "acked": sum(report.acked.values()),
            "unacked_events": sum(1 for e in report.events if e.status is None),
        },
    )
    return report
