"""Per-resident and per-device state of the analysis runner."""

from __future__ import annotations

import math

from analytics.fall_fusion import FallFusion
from analytics.falls import FallDetector
from analytics.routine import RoutineMonitor
from analytics.types import Detection
from analytics.vitals import VitalsMonitor
from gateway.analysis.dayrows import VitalsCounter
from gateway.analysis.records import DetectionRecord
from gateway.registry import DeviceInfo


class ResidentState:
    """Monitors of one resident (or of a device bound to no resident)."""

    __slots__ = (
        "bed_device",
        "bed_reported",
        "bed_reported_at",
        "counts",
        "fall_flags",
        "fusion",
        "location",
        "resident_id",
        "routine",
        "site",
        "subject",
        "utc_offset",
        "vitals",
        "wearable",
    )

    def __init__(
        self,
        subject: str,
        *,
        resident_id: str | None,
        site: str,
        location: str | None,
        utc_offset: float,
        routine: RoutineMonitor,
        vitals: VitalsMonitor,
        fusion: FallFusion,
        counts: VitalsCounter,
    ) -> None:
        self.subject = subject
        self.resident_id = resident_id
        self.site = site
        self.location = location
        self.utc_offset = utc_offset  # the site's
        self.routine = routine
        self.vitals = vitals
        self.fusion = fusion
        self.counts = counts
        self.bed_device: str | None = None
        self.wearable: str | None = None
        self.bed_reported: bool | None = None
        self.bed_reported_at = -math.inf
        # Device fall flags not yet decided by the fusion: (device time, device, message id).
        self.fall_flags: list[tuple[float, str, str]] = []


class DeviceState:
    """A device being analysed: its registry entry, its resident, its fall detector."""

    __slots__ = ("detector", "info", "resident")

    def __init__(
        self, info: DeviceInfo, resident: ResidentState, detector: FallDetector | None
    ) -> None:
        self.info = info
        self.resident = resident
        self.detector = detector


def resident_record(
    res: ResidentState,
    det: Detection,
    device_id: str | None,
    alarms: tuple[tuple[str, str], ...] = (),
) -> DetectionRecord:
    """A finding about ``res`` with its context (``device_id``: the device behind it)."""
    return DetectionRecord.of(
        det,
        site_id=res.site,
        resident_id=res.resident_id,
        device_id=device_id,
        location_id=res.location,
        alarms=alarms,
    )
