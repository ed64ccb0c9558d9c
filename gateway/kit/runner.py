"""The analysis runner's side of the safe-home kit: hazard alarms and home activity.

Called from :class:`gateway.analysis.AnalysisRunner` (a few hook lines, routed by device
kind), on its worker thread, with the runner's per-home state (:class:`Home`):

* smoke and gas ``alarm`` raise ``SMOKE_ALARM`` / ``GAS_ALARM`` (priority 1; the incident
  intake gives them the hazard ladder of ``config/escalation.toml``; their own incident type,
  so they never merge with care incidents), one condition per detector (:func:`hazard_alarm`):
  a second detector, or a re-alarm after a ``clear``, joins the open incident at once as a
  trigger (or raises a new one when it was resolved); ``clear`` resolves the detector's
  detection (the incident stays for staff to resolve); a detector's ``test`` press is
  recorded (stored event, a log line and a counter), never escalated;
* a water ``leak`` raises ``WATER_LEAK`` (a care incident of priority 3), one condition per
  sensor as for hazards, ``dry`` resolves it;
* ``alarm`` and ``leak`` are alarm events (``devices.protocol.ALARM_EVENT_TYPES``): ingest
  wrote their pending marker, and the detection carries their key (device id, message id) so
  the intake marks it handled; a marker nobody handled is raised by
  :mod:`gateway.escalation.recovery` with the same detection;
* ``tamper`` raises the technical ``DEVICE_TAMPERED`` about the device, ``tamper_clear``
  resolves it;
* door and motion events, occupancy counts and every kit heartbeat feed one
  :class:`analytics.home_activity.HomeActivity` per home (``NO_ACTIVITY``, ``NOT_UP``,
  ``DOOR_OPEN_AT_NIGHT``), fused with the home's bed sensor when it has one; staff-set
  away (the resident's registry status) is applied at each check, and so are the family's
  away periods (days not learned from);
* a home with a door contact also has a :class:`analytics.door_unused.DoorUnused`: no door
  opening for ``kit.door_unused_days`` while the elder is not away raises the care finding
  ``DOOR_UNUSED`` (a welfare check; the visits sweep opens a door-knock task when nobody
  resolves it), resolved when a door opens. The last opening before a restart comes from the
  store (:meth:`KitRunner.restore_door`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from analytics.door_unused import DoorUnused, DoorUnusedParams
from analytics.home_activity import HomeActivity, HomeActivityParams
from analytics.routine import RoutineParams
from analytics.types import Detection, DetectionKind
from devices.protocol import DeviceKind, Envelope, Reading
from gateway.registry import DeviceInfo
from gateway.visits.sensitivity import Sensitivity, for_categories, tune_home_activity

log = logging.getLogger(__name__)

BED_FRESH_S = 90.0
"""The bed sensor's presence counts as current this long after it was last reported."""


class Routine(Protocol):
    params: RoutineParams

    def on_activity(self, t: float) -> None: ...


class Home(Protocol):
    """What the kit needs of the runner's per-resident (or per-place) state."""

    @property
    def subject(self) -> str: ...
    @property
    def resident_id(self) -> str | None: ...
    @property
    def utc_offset(self) -> float: ...
    @property
    def routine(self) -> Routine: ...
    @property
    def bed_device(self) -> str | None: ...
    @property
    def bed_reported(self) -> bool | None: ...
    @property
    def bed_reported_at(self) -> float: ...


class Resident(Protocol):
    @property
    def care_level(self) -> int: ...
    @property
    def away(self) -> bool: ...
    @property
    def categories(self) -> frozenset[str]: ...
    @property
    def away_periods(self) -> tuple[tuple[float, float], ...]: ...


AlarmKeys = tuple[tuple[str, str], ...]


class EmitHome(Protocol):
    """Queue a finding about a home; ``alarms`` are the stored alarm events (device id,
    message id) it accounts for, whose pending markers the intake takes."""

    def __call__(
        self, home: Any, det: Detection, device_id: str | None, alarms: AlarmKeys = ()
    ) -> None: ...


EmitDevice = Callable[[Detection], None]

_HAZARD: Mapping[DeviceKind, tuple[DetectionKind, str, str]] = {
    DeviceKind.SMOKE_DETECTOR: (DetectionKind.SMOKE_ALARM, "烟雾报警", "smoke alarm"),
    DeviceKind.GAS_DETECTOR: (DetectionKind.GAS_ALARM, "燃气泄漏报警", "gas alarm"),
}


def _clock(t: float, offset: float) -> str:
    sod = (t + offset) % 86400.0
    return f"{int(sod // 3600):02d}:{int(sod % 3600 // 60):02d}"


def hazard_alarm(
    kind: DeviceKind,
    subject: str,
    *,
    t: float,
    utc_offset: float,
    device_id: str,
    data: Mapping[str, Any],
) -> Detection:
    """A smoke or gas detector's ``alarm`` at ``t`` (``data``: the event's, a gas ``level``);
    the live path and the recovery of its pending marker build the same detection.

    The condition is the detector's own (``details["condition"]``: its device id): a second
    detector of the home alarming while the first still sounds is a new raise, stored and
    joined to the open incident at once as a trigger (a spreading fire); the same detector's
    repeated ``alarm`` messages are the continuation of its open condition (nothing new), and
    its ``clear`` resolves its own condition only."""
    det_kind, zh, en = _HAZARD[kind]
    clock = _clock(t, utc_offset)
    level = data.get("level")
    extra = f"（{level}）" if isinstance(level, str) else ""
    reason = (
        f"{zh}{extra}：{clock} 报警，请立即拨打 119 / {en}{f' ({level})' if extra else ''}"
        f" at {clock}: call 119"
    )
    details: dict[str, Any] = {"device": device_id, "hazard": True, "condition": device_id}
    if isinstance(level, str):
        details["level"] = level
    return Detection(det_kind, subject, t, reason, details, started=t)


def water_leak(
    subject: str, t: float, utc_offset: float, device_id: str, *, resolved: bool
) -> Detection:
    """A water ``leak`` (or, ``resolved``, ``dry`` again) at ``t``: like a hazard, one
    condition per sensor (a second sensor's leak is a new trigger of the open incident)."""
    clock = _clock(t, utc_offset)
    reason = (
        f"漏水已消除 {clock} / water leak dry again at {clock}"
        if resolved
        else f"漏水：{clock} 检测到地面积水，老人可能滑倒 / water leak detected at "
        f"{clock}: the resident may slip"
    )
    return Detection(
        DetectionKind.WATER_LEAK, subject, t, reason, {"device": device_id, "condition": device_id},
        started=t, resolved=resolved,
    )  # fmt: skip


def alarm_detection(
    kind: str | None,
    type_: str,
    *,
    subject: str,
    t: float,
    utc_offset: float,
    device_id: str,
    data: Mapping[str, Any],
) -> Detection | None:
    """The detection of a kit alarm event (``alarm`` of a smoke or gas detector, ``leak``),
    None for any other event. An ``alarm`` of a device whose kind is unknown (not in the
    registry any more) is taken for a smoke alarm: a hazard, on the hazard ladder."""
    if type_ == "leak":
        return water_leak(subject, t, utc_offset, device_id, resolved=False)
    if type_ != "alarm":
        return None
    gas = kind == DeviceKind.GAS_DETECTOR
    hazard = DeviceKind.GAS_DETECTOR if gas else DeviceKind.SMOKE_DETECTOR
    return hazard_alarm(hazard, subject, t=t, utc_offset=utc_offset, device_id=device_id, data=data)


class KitRunner:
    """Kit state of every home, keyed by the home's subject."""

    def __init__(
        self,
        emit_home: EmitHome,
        emit_device: EmitDevice,
        residents: Callable[[], Mapping[str, Resident]],
        *,
        sensitivity: Mapping[str, Sensitivity] | None = None,
        door_unused_s: float = 3 * 86400.0,
        door_alive_s: float = 3 * 3600.0,
    ) -> None:
        self._sensitivity: Mapping[str, Sensitivity] = sensitivity or {}
        self._emit_home = emit_home
        self._emit_device = emit_device
        self._residents = residents
        self._homes: dict[str, tuple[Any, HomeActivity]] = {}
        self._doors: dict[str, tuple[Any, DoorUnused]] = {}
        self._door_unused_s = door_unused_s
        self._door_alive_s = door_alive_s
        self.tests_recorded = 0

    def _params(self, home: Home) -> HomeActivityParams:
        """The home's thresholds: its resident's care level, tuned by their risk categories."""
        resident = self._residents().get(home.resident_id or "")
        level = 2 if resident is None else resident.care_level
        params = HomeActivityParams.for_care_level(level, utc_offset_s=home.utc_offset)
        risks = for_categories(resident.categories if resident else (), self._sensitivity)
        return tune_home_activity(params, risks)

    def retune(self, resident_id: str) -> None:
        """The resident's care level or risk categories changed: new thresholds for their
        homes' monitors (what was learned is kept)."""
        for home, monitor in self._homes.values():
            if home.resident_id == resident_id:
                monitor.retune(self._params(home))

    def _activity(self, home: Home) -> HomeActivity:
        entry = self._homes.get(home.subject)
        if entry is not None and entry[0] is home:
            return entry[1]
        monitor = HomeActivity(home.subject, self._params(home))
        if entry is not None:
            monitor = entry[1]  # the same home, re-bound: keep what was learned
        self._homes[home.subject] = (home, monitor)
        return monitor

    def _door(self, home: Home) -> DoorUnused:
        """The home's "door not opened for days" (a home with a door contact)."""
        entry = self._doors.get(home.subject)
        if entry is not None and entry[0] is home:
            return entry[1]
        if entry is not None:
            monitor = entry[1]  # the same home, re-bound: keep what it knows
        else:
            params = DoorUnusedParams(unused_s=self._door_unused_s, alive_s=self._door_alive_s,
                                      utc_offset_s=home.utc_offset)  # fmt: skip
            monitor = DoorUnused(home.subject, params)
        self._doors[home.subject] = (home, monitor)
        return monitor

    def restore_door(self, home: Home, last_open: float | None) -> None:
        """A door contact of ``home`` at start-up, with its last opening from the store."""
        door = self._door(home)
        if last_open is not None:
            door.restore(last_open)

    # -- input ------------------------------------------------------------------------------

    def on_event(
        self, home: Home, info: DeviceInfo, env: Envelope, data: Mapping[str, Any], alarms: bool
    ) -> bool:
        """Handle a kit event; False for the ones the runner handles itself (low_battery)."""
        kind, type_, t = info.kind, env.type, env.ts
        device_id = info.device_id
        if type_ == "low_battery":
            return False
        if type_ in ("tamper", "tamper_clear"):
            if alarms or type_ == "tamper_clear":
                self._emit_device(self._tamper(device_id, t, type_ == "tamper_clear"))
            return True
        ha = self._activity(home)
        if kind is DeviceKind.MOTION_SENSOR:
            self._takes_over(home)
        if kind is DeviceKind.DOOR_CONTACT:
            self._door(home).on_alive(t)
        if kind is DeviceKind.DOOR_CONTACT and type_ in ("open", "close"):
            ha.on_door(t, type_ == "open", device_id)
            self._door(home).on_door(t, type_ == "open", device_id)
            home.routine.on_activity(t)
        elif kind is DeviceKind.MOTION_SENSOR and type_ == "motion":
            ha.on_motion(t)
            home.routine.on_activity(t)
        elif kind in _HAZARD:
            self._hazard(home, info, env, data, alarms)
        elif kind is DeviceKind.WATER_LEAK and type_ in ("leak", "dry"):
            resolved = type_ == "dry"
            if alarms or resolved:
                det = water_leak(home.subject, t, home.utc_offset, device_id, resolved=resolved)
                keys = () if resolved else ((device_id, env.msg_id),)
                self._emit_home(home, det, device_id, keys)
        ha.on_alive(t)
        return True

    def _hazard(
        self, home: Home, info: DeviceInfo, env: Envelope, data: Mapping[str, Any], alarms: bool
    ) -> None:
        det_kind, zh, en = _HAZARD[info.kind]
        type_, t = env.type, env.ts
        clock = _clock(t, home.utc_offset)
        if type_ == "test":
            self.tests_recorded += 1
            log.info(
                "hazard detector test press recorded (not escalated)",
                extra={"device": info.device_id, "kind": info.kind.value},
            )
            return
        if type_ == "valve_shut":
            log.info("gas valve shut", extra={"device": info.device_id, "cause": data.get("cause")})
            return
        if type_ == "alarm" and alarms:
            det = hazard_alarm(
                info.kind, home.subject, t=t, utc_offset=home.utc_offset,
                device_id=info.device_id, data=data,
            )  # fmt: skip
            self._emit_home(home, det, info.device_id, ((info.device_id, env.msg_id),))
        elif type_ == "clear":
            reason = f"{zh}已解除 {clock} / {en} cleared at {clock}"
            details = {"device": info.device_id, "condition": info.device_id}
            det = Detection(det_kind, home.subject, t, reason, details, resolved=True)
            self._emit_home(home, det, info.device_id)

    @staticmethod
    def _tamper(device_id: str, t: float, resolved: bool) -> Detection:
        reason = (
            "防拆开关已复位 / tamper switch back in place"
            if resolved
            else "设备被拆动（外壳打开或被取下）/ device tampered (case opened or removed)"
        )
        return Detection(
            DetectionKind.DEVICE_TAMPERED, device_id, t, reason, {}, started=t, resolved=resolved
        )

    def on_reading(self, home: Home, info: DeviceInfo, msg: Reading) -> None:
        """Kit telemetry: every heartbeat shows the home's sensors work; occupancy counts
        with motion in them are motion at the interval's end."""
        ha = self._activity(home)
        t = msg.envelope.ts
        if info.kind is DeviceKind.MOTION_SENSOR:
            self._takes_over(home)
        elif info.kind is DeviceKind.DOOR_CONTACT:
            self._door(home).on_alive(t)
        if msg.envelope.type == "occupancy" and msg.steps:
            ha.on_motion(t)
            home.routine.on_activity(t)
        else:
            ha.on_alive(t)

    @staticmethod
    def _takes_over(home: Home) -> None:
        """A home with a motion sensor: its "no activity" comes from the motion-based routine
        (:mod:`analytics.home_activity`), not from the bed routine's generic rule, which
        would raise a second one for the same silence."""
        params = home.routine.params
        if params.no_activity_enabled:
            home.routine.params = replace(params, no_activity_enabled=False)

    # -- periodic ---------------------------------------------------------------------------

    def check(self, now: float) -> None:
        residents = self._residents()
        for home, ha in self._homes.values():
            resident = residents.get(home.resident_id or "")
            away = resident is not None and resident.away
            if away != ha.away_set:
                ha.set_away(now, away)
            ha.set_away_periods(resident.away_periods if resident is not None else ())
            if home.bed_device is not None and now - home.bed_reported_at <= BED_FRESH_S:
                in_bed = bool(home.bed_reported)
                ha.on_bed(home.bed_reported_at, in_bed, in_bed)
            for det in ha.check(now):
                self._emit_home(home, det, None)
        for home, door in self._doors.values():
            resident = residents.get(home.resident_id or "")
            away = resident is not None and resident.away
            if away != door.away_set:
                door.set_away(now, away)
            door.set_away_periods(resident.away_periods if resident is not None else ())
            for det in door.check(now):
                self._emit_home(home, det, None)
