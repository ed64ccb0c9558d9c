"""``GET /family/residents/{id}/services``: the services delivered to the caller's relative
(助浴 助餐 ...; what and when, never who or their notes), audited like the family's visit
list. 404 for a resident not linked to the caller."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel

from gateway import audit
from gateway.api.deps import CurrentUser, DbConn, UserRole, allow
from gateway.storage import family_status
from gateway.storage import visits as visits_store
from gateway.visits.service import SERVICES

router = APIRouter(tags=["family"])
ResidentId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class FamilyServiceOut(BaseModel):
    service: str
    service_label: str
    delivered_at: datetime
    minutes: int | None


@router.get("/family/residents/{resident_id}/services", response_model=list[FamilyServiceOut],
            summary="Services delivered to my relative (服务记录)",
            **allow(UserRole.FAMILY))  # fmt: skip
def family_services(
    resident_id: ResidentId, user: CurrentUser, conn: DbConn
) -> list[FamilyServiceOut]:
    if family_status.linked(conn, user.user_id, resident_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such resident")
    with conn.transaction():
        audit.append(conn, user.user_id, "services.read", f"resident:{resident_id}",
                     {"by": "family"})  # fmt: skip
    return [
        FamilyServiceOut(service=r["service"], delivered_at=r["delivered_at"],
                         service_label=SERVICES.get(r["service"], r["service"]),
                         minutes=r["minutes"])
        for r in visits_store.services_of(conn, resident_id, limit=20)
    ]  # fmt: skip
