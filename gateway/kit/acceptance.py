"""Acceptance-test steps of the safe-home kit's devices (issue 12 §4).

Each step is satisfied by the first stored message of a type after the test started:
open and close the door, walk past the motion sensor, press a smoke or gas detector's test
button (recorded, never escalated), wet and dry a water-leak probe (the leak is the test's
awaited alarm step: it is observed, not raised, in test mode), and for a home hub its
heartbeat. Pure: :func:`steps_found` works on the rows :mod:`gateway.acceptance` read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

# kind -> ((step, prompt, (channel, message types)), ...)
_KIT: Final[dict[str, tuple[tuple[str, str, tuple[str, frozenset[str]]], ...]]] = {
    "home_hub": (
        ("heartbeat", "接通家庭网关电源，等待心跳 / Power the hub on and wait for its heartbeat.",
         ("reading", frozenset({"heartbeat"}))),
    ),
    "door_contact": (
        ("open", "打开门 / Open the door.", ("event", frozenset({"open"}))),
        ("close", "关上门 / Close the door.", ("event", frozenset({"close"}))),
    ),
    "motion_sensor": (
        ("motion", "在红外探测器前走过 / Walk past the motion sensor.",
         ("event", frozenset({"motion"}))),
    ),
    "smoke_detector": (
        ("test_button", "按下烟感的自检键（只记录，不升级）/ Press the smoke detector's test "
         "button (recorded, not escalated).", ("event", frozenset({"test"}))),
    ),
    "gas_detector": (
        ("test_button", "按下燃气探测器的自检键（只记录，不升级）/ Press the gas detector's test "
         "button (recorded, not escalated).", ("event", frozenset({"test"}))),
    ),
    "water_leak": (
        ("leak", "用湿布接触探头 / Touch the probe with a wet cloth.",
         ("event", frozenset({"leak"}))),
        ("dry", "擦干探头 / Dry the probe.", ("event", frozenset({"dry"}))),
    ),
}  # fmt: skip

STEPS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    kind: tuple((name, prompt) for name, prompt, _ in steps) for kind, steps in _KIT.items()
}
"""Prompts per kit kind, in the shape of :data:`gateway.acceptance.STEPS`."""

ALARM_STEPS: Final[dict[str, tuple[str, str]]] = {"water_leak": ("leak", "water_leak")}
"""The kit step that raises an alarm (observed, not raised, in test mode): shape of
:data:`gateway.acceptance.ALARM_STEPS`."""


def _latency(received: datetime, time: datetime) -> float:
    return round((received - time).total_seconds() * 1000.0, 1)


def steps_found(
    kind: str, events: Sequence[Mapping[str, Any]], readings: Sequence[Mapping[str, Any]]
) -> dict[str, tuple[dict[str, Any], float]]:
    """``{step: (observed, latency_ms)}`` for the steps of ``kind`` the rows satisfy."""
    found: dict[str, tuple[dict[str, Any], float]] = {}
    for name, _, (source, types) in _KIT[kind]:
        for row in events if source == "event" else readings:
            if row["type"] in types:
                observed = {source: row["type"], "device_time": row["time"],
                            "received_at": row["received_at"]}  # fmt: skip
                found[name] = (observed, _latency(row["received_at"], row["time"]))
                break
    return found
