"""``[cell]`` settings: this gateway's cell and the sites it serves (see :mod:`gateway.cells`
for what a cell changes)."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from devices.protocol import is_valid_id

CELL_ID = r"[a-z0-9][a-z0-9_-]{0,23}"  # short: it ends up in client ids and application names


class CellSettings(BaseModel):
    """``[cell]``: this gateway's cell and the sites it serves (empty id: all sites)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Empty: no cell, the gateway serves every site (the default).
    id: str = Field("", pattern=rf"^(|{CELL_ID})$")
    # The site ids this cell serves (required with an id; one subscription filter set each).
    sites: tuple[str, ...] = ()
    # How often the active gateway renews its claim on its sites and checks that every site
    # with devices is claimed by exactly one live cell (gateway.cell_coverage); a claim older
    # than three intervals is not live.
    coverage_interval_s: float = Field(60.0, gt=0)

    @field_validator("sites", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        # SAFEHOME_CELL__SITES="site-a,site-b" (the environment has no lists)
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _check(self) -> CellSettings:
        if not self.id:
            if self.sites:
                raise ValueError("cell.sites needs a cell.id")
            return self
        if not self.sites:
            raise ValueError("cell.id needs at least one site in cell.sites")
        bad = [s for s in self.sites if not is_valid_id(s)]
        if bad:
            raise ValueError(f"cell.sites: invalid site ids {bad}")
        if len(set(self.sites)) != len(self.sites):
            raise ValueError("cell.sites: a site is listed twice")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.id)


def parse_broker_cells(value: object) -> object:
    """``SAFEHOME_BROKER__CELLS='[{"id": "east", "sites": ["site-a"]}, …]'`` (the
    environment has no lists of tables): JSON; TOML's ``[[broker.cells]]`` passes through."""
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else ()
        except ValueError as exc:
            raise ValueError(f"broker.cells: not a JSON list ({exc})") from None
    return value


def check_broker_cells(cells: tuple[CellSettings, ...]) -> tuple[CellSettings, ...]:
    """``broker.cells``: each with an id, ids unique, no site in two cells."""
    ids = [c.id for c in cells]
    if "" in ids:
        raise ValueError("broker.cells: every cell needs an id")
    if len(set(ids)) != len(ids):
        raise ValueError("broker.cells: a cell id is listed twice")
    sites = [s for c in cells for s in c.sites]
    twice = sorted({s for s in sites if sites.count(s) > 1})
    if twice:
        raise ValueError(f"broker.cells: sites in more than one cell {twice}")
    return cells
