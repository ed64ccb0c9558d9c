"""Evaluation of home inactivity (``safehome eval inactivity``) on generated households.

Each home is a :func:`devices.household.generate_home` stream (seed ``seed + i``): weeks of
motion and door events with day-to-day variation, outings, visitors, nights away and sensor
dropouts. Three homes in four get one injected incident after a three-week warm-up
(collapse at home, not up, night wandering, in turn). The stream is fed in time order to the
production :class:`analytics.home_activity.HomeActivity`, checked every ``check_s`` as the
gateway does.

Counting: an alert (a raise, not a resolution) before the resident's last sign of life
before the incident (the collapse, the door opening, or for "not up" the last motion of the
night before), or in a home without an incident, is false. An incident is detected by the
first alert after that sign (any kind: a collapse in the evening may be found as "not up"
next morning), else missed (the stream ends 14 h after it). Delay: from the collapse, from
the door opening, or, for "not up", from the home's usual first activity (0 when earlier).

Defaults: the held-out parameter set and seeds from 10 000 (the detector was built on
:data:`devices.household.DEV` with seeds below 10 000).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analytics.home_activity import HomeActivity, HomeActivityParams
from devices.household import DEV, HELDOUT, HouseholdParams, Injected, generate_home

__all__ = ["InactivityEvaluation", "evaluate_inactivity", "render_inactivity_report"]

PARAMS = {"dev": DEV, "heldout": HELDOUT}
_CYCLE = (Injected.COLLAPSE, Injected.NOT_UP, Injected.NIGHT_WANDERING, None)
WARM_UP_DAYS = 21


@dataclass(frozen=True, slots=True)
class InactivityEvaluation:
    homes: int
    home_days: float
    false_alerts: int
    false_alerts_per_home_month: float
    incidents: int
    missed_events: int
    median_delay_min: float | None
    p90_delay_min: float | None
    delay_by_kind_min: dict[str, float | None] = field(default_factory=dict)
    false_by_kind: dict[str, int] = field(default_factory=dict)
    params: str = "heldout"
    seeds: str = ""
    cpu_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _run_home(
    i: int, seed: int, days: int, params: HouseholdParams, *, check_s: float, care_level: int
) -> tuple[float, list[tuple[float, str]], Any]:
    rng = np.random.default_rng(seed + 7_919)
    kind = _CYCLE[i % len(_CYCLE)]
    day = int(rng.integers(WARM_UP_DAYS, max(WARM_UP_DAYS + 1, days - 1)))
    stream = generate_home(seed, days, params, incident=kind, incident_day=day)
    ha = HomeActivity(f"home-{i}", HomeActivityParams.for_care_level(care_level))
    alerts: list[tuple[float, str]] = []
    events = stream.events
    j = 0
    t = stream.start
    while t < stream.end:
        while j < len(events) and events[j].t <= t:
            ev = events[j]
            if ev.kind == "motion":
                ha.on_motion(ev.t)
            elif ev.kind == "door_open":
                ha.on_door(ev.t, True)
            elif ev.kind == "door_close":
                ha.on_door(ev.t, False)
            else:
                ha.on_alive(ev.t)
            j += 1
        alerts += [(d.time, d.kind.value) for d in ha.check(t) if not d.resolved]
        t += check_s
    return (stream.end - stream.start) / 86400.0, alerts, stream


def evaluate_inactivity(
    *,
    homes: int = 80,
    days: int = 42,
    seed: int = 10_000,
    params: str = "heldout",
    check_s: float = 300.0,
    care_level: int = 2,
) -> InactivityEvaluation:
    started = time.process_time()
    home_days = 0.0
    false_alerts = 0
    false_by: dict[str, int] = {}
    incidents = missed = 0
    delays: list[float] = []
    by_kind: dict[str, list[float]] = {k.value: [] for k in Injected}
    for i in range(homes):
        n_days, alerts, stream = _run_home(
            i, seed + i, days, PARAMS[params], check_s=check_s, care_level=care_level
        )
        home_days += n_days
        inc = stream.incident
        since = None
        if inc is not None:
            incidents += 1
            since = inc.since
        found: float | None = None
        for at, kind in alerts:
            if since is not None and at > since:
                found = at if found is None else found
                continue
            false_alerts += 1
            false_by[kind] = false_by.get(kind, 0) + 1
        if inc is not None:
            if found is None:
                missed += 1
            else:
                delay = max(0.0, found - inc.t) / 60.0
                delays.append(delay)
                by_kind[inc.kind.value].append(delay)
    arr = np.array(delays)
    return InactivityEvaluation(
        homes=homes,
        home_days=round(home_days, 1),
        false_alerts=false_alerts,
        false_alerts_per_home_month=round(false_alerts / (home_days / 30.0), 3),
        incidents=incidents,
        missed_events=missed,
        median_delay_min=round(float(np.median(arr)), 1) if arr.size else None,
        p90_delay_min=round(float(np.quantile(arr, 0.9)), 1) if arr.size else None,
        delay_by_kind_min={
            k: (round(float(np.median(v)), 1) if v else None) for k, v in by_kind.items()
        },
        false_by_kind=false_by,
        params=params,
        seeds=f"{seed}..{seed + homes - 1}",
        cpu_s=round(time.process_time() - started, 2),
    )


def render_inactivity_report(ev: InactivityEvaluation) -> str:
    lines = [
        "居家活动评估 / home inactivity evaluation",
        f"  homes {ev.homes}, home-days {ev.home_days} (params {ev.params}, seeds {ev.seeds})",
        f"  false alerts {ev.false_alerts} = {ev.false_alerts_per_home_month} per home-month "
        f"{dict(sorted(ev.false_by_kind.items()))}",
        f"  injected incidents {ev.incidents}, missed {ev.missed_events}",
        f"  delay median {ev.median_delay_min} min, p90 {ev.p90_delay_min} min; by kind "
        f"{ev.delay_by_kind_min}",
        f"  CPU {ev.cpu_s} s",
    ]
    return "\n".join(lines)
