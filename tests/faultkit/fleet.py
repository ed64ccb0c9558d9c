"""A scripted fleet of protocol-v1 devices on a real broker, keeping the books of what it sent.

Each device is a :mod:`devices.virtual` device (its ids, sequence numbers and payloads) on
its own MQTT connection (:mod:`devices.mqtt311`, client id and user = the device id), driven
by one asyncio loop in a background thread. Like a real device (docs/device-protocol.md):

* it subscribes to its ``ack`` topic, publishes a retained ``online`` state with a last will
  ``offline``, and reconnects after a lost connection;
* an alarm (button ``press``) is retried with the same id and seq every ``retry_s`` until the
  gateway acks it (``stored``/``duplicate``; ``rejected`` ends the retries too and is kept);
* telemetry (a bed sensor's ``vitals`` and heartbeats) is QoS 1; a publication counts as
  *confirmed* once the broker PUBACKed it and as *attempted* from the moment it was written.

The books: :attr:`Fleet.presses` (one :class:`Press` per alarm, with its acks) and, per
device, the telemetry ids confirmed/attempted. A device's clock can be off
(:meth:`Fleet.set_clock_offset`): its payload timestamps are then ``now + offset``.

Thread-safety: every public method may be called from any thread; device work runs on the
fleet's loop (``call``/``run``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from devices.protocol import (
    Channel,
    DeviceKind,
    ProtocolError,
    decode_ack,
    encode_vitals,
    format_topic,
)
from devices.publishers import make_publisher
from devices.signals import DailyRoutine, ResidentModel
from devices.transport import BrokerEndpoint, Link, LinkSpec
from devices.virtual import ButtonDevice, Outgoing, VirtualDevice, make_virtual_device

__all__ = ["DeviceSpec", "Fleet", "Press"]

T = TypeVar("T")
ALARM_TYPES = frozenset({"press", "long_press", "sos"})


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One device of the fleet: its registry identity and MQTT password."""

    device_id: str
    site_id: str
    kind: DeviceKind
    password: str
    # how often the device ticks: a bed sensor sends its vitals every period, every device
    # its heartbeat when due (Fleet.heartbeat_s)
    period_s: float = 1.0


@dataclass
class Press:
    """One alarm as the device sent it, and what the gateway answered."""

    device_id: str
    msg_id: str
    seq: int
    ts_ms: int  # the device's timestamp (its clock, offset included)
    type: str
    sent_at: float  # wall clock (true time) of the first publication
    attempts: int = 0
    acks: list[tuple[str, float]] = field(default_factory=list)  # (status, true time)
    reasons: list[str] = field(default_factory=list)
    payload: bytes = b""
    next_retry: float = 0.0

    @property
    def status(self) -> str | None:
        """The first ack's status (``stored``, ``duplicate``, ``rejected``) or None."""
        return self.acks[0][0] if self.acks else None

    @property
    def acked_at(self) -> float | None:
        return self.acks[0][1] if self.acks else None

    @property
    def settled(self) -> bool:
        return bool(self.acks)


class _Device:
    """One device on the loop (a :class:`devices.transport.LinkEvents`)."""

    def __init__(self, fleet: Fleet, spec: DeviceSpec, now: float) -> None:
        self.fleet = fleet
        self.spec = spec
        self.clock_offset_s = 0.0
        resident = ResidentModel(DailyRoutine())
        resident.override(now - 1.0, None, in_bed=True)  # in bed, still: no routine incidents
        self.vdev: VirtualDevice = make_virtual_device(
            spec.kind, spec.device_id, seed=fleet.seed, resident=resident, now=now,
            heartbeat_s=fleet.heartbeat_s, period_s=spec.period_s,
            seq_start=int(now * 1000),
        )  # fmt: skip
        self.link: Link | None = None
        self.pending: dict[str, Press] = {}  # alarms not yet acked, by msg id
        self.tokens: dict[int, str] = {}  # QoS 1 telemetry in flight: token -> msg id
        self.confirmed: set[str] = set()
        self.attempted: set[str] = set()
        self.silent = False  # stopped sending (a dead device); the connection stays
        self.offline = False  # disconnected on purpose; no reconnect until resumed
        self.connects = 0
        self.stream_next = now
        self.flood_rate = 0.0
        self.flood_sent = 0
        self.flood_confirmed = 0

    # -- clock ---------------------------------------------------------------------------

    def device_now(self) -> float:
        return time.time() + self.clock_offset_s

    # -- LinkEvents ----------------------------------------------------------------------

    def link_connected(self) -> None:
        self.connects += 1
        now = self.device_now()
        self._publish(self.vdev.state(now, online=True))
        self._publish(self.vdev.heartbeat_now(now), track=True)
        for press in list(self.pending.values()):  # unacked alarms: send again now
            self._send_press(press)

    def link_failed(self, reason: str, *, refused: bool) -> None:
        self.fleet.failures.append(f"{self.spec.device_id}: {reason}")
        # A lost connection ("lost: …", e.g. the broker restarting) is reported here, not
        # by link_closed: its publications in flight will never be answered either (telemetry
        # is not sent again on the next session). Left as tokens, they kept stop_streams
        # waiting for answers that cannot come whenever a publication was in flight at the
        # moment of the loss.
        self.tokens.clear()
        self.fleet.loop.call_later(self.fleet.reconnect_s, self.reconnect)

    def link_closed(self) -> None:
        self.tokens.clear()

    def link_published(self, token: int, ok: bool) -> None:
        msg_id = self.tokens.pop(token, None)
        if msg_id is None:
            return
        if msg_id == "flood":
            self.flood_confirmed += ok
        elif ok:
            self.confirmed.add(msg_id)

    def link_message(self, topic: str, payload: bytes) -> None:
        try:
            ack = decode_ack(payload)
        except ProtocolError:
            self.fleet.bad_acks += 1
            return
        press = self.fleet.presses_by_id.get(ack.msg_id)
        if press is None:
            return  # the ack of another event (bed entry, ...)
        press.acks.append((ack.status.value, time.time()))
        if ack.reason is not None:
            press.reasons.append(ack.reason)
        self.pending.pop(ack.msg_id, None)

    # -- sending -------------------------------------------------------------------------

    def reconnect(self) -> None:
        if self.offline or self.fleet.closing or self.link is None or self.link.connected:
            return
        with contextlib.suppress(RuntimeError):  # already connecting
            self.link.connect(self.vdev.state(self.device_now(), online=False).payload)

    def topic(self, channel: Channel) -> str:
        return format_topic(self.fleet.prefix, self.spec.site_id, self.spec.device_id, channel)

    def _publish(self, out: Outgoing, track: bool = False) -> bool:
        link = self.link
        if link is None or not link.connected:
            return False
        token = link.publish(self.topic(out.channel), out.payload, qos=1, retain=out.retain)
        if token is None:
            return False
        if track:
            self.attempted.add(out.msg_id)
            self.tokens[token] = out.msg_id
        return True

    def _send_press(self, press: Press) -> None:
        link = self.link
        press.next_retry = time.time() + self.fleet.retry_s * random.uniform(0.8, 1.2)
        if link is None or not link.connected:
            return
        if link.publish(self.topic(Channel.EVENT), press.payload, qos=1, retain=False) is None:
            return
        press.attempts += 1

    def press(self, type_: str = "press") -> Press:
        now = self.fleet.unique_ts(self.device_now())
        if isinstance(self.vdev, ButtonDevice) and type_ in ("press", "long_press"):
            out = self.vdev.press(now, long=type_ == "long_press")
        else:
            out = self.vdev.event(now, type_)
        press = Press(
            self.spec.device_id, out.msg_id, out.seq, out.ts_ms, type_, time.time(),
            payload=out.payload,
        )  # fmt: skip
        self.fleet.presses.append(press)
        self.fleet.presses_by_id[press.msg_id] = press
        self.pending[press.msg_id] = press
        self._send_press(press)
        return press

    def tick(self, now_true: float) -> None:
        if self.silent:
            return
        for press in list(self.pending.values()):
            if now_true >= press.next_retry:
                self._send_press(press)
        if self.flood_rate:
            self._flood(now_true)
        period = self.spec.period_s
        if now_true < self.stream_next or self.fleet.streams_stopped:
            return
        self.stream_next = max(self.stream_next + period, now_true - period)
        for out in self.vdev.tick(self.device_now()):
            if out.is_event:
                continue  # bed entry/exit: not part of the books
            self._publish(out, track=True)

    def _flood(self, now_true: float) -> None:
        due = int(self.flood_rate * (now_true - self.fleet.flood_started)) - self.flood_sent
        link = self.link
        if due <= 0 or link is None or not link.connected:
            return
        topic = self.topic(Channel.TELEMETRY)
        for _ in range(min(due, 500)):
            msg_id, seq = self.vdev.next_id()
            payload = encode_vitals(
                self.spec.device_id, msg_id, seq, int(self.device_now() * 1000),
                presence=True, hr=62.0, rr=14.0, movement=0.1,
            )  # fmt: skip
            token = link.publish(topic, payload, qos=1, retain=False)
            self.flood_sent += 1
            if token:
                self.tokens[token] = "flood"

    def publish_raw(self, out: Outgoing, *, track: bool) -> bool:
        return self._publish(out, track=track)


class Fleet:
    """The devices of one fault run; start with ``with Fleet(...) as fleet:``."""

    def __init__(
        self,
        broker_port: int,
        devices: Iterable[DeviceSpec],
        *,
        prefix: str = "shg",
        retry_s: float = 1.0,
        heartbeat_s: float = 2.0,
        reconnect_s: float = 0.5,
        keepalive_s: int = 10,
        seed: int = 9,
    ) -> None:
        self.endpoint = BrokerEndpoint("127.0.0.1", broker_port)
        self.specs = list(devices)
        self.prefix = prefix
        self.retry_s = retry_s
        self.heartbeat_s = heartbeat_s
        self.reconnect_s = reconnect_s
        self.keepalive_s = keepalive_s
        self.seed = seed
        self.presses: list[Press] = []
        self.presses_by_id: dict[str, Press] = {}
        self.failures: list[str] = []
        self.bad_acks = 0
        self.closing = False
        self.streams_stopped = False
        self.flood_started = 0.0
        self._used_ms: set[int] = set()
        self._devices: dict[str, _Device] = {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="fleet", daemon=True)
        self._ticker: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Fleet:
        self._thread.start()
        try:
            self.run(self._start())
        except BaseException:
            self.close()  # undo the start: stop the thread (which closes the loop)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        with contextlib.suppress(Exception):
            self.run(self._stop(), timeout_s=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def _run_loop(self) -> None:
        """The fleet's thread: runs its loop until stopped, then closes it (a loop left open
        is garbage-collected later and fails whichever test runs then)."""
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    async def _start(self) -> None:
        self.publisher = make_publisher(
            self.endpoint, keepalive_s=self.keepalive_s, connect_timeout_s=5.0, max_inflight=200
        )
        now = time.time()
        for spec in self.specs:
            dev = _Device(self, spec, now)
            dev.link = self.publisher.open(
                LinkSpec(
                    client_id=spec.device_id, username=spec.device_id, password=spec.password,
                    will_topic=dev.topic(Channel.STATE), subscriptions=(dev.topic(Channel.ACK),),
                ),
                dev,
            )  # fmt: skip
            self._devices[spec.device_id] = dev
            dev.reconnect()
        deadline = time.monotonic() + 20
        while any(d.connects == 0 for d in self._devices.values()):
            if time.monotonic() > deadline:
                missing = [d.spec.device_id for d in self._devices.values() if d.connects == 0]
                raise RuntimeError(f"devices did not connect: {missing[:5]} {self.failures[-3:]}")
            await asyncio.sleep(0.05)
        self._ticker = self.loop.create_task(self._tick())

    async def _stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for dev in self._devices.values():
            if dev.link is not None:
                dev.link.disconnect()
        await asyncio.sleep(0.05)
        await self.publisher.aclose()

    async def _tick(self) -> None:
        while True:
            now = time.time()
            for dev in self._devices.values():
                dev.tick(now)
            await asyncio.sleep(0.02)

    # -- plumbing --------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30) -> T:
        """Run ``coro`` on the fleet's loop and wait for its result."""
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout_s)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the fleet's loop and wait for its result."""

        async def wrapper() -> T:
            return fn()

        return self.run(wrapper())

    def unique_ts(self, t: float) -> float:
        """``t`` bumped so no two alarms of the fleet carry the same millisecond."""
        ms = int(t * 1000)
        while ms in self._used_ms:
            ms += 1
        self._used_ms.add(ms)
        return (ms + 0.5) / 1000.0  # the half keeps int(t * 1000) == ms despite rounding

    def device(self, device_id: str) -> _Device:
        return self._devices[device_id]

    @property
    def device_ids(self) -> list[str]:
        return list(self._devices)

    # -- actions (any thread) --------------------------------------------------------------

    def press(self, device_id: str, type_: str = "press") -> Press:
        """The resident presses the button now (retried until acked)."""
        return self.call(lambda: self._devices[device_id].press(type_))

    def press_all(self, device_ids: Iterable[str]) -> list[Press]:
        """Several residents press at the same moment (one loop turn)."""
        ids = list(device_ids)
        return self.call(lambda: [self._devices[d].press() for d in ids])

    def set_clock_offset(self, device_id: str, offset_s: float) -> None:
        def apply() -> None:
            self._devices[device_id].clock_offset_s = offset_s

        self.call(apply)

    def silence(self, device_id: str) -> None:
        """The device stops sending anything (flat battery, crashed firmware); TCP stays."""

        def apply() -> None:
            self._devices[device_id].silent = True

        self.call(apply)

    def resume(self, device_id: str) -> None:
        """A silenced or disconnected device works again (a heartbeat at once)."""

        def apply() -> None:
            dev = self._devices[device_id]
            dev.silent = False
            dev.offline = False
            if dev.link is not None and dev.link.connected:
                dev._publish(dev.vdev.heartbeat_now(dev.device_now()), track=True)
            else:
                dev.reconnect()

        self.call(apply)

    def drop_connection(self, device_id: str, *, reconnect: bool) -> None:
        """Cut the device's TCP connection without DISCONNECT (the broker sends its will)."""

        def apply() -> None:
            dev = self._devices[device_id]
            dev.offline = not reconnect
            if dev.link is not None:
                dev.link.drop()

        self.call(apply)

    def flood(self, device_id: str, rate_per_s: float) -> None:
        """One device publishes telemetry at ``rate_per_s`` (0 stops)."""

        def apply() -> None:
            dev = self._devices[device_id]
            dev.flood_rate = rate_per_s
            if rate_per_s:
                dev.flood_sent = dev.flood_confirmed = 0
                self.flood_started = time.time()

        self.call(apply)

    def flood_counts(self, device_id: str) -> tuple[int, int]:
        """(published, PUBACKed) by the flooding device."""
        return self.call(
            lambda: (self._devices[device_id].flood_sent, self._devices[device_id].flood_confirmed)
        )

    def publish_backlog(self, device_id: str, outs: list[Outgoing]) -> int:
        """Publish already-built messages as they are (a device flushing its store), tracked:
        alarms are booked as presses (and retried until acked), telemetry as attempted."""

        def apply() -> int:
            dev = self._devices[device_id]
            n = 0
            for out in outs:
                if out.is_event and out.type in ALARM_TYPES:
                    press = self.presses_by_id.get(out.msg_id)
                    if press is None:
                        press = Press(device_id, out.msg_id, out.seq, out.ts_ms, out.type,
                                      time.time(), payload=out.payload)  # fmt: skip
                        self.presses.append(press)
                        self.presses_by_id[out.msg_id] = press
                    if not press.settled:
                        dev.pending[out.msg_id] = press
                    n += dev.link is not None and dev.link.connected and (
                        dev.link.publish(dev.topic(Channel.EVENT), out.payload, qos=1,
                                         retain=False) is not None
                    )  # fmt: skip
                    press.attempts += 1
                else:
                    n += dev.publish_raw(out, track=True)
            return n

        return self.call(apply)

    def build_backlog(
        self, device_id: str, *, presses: int, readings: int, start: float, step_s: float
    ) -> list[Outgoing]:
        """Messages a device stored while it could not send: ``readings`` heartbeats and
        ``presses`` alarms from ``start`` on, ``step_s`` apart (device time), in order."""

        def build() -> list[Outgoing]:
            dev = self._devices[device_id]
            outs: list[Outgoing] = []
            t = start
            for i in range(presses + readings):
                t = self.unique_ts(t + step_s)
                if i % max(1, (presses + readings) // max(1, presses)) == 0 and (
                    sum(o.is_event for o in outs) < presses
                ):
                    outs.append(dev.vdev.event(t, "press"))
                else:
                    outs.append(dev.vdev.heartbeat(t))
            return outs

        return self.call(build)

    # -- the books -------------------------------------------------------------------------

    def telemetry(self, exclude: Iterable[str] = ()) -> tuple[set[str], set[str]]:
        """(confirmed, attempted) telemetry message ids over every device but ``exclude``."""
        skip = set(exclude)

        def collect() -> tuple[set[str], set[str]]:
            confirmed: set[str] = set()
            attempted: set[str] = set()
            for dev in self._devices.values():
                if dev.spec.device_id in skip:
                    continue
                confirmed |= dev.confirmed
                attempted |= dev.attempted
            return confirmed, attempted

        return self.call(collect)

    def stop_streams(self, timeout_s: float = 10.0) -> bool:
        """Stop telemetry and heartbeats (alarms are still retried) and wait until the broker
        has answered every telemetry publication: the books of telemetry are final."""

        def stop() -> None:
            self.streams_stopped = True
            for dev in self._devices.values():
                dev.flood_rate = 0.0

        self.call(stop)
        deadline = time.monotonic() + timeout_s
        while self.call(lambda: any(d.tokens for d in self._devices.values())):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def unsettled(self) -> list[Press]:
        return self.call(lambda: [p for p in self.presses if not p.settled])

    def wait_settled(self, timeout_s: float) -> bool:
        """Wait until every alarm has been acked (True) or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + timeout_s
        while self.unsettled():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
