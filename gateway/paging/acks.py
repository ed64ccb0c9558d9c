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
from gateway.paging.tokens import AckResult, LinkClaims, find_code, normalise_phone
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


# A page and its user: the page's own user, or (for the emergency instruction, addressed to
# everyone: user_id '') any staff user of the page's site or an admin.
_PAGE_SQL = """
SELECT p.id, p.incident_id, u.user_id, p.created_at, u.role, u.active, i.state, i.type,
       i.raised_at,
       EXISTS (SELECT 1 FROM staff_page_acks a WHERE a.page_id = p.id AND a.user_id = u.user_id)
FROM staff_pages p
JOIN incidents i ON i.id = p.incident_id
JOIN users u ON u.user_id = %s
WHERE p.id = %s
  AND (p.user_id = u.user_id
       OR (p.user_id = '' AND (u.site_id = p.site_id OR u.role = 'admin')))
"""


def view_page(conn: Conn, claims: LinkClaims) -> PageView | None:
    """The page a valid link names (read only: a GET never acknowledges)."""
    row = conn.execute(_PAGE_SQL, (claims.user_id, claims.page_id)).fetchone()
    if row is None:
        return None
    return PageView(int(row[0]), int(row[1]), str(row[7]), str(row[6]), row[8], bool(row[9]))


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
    row = conn.execute(
        "SELECT p.id, u.user_id FROM staff_pages p "
        "JOIN staff_channels sc ON sc.address = %s"
        "  AND split_part(sc.channel, ':', 1) IN ('sms', 'voice') "
        "JOIN users u ON u.user_id = sc.user_id "
        "WHERE p.ack_code = %s AND (p.user_id = u.user_id OR (p.user_id = ''"
        "  AND (u.site_id = p.site_id OR u.role = 'admin'))) "
        "ORDER BY p.id DESC LIMIT 1",
        (phone, code),
    ).fetchone()
    if row is None:
        return AckOutcome(AckResult.UNKNOWN)
    return _acknowledge(conn, int(row[0]), str(row[1]), "sms", ttl_s)


def _acknowledge(
    conn: Conn, page_id: int, user_id: str, via: Via, ttl_s: float | None
) -> AckOutcome:
    with conn.transaction():
        row = conn.execute(_PAGE_SQL + " FOR UPDATE OF p", (user_id, page_id)).fetchone()
        if row is None:
            return _done(AckOutcome(AckResult.UNKNOWN, page_id=page_id), via)
        incident_id, created_at, role, active = int(row[1]), row[3], str(row[4]), bool(row[5])
        outcome = AckOutcome(AckResult.UNKNOWN, incident_id, page_id, user_id)
        if ttl_s is not None:
            now = conn.execute("SELECT now()").fetchone()
            if now is not None and now[0] > created_at + timedelta(seconds=ttl_s):
                return _done(_with(outcome, AckResult.EXPIRED), via)
        if not active or role not in {r.value for r in _ROLES}:
            return _done(_with(outcome, AckResult.NO_USER), via)
        result = AckResult.ALREADY
        if str(row[6]) == "raised":
            result = AckResult.ACKNOWLEDGED
        inserted = conn.execute(
            "INSERT INTO staff_page_acks (page_id, incident_id, user_id, via, result) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (page_id, user_id) DO NOTHING "
            "RETURNING page_id",
            (page_id, incident_id, user_id, via, result.value),
        ).fetchone()
        if inserted is None:
            return _done(_with(outcome, AckResult.USED), via)
        if result is AckResult.ACKNOWLEDGED:
            try:
                IncidentService(conn).acknowledge(incident_id, Actor(user_id, Role(role)))
            except IllegalTransitionError:  # taken between our read and the lock
                result = AckResult.ALREADY
                conn.execute(
                    "UPDATE staff_page_acks SET result = %s WHERE page_id = %s AND user_id = %s",
                    (result.value, page_id, user_id),
                )
            else:  # the escalation timer records the stop at its next poll, not its timeout
                conn.execute(
                    "UPDATE incident_escalations SET next_at = now() "
                    "WHERE incident_id = %s AND stopped_at IS NULL",
                    (incident_id,),
                )
                conn.execute("SELECT pg_notify('incident_escalations', %s)", (str(incident_id),))
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
