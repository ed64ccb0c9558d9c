"""``[kit]`` settings: the safe-home kit's care findings (gateway.kit.runner)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class KitSettings(BaseModel):
    """``[kit]``: how long a home's door may stay unopened before a welfare check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # No door opening for this many days (fractions allowed) while the elder is not away
    # raises "door not opened for days" (多日未开门, a care incident: check on the elder).
    # At most 30: the last opening before a restart is looked up that far back.
    door_unused_days: float = Field(3.0, gt=0, le=30)
