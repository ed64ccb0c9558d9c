"""Family ratings (issue 13 §7): ``PUT /family/incidents/{id}/rating`` rates how a resolved
or closed incident of the caller's relative was handled; ``GET
/family/residents/{id}/ratings`` lists the caller's ratings. Another elder's incident answers
404 like one that does not exist (see :mod:`gateway.family.ratings`).

``GET /supervision/family-ratings?month=YYYY-MM``: how many ratings each site got in the
month and their average (counts only, audited): a site supervisor their site, a district
supervisor the sites of their district, an admin a named district or every site."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from gateway import audit
from gateway.api.auth import Principal
from gateway.api.deps import CurrentUser, DbConn, SettingsDep, UserRole, allow
from gateway.family import ratings
from gateway.settings.family import FamilySettings
from gateway.storage import family_ratings, family_status
from gateway.storage import visits as visits_store
from gateway.supervision.district import month_bounds

router = APIRouter(tags=["family"])
FAMILY_ONLY = allow(UserRole.FAMILY)
IncidentId = Annotated[int, Path(ge=1, le=2**63 - 1)]
ResidentId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


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
    incident_id: IncidentId, body: RatingIn, user: CurrentUser, conn: DbConn, settings: SettingsDep
) -> RatingOut:
    row = ratings.rate(conn, user.user_id, incident_id, stars=body.stars, comment=body.comment,
                       now=datetime.now(UTC), settings=settings.family)  # fmt: skip
    return _out(row, settings.family)


@router.get("/family/residents/{resident_id}/ratings", response_model=list[RatingOut],
            summary="My ratings of my relative's incidents", **FAMILY_ONLY)  # fmt: skip
def my_ratings(
    resident_id: ResidentId, user: CurrentUser, conn: DbConn, settings: SettingsDep
) -> list[RatingOut]:
    if family_status.linked(conn, user.user_id, resident_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such resident")
    return [_out(r, settings.family)
            for r in family_ratings.of_resident(conn, user.user_id, resident_id)]  # fmt: skip


class SiteRatings(BaseModel):
    site_id: str
    ratings: int
    average: float


class RatingsMonthOut(BaseModel):
    """Family ratings given in one local month (counts and averages only)."""

    month: str
    sites: list[SiteRatings]
    family_ratings: int
    family_rating_avg: float | None


def _sites(conn: DbConn, user: Principal, district: str | None) -> list[str] | None:
    """The sites the caller may see (None: every site, for an admin naming no district)."""
    if user.role is UserRole.SUPERVISOR:
        return [user.site_id or ""]
    if user.role is UserRole.DISTRICT_SUPERVISOR:
        own = visits_store.user_district(conn, user.user_id)
        if own is None or (district is not None and district != own):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such district")
        return visits_store.district_site_ids(conn, own)
    return None if district is None else visits_store.district_site_ids(conn, district)


@router.get("/supervision/family-ratings", response_model=RatingsMonthOut,
            summary="Family ratings per site for a month (count, average; audited)",
            tags=["supervision"],
            **allow(UserRole.SUPERVISOR, UserRole.DISTRICT_SUPERVISOR, UserRole.ADMIN))  # fmt: skip
def ratings_month(
    user: CurrentUser,
    conn: DbConn,
    month: str = Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="local month, YYYY-MM"),
    district: str | None = Query(default=None, max_length=64),
) -> RatingsMonthOut:
    sites = _sites(conn, user, district)
    start, end = month_bounds(month)
    out = ratings.site_month(conn, sites, start, end)
    audit.append(conn, user.user_id, "supervision.read", "family_ratings",
                 {"what": "family_ratings", "month": month, "sites": sites})  # fmt: skip
    return RatingsMonthOut(month=month, sites=out["sites"], family_ratings=out["family_ratings"],
                           family_rating_avg=out["family_rating_avg"])  # fmt: skip
