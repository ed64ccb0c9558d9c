"""Response targets per site, incident class (care or technical) and priority (issue 11 §4).

A pure module: :func:`load_targets` reads ``config/response_targets.toml`` (see there), and
:meth:`ResponseTargets.for_site` answers one site's targets. The console counts down each
incident against its own target, so a low battery (technical, P3: four hours) never turns
red after the 60 s of a fall.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import InvalidError

CLASSES = ("care", "technical")
PRIORITIES = (1, 2, 3, 4, 5)
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config" / "response_targets.toml"


@dataclass(frozen=True, slots=True)
class SiteTargets:
    """One site's targets: seconds to acknowledge by class and priority, and their basis."""

    care: dict[int, float]
    technical: dict[int, float]
    basis: str
    basis_international: str

    def seconds(self, technical: bool, priority: int) -> float:
        table = self.technical if technical else self.care
        return table.get(priority, max(table.values()))


@dataclass(frozen=True, slots=True)
class ResponseTargets:
    default: SiteTargets
    sites: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_site(self, site_id: str | None) -> SiteTargets:
        over = self.sites.get(site_id or "", {})
        if not over:
            return self.default
        d = self.default
        return SiteTargets(
            care=d.care | _table(over.get("care", {}), f"sites.{site_id}.care"),
            technical=d.technical | _table(over.get("technical", {}), f"sites.{site_id}.technical"),
            basis=str(over.get("basis", d.basis)),
            basis_international=str(over.get("basis_international", d.basis_international)),
        )


def _table(raw: Any, where: str) -> dict[int, float]:
    if not isinstance(raw, dict):
        raise InvalidError(f"{where} must be a table of priority = seconds")
    out: dict[int, float] = {}
    for key, value in raw.items():
        try:
            prio = int(key)
        except ValueError:
            raise InvalidError(f"{where}: {key!r} is not a priority 1..5") from None
        if prio not in PRIORITIES:
            raise InvalidError(f"{where}: {key!r} is not a priority 1..5")
        if type(value) not in (int, float) or not 0 < value <= 7 * 86400:
            raise InvalidError(f"{where}.{key} must be seconds within 1..604800")
        out[prio] = float(value)
    return out


def parse_targets(raw: dict[str, Any]) -> ResponseTargets:
    """Targets from the parsed TOML; :class:`InvalidError` names a wrong value."""
    default = raw.get("default", {})
    care = _table(default.get("care", {}), "default.care")
    technical = _table(default.get("technical", {}), "default.technical")
    for name, table in (("care", care), ("technical", technical)):
        missing = [p for p in PRIORITIES if p not in table]
        if missing:
            raise InvalidError(f"default.{name} needs every priority 1..5 (missing {missing})")
    sites = raw.get("sites", {})
    if not isinstance(sites, dict):
        raise InvalidError("sites must be a table of site tables")
    targets = ResponseTargets(
        SiteTargets(
            care=care,
            technical=technical,
            basis=str(default.get("basis", "")),
            basis_international=str(default.get("basis_international", "")),
        ),
        {str(k): v for k, v in sites.items()},
    )
    for site_id in targets.sites:
        targets.for_site(site_id)  # validate the overrides now, not at the first request
    return targets


def load_targets(path: Path = DEFAULT_PATH) -> ResponseTargets:
    """Read and check a response target file."""
    with path.open("rb") as fh:
        return parse_targets(tomllib.load(fh))
