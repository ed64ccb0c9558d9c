"""The monthly SLA report's own targets per site: the operator's contract, or the Chinese
standard it follows, cited next to the international references (issue 11 §2).

Read from the ``sla`` tables of ``config/response_targets.toml`` (``[default.sla]``, and
``[sites.<site id>.sla]`` overriding single values): ``basis`` names the source (e.g.
``"居家养老服务合同"`` or the standard the contract cites), ``basis_en`` its English name,
``answered_60s`` / ``answered_180s`` the shares of care incidents to answer within 60 s /
180 s, ``on_scene_45min`` / ``on_scene_60min`` the shares attended in time. A share left
out is not a target of that site. Pure apart from reading the file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.errors import InvalidError
from gateway.reports.sla_math import Target
from gateway.response_targets import DEFAULT_PATH

__all__ = ["KEYS", "load_local_targets", "local_targets"]

# key in the sla table -> (target name suffix, seconds, measure)
KEYS: dict[str, tuple[int, str]] = {
    "answered_60s": (60, "answer"),
    "answered_180s": (180, "answer"),
    "on_scene_45min": (2700, "on_scene"),
    "on_scene_60min": (3600, "on_scene"),
}


def _table(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidError(f"{where} must be a table")
    unknown = set(raw) - {*KEYS, "basis", "basis_en"}
    if unknown:
        raise InvalidError(f"{where}: unknown key(s) {sorted(unknown)}")
    return raw


def local_targets(raw: Mapping[str, Any], site_id: str) -> tuple[Target, ...]:
    """The local targets of ``site_id`` from the parsed target file (``InvalidError``)."""
    default = _table(raw.get("default", {}).get("sla"), "default.sla")
    site = raw.get("sites", {}).get(site_id, {})
    over = _table(site.get("sla") if isinstance(site, dict) else None, f"sites.{site_id}.sla")
    merged = default | over
    basis = str(merged.get("basis") or "运营合同目标")
    basis_en = str(merged.get("basis_en") or "contract target")
    out: list[Target] = []
    for key, (within_s, measure) in KEYS.items():
        if key not in merged:
            continue
        share = merged[key]
        if type(share) not in (int, float) or not 0 < share <= 1:
            raise InvalidError(f"sla.{key} must be a share in (0, 1], e.g. 0.95")
        out.append(Target(f"{key}_local", within_s, float(share), basis, measure, "local",
                          basis_en))  # fmt: skip
    return tuple(out)


def load_local_targets(site_id: str, path: Path = DEFAULT_PATH) -> tuple[Target, ...]:
    """The local targets of ``site_id`` as configured in ``path``."""
    with path.open("rb") as fh:
        return local_targets(tomllib.load(fh), site_id)
