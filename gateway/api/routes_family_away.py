"""Away mode, 随家人外出 (issue 13 §7): the family sets the dates their relative is away with
them (``POST /family/residents/{id}/away``), sees the periods in force or coming (``GET``)
and ends one early (``POST /family/residents/{id}/away/{period}/end``). Audited; only for
the caller's own relative (404 otherwise). See :mod:`gateway.family.away`."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, Field

from gateway.api.deps import CurrentUser, DbConn, SettingsDep, UserRole, allow
from gateway.family import away, release
from gateway.storage import family_away, family_status

router = APIRouter(tags=["family"])
FAMILY_ONLY = allow(UserRole.FAMILY)
ResidentId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
PeriodId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class AwayIn(BaseModel):
    start_date: date
    end_date: date  # inclusive, in the site's zone
    note: str | None = Field(None, max_length=200)


class AwayOut(BaseModel):
    id: int
    starts_at: datetime
    ends_at: datetime
    ended_at: datetime | None
    note: str | None
    state: Literal["coming", "active", "ended"]
    suppressed: int  # routine alerts held back meanwhile


def _state(row: dict[str, Any], now: datetime) -> Literal["coming", "active", "ended"]:
    if row["effective_end"] <= now:
        return "ended"
    return "coming" if row["starts_at"] > now else "active"


def _linked(conn: DbConn, user: CurrentUser, resident_id: str) -> dict[str, Any]:
    row = family_status.linked(conn, user.user_id, resident_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such resident")
    return row


def _list(conn: DbConn, resident_id: str, now: datetime) -> list[AwayOut]:
    return [AwayOut.model_validate(r | {"state": _state(r, now)})
            for r in family_away.of_resident(conn, resident_id, now)]  # fmt: skip


@router.get("/family/residents/{resident_id}/away", response_model=list[AwayOut],
            summary="My relative's away periods (随家人外出), in force or coming",
            **FAMILY_ONLY)  # fmt: skip
def list_away(resident_id: ResidentId, user: CurrentUser, conn: DbConn) -> list[AwayOut]:
    _linked(conn, user, resident_id)
    return _list(conn, resident_id, datetime.now(UTC))


@router.post("/family/residents/{resident_id}/away", response_model=list[AwayOut],
             status_code=status.HTTP_201_CREATED,
             summary="Set an away period (随家人外出): routine alerts paused, alarms never",
             **FAMILY_ONLY)  # fmt: skip
def set_away(
    resident_id: ResidentId, body: AwayIn, user: CurrentUser, conn: DbConn, settings: SettingsDep
) -> list[AwayOut]:
    row = _linked(conn, user, resident_id)
    now = datetime.now(UTC)
    away.set_away(conn, user.user_id, resident_id, start=body.start_date, end=body.end_date,
                  note=body.note, utc_offset_s=int(row["utc_offset_s"]), now=now,
                  settings=settings.family)  # fmt: skip
    return _list(conn, resident_id, now)


@router.post("/family/residents/{resident_id}/away/{period_id}/end",
             response_model=list[AwayOut], summary="End an away period early (or call it off)",
             **FAMILY_ONLY)  # fmt: skip
def end_away(
    resident_id: ResidentId, period_id: PeriodId, user: CurrentUser, conn: DbConn
) -> list[AwayOut]:
    _linked(conn, user, resident_id)
    now = datetime.now(UTC)
    away.end_away(conn, user.user_id, resident_id, period_id, now)
    release.release_ended(conn, now)  # a condition still going on raises its incident now
    return _list(conn, resident_id, now)
