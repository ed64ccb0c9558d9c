"""Saving day rows: the routine day summaries and vitals day histograms the runner keeps.

The vitals baseline needs two weeks of usable bed readings; instead of reading two weeks of
1 Hz readings back at every start, the runner counts each local day's usable readings into
histograms (the same selection as the baseline: a resident in bed, moving less than the
artefact limit, values in the valid range) and saves them as one row a day. A
:class:`VitalsCounter` counts one subject's day in progress; :class:`DayRows` holds the rows
waiting to be written, by (subject, day): a later row of the same day replaces an unwritten
one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from analytics.routine import DaySummary
from analytics.vitals import HR_BINS, RR_BINS, VitalsParams
from gateway.analysis.records import RoutineDay, VitalsDay


def padded(values: Sequence[int], n: int) -> npt.NDArray[np.float64]:
    """``values`` as ``n`` float bins (cut or padded with zeros)."""
    out = np.zeros(n, dtype=np.float64)
    k = min(n, len(values))
    out[:k] = np.asarray(values[:k], dtype=np.float64)
    return out


class VitalsCounter:
    """One subject's histograms of usable bed readings on the local day in progress."""

    __slots__ = ("_limits", "_rows", "day", "dirty", "hr", "rr", "subject", "utc_offset")

    def __init__(
        self,
        subject: str,
        utc_offset: float,
        limits: VitalsParams,
        rows: dict[tuple[str, int], VitalsDay],
    ) -> None:
        self.subject = subject
        self.utc_offset = utc_offset
        self.day: int | None = None
        self.hr = [0] * HR_BINS
        self.rr = [0] * RR_BINS
        self.dirty = False
        self._limits = limits
        self._rows = rows  # the owning DayRows' pending vitals rows

    def count(self, t: float, hr: float | None, rr: float | None) -> None:
        """Count a usable reading at device time ``t`` (a new local day closes the last)."""
        day = math.floor((t + self.utc_offset) / 86400.0)
        if day != self.day:
            if self.day is not None and day < self.day:
                return  # a late reading of a day already closed
            self._close_day()
            self.day = day
        limits = self._limits
        if hr is not None and limits.hr_valid_min <= hr <= limits.hr_valid_max:
            self.hr[int(hr + 0.5)] += 1
            self.dirty = True
        if rr is not None and 0.0 < rr <= limits.rr_valid_max:
            i = int(rr + 0.5)
            if i < RR_BINS:
                self.rr[i] += 1
                self.dirty = True

    def save(self) -> None:
        """Queue the day in progress if it counted anything since the last save."""
        if self.dirty and self.day is not None:
            self._queue()
            self.dirty = False

    def resume(self, rows: Sequence[VitalsDay], now: float) -> None:
        """Go on counting today's stored row (``rows``: this subject's stored days)."""
        today = math.floor((now + self.utc_offset) / 86400.0)
        for v in rows:
            if v.day == today:
                self.day = today
                self.hr = [int(x) for x in padded(v.heart_rate, HR_BINS)]
                self.rr = [int(x) for x in padded(v.breathing_rate, RR_BINS)]

    def _close_day(self) -> None:
        if self.day is not None and self.dirty:
            self._queue()
        self.hr = [0] * HR_BINS
        self.rr = [0] * RR_BINS
        self.dirty = False

    def _queue(self) -> None:
        assert self.day is not None
        self._rows[(self.subject, self.day)] = VitalsDay(
            self.subject, self.day, tuple(self.hr), tuple(self.rr)
        )


class DayRows:
    """Day rows waiting to be written, and the vitals counters that produce them."""

    def __init__(self, limits: VitalsParams | None = None) -> None:
        self.limits = limits if limits is not None else VitalsParams()
        self._routine: dict[tuple[str, int], RoutineDay] = {}
        self._vitals: dict[tuple[str, int], VitalsDay] = {}
        self._counters: dict[str, VitalsCounter] = {}

    def counter(self, subject: str, utc_offset: float) -> VitalsCounter:
        """The vitals counter of ``subject`` (made on first use)."""
        c = self._counters.get(subject)
        if c is None:
            c = VitalsCounter(subject, utc_offset, self.limits, self._vitals)
            self._counters[subject] = c
        return c

    def add_routine(self, subject: str, summary: DaySummary) -> None:
        self._routine[(subject, summary.day)] = RoutineDay(subject, summary)

    def save_vitals(self) -> None:
        """Queue every counter's day in progress that changed since the last save."""
        for c in self._counters.values():
            c.save()

    @staticmethod
    def by_subject(days: Sequence[VitalsDay]) -> Iterator[tuple[str, list[VitalsDay]]]:
        """Stored vitals days grouped by subject."""
        out: dict[str, list[VitalsDay]] = {}
        for vd in days:
            out.setdefault(vd.subject, []).append(vd)
        yield from out.items()

    @property
    def routine(self) -> list[RoutineDay]:
        return list(self._routine.values())

    @property
    def vitals(self) -> list[VitalsDay]:
        return list(self._vitals.values())

    def __bool__(self) -> bool:
        return bool(self._routine or self._vitals)

    def clear(self) -> None:
        """The rows were written."""
        self._routine.clear()
        self._vitals.clear()
