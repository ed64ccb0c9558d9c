"""The duty console's read models (issue 11): incident rows a nurse can work with, the
site's clock and response targets, and the names of the people acting on incidents.

- ``GET /console/incidents``: open (or resolved, awaiting a supervisor's close) incidents,
  care first then technical, each with its class, its response target (per site, class and
  priority: ``config/response_targets.toml``), the resident's name and bed, the device and
  where it is, and who took it by name. The resident names are a read of personal data:
  audited once per user, resident and shift (``audit.ReadLedger``), not on every refresh.
- ``GET /console/site``: the site's name, time zone (UTC offset) and targets.
- ``GET /console/people``: display names and roles of the site's staff (the timeline names
  actors by user id; the page shows "护工 张丽").
- ``POST /users/{user_id}/display-name`` (admins): set a user's display name.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from functools import cache
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from gateway import audit
from gateway.api.deps import STAFF, CurrentUser, DbConn, HostDep, UserRole, allow, scope_site
from gateway.errors import InvalidError, NotFoundError
from gateway.facts import OPEN_STATES
from gateway.response_targets import ResponseTargets, load_targets
from gateway.storage import console_reads, people

router = APIRouter(tags=["console"])

RESOLVED = ("resolved",)


class ConsoleIncident(BaseModel):
    """One row of the console: the incident, its class and target, names and places."""

    id: int
    site_id: str
    resident_id: str | None
    subject: str
    type: str
    priority: int
    technical: bool
    category: Literal["care", "technical"]
    state: str
    trigger_count: int
    raised_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    acknowledged_by_name: str | None
    acknowledged_by_role: str | None
    responder: str | None
    on_scene_at: datetime | None
    resolved_at: datetime | None
    outcome: str | None
    reason: str
    details: dict[str, Any]
    time_to_acknowledge_s: float | None
    target_s: float = Field(description="seconds to acknowledge (site, class, priority)")
    resident_name: str | None
    bed_code: str | None
    location_kind: str | None
    location_label: str | None
    device_kind: str | None
    device_location_label: str | None
    utc_offset_s: int
    site_name: str


class Targets(BaseModel):
    care: dict[int, float]
    technical: dict[int, float]
    basis: str
    basis_international: str


class SiteInfo(BaseModel):
    """The signed-in user's site: its clock and response targets."""

    site_id: str | None
    name: str | None
    utc_offset_s: int
    demo_clock: bool = False  # the offset is the demo's clock (safehome demo), not a real zone
    care_phone: str | None
    targets: Targets


class Person(BaseModel):
    user_id: str
    display_name: str | None
    role: str


class DisplayNameBody(BaseModel):
    display_name: str = Field(min_length=1, max_length=64)


class DisplayNameChange(BaseModel):
    user_id: str
    changed: bool


@cache
def _default_targets() -> ResponseTargets:
    return load_targets()


def targets() -> ResponseTargets:
    """The response targets (``config/response_targets.toml``, read once)."""
    return _default_targets()


@router.get("/console/incidents", response_model=list[ConsoleIncident],
            summary="Console rows: care then technical, with targets, names and places",
            **allow(*STAFF))  # fmt: skip
def console_incidents(
    user: CurrentUser,
    conn: DbConn,
    host: HostDep,
    site: str | None = None,
    view: Literal["open", "resolved"] = "open",
) -> list[ConsoleIncident]:
    site_id = scope_site(user, site)
    states = OPEN_STATES if view == "open" else RESOLVED
    rows = console_reads.incident_rows(conn, site_id, states, limit=200)
    site_targets = targets()
    ledger = host.read_ledger
    due = sorted({inc.resident_id for inc, extra in rows
                  if inc.resident_id and extra["resident_name"]
                  and ledger.due(user.user_id, f"resident-name:{inc.resident_id}")})  # fmt: skip
    if due:
        # Residents' names on the rows: audited once per user, resident and shift.
        with conn.transaction():
            audit.append(conn, user.user_id, "resident.name_read", f"site:{site_id or '*'}",
                         {"residents": due})  # fmt: skip
        for rid in due:
            ledger.recorded(user.user_id, f"resident-name:{rid}")
    out = []
    for inc, extra in rows:
        data = dataclasses.asdict(inc)
        took = inc.time_to_acknowledge
        data |= extra
        data["category"] = "technical" if inc.technical else "care"
        data["time_to_acknowledge_s"] = None if took is None else took.total_seconds()
        data["target_s"] = site_targets.for_site(inc.site_id).seconds(inc.technical, inc.priority)
        out.append(ConsoleIncident.model_validate(data))
    return out


@router.get("/console/site", response_model=SiteInfo,
            summary="The user's site: name, time zone and response targets",
            **allow(*STAFF))  # fmt: skip
def console_site(user: CurrentUser, conn: DbConn, site: str | None = None) -> SiteInfo:
    site_id = scope_site(user, site)
    row = console_reads.site_clock(conn, site_id) if site_id else None
    if site_id and row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such site")
    t = targets().for_site(site_id)
    return SiteInfo(
        site_id=site_id,
        name=row["name"] if row else None,
        utc_offset_s=int(row["utc_offset_s"]) if row else 28800,
        demo_clock=bool(row["demo_clock"]) if row else False,
        care_phone=row["care_phone"] if row else None,
        targets=Targets(
            care=t.care,
            technical=t.technical,
            basis=t.basis,
            basis_international=t.basis_international,
        ),
    )


@router.get("/console/people", response_model=list[Person],
            summary="Display names and roles of the site's staff (for timelines)",
            **allow(*STAFF))  # fmt: skip
def console_people(user: CurrentUser, conn: DbConn, site: str | None = None) -> list[Person]:
    return [
        Person.model_validate(r) for r in console_reads.staff_names(conn, scope_site(user, site))
    ]


@router.post("/users/{user_id}/display-name", response_model=DisplayNameChange,
             summary="Set a user's display name (admins; audited)",
             **allow(UserRole.ADMIN))  # fmt: skip
def set_display_name(
    user_id: str, body: DisplayNameBody, user: CurrentUser, conn: DbConn
) -> DisplayNameChange:
    try:
        changed = people.set_display_name(conn, user_id, body.display_name, actor=user.user_id)
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=exc.detail) from None
    except InvalidError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=exc.detail) from None
    return DisplayNameChange(user_id=user_id, changed=changed)
