"""Scoring of binary detectors: confusion counts to sensitivity, specificity and F1.

A metric whose denominator is empty is ``None`` rather than 0 or 1, so that a group
without falls (for example residents who performed activities only) reports no
sensitivity instead of a misleading one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["BinaryScores", "ConfusionCounts", "confusion", "score"]


@dataclass(frozen=True, slots=True)
class ConfusionCounts:
    """Counts of a binary detector against labels (positive = a fall)."""

    true_positives: int = 0
    false_negatives: int = 0
    true_negatives: int = 0
    false_positives: int = 0

    def __post_init__(self) -> None:
        counts = (
            self.true_positives,
            self.false_negatives,
            self.true_negatives,
            self.false_positives,
        )
        if min(counts) < 0:
            raise ValueError(f"confusion counts must be >= 0, got {counts}")

    @property
    def positives(self) -> int:
        """Labelled positives (e.g. fall trials)."""
        return self.true_positives + self.false_negatives

    @property
    def negatives(self) -> int:
        """Labelled negatives (e.g. activity trials)."""
        return self.true_negatives + self.false_positives

    def __add__(self, other: ConfusionCounts) -> ConfusionCounts:
        return ConfusionCounts(
            self.true_positives + other.true_positives,
            self.false_negatives + other.false_negatives,
            self.true_negatives + other.true_negatives,
            self.false_positives + other.false_positives,
        )


@dataclass(frozen=True, slots=True)
class BinaryScores:
    """Sensitivity (recall), specificity, precision and F1; ``None`` when undefined."""

    counts: ConfusionCounts
    sensitivity: float | None
    specificity: float | None
    precision: float | None
    f1: float | None


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def confusion(labels: Iterable[bool], detected: Iterable[bool]) -> ConfusionCounts:
    """Count outcomes of paired (label, detected) values; the iterables must pair up."""
    tp = fn = tn = fp = 0
    for label, hit in zip(labels, detected, strict=True):
        if label and hit:
            tp += 1
        elif label:
            fn += 1
        elif hit:
            fp += 1
        else:
            tn += 1
    return ConfusionCounts(tp, fn, tn, fp)


def score(counts: ConfusionCounts) -> BinaryScores:
    """Metrics of a confusion matrix.

    sensitivity = TP / (TP + FN), specificity = TN / (TN + FP),
    precision = TP / (TP + FP), F1 = 2 TP / (2 TP + FP + FN).
    Sensitivity and F1 are ``None`` without positives (F1 measures how well positives
    are found), specificity is ``None`` without negatives, precision is ``None`` when
    nothing was detected.
    """
    tp, fn, fp = counts.true_positives, counts.false_negatives, counts.false_positives
    return BinaryScores(
        counts=counts,
        sensitivity=_ratio(tp, counts.positives),
        specificity=_ratio(counts.true_negatives, counts.negatives),
        precision=_ratio(tp, tp + fp),
        f1=_ratio(2 * tp, 2 * tp + fp + fn) if counts.positives else None,
    )
