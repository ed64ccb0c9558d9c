"""``[family]`` settings: the family view's ratings and away mode (issue 13 §7)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FamilySettings(BaseModel):
    """``[family]``: how long a rating may be edited, how long an away period may be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A family member may change their rating of an incident for this long after giving it.
    rating_edit_window_s: float = Field(7 * 86400.0, ge=0, le=366 * 86400.0)
    # The longest "随家人外出" period the family may set (longer stays: staff set the
    # resident's status instead), and how far ahead it may start.
    away_max_days: int = Field(60, ge=1, le=366)
    away_max_ahead_days: int = Field(90, ge=0, le=366)
    # How often findings held back by an away period that ran out are looked at again (a
    # condition still going on then raises its incident; ending a period early does it at once).
    release_interval_s: float = Field(60.0, gt=0, le=3600)
