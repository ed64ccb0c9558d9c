"""Door not opened for days (多日未开门): a welfare check for an elder living alone.

An elder living alone goes out: shopping, a walk, the clinic. When the home's door contact
shows no opening for ``unused_s`` (``kit.door_unused_days``, default 3 days), someone
should call or knock: the elder may be ill, out of food, or unable to leave. One
:class:`DoorUnused` per home with a door contact raises ``DOOR_UNUSED`` (a care finding,
once per episode) and resolves it when the door opens.

The silence is counted from the latest of: the last opening (any door contact of the home;
restored from the store at start-up; the monitoring start when none is known), the end of
an away period (the resident's away status set by staff, or the family's 随家人外出
periods). Nothing is raised while the elder is away (status, or a family period in force
now), nor while the door contact shows no sign of life for ``alive_s`` (a dead sensor is the
device-offline incident's business, not the elder's). A door that is open now (opened, not
closed) is not "unused".

Pure: epoch seconds in, no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from analytics.types import DEFAULT_UTC_OFFSET_S, Detection, DetectionKind

DAY_S: Final = 86400.0
CONDITION: Final = "door_unused"
"""``details["condition"]`` of this detector's findings."""


@dataclass(frozen=True, slots=True)
class DoorUnusedParams:
    unused_s: float = 3 * DAY_S
    alive_s: float = 3 * 3600.0
    """The door contact counts as working this long after its last sign of life."""
    utc_offset_s: float = DEFAULT_UTC_OFFSET_S


def _stamp(t: float, offset: float) -> str:
    """``MM-DD HH:MM`` local."""
    return datetime.fromtimestamp(t + offset, UTC).strftime("%m-%d %H:%M")


class DoorUnused:
    """One home's "door not opened for days". Feed in time order; call :meth:`check`."""

    def __init__(self, subject: str, params: DoorUnusedParams | None = None) -> None:
        self.subject = subject
        self.p = params or DoorUnusedParams()
        self._last_open: float | None = None
        self._doors_open: set[str] = set()  # door contacts open now (a home may have several)
        self._start: float | None = None
        self._alive: float | None = None
        self._away = False
        self._away_ended = -math.inf
        self._periods: tuple[tuple[float, float], ...] = ()
        self._open_since: float | None = None  # the raised episode's start, if open
        self._out: list[Detection] = []

    # -- input ------------------------------------------------------------------------------

    def restore(self, last_open: float) -> None:
        """The last opening known from before the start (the store)."""
        if self._last_open is None or last_open > self._last_open:
            self._last_open = last_open

    def on_door(self, t: float, opened: bool, door: str = "") -> None:
        """An opening or closing of one of the home's door contacts (``door``: its id)."""
        self.on_alive(t)
        if not opened:
            self._doors_open.discard(door)
            return
        self._doors_open.add(door)
        if self._last_open is None or t > self._last_open:
            self._last_open = t
        if self._open_since is not None:
            self._open_since = None
            clock = _stamp(t, self.p.utc_offset_s)
            self._out.append(
                Detection(
                    DetectionKind.DOOR_UNUSED, self.subject, t,
                    f"{clock} 家门已打开 / the door was opened at {clock}",
                    {"condition": CONDITION}, resolved=True,
                )
            )  # fmt: skip

    def on_alive(self, t: float) -> None:
        """A sign of life of the home's door contact (heartbeat, any event)."""
        self._alive = t if self._alive is None else max(self._alive, t)

    def set_away(self, t: float, away: bool) -> None:
        """The resident's away status (staff): nothing raised while away, the silence
        counted again from its end."""
        if self._away and not away:
            self._away_ended = t
        self._away = away

    def set_away_periods(self, periods: Iterable[tuple[float, float]]) -> None:
        """The family's away periods ((start, end) epoch seconds)."""
        self._periods = tuple(periods)

    # -- checking ---------------------------------------------------------------------------

    def since(self, now: float) -> float:
        """Since when the door counts as unused at ``now``."""
        ended = [e for s, e in self._periods if e <= now and s < e]
        if self._last_open is not None:
            base = self._last_open
        else:  # no opening known: from the monitoring start
            base = self._start if self._start is not None else now
        return max(base, self._away_ended, max(ended, default=-math.inf))

    @property
    def away_set(self) -> bool:
        """Away as set by staff (the registry status)."""
        return self._away

    def away(self, now: float) -> bool:
        return self._away or any(s <= now < e for s, e in self._periods)

    def check(self, now: float) -> list[Detection]:
        """Findings due at ``now`` (a resolution by an opening comes first)."""
        if self._start is None:
            self._start = now
        out, self._out = self._out, []
        if self._open_since is not None or self._doors_open or self.away(now):
            return out
        if self._alive is None or now - self._alive > self.p.alive_s:
            return out  # the door contact is silent: cannot tell
        since = self.since(now)
        unused = now - since
        if unused < self.p.unused_s:
            return out
        self._open_since = since
        days = unused / DAY_S
        shown = f"{days:.1f}".rstrip("0").rstrip(".")
        last = self._last_open
        clock = _stamp(since, self.p.utc_offset_s)
        what = "上次开门" if last is not None and last >= since else "自"
        out.append(
            Detection(
                DetectionKind.DOOR_UNUSED,
                self.subject,
                now,
                f"多日未开门：{what} {clock} 起 {shown} 天未开门，请电话或上门确认老人安好 / "
                f"door not opened for {shown} days (since {clock}): call or visit to check "
                "the resident is well",
                {
                    "condition": CONDITION,
                    "unused_days": round(days, 1),
                    "last_opened": round(last, 3) if last is not None else None,
                    "since": round(since, 3),
                },
                started=since,
            )
        )
        return out

    @property
    def raised(self) -> bool:
        return self._open_since is not None
