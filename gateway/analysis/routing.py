"""Routing: which device kinds the runner knows, and where each stored message goes.

Two tables, each a plain mapping, so a new device kind or message type is one entry:

* :data:`DEVICE_KINDS`: per :class:`~devices.protocol.DeviceKind`, its :class:`KindRole`
  (its default heartbeat, and the resident's slot it fills: the wearable, whose accelerometer
  goes through a fall detector, or the bed sensor). A kind not listed is analysed for its
  health only (heartbeats, batteries) with the default heartbeat.
* :data:`MESSAGE_ROUTES`, :data:`READING_ROUTES` and :data:`EVENT_ROUTES`: per message class,
  reading type and event type, the :class:`MessageRouter` handler. A type not listed only
  proves its device alive.

Handlers are typed functions, looked up by key: no handler name is built from a string.

Adding a device kind (e.g. a door, motion or smoke sensor): one :data:`DEVICE_KINDS` entry
(its heartbeat setting), and one :data:`EVENT_ROUTES` (or :data:`READING_ROUTES`) entry per
new message type, whose handler is a function ``(router, device, message, received_at,
alarms)`` like :meth:`MessageRouter.on_low_battery`; it may live in the kind's own module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Final

from analytics.device_health import DeviceHealthTracker
from analytics.falls import clock_time
from analytics.types import Detection, DetectionKind
from devices.protocol import KIT_KINDS, AccelBatch, DeviceKind, Event, Message, Reading, State
from gateway.analysis.metrics import AnalysisMetrics
from gateway.analysis.records import DetectionRecord, clock_wrong_detection
from gateway.analysis.state import DeviceState, resident_record
from gateway.ingest import StoredMessage
from gateway.kit.runner import KitRunner
from gateway.settings import AnalysisSettings

log = logging.getLogger("gateway.analysis")

_BED_CONTEXT_S: Final = 30.0
"""The fall fusion is told the bed state on every change and at least this often (its
context goes stale after two minutes); telling it every 1 Hz sample would only cost time."""


@dataclass(frozen=True, slots=True)
class KindRole:
    """What the runner does with a device of one kind."""

    heartbeat_s: Callable[[AnalysisSettings], float]
    """The kind's default heartbeat interval (a device's own interval overrides it)."""
    wearable: bool = False
    """Fills the resident's wearable slot: accelerometer through a fall detector, and its
    not-worn check paused while the resident is away."""
    bed: bool = False
    """Fills the resident's bed sensor slot: vitals checked, its heartbeats tell the routine
    monitor the bed data is live."""
    kit: bool = False
    """A safe-home kit device (:mod:`gateway.kit.runner`): bound to its home (the location)
    when no resident is, its readings and events seen by the kit first."""


_KIT: Final = KindRole(lambda s: s.heartbeat_kit_s, kit=True)
"""The safe-home kit's sensors and hub: their own heartbeat setting, their events to the kit."""

DEVICE_KINDS: Final[Mapping[DeviceKind, KindRole]] = {
    DeviceKind.BUTTON: KindRole(lambda s: s.heartbeat_button_s),
    DeviceKind.BED_SENSOR: KindRole(lambda s: s.heartbeat_bed_sensor_s, bed=True),
    DeviceKind.WEARABLE: KindRole(lambda s: s.heartbeat_wearable_s, wearable=True),
    **{kind: _KIT for kind in KIT_KINDS},
}
HEALTH_ONLY: Final = KindRole(lambda s: s.heartbeat_button_s)
"""The role of a kind not in :data:`DEVICE_KINDS`."""


def role(kind: DeviceKind) -> KindRole:
    return DEVICE_KINDS.get(kind, HEALTH_ONLY)


def default_heartbeat_s(settings: AnalysisSettings, kind: str) -> float:
    """The heartbeat interval a device of ``kind`` keeps unless the registry gives its own."""
    try:
        return role(DeviceKind(kind)).heartbeat_s(settings)
    except ValueError:
        return HEALTH_ONLY.heartbeat_s(settings)


class MessageRouter:
    """Hands each stored message to the detectors of its device and resident.

    ``emit`` queues a finding for writing; ``cancels`` (None without a cancel hook) collects
    the resident's "I'm OK" as (resident id, device time, device id). While ``quiet`` (the
    start-up replay) nothing is logged per finding.
    """

    def __init__(
        self,
        *,
        health: DeviceHealthTracker,
        metrics: AnalysisMetrics,
        emit: Callable[[DetectionRecord], None],
        artefact_movement: float,
        cancels: list[tuple[str, float, str | None]] | None,
        kit: KitRunner | None = None,
    ) -> None:
        self.health = health
        self.kit = kit
        self.quiet = False
        self.clock_wrong: dict[str, float] = {}
        """Devices with an open "device clock wrong" condition: since when (receive time)."""
        self._m = metrics
        self._emit = emit
        self._artefact = artefact_movement
        self._cancels = cancels

    def route(self, dev: DeviceState, sm: StoredMessage, alarms: bool) -> None:
        """Analyse ``sm`` of ``dev`` (``alarms``: act on alarms and accelerometer signals)."""
        if self.clock_wrong or sm.clock_error_s is not None:
            self._device_clock(dev, sm)
        MESSAGE_ROUTES[type(sm.message)](self, dev, sm, alarms)

    # -- per message class ------------------------------------------------------------------

    def on_accel(self, dev: DeviceState, sm: StoredMessage, alarms: bool) -> None:
        self.health.on_seen(dev.info.device_id, sm.received_at)
        if alarms and dev.detector is not None:
            msg = sm.message
            assert isinstance(msg, AccelBatch)
            found = dev.detector.update(msg.envelope.ts, msg.samples)
            if found:
                fusion = dev.resident.fusion
                for candidate in found:
                    fusion.add_candidate(candidate)
                self._m.fall_candidates.inc(len(found))

    def on_reading(self, dev: DeviceState, sm: StoredMessage, alarms: bool) -> None:
        self.health.on_seen(dev.info.device_id, sm.received_at)
        msg = sm.message
        assert isinstance(msg, Reading)
        if self.kit is not None and role(dev.info.kind).kit:
            self.kit.on_reading(dev.resident, dev.info, msg)
        handler = READING_ROUTES.get(msg.envelope.type)
        if handler is not None:
            handler(self, dev, msg, sm.received_at)

    def on_event(self, dev: DeviceState, sm: StoredMessage, alarms: bool) -> None:
        self.health.on_seen(dev.info.device_id, sm.received_at)
        msg = sm.message
        assert isinstance(msg, Event)
        if (
            self.kit is not None
            and role(dev.info.kind).kit
            and self.kit.on_event(dev.resident, dev.info, msg.envelope, msg.data, alarms)
        ):
            return
        handler = EVENT_ROUTES.get(msg.envelope.type)
        if handler is not None:
            handler(self, dev, msg, sm.received_at, alarms)

    def on_state(self, dev: DeviceState, sm: StoredMessage, alarms: bool) -> None:
        msg = sm.message
        assert isinstance(msg, State)
        device_id = dev.info.device_id
        self.health.on_state(device_id, sm.received_at, msg.online)
        if msg.battery is not None:
            self.health.on_battery(device_id, sm.received_at, float(msg.battery))

    # -- readings by type -------------------------------------------------------------------

    def on_vitals(self, dev: DeviceState, msg: Reading, received: float) -> None:
        res = dev.resident
        t = msg.envelope.ts
        presence = bool(msg.presence)
        movement = msg.movement if msg.movement is not None else 0.0
        res.routine.on_bed_sample(t, presence, movement)
        res.vitals.on_sample(t, presence, msg.heart_rate, msg.breathing_rate, movement)
        if presence and movement < self._artefact:
            res.counts.count(t, msg.heart_rate, msg.breathing_rate)
        if presence != res.bed_reported or t - res.bed_reported_at >= _BED_CONTEXT_S:
            res.fusion.bed_presence(t, presence)
            res.bed_reported = presence
            res.bed_reported_at = t

    def on_steps(self, dev: DeviceState, msg: Reading, received: float) -> None:
        if msg.steps:
            dev.resident.routine.on_steps(msg.envelope.ts, msg.steps)

    def on_heartbeat(self, dev: DeviceState, msg: Reading, received: float) -> None:
        device_id = dev.info.device_id
        if msg.battery is not None:
            self.health.on_battery(device_id, received, float(msg.battery))
        if msg.worn is not None:
            self.health.on_worn(device_id, received, msg.worn)
        if role(dev.info.kind).bed:
            dev.resident.routine.on_bed_heartbeat(msg.envelope.ts)

    # -- events by type ---------------------------------------------------------------------

    def on_alarm(self, dev: DeviceState, msg: Event, received: float, alarms: bool) -> None:
        """A button press or long press, a wearable's SOS: an emergency call at once."""
        res = dev.resident
        env = msg.envelope
        res.routine.on_activity(env.ts)
        if not alarms:
            return
        button = dev.info.kind is DeviceKind.BUTTON
        for call in res.fusion.sos(env.ts):
            details = dict(call.details)
            details.update(source=dev.info.kind.value, event=env.type)
            reason = call.reason
            if button:
                how = "long-pressed" if env.type == "long_press" else "pressed"
                reason = f"emergency call button {how} at {clock_time(env.ts, res.utc_offset)}"
                fall_started = details.get("fall_started")
                if isinstance(fall_started, float | int):
                    reason += f", {env.ts - fall_started:.0f} s after a suspected fall"
            self._emit(
                resident_record(
                    res,
                    replace(call, reason=reason, details=details),
                    dev.info.device_id,
                    alarms=((dev.info.device_id, env.msg_id),),
                )
            )

    def on_cancel(self, dev: DeviceState, msg: Event, received: float, alarms: bool) -> None:
        """The resident's "I'm OK": cancels a suspected fall, handed to the cancel hook."""
        res = dev.resident
        t = msg.envelope.ts
        res.routine.on_activity(t)
        if not alarms:
            return
        if self._cancels is not None and res.resident_id is not None:
            self._cancels.append((res.resident_id, t, dev.info.device_id))
        cancelled = res.fusion.cancel(t)
        if cancelled:
            self._m.falls_cancelled.inc(len(cancelled))
            if not self.quiet:
                log.info(
                    "suspected fall cancelled by the resident",
                    extra={"subject": res.subject, "device": dev.info.device_id},
                )

    def on_fall_flag(self, dev: DeviceState, msg: Event, received: float, alarms: bool) -> None:
        if alarms:
            res = dev.resident
            res.fusion.device_fall_flag(msg.envelope.ts)
            res.fall_flags.append((msg.envelope.ts, dev.info.device_id, msg.envelope.msg_id))

    def on_bed_change(self, dev: DeviceState, msg: Event, received: float, alarms: bool) -> None:
        res = dev.resident
        t = msg.envelope.ts
        in_bed = msg.envelope.type == "bed_entry"
        if in_bed:
            res.routine.on_bed_entry(t)
        else:
            res.routine.on_bed_exit(t)
        res.fusion.bed_presence(t, in_bed)
        res.bed_reported = in_bed
        res.bed_reported_at = t

    def on_worn(self, dev: DeviceState, msg: Event, received: float, alarms: bool) -> None:
        self.health.on_worn(dev.info.device_id, received, msg.envelope.type == "worn")

    def on_low_battery(self, dev: DeviceState, msg: Event, received: float, alarms: bool) -> None:
        battery = msg.data.get("battery")
        if isinstance(battery, int | float):
            self.health.on_battery(dev.info.device_id, received, float(battery))

    # -- device clock -----------------------------------------------------------------------

    def _device_clock(self, dev: DeviceState, sm: StoredMessage) -> None:
        """An alarm with an implausible device time raises "device clock wrong" (once: a
        condition); any later message with a plausible time clears it."""
        device_id = dev.info.device_id
        error = sm.clock_error_s
        if error is None:
            since = self.clock_wrong.get(device_id)
            if since is None or sm.received_at <= since + 0.001:
                return
            del self.clock_wrong[device_id]
            det = Detection(
                kind=DetectionKind.DEVICE_CLOCK_WRONG,
                subject=device_id,
                time=sm.received_at,
                reason="device clock right again: a message came with a plausible time",
                resolved=True,
                started=since,
            )
        else:
            if device_id in self.clock_wrong:
                return
            started = round(sm.received_at, 3)
            self.clock_wrong[device_id] = started
            det = clock_wrong_detection(device_id, started, error)
        self._emit(
            DetectionRecord.of(
                det,
                site_id=dev.info.site_id,
                resident_id=None,
                device_id=device_id,
                location_id=dev.info.location_id,
            )
        )


MessageHandler = Callable[[MessageRouter, DeviceState, StoredMessage, bool], None]
ReadingHandler = Callable[[MessageRouter, DeviceState, Reading, float], None]
EventHandler = Callable[[MessageRouter, DeviceState, Event, float, bool], None]

MESSAGE_ROUTES: Final[Mapping[type[Message], MessageHandler]] = {
    AccelBatch: MessageRouter.on_accel,
    Reading: MessageRouter.on_reading,
    Event: MessageRouter.on_event,
    State: MessageRouter.on_state,
}
READING_ROUTES: Final[Mapping[str, ReadingHandler]] = {
    "vitals": MessageRouter.on_vitals,
    "steps": MessageRouter.on_steps,
    "heartbeat": MessageRouter.on_heartbeat,
}
EVENT_ROUTES: Final[Mapping[str, EventHandler]] = {
    "press": MessageRouter.on_alarm,
    "long_press": MessageRouter.on_alarm,
    "sos": MessageRouter.on_alarm,
    "cancel": MessageRouter.on_cancel,
    "fall": MessageRouter.on_fall_flag,
    "bed_exit": MessageRouter.on_bed_change,
    "bed_entry": MessageRouter.on_bed_change,
    "worn": MessageRouter.on_worn,
    "not_worn": MessageRouter.on_worn,
    "low_battery": MessageRouter.on_low_battery,
}
