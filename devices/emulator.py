"""``safehome device emulate``: play ONE device from the configuration printed at
commissioning, for installers and trainees without the hardware.

The configuration is the JSON ``safehome device register|rotate|replace --config-out`` saved
(``device_id``, ``site_id``, ``mqtt.{host,port,tls,username,password,client_id,
topic_prefix}``, ``heartbeat_interval_s``). The emulator connects to the broker with those
credentials like a real device (docs/device-protocol.md): last will ``offline`` set at
connect, subscriptions to its ``ack`` and ``config`` topics before anything else, a retained
``online`` state, a heartbeat, then its kind's stream (a bed sensor's ``vitals`` and a
wearable's ``accel`` batches every second, its heart rate every 10–30 s), events retried
with the same id until the gateway acks them, and a retained ``offline`` state at a clean
stop. The messages come from the simulator's virtual devices and signal models
(:mod:`devices.virtual`, :mod:`devices.signals`).

Actions (what a person does with the device):

========== =================== ================================================================
action     kinds               messages
========== =================== ================================================================
press      button, wearable    ``press`` (a wearable's SOS key: ``sos``)
long-press button              ``long_press``
cancel     button, wearable    ``cancel`` (the resident's "I'm OK")
lie-down   bed_sensor          presence true with heart and breathing rate, ``bed_entry``
get-up     bed_sensor,         ``bed_exit``, presence false; a wearable's wearer gets up off
           wearable            the floor after a fall
wear       wearable            ``worn``, a heartbeat with ``worn`` true, a heart rate
take-off   wearable            ``not_worn``; no heart rate until worn again
shake      wearable            ``accel`` batches of the device shaken by hand (peak ≥ 2.5 g)
fall       wearable            the simulator's fall signal (free fall, impact, lying still)
                               and the device's own ``fall`` event
online     all                 nothing more: stay online (heartbeats, stream) for ``seconds``
========== =================== ================================================================

It never talks to the gateway's API or database: only to the broker, as the device.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from devices.errors import DevicesError
from devices.protocol import (
    KIT_KINDS,
    AckStatus,
    Channel,
    DeviceKind,
    ProtocolError,
    decode_ack,
    decode_config,
    is_valid_id,
)
from devices.publishers import make_publisher
from devices.signals import DailyRoutine, ResidentModel
from devices.transport import BrokerEndpoint, Link, LinkSpec
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
    "ACTIONS",
    "EmulatorConfig",
    "EmulatorError",
    "EventResult",
    "Options",
    "emulate",
    "infer_kind",
    "main",
]

B, S, W = DeviceKind.BUTTON, DeviceKind.BED_SENSOR, DeviceKind.WEARABLE
KIT_ACTIONS: Final[dict[str, tuple[DeviceKind, str, dict[str, Any] | None]]] = {
    "open-door": (DeviceKind.DOOR_CONTACT, "open", None),
    "close-door": (DeviceKind.DOOR_CONTACT, "close", None),
    "walk": (DeviceKind.MOTION_SENSOR, "motion", {"holdoff_s": 60}),
    "smoke-test": (DeviceKind.SMOKE_DETECTOR, "test", None),
    "smoke-alarm": (DeviceKind.SMOKE_DETECTOR, "alarm", None),
    "smoke-clear": (DeviceKind.SMOKE_DETECTOR, "clear", None),
    "gas-test": (DeviceKind.GAS_DETECTOR, "test", None),
    "gas-alarm": (DeviceKind.GAS_DETECTOR, "alarm", {"level": "high", "lel_pct": 25}),
    "gas-clear": (DeviceKind.GAS_DETECTOR, "clear", None),
    "leak": (DeviceKind.WATER_LEAK, "leak", None),
    "dry": (DeviceKind.WATER_LEAK, "dry", None),
}
"""Kit actions: (the kind that can do it, the event it sends, its fields)."""
ACTIONS: Final[dict[str, frozenset[DeviceKind]]] = {
    "press": frozenset({B, W}),
    "long-press": frozenset({B}),
    "cancel": frozenset({B, W}),
    "lie-down": frozenset({S}),
    "get-up": frozenset({S, W}),
    "wear": frozenset({W}),
    "take-off": frozenset({W}),
    "shake": frozenset({W}),
    "fall": frozenset({W}),
    "online": frozenset({B, S, W} | KIT_KINDS),
    **{action: frozenset({kind}) for action, (kind, _, _) in KIT_ACTIONS.items()},
    "tamper": frozenset(KIT_KINDS),
}
ID_PREFIX: Final = {
    "btn-": B,
    "bed-": S,
    "wr-": W,
    "hub-": DeviceKind.HOME_HUB,
    "door-": DeviceKind.DOOR_CONTACT,
    "pir-": DeviceKind.MOTION_SENSOR,
    "smoke-": DeviceKind.SMOKE_DETECTOR,
    "gas-": DeviceKind.GAS_DETECTOR,
    "leak-": DeviceKind.WATER_LEAK,
}  # fmt: skip  (the gateway's default ids)
PERIOD_S: Final = 1.0
SHAKE_PEAK_G: Final = 3.0
FALL_PEAK_G: Final = 3.6
PRE_FALL_S: Final = 6.0  # accelerometer stream before a fall (the detector looks back 4 s)


class Exit:
    OK = 0
    FAILED = 1  # an event was rejected or never acknowledged
    USAGE = 2  # bad arguments or configuration
    UNREACHABLE = 3  # the broker could not be reached
    AUTH = 4  # the broker refused the credentials


class EmulatorError(DevicesError):
    """A bad configuration, or the broker unreachable/refusing; ``code`` is the exit code."""

    def __init__(self, message: str, code: int, hint: str | None = None) -> None:
        self.message = message
        self.code = code
        self.hint = hint
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """The device configuration printed once at commissioning."""

    device_id: str
    site_id: str
    host: str
    port: int
    tls: bool
    username: str
    password: str = field(repr=False)
    client_id: str
    topic_prefix: str
    heartbeat_s: float

    @classmethod
    def from_json(cls, obj: Any) -> EmulatorConfig:
        def bad(what: str) -> EmulatorError:
            return EmulatorError(
                f"not a device configuration: {what}", Exit.USAGE,
                "use the JSON saved by: safehome device register|rotate|replace --config-out "
                "FILE.json",
            )  # fmt: skip

        if not isinstance(obj, dict):
            raise bad("not a JSON object")
        mqtt = obj.get("mqtt")
        if not isinstance(mqtt, dict):
            raise bad("no 'mqtt' section")
        dev, site = obj.get("device_id"), obj.get("site_id")
        if not isinstance(dev, str) or not is_valid_id(dev):
            raise bad("'device_id' missing or invalid")
        if not isinstance(site, str) or not is_valid_id(site):
            raise bad("'site_id' missing or invalid")
        texts = {}
        for key in ("host", "username", "password", "topic_prefix"):
            value = mqtt.get(key)
            if not isinstance(value, str) or not value:
                raise bad(f"'mqtt.{key}' missing")
            texts[key] = value
        port, tls = mqtt.get("port"), mqtt.get("tls", False)
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise bad("'mqtt.port' missing or invalid")
        if not isinstance(tls, bool):
            raise bad("'mqtt.tls' must be true or false")
        prefix = texts["topic_prefix"]
        if prefix.rsplit("/", 2)[-2:] != [site, dev]:
            raise bad("'mqtt.topic_prefix' does not end with <site>/<device>")
        heartbeat = obj.get("heartbeat_interval_s", 300)
        if not isinstance(heartbeat, int | float) or not 5 <= heartbeat <= 86400:
            raise bad("'heartbeat_interval_s' invalid")
        return cls(
            device_id=dev, site_id=site, host=texts["host"], port=port, tls=tls,
            username=texts["username"], password=texts["password"],
            client_id=str(mqtt.get("client_id") or dev), topic_prefix=prefix,
            heartbeat_s=float(heartbeat),
        )  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> EmulatorConfig:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise EmulatorError(f"cannot read {path}: {exc.strerror}", Exit.USAGE) from None
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise EmulatorError(f"{path} is not JSON: {exc}", Exit.USAGE) from None
        return cls.from_json(obj)

    def topic(self, channel: Channel) -> str:
        return f"{self.topic_prefix}/{channel.value}"

    def via_hub(self, hub: EmulatorConfig) -> EmulatorConfig:
        """This child sensor played through its home hub's connection (its own topics, the
        hub's broker account: a child has none)."""
        return replace(self, host=hub.host, port=hub.port, tls=hub.tls, username=hub.username,
                       password=hub.password, client_id=hub.client_id)  # fmt: skip


def infer_kind(config: EmulatorConfig, actions: Sequence[str], kind: str | None) -> DeviceKind:
    """The device kind: ``kind`` if given, else the gateway's id prefix, else the only kind
    that can do every action."""
    if kind:
        return DeviceKind(kind)
    for prefix, k in ID_PREFIX.items():
        if config.device_id.startswith(prefix):
            return k
    candidates = set(DeviceKind)
    for action in actions:
        candidates &= ACTIONS[action]
    if len(candidates) == 1:
        return candidates.pop()
    raise EmulatorError(
        f"cannot tell what kind of device {config.device_id} is",
        Exit.USAGE, "add --kind " + "|".join(k.value for k in DeviceKind),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Options:
    """How the emulator behaves; ``seconds`` is how long a state lasts (lying on the bed,
    wearing, ``online``), None for ``online``: until stopped."""

    count: int = 1
    seconds: float | None = None
    interval_s: float = 2.0
    ack_timeout_s: float = 5.0
    ack_wait_s: float = 60.0
    ca_file: str | None = None
    connect_timeout_s: float = 10.0


@dataclass(slots=True)
class EventResult:
    """An event and what the gateway answered (``status`` None: no ack in time)."""

    type: str
    msg_id: str
    seq: int
    first_sent: float = 0.0
    attempts: int = 0
    next_at: float = 0.0
    status: AckStatus | None = None
    reason: str | None = None
    latency_ms: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def to_json(self) -> dict[str, Any]:
        return {
            "what": "ack" if self.status is not None else "no_ack",
            "type": self.type, "id": self.msg_id, "seq": self.seq,
            "status": None if self.status is None else self.status.value,
            "reason": self.reason, "latency_ms": self.latency_ms, "attempts": self.attempts,
        }  # fmt: skip


Report = Callable[[dict[str, Any]], None]


class _Emulator:
    """One emulated device on its own MQTT connection (:class:`devices.transport.LinkEvents`)."""

    def __init__(
        self, config: EmulatorConfig, kind: DeviceKind, options: Options, report: Report,
        *, start_in_bed: bool, start_worn: bool,
    ) -> None:  # fmt: skip
        self.config = config
        self.kind = kind
        self.options = options
        self.report = report
        now = time.time()
        self.resident = ResidentModel(DailyRoutine())
        self.resident.override(now - 1.0, None, in_bed=start_in_bed)  # actions decide
        self.vdev: VirtualDevice = make_virtual_device(
            kind, config.device_id, seed=secrets.randbits(32), resident=self.resident,
            now=now, heartbeat_s=config.heartbeat_s, period_s=PERIOD_S,
            seq_start=int(now * 1000),
        )  # fmt: skip
        if isinstance(self.vdev, WearableDevice):
            self.vdev.worn = start_worn
        self.events: dict[str, EventResult] = {}
        self._pending_payload: dict[str, Outgoing] = {}
        self.results: list[EventResult] = []
        self.link: Link | None = None
        self._connected: asyncio.Future[None] | None = None
        self._ever_connected = False
        self._closing = False
        self._puback: dict[int, asyncio.Event] = {}
        self._counts: dict[str, int] = {}
        self._stream_since = now

    # -- connection (LinkEvents) --------------------------------------------------------

    def link_connected(self) -> None:
        now = time.time()
        first = not self._ever_connected
        self._ever_connected = True
        self._publish(self.vdev.state(now, online=True))
        self._publish(self.vdev.heartbeat_now(now))
        if first:
            self.report({"what": "connected", "device": self.config.device_id,
                         "kind": self.kind.value,
                         "broker": f"{self.config.host}:{self.config.port}"})  # fmt: skip
            self._stream_since = now
            for out in self.vdev.tick(now):  # the stream starts at once
                self._send(out, now)
        else:
            self.report({"what": "reconnected"})
        for ev in self.events.values():  # unacked events: send again now
            if ev.status is None:
                self._send_event(ev, now)
        if self._connected is not None and not self._connected.done():
            self._connected.set_result(None)

    def link_failed(self, reason: str, *, refused: bool) -> None:
        fut = self._connected
        if fut is not None and not fut.done():
            if refused:
                err = EmulatorError(
                    f"the broker refused {self.config.username}: {reason}", Exit.AUTH,
                    "the password is wrong or was rotated, or the device was decommissioned: "
                    f"safehome device rotate {self.config.device_id} --config-out FILE.json",
                )  # fmt: skip
            else:
                err = EmulatorError(
                    f"cannot reach the broker at {self.config.host}:{self.config.port}: {reason}",
                    Exit.UNREACHABLE, "is the broker running, and the address in the "
                    "configuration reachable from here?",
                )  # fmt: skip
            fut.set_exception(err)
            return
        if self._closing:
            return
        self.report({"what": "connection_lost", "reason": reason})
        asyncio.get_running_loop().call_later(2.0, self._reconnect)

    def _reconnect(self) -> None:
        if self._closing or self.link is None or self.link.connected:
            return
        self.link.connect(self.vdev.state(time.time(), online=False).payload)

    def link_closed(self) -> None:
        pass

    def link_published(self, token: int, ok: bool) -> None:
        done = self._puback.pop(token, None)
        if done is not None:
            done.set()

    def link_message(self, topic: str, payload: bytes) -> None:
        if topic == self.config.topic(Channel.ACK):
            try:
                ack = decode_ack(payload)
            except ProtocolError as exc:
                self.report({"what": "bad_ack", "detail": str(exc)})
                return
            ev = self.events.get(ack.msg_id)
            if ev is None or ev.status is not None:
                return  # an ack of a retry already settled
            ev.status, ev.reason = ack.status, ack.reason
            ev.latency_ms = round((time.time() - ev.first_sent) * 1000.0, 1)
            ev.done.set()
            self.report(ev.to_json())
        elif topic == self.config.topic(Channel.CONFIG) and payload:
            try:
                cfg = decode_config(payload)
            except ProtocolError as exc:
                self.report({"what": "bad_config", "detail": str(exc)})
                return
            if cfg.heartbeat_s != self.vdev.heartbeat_s:
                self.vdev.set_heartbeat_interval(float(cfg.heartbeat_s), time.time())
                self.report({"what": "config", "heartbeat_s": cfg.heartbeat_s})

    # -- publishing ---------------------------------------------------------------------

    def _publish(self, out: Outgoing) -> int | None:
        if self.link is None or not self.link.connected:
            return None
        token = self.link.publish(
            self.config.topic(out.channel), out.payload, qos=1, retain=out.retain
        )
        self._counts[out.type] = self._counts.get(out.type, 0) + 1
        return token

    def _send(self, out: Outgoing, now: float) -> EventResult | None:
        if not out.is_event:
            self._publish(out)
            return None
        ev = EventResult(out.type, out.msg_id, out.seq, first_sent=now)
        self.events[out.msg_id] = ev
        self.results.append(ev)
        self._pending_payload[out.msg_id] = out
        self.report({"what": "event", "type": out.type, "id": out.msg_id, "seq": out.seq})
        self._send_event(ev, now)
        return ev

    def _send_event(self, ev: EventResult, now: float) -> None:
        out = self._pending_payload[ev.msg_id]
        if self._publish(out) is None:
            return  # not connected: sent again at the next connect
        ev.attempts += 1
        backoff = min(self.options.ack_timeout_s * 2.0 ** (ev.attempts - 1), 60.0)
        ev.next_at = now + backoff * random.uniform(0.8, 1.2)

    async def _ticker(self) -> None:
        """The device's own clock: its stream every period, event retries, heartbeats."""
        nxt = time.time() + PERIOD_S
        while True:
            await asyncio.sleep(max(0.0, nxt - time.time()))
            now = time.time()
            nxt += PERIOD_S
            if nxt < now:  # the loop was stalled: do not catch up in a burst
                nxt = now + PERIOD_S
            if self.link is None or not self.link.connected:
                continue
            for out in self.vdev.tick(now):
                self._send(out, now)
            for ev in self.events.values():
                if ev.status is None and now >= ev.next_at:
                    self._send_event(ev, now)

    # -- actions --------------------------------------------------------------------------

    async def act(self, action: str) -> None:
        if self.kind not in ACTIONS[action]:
            kinds = ", ".join(sorted(k.value for k in ACTIONS[action]))
            raise EmulatorError(f"a {self.kind.value} cannot {action} (only: {kinds})",
                                Exit.USAGE)  # fmt: skip
        self.report({"what": "action", "action": action})
        now = time.time()
        dev, opts = self.vdev, self.options
        hold = opts.seconds
        if isinstance(dev, ButtonDevice):
            if action == "online":
                await self._stay(hold)
            else:
                await self._acked(dev.cancel(now) if action == "cancel"
                                  else dev.press(now, long=action == "long-press"))  # fmt: skip
        elif isinstance(dev, BedSensorDevice):
            if action == "lie-down":
                self.resident.override(now, None, in_bed=True)
                await asyncio.sleep(8.0 if hold is None else hold)  # vitals while lying
            elif action == "get-up":
                self.resident.override(now, None, in_bed=False)
                await asyncio.sleep(2.0 * PERIOD_S)  # bed_exit and an empty bed
            else:
                await self._stay(hold)
        elif isinstance(dev, KitSensorDevice):
            if action == "online":
                await self._stay(hold)
            elif action == "tamper":
                await self._acked(dev.event(now, "tamper"))
            else:
                _, type_, data = KIT_ACTIONS[action]
                await self._acked(dev.event(now, type_, dict(data) if data else None))
        elif isinstance(dev, WearableDevice):
            if action == "press":
                await self._acked(dev.sos(now))
            elif action == "cancel":
                await self._acked(dev.cancel(now))
            elif action == "wear":
                self._send(dev.put_on(now), now)
                self._publish(dev.heartbeat_now(now))
                await asyncio.sleep(3.0 if hold is None else hold)  # a heart rate arrives
            elif action == "take-off":
                self._send(dev.take_off(now), now)
                self._publish(dev.heartbeat_now(now))
            elif action == "shake":
                dev.shake(now, seconds=2.0, peak_g=SHAKE_PEAK_G)
                await asyncio.sleep(3.5 * PERIOD_S)  # the batches with the shaking
            elif action == "fall":
                # A fall detector compares the posture before and after the impact: give it
                # a few seconds of the wearer upright first (right after connecting).
                await asyncio.sleep(max(0.0, self._stream_since + PRE_FALL_S - time.time()))
                now = time.time()
                dev.start_fall(now, peak_g=FALL_PEAK_G, floor_s=None, flag=True)
                await asyncio.sleep(6.0 * PERIOD_S)  # fall, impact, lying still
            elif action == "get-up":
                self.resident.get_up(now)
                await asyncio.sleep(2.0 * PERIOD_S)
            else:
                await self._stay(hold)

    async def _acked(self, out: Outgoing) -> None:
        """Send an event and wait (retrying) for the gateway's ack, as a device does before
        it tells its user that the call went through."""
        ev = self._send(out, time.time())
        if ev is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ev.done.wait(), self.options.ack_wait_s)

    async def _stay(self, seconds: float | None) -> None:
        if seconds is None:
            await asyncio.Event().wait()  # until stopped (Ctrl-C)
        else:
            await asyncio.sleep(seconds)

    async def settle(self) -> None:
        """Wait (retrying) until every event is acked, at most ``ack_wait_s``."""
        waiting = [ev.done.wait() for ev in self.results if ev.status is None]
        if waiting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waiting), self.options.ack_wait_s)
        for ev in self.results:
            if ev.status is None and not ev.done.is_set():
                ev.done.set()
                self.report(ev.to_json())

    # -- life cycle -------------------------------------------------------------------------

    async def run(self, actions: Sequence[str] | None) -> list[EventResult]:
        """Connect, do ``actions`` (None: read them from standard input), stop cleanly."""
        cfg, opts = self.config, self.options
        endpoint = BrokerEndpoint(cfg.host, cfg.port, tls=cfg.tls, ca_file=opts.ca_file)
        publisher = make_publisher(endpoint, connect_timeout_s=opts.connect_timeout_s)
        spec = LinkSpec(
            client_id=cfg.client_id, username=cfg.username, password=cfg.password,
            will_topic=cfg.topic(Channel.STATE),
            subscriptions=(cfg.topic(Channel.ACK), cfg.topic(Channel.CONFIG)),
        )  # fmt: skip
        self.link = link = publisher.open(spec, self)
        ticker: asyncio.Task[None] | None = None
        try:
            self._connected = asyncio.get_running_loop().create_future()
            link.connect(self.vdev.state(time.time(), online=False).payload)  # the last will
            await self._connected
            ticker = asyncio.create_task(self._ticker(), name="emulator-ticker")
            if actions is None:
                await self._interactive()
            else:
                for i, action in enumerate(actions):
                    if i:
                        await asyncio.sleep(self.options.interval_s)
                    await self.act(action)
            await self.settle()
            return self.results
        finally:
            self._closing = True
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            await self._stop(link)
            await publisher.aclose()

    async def _stop(self, link: Link) -> None:
        """A clean shutdown: a retained ``offline`` state, then DISCONNECT (no will)."""
        if link.connected:
            token = self._publish(self.vdev.state(time.time(), online=False))
            if token:
                done = self._puback[token] = asyncio.Event()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 5.0)
            link.disconnect()
            self.report({"what": "offline", "sent": dict(sorted(self._counts.items()))})

    async def _interactive(self) -> None:
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        tty = sys.stdin.isatty()

        def read() -> None:  # a daemon thread: never blocks the process's exit
            for line in sys.stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, None)

        threading.Thread(target=read, name="emulator-stdin", daemon=True).start()
        allowed = [a for a, kinds in ACTIONS.items() if self.kind in kinds]
        self.report({"what": "interactive", "actions": allowed})
        while True:
            if tty:
                print(f"{self.config.device_id}> ", end="", flush=True)
            line = await lines.get()
            if line is None:
                return
            words = line.split()
            if not words:
                continue
            if words[0] in ("quit", "exit"):
                return
            if words[0] in ("help", "?"):
                self.report({"what": "interactive", "actions": allowed})
                continue
            if words[0] not in ACTIONS or self.kind not in ACTIONS[words[0]]:
                self.report({"what": "unknown", "input": words[0][:32], "actions": allowed})
                continue
            count = int(words[1]) if len(words) > 1 and words[1].isdigit() else 1
            for i in range(count):
                if i:
                    await asyncio.sleep(self.options.interval_s)
                await self.act(words[0])


async def emulate(
    config: EmulatorConfig,
    actions: Sequence[str] | None,
    *,
    kind: DeviceKind,
    options: Options,
    report: Report,
) -> list[EventResult]:
    """Play the device: connect, do ``actions`` (each ``options.count`` times; None: read
    them from standard input), wait for the gateway's acks, go offline cleanly. Returns the
    events sent and their acks. Raises :class:`EmulatorError` when the broker cannot be
    reached or refuses the credentials."""
    unknown = [a for a in actions or () if a not in ACTIONS]
    if unknown:
        raise EmulatorError(f"unknown action {unknown[0]!r}", Exit.USAGE,
                            "actions: " + ", ".join(ACTIONS))  # fmt: skip
    for action in actions or ():
        if kind not in ACTIONS[action]:
            kinds = ", ".join(sorted(k.value for k in ACTIONS[action]))
            raise EmulatorError(f"a {kind.value} cannot {action} (only: {kinds})", Exit.USAGE)
    first = actions[0] if actions else None
    emulator = _Emulator(
        config, kind, options, report,
        start_in_bed=first == "get-up" and kind is S, start_worn=first != "wear",
    )  # fmt: skip
    plan = None if actions is None else [a for a in actions for _ in range(options.count)]
    task = asyncio.current_task()
    if task is not None:  # SIGTERM: a clean stop too (offline state, no will)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await emulator.run(plan)


# -- the command -------------------------------------------------------------------------


def _text(item: dict[str, Any]) -> str | None:
    what = item["what"]
    if what == "connected":
        return (f"{item['device']} ({item['kind']}) connected to {item['broker']}: online, "
                "heartbeat sent")  # fmt: skip
    if what == "action":
        return f"▶ {item['action']}"
    if what == "event":
        return f"  event {item['type']} (id {item['id']}) sent"
    if what == "ack":
        status, reason = item["status"], item["reason"]
        mark = "✗" if status == AckStatus.REJECTED.value else "✓"
        why = f" ({reason})" if reason else ""
        return (f"  {mark} gateway ack of {item['type']}: {status}{why} after "
                f"{item['latency_ms']:.0f} ms, {item['attempts']} attempt(s)")  # fmt: skip
    if what == "no_ack":
        return (f"  ✗ no ack of {item['type']} (id {item['id']}) after {item['attempts']} "
                "attempt(s): is the gateway running?")  # fmt: skip
    if what == "config":
        return f"  the gateway set the heartbeat interval to {item['heartbeat_s']} s"
    if what == "offline":
        sent = ", ".join(f"{k} {v}" for k, v in item["sent"].items())
        return f"offline (clean stop); sent: {sent}"
    if what == "interactive":
        return "type an action per line (" + ", ".join(item["actions"]) + "), or quit"
    if what == "unknown":
        return f"unknown action {item['input']!r}; this device can: " + ", ".join(item["actions"])
    if what in ("connection_lost", "reconnected", "bad_ack", "bad_config"):
        return f"  {what.replace('_', ' ')}: {item.get('reason') or item.get('detail') or ''}"
    return None


def main(args: Any) -> int:
    """``safehome device emulate`` (argparse namespace from gateway/installer/parser.py)."""
    as_json = bool(getattr(args, "json", False))

    def report(item: dict[str, Any]) -> None:
        if as_json:
            sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")
            sys.stdout.flush()
            return
        line = _text(item)
        if line is not None:
            print(line, flush=True)

    try:
        if args.count < 1:
            raise EmulatorError("--count must be at least 1", Exit.USAGE)
        config = EmulatorConfig.load(Path(args.config))
        hub_config = getattr(args, "hub_config", None)
        if hub_config:
            config = config.via_hub(EmulatorConfig.load(Path(hub_config)))
        actions: list[str] | None = list(args.actions) or None
        kind = infer_kind(config, actions or (), args.kind)
        options = Options(count=args.count, seconds=args.seconds, ca_file=args.ca_file,
                          ack_wait_s=args.ack_wait)  # fmt: skip
        results = asyncio.run(emulate(config, actions, kind=kind, options=options,
                                      report=report))  # fmt: skip
    except EmulatorError as err:
        print(f"error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:  # SIGTERM
        return 143
    ok = all(r.status in (AckStatus.STORED, AckStatus.DUPLICATE) for r in results)
    return Exit.OK if ok else Exit.FAILED
