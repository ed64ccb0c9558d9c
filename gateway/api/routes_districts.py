"""District assignment routes (issue 13 §5), admins only: list the districts, put a site in
a district or take it out, put a district supervisor or community worker in a district.
Every change is audited by :mod:`gateway.supervision.districts` with the admin's user id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status
from pydantic import BaseModel

from gateway.api.deps import CurrentUser, DbConn, UserRole, allow
from gateway.api.routes_visits import domain_errors
from gateway.supervision import districts
from gateway.supervision.districts import DISTRICT_PATTERN

router = APIRouter(tags=["supervision"])

DistrictId = Annotated[str, Path(pattern=DISTRICT_PATTERN, description="district id")]
SiteId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
UserRef = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\x00/]+$")]


class DistrictOut(BaseModel):
    """A district: its sites, its supervisors (user ids), how many community workers."""

    district_id: str
    sites: list[str]
    supervisors: list[str]
    workers: int


class UserDistrictOut(BaseModel):
    user_id: str
    role: str
    district: DistrictOut


def _out(d: districts.District) -> DistrictOut:
    return DistrictOut(district_id=d.district_id, sites=d.sites, supervisors=d.supervisors,
                       workers=d.workers)  # fmt: skip


@router.get("/supervision/districts", response_model=list[DistrictOut],
            summary="Every district with its sites and supervisors (admin)",
            **allow(UserRole.ADMIN))  # fmt: skip
def list_districts(conn: DbConn) -> list[DistrictOut]:
    return [_out(d) for d in districts.list_districts(conn)]


@router.put("/supervision/districts/{district_id}/sites/{site_id}", response_model=DistrictOut,
            summary="Put a site in a district (admin; audited)",
            **allow(UserRole.ADMIN))  # fmt: skip
def assign_site(
    district_id: DistrictId, site_id: SiteId, user: CurrentUser, conn: DbConn
) -> DistrictOut:
    with domain_errors():
        districts.assign_site(conn, site_id, district_id, actor=user.user_id)
        return _out(districts.get_district(conn, district_id))


@router.delete("/supervision/sites/{site_id}/district", status_code=status.HTTP_204_NO_CONTENT,
               summary="Take a site out of its district (admin; audited)",
               **allow(UserRole.ADMIN))  # fmt: skip
def unassign_site(site_id: SiteId, user: CurrentUser, conn: DbConn) -> None:
    with domain_errors():
        districts.unassign_site(conn, site_id, actor=user.user_id)


@router.put("/supervision/districts/{district_id}/users/{user_ref}",
            response_model=UserDistrictOut,
            summary="Put a district supervisor or community worker in a district (admin; "
                    "audited)",
            **allow(UserRole.ADMIN))  # fmt: skip
def assign_user(
    district_id: DistrictId, user_ref: UserRef, user: CurrentUser, conn: DbConn
) -> UserDistrictOut:
    with domain_errors():
        user_id, role = districts.assign_user(conn, user_ref, district_id, actor=user.user_id)
        district = _out(districts.get_district(conn, district_id))
    return UserDistrictOut(user_id=user_id, role=role, district=district)
