"""Overdue notices to supervisors through the outbox (issue 13): overdue visits and overdue
re-assessments, once per item, supervisor and local day.

The visits sweep (:class:`gateway.visits.worker.VisitsSweeper`) calls
:func:`enqueue_overdue_notices` after :func:`gateway.visits.service.sweep`. Each overdue
item (a phone or home visit past its due date; a re-assessment past its ``next_due``: an
elder never assessed is counted by the district figures, not noticed every day) is queued
as a ``visit_overdue`` outbox row for every active supervisor of the site and district
supervisor of its district who has a staff channel, with the key
``visit_overdue:<resident>:<item>:<due date>:<local day>:<user>``: two processes sweeping at
once (failover) or a sweep every few minutes queue it once a day. The text is zh-CN and
names the elder and the bed by code only (一人一床一码); logs carry counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg

from gateway import audit
from gateway.storage import messages as outbox_store
from gateway.storage import visits as store
from gateway.visits.config import VisitsConfig
from gateway.visits.service import due_for, local_date

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
KIND = "visit_overdue"
ITEM_LABELS = {"phone": "电话探访", "home": "上门探访", "reassessment": "能力复评"}


@dataclass(frozen=True, slots=True)
class OverdueItem:
    resident_id: str
    site_id: str
    item: str  # phone | home | reassessment
    due_on: date
    today: date
    elder_code: str | None
    bed_code: str | None

    @property
    def days_overdue(self) -> int:
        return (self.today - self.due_on).days


def overdue_items(cfg: VisitsConfig, card: dict[str, Any], now: datetime) -> list[OverdueItem]:
    """The overdue visits and re-assessment of one resident card."""
    today = local_date(now, int(card["utc_offset_s"]))
    out = []

    def item(kind: str, due_on: date) -> OverdueItem:
        return OverdueItem(
            card["resident_id"],
            card["site_id"],
            kind,
            due_on,
            today,
            card["elder_code"],
            card["bed_code"],
        )

    for visit in due_for(cfg, card, now):
        if visit.overdue:
            out.append(item(visit.kind, visit.due_on))
    next_due = card["next_due"]
    if next_due is not None and next_due < today:
        out.append(item("reassessment", next_due))
    return out


def render(item: OverdueItem) -> dict[str, Any]:
    """The notice (zh-CN, codes only)."""
    label = ITEM_LABELS[item.item]
    who = f"长者 {item.elder_code or '-'}（床位 {item.bed_code or '-'}）"
    body = (
        f"{who}的{label}应于 {item.due_on.isoformat()} 完成，已逾期 "
        f"{item.days_overdue} 天。请安排跟进。"
    )
    return {
        "title": f"【安居守护】{label}逾期提醒",
        "body": body,
        "fields": {
            "item": item.item,
            "elder_code": item.elder_code,
            "bed_code": item.bed_code,
            "site_id": item.site_id,
            "due_on": item.due_on.isoformat(),
            "days_overdue": item.days_overdue,
        },
        "sms": {
            "place": (item.bed_code or item.elder_code or "-")[:35],
            "time": item.due_on.isoformat(),
            "type": f"{label}逾期",
        },
    }


def enqueue_overdue_notices(
    conn: Conn,
    cfg: VisitsConfig,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sites: Sequence[str] | None = None,
) -> int:
    """Queue today's notices of every overdue item (idempotent); how many rows were new.
    ``sites``: only those sites' elders (a cell's gateway, :mod:`gateway.cells`)."""
    now = clock()
    queued = 0
    supervisors: dict[str, list[tuple[str, list[tuple[int, str]]]]] = {}
    for card in store.resident_cards(conn, sites=sites):
        items = overdue_items(cfg, card, now)
        if not items:
            continue
        site = card["site_id"]
        if site not in supervisors:
            supervisors[site] = [
                (user, chans)
                for user in outbox_store.site_supervisors(conn, site)
                if (chans := outbox_store.user_channels(conn, user))
            ]
        for item in items:
            queued += _enqueue_item(conn, item, supervisors[site])
    if queued:
        log.info("overdue notices queued", extra={"queued": queued})
    return queued


def _enqueue_item(
    conn: Conn, item: OverdueItem, users: list[tuple[str, list[tuple[int, str]]]]
) -> int:
    subject = f"resident:{item.resident_id}/{item.item}/{item.due_on.isoformat()}"
    message = render(item)
    new: list[str] = []
    with conn.transaction():
        for user, channels in users:
            key = (
                f"{KIND}:{item.resident_id}:{item.item}:{item.due_on.isoformat()}:"
                f"{item.today.isoformat()}:{user}"
            )
            row = outbox_store.insert_message(
                conn,
                kind=KIND,
                subject=subject,
                dedupe_key=key,
                recipient_kind="user",
                user_id=user,
                channel=channels[0][1],
                payload={
                    "message": message,
                    "channels": [name for _, name in channels],
                    "channel_ids": [cid for cid, _ in channels],
                },
            )
            if row is not None:
                new.append(user)
        if new:
            audit.append(
                conn,
                "system",
                "visit.overdue_notice_queued",
                f"resident:{item.resident_id}",
                {
                    "item": item.item,
                    "due_on": item.due_on.isoformat(),
                    "day": item.today.isoformat(),
                    "supervisors": new,
                },
            )
    return len(new)
