"""Escalation ladders from ``config/escalation.toml``: a default ladder, per-site overrides.

A ladder is an ordered list of tiers. Each tier names its audience (the site's on-duty
staff, its supervisors on shift, the resident's consented family contacts and community
worker, or an emergency-services instruction shown to every staff member of the site), how
long it waits for a human acknowledgement before the next tier (``timeout_s``) and how often
it reminds its audience meanwhile (``reminder_s``). ``priority_scale`` multiplies both by
incident priority (e.g. ``0.5`` for priority 1: falls and emergency calls escalate twice as
fast). A tier applies to incidents of priority ``max_priority`` or more urgent only
(e.g. no "call 120" for a low battery). Contacts are reached for care incidents only, never
for technical ones (a device offline is the staff's business).

File shape::

    [ladder]
    priority_scale = { "1" = 0.5, "4" = 2.0 }
    [[ladder.tiers]]
    name = "duty_staff"
    audience = "duty_staff"
    timeout_s = 60
    reminder_s = 20
    ...
    [sites.site-a]               # any key of [ladder]; a key given replaces the default's
    priority_scale = { "1" = 0.25 }
    [[hazard_ladder.tiers]]      # optional: smoke and gas alarms climb this ladder instead
    name = "call_119"
    audience = "emergency"
    ...

Pure: parsing and arithmetic only, no I/O besides :func:`load_ladders` reading the file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.errors import InvalidError
from gateway.facts import PRIORITIES


class EscalationConfigError(InvalidError):
    """The escalation file is missing or invalid; ``str(err)`` names every bad key."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class Audience(StrEnum):
    """Who a tier reaches."""

    DUTY_STAFF = "duty_staff"  # the site's staff on shift now (duty roster)
    SUPERVISOR = "supervisor"  # the site's supervisors on shift now
    CONTACTS = "contacts"  # the resident's consented family contacts and community worker
    EMERGENCY = "emergency"  # an instruction to every staff member (e.g. "call 120")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(_Model):
    """One rung of the ladder."""

    name: str = Field(pattern=r"^[a-z0-9_]{1,32}$")
    audience: Audience
    timeout_s: float = Field(gt=0)
    reminder_s: float | None = Field(None, gt=0)
    max_priority: int = Field(PRIORITIES[-1], ge=PRIORITIES[0], le=PRIORITIES[-1])
    instruction: str | None = Field(None, min_length=1, max_length=500)

    @model_validator(mode="after")
    def _instruction_for_emergency(self) -> Tier:
        if self.audience is Audience.EMERGENCY and not self.instruction:
            raise ValueError(f"tier {self.name!r}: an emergency tier needs an instruction")
        return self


class Ladder(_Model):
    """An ordered list of tiers and the per-priority time scale."""

    tiers: tuple[Tier, ...] = Field(min_length=1)
    priority_scale: dict[int, float] = Field(default_factory=dict)

    @field_validator("priority_scale")
    @classmethod
    def _scale_range(cls, value: dict[int, float]) -> dict[int, float]:
        for priority, factor in value.items():
            if priority not in PRIORITIES:
                raise ValueError(f"priority {priority} is outside 1..5")
            if not factor > 0:
                raise ValueError(f"priority {priority}: scale must be > 0")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> Ladder:
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique: {names}")
        return self

    def scale(self, priority: int) -> float:
        """The time factor for incidents of ``priority`` (1.0 when not configured)."""
        return self.priority_scale.get(priority, 1.0)

    def timeout_s(self, index: int, priority: int) -> float:
        """How long tier ``index`` waits for an acknowledgement at ``priority``."""
        return self.tiers[index].timeout_s * self.scale(priority)

    def reminder_s(self, index: int, priority: int) -> float | None:
        """The reminder interval of tier ``index`` at ``priority`` (``None``: no reminders)."""
        reminder = self.tiers[index].reminder_s
        return None if reminder is None else reminder * self.scale(priority)

    def next_tier(self, after: int, priority: int) -> int | None:
        """The index of the first tier after ``after`` that applies to ``priority``."""
        for index in range(max(after + 1, 0), len(self.tiers)):
            if priority <= self.tiers[index].max_priority:
                return index
        return None


HAZARD_TYPES = frozenset({"smoke_alarm", "gas_alarm"})
"""Incident types that climb the hazard ladder (``[hazard_ladder]``) when one is configured."""


class EscalationConfig(_Model):
    """The default ladder, the sites' own ladders (already merged with the default) and the
    hazard ladder for smoke and gas alarms (issue 12: "call 119" first, then people)."""

    default: Ladder
    sites: dict[str, Ladder] = Field(default_factory=dict)
    hazard: Ladder | None = None

    def ladder(self, site_id: str, incident_type: str | None = None) -> Ladder:
        """The ladder of ``site_id`` (the default when the site has no override); the hazard
        ladder for a smoke or gas alarm when one is configured."""
        if incident_type in HAZARD_TYPES and self.hazard is not None:
            return self.hazard
        return self.sites.get(site_id, self.default)


def _describe(exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(ladder)"
        lines.append(f"  {where}{key}: {err['msg']}")
    return "\n".join(lines)


def parse_ladders(data: Mapping[str, Any]) -> EscalationConfig:
    """Build the configuration from parsed TOML; raise :class:`EscalationConfigError`."""
    unknown = set(data) - {"ladder", "sites", "hazard_ladder"}
    if unknown:
        raise EscalationConfigError(f"unknown top-level keys: {sorted(unknown)}")
    base = data.get("ladder")
    if not isinstance(base, Mapping):
        raise EscalationConfigError("a [ladder] table with [[ladder.tiers]] is required")
    problems: list[str] = []
    default: Ladder | None = None
    try:
        default = Ladder.model_validate(dict(base))
    except ValidationError as exc:
        problems.append(_describe(exc, "ladder."))
    sites: dict[str, Ladder] = {}
    raw_sites = data.get("sites", {})
    if not isinstance(raw_sites, Mapping):
        raise EscalationConfigError("[sites] must be a table of site ids")
    for site_id, override in raw_sites.items():
        if not isinstance(override, Mapping):
            problems.append(f"  sites.{site_id}: must be a table")
            continue
        try:
            sites[str(site_id)] = Ladder.model_validate({**dict(base), **dict(override)})
        except ValidationError as exc:
            problems.append(_describe(exc, f"sites.{site_id}."))
    hazard: Ladder | None = None
    raw_hazard = data.get("hazard_ladder")
    if raw_hazard is not None:
        if not isinstance(raw_hazard, Mapping):
            problems.append("  hazard_ladder: must be a table")
        else:
            try:
                hazard = Ladder.model_validate(dict(raw_hazard))
            except ValidationError as exc:
                problems.append(_describe(exc, "hazard_ladder."))
    if problems or default is None:
        raise EscalationConfigError("invalid escalation ladder:\n" + "\n".join(problems))
    return EscalationConfig(default=default, sites=sites, hazard=hazard)


def load_ladders(path: Path) -> EscalationConfig:
    """Read and validate the escalation file at ``path``."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise EscalationConfigError(f"escalation file not found: {path}", path=path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise EscalationConfigError(f"{path}: invalid TOML: {exc}", path=path) from exc
    try:
        return parse_ladders(data)
    except EscalationConfigError as exc:
        raise EscalationConfigError(f"{path}: {exc}", path=path) from None
