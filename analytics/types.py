"""Values shared by every detector and by the gateway's analysis runner.

Time is always passed in as seconds since the Unix epoch (float, UTC). Detectors never
read a clock. Local time of day, where a detector needs it, is derived from an explicit
UTC offset handed in with the detector's parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

DEFAULT_UTC_OFFSET_S: Final = 8 * 3600.0
"""The UTC offset (seconds) of a site that has none of its own: China's, UTC+8.

The one definition of this default: a site's own ``utc_offset_s`` (table ``sites``) always
wins; this applies only where no site is known (a detector's default parameters, a device
bound to a site missing from the registry)."""


class DetectionKind(StrEnum):
    """What a detector found. Care kinds concern the resident, technical kinds the devices."""

    # care
    EMERGENCY_CALL = "emergency_call"
    FALL = "fall"
    NOT_UP = "not_up"  # not out of bed by the usual rise time plus a margin
    NIGHT_BED_EXIT = "night_bed_exit"  # out of bed at night and not back within N minutes
    NO_ACTIVITY = "no_activity"  # no activity evidence at all for N hours in waking time
    MOTIONLESS_IN_BED = "motionless_in_bed"
    VITALS_ABNORMAL = "vitals_abnormal"
    APNEA = "apnea"
    NOT_WORN = "not_worn"
    # the safe-home kit (issue 12): hazards first (priority 1, their own escalation ladder)
    SMOKE_ALARM = "smoke_alarm"
    GAS_ALARM = "gas_alarm"
    WATER_LEAK = "water_leak"  # a care incident of lower priority (the resident may slip)
    DOOR_OPEN_AT_NIGHT = "door_open_at_night"  # opened at night and not closed, or left
    DOOR_UNUSED = "door_unused"  # an elder living alone has not opened the door for days
    # technical
    DEVICE_OFFLINE = "device_offline"
    HUB_OFFLINE = "hub_offline"  # one home's devices all silent together
    SITE_OFFLINE = "site_offline"  # a whole site's connection silent
    LOW_BATTERY = "low_battery"
    DEVICE_CLOCK_WRONG = "device_clock_wrong"  # an alarm came with an implausible device time
    DEVICE_TAMPERED = "device_tampered"  # a kit sensor's tamper switch (case open, removed)

    @property
    def technical(self) -> bool:
        return self in _TECHNICAL


_TECHNICAL = frozenset(
    {
        DetectionKind.DEVICE_OFFLINE,
        DetectionKind.HUB_OFFLINE,
        DetectionKind.SITE_OFFLINE,
        DetectionKind.LOW_BATTERY,
        DetectionKind.DEVICE_CLOCK_WRONG,
        DetectionKind.DEVICE_TAMPERED,
    }
)

HAZARDS = frozenset({DetectionKind.SMOKE_ALARM, DetectionKind.GAS_ALARM})
"""Fire and gas: top priority, their own escalation ladder, never merged with care incidents."""

DetailValue = float | int | str | bool | None


@dataclass(frozen=True, slots=True)
class Detection:
    """One finding of a detector, with a plain-language explanation.

    ``subject`` names what the detection is about: a device id for device-level
    detectors, a resident id where the runner feeds a resident-level detector, a
    location id for a silent home, a site id for a silent site.
    ``time`` is when the condition was established (epoch seconds);
    ``started`` is when the underlying episode began, if different.
    ``resolved`` is True for the detection that says a condition has cleared
    (e.g. vitals back in range, device back online); runners use it to close the loop.
    """

    kind: DetectionKind
    subject: str
    time: float
    reason: str
    details: Mapping[str, DetailValue] = field(default_factory=dict)
    started: float | None = None
    resolved: bool = False
