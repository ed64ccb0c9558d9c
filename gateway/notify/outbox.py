"""The notification outbox: enqueue per consented contact, deliver with retries, fall back.

Flow for one incident and one contact whose ``channels`` are ``[c0, c1, …]``:

1. :func:`enqueue_incident` (inside the caller's transaction: a transactional outbox)
   inserts one ``pending`` row for ``c0``. Only contacts with ``consent_notify`` are
   considered, and family members only when the resident consents to family incident
   notices (``residents.consent_family_incidents``). The row holds redacted facts (bed code,
   room, incident type, time) and the channel list, never a name or an address.
2. :class:`OutboxWorker` claims due rows with ``FOR UPDATE SKIP LOCKED`` (several workers
   may run), reads the address and (for private family channels only) the resident's name
   from the registry, renders, sends, and records the attempt in ``notification_attempts``.
3. Delivered: done. Transient failure: retried with exponential backoff and jitter until
   ``max_attempts`` or ``channel_deadline_s`` after the row was queued, whichever comes
   first. Permanent failure, or transient failures exhausted: the row is
   ``failed`` and a row for the next channel ``c1`` is inserted in the same transaction, due
   at once. When no channel is left, ``on_exhausted`` is awaited (after commit) so the
   escalation logic learns at once that the contact could not be reached.

Staff pages (:func:`enqueue_staff_page`, called by the escalation worker in the tier's
transaction) use the same table and attempt log with ``recipient_kind = 'staff'``, the paged
``user_id`` and the ``staff_pages`` row (``page_id``); their channel list is the user's
``staff_channels`` (ids in the payload, addresses read at send time). A page whose incident
is no longer ``raised`` when its turn comes is not sent (recorded as such, chain stopped).
When every channel of a page failed, ``on_exhausted`` is awaited as for a contact.

A group bot (``broadcast`` channel) followed by several contacts is posted once per
incident: the other contacts' rows are marked delivered ("group already notified").
:func:`contact_status` is the durable view of the same outcomes for escalation after a
restart. Call :meth:`OutboxWorker.wake` after the enqueuing transaction commits.

Delivery is at least once: a worker that dies mid-send leaves a ``sending`` row whose lease
runs out and is claimed again; receivers de-duplicate by notification id.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from gateway import l10n
from gateway.facts import DEFAULT_UTC_OFFSET_S_INT
from gateway.notify.attempt import Attempt, RetryPolicy, attempt
from gateway.notify.channels import DeliveryResult, Notification, Notifier, Outcome
from gateway.notify.messages import (
    Audience,
    IncidentFacts,
    PageFacts,
    page_params,
    render,
    render_page,
    sms_params,
)
from gateway.notify.settings import CHANNEL_NAME, NotifySettings
from gateway.pollworker import PollingWorker
from gateway.storage import incidents, outbox, paging
from gateway.storage.outbox import Claimed, Recipient, contact_status, page_status

__all__ = [
    "AttemptObserver",
    "ContactExhausted",
    "EnqueueResult",
    "ExhaustedHook",
    "IncidentNotice",
    "OutboxWorker",
    "PageLink",
    "StaffPage",
    "backoff_delay",
    "contact_status",
    "enqueue_incident",
    "enqueue_staff_page",
    "page_status",
    "usable_channels",
]

log = logging.getLogger(__name__)

AsyncConn = psycopg.AsyncConnection[tuple[Any, ...]]
_CONSENT_WITHDRAWN = "consent withdrawn"  # stops the contact's chain without a report
_NOT_NEEDED = "not sent: incident no longer raised"  # stops a staff page's chain
_STOPPERS = frozenset({_CONSENT_WITHDRAWN, _NOT_NEEDED})
PageLink = Callable[[int, str, int], str | None]
"""Builds a page's acknowledgement link from (page id, user id, expiry unix s), or None."""


@dataclass(frozen=True, slots=True)
class IncidentNotice:
    """What the workflow hands over when an incident must be notified."""

    incident_id: int
    resident_id: str
    incident_type: str
    raised_at: datetime


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """Rows created and consented contacts that have no usable channel at all."""

    outbox_ids: tuple[int, ...]
    unreachable_contacts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ContactExhausted:
    """Every channel of a contact (or of a staff page) failed for an incident (passed to
    ``on_exhausted``); ``contact_id`` is None and ``user_id``/``page_id`` are set for a page."""

    incident_id: int
    contact_id: str | None
    channels: tuple[str, ...]
    last_detail: str
    user_id: str | None = None
    page_id: int | None = None


_GROUP_DONE = "group already notified"
ExhaustedHook = Callable[[ContactExhausted], Awaitable[None]]
# Called after every attempt with (channel kind, outcome, duration in seconds): for metrics
# (label by channel *kind* such as "webhook", never by contact or resident).
AttemptObserver = Callable[[str, Outcome, float], None]


def usable_channels(raw: Any) -> list[str]:
    """The contact's channel preferences, in order, valid names only, without duplicates."""
    out: list[str] = []
    if not isinstance(raw, list):
        return out
    for item in raw:
        if isinstance(item, str) and CHANNEL_NAME.fullmatch(item) and item not in out:
            out.append(item)
    return out


async def enqueue_incident(conn: AsyncConn, notice: IncidentNotice) -> EnqueueResult:
    """Queue ``notice`` for every consented contact's first channel (idempotent).

    Runs on the caller's connection, so it commits (or not) with the caller's transaction.
    """
    ids: list[int] = []
    unreachable: list[str] = []
    details: dict[str, Any] | None = None
    for contact in await outbox.consented_contacts(conn, notice.resident_id):
        channels = usable_channels(contact.channels)
        if not channels:
            unreachable.append(contact.contact_id)
            continue
        if details is None:
            details = await outbox.incident_details(conn, notice.incident_id)
        payload = {
            "facts": {
                "incident_type": notice.incident_type,
                "resident_id": notice.resident_id,
                "bed_code": contact.bed_code,
                "room": contact.room,
                "raised_at": notice.raised_at.isoformat(),
                "utc_offset_s": contact.utc_offset_s,
                "details": details,
            },
            "channels": channels,
        }
        row_id = await outbox.insert_contact_row(
            conn, notice.incident_id, contact.contact_id, channels[0], index=0, payload=payload
        )
        if row_id is not None:
            ids.append(row_id)
    log.info(
        "notifications queued",
        extra={
            "incident_id": notice.incident_id,
            "queued": len(ids),
            "unreachable_contacts": unreachable,
        },
    )
    return EnqueueResult(tuple(ids), tuple(unreachable))


@dataclass(frozen=True, slots=True)
class StaffPage:
    """A ``staff_pages`` row to deliver to its user's channels."""

    page_id: int
    incident_id: int
    user_id: str
    tier_name: str
    kind: str  # page | reminder | instruction
    ack_code: str | None
    expires_at: datetime  # when its link and reply code stop working
    instruction: str | None = None  # the emergency tier's instruction (e.g. call 120)


async def enqueue_staff_page(conn: AsyncConn, page: StaffPage) -> int | None:
    """Queue ``page`` on its user's first channel; the outbox row id, or None when the user
    has no channel (the console still shows the page). Runs in the caller's transaction."""
    channels = await paging.paging_channels(conn, page.user_id)
    if not channels:
        return None
    place = await outbox.incident_place(conn, page.incident_id)
    if place is None:
        return None
    payload = {
        "facts": {
            "incident_type": place.incident_type,
            "bed_code": place.bed_code,
            "room": place.room,
            "raised_at": place.raised_at.isoformat(),
            "utc_offset_s": place.utc_offset_s,
            "details": place.details,
        },
        "channels": [name for _, name in channels],
        "staff_channel_ids": [cid for cid, _ in channels],
        "page": {
            "tier_name": page.tier_name,
            "kind": page.kind,
            "instruction": page.instruction,
            "code": page.ack_code,
            "expires_at": int(page.expires_at.timestamp()),
        },
    }
    return await outbox.insert_staff_row(
        conn, page.incident_id, page.user_id, page.page_id, channels[0][1], index=0,
        payload=payload,
    )  # fmt: skip


def backoff_delay(attempt: int, settings: NotifySettings, rng: random.Random) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential, capped, jittered."""
    return RetryPolicy.of(settings).delay(attempt, rng)


class OutboxWorker(PollingWorker):
    """Claims due outbox rows, delivers them through ``notifiers`` and records attempts."""

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConn],
        notifiers: Mapping[str, Notifier],
        settings: NotifySettings,
        *,
        on_exhausted: ExhaustedHook | None = None,
        on_attempt: AttemptObserver | None = None,
        rng: random.Random | None = None,
        page_link: PageLink | None = None,
        sites: Sequence[str] | None = None,
    ) -> None:
        self._pool = pool
        self._sites = sites  # a cell's sites only (gateway.cells); None: every site
        self._page_link = page_link
        self._notifiers = dict(notifiers)
        self._settings = settings
        super().__init__(
            "notification outbox",
            poll_interval_s=settings.poll_interval_s,
            batch_size=settings.batch_size,
            logger=log,
        )
        self._on_exhausted = on_exhausted
        self._on_attempt = on_attempt
        self._rng = rng or random.Random()
        self._policy = RetryPolicy.of(settings)

    async def run_once(self) -> int:
        """Claim one batch of due rows and process it; return how many were claimed."""
        claimed = await self._claim()
        if not claimed:
            return 0
        recipients = await self._recipients({c.contact_id for c in claimed if c.contact_id})
        semaphore = asyncio.Semaphore(self._settings.concurrency)
        # Rows of several contacts may share one group channel for the same incident: they
        # go one after the other so that the group is posted once (see _deliver).
        shared: defaultdict[tuple[int, str], asyncio.Lock] = defaultdict(asyncio.Lock)

        async def one(item: Claimed) -> None:
            async with semaphore:
                notifier = self._notifiers.get(item.channel)
                if notifier is not None and notifier.broadcast and not item.staff:
                    async with shared[(item.incident_id, item.channel)]:
                        await self._process(item, recipients.get(item.contact_id or ""))
                else:
                    await self._process(item, recipients.get(item.contact_id or ""))

        outcomes = await asyncio.gather(*(one(item) for item in claimed), return_exceptions=True)
        for outcome in outcomes:
            # A row whose result could not be recorded stays 'sending' until its lease runs
            # out and is then sent again (at least once). Database errors reach run().
            if isinstance(outcome, BaseException):
                raise outcome
        return len(claimed)

    async def _claim(self) -> list[Claimed]:
        async with self._pool.connection() as conn:
            return await outbox.claim(
                conn, self._settings.batch_size, self._settings.lease_s, self._sites
            )

    async def _recipients(self, contact_ids: set[str]) -> dict[str, Recipient]:
        async with self._pool.connection() as conn:
            return await outbox.recipients(conn, contact_ids)

    def _message(self, item: Claimed, notifier: Notifier, recipient: Recipient) -> Notification:
        family_ok = recipient.kind == "family" and recipient.consent_family_incidents
        if notifier.private and family_ok:
            audience = Audience.PRIVATE_FAMILY
        elif notifier.private:
            audience = Audience.PRIVATE
        else:
            audience = Audience.GROUP
        name = recipient.resident_name if audience is Audience.PRIVATE_FAMILY else None
        facts = self._facts(item, name)
        lang = l10n.language(recipient.language)
        address = {
            "email": recipient.email,
            "phone": recipient.phone,
            "openid": recipient.openid,
        }.get(notifier.address_kind or "")
        return Notification(
            notification_id=item.outbox_id,
            incident_id=item.incident_id,
            contact_id=item.contact_id,
            channel=item.channel,
            message=render(facts, audience, lang),
            sms_params=sms_params(facts),  # the approved template's language (zh-CN)
            address=address,
        )

    async def _deliver_page(self, item: Claimed) -> DeliveryResult:
        """A staff page on its user's channel number ``channel_index``."""
        ids = item.payload.get("staff_channel_ids", [])
        page = item.payload.get("page", {})
        if item.page_id is None or item.user_id is None or item.channel_index >= len(ids):
            return DeliveryResult.permanent("page has no such channel")
        async with self._pool.connection() as conn:
            target = await paging.page_target(conn, item.incident_id, ids[item.channel_index])
            if target is None:  # the channel was removed since: is the page still needed?
                current = await incidents.state_async(conn, item.incident_id)
                if current is not None and current != "raised":
                    return DeliveryResult.permanent(_NOT_NEEDED)
                return DeliveryResult.permanent("channel removed")
        address, active, state = target.address, target.user_active, target.incident_state
        lang = l10n.language(target.language)
        if state != "raised":
            return DeliveryResult.permanent(_NOT_NEEDED)
        if not active:
            return DeliveryResult.permanent("user inactive")
        notifier = self._notifiers.get(item.channel)
        if notifier is None:
            return DeliveryResult.permanent("channel not configured")
        expires = int(page.get("expires_at", 0))
        link = self._page_link(item.page_id, item.user_id, expires) if self._page_link else None
        code = page.get("code")
        facts = self._facts(item, None)
        instruction = page.get("instruction")
        page_facts = PageFacts(
            tier_name=str(page.get("tier_name", "")), kind=str(page.get("kind", "page")),
            code=None if code is None else str(code), link=link,
            instruction=None if instruction is None else str(instruction),
        )  # fmt: skip
        message = Notification(
            notification_id=item.outbox_id,
            incident_id=item.incident_id,
            contact_id=None,
            channel=item.channel,
            message=render_page(facts, page_facts, lang),
            sms_params=page_params(facts, page_facts),  # the template's language (zh-CN)
            address=address,
            recipient_kind="staff",
            user_id=item.user_id,
            page_id=item.page_id,
        )
        if notifier.address_kind is not None and not message.address:
            return DeliveryResult.permanent(f"channel has no {notifier.address_kind}")
        return await notifier.send(message)

    @staticmethod
    def _facts(item: Claimed, resident_name: str | None) -> IncidentFacts:
        facts_raw = item.payload.get("facts", {})
        details = facts_raw.get("details")
        return IncidentFacts(
            incident_id=item.incident_id,
            incident_type=str(facts_raw.get("incident_type", "unknown")),
            bed_code=facts_raw.get("bed_code"),
            room=facts_raw.get("room"),
            raised_at=datetime.fromisoformat(str(facts_raw["raised_at"])),
            resident_name=resident_name,
            utc_offset_s=int(facts_raw.get("utc_offset_s", DEFAULT_UTC_OFFSET_S_INT)),
            details=details if isinstance(details, dict) else {},
        )

    async def _deliver(self, item: Claimed, recipient: Recipient | None) -> DeliveryResult:
        if item.staff:
            return await self._deliver_page(item)
        if recipient is None or not recipient.consent_notify:
            return DeliveryResult.permanent(_CONSENT_WITHDRAWN)
        is_family = recipient.kind == "family"
        if is_family and not recipient.consent_family_incidents:
            return DeliveryResult.permanent(_CONSENT_WITHDRAWN)
        notifier = self._notifiers.get(item.channel)
        if notifier is None:
            return DeliveryResult.permanent("channel not configured")
        message = self._message(item, notifier, recipient)
        if notifier.address_kind is not None and not message.address:
            return DeliveryResult.permanent(f"contact has no {notifier.address_kind}")
        if notifier.broadcast and await self._group_already_notified(item):
            return DeliveryResult.delivered(_GROUP_DONE)
        return await notifier.send(message)

    async def _group_already_notified(self, item: Claimed) -> bool:
        """Whether another contact's row already posted this incident to this group."""
        async with self._pool.connection() as conn:
            return await outbox.group_done(conn, item.incident_id, item.channel, item.outbox_id)

    async def _process(self, item: Claimed, recipient: Recipient | None) -> None:
        def raised(exc: Exception) -> DeliveryResult:
            # No traceback: an adapter's exception text may quote an address.
            log.error(
                "notifier raised",
                extra={
                    "outbox_id": item.outbox_id,
                    "channel": item.channel,
                    "error": type(exc).__name__,
                },
            )
            return DeliveryResult.transient(f"adapter error: {type(exc).__name__}")

        async def record(conn: AsyncConn, result: DeliveryResult, duration_ms: int) -> None:
            await outbox.record_attempt(
                conn, item, result.outcome.value, result.detail, duration_ms
            )

        channels = [str(c) for c in item.payload.get("channels", [item.channel])]

        async def follow_up(
            conn: AsyncConn, result: DeliveryResult, retry: bool
        ) -> ContactExhausted | None:
            if result.ok or retry or result.detail in _STOPPERS:
                return None
            if await self._next_channel(conn, item, channels) is not None:
                return None
            return ContactExhausted(
                item.incident_id, item.contact_id, tuple(channels), result.detail,
                user_id=item.user_id, page_id=item.page_id,
            )  # fmt: skip

        # A withdrawn consent or a page no longer needed ends the chain: no retry, no report.
        done = await attempt(
            self._pool, item, lambda: self._deliver(item, recipient), policy=self._policy,
            rng=self._rng, record=record, follow_up=follow_up, on_raise=raised,
            stop=lambda result: result.detail in _STOPPERS,
        )  # fmt: skip
        self._log_attempt(item, done)
        if self._on_attempt is not None:
            try:
                self._on_attempt(item.channel.split(":")[0], done.result.outcome, done.duration_s)
            except Exception:
                log.exception("on_attempt observer failed", extra={"channel": item.channel})
        exhausted = done.follow_up
        if exhausted is not None and self._on_exhausted is not None:
            try:
                await self._on_exhausted(exhausted)
            except Exception:
                log.exception(
                    "on_exhausted hook failed",
                    extra={"incident_id": item.incident_id, "contact_id": item.contact_id},
                )

    @staticmethod
    def _log_attempt(item: Claimed, done: Attempt[ContactExhausted | None]) -> None:
        extra = {
            "outbox_id": item.outbox_id,
            "incident_id": item.incident_id,
            "contact_id": item.contact_id,
            "user_id": item.user_id,
            "channel": item.channel,
            "attempt": item.attempt,
            "detail": done.result.detail,
            "duration_ms": done.duration_ms,
        }
        if not done.kept:
            # Our lease ran out and another worker owns the row now; it decides.
            log.warning("notification lease lost", extra=extra)
        elif done.result.ok:
            log.info("notification delivered", extra=extra)
        elif done.retry:
            log.warning("notification attempt failed, will retry", extra=extra)
        elif done.follow_up is not None:
            log.warning("notification failed on every channel of the contact", extra=extra)
        else:
            log.warning("notification channel failed", extra=extra)

    async def _next_channel(
        self, conn: AsyncConn, item: Claimed, channels: Sequence[str]
    ) -> int | None:
        """Queue the contact's next channel (due now); ``None`` when there is none left."""
        for index in range(item.channel_index + 1, len(channels)):
            if item.staff:
                row_id = await outbox.insert_staff_row(
                    conn, item.incident_id, item.user_id, item.page_id, channels[index],
                    index=index, payload=item.payload,
                )  # fmt: skip
            else:
                row_id = await outbox.insert_contact_row(
                    conn, item.incident_id, item.contact_id, channels[index], index=index,
                    payload=item.payload,
                )  # fmt: skip
            if row_id is not None:
                return row_id
        return None
