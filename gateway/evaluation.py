"""Evaluation of the fall detector on labelled recordings (``safehome eval falls``).

The input is an ``.npz`` file of trials, e.g. the SisFall-derived development set. Its
keys: ``acc`` (N, 3) in g with all trials concatenated, ``offsets`` (T + 1) with trial
``i`` being ``acc[offsets[i]:offsets[i + 1]]``, ``fs`` (Hz), and per trial ``is_fall``,
``group``, ``activity`` and optionally ``name``.

Every trial is fed to the production :class:`analytics.falls.FallDetector` exactly as
the gateway does: in 1 s batches, ``t0`` increasing, with the detector reset between
trials (they are separate recordings). A trial counts as detected if the detector
raises at least one fall anywhere in it. Sensitivity is taken over fall trials,
specificity over activity trials. False detections per hour count every fall raised
during activity trials, divided by their duration. Processing cost is the CPU time
spent in the detector per hour of signal.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.falls import FallDetector, FallParams
from analytics.scoring import BinaryScores, confusion, score

__all__ = ["ActivityResult", "FallEvaluation", "evaluate_falls", "render_fall_report"]

EVALUATION_EPOCH = 1_700_000_000.0
"""Epoch time given to the first trial; later trials follow with a gap."""
TRIAL_GAP_S = 60.0
"""Gap between consecutive trials on the evaluation's time line."""
_LISTED_NAMES = 20
"""At most this many missed or falsely detected trials are named in the text report."""


@dataclass(frozen=True, slots=True)
class ActivityResult:
    """Detection rate for one activity code (e.g. ``F13`` or ``D14``)."""

    activity: str
    is_fall: bool
    trials: int
    detected: int

    @property
    def rate(self) -> float:
        """Share of the activity's trials in which a fall was raised."""
        return self.detected / self.trials if self.trials else 0.0


@dataclass(frozen=True, slots=True)
class FallEvaluation:
    """Outcome of :func:`evaluate_falls`."""

    data: str
    params: FallParams
    batch_seconds: float
    overall: BinaryScores
    by_group: Mapping[str, BinaryScores]
    by_activity: Mapping[str, ActivityResult]
    false_detections: int
    """Falls raised during activity trials (a trial may contribute several)."""
    activity_hours: float
    signal_hours: float
    cpu_seconds: float
    missed_falls: tuple[str, ...]
    false_alarm_trials: tuple[str, ...]

    @property
    def trials(self) -> int:
        return self.overall.counts.positives + self.overall.counts.negatives

    @property
    def false_per_hour(self) -> float | None:
        """False detections per hour of activity signal; ``None`` without activity trials."""
        return self.false_detections / self.activity_hours if self.activity_hours else None

    @property
    def seconds_per_signal_hour(self) -> float | None:
        """CPU seconds spent in the detector per hour of signal."""
        return self.cpu_seconds / self.signal_hours if self.signal_hours else None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-serialisable summary (``None`` where a metric is undefined)."""
        counts = self.overall.counts
        return {
            "data": self.data,
            "trials": self.trials,
            "fall_trials": counts.positives,
            "activity_trials": counts.negatives,
            "sensitivity": self.overall.sensitivity,
            "specificity": self.overall.specificity,
            "precision": self.overall.precision,
            "f1": self.overall.f1,
            "counts": dataclasses.asdict(counts),
            "by_group": {
                group: {
                    "trials": scores.counts.positives + scores.counts.negatives,
                    "fall_trials": scores.counts.positives,
                    "sensitivity": scores.sensitivity,
                    "specificity": scores.specificity,
                    "f1": scores.f1,
                }
                for group, scores in self.by_group.items()
            },
            "by_activity": {
                code: {
                    "is_fall": result.is_fall,
                    "trials": result.trials,
                    "detected": result.detected,
                    "rate": result.rate,
                }
                for code, result in self.by_activity.items()
            },
            "false_detections": self.false_detections,
            "activity_hours": self.activity_hours,
            "false_per_hour": self.false_per_hour,
            "signal_hours": self.signal_hours,
            "cpu_seconds": self.cpu_seconds,
            "seconds_per_signal_hour": self.seconds_per_signal_hour,
            "batch_seconds": self.batch_seconds,
            "missed_falls": list(self.missed_falls),
            "false_alarm_trials": list(self.false_alarm_trials),
            "params": dataclasses.asdict(self.params),
        }


@dataclass(frozen=True, slots=True)
class _Trials:
    acc: npt.NDArray[np.float32 | np.float64]
    offsets: npt.NDArray[np.int64]
    fs: float
    is_fall: npt.NDArray[np.bool_]
    group: list[str]
    activity: list[str]
    name: list[str]


def _load(path: Path) -> _Trials:
    with np.load(path, allow_pickle=False) as data:
        missing = {"acc", "offsets", "fs", "is_fall", "group", "activity"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: missing keys {sorted(missing)}")
        acc = np.asarray(data["acc"])
        offsets = np.asarray(data["offsets"], dtype=np.int64)
        fs = float(data["fs"])
        is_fall = np.asarray(data["is_fall"], dtype=bool)
        group = [str(g) for g in data["group"]]
        activity = [str(a) for a in data["activity"]]
        count = len(is_fall)
        if "name" in data.files:
            name = [str(n) for n in data["name"]]
        else:
            name = [f"trial-{i}" for i in range(count)]
    if acc.ndim != 2 or acc.shape[1] != 3:
        raise ValueError(f"{path}: acc must have shape (N, 3), got {acc.shape}")
    if offsets.shape != (count + 1,) or offsets[0] != 0 or offsets[-1] != acc.shape[0]:
        raise ValueError(f"{path}: offsets must run from 0 to len(acc) with one entry per trial")
    if np.any(np.diff(offsets) < 0):
        raise ValueError(f"{path}: offsets must not decrease")
    if not len(group) == len(activity) == len(name) == count:
        raise ValueError(f"{path}: per-trial arrays differ in length")
    if not fs > 0:
        raise ValueError(f"{path}: fs must be positive, got {fs}")
    return _Trials(acc, offsets, fs, is_fall, group, activity, name)


def evaluate_falls(
    path: Path, params: FallParams | None = None, batch_seconds: float = 1.0
) -> FallEvaluation:
    """Run the streaming fall detector over every trial of ``path`` and score it.

    ``params`` defaults to the shipped :class:`FallParams` at the file's sample rate; if
    given, its ``fs`` must match the file's. ``batch_seconds`` is the batch length fed to
    the detector (the gateway's is 1 s).
    """
    trials = _load(path)
    if params is None:
        params = FallParams(fs=trials.fs)
    elif params.fs != trials.fs:
        raise ValueError(f"params.fs ({params.fs}) differs from the file's fs ({trials.fs})")
    batch = max(1, round(batch_seconds * params.fs))
    detector = FallDetector(params)

    detected: list[bool] = []
    false_detections = 0
    cpu_seconds = 0.0
    clock = EVALUATION_EPOCH
    for i in range(len(trials.is_fall)):
        signal = trials.acc[trials.offsets[i] : trials.offsets[i + 1]].astype(np.float64)
        detector.reset()
        raised = 0
        started = time.process_time()
        for first in range(0, signal.shape[0], batch):
            t0 = clock + first / params.fs
            raised += len(detector.update(t0, signal[first : first + batch]))
        cpu_seconds += time.process_time() - started
        clock += signal.shape[0] / params.fs + TRIAL_GAP_S
        detected.append(raised > 0)
        if not trials.is_fall[i]:
            false_detections += raised

    labels = [bool(f) for f in trials.is_fall]
    durations_h = np.diff(trials.offsets) / params.fs / 3600.0
    by_group: dict[str, BinaryScores] = {}
    for group in sorted(set(trials.group)):
        members = [i for i, g in enumerate(trials.group) if g == group]
        by_group[group] = score(
            confusion([labels[i] for i in members], [detected[i] for i in members])
        )
    by_activity: dict[str, ActivityResult] = {}
    for code in sorted(set(trials.activity)):
        members = [i for i, a in enumerate(trials.activity) if a == code]
        by_activity[code] = ActivityResult(
            activity=code,
            is_fall=any(labels[i] for i in members),
            trials=len(members),
            detected=sum(detected[i] for i in members),
        )
    return FallEvaluation(
        data=str(path),
        params=params,
        batch_seconds=batch / params.fs,
        overall=score(confusion(labels, detected)),
        by_group=by_group,
        by_activity=by_activity,
        false_detections=false_detections,
        activity_hours=float(durations_h[~trials.is_fall].sum()),
        signal_hours=float(durations_h.sum()),
        cpu_seconds=cpu_seconds,
        missed_falls=tuple(
            n for n, f, d in zip(trials.name, labels, detected, strict=True) if f and not d
        ),
        false_alarm_trials=tuple(
            n for n, f, d in zip(trials.name, labels, detected, strict=True) if d and not f
        ),
    )


def _metric(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _names(names: tuple[str, ...]) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:_LISTED_NAMES])
    more = len(names) - _LISTED_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


def render_fall_report(ev: FallEvaluation) -> str:
    """Human-readable report: overall and per-group scores, per-activity detection rates."""
    counts = ev.overall.counts
    lines = [
        f"Fall detection on {ev.data}",
        f"{ev.trials} trials ({counts.positives} falls, {counts.negatives} activities), "
        f"{ev.signal_hours:.1f} h of signal, fed in {ev.batch_seconds:g} s batches",
        "",
        f"{'':12} {'trials':>7} {'falls':>6} {'sensitivity':>12} {'specificity':>12} {'F1':>6}",
    ]
    rows = [("overall", ev.overall), *ev.by_group.items()]
    for label, scores in rows:
        c = scores.counts
        lines.append(
            f"{label:12} {c.positives + c.negatives:>7} {c.positives:>6} "
            f"{_metric(scores.sensitivity):>12} {_metric(scores.specificity, 4):>12} "
            f"{_metric(scores.f1):>6}"
        )
    lines += [
        "",
        f"False detections: {ev.false_detections} in {ev.activity_hours:.2f} h of activities "
        f"({_metric(ev.false_per_hour, 2)} per hour)",
        f"Processing: {ev.cpu_seconds:.2f} s CPU for {ev.signal_hours:.2f} h of signal "
        f"({_metric(ev.seconds_per_signal_hour, 4)} s per signal hour)",
        "",
        "Per activity (falls should be detected, activities should not):",
        f"{'activity':10} {'kind':9} {'trials':>7} {'detected':>9} {'rate':>7}",
    ]
    for code, result in ev.by_activity.items():
        kind = "fall" if result.is_fall else "activity"
        lines.append(
            f"{code:10} {kind:9} {result.trials:>7} {result.detected:>9} {result.rate:>7.3f}"
        )
    lines += [
        "",
        f"Missed falls: {_names(ev.missed_falls)}",
        f"False alarms: {_names(ev.false_alarm_trials)}",
    ]
    return "\n".join(lines)
