"""Acknowledging a page from the message itself: a one-time link or an SMS reply code.

Either way the acknowledgement is the paged user's own human acknowledgement of the incident,
through :class:`gateway.workflow.service.IncidentService` (timeline event and audit entry
under that user id), and escalation stops at its next step. In one transaction:

1. the page is locked and checked (exists, belongs to the user, not expired, user active);
2. its single use is recorded in ``staff_page_acks`` (a second use finds the row: ``used``);
3. the incident is acknowledged when still ``raised``; when someone else took it already the
   use is recorded as ``already_acknowledged`` (a clear answer, nothing changed);
4. an audit entry ``page.acknowledged`` (page id, via, result) is appended under the user;
5. the escalation timer is made due now, so the worker records the stop at once.

Logs carry page/incident/user ids and the result only, never the sender's number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg

from gateway import audit
from gateway.facts import DEFAULT_UTC_OFFSET_S_INT
from gateway.paging.tokens import AckResult, LinkClaims, find_code, normalise_phone
from gateway.storage import escalation, paging
from gateway.workflow.service import Actor, IncidentService
from gateway.workflow.transitions import IllegalTransitionError, Role

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
Via = Literal["link", "sms"]


@dataclass(frozen=True, slots=True)
class AckOutcome:
    """The answer to one acknowledgement attempt."""

    result: AckResult
    incident_id: int | None = None
    page_id: int | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class PageView:
    """What the confirmation page may show before the POST (ids and codes, no names)."""

    page_id: int
    incident_id: int
    incident_type: str
    incident_state: str
    raised_at: datetime
    used: bool
    utc_offset_s: int = DEFAULT_UTC_OFFSET_S_INT  # the site's zone


def view_page(conn: Conn, claims: LinkClaims) -> PageView | None:
    """The page a valid link names (read only: a GET never acknowledges)."""
    page = paging.page_for(conn, claims.page_id, claims.user_id)
    if page is None:
        return None
    return PageView(
        page.page_id, page.incident_id, page.incident_type, page.incident_state, page.raised_at,
        page.used, page.utc_offset_s,
    )  # fmt: skip


def acknowledge_link(conn: Conn, claims: LinkClaims) -> AckOutcome:
    """Acknowledge the page named by a verified (signature and expiry) link."""
    return _acknowledge(conn, claims.page_id, claims.user_id, "link", None)


def acknowledge_reply(conn: Conn, sender: str, text: str, ttl_s: float) -> AckOutcome:
    """Acknowledge the page whose reply code is in ``text`` and whose user has ``sender``
    as an SMS or voice channel; pages older than ``ttl_s`` are ``expired``."""
    code = find_code(text)
    try:
        phone = normalise_phone(sender)
    except ValueError:
        return AckOutcome(AckResult.UNKNOWN)
    if code is None:
        return AckOutcome(AckResult.UNKNOWN)
    found = paging.page_by_reply(conn, phone, code)
    if found is None:
        return AckOutcome(AckResult.UNKNOWN)
    page_id, user_id = found
    return _acknowledge(conn, page_id, user_id, "sms", ttl_s)


def _acknowledge(
    conn: Conn, page_id: int, user_id: str, via: Via, ttl_s: float | None
) -> AckOutcome:
    with conn.transaction():
        page = paging.page_for(conn, page_id, user_id, lock=True)
        if page is None:
            return _done(AckOutcome(AckResult.UNKNOWN, page_id=page_id), via)
        incident_id, created_at, role, active = (
            page.incident_id, page.created_at, page.role, page.active
        )  # fmt: skip
        outcome = AckOutcome(AckResult.UNKNOWN, incident_id, page_id, user_id)
        if ttl_s is not None:
            now = paging.db_now(conn)
            if now is not None and now > created_at + timedelta(seconds=ttl_s):
                return _done(_with(outcome, AckResult.EXPIRED), via)
        if not active or role not in {r.value for r in _ROLES}:
            return _done(_with(outcome, AckResult.NO_USER), via)
        result = AckResult.ALREADY
        if page.incident_state == "raised":
            result = AckResult.ACKNOWLEDGED
        if not paging.record_ack(conn, page_id, incident_id, user_id, via=via, result=result.value):
            return _done(_with(outcome, AckResult.USED), via)
        if result is AckResult.ACKNOWLEDGED:
            try:
                IncidentService(conn).acknowledge(incident_id, Actor(user_id, Role(role)))
            except IllegalTransitionError:  # taken between our read and the lock
                result = AckResult.ALREADY
                paging.set_ack_result(conn, page_id, user_id, result.value)
            else:  # the escalation timer records the stop at its next poll, not its timeout
                escalation.due_now(conn, incident_id)
        audit.append(conn, user_id, "page.acknowledged", f"incident:{incident_id}",
                     {"page_id": page_id, "via": via, "result": result.value})  # fmt: skip
    return _done(_with(outcome, result), via)


_ROLES = (Role.DUTY_STAFF, Role.SUPERVISOR, Role.ADMIN)


def _with(outcome: AckOutcome, result: AckResult) -> AckOutcome:
    return AckOutcome(result, outcome.incident_id, outcome.page_id, outcome.user_id)


def _done(outcome: AckOutcome, via: Via) -> AckOutcome:
    log.info(
        "page acknowledgement",
        extra={"via": via, "result": outcome.result.value, "page_id": outcome.page_id,
               "incident_id": outcome.incident_id, "user_id": outcome.user_id},
    )  # fmt: skip
    return outcome
