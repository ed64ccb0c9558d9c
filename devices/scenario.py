"""Scripted incidents for the simulator: what happens to which device, and when.

A :class:`Scenario` is a list of :class:`Incident` values with times relative to the start of
the run (the moment every device has made its first connection attempt). It is loaded from
TOML or JSON::

    name = "night shift"
    duration_s = 900

    [[incident]]
    at_s = 30
    kind = "button_press"
    cancel_after_s = 12          # the resident presses "I'm OK" 12 s later

    [[incident]]
    at_s = 120
    kind = "fall"
    device = "wr-0001"           # optional: otherwise a device of the right kind is chosen
    peak_g = 3.6
    duration_s = 900             # on the floor for 15 minutes (omit: does not get up)

``device`` may be omitted: :func:`bind_scenario` then picks, in manifest order, the first device
of a fitting kind that no other incident has claimed and whose resident is not involved in
another incident (falling back to an unclaimed device, then to the first fitting one), so the
same scenario runs against any site manifest and incidents do not disturb each other.

Incident kinds and their parameters:

=================  ===========  ====================================================
kind               device kind  parameters
=================  ===========  ====================================================
button_press       button       ``long_press`` (bool), ``cancel_after_s``
sos                wearable     ``cancel_after_s``
fall               wearable     ``peak_g`` (3–4 g typical), ``duration_s`` on the floor
                                (None: stays down), ``flag`` (device sends a ``fall``
                                event; false = only the accelerometer shows it)
not_up             bed_sensor   ``duration_s`` kept in bed from ``at_s`` (None: for good)
night_bed_exit     bed_sensor   in bed for the 2 minutes before ``at_s``, then out;
                                ``duration_s`` until return (None: no return)
device_silent      any          ``mode``: ``will`` (connection cut, the broker publishes
                                the last will), ``disconnect`` (clean DISCONNECT, no
                                will, no message), ``mute`` (stays connected, publishes
                                nothing); ``duration_s`` until it comes back (None: never)
low_battery        button,      ``battery`` level (%): the device reports it in a
                   wearable     ``low_battery`` event and its heartbeats
=================  ===========  ====================================================
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import orjson

from devices.errors import ScenarioError
from devices.manifest import SiteManifest
from devices.protocol import DeviceKind

__all__ = [
    "Incident",
    "IncidentKind",
    "Scenario",
    "ScheduledIncident",
    "SilenceMode",
    "bind_scenario",
    "default_scenario",
    "load_scenario",
    "scenario_from_dict",
]


class IncidentKind(StrEnum):
    BUTTON_PRESS = "button_press"
    SOS = "sos"
    FALL = "fall"
    NOT_UP = "not_up"
    NIGHT_BED_EXIT = "night_bed_exit"
    DEVICE_SILENT = "device_silent"
    LOW_BATTERY = "low_battery"


class SilenceMode(StrEnum):
    WILL = "will"
    DISCONNECT = "disconnect"
    MUTE = "mute"


_FITS: Final[Mapping[IncidentKind, frozenset[DeviceKind]]] = {
    IncidentKind.BUTTON_PRESS: frozenset({DeviceKind.BUTTON}),
    IncidentKind.SOS: frozenset({DeviceKind.WEARABLE}),
    IncidentKind.FALL: frozenset({DeviceKind.WEARABLE}),
    IncidentKind.NOT_UP: frozenset({DeviceKind.BED_SENSOR}),
    IncidentKind.NIGHT_BED_EXIT: frozenset({DeviceKind.BED_SENSOR}),
    IncidentKind.DEVICE_SILENT: frozenset(DeviceKind),
    IncidentKind.LOW_BATTERY: frozenset({DeviceKind.BUTTON, DeviceKind.WEARABLE}),
}

_PARAMS: Final[Mapping[IncidentKind, frozenset[str]]] = {
    IncidentKind.BUTTON_PRESS: frozenset({"long_press", "cancel_after_s"}),
    IncidentKind.SOS: frozenset({"cancel_after_s"}),
    IncidentKind.FALL: frozenset({"peak_g", "duration_s", "flag"}),
    IncidentKind.NOT_UP: frozenset({"duration_s"}),
    IncidentKind.NIGHT_BED_EXIT: frozenset({"duration_s"}),
    IncidentKind.DEVICE_SILENT: frozenset({"mode", "duration_s"}),
    IncidentKind.LOW_BATTERY: frozenset({"battery"}),
}
_COMMON: Final = frozenset({"at_s", "kind", "device"})


@dataclass(frozen=True, slots=True)
class Incident:
    """One scripted incident (see the module documentation for the parameters per kind)."""

    at_s: float
    kind: IncidentKind
    device: str | None = None
    duration_s: float | None = None
    cancel_after_s: float | None = None
    long_press: bool = False
    peak_g: float = 3.5
    flag: bool = True
    mode: SilenceMode = SilenceMode.WILL
    battery: int = 8

    def fits(self, kind: DeviceKind) -> bool:
        return kind in _FITS[self.kind]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str = "custom"
    incidents: tuple[Incident, ...] = ()
    duration_s: float | None = None
    """Suggested length of a run (seconds after the start); None: until stopped."""


@dataclass(frozen=True, slots=True)
class ScheduledIncident:
    """An incident bound to a concrete device of the manifest."""

    at_s: float
    incident: Incident
    device: str
    device_kind: DeviceKind


def _number(
    raw: Mapping[str, Any], key: str, i: int, path: str | None, *, lo: float, hi: float
) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if type(value) not in (int, float) or not (lo <= value <= hi) or not math.isfinite(value):
        raise ScenarioError(f"{key} must be a number within {lo:g}..{hi:g}", path=path, incident=i)
    return float(value)


def _incident(raw: Any, i: int, path: str | None) -> Incident:
    if not isinstance(raw, Mapping):
        raise ScenarioError("incident must be a table/object", path=path, incident=i)
    try:
        kind = IncidentKind(str(raw.get("kind")))
    except ValueError:
        raise ScenarioError(
            f"kind must be one of {', '.join(k.value for k in IncidentKind)}", path=path, incident=i
        ) from None
    unknown = set(raw) - _COMMON - _PARAMS[kind]
    if unknown:
        raise ScenarioError(
            f"unknown parameter(s) for {kind.value}: {', '.join(sorted(unknown))}",
            path=path,
            incident=i,
        )
    at_s = _number(raw, "at_s", i, path, lo=0.0, hi=365 * 86400.0)
    if at_s is None:
        raise ScenarioError("at_s is required", path=path, incident=i)
    device = raw.get("device")
    if device is not None and not isinstance(device, str):
        raise ScenarioError("device must be a device id", path=path, incident=i)
    long_press = raw.get("long_press", False)
    flag = raw.get("flag", True)
    if type(long_press) is not bool or type(flag) is not bool:
        raise ScenarioError("long_press and flag must be booleans", path=path, incident=i)
    try:
        mode = SilenceMode(str(raw.get("mode", SilenceMode.WILL.value)))
    except ValueError:
        raise ScenarioError(
            "mode must be will, disconnect or mute", path=path, incident=i
        ) from None
    battery = raw.get("battery", 8)
    if type(battery) is not int or not 0 <= battery <= 100:
        raise ScenarioError("battery must be an integer within 0..100", path=path, incident=i)
    peak_g = _number(raw, "peak_g", i, path, lo=1.5, hi=16.0)
    return Incident(
        at_s=at_s,
        kind=kind,
        device=device,
        duration_s=_number(raw, "duration_s", i, path, lo=0.0, hi=365 * 86400.0),
        cancel_after_s=_number(raw, "cancel_after_s", i, path, lo=0.0, hi=3600.0),
        long_press=long_press,
        peak_g=3.5 if peak_g is None else peak_g,
        flag=flag,
        mode=mode,
        battery=battery,
    )


def scenario_from_dict(data: Mapping[str, Any], *, path: str | None = None) -> Scenario:
    """Build a scenario from its TOML/JSON object (``incident`` or ``incidents`` list)."""
    if not isinstance(data, Mapping):
        raise ScenarioError("scenario must be a table/object", path=path)
    name = data.get("name", "custom")
    if not isinstance(name, str):
        raise ScenarioError("name must be a string", path=path)
    raw_incidents = data.get("incident", data.get("incidents", []))
    if not isinstance(raw_incidents, list):
        raise ScenarioError("incident must be a list", path=path)
    incidents = tuple(_incident(raw, i, path) for i, raw in enumerate(raw_incidents))
    duration = data.get("duration_s")
    if duration is not None and (type(duration) not in (int, float) or duration <= 0):
        raise ScenarioError("duration_s must be a positive number", path=path)
    return Scenario(
        name=name,
        incidents=tuple(sorted(incidents, key=lambda inc: inc.at_s)),
        duration_s=None if duration is None else float(duration),
    )


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read a scenario from a ``.toml`` or ``.json`` file; raises :class:`ScenarioError`."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"cannot read: {exc.strerror}", path=str(p)) from None
    try:
        if p.suffix.lower() == ".toml":
            data: Any = tomllib.loads(raw.decode())
        else:
            data = orjson.loads(raw)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise ScenarioError(f"cannot parse: {type(exc).__name__}", path=str(p)) from None
    return scenario_from_dict(data, path=str(p))


def default_scenario() -> Scenario:
    """The demo: every kind of incident within ten minutes of the start."""
    return Scenario(
        name="demo",
        duration_s=600.0,
        incidents=tuple(
            sorted(
                (
                    Incident(at_s=20.0, kind=IncidentKind.BUTTON_PRESS),
                    Incident(at_s=30.0, kind=IncidentKind.NOT_UP, duration_s=3600.0),
                    Incident(at_s=60.0, kind=IncidentKind.BUTTON_PRESS, cancel_after_s=12.0),
                    Incident(at_s=90.0, kind=IncidentKind.NIGHT_BED_EXIT),
                    Incident(at_s=120.0, kind=IncidentKind.FALL, peak_g=3.6, duration_s=None),
                    Incident(at_s=150.0, kind=IncidentKind.SOS, cancel_after_s=20.0),
                    Incident(at_s=180.0, kind=IncidentKind.DEVICE_SILENT, mode=SilenceMode.WILL),
                    Incident(at_s=210.0, kind=IncidentKind.LOW_BATTERY, battery=9),
                    Incident(
                        at_s=240.0, kind=IncidentKind.DEVICE_SILENT, mode=SilenceMode.DISCONNECT
                    ),
                ),
                key=lambda inc: inc.at_s,
            )
        ),
    )


def bind_scenario(scenario: Scenario, manifest: SiteManifest) -> tuple[ScheduledIncident, ...]:
    """Bind every incident to a device of ``manifest``, sorted by time.

    Raises :class:`ScenarioError` if a named device is missing or of the wrong kind, or if no
    device of a fitting kind exists. ``device_silent`` incidents without a device prefer
    devices that no other incident uses, from the end of the manifest, so that silencing a
    device does not hide another incident.
    """
    kinds = {d.id: d.kind for d in manifest.devices}
    residents = {d.id: d.resident or d.id for d in manifest.devices}
    claimed: set[str] = {inc.device for inc in scenario.incidents if inc.device is not None}
    claimed_residents = {residents[d] for d in claimed if d in residents}
    order = sorted(
        enumerate(scenario.incidents),
        key=lambda item: (item[1].kind is IncidentKind.DEVICE_SILENT, item[0]),
    )
    result: dict[int, ScheduledIncident] = {}
    for i, inc in order:
        if inc.device is not None:
            kind = kinds.get(inc.device)
            if kind is None:
                raise ScenarioError("device is not in the manifest", incident=i)
            if not inc.fits(kind):
                raise ScenarioError(
                    f"{inc.kind.value} does not apply to a {kind.value}", incident=i
                )
            result[i] = ScheduledIncident(inc.at_s, inc, inc.device, kind)
            continue
        fitting = [d for d in manifest.devices if inc.fits(d.kind)]
        if inc.kind is IncidentKind.DEVICE_SILENT:
            fitting.reverse()
        if not fitting:
            raise ScenarioError(f"no device fits {inc.kind.value}", incident=i)
        chosen = next(
            (
                d
                for d in fitting
                if d.id not in claimed and residents[d.id] not in claimed_residents
            ),
            next((d for d in fitting if d.id not in claimed), fitting[0]),
        )
        claimed.add(chosen.id)
        claimed_residents.add(residents[chosen.id])
        result[i] = ScheduledIncident(inc.at_s, inc, chosen.id, chosen.kind)
    bound = [result[i] for i in range(len(scenario.incidents))]
    bound.sort(key=lambda s: s.at_s)
    return tuple(bound)
