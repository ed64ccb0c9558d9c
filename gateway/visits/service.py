"""Visiting-care actions: assessments, risk categories, visits and door-knock tasks.

Each action runs in one transaction on the caller's connection with its audit entry
(``gateway.audit``); a door-knock task and its result also go to the incident's timeline
through the workflow service, and the result can resolve the incident (``开门，正常``:
no action needed; ``送医``: hospital transfer) or escalate it (``无人应答，已联系家属``: the
incident stays open, its timeline says so and the supervisor is told).

Scope: a community worker acts only on the elders assigned to them; anyone else's elder is
"not found" (existence does not leak). Logs carry ids only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import psycopg

from gateway import audit
from gateway.errors import ConflictError, InvalidError, NotFoundError
from gateway.storage import visits as store
from gateway.visits.config import CATEGORIES, VisitsConfig
from gateway.visits.plans import DueVisit, due_visits
from gateway.workflow.service import Actor, IncidentNotFoundError, IncidentService
from gateway.workflow.transitions import OPEN_STATES, Role, State, WorkflowError

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

RESULTS = {
    "opened_ok": "开门，正常",
    "no_answer_family_contacted": "无人应答，已联系家属",
    "hospital": "送医",
}
REASONS = {"no_activity": "无活动告警电话未解决", "home_silent": "全部设备离线",
           "unreachable": "电话联系不上", "door_unused": "多日未开门告警未解决"}  # fmt: skip
_RESOLVE_OUTCOME = {"opened_ok": "no_action_needed", "hospital": "hospital_transfer"}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who acts: user id and API role value (``community_worker`` is scoped to assignments)."""

    user_id: str
    role: str
    site_id: str | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def scoped_resident(conn: Conn, caller: Caller, resident_id: str) -> store.ResidentScope:
    """The resident if ``caller`` may act on them, else :class:`NotFoundError`."""
    scope = store.resident_scope(conn, resident_id)
    visible = scope is not None and (
        caller.role == "admin"
        or (caller.role == "community_worker" and scope.worker_id == caller.user_id)
        or (caller.role in {"duty_staff", "supervisor"} and scope.site_id == caller.site_id)
    )
    if scope is None or not visible:
        raise NotFoundError("no such resident")
    return scope


def local_date(at: datetime, utc_offset_s: int) -> date:
    return at.astimezone(timezone(timedelta(seconds=utc_offset_s))).date()


# -- assessments and categories --------------------------------------------------------


def record_assessment(
    conn: Conn,
    cfg: VisitsConfig,
    caller: Caller,
    resident_id: str,
    *,
    level: str,
    assessor: str,
    assessed_on: date,
    next_due: date | None = None,
    notes: str | None = None,
) -> int:
    """Record a capability assessment; ``next_due`` defaults to the configured interval."""
    scoped_resident(conn, caller, resident_id)
    if not date(2000, 1, 1) <= assessed_on <= date.today() + timedelta(days=1):
        raise InvalidError("the assessment date must be between 2000 and today")
    if next_due is not None and next_due > assessed_on + timedelta(days=3660):
        raise InvalidError("next_due must be within ten years of the assessment")
    if level not in cfg.levels:
        raise InvalidError(f"unknown assessment level {level!r}", hint="、".join(cfg.levels))
    due = next_due or assessed_on + timedelta(days=cfg.interval_days)
    if due <= assessed_on:
        raise InvalidError("next_due must be after the assessment date")
    with conn.transaction():
        aid = store.add_assessment(conn, resident_id, level=level, assessor=assessor,
                                   assessed_on=assessed_on, next_due=due, notes=notes,
                                   recorded_by=caller.user_id)  # fmt: skip
        audit.append(conn, caller.user_id, "assessment.record", f"resident:{resident_id}",
                     {"assessment_id": aid, "level": level,
                      "next_due": due.isoformat()})  # fmt: skip
    return aid


def set_categories(conn: Conn, caller: Caller, resident_id: str, categories: Sequence[str]) -> None:
    """Replace the elder's risk categories (audited)."""
    scoped_resident(conn, caller, resident_id)
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown:
        raise InvalidError(f"unknown risk categories {unknown}", hint=", ".join(CATEGORIES))
    with conn.transaction():
        store.set_risks(conn, resident_id, categories)
        audit.append(conn, caller.user_id, "risk.set", f"resident:{resident_id}",
                     {"categories": sorted(set(categories))})  # fmt: skip


def assign(conn: Conn, caller: Caller, resident_id: str, worker_id: str) -> None:
    """Make ``worker_id`` (a community worker) the elder's worker (audited)."""
    scoped_resident(conn, caller, resident_id)
    if store.user_role(conn, worker_id) != "community_worker":
        raise InvalidError("not an active community worker", hint=worker_id)
    with conn.transaction():
        store.assign_worker(conn, resident_id, worker_id)
        audit.append(conn, caller.user_id, "visits.assign", f"resident:{resident_id}",
                     {"worker_id": worker_id})  # fmt: skip


# -- due visits ------------------------------------------------------------------------


def due_for(cfg: VisitsConfig, card: dict[str, Any], today_utc: datetime) -> list[DueVisit]:
    """The due visits of one resident card (from :func:`store.resident_cards`)."""
    offset = int(card["utc_offset_s"])
    due = due_visits(
        card["resident_id"], card["categories"], cfg.plans_for(card["district_id"]),
        last={"phone": card["last_phone"], "home": card["last_home"]},
        since=local_date(card["created_at"], offset),
        today=local_date(today_utc, offset),
        local_date=lambda t: local_date(t, offset),
    )  # fmt: skip
    if card.get("away_until") is not None:  # 随家人外出: nobody at home to visit meanwhile
        due = [d for d in due if d.kind != "home"]
    return due


# -- visits ----------------------------------------------------------------------------


def record_visit(
    conn: Conn,
    caller: Caller,
    resident_id: str,
    *,
    kind: str,
    outcome: str,
    visited_at: datetime | None = None,
    notes: str | None = None,
    concerns: Sequence[str] = (),
    proof_code: str | None = None,
    proof_method: str | None = None,
    task_id: int | None = None,
    clock: Callable[[], datetime] = _utcnow,
) -> int:
    """Record a phone or home visit. A home visit needs proof of presence: the elder's or
    the bed's code, scanned from the QR label or typed (:class:`InvalidError` otherwise)."""
    scoped_resident(conn, caller, resident_id)
    now = clock()
    at = visited_at or now
    if at > now + timedelta(minutes=5):
        raise InvalidError("a visit cannot be in the future")
    if at < now - timedelta(days=366):
        raise InvalidError("a visit more than a year ago cannot be recorded")
    if any(len(c) > 200 for c in concerns):
        raise InvalidError("a concern is at most 200 characters")
    code = (proof_code or "").strip() or None
    if kind == "home":
        if code is None or proof_method not in {"scan", "typed"}:
            raise InvalidError("a home visit needs proof of presence",
                               hint="扫描老人或床位二维码，或手动输入编码")  # fmt: skip
        if not store.proof_matches(conn, resident_id, code):
            raise InvalidError("the code is not this elder's or their bed's code",
                               hint="请扫描该老人本人或其床位的二维码")  # fmt: skip
    with conn.transaction():
        vid = store.insert_visit(conn, resident_id, kind=kind, visitor_id=caller.user_id,
                                 visited_at=at, outcome=outcome, notes=notes,
                                 concerns=list(concerns), proof_code=code,
                                 proof_method=proof_method if kind == "home" else None,
                                 task_id=task_id)  # fmt: skip
        audit.append(conn, caller.user_id, "visit.record", f"resident:{resident_id}",
                     {"visit_id": vid, "kind": kind, "outcome": outcome,
                      "proof": proof_method if kind == "home" else None})  # fmt: skip
    log.info("visit recorded", extra={"visit_id": vid, "kind": kind})
    return vid


SERVICES = {"visit": "探视", "bathing": "助浴", "meals": "助餐", "medical_check": "健康检查",
            "rehabilitation": "康复"}  # fmt: skip


def record_service(
    conn: Conn,
    caller: Caller,
    resident_id: str,
    *,
    service: str,
    proof_code: str,
    proof_method: str,
    delivered_at: datetime | None = None,
    minutes: int | None = None,
    notes: str | None = None,
    clock: Callable[[], datetime] = _utcnow,
) -> int:
    """Record a service delivered to a home-care bed, with proof of presence (the elder's or
    the bed's code); audited."""
    scoped_resident(conn, caller, resident_id)
    if service not in SERVICES:
        raise InvalidError(f"unknown service {service!r}", hint=", ".join(SERVICES))
    now = clock()
    at = delivered_at or now
    if not now - timedelta(days=366) <= at <= now + timedelta(minutes=5):
        raise InvalidError("the service time must be within the last year")
    code = proof_code.strip()
    if not code or not store.proof_matches(conn, resident_id, code):
        raise InvalidError("the code is not this elder's or their bed's code",
                           hint="请扫描该老人本人或其床位的二维码")  # fmt: skip
    with conn.transaction():
        sid = store.insert_service(conn, resident_id, service=service, staff_id=caller.user_id,
                                   delivered_at=at, minutes=minutes, proof_code=code,
                                   proof_method=proof_method, notes=notes)  # fmt: skip
        audit.append(conn, caller.user_id, "service.record", f"resident:{resident_id}",
                     {"service_id": sid, "service": service, "proof": proof_method})  # fmt: skip
    return sid


# -- door-knock tasks ------------------------------------------------------------------


def open_door_knock(
    conn: Conn,
    cfg: VisitsConfig,
    caller: Caller,
    resident_id: str,
    *,
    reason: str,
    incident_id: int | None = None,
    clock: Callable[[], datetime] = _utcnow,
) -> tuple[int, bool]:
    """Open a "knock on the door" task for the elder's community worker: (task id, created).

    From a care incident (``no_activity`` not resolved by phone, ``unreachable``): the
    incident must belong to the elder and be open; a raised incident is acknowledged by the
    caller first (a staff action that ends escalation) and the task goes to its timeline.
    """
    if reason not in REASONS:
        raise InvalidError(f"unknown reason {reason!r}", hint=", ".join(REASONS))
    scope = scoped_resident(conn, caller, resident_id) if caller.role != "system" else (
        store.resident_scope(conn, resident_id))  # fmt: skip
    if scope is None:
        raise NotFoundError("no such resident")
    svc = IncidentService(conn, clock=clock)
    now = clock()
    due = now + timedelta(minutes=cfg.door_knock_minutes)
    with conn.transaction():
        if incident_id is not None:
            try:
                incident = svc.get(incident_id)
            except IncidentNotFoundError:
                raise NotFoundError("no such incident") from None
            if incident.resident_id != resident_id:
                raise NotFoundError("no such incident")
            if State(incident.state) not in OPEN_STATES:
                raise ConflictError(f"the incident is {incident.state}: nothing to knock for")
            # Staff opening a task take the incident (escalation stops); the sweep never does:
            # an unanswered alarm keeps escalating to staff while the worker goes to the door.
            if incident.state == "raised" and caller.role != "system":
                svc.acknowledge(incident_id, Actor(caller.user_id, Role(caller.role)))
        task_id, created = store.insert_task(
            conn, resident_id, site_id=scope.site_id, incident_id=incident_id,
            worker_id=scope.worker_id, reason=reason, created_by=caller.user_id, due_at=due,
        )  # fmt: skip
        if created:
            audit.append(conn, caller.user_id, "door_knock.open", f"door_knock:{task_id}",
                         {"resident_id": resident_id, "reason": reason,
                          "incident_id": incident_id, "worker_id": scope.worker_id,
                          "due_at": due.isoformat()})  # fmt: skip
            if incident_id is not None:
                svc.note(incident_id, Actor(caller.user_id, _role(caller.role)), "door_knock",
                         {"task_id": task_id, "reason": reason, "worker_id": scope.worker_id,
                          "due_at": due.isoformat()})  # fmt: skip
    if created:
        log.info("door-knock task opened", extra={"task_id": task_id, "reason": reason})
    return task_id, created


def _role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        return Role.SYSTEM


def finish_door_knock(
    conn: Conn,
    caller: Caller,
    task_id: int,
    *,
    result: str,
    notes: str | None = None,
    proof_code: str | None = None,
    proof_method: str | None = None,
    clock: Callable[[], datetime] = _utcnow,
) -> dict[str, Any]:
    """Record the result of a door-knock task; it flows into the incident's timeline and
    resolves (正常, 送医) or escalates (无人应答) the incident. ``开门，正常`` needs proof of
    presence (the elder's or bed's code). Returns the task's final facts."""
    if result not in RESULTS:
        raise InvalidError(f"unknown result {result!r}", hint=", ".join(RESULTS))
    now = clock()
    with conn.transaction():
        task = store.task_for_update(conn, task_id)
        if task is None or (caller.role == "community_worker"
                            and task["worker_id"] != caller.user_id):  # fmt: skip
            raise NotFoundError("no such task")
        scoped_resident(conn, caller, task["resident_id"])
        if task["state"] != "open":
            raise ConflictError("the task is already done")
        if result == "opened_ok" and not (proof_code or "").strip():
            raise InvalidError("开门，正常 needs proof of presence",
                               hint="扫描老人或床位二维码，或手动输入编码")  # fmt: skip
        visit_id = None
        if (proof_code or "").strip():
            outcome = "well" if result == "opened_ok" else "concern"
            visit_id = record_visit(conn, caller, task["resident_id"], kind="home",
                                    outcome=outcome, notes=notes, proof_code=proof_code,
                                    proof_method=proof_method or "typed", task_id=task_id,
                                    concerns=[] if result == "opened_ok" else [result],
                                    clock=clock)  # fmt: skip
        store.finish_task(conn, task_id, result=result, by=caller.user_id, at=now)
        audit.append(conn, caller.user_id, "door_knock.result", f"door_knock:{task_id}",
                     {"result": result, "visit_id": visit_id,
                      "incident_id": task["incident_id"]})  # fmt: skip
        incident_state = _to_incident(conn, caller, task, result, clock=clock)
    log.info("door-knock task done", extra={"task_id": task_id, "result": result})
    return {"task_id": task_id, "result": result, "result_label": RESULTS[result],
            "visit_id": visit_id, "incident_id": task["incident_id"],
            "incident_state": incident_state}  # fmt: skip


def _to_incident(
    conn: Conn,
    caller: Caller,
    task: dict[str, Any],
    result: str,
    *,
    clock: Callable[[], datetime],
) -> str | None:
    incident_id = task["incident_id"]
    if incident_id is None:
        return None
    svc = IncidentService(conn, clock=clock)
    actor = Actor(caller.user_id, _role(caller.role))
    escalate = result == "no_answer_family_contacted"
    svc.note(incident_id, actor, "door_knock_result",
             {"task_id": task["id"], "result": result, "label": RESULTS[result],
              "escalated": escalate})  # fmt: skip
    incident = svc.get(incident_id)
    outcome = _RESOLVE_OUTCOME.get(result)
    if outcome is not None and incident.state in {"acknowledged", "dispatched", "on_scene"}:
        try:
            incident = svc.resolve(incident_id, actor, outcome, notes=f"敲门：{RESULTS[result]}")
        except WorkflowError as exc:
            raise ConflictError(str(exc)) from None
    return incident.state


# -- the periodic sweep ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep did: overdue visits newly told to supervisors, tasks opened."""

    notices: int
    tasks_opened: int


def sweep(
    conn: Conn,
    cfg: VisitsConfig,
    clock: Callable[[], datetime] = _utcnow,
    sites: Sequence[str] | None = None,
) -> SweepResult:
    """Tell supervisors of newly overdue visits (once per elder, kind and due date) and
    open door-knock tasks for homes where every device went silent and for inactivity
    alerts (no activity, not up, door not opened for days) nobody resolved within
    ``door_knock_auto_minutes`` of an elder with a community worker. Idempotent.
    ``sites``: only those sites' elders (a cell's gateway, :mod:`gateway.cells`)."""
    now = clock()
    noticed = 0
    system = Caller("system", "system")
    for card in store.resident_cards(conn, sites=sites):
        for due in due_for(cfg, card, now):
            if due.overdue:
                with conn.transaction():
                    if store.insert_notice(conn, card["resident_id"], due.kind, due.due_on,
                                           card["site_id"]):  # fmt: skip
                        noticed += 1
                        audit.append(conn, "system", "visit.overdue_notice",
                                     f"resident:{card['resident_id']}",
                                     {"kind": due.kind, "due_on": due.due_on.isoformat(),
                                      "supervisors": store.site_supervisors(
                                          conn, card["site_id"])})  # fmt: skip
    opened = 0
    for resident_id, _site in store.silent_home_residents(conn, sites):
        _, created = open_door_knock(conn, cfg, system, resident_id, reason="home_silent",
                                     clock=clock)  # fmt: skip
        opened += created
    if cfg.door_knock_auto_minutes:
        for incident_id, resident_id, itype in store.unresolved_inactivity(
            conn, cfg.door_knock_auto_minutes, sites
        ):
            reason = "door_unused" if itype == "door_unused" else "no_activity"
            _, created = open_door_knock(conn, cfg, system, resident_id, reason=reason,
                                         incident_id=incident_id, clock=clock)  # fmt: skip
            opened += created
    if noticed or opened:
        log.info("visits sweep", extra={"notices": noticed, "tasks_opened": opened})
    return SweepResult(noticed, opened)
