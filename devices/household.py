"""A household model for the safe-home kit: weeks of door and motion streams of one elder
living alone, with day-to-day variation, outings, visitors, nights away, sensor dropouts and
injected incidents (collapse at home, not up, night wandering).

Used by the evaluation of home inactivity (``safehome eval inactivity``), the simulator and
the tests. Pure: numpy's seeded generator, epoch seconds out, no I/O. The model and its
assumptions are documented in ``docs/home-activity.md``; :data:`DEV` is the parameter set the
detector was built against, :data:`HELDOUT` a different set (other ranges) for evaluation,
with other seeds.

One home's stream is a sorted list of :class:`HomeEvent` (``motion``, ``door_open``,
``door_close``, ``alive`` = a sensor heartbeat). The PIR's hold-off is applied: no two
motion events of one home are closer than ``holdoff_s``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

import numpy as np

DAY_S: Final = 86400.0
H: Final = 3600.0
M: Final = 60.0


class Injected(StrEnum):
    COLLAPSE = "collapse"  # collapse at home in waking time: no motion afterwards
    NOT_UP = "not_up"  # does not get up in the morning (ill or fallen in the night)
    NIGHT_WANDERING = "night_wandering"  # leaves home at night (dementia)


@dataclass(frozen=True, slots=True)
class HomeEvent:
    t: float
    kind: str  # motion | door_open | door_close | alive


@dataclass(frozen=True, slots=True)
class Incident:
    kind: Injected
    t: float  # collapse time / usual first activity (not up) / door opened (wandering)
    since: float = 0.0  # the resident's last sign before it (alerts from then on are about it)


@dataclass(frozen=True, slots=True)
class HouseholdParams:
    """Ranges each home's own routine is drawn from, and daily probabilities."""

    wake_mean_h: tuple[float, float] = (5.5, 8.5)
    wake_sd_min: tuple[float, float] = (15.0, 40.0)
    bed_mean_h: tuple[float, float] = (20.5, 23.0)
    bed_sd_min: tuple[float, float] = (15.0, 40.0)
    rate_per_h: tuple[float, float] = (4.0, 14.0)  # PIR triggers an hour while active
    quiet_spell_p: float = 0.6  # per day: a nap / long sit out of the sensor's view
    quiet_spell_min: tuple[float, float] = (30.0, 100.0)
    outing_p: float = 0.6
    outing_min: tuple[float, float] = (30.0, 240.0)
    visitor_p: float = 0.15
    night_trips: tuple[int, int] = (0, 2)
    night_away_p: float = 1 / 30
    dropout_p: float = 1 / 20
    dropout_h: tuple[float, float] = (1.0, 8.0)
    holdoff_s: float = 60.0
    heartbeat_s: float = 600.0


DEV: Final = HouseholdParams()
"""The parameter set the detector was built against (with seeds below 10 000)."""

HELDOUT: Final = HouseholdParams(
    wake_mean_h=(5.0, 9.0),
    wake_sd_min=(10.0, 50.0),
    bed_mean_h=(20.0, 23.5),
    bed_sd_min=(10.0, 50.0),
    rate_per_h=(3.0, 18.0),
    quiet_spell_p=0.7,
    quiet_spell_min=(20.0, 110.0),
    outing_p=0.5,
    outing_min=(20.0, 300.0),
    visitor_p=0.25,
    night_trips=(0, 3),
    night_away_p=1 / 20,
    dropout_p=1 / 15,
    dropout_h=(0.5, 10.0),
    holdoff_s=30.0,
    heartbeat_s=900.0,
)
"""Different ranges for the evaluation (seeds from 10 000 on): never used to tune."""


@dataclass(slots=True)
class HomeStream:
    events: list[HomeEvent] = field(default_factory=list)
    incident: Incident | None = None
    start: float = 0.0
    end: float = 0.0
    usual_wake_s: float = 0.0  # seconds of local day
    utc_offset_s: float = 8 * H


def _u(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _motion(rng: np.random.Generator, a: float, b: float, rate_h: float) -> list[float]:
    """Poisson motion triggers over [a, b) at ``rate_h`` an hour."""
    if b <= a:
        return []
    n = int(rng.poisson(rate_h * (b - a) / H))
    return sorted(float(x) for x in rng.uniform(a, b, n))


def generate_home(
    seed: int,
    days: int,
    params: HouseholdParams = DEV,
    *,
    incident: Injected | None = None,
    incident_day: int | None = None,
    epoch: float = 1_767_196_800.0,  # 2026-01-01 00:00 local (UTC+8)
) -> HomeStream:
    """``days`` days of one home from local midnight ``epoch``; an optional incident on
    ``incident_day`` ends the stream 14 h after it (what happens next is the response)."""
    rng = np.random.default_rng(seed)
    p = params
    wake_mu = _u(rng, p.wake_mean_h) * H
    wake_sd = _u(rng, p.wake_sd_min) * M
    bed_mu = _u(rng, p.bed_mean_h) * H
    bed_sd = _u(rng, p.bed_sd_min) * M
    rate = _u(rng, p.rate_per_h)
    raw: list[tuple[float, str]] = []
    silent: list[tuple[float, float]] = []  # dropouts: nothing at all arrives
    stream = HomeStream(start=epoch, usual_wake_s=wake_mu)
    end = epoch + days * DAY_S
    away_until = -1.0
    for d in range(days):
        m = epoch + d * DAY_S
        wake = m + float(np.clip(rng.normal(wake_mu, wake_sd), 4.2 * H, 11 * H))
        bed = m + float(np.clip(rng.normal(bed_mu, bed_sd), 19 * H, 25.5 * H))
        if incident_day is not None and d == incident_day and away_until > m:
            incident_day += 1  # still away from the night before: the incident comes later
        injected_today = incident is not None and d == incident_day
        if injected_today and incident is Injected.NOT_UP:
            last = max((t for t, k in raw if k != "alive" and t < m + 4 * H), default=m)
            stream.incident = Incident(Injected.NOT_UP, m + wake_mu, last)
            end = m + wake_mu + 14 * H
            break
        day_start = max(wake, away_until)
        # the waking day: motion, minus outings and quiet spells, plus visitors
        gaps: list[tuple[float, float]] = []
        if rng.random() < p.quiet_spell_p:
            q0 = float(rng.uniform(day_start + 2 * H, max(day_start + 2.5 * H, bed - 2 * H)))
            gaps.append((q0, q0 + _u(rng, p.quiet_spell_min) * M))
        if rng.random() < p.outing_p:
            o0 = float(rng.uniform(day_start + 1 * H, max(day_start + 1.5 * H, bed - 3 * H)))
            o1 = o0 + _u(rng, p.outing_min) * M
            gaps.append((o0, o1))
            raw += [(o0 - 30, "motion"), (o0, "door_open"), (o0 + 20, "door_close")]
            raw += [(o1, "door_open"), (o1 + 15, "motion"), (o1 + 30, "door_close")]
        times = _motion(rng, day_start, bed, rate)
        for g0, g1 in gaps:
            times = [t for t in times if not g0 - 60 <= t < g1 + 60]
        raw += [(t, "motion") for t in times]
        raw += [(day_start, "motion"), (bed, "motion")]
        if rng.random() < p.visitor_p:
            v0 = float(rng.uniform(day_start + 1 * H, max(day_start + 1.5 * H, bed - 1 * H)))
            v1 = min(v0 + float(rng.uniform(1, 3)) * H, m + 22.5 * H)  # visitors leave by 22:30
            raw += [
                (v0, "door_open"),
                (v0 + 20, "door_close"),
                (v1, "door_open"),
                (v1 + 20, "door_close"),
            ]
            raw += [(t, "motion") for t in _motion(rng, v0, v1, rate * 2)]
        # the night: bathroom trips
        lo, hi = bed + 30 * M, m + DAY_S + wake_mu - 45 * M
        for _ in range(int(rng.integers(p.night_trips[0], p.night_trips[1] + 1))):
            if hi > lo:
                tt = float(rng.uniform(lo, hi))
                raw += [(tt, "motion"), (tt + 150, "motion")]
        if injected_today and incident is Injected.COLLAPSE:
            tc = float(rng.uniform(day_start + 1 * H, max(day_start + 1.5 * H, bed - 1 * H)))
            raw = [(t, k) for t, k in raw if t <= tc]
            raw.append((tc, "motion"))
            stream.incident = Incident(Injected.COLLAPSE, tc, tc)
            end = tc + 14 * H
            break
        if injected_today and incident is Injected.NIGHT_WANDERING:
            tw = m + DAY_S + float(rng.uniform(0.5, 3.5)) * H
            raw = [(t, k) for t, k in raw if t <= tw - 120]
            raw += [(tw - 60, "motion"), (tw, "door_open"), (tw + 30, "door_close")]
            stream.incident = Incident(Injected.NIGHT_WANDERING, tw, tw)
            end = tw + 14 * H
            break
        if rng.random() < p.night_away_p:
            a0 = min(bed - float(rng.uniform(1, 4)) * H, m + 22 * H)  # leaves by 22:00
            a1 = m + DAY_S + float(rng.uniform(10, 16)) * H
            raw = [(t, k) for t, k in raw if t < a0 - 60]
            raw += [(a0 - 30, "motion"), (a0, "door_open"), (a0 + 20, "door_close")]
            raw += [(a1, "door_open"), (a1 + 15, "motion"), (a1 + 30, "door_close")]
            away_until = a1 + 60
        if rng.random() < p.dropout_p:
            s0 = m + float(rng.uniform(0, DAY_S))
            silent.append((s0, s0 + _u(rng, p.dropout_h) * H))
    raw += [(float(t), "alive") for t in np.arange(epoch, end, p.heartbeat_s)]
    raw.sort()
    last_motion = -np.inf
    events: list[HomeEvent] = []
    for t, k in raw:
        if not epoch <= t < end or any(a <= t < b for a, b in silent):
            continue
        if k == "motion":
            if t - last_motion < p.holdoff_s:
                continue
            last_motion = t
        events.append(HomeEvent(float(t), k))
    stream.events = events
    stream.end = end
    return stream
