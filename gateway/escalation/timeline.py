"""What escalation did for one incident: tiers reached or skipped, pages, notifications.

The read model behind the ``escalation`` list of ``GET /incidents/{id}`` and the console's
timeline card. It reads, for one incident:

- the audit entries the escalation worker appends (``escalation.tier``, ``.tier_skipped``,
  ``.reminder``, ``.unreachable``, ``.stopped``): each tier reached (how many people),
  skipped (and why), and when and why escalation stopped;
- ``staff_pages``: each page, reminder and emergency instruction, to whom by role;
- ``notification_outbox`` with ``notification_attempts``: each message to a family contact
  or community worker and, once staff paging goes through the outbox (migration 0016,
  ``recipient_kind = 'staff'``), to a paged staff member: which channel, queued when,
  delivered or failed when, after how many attempts;
- ``staff_page_acks`` (migration 0016, when installed): a page acknowledged from the message
  itself, by link or SMS reply code.

Who is named by role and relation only: a staff member by role (and by display name if
the user registry has one), a contact by kind and relation ("family", "daughter"). Never a
login name, a phone number or an address: the entries may be shown to any staff member of
the site without the audited resident card.

The outbox columns of migration 0016 (``recipient_kind``, ``user_id``, ``page_id``) and a
``users.display_name`` column are read through ``to_jsonb(row)``, so the query works before
and after those migrations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from gateway.storage import escalation
from gateway.storage.escalation import EscalationStatus

__all__ = [
    "Attempt",
    "EscalationEntry",
    "EscalationStatus",
    "Recipient",
    "escalation_status",
    "escalation_timeline",
]

# Escalation audit actions and the entry kind each becomes.
_STEP_KINDS = {
    "escalation.tier": "tier",
    "escalation.tier_skipped": "tier_skipped",
    "escalation.reminder": "reminder",
    "escalation.unreachable": "unreachable",
    "escalation.stopped": "stopped",
}


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who was reached, without personal data.

    ``kind``: ``staff`` (one staff member), ``all_staff`` (every staff member of the site:
    the emergency instruction), ``family`` or ``community_worker`` (a resident's contact).
    ``role``: the staff role (duty_staff, supervisor); ``relation``: the contact's relation
    to the resident (free text such as "daughter"); ``label``: a display name from the user
    registry when it has one (never a login name).
    """

    kind: str
    role: str | None = None
    relation: str | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt: ``result`` is delivered, transient or permanent."""

    attempt: int
    time: datetime
    result: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class EscalationEntry:
    """One line of the escalation timeline.

    ``kind`` is one of:

    - ``tier``: a tier was reached (``reached`` people or contacts);
    - ``tier_skipped``: a tier had nobody to reach (``reason``);
    - ``reminder``: the current tier was paged again (``sequence``);
    - ``unreachable``: no tier reached anybody yet; tried again later;
    - ``stopped``: escalation ended (``reason``: acknowledged, cancelled, resolved, ...);
    - ``page``: a page, reminder or instruction (``page_kind``) posted for ``recipient``
      on the console (``channel`` ``console``);
    - ``notification``: a message through ``channel`` to ``recipient`` (a contact, or a
      paged staff member); ``status`` is queued, sending, retrying, delivered or failed,
      ``result_at`` when it was delivered or last tried;
    - ``page_ack``: ``recipient`` used a page's link or SMS reply code (``channel`` link or
      sms); ``status`` acknowledged, or already_acknowledged (someone had been first).
    """

    time: datetime
    kind: str
    tier: int | None = None
    tier_name: str | None = None
    audience: str | None = None
    reached: int | None = None
    reason: str | None = None
    sequence: int | None = None
    page_kind: str | None = None
    recipient: Recipient | None = None
    channel: str | None = None
    status: str | None = None
    result_at: datetime | None = None
    detail: str | None = None
    attempts: list[Attempt] = field(default_factory=list)


# Same time: steps before the pages and messages they caused.
_ORDER = {"tier": 0, "tier_skipped": 0, "reminder": 0, "unreachable": 0, "page": 1,
          "notification": 2, "page_ack": 3, "stopped": 4}  # fmt: skip


# Which step made an entry: (tier index, page sequence), or the contacts tier's first messages.
_Anchor = tuple[int | None, int | None]
_CONTACTS_TIER: _Anchor = (None, None)


def escalation_status(conn: psycopg.Connection[Any], incident_id: int) -> EscalationStatus | None:
    """The incident's escalation timer, or None when it never had one."""
    return escalation.status(conn, incident_id)


def escalation_timeline(conn: psycopg.Connection[Any], incident_id: int) -> list[EscalationEntry]:
    """Every escalation step, page and notification of the incident, oldest first.

    A tier's pages and first messages are written in the tier's transaction and stamped
    with its start, a moment before the tier's audit entry: each is sorted right after the
    step that made it (its ``time`` stays as stored).
    """
    steps = _steps(conn, incident_id)
    made_at: dict[_Anchor, datetime] = {}
    for e in steps:
        if e.kind == "tier":
            made_at.setdefault((e.tier, 0), e.time)
            if e.audience == "contacts":
                made_at.setdefault(_CONTACTS_TIER, e.time)
        elif e.kind == "reminder":
            made_at.setdefault((e.tier, e.sequence), e.time)
    anchored = [(e, None) for e in steps] + _pages(conn, incident_id)
    anchored += _notifications(conn, incident_id) + _page_acks(conn, incident_id)

    def order(item: tuple[EscalationEntry, _Anchor | None]) -> tuple[datetime, int]:
        e, anchor = item
        at = e.time if anchor is None else max(e.time, made_at.get(anchor, e.time))
        return at, _ORDER[e.kind]

    anchored.sort(key=order)
    return [e for e, _ in anchored]


def _steps(conn: psycopg.Connection[Any], incident_id: int) -> list[EscalationEntry]:
    rows = escalation.audit_steps(conn, incident_id, list(_STEP_KINDS))
    out = []
    for time, action, data in rows:
        reached = data.get("reached")
        out.append(
            EscalationEntry(
                time=time,
                kind=_STEP_KINDS[action],
                tier=data.get("tier"),
                tier_name=data.get("name"),
                audience=data.get("audience"),
                reached=None if reached is None else int(reached),
                reason=data.get("reason"),
                sequence=data.get("sequence", data.get("attempt")),
            )
        )
    return out


def _pages(
    conn: psycopg.Connection[Any], incident_id: int
) -> list[tuple[EscalationEntry, _Anchor | None]]:
    rows = escalation.pages_of(conn, incident_id)
    out: list[tuple[EscalationEntry, _Anchor | None]] = []
    for r in rows:
        if r.user_id:
            who = Recipient("staff", role=r.role, label=r.display_name)
        else:
            who = Recipient("all_staff")
        entry = EscalationEntry(
            time=r.created_at, kind="page", tier=r.tier, tier_name=r.tier_name,
            sequence=r.sequence, page_kind=r.kind, recipient=who, channel="console",
            status="posted",
        )  # fmt: skip
        out.append((entry, (r.tier, r.sequence)))
    return out


def _notifications(
    conn: psycopg.Connection[Any], incident_id: int
) -> list[tuple[EscalationEntry, _Anchor | None]]:
    attempts: dict[int, list[Attempt]] = {}
    for outbox_id, n, time, result, detail in escalation.attempts_of(conn, incident_id):
        attempts.setdefault(outbox_id, []).append(Attempt(n, time, result, detail))
    rows = escalation.notifications_of(conn, incident_id)
    out: list[tuple[EscalationEntry, _Anchor | None]] = []
    for r in rows:
        tried = attempts.get(r.id, [])
        anchor: _Anchor | None = None  # a fallback channel: queued when the previous failed
        if r.recipient_kind == "staff":
            who = Recipient("staff", role=r.staff_role, label=r.display_name)
            anchor = (r.tier, r.sequence)
        else:
            who = Recipient(r.contact_kind or "contact", relation=r.relation)
            anchor = _CONTACTS_TIER if r.channel_index == 0 else None
        status = _status(r.state, r.attempts)
        result_at = r.delivered_at or (tried[-1].time if tried else None)
        detail = r.last_error or (tried[-1].detail if tried else None)
        entry = EscalationEntry(
            time=r.created_at, kind="notification", tier=r.tier, tier_name=r.tier_name,
            sequence=r.sequence, recipient=who, channel=r.channel, status=status,
            result_at=result_at, detail=detail, attempts=tried,
        )  # fmt: skip
        out.append((entry, anchor))
    return out


def _page_acks(
    conn: psycopg.Connection[Any], incident_id: int
) -> list[tuple[EscalationEntry, _Anchor | None]]:
    rows = escalation.page_acks_of(conn, incident_id)
    out: list[tuple[EscalationEntry, _Anchor | None]] = []
    for r in rows:
        who = Recipient("staff", role=r.role, label=r.display_name)
        entry = EscalationEntry(
            time=r.used_at, kind="page_ack", tier=r.tier, tier_name=r.tier_name,
            recipient=who, channel=r.via, status=r.result,
        )  # fmt: skip
        out.append((entry, None))
    return out


def _status(state: str, attempts: int) -> str:
    """An outbox row's state as the timeline says it."""
    if state == "pending":
        return "retrying" if attempts > 0 else "queued"
    return state  # sending, delivered, failed
