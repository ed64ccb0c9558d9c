"""Visiting-care data for the demo (``safehome demo``): a community worker for the home-care
centre with an overdue visit, a no-activity alert nobody has answered for 40 minutes (the
visits sweep sends the worker to the door: a door-knock task), a district supervisor over
both demo sites, assessments of the nursing-home residents and a roster whose night shifts
are short in the coming week.

Safe to run again: users are found by name; assignments, districts and categories are
upserts; a re-run adds the week's shifts again (staff are counted once per shift).
``gateway/demo.py`` calls :func:`seed_visits_demo` after its own users, with the same
password book, and prints the two new logins in its banner.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from gateway.api.auth import create_user
from gateway.escalation.intake import start_escalation
from gateway.escalation.roster import DutyRole, add_shift
from gateway.storage import auth_sessions, people
from gateway.storage import visits as store
from gateway.workflow.service import IncidentService, Trigger
from gateway.workflow.transitions import IncidentType

DISTRICT = "d-demo"
NO_ACTIVITY_ELDER = "hc-res-02"
UNANSWERED_FOR_MIN = 40
WORKER = "worker-hc"
DISTRICT_SUPERVISOR = "district-demo"
# Their display names (fictitious), shown instead of login names on timelines and pages.
NAMES = {WORKER: "林芳", DISTRICT_SUPERVISOR: "周敏"}
# 1/3 + 2/6 + 3/15: one carer per shift is enough, so only the unstaffed nights are short.
NH_LEVELS = ("完全失能", "中度失能", "轻度失能", "能力完好", "能力完好", "能力完好")


def _user(conn: psycopg.Connection[Any], name: str, role: str, book: dict[str, str]) -> str:
    password = book.setdefault(name, secrets.token_urlsafe(9))
    row = auth_sessions.find_user(conn, name)
    if row is not None:
        user_id = row.user_id
    else:
        user_id = create_user(conn, name, role, password, actor="demo")
    people.set_display_name(conn, user_id, NAMES[name], actor="demo")
    return user_id


def seed_visits_demo(
    conn: psycopg.Connection[Any], book: dict[str, str], *, now: datetime | None = None
) -> dict[str, str]:
    """Seed the demo's visiting-care data; add the new users' passwords to ``book``."""
    now = now or datetime.now(UTC)
    worker = _user(conn, WORKER, "community_worker", book)
    dsup = _user(conn, DISTRICT_SUPERVISOR, "district_supervisor", book)
    store.set_user_district(conn, dsup, DISTRICT)
    for site in ("demo-hc", "demo-nh"):
        store.set_site_district(conn, site, DISTRICT)
    for card in store.resident_cards(conn, site_id="demo-hc"):
        store.assign_worker(conn, card["resident_id"], worker)
        if card["resident_id"] == "hc-res-01" and card["last_phone"] is None:
            store.set_risks(conn, "hc-res-01", ["high_risk", "very_old"])
            # Last called twelve days ago: the weekly call is overdue.
            store.insert_visit(conn, "hc-res-01", kind="phone", visitor_id=worker,
                               visited_at=now - timedelta(days=12), outcome="well", notes=None,
                               concerns=[], proof_code=None, proof_method=None)  # fmt: skip
    _unanswered_no_activity(conn, now)
    nh = store.resident_cards(conn, site_id="demo-nh")
    for card, level in zip(nh, NH_LEVELS, strict=False):
        if card["level"] is None:
            store.add_assessment(conn, card["resident_id"], level=level, assessor="示范评估员",
                                 assessed_on=now.date(), next_due=now.date() + timedelta(days=365),
                                 notes=None, recorded_by="demo")  # fmt: skip
    duty = auth_sessions.find_user(conn, "duty-nh")
    if duty is not None:
        # Day and evening shifts (08:00–24:00 local) staffed for a week; nights are not.
        local = now + timedelta(hours=8)
        midnight = datetime(local.year, local.month, local.day, tzinfo=UTC) - timedelta(hours=8)
        for d in range(1, 8):
            start = midnight + timedelta(days=d, hours=8)
            add_shift(conn, "demo-nh", user_id=duty.user_id, role=DutyRole.DUTY_STAFF,
                      starts_at=start, ends_at=start + timedelta(hours=16))  # fmt: skip
    return {WORKER: book[WORKER], DISTRICT_SUPERVISOR: book[DISTRICT_SUPERVISOR]}


def _unanswered_no_activity(conn: psycopg.Connection[Any], now: datetime) -> None:
    """A no-activity alert of a home-care elder raised 40 minutes before the demo started and
    answered by nobody: it escalates like any alert, and the first visits sweep opens a
    door-knock task for the elder's community worker (``door_knock.auto_after_minutes``)."""
    raised = now - timedelta(minutes=UNANSWERED_FOR_MIN)
    service = IncidentService(conn, clock=lambda: raised)
    incident, created = service.raise_or_join(Trigger(
        IncidentType.NO_ACTIVITY, "demo-hc", raised - timedelta(hours=3),
        "no activity for 3 h in waking time", resident_id=NO_ACTIVITY_ELDER,
        details={"no_activity_s": 3 * 3600},
    ))  # fmt: skip
    if created:
        start_escalation(conn, incident.id, incident.site_id)
