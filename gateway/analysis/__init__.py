"""The analysis runner: stored messages in, detections out, one worker thread.

Flow (one direction, like the rest of the gateway)::

    ingest writer ──sink──▶ submit() ──bounded queue──▶ worker thread
                                                         │ feed(): per message, O(1) + the
                                                         │   fall detector's vectorised update
                                                         │ advance(): every check_interval_s,
                                                         │   poll/check every detector
                                                         └─▶ AnalysisStore.write (batched)

* The ingest writer calls :meth:`AnalysisRunner.submit` after each committed (and acked)
  batch. The queue holds at most ``analysis.queue_size`` batches; when it is full ``submit``
  waits, so the ingest writer stops taking messages and the broker keeps the following ones
  unacknowledged (backpressure). Nothing is ever dropped. If the worker has died ``submit``
  raises :class:`AnalysisError` instead of waiting forever, and the runtime's watchdog fails
  the process; whatever was stored but not analysed is caught up at the next start.
* The ingest event lane (device events: button presses, SOS, fall flags, ...) calls
  :meth:`AnalysisRunner.submit_urgent` instead: those batches never wait for room and are
  analysed before any queued batch, even in the middle of one or of the periodic checks
  (looked for between messages and between residents), and what they find is written at once.
* State is per device and per resident: a :class:`~analytics.falls.FallDetector` per wearable;
  a :class:`~analytics.fall_fusion.FallFusion`, :class:`~analytics.routine.RoutineMonitor` and
  :class:`~analytics.vitals.VitalsMonitor` per resident, fed by the resident's bed sensor,
  wearable and button; one :class:`~analytics.device_health.DeviceHealthTracker` for every
  device, grouped by location (home or room) and site. A device bound to no resident is
  analysed on its own (its bed, else its own id, stands in for the resident).
* Time: signal processing uses the device timestamps of the messages; device health uses the
  gateway's receive times; "now" for the periodic checks comes from an injected clock, so
  :mod:`gateway.replay` and the tests run the same code on a virtual clock.
* Alarms: a button ``press``/``long_press`` or a wearable ``sos`` becomes an
  ``EMERGENCY_CALL`` at once (it also confirms an open fall episode); ``cancel`` is the
  resident's "I'm OK" for a suspected fall; falls are confirmed when their window expires.

Persistence goes through :class:`AnalysisStore`: :class:`PostgresStore` in production,
:class:`MemoryStore` for replay, benchmarks and tests (a real in-memory implementation, same
rules). A detection is written once: a condition is identified by ``(kind, subject,
condition, started)`` with a data-derived ``started``, and the database ignores a second copy.
While a condition is open a second raise of the same ``(kind, subject, condition)`` is taken as
its continuation and not written; its resolution is written against the open raise.

Rebuild on start (:meth:`AnalysisRunner.rebuild`), bounded by the ``rebuild_*`` settings: the
registry (devices with location and site, residents with care level and status, site UTC
offsets); each device's last receive time and last connection state; routine day summaries and
vitals day histograms from the runner's own tables (``routine_days``, ``vitals_days``: the
runner counts each day's usable bed readings as the vitals baseline does and saves the counts
every ``state_save_interval_s``, so the baseline never needs two weeks of 1 Hz readings read
back); the conditions still open; then a replay,
in receive order, of recent stored messages through the normal path (events, steps and
heartbeats of ``rebuild_events_s``; bed readings thinned to one per ``rebuild_sample_step_s``
for ``rebuild_samples_s``; everything, accelerometer included, of the last ``catch_up_s`` with
alarms on, so a message stored just before a crash is still analysed). Findings that come out
again are deduplicated by their identity. Open conditions that no detector re-raises within
``reconcile_after_s`` are resolved as "not re-established after the restart".

Local time (days, waking hours, the clock in reasons) is each site's own
(``sites.utc_offset_s``); China's only for a device whose site is not in the registry.

Known limits: a resident's care level is read when their monitors are created (a change applies
at the next start; away/hospital status and the family's away periods, whose days are not
learned from, apply at the next registry refresh).

The package, one concern a module: :mod:`~gateway.analysis.records` (the records),
:mod:`~gateway.analysis.store` (the stores; their SQL is in :mod:`gateway.storage.analysis`),
:mod:`~gateway.analysis.metrics`, :mod:`~gateway.analysis.routing` (device kinds and message
routes, as tables), :mod:`~gateway.analysis.conditions` (dedupe and reconcile),
:mod:`~gateway.analysis.dayrows` (saving day rows), :mod:`~gateway.analysis.core` (the
synchronous core) and :mod:`~gateway.analysis.runner` (the worker thread and queue).
"""

from gateway.analysis.metrics import AnalysisMetrics
from gateway.analysis.records import (
    ONE_SHOT,
    AnalysisError,
    DetectionRecord,
    DeviceRestore,
    RebuildState,
    RegistrySnapshot,
    ResidentInfo,
    RoutineDay,
    StoreUnavailableError,
    VitalsDay,
    clock_wrong_detection,
)
from gateway.analysis.runner import AnalysisRunner
from gateway.analysis.store import (
    AnalysisStore,
    CancelHook,
    MemoryStore,
    PostgresStore,
    StoredHook,
)

__all__ = [
    "ONE_SHOT",
    "AnalysisError",
    "AnalysisMetrics",
    "AnalysisRunner",
    "AnalysisStore",
    "CancelHook",
    "DetectionRecord",
    "DeviceRestore",
    "MemoryStore",
    "PostgresStore",
    "RebuildState",
    "RegistrySnapshot",
    "ResidentInfo",
    "RoutineDay",
    "StoreUnavailableError",
    "StoredHook",
    "VitalsDay",
    "clock_wrong_detection",
]
