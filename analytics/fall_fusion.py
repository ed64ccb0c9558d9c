"""Fusion of fall evidence for one resident, with a confirmation window they can cancel.

Evidence comes from several places, each passed in with its own time (epoch seconds):

- accelerometer candidates from :class:`analytics.falls.FallDetector`;
- the wearable's own on-device fall flag;
- the SOS button, which raises an :attr:`DetectionKind.EMERGENCY_CALL` at once;
- the resident's cancel ("I'm OK") button;
- bed presence reports, which give context: a resident lying in bed when the
  accelerometer saw an "impact" has most likely turned over or lain down heavily.

A suspected fall becomes an *episode*, open for ``confirm_window_s`` from the earliest
evidence (the impact). Evidence within ``merge_window_s`` of an open episode joins it, so
one fall seen by two sources, or a fall with several impacts, gives one alert. When the
window expires without a cancel, :meth:`FallFusion.poll` returns a
:attr:`DetectionKind.FALL` detection that explains the evidence and which sources agreed.

Safety rules:

- SOS is never suppressed. It returns an emergency call immediately and confirms any
  open fall episode whose impact preceded it, without waiting for the window.
- Bed context suppresses only episodes whose sole evidence is the accelerometer, and
  only when a recent bed report had the resident in bed at the impact *and* no report
  of leaving the bed arrives before the window expires (a roll out of bed is a fall).
  A stale bed report (older than ``bed_report_max_age_s``) gives no context.
- Cancelled and suppressed episodes produce no alert. They remain inspectable in
  :attr:`FallFusion.history`, so staff can see that a fall was suspected and why it
  was dropped.

The class is a deterministic state machine: it never reads a clock.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from analytics.falls import FallCandidate, clock_time
from analytics.types import DetailValue, Detection, DetectionKind

__all__ = [
    "FallEpisode",
    "FallFusion",
    "FallOutcome",
    "FallSource",
    "FusionParams",
]


class FallSource(StrEnum):
    """Where evidence for a fall came from."""

    ACCELEROMETER = "accelerometer"
    DEVICE_FLAG = "device_flag"
    SOS = "sos"


class FallOutcome(StrEnum):
    """State of a fall episode."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    SUPPRESSED_IN_BED = "suppressed_in_bed"


_SOURCE_WORDS = {
    FallSource.ACCELEROMETER: "the wearable's accelerometer analysis",
    FallSource.DEVICE_FLAG: "the wearable's own fall flag",
    FallSource.SOS: "the SOS button",
}


@dataclass(frozen=True, slots=True)
class FusionParams:
    """Timing of the fusion. Times in seconds."""

    confirm_window_s: float = 30.0
    """Time from the impact during which the resident can cancel."""
    merge_window_s: float = 10.0
    """Evidence this close to an episode's evidence joins it instead of opening another."""
    bed_report_max_age_s: float = 120.0
    """A bed report older than this at the impact gives no context (sensor may be silent)."""
    history_size: int = 200
    """Closed episodes kept for inspection (oldest dropped first)."""
    utc_offset_s: float = 0.0
    """Offset of local time from UTC, used only to write clock times in explanations."""

    def __post_init__(self) -> None:
        if not self.confirm_window_s >= 0:
            raise ValueError(f"confirm_window_s must be >= 0, got {self.confirm_window_s}")
        if not self.merge_window_s >= 0:
            raise ValueError(f"merge_window_s must be >= 0, got {self.merge_window_s}")
        if not self.bed_report_max_age_s >= 0:
            raise ValueError("bed_report_max_age_s must be >= 0")
        if self.history_size < 1:
            raise ValueError(f"history_size must be >= 1, got {self.history_size}")


@dataclass(frozen=True, slots=True)
class FallEpisode:
    """Snapshot of one suspected fall, for inspection."""

    started: float
    """Epoch time of the earliest evidence (the impact)."""
    deadline: float
    """When the episode is (or was) due to be confirmed."""
    sources: tuple[FallSource, ...]
    """Sources that reported it, in order of arrival."""
    candidate: FallCandidate | None
    """Strongest accelerometer evidence, if any."""
    outcome: FallOutcome
    closed_at: float | None
    """When it was confirmed, cancelled or suppressed; ``None`` while pending."""
    note: str
    """Why it was closed the way it was (empty while pending)."""


@dataclass(slots=True)
class _Episode:
    started: float
    last_evidence: float
    deadline: float
    sources: list[FallSource] = field(default_factory=list)
    candidate: FallCandidate | None = None
    sos_time: float | None = None
    outcome: FallOutcome = FallOutcome.PENDING
    closed_at: float | None = None
    note: str = ""

    def snapshot(self) -> FallEpisode:
        return FallEpisode(
            started=self.started,
            deadline=self.deadline,
            sources=tuple(self.sources),
            candidate=self.candidate,
            outcome=self.outcome,
            closed_at=self.closed_at,
            note=self.note,
        )


class FallFusion:
    """Fall evidence fusion and confirmation window for one resident (``subject``)."""

    def __init__(self, subject: str, params: FusionParams | None = None) -> None:
        self.subject = subject
        self.params = params or FusionParams()
        self._open: list[_Episode] = []
        self._closed: deque[_Episode] = deque(maxlen=self.params.history_size)
        self._cancels: list[float] = []
        self._sos_times: list[float] = []
        self._bed_times: list[float] = []
        self._bed_states: list[bool] = []

    # -- inputs ------------------------------------------------------------------------

    def add_candidate(self, candidate: FallCandidate) -> None:
        """Accelerometer evidence of a fall (impact at ``candidate.time``)."""
        self._add_evidence(candidate.time, FallSource.ACCELEROMETER, candidate)

    def device_fall_flag(self, time: float) -> None:
        """The wearable's own fall detector raised a fall at ``time``."""
        self._add_evidence(time, FallSource.DEVICE_FLAG, None)

    def sos(self, time: float) -> list[Detection]:
        """The resident pressed SOS: an emergency call now, never suppressed.

        Open fall episodes whose impact came before the SOS are confirmed at the next
        :meth:`poll` with the SOS as an agreeing source, without waiting for the window.
        """
        self._sos_times.append(time)
        joined = [e for e in self._open if e.started <= time < e.deadline]
        for episode in joined:
            self._join_sos(episode, time)
        reason = f"SOS button pressed at {self._clock(time)}"
        details: dict[str, DetailValue] = {"source": FallSource.SOS.value}
        if joined:
            fall_started = min(e.started for e in joined)
            reason += f", {time - fall_started:.0f} s after a suspected fall"
            details["fall_started"] = fall_started
        return [
            Detection(
                kind=DetectionKind.EMERGENCY_CALL,
                subject=self.subject,
                time=time,
                reason=reason,
                details=details,
            )
        ]

    def cancel(self, time: float) -> list[FallEpisode]:
        """The resident pressed "I'm OK" at ``time``.

        Cancels every open episode whose window is still running (impact at or before
        ``time``); returns them. The cancel is remembered, so evidence that arrives later
        about an impact before it (detection latency) is recorded as cancelled too.
        Episodes confirmed by SOS are not cancelled.
        """
        self._cancels.append(time)
        cancelled: list[_Episode] = []
        for episode in list(self._open):
            if episode.sos_time is None and episode.started <= time < episode.deadline:
                self._close(episode, FallOutcome.CANCELLED, time, self._cancel_note(time))
                cancelled.append(episode)
        return [episode.snapshot() for episode in cancelled]

    def bed_presence(self, time: float, in_bed: bool) -> None:
        """A bed sensor reported the resident in bed (``True``) or not at ``time``."""
        at = bisect.bisect_right(self._bed_times, time)
        self._bed_times.insert(at, time)
        self._bed_states.insert(at, in_bed)

    # -- output ------------------------------------------------------------------------

    def poll(self, now: float) -> list[Detection]:
        """Close episodes whose window has expired by ``now``; return the confirmed falls.

        A detection's ``time`` is the moment the episode was confirmed (window expiry,
        or the SOS), not ``now``, so the result does not depend on how often this runs.
        """
        due = sorted((e for e in self._open if e.deadline <= now), key=lambda e: e.deadline)
        detections: list[Detection] = []
        for episode in due:
            suppression = self._bed_suppression(episode)
            if suppression is not None:
                self._close(episode, FallOutcome.SUPPRESSED_IN_BED, episode.deadline, suppression)
                continue
            detection = self._fall_detection(episode)
            self._close(episode, FallOutcome.CONFIRMED, episode.deadline, detection.reason)
            detections.append(detection)
        self._prune(now)
        return detections

    @property
    def pending(self) -> tuple[FallEpisode, ...]:
        """Open episodes, oldest first."""
        return tuple(e.snapshot() for e in sorted(self._open, key=lambda e: e.started))

    @property
    def history(self) -> tuple[FallEpisode, ...]:
        """Closed episodes (confirmed, cancelled, suppressed) in the order they closed."""
        return tuple(e.snapshot() for e in self._closed)

    @property
    def cancelled(self) -> tuple[FallEpisode, ...]:
        """Closed episodes the resident cancelled."""
        return tuple(e for e in self.history if e.outcome is FallOutcome.CANCELLED)

    # -- internals ---------------------------------------------------------------------

    def _add_evidence(
        self, time: float, source: FallSource, candidate: FallCandidate | None
    ) -> None:
        p = self.params
        episode = self._find(self._open, time)
        if episode is None:
            # Late evidence of an event already decided joins that decision, except that
            # a source other than the accelerometer would have prevented a bed
            # suppression: it opens a new episode, which will alert.
            decided = self._find(self._closed, time, decided_after=True)
            if decided is not None and not (
                decided.outcome is FallOutcome.SUPPRESSED_IN_BED
                and source is not FallSource.ACCELEROMETER
            ):
                episode = decided
        if episode is None:
            episode = _Episode(started=time, last_evidence=time, deadline=time + p.confirm_window_s)
            self._open.append(episode)
            self._absorb(episode, source, candidate, time)
            sos = next((s for s in self._sos_times if time <= s < episode.deadline), None)
            if sos is not None:
                self._join_sos(episode, sos)
                return
            cancel = next((c for c in self._cancels if time <= c < episode.deadline), None)
            if cancel is not None:
                self._close(episode, FallOutcome.CANCELLED, cancel, self._cancel_note(cancel))
            return
        self._absorb(episode, source, candidate, time)

    def _find(
        self, episodes: Sequence[_Episode], time: float, decided_after: bool = False
    ) -> _Episode | None:
        """The newest episode whose evidence span, widened by the merge window, holds ``time``."""
        merge = self.params.merge_window_s
        for episode in reversed(episodes):
            if not episode.started - merge <= time <= episode.last_evidence + merge:
                continue
            if decided_after and (episode.closed_at is None or time > episode.closed_at):
                continue
            return episode
        return None

    def _absorb(
        self, episode: _Episode, source: FallSource, candidate: FallCandidate | None, time: float
    ) -> None:
        if source not in episode.sources:
            episode.sources.append(source)
        if candidate is not None and (
            episode.candidate is None or candidate.impact_mps > episode.candidate.impact_mps
        ):
            episode.candidate = candidate
        episode.started = min(episode.started, time)
        episode.last_evidence = max(episode.last_evidence, time)
        if episode.outcome is FallOutcome.PENDING:
            self._set_deadline(episode)

    def _join_sos(self, episode: _Episode, sos_time: float) -> None:
        episode.sos_time = sos_time
        if FallSource.SOS not in episode.sources:
            episode.sources.append(FallSource.SOS)
        self._set_deadline(episode)

    def _set_deadline(self, episode: _Episode) -> None:
        """Window expiry from the impact, or the SOS press if that came first."""
        episode.deadline = episode.started + self.params.confirm_window_s
        if episode.sos_time is not None:
            episode.deadline = min(episode.deadline, episode.sos_time)

    def _close(self, episode: _Episode, outcome: FallOutcome, at: float, note: str) -> None:
        episode.outcome = outcome
        episode.closed_at = at
        episode.note = note
        self._open.remove(episode)
        self._closed.append(episode)

    def _cancel_note(self, time: float) -> str:
        return f'cancelled by the resident ("I\'m OK") at {self._clock(time)}'

    def _bed_suppression(self, episode: _Episode) -> str | None:
        """Why an accelerometer-only episode is explained by the resident being in bed."""
        if episode.sources != [FallSource.ACCELEROMETER]:
            return None
        at = bisect.bisect_right(self._bed_times, episode.started)
        if at == 0 or not self._bed_states[at - 1]:
            return None
        report_time = self._bed_times[at - 1]
        if episode.started - report_time > self.params.bed_report_max_age_s:
            return None
        stop = bisect.bisect_right(self._bed_times, episode.deadline)
        if not all(self._bed_states[at:stop]):
            return None  # the bed emptied during the window: a fall out of bed
        return (
            f"suppressed: accelerometer-only impact at {self._clock(episode.started)} while the "
            f"bed sensor reported the resident in bed (report at {self._clock(report_time)}) "
            "and still in bed when the window expired"
        )

    def _fall_detection(self, episode: _Episode) -> Detection:
        c = episode.candidate
        sources = " and ".join(_SOURCE_WORDS[s] for s in episode.sources)
        if c is not None:
            evidence = (
                f"impact {c.peak_g:.1f} g absorbing {c.impact_mps:.1f} m/s, posture turned "
                f"{c.posture_change_deg:.0f}°, residual motion {c.stillness:.2f} g afterwards"
            )
        else:
            evidence = "no accelerometer analysis available"
        if episode.sos_time is not None:
            confirmation = f"the resident pressed SOS at {self._clock(episode.sos_time)}"
        else:
            confirmation = f"not cancelled within {self.params.confirm_window_s:g} s"
        reason = (
            f"Fall at {self._clock(episode.started)}: {evidence}; reported by {sources}; "
            f"{confirmation}."
        )
        details: dict[str, DetailValue] = {
            "sources": "+".join(s.value for s in episode.sources),
            "accelerometer": FallSource.ACCELEROMETER in episode.sources,
            "device_flag": FallSource.DEVICE_FLAG in episode.sources,
            "sos": FallSource.SOS in episode.sources,
            "peak_g": None if c is None else round(c.peak_g, 2),
            "impact_mps": None if c is None else round(c.impact_mps, 2),
            "posture_change_deg": None if c is None else round(c.posture_change_deg, 1),
            "stillness_g": None if c is None else round(c.stillness, 3),
            "confirm_window_s": self.params.confirm_window_s,
        }
        return Detection(
            kind=DetectionKind.FALL,
            subject=self.subject,
            time=episode.deadline,
            reason=reason,
            details=details,
            started=episode.started,
        )

    def _prune(self, now: float) -> None:
        """Forget cancels, SOS presses and bed reports too old to matter any more."""
        horizon = now - self.params.confirm_window_s - self.params.merge_window_s
        self._cancels = [c for c in self._cancels if c >= horizon]
        self._sos_times = [s for s in self._sos_times if s >= horizon]
        keep_from = horizon - self.params.bed_report_max_age_s
        first = max(0, bisect.bisect_left(self._bed_times, keep_from) - 1)
        del self._bed_times[:first]
        del self._bed_states[:first]

    def _clock(self, epoch_s: float) -> str:
        return clock_time(epoch_s, self.params.utc_offset_s)
