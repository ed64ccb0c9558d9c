"""Visiting-care routes (探访关爱, issue 13): the community worker's due visits and door-knock
tasks, visit records with proof of presence, assessments, risk categories, worker
assignment, and the staff's door-knock action on an incident.

Who may call: a community worker sees and acts on the elders assigned to them only (any
other elder answers 404, like one that does not exist); duty staff and supervisors on their
own site; admins everywhere. Domain rules live in :mod:`gateway.visits.service`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import AwareDatetime, BaseModel, Field

from gateway import audit
from gateway.api.auth import Principal
from gateway.api.deps import CurrentUser, DbConn, UserRole, allow
from gateway.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    SafehomeError,
)
from gateway.storage import visits as store
from gateway.visits import messages, service
from gateway.visits.config import CATEGORIES, CATEGORY_LABELS, VisitsConfig, load_visits_config
from gateway.visits.plans import assessment_overdue

router = APIRouter(tags=["visits"])

_NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL
ResidentId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def _text(max_length: int, min_length: int = 0) -> Any:
    return Field(min_length=min_length, max_length=max_length, pattern=_NO_NUL)


WORKER = (UserRole.COMMUNITY_WORKER, UserRole.DUTY_STAFF, UserRole.SUPERVISOR, UserRole.ADMIN)
STAFF = (UserRole.DUTY_STAFF, UserRole.SUPERVISOR, UserRole.ADMIN)
SENIOR = (UserRole.SUPERVISOR, UserRole.ADMIN)

_STATUS = {NotFoundError: 404, ConflictError: 409, InvalidError: 422, ForbiddenError: 403}


@contextlib.contextmanager
def domain_errors() -> Iterator[None]:
    """Map the domain errors of :mod:`gateway.errors` to HTTP answers, the Chinese sentence
    first and the English detail second (:mod:`gateway.visits.messages`)."""
    try:
        yield
    except SafehomeError as exc:
        code = next((c for k, c in _STATUS.items() if isinstance(exc, k)), 503)
        raise HTTPException(code, detail=messages.detail_text(exc)) from None


@functools.cache
def visits_config() -> VisitsConfig:
    """The visiting-care configuration (``config/visits.toml``, read once); a dependency,
    so an app may override it (``app.dependency_overrides[visits_config]``)."""
    return load_visits_config()


VisitsConfigDep = Annotated[VisitsConfig, Depends(visits_config)]


def caller_of(user: Principal) -> service.Caller:
    return service.Caller(user.user_id, user.role.value, user.site_id)


def _scope(user: Principal) -> dict[str, str | None]:
    """The resident filter of a caller: their assignments, their site, or everything."""
    if user.role is UserRole.COMMUNITY_WORKER:
        return {"worker_id": user.user_id}
    if user.is_admin:
        return {}
    return {"site_id": user.site_id}


# -- models ----------------------------------------------------------------------------


class DueVisitOut(BaseModel):
    kind: Literal["phone", "home"]
    interval_days: int
    last_at: datetime | None
    due_on: date
    overdue: bool


class ElderOut(BaseModel):
    """One elder on the worker's list (codes and the name the worker needs to visit)."""

    resident_id: str
    elder_code: str
    display_name: str
    site_id: str
    bed_code: str | None
    categories: list[str]
    category_labels: list[str]
    level: str | None
    next_assessment: date | None
    assessment_overdue: bool
    worker_id: str | None
    due: list[DueVisitOut]
    utc_offset_s: int = 28800  # the elder's site's zone: the card's times are shown in it
    demo_clock: bool = False  # the site runs on the demo's clock (shown as 演示时钟)


class TaskOut(BaseModel):
    id: int
    resident_id: str
    elder_code: str
    display_name: str
    site_id: str
    incident_id: int | None
    worker_id: str | None
    reason: str
    reason_label: str
    created_at: datetime
    due_at: datetime
    overdue: bool
    state: Literal["open", "done"]
    result: str | None
    done_at: datetime | None
    utc_offset_s: int = 28800  # the task's site's zone: its deadline is shown in it
    demo_clock: bool = False  # the site runs on the demo's clock (shown as 演示时钟)


class WorklistOut(BaseModel):
    """The due and overdue visits and the open door-knock tasks of the caller, and (for a
    community worker) every other elder assigned to them: no visit due, still to be called
    or visited when needed (其他负责老人)."""

    generated_at: datetime
    overdue: int
    elders: list[ElderOut]
    tasks: list[TaskOut]
    others: list[ElderOut] = Field(default_factory=list)


class VisitIn(BaseModel):
    kind: Literal["phone", "home"]
    outcome: Literal["well", "concern", "not_reached"]
    visited_at: AwareDatetime | None = None
    notes: Annotated[str, _text(2000)] | None = None
    concerns: list[Annotated[str, _text(200)]] = Field(default_factory=list, max_length=20)
    proof_code: Annotated[str, _text(64)] | None = None
    proof_method: Literal["scan", "typed"] | None = None


class VisitOut(BaseModel):
    id: int
    kind: str
    visitor_id: str
    visited_at: datetime
    outcome: str
    notes: str | None
    concerns: list[str]
    proof_method: str | None
    task_id: int | None


class AssessmentIn(BaseModel):
    level: Annotated[str, _text(32, 1)]
    assessor: Annotated[str, _text(128, 1)]
    assessed_on: date
    next_due: date | None = None
    notes: Annotated[str, _text(2000)] | None = None


class AssessmentOut(BaseModel):
    id: int
    level: str
    assessor: str
    assessed_on: date
    next_due: date
    overdue: bool
    notes: str | None
    recorded_by: str
    recorded_at: datetime


class ElderDetailOut(BaseModel):
    elder: ElderOut
    assessments: list[AssessmentOut]
    visits: list[VisitOut]


class CategoriesIn(BaseModel):
    categories: list[Literal[CATEGORIES]] = Field(max_length=len(CATEGORIES))  # type: ignore[valid-type]


class WorkerIn(BaseModel):
    user_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class DoorKnockIn(BaseModel):
    resident_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    # The reasons of gateway.visits.service.REASONS (door_unused: "door not opened for days",
    # which the sweep also opens by itself; migration 0039 allows it).
    reason: Literal["no_activity", "unreachable", "home_silent", "door_unused"]
    incident_id: int | None = Field(default=None, ge=1, le=2**62)


class DoorKnockOut(BaseModel):
    task_id: int
    created: bool


class ResultIn(BaseModel):
    result: Literal["opened_ok", "no_answer_family_contacted", "hospital"]
    notes: Annotated[str, _text(2000)] | None = None
    proof_code: Annotated[str, _text(64)] | None = None
    proof_method: Literal["scan", "typed"] | None = None


class ResultOut(BaseModel):
    task_id: int
    result: str
    result_label: str
    visit_id: int | None
    incident_id: int | None
    incident_state: str | None


class CreatedOut(BaseModel):
    id: int


class NoticeOut(BaseModel):
    resident_id: str
    elder_code: str
    kind: str
    due_on: date
    site_id: str
    noticed_at: datetime


class OverdueOut(BaseModel):
    """For the console: overdue visits now, and what supervisors were told."""

    overdue: list[ElderOut]
    notices: list[NoticeOut]


class SweepOut(BaseModel):
    notices: int
    tasks_opened: int


# -- helpers ---------------------------------------------------------------------------


def _elder(cfg: VisitsConfig, card: dict[str, Any], now: datetime) -> ElderOut:
    offset = int(card["utc_offset_s"])
    cats = list(card["categories"])
    due = [
        DueVisitOut.model_validate(dataclasses.asdict(d)) for d in service.due_for(cfg, card, now)
    ]
    return ElderOut(
        resident_id=card["resident_id"], elder_code=card["elder_code"],
        display_name=card["display_name"], site_id=card["site_id"], bed_code=card["bed_code"],
        categories=cats, category_labels=[CATEGORY_LABELS.get(c, c) for c in cats],
        level=card["level"], next_assessment=card["next_due"],
        assessment_overdue=assessment_overdue(card["next_due"], service.local_date(now, offset)),
        worker_id=card["worker_id"], due=due, utc_offset_s=offset,
        demo_clock=bool(card.get("demo_clock")),
    )  # fmt: skip


def _task(row: dict[str, Any], now: datetime) -> TaskOut:
    reason = str(row["reason"])
    label = service.REASONS.get(reason, reason)
    overdue = row["state"] == "open" and row["due_at"] < now
    return TaskOut.model_validate(row | {"reason_label": label, "overdue": overdue})


# -- routes ----------------------------------------------------------------------------


@router.get("/visits/worklist", response_model=WorklistOut,
            summary="Due and overdue visits, open door-knock tasks, other assigned elders",
            **allow(*WORKER))  # fmt: skip
def worklist(cfg: VisitsConfigDep, user: CurrentUser, conn: DbConn) -> WorklistOut:
    now = datetime.now(UTC)
    every = [_elder(cfg, c, now) for c in store.resident_cards(conn, **_scope(user))]
    elders = sorted((e for e in every if e.due), key=lambda e: min(d.due_on for d in e.due))
    # A worker's other assigned elders (risk categories without a visit plan, or not due yet);
    # staff see the site's elders in the console, not here.
    others = [e for e in every if not e.due] if user.role is UserRole.COMMUNITY_WORKER else []
    others.sort(key=lambda e: e.elder_code)
    scope = _scope(user)
    rows = store.tasks(conn, worker_id=scope.get("worker_id"), site_id=scope.get("site_id"))
    return WorklistOut(
        generated_at=now, overdue=sum(d.overdue for e in elders for d in e.due),
        elders=elders, tasks=[_task(r, now) for r in rows], others=others,
    )  # fmt: skip


@router.get("/visits/residents/{resident_id}", response_model=ElderDetailOut,
            summary="One elder: assessments, categories, due visits and visit history",
            **allow(*WORKER))  # fmt: skip
def elder_detail(
    resident_id: ResidentId, cfg: VisitsConfigDep, user: CurrentUser, conn: DbConn
) -> ElderDetailOut:
    now = datetime.now(UTC)
    with domain_errors():
        scope = service.scoped_resident(conn, caller_of(user), resident_id)
    cards = store.resident_cards(conn, resident_id=resident_id)
    today = service.local_date(now, scope.utc_offset_s)
    audit.append(conn, user.user_id, "visits.read", f"resident:{resident_id}", {})
    return ElderDetailOut(
        elder=_elder(cfg, cards[0], now),
        assessments=[AssessmentOut.model_validate(a | {"overdue": a["next_due"] < today})
                     for a in store.assessments_of(conn, resident_id)],
        visits=[VisitOut.model_validate(v) for v in store.visits_of(conn, resident_id)],
    )  # fmt: skip


@router.post("/visits/residents/{resident_id}/visits", response_model=CreatedOut,
             status_code=201, summary="Record a phone or home visit (home: proof of presence)",
             **allow(*WORKER))  # fmt: skip
def add_visit(
    resident_id: ResidentId, body: VisitIn, user: CurrentUser, conn: DbConn
) -> CreatedOut:
    with domain_errors():
        vid = service.record_visit(
            conn, caller_of(user), resident_id, kind=body.kind, outcome=body.outcome,
            visited_at=body.visited_at, notes=body.notes, concerns=body.concerns,
            proof_code=body.proof_code, proof_method=body.proof_method,
        )  # fmt: skip
    return CreatedOut(id=vid)


@router.post("/visits/residents/{resident_id}/assessments", response_model=CreatedOut,
             status_code=201, summary="Record a capability assessment (老年人能力评估)",
             **allow(*STAFF))  # fmt: skip
def add_assessment(
    resident_id: ResidentId,
    body: AssessmentIn,
    cfg: VisitsConfigDep,
    user: CurrentUser,
    conn: DbConn,
) -> CreatedOut:
    with domain_errors():
        aid = service.record_assessment(
            conn, cfg, caller_of(user), resident_id, level=body.level,
            assessor=body.assessor, assessed_on=body.assessed_on, next_due=body.next_due,
            notes=body.notes,
        )  # fmt: skip
    return CreatedOut(id=aid)


@router.put("/visits/residents/{resident_id}/categories", response_model=CategoriesIn,
            summary="Set the elder's risk categories (独居 空巢 高龄 失能 特困 高风险)",
            **allow(*SENIOR))  # fmt: skip
def put_categories(
    resident_id: ResidentId, body: CategoriesIn, user: CurrentUser, conn: DbConn
) -> CategoriesIn:
    with domain_errors():
        service.set_categories(conn, caller_of(user), resident_id, body.categories)
    return CategoriesIn(categories=sorted(set(body.categories)))


@router.put("/visits/residents/{resident_id}/worker", response_model=WorkerIn,
            summary="Assign the elder's community worker", **allow(*SENIOR))  # fmt: skip
def put_worker(
    resident_id: ResidentId, body: WorkerIn, user: CurrentUser, conn: DbConn
) -> WorkerIn:
    with domain_errors():
        service.assign(conn, caller_of(user), resident_id, body.user_id)
    return body


@router.get("/visits/tasks", response_model=list[TaskOut],
            summary="Door-knock tasks (open, or all with all=true)", **allow(*WORKER))  # fmt: skip
def list_tasks(user: CurrentUser, conn: DbConn, all: bool = False) -> list[TaskOut]:
    scope = _scope(user)
    now = datetime.now(UTC)
    rows = store.tasks(conn, worker_id=scope.get("worker_id"), site_id=scope.get("site_id"),
                       open_only=not all)  # fmt: skip
    return [_task(r, now) for r in rows]


@router.post("/visits/door-knock", response_model=DoorKnockOut, status_code=201,
             summary="Send the elder's community worker to knock on the door (敲门行动)",
             **allow(*STAFF))  # fmt: skip
def door_knock(
    body: DoorKnockIn, cfg: VisitsConfigDep, user: CurrentUser, conn: DbConn
) -> DoorKnockOut:
    with domain_errors():
        task_id, created = service.open_door_knock(
            conn, cfg, caller_of(user), body.resident_id,
            reason=body.reason, incident_id=body.incident_id,
        )  # fmt: skip
    return DoorKnockOut(task_id=task_id, created=created)


@router.post("/visits/tasks/{task_id}/result", response_model=ResultOut,
             summary="The result of a door-knock task (flows to the incident)",
             **allow(*WORKER))  # fmt: skip
def task_result(task_id: int, body: ResultIn, user: CurrentUser, conn: DbConn) -> ResultOut:
    if not 1 <= task_id <= 2**62:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such task")
    with domain_errors():
        out = service.finish_door_knock(
            conn, caller_of(user), task_id, result=body.result, notes=body.notes,
            proof_code=body.proof_code, proof_method=body.proof_method,
        )  # fmt: skip
    return ResultOut.model_validate(out)


@router.get("/visits/overdue", response_model=OverdueOut,
            summary="Overdue visits of the site and the notices sent to supervisors (console)",
            **allow(*STAFF))  # fmt: skip
def overdue(cfg: VisitsConfigDep, user: CurrentUser, conn: DbConn) -> OverdueOut:
    now = datetime.now(UTC)
    elders = [_elder(cfg, c, now) for c in store.resident_cards(conn, **_scope(user))]
    return OverdueOut(
        overdue=[e for e in elders if any(d.overdue for d in e.due)],
        notices=[NoticeOut.model_validate(n) for n in store.notices(
            conn, None if user.is_admin else user.site_id)],
    )  # fmt: skip


@router.post("/visits/sweep", response_model=SweepOut,
             summary="Run the overdue-visit and silent-home sweep now",
             **allow(UserRole.ADMIN))  # fmt: skip
def run_sweep(cfg: VisitsConfigDep, user: CurrentUser, conn: DbConn) -> SweepOut:
    result = service.sweep(conn, cfg)
    audit.append(conn, user.user_id, "visits.sweep", "visits", {"notices": result.notices,
                 "tasks_opened": result.tasks_opened})  # fmt: skip
    return SweepOut(notices=result.notices, tasks_opened=result.tasks_opened)


class ServiceIn(BaseModel):
    service: Literal["visit", "bathing", "meals", "medical_check", "rehabilitation"]
    proof_code: Annotated[str, _text(64, 1)]
    proof_method: Literal["scan", "typed"]
    delivered_at: AwareDatetime | None = None
    minutes: int | None = Field(default=None, ge=1, le=1440)
    notes: Annotated[str, _text(2000)] | None = None


class ServiceOut(BaseModel):
    id: int
    service: str
    service_label: str
    staff_id: str
    delivered_at: datetime
    minutes: int | None
    proof_method: str
    notes: str | None


@router.post("/visits/residents/{resident_id}/services", response_model=CreatedOut,
             status_code=201, summary="Record a service delivered to a home-care bed (proof)",
             **allow(*WORKER))  # fmt: skip
def add_service(
    resident_id: ResidentId, body: ServiceIn, user: CurrentUser, conn: DbConn
) -> CreatedOut:
    with domain_errors():
        sid = service.record_service(
            conn, caller_of(user), resident_id, service=body.service,
            proof_code=body.proof_code, proof_method=body.proof_method,
            delivered_at=body.delivered_at, minutes=body.minutes, notes=body.notes,
        )  # fmt: skip
    return CreatedOut(id=sid)


@router.get("/visits/residents/{resident_id}/services", response_model=list[ServiceOut],
            summary="Services delivered to the elder's bed, newest first",
            **allow(*WORKER))  # fmt: skip
def list_services(resident_id: ResidentId, user: CurrentUser, conn: DbConn) -> list[ServiceOut]:
    with domain_errors():
        service.scoped_resident(conn, caller_of(user), resident_id)
    return [
        ServiceOut.model_validate(r | {"service_label": service.SERVICES[r["service"]]})
        for r in store.services_of(conn, resident_id)
    ]


class FamilyVisitOut(BaseModel):
    """A visit as the family sees it: kind, time, outcome (no visitor, notes or codes)."""

    kind: Literal["phone", "home"]
    visited_at: datetime
    outcome: str
    door_knock_result: str | None
    door_knock_label: str | None


@router.get("/family/residents/{resident_id}/visits", response_model=list[FamilyVisitOut],
            summary="Visits to my relative (探访记录)", **allow(UserRole.FAMILY))  # fmt: skip
def family_visits(resident_id: ResidentId, user: CurrentUser, conn: DbConn) -> list[FamilyVisitOut]:
    if not store.family_linked(conn, user.user_id, resident_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such resident")
    audit.append(conn, user.user_id, "visits.read", f"resident:{resident_id}", {"by": "family"})
    return [
        FamilyVisitOut.model_validate(
            v | {"door_knock_label": service.RESULTS.get(v["door_knock_result"] or "")}
        )
        for v in store.family_visits(conn, resident_id)
    ]
