"""The runner's synchronous core: registry bindings, periodic checks, output with retries.

:class:`AnalysisCore` owns every detector's state. It is used as is (through
:class:`~gateway.analysis.runner.AnalysisRunner`, which adds the worker thread) by replay and
benchmarks: :meth:`~AnalysisCore.rebuild`, :meth:`~AnalysisCore.feed`,
:meth:`~AnalysisCore.advance`, :meth:`~AnalysisCore.flush`. Messages are routed by
:class:`~gateway.analysis.routing.MessageRouter`, conditions deduplicated and reconciled by
:class:`~gateway.analysis.conditions.OpenConditions`, day rows kept by
:class:`~gateway.analysis.dayrows.DayRows`.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Final

from analytics.device_health import DeviceHealthParams, DeviceHealthTracker
from analytics.fall_fusion import FallFusion, FusionParams
from analytics.falls import FallDetector, FallParams
from analytics.routine import DaySummary, RoutineMonitor, RoutineParams
from analytics.types import Detection, DetectionKind
from analytics.vitals import HR_BINS, RR_BINS, VitalsMonitor
from devices.protocol import ACCEL_FS, DeviceKind
from gateway.analysis.conditions import OpenConditions
from gateway.analysis.dayrows import DayRows, padded
from gateway.analysis.metrics import AnalysisMetrics
from gateway.analysis.records import (
    DetectionRecord,
    DeviceRestore,
    RegistrySnapshot,
    ResidentInfo,
    StoreUnavailableError,
    VitalsDay,
)
from gateway.analysis.routing import DEVICE_KINDS, MessageRouter, role
from gateway.analysis.state import DeviceState, ResidentState, resident_record
from gateway.analysis.store import AnalysisStore
from gateway.ingest import StoredMessage
from gateway.kit.runner import KitRunner
from gateway.registry import DeviceInfo
from gateway.settings import AnalysisSettings
from gateway.settings.kit import KitSettings
from gateway.visits.sensitivity import Sensitivity, for_categories, tune_routine

log = logging.getLogger("gateway.analysis")

Clock = Callable[[], float]

_RETRY_MIN_S: Final = 0.5
_RETRY_MAX_S: Final = 30.0


class AnalysisCore:
    """Owns every detector's state; fed with stored messages, writes detections to a store."""

    def __init__(
        self,
        settings: AnalysisSettings,
        store: AnalysisStore,
        metrics: AnalysisMetrics,
        *,
        clock: Clock,
        on_cancel: Callable[[str, float, str | None], None] | None,
        sensitivity: Mapping[str, Sensitivity] | None = None,
        kit: KitSettings | None = None,
    ) -> None:
        self.settings = settings
        # Risk category -> factors on the inactivity rules (config/visits.toml [sensitivity]).
        self._sensitivity: Mapping[str, Sensitivity] = sensitivity or {}
        self._store = store
        # The resident's "I'm OK" (resident id, device time, device id), handed over after
        # the detections queued before it are stored (e.g. PostgresStore.cancel).
        self._on_cancel = on_cancel
        self._pending_cancels: list[tuple[str, float, str | None]] = []
        self._clock = clock
        self._m = metrics
        self._registry = RegistrySnapshot({})
        self._devices: dict[str, DeviceState] = {}
        self._residents: dict[str, ResidentState] = {}
        self._history: Mapping[str, Sequence[DaySummary]] = {}
        self._restore: Mapping[str, DeviceRestore] = {}
        s = settings
        self._health = DeviceHealthTracker(
            DeviceHealthParams(
                heartbeat_interval_s={
                    kind.value: r.heartbeat_s(s) for kind, r in DEVICE_KINDS.items()
                },
                deadline_factor=s.deadline_factor,
                group_hold_s=s.group_hold_s,
            )
        )
        # output
        self._days = DayRows()
        self._conditions = OpenConditions(on_continued=self._m.continued.inc)
        self._pending: list[DetectionRecord] = []
        self._kit = KitRunner(
            lambda res, det, device_id, alarms=(): self._emit(
                resident_record(res, det, device_id, alarms)
            ),
            self._emit_health,
            lambda: self._registry.residents,
            sensitivity=self._sensitivity,
            door_unused_s=(kit or KitSettings()).door_unused_days * 86400.0,
            door_alive_s=s.deadline_factor * s.heartbeat_kit_s,
        )
        self._router = MessageRouter(
            kit=self._kit,
            health=self._health,
            metrics=self._m,
            emit=self._emit,
            artefact_movement=self._days.limits.artefact_movement,
            cancels=self._pending_cancels if on_cancel is not None else None,
        )
        # timing
        self._next_check = -math.inf
        self._next_save = -math.inf
        self._next_registry = math.inf
        self._reconcile_at = math.inf
        self._reconcile_grace = 0.0
        self._retry_at = -math.inf
        self._retry_delay = _RETRY_MIN_S
        self._store_down_since: float | None = None
        # alarms handed over by the ingest event lane, analysed before anything else
        self._urgent: deque[Sequence[StoredMessage]] = deque()

    # -- synchronous core ---------------------------------------------------------------------

    def rebuild(self) -> None:
        """Restore state from the store (see the package documentation). Call once, first."""
        now = self._clock()
        started = time.perf_counter()
        state = self._store.load(now, self.settings)
        self._registry = state.registry
        self._history = state.routine_days
        self._restore = state.devices
        for info in state.registry.devices.values():
            self._bind(info, now)
        self._restore_vitals(state.vitals_days, now)
        self._conditions.restore(state.open_detections)
        for rec in state.open_detections:
            if rec.kind is DetectionKind.DEVICE_CLOCK_WRONG:
                self._router.clock_wrong[rec.subject] = rec.started
        self._router.quiet = True
        for sm in state.history:
            self._handle(sm, alarms=sm.received_at >= state.catch_up_from)
        self._health.resume(now)
        self._check(now)
        self._router.quiet = False
        self._history, self._restore = {}, {}
        self._reconcile_grace = max(
            self.settings.reconcile_after_s,
            max(self._deadlines(), default=0.0) + self.settings.group_hold_s,
        )
        if state.open_detections:
            self._reconcile_at = now + self._reconcile_grace
        self._next_check = now + self.settings.check_interval_s
        self._next_save = now + self.settings.state_save_interval_s
        self._next_registry = now + self.settings.registry_refresh_s
        queued = len(self._pending)
        self.flush(force=True)
        log.info(
            "analysis state rebuilt",
            extra={
                "devices": len(self._devices),
                "residents": len(self._residents),
                "replayed": len(state.history),
                "open_conditions": len(state.open_detections),
                "detections": queued,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    def feed(self, messages: Sequence[StoredMessage]) -> None:
        """Analyse stored messages (in the order they were stored).

        Urgent batches (:meth:`submit_urgent`) that arrive meanwhile go first."""
        urgent = self._urgent
        for sm in messages:
            if urgent:
                self._feed_urgent()
            self._handle(sm, alarms=True)
        self._m.messages.inc(len(messages))

    def _feed_urgent(self) -> None:
        """Analyse the urgent batches in hand and write what they found at once."""
        urgent = self._urgent
        if not urgent:
            return
        while urgent:
            batch = urgent.popleft()
            for sm in batch:
                self._handle(sm, alarms=True)
            self._m.messages.inc(len(batch))
        self.flush()

    def registry_changed(self) -> None:
        """The device registry changed: reload bindings at the next step (any thread)."""
        self._next_registry = -math.inf

    def advance(self, now: float | None = None) -> None:
        """Run what is due at ``now`` (default: the clock): checks, saves, then write."""
        if now is None:
            now = self._clock()
        s = self.settings
        if now >= self._next_check:
            self._check(now)
            self._next_check = now + s.check_interval_s
        if now >= self._reconcile_at:
            self._reconcile(now)
            self._reconcile_at = math.inf
        if now >= self._next_save:
            self._days.save_vitals()
            self._next_save = now + s.state_save_interval_s
        if now >= self._next_registry:
            self._refresh_registry(now)
            self._next_registry = now + s.registry_refresh_s
        self.flush()

    def flush(self, *, force: bool = False) -> None:
        """Write pending detections and day rows; on a store outage keep them for later."""
        days = self._days
        if not (self._pending or days):
            self._flush_cancels()
            return
        mono = time.monotonic()
        if not force and mono < self._retry_at:
            return
        try:
            new = self._store.write(self._pending, days.routine, days.vitals)
        except StoreUnavailableError as exc:
            self._m.store_errors.inc()
            if self._store_down_since is None:
                self._store_down_since = mono
                log.error(
                    "analysis store unavailable; keeping detections to retry",
                    extra={"error": str(exc), "pending": len(self._pending)},
                )
            self._retry_at = mono + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2.0, _RETRY_MAX_S)
            if force:
                raise
            return
        if self._store_down_since is not None:
            log.warning(
                "analysis store available again",
                extra={"outage_s": round(mono - self._store_down_since, 3)},
            )
            self._store_down_since = None
        self._retry_delay = _RETRY_MIN_S
        self._retry_at = -math.inf
        duplicates = sum(not r.continued for r in self._pending) - new
        if duplicates:
            self._m.duplicates.inc(duplicates)
        self._pending = []
        days.clear()
        self._flush_cancels()

    def _flush_cancels(self) -> None:
        """Hand over queued resident cancels (their alarms are stored by now)."""
        while self._pending_cancels and self._on_cancel is not None:
            resident_id, t, device_id = self._pending_cancels[0]
            try:
                self._on_cancel(resident_id, t, device_id)
            except StoreUnavailableError:
                return  # kept: retried with the next flush
            except Exception:
                log.exception("resident cancel hook failed", extra={"device": device_id})
            self._pending_cancels.pop(0)

    # -- registry -------------------------------------------------------------------------------

    def _deadlines(self) -> list[float]:
        s = self.settings
        kinds = [r.heartbeat_s(s) for r in DEVICE_KINDS.values()]
        own = [float(d.info.heartbeat_interval_s or 0) for d in self._devices.values()]
        return [s.deadline_factor * x for x in kinds + own]

    def _bind(self, info: DeviceInfo, now: float) -> DeviceState:
        """Start analysing a device (or follow a change of its registry entry)."""
        previous = self._devices.get(info.device_id)
        subject = (
            info.resident_id
            or info.bed_id
            or (info.location_id if role(info.kind).kit else None)
            or info.device_id
        )
        res = self._residents.get(subject) or self._new_resident(subject, info, now)
        kind = role(info.kind)
        detector: FallDetector | None = None
        if kind.wearable:
            res.wearable = info.device_id
            if previous is not None and previous.resident is res:
                detector = previous.detector
            if detector is None:
                detector = FallDetector(FallParams(fs=ACCEL_FS, utc_offset_s=res.utc_offset))
        if kind.bed:
            res.bed_device = info.device_id
        dev = DeviceState(info, res, detector)
        self._devices[info.device_id] = dev
        restore = self._restore.get(info.device_id)
        if info.kind is DeviceKind.DOOR_CONTACT:
            self._kit.restore_door(res, None if restore is None else restore.door_opened)
        self._health.register(
            info.device_id,
            info.kind.value,
            site=info.site_id,
            location=info.location_id or info.device_id,
            now=now,
            heartbeat_interval_s=(
                None if info.heartbeat_interval_s is None else float(info.heartbeat_interval_s)
            ),
            last_seen=None if restore is None else restore.last_seen,
            offline=restore is not None and restore.offline,
            utc_offset_s=self._registry.utc_offset(info.site_id),
        )
        if kind.wearable:
            resident = self._registry.residents.get(res.resident_id or "")
            self._health.set_care_paused(
                info.device_id, now, resident is not None and resident.away
            )
        if previous is not None and previous.info != info:
            log.info("device binding changed", extra={"device": info.device_id})
        return dev

    def _routine_params(self, resident: ResidentInfo | None, utc_offset_s: float) -> RoutineParams:
        """The routine thresholds of ``resident``: their care level (with the settings'
        overrides), tuned by their risk categories (``config/visits.toml`` [sensitivity])."""
        params = RoutineParams.for_care_level(
            resident.care_level if resident is not None else 2,
            utc_offset_s=utc_offset_s,
            **self.settings.routine_overrides,
        )
        risks = for_categories(resident.categories if resident else (), self._sensitivity)
        return tune_routine(params, risks)

    def _retune(self, rid: str, resident: ResidentInfo) -> None:
        """A changed care level or risk category: new thresholds, what was learned kept."""
        res = self._residents.get(rid)
        if res is not None:
            res.routine.retune(self._routine_params(resident, res.utc_offset))
        self._kit.retune(rid)
        log.info("resident alert thresholds retuned", extra={"resident": rid})

    def _new_resident(self, subject: str, info: DeviceInfo, now: float) -> ResidentState:
        resident = self._registry.residents.get(info.resident_id or "")
        off = self._registry.utc_offset(info.site_id)
        s = self.settings
        routine = RoutineMonitor(
            subject, self._routine_params(resident, off), history=self._history.get(subject, ())
        )
        vitals = VitalsMonitor(
            subject,
            replace(
                self._days.limits,
                utc_offset_s=off,
                min_duration_s=s.vitals_min_duration_s,
                recover_s=s.vitals_recover_s,
                baseline_min_duration_s=s.vitals_baseline_min_duration_s,
            ),
        )
        fusion = FallFusion(
            subject,
            FusionParams(
                confirm_window_s=s.fall_confirm_window_s,
                merge_window_s=s.fall_merge_window_s,
                utc_offset_s=off,
            ),
        )
        res = ResidentState(
            subject,
            resident_id=info.resident_id,
            site=info.site_id,
            location=info.location_id,
            utc_offset=off,
            routine=routine,
            vitals=vitals,
            fusion=fusion,
            counts=self._days.counter(subject, off),
        )
        if resident is not None:
            routine.set_away_periods(resident.away_periods)  # days not learned from
        if resident is not None and resident.away:
            routine.set_away(now, True)
        self._residents[subject] = res
        return res

    def _refresh_registry(self, now: float) -> None:
        try:
            snapshot = self._store.registry()
        except StoreUnavailableError:
            return  # the flush that follows reports the outage
        old = self._registry
        self._registry = snapshot
        for device_id, info in snapshot.devices.items():
            dev = self._devices.get(device_id)
            if dev is None or dev.info != info:
                self._bind(info, now)
        for device_id in [d for d in self._devices if d not in snapshot.devices]:
            del self._devices[device_id]
            self._health.remove(device_id, now)
            log.info("device no longer analysed", extra={"device": device_id})
        for rid, resident in snapshot.residents.items():
            before = old.residents.get(rid)
            if before is not None and (before.care_level, before.categories) != (
                resident.care_level, resident.categories
            ):  # fmt: skip
                self._retune(rid, resident)
            if (res := self._residents.get(rid)) is not None:
                res.routine.set_away_periods(resident.away_periods)  # days not learned from
            if (before is not None and before.away) == resident.away:
                continue  # unchanged (a resident new to the registry counts as at home)
            res = self._residents.get(rid)
            if res is None:
                continue
            res.routine.set_away(now, resident.away)
            if res.wearable is not None:
                self._health.set_care_paused(res.wearable, now, resident.away)
            state = "paused" if resident.away else "resumed"
            log.info(f"resident monitoring {state}", extra={"resident": rid})

    def _restore_vitals(self, days: Sequence[VitalsDay], now: float) -> None:
        for subject, rows in DayRows.by_subject(days):
            res = self._residents.get(subject)
            if res is None:
                continue
            res.vitals.load_histograms(
                {v.day: padded(v.heart_rate, HR_BINS) for v in rows},
                {v.day: padded(v.breathing_rate, RR_BINS) for v in rows},
            )
            res.counts.resume(rows, now)  # the day in progress goes on counting from here

    # -- messages -------------------------------------------------------------------------------

    def _handle(self, sm: StoredMessage, *, alarms: bool) -> None:
        info = sm.device
        dev = self._devices.get(info.device_id)
        if dev is None or (dev.info is not info and dev.info != info):
            dev = self._bind(info, sm.received_at)
        else:
            dev.info = info
        self._router.route(dev, sm, alarms)

    # -- checks and output ----------------------------------------------------------------------

    def _check(self, now: float) -> None:
        self._m.checks.inc()
        urgent = self._urgent
        for res in list(self._residents.values()):  # (urgent batches may add residents)
            if urgent:
                self._feed_urgent()
            for det in res.fusion.poll(now):
                self._emit(
                    resident_record(res, det, res.wearable, alarms=self._fall_alarms(res, det))
                )
            if res.fall_flags:
                # Flags the fusion dropped (cancelled): the recovery records why, from the
                # stored cancel, once their marker is older than alarms.recovery_grace_s.
                horizon = now - 2 * (self.settings.fall_confirm_window_s
                                     + self.settings.fall_merge_window_s)  # fmt: skip
                res.fall_flags = [f for f in res.fall_flags if f[0] >= horizon]
            for det in res.routine.check(now):
                self._emit(resident_record(res, det, res.bed_device))
            if res.bed_device is not None:
                for det in res.vitals.check(now):
                    self._emit(resident_record(res, det, res.bed_device))
            for summary in res.routine.drain_summaries():
                self._days.add_routine(res.subject, summary)
        for det in self._health.check(now):
            self._emit_health(det)
        self._kit.check(now)

    def _fall_alarms(self, res: ResidentState, det: Detection) -> tuple[tuple[str, str], ...]:
        """The device fall flags a confirmed fall accounts for (taken off the list)."""
        if not res.fall_flags:
            return ()
        first = (det.started if det.started is not None else det.time) - (
            self.settings.fall_merge_window_s
        )
        mine = [f for f in res.fall_flags if first <= f[0] <= det.time]
        if mine:
            res.fall_flags = [f for f in res.fall_flags if f not in mine]
        return tuple((d, m) for _, d, m in mine)

    def _emit_health(self, det: Detection) -> None:
        kind = det.kind
        if kind is DetectionKind.HUB_OFFLINE:
            site = det.details.get("site")
            rec = DetectionRecord.of(
                det,
                site_id=site if isinstance(site, str) else None,
                resident_id=None,
                device_id=None,
                location_id=det.subject,
            )
        elif kind is DetectionKind.SITE_OFFLINE:
            rec = DetectionRecord.of(
                det, site_id=det.subject, resident_id=None, device_id=None, location_id=None
            )
        else:  # about one device
            dev = self._devices.get(det.subject)
            info = dev.info if dev is not None else None
            rec = DetectionRecord.of(
                det,
                site_id=info.site_id if info else None,
                resident_id=dev.resident.resident_id if dev else None,
                device_id=det.subject,
                location_id=info.location_id if info else None,
            )
        self._emit(rec)

    def _emit(self, rec: DetectionRecord) -> None:
        """Queue a record for writing, keeping one open raise per condition."""
        out = self._conditions.admit(rec)
        if out is None:
            return
        self._pending.append(out)
        if out.continued:
            return  # not a new finding: only its alarm markers go to the intake
        state = "resolved" if out.resolved else "raised"
        self._m.detections.labels(out.kind.value, state).inc()
        if not self._router.quiet:
            log.info(
                f"detection {state}",
                extra={"kind": out.kind.value, "subject": out.subject, "site": out.site_id},
            )

    def _reconcile(self, now: float) -> None:
        """Resolve open conditions restored at start-up that no detector has re-raised."""
        stale = self._conditions.reconcile(now, self._reconcile_grace)
        for rec in stale:
            self._emit(rec)
        if stale:
            log.info("restored conditions reconciled", extra={"resolved": len(stale)})
