"""Fall evaluation on a small synthetic trial file, and the scoring maths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from analytics.falls import FallParams
from analytics.scoring import ConfusionCounts, confusion, score
from gateway.evaluation import evaluate_falls, render_fall_report
from tests.unit.test_falls import (
    fall_from_chair,
    fall_while_walking,
    lying_down_on_bed,
    walking,
)

FS = 50.0

# (name, group, activity, is_fall, signal); the expected outcome is in the comment.
TRIALS: list[tuple[str, str, str, bool, npt.NDArray[np.float64]]] = [
    ("F01_SA01_R01", "young", "F01", True, fall_while_walking(seed=1)),  # detected
    ("F13_SA01_R01", "young", "F13", True, fall_from_chair(impact_g=0.7)),  # missed: soft
    ("D01_SA01_R01", "young", "D01", False, walking(30.0, seed=2)),  # correct rejection
    ("D01_SE01_R01", "elderly", "D01", False, walking(30.0, seed=3)),  # correct rejection
    # Lies down far too hard, twice: one false-alarm trial with two false detections.
    (
        "D13_SE01_R01",
        "elderly",
        "D13",
        False,
        np.concatenate((lying_down_on_bed(impact_g=3.0), lying_down_on_bed(impact_g=3.0))),
    ),
]


def write_trials(
    path: Path,
    trials: list[tuple[str, str, str, bool, npt.NDArray[np.float64]]] = TRIALS,
    drop: tuple[str, ...] = (),
    **overrides: object,
) -> Path:
    lengths = [len(t[4]) for t in trials]
    arrays: dict[str, object] = {
        "acc": np.concatenate([t[4] for t in trials]).astype(np.float32),
        "offsets": np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
        "fs": np.float32(FS),
        "name": np.array([t[0] for t in trials]),
        "group": np.array([t[1] for t in trials]),
        "activity": np.array([t[2] for t in trials]),
        "is_fall": np.array([t[3] for t in trials]),
        "subject": np.array([t[0][4:8] for t in trials]),
    }
    arrays.update(overrides)
    for key in drop:
        del arrays[key]
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


@pytest.fixture(scope="module")
def trial_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trials(tmp_path_factory.mktemp("falls") / "trials.npz")


def test_overall_metrics(trial_file: Path) -> None:
    ev = evaluate_falls(trial_file)
    counts = ev.overall.counts
    assert (counts.true_positives, counts.false_negatives) == (1, 1)
    assert (counts.true_negatives, counts.false_positives) == (2, 1)
    assert ev.trials == 5
    assert ev.overall.sensitivity == pytest.approx(0.5)
    assert ev.overall.specificity == pytest.approx(2 / 3)
    assert ev.overall.precision == pytest.approx(0.5)
    assert ev.overall.f1 == pytest.approx(0.5)  # 2 TP / (2 TP + FP + FN) = 2 / 4
    assert ev.missed_falls == ("F13_SA01_R01",)
    assert ev.false_alarm_trials == ("D13_SE01_R01",)


def test_false_detections_per_hour_of_activity(trial_file: Path) -> None:
    ev = evaluate_falls(trial_file)
    activity_s = (len(TRIALS[2][4]) + len(TRIALS[3][4]) + len(TRIALS[4][4])) / FS
    assert ev.false_detections == 2
    assert ev.activity_hours == pytest.approx(activity_s / 3600.0)
    assert ev.false_per_hour == pytest.approx(2 * 3600.0 / activity_s)
    total_s = sum(len(t[4]) for t in TRIALS) / FS
    assert ev.signal_hours == pytest.approx(total_s / 3600.0)
    assert ev.cpu_seconds > 0.0
    assert ev.seconds_per_signal_hour == pytest.approx(ev.cpu_seconds / ev.signal_hours)


def test_groups_and_activities(trial_file: Path) -> None:
    ev = evaluate_falls(trial_file)
    young, elderly = ev.by_group["young"], ev.by_group["elderly"]
    assert young.sensitivity == pytest.approx(0.5)
    assert young.specificity == pytest.approx(1.0)
    assert young.f1 == pytest.approx(2 / 3)
    assert elderly.sensitivity is None  # no falls in the group
    assert elderly.f1 is None
    assert elderly.specificity == pytest.approx(0.5)
    rates = {code: (r.is_fall, r.trials, r.detected) for code, r in ev.by_activity.items()}
    assert rates == {
        "D01": (False, 2, 0),
        "D13": (False, 1, 1),
        "F01": (True, 1, 1),
        "F13": (True, 1, 0),
    }
    assert ev.by_activity["D13"].rate == 1.0


def test_json_summary(trial_file: Path) -> None:
    ev = evaluate_falls(trial_file)
    summary = json.loads(json.dumps(ev.to_json()))
    assert summary["trials"] == 5
    assert summary["sensitivity"] == pytest.approx(0.5)
    assert summary["specificity"] == pytest.approx(2 / 3)
    assert summary["f1"] == pytest.approx(0.5)
    assert summary["by_group"]["elderly"] == {
        "trials": 2,
        "fall_trials": 0,
        "sensitivity": None,
        "specificity": 0.5,
        "f1": None,
    }
    assert summary["by_group"]["young"]["sensitivity"] == pytest.approx(0.5)
    assert summary["by_activity"]["F13"] == {
        "is_fall": True,
        "trials": 1,
        "detected": 0,
        "rate": 0.0,
    }
    assert summary["false_per_hour"] == pytest.approx(ev.false_per_hour)
    assert summary["seconds_per_signal_hour"] == pytest.approx(ev.seconds_per_signal_hour)
    assert summary["missed_falls"] == ["F13_SA01_R01"]
    assert summary["params"]["min_impulse_mps"] == 1.0
    assert summary["batch_seconds"] == 1.0


def test_text_report(trial_file: Path) -> None:
    report = render_fall_report(evaluate_falls(trial_file))
    lines = report.splitlines()
    assert lines[1].startswith("5 trials (2 falls, 3 activities)")
    assert any(line.split() == ["overall", "5", "2", "0.500", "0.6667", "0.500"] for line in lines)
    assert any(line.split() == ["elderly", "2", "0", "-", "0.5000", "-"] for line in lines)
    assert any(line.split() == ["F13", "fall", "1", "0", "0.000"] for line in lines)
    assert any(line.split() == ["D13", "activity", "1", "1", "1.000"] for line in lines)
    assert "Missed falls: F13_SA01_R01" in report
    assert "False alarms: D13_SE01_R01" in report


def test_batch_size_does_not_change_the_outcome(trial_file: Path) -> None:
    one_second = evaluate_falls(trial_file)
    odd = evaluate_falls(trial_file, batch_seconds=0.14)
    assert odd.batch_seconds == pytest.approx(7 / FS)
    assert odd.overall == one_second.overall
    assert odd.false_detections == one_second.false_detections


def test_params_are_used(trial_file: Path) -> None:
    lenient = evaluate_falls(trial_file, FallParams(min_impulse_mps=0.3))
    assert lenient.overall.sensitivity == pytest.approx(1.0)  # the soft fall counts now
    with pytest.raises(ValueError, match="fs"):
        evaluate_falls(trial_file, FallParams(fs=100.0))


def test_rejects_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing keys \['is_fall'\]"):
        evaluate_falls(write_trials(tmp_path / "a.npz", drop=("is_fall",)))
    with pytest.raises(ValueError, match="offsets"):
        evaluate_falls(write_trials(tmp_path / "b.npz", offsets=np.array([0, 10], np.int64)))
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        evaluate_falls(write_trials(tmp_path / "c.npz", acc=np.zeros((10, 2), np.float32)))


# -- scoring -------------------------------------------------------------------------------


def test_confusion_counts_pairs() -> None:
    counts = confusion(
        [True, True, True, False, False, False, False],
        [True, True, False, False, False, False, True],
    )
    assert counts == ConfusionCounts(
        true_positives=2, false_negatives=1, true_negatives=3, false_positives=1
    )
    assert (counts.positives, counts.negatives) == (3, 4)
    with pytest.raises(ValueError):
        confusion([True, False], [True])


def test_score_maths() -> None:
    s = score(
        ConfusionCounts(true_positives=97, false_negatives=3, true_negatives=995, false_positives=5)
    )
    assert s.sensitivity == pytest.approx(0.97)
    assert s.specificity == pytest.approx(0.995)
    assert s.precision == pytest.approx(97 / 102)
    assert s.f1 == pytest.approx(2 * 97 / (2 * 97 + 5 + 3))


def test_undefined_metrics_are_none() -> None:
    only_negatives = score(ConfusionCounts(true_negatives=4, false_positives=1))
    assert only_negatives.sensitivity is None
    assert only_negatives.f1 is None
    assert only_negatives.precision == 0.0  # one detection, none right
    assert only_negatives.specificity == pytest.approx(0.8)
    only_positives = score(ConfusionCounts(true_positives=0, false_negatives=2))
    assert only_positives.specificity is None
    assert only_positives.precision is None  # nothing detected
    assert only_positives.sensitivity == 0.0
    assert only_positives.f1 == 0.0


def test_counts_add_and_validate() -> None:
    total = ConfusionCounts(1, 2, 3, 4) + ConfusionCounts(10, 20, 30, 40)
    assert total == ConfusionCounts(11, 22, 33, 44)
    with pytest.raises(ValueError):
        ConfusionCounts(true_positives=-1)
