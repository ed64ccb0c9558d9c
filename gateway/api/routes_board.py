"""``GET /console/board``: the live board, every bed or home of the site with its state
(issue 11 §5): an open incident, away, a device to fix, in bed, up, or no recent activity.
The console re-reads it every ``BOARD_REFRESH_S`` while it is shown (within 5 s).
Residents' names are audited once per user, resident and shift like the console rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from gateway import audit
from gateway.api.deps import STAFF, CurrentUser, DbConn, HostDep, allow, scope_site
from gateway.storage import console_reads

router = APIRouter(tags=["console"])

BOARD_REFRESH_S = 4.0
BedState = Literal["incident", "away", "device_offline", "in_bed", "up", "no_recent_activity"]


class BedTile(BaseModel):
    bed_code: str
    location_label: str
    location_kind: str
    resident_id: str | None
    resident_name: str | None
    state: BedState
    incident_id: int | None
    incident_type: str | None
    incident_state: str | None
    last_message_at: datetime | None


class Board(BaseModel):
    refresh_s: float
    beds: list[BedTile]


def bed_state(row: dict[str, Any]) -> BedState:
    """The one state a tile shows, the most urgent first."""
    if row["incident_id"] is not None:
        return "incident"
    if row["resident_status"] in ("away", "hospital"):
        return "away"
    if row["device_problems"]:
        return "device_offline"
    if row["presence"] is True:
        return "in_bed"
    if row["presence"] is False:
        return "up"
    return "no_recent_activity"


@router.get("/console/board", response_model=Board,
            summary="Live board: every bed or home with its state", **allow(*STAFF))  # fmt: skip
def live_board(user: CurrentUser, conn: DbConn, host: HostDep, site: str | None = None) -> Board:
    site_id = scope_site(user, site)
    rows = console_reads.board(conn, site_id)
    ledger = host.read_ledger
    due = sorted({r["resident_id"] for r in rows if r["resident_id"] and r["resident_name"]
                  and ledger.due(user.user_id, f"resident-name:{r['resident_id']}")})  # fmt: skip
    if due:
        with conn.transaction():
            audit.append(conn, user.user_id, "resident.name_read", f"site:{site_id or '*'}",
                         {"residents": due, "view": "board"})  # fmt: skip
        for rid in due:
            ledger.recorded(user.user_id, f"resident-name:{rid}")
    return Board(
        refresh_s=BOARD_REFRESH_S,
        beds=[BedTile.model_validate(r | {"state": bed_state(r)}) for r in rows],
    )
