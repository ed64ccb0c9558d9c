"""Family ratings (issue 13 §7): ``PUT /family/incidents/{id}/rating`` rates how a resolved
or closed incident of the caller's relative was handled; ``GET
/family/residents/{id}/ratings`` lists the caller's ratings. Another elder's incident answers
404 like one that does not exist (see :mod:`gateway.family.ratings`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from gateway.api.deps import CurrentUser, DbConn, SettingsDep, UserRole, allow
from gateway.family import ratings
from gateway.settings.family import FamilySettings
from gateway.storage import family_ratings, family_status

router = APIRouter(tags=["family"])
FAMILY_ONLY = allow(UserRole.FAMILY)


class RatingIn(BaseModel):
    stars: int = Field(ge=1, le=5)
    comment: str | None = Field(None, max_length=ratings.COMMENT_MAX)


class RatingOut(BaseModel):
    incident_id: int
    stars: int
    comment: str | None
    created_at: datetime
    updated_at: datetime
    editable_until: datetime


def _out(row: dict[str, Any], settings: FamilySettings) -> RatingOut:
    return RatingOut.model_validate(
        row | {"editable_until": ratings.editable_until(row["created_at"], settings)}
    )


@router.put("/family/incidents/{incident_id}/rating", response_model=RatingOut,
            summary="Rate how my relative's incident was handled (1-5 stars)",
            **FAMILY_ONLY)  # fmt: skip
def rate_incident(
    incident_id: int, body: RatingIn, user: CurrentUser, conn: DbConn, settings: SettingsDep
) -> RatingOut:
    row = ratings.rate(conn, user.user_id, incident_id, stars=body.stars, comment=body.comment,
                       now=datetime.now(UTC), settings=settings.family)  # fmt: skip
    return _out(row, settings.family)


@router.get("/family/residents/{resident_id}/ratings", response_model=list[RatingOut],
            summary="My ratings of my relative's incidents", **FAMILY_ONLY)  # fmt: skip
def my_ratings(
    resident_id: str, user: CurrentUser, conn: DbConn, settings: SettingsDep
) -> list[RatingOut]:
    if family_status.linked(conn, user.user_id, resident_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such resident")
    return [_out(r, settings.family)
            for r in family_ratings.of_resident(conn, user.user_id, resident_id)]  # fmt: skip
