"""The escalation worker: database timers move unacknowledged incidents up the ladder.

Every new incident gets a row in ``incident_escalations`` (see
:mod:`gateway.escalation.intake`), due at once. The worker claims due rows with
``FOR UPDATE SKIP LOCKED`` (several workers may run) and, **in one transaction per row**:

1. stops the escalation when the incident is no longer ``raised`` — a human acknowledged it
   (or staff cancelled it, the resident cancelled it, the system cleared it): escalation
   stops only on that, never because a notification was delivered;
2. otherwise, when the current tier timed out (or its channels all failed: ``advance_early``),
   performs the next tier that applies to the incident's priority and has someone to
   reach — staff pages for the on-duty staff or supervisors (``staff_pages``, from the duty
   roster, each with a reply code, and an outbox row for the user's first paging channel, so
   a page reaches a phone with no console open), outbox rows for the consented contacts
   (:func:`gateway.notify.enqueue_incident`),
   or the emergency-services instruction for every staff member of the site; tiers with
   nobody to reach are skipped (and audited);
3. or, when only a reminder is due, pages the current tier again;
4. advances the row (tier, tier_started_at, next_at, reminders_sent) and appends an audit
   entry.

Because the tier's notifications, the row's advance and the audit entry commit together,
a crash or restart between tiers neither loses nor repeats a tier. Times come from the
database clock (``now()``), so several gateways agree and tests can use short ladders.
Logs carry incident ids, tier names and counts only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from gateway.escalation.ladder import Audience, EscalationConfig, Ladder
from gateway.escalation.roster import DutyRole, on_duty_async
from gateway.notify.outbox import (
    ContactExhausted,
    IncidentNotice,
    StaffPage,
    contact_status,
    enqueue_incident,
    enqueue_staff_page,
    page_status,
)
from gateway.paging.tokens import new_code
from gateway.pollworker import PollingWorker
from gateway.storage import audit as audit_store
from gateway.storage import escalation, paging
from gateway.storage.escalation import Due

log = logging.getLogger(__name__)

AsyncConn = psycopg.AsyncConnection[tuple[Any, ...]]
FaultHook = Callable[[int, int], Awaitable[None]]
"""Test plug point: awaited with (incident id, tier) just before a tier's commit."""

_POSTPONE_S = 30.0


class EscalationWorker(PollingWorker):
    """Claims due escalation timers and performs their tiers (see the module docs)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConn],
        config: EscalationConfig,
        *,
        poll_interval_s: float = 1.0,
        batch_size: int = 50,
        on_enqueued: Callable[[], None] | None = None,
        before_commit: FaultHook | None = None,
        page_ttl_s: float | None = None,
        sites: Sequence[str] | None = None,
    ) -> None:
        self._pool = pool
        self._sites = sites  # a cell's sites only (gateway.cells); None: every site
        self._config = config
        # Pages go to the users' paging channels through the outbox (their link and reply
        # code valid this long); None: staff_pages rows only (the console shows them).
        self._page_ttl_s = page_ttl_s
        super().__init__(
            "escalation", poll_interval_s=poll_interval_s, batch_size=batch_size, logger=log
        )
        self._on_enqueued = on_enqueued  # e.g. OutboxWorker.wake
        self._before_commit = before_commit
        self._claimed: int | None = None  # the row being handled (for _postpone)

    async def run_once(self) -> int:
        """Handle up to ``batch_size`` due timers, one transaction each; return how many."""
        handled = 0
        enqueued = False
        while handled < self._batch_size:
            async with self._pool.connection() as conn:
                try:
                    step = await self._step(conn)
                except psycopg.OperationalError:
                    raise
                except psycopg.Error as exc:  # one bad row must not stop every escalation
                    await self._postpone(conn, exc)
                    step = False
            if step is None:
                break
            handled += 1
            enqueued = enqueued or step
        if enqueued and self._on_enqueued is not None:
            self._on_enqueued()
        return handled

    async def listen(self, conninfo: str, *, retry_s: float = 5.0) -> None:
        """Wake on ``NOTIFY incident_escalations`` (a new timer, migration 0016) until
        cancelled, so a new incident's first page does not wait for the next poll. Polling
        still covers any gap (a lost connection, a notification missed meanwhile)."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
            except psycopg.OperationalError:
                await asyncio.sleep(retry_s)
                continue
            try:
                async with conn:
                    await escalation.listen(conn)
                    self.wake()  # whatever arrived while not listening
                    async for _ in conn.notifies():
                        self.wake()
            except psycopg.OperationalError:
                await asyncio.sleep(retry_s)

    async def on_exhausted(self, exhausted: ContactExhausted) -> None:
        """Outbox hook: a contact (or a paged staff user) could not be reached on any channel.

        When the current tier is the contacts tier and no contact of the incident was
        reached or is still being tried, the next tier is due now (not at the timeout). The
        same for a staff tier whose pages all failed on every channel (a user paged without
        any channel counts as reachable: the console may show the page).
        """
        async with self._pool.connection() as conn, conn.transaction():
            running = await escalation.lock_running(conn, exhausted.incident_id)
            if running is None:
                return
            site_id, tier, incident_type = running
            ladder = self._config.ladder(site_id, incident_type)
            if not 0 <= tier < len(ladder.tiers):
                return
            audience = ladder.tiers[tier].audience
            if audience is Audience.CONTACTS and exhausted.page_id is None:
                status = await contact_status(conn, exhausted.incident_id)
            elif audience in _STAFF_AUDIENCES and exhausted.page_id is not None:
                status = await page_status(conn, exhausted.incident_id, tier)
            else:
                return
            if not status or any(s != "failed" for s in status.values()):
                return
            await escalation.advance_early(conn, exhausted.incident_id, tier)
        log.info(
            "escalation: tier unreachable on every channel, next tier early",
            extra={"incident_id": exhausted.incident_id, "tier": ladder.tiers[tier].name},
        )
        self.wake()

    # -- one timer ---------------------------------------------------------------------

    async def _step(self, conn: AsyncConn) -> bool | None:
        """Handle one due timer; ``None`` when none is due, else whether outbox rows were
        queued."""
        async with conn.transaction():
            due = await escalation.claim(conn, self._sites)
            if due is None:
                return None
            self._claimed = due.incident_id
            if due.state != "raised":
                await self._stop(conn, due)
                return False
            ladder = self._config.ladder(due.site_id, due.type)
            enqueued = await self._escalate(conn, due, ladder)
            if self._before_commit is not None:
                await self._before_commit(due.incident_id, due.tier)
        return enqueued

    async def _escalate(self, conn: AsyncConn, due: Due, ladder: Ladder) -> bool:
        current = min(due.tier, len(ladder.tiers) - 1)
        timed_out = (
            current < 0
            or due.advance_early
            or due.tier_started_at is None
            or due.now >= due.tier_started_at + _seconds(ladder.timeout_s(current, due.priority))
        )
        if timed_out:
            index = current
            while (nxt := ladder.next_tier(index, due.priority)) is not None:
                reached, enqueued = await self._perform(conn, due, ladder, nxt, 0)
                if reached:
                    next_at = _next_at(ladder, nxt, due.priority, due.now, due.now)
                    await escalation.advance(conn, due.incident_id, nxt, due.now, next_at)
                    tier = ladder.tiers[nxt]
                    await _audit(conn, due.incident_id, "escalation.tier", {
                        "tier": nxt, "name": tier.name, "audience": tier.audience.value,
                        "reached": reached, "early": due.advance_early,
                        "next_at": next_at.isoformat(),
                    })  # fmt: skip
                    log.info(
                        "escalation tier reached",
                        extra={"incident_id": due.incident_id, "tier": nxt, "tier_name": tier.name,
                               "reached": reached, "early": due.advance_early},
                    )  # fmt: skip
                    return enqueued
                await _audit(conn, due.incident_id, "escalation.tier_skipped",
                             {"tier": nxt, "name": ladder.tiers[nxt].name,
                              "reason": "nobody to reach"})  # fmt: skip
                log.info(
                    "escalation tier skipped: nobody to reach",
                    extra={"incident_id": due.incident_id, "tier_name": ladder.tiers[nxt].name},
                )
                index = nxt
            if current < 0:
                return await self._unreachable(conn, due, ladder)
        # A reminder at the current tier (also: the ladder's end, repeated until acknowledged).
        sequence = due.reminders_sent + 1
        reached, enqueued = await self._perform(conn, due, ladder, current, sequence)
        started = due.tier_started_at or due.now
        next_at = _next_at(ladder, current, due.priority, started, due.now)
        await escalation.remind(conn, due.incident_id, next_at)
        await _audit(conn, due.incident_id, "escalation.reminder", {
            "tier": current, "name": ladder.tiers[current].name, "sequence": sequence,
            "reached": reached, "next_at": next_at.isoformat(),
        })  # fmt: skip
        log.info(
            "escalation reminder",
            extra={"incident_id": due.incident_id, "tier_name": ladder.tiers[current].name,
                   "sequence": sequence, "reached": reached},
        )  # fmt: skip
        return enqueued

    async def _postpone(self, conn: AsyncConn, exc: psycopg.Error) -> None:
        """The row's transaction failed on a data error: retry it later, keep the others."""
        incident_id, self._claimed = self._claimed, None
        log.error(
            "escalation step failed; retrying the row later",
            extra={"incident_id": incident_id, "error": type(exc).__name__},
        )
        if incident_id is None:
            raise exc  # the claim itself failed: nothing to set aside
        await escalation.postpone(conn, incident_id, _POSTPONE_S)

    async def _unreachable(self, conn: AsyncConn, due: Due, ladder: Ladder) -> bool:
        """No tier reached anyone yet (e.g. nobody on shift): keep trying, never give up.

        The timer stays before the first tier and comes back at that tier's pace; only an
        incident that no tier applies to at all (by priority) stops escalating.
        """
        first = ladder.next_tier(-1, due.priority)
        if first is None:
            await escalation.stop(conn, due.incident_id, "no applicable tier")
            await _audit(conn, due.incident_id, "escalation.stopped",
                         {"reason": "no applicable tier"})  # fmt: skip
            log.info("escalation: no tier applies", extra={"incident_id": due.incident_id})
            return False
        next_at = _next_at(ladder, first, due.priority, due.now, due.now)
        await escalation.remind(conn, due.incident_id, next_at)
        data = {"attempt": due.reminders_sent + 1, "next_at": next_at.isoformat()}
        await _audit(conn, due.incident_id, "escalation.unreachable", data)
        log.error(
            "escalation: no tier reaches anyone, retrying",
            extra={"incident_id": due.incident_id, "attempt": due.reminders_sent + 1},
        )
        return False

    async def _perform(
        self, conn: AsyncConn, due: Due, ladder: Ladder, index: int, sequence: int
    ) -> tuple[int, bool]:
        """Do tier ``index``'s action; return (how many were reached, outbox rows queued)."""
        tier = ladder.tiers[index]
        if tier.audience in (Audience.DUTY_STAFF, Audience.SUPERVISOR):
            role = DutyRole(tier.audience.value)
            users = await on_duty_async(conn, due.site_id, role, due.now)
            kind = "page" if sequence == 0 else "reminder"
            text = (
                f"incident {due.incident_id} ({due.type}, priority {due.priority}) is not "
                f"acknowledged: please acknowledge [{tier.name}]"
            )
            queued = False
            for user_id in users:
                code = new_code()
                page_id = await paging.insert_page(
                    conn, due.incident_id, due.site_id, tier=index, tier_name=tier.name,
                    sequence=sequence, user_id=user_id, role=role.value, kind=kind, message=text,
                    ack_code=code,
                )  # fmt: skip
                if page_id is not None and self._page_ttl_s is not None:
                    page = StaffPage(
                        page_id, due.incident_id, user_id, tier.name, kind, code,
                        due.now + _seconds(self._page_ttl_s),
                    )  # fmt: skip
                    queued = (await enqueue_staff_page(conn, page)) is not None or queued
            return len(users), queued
        if tier.audience is Audience.EMERGENCY:
            assert tier.instruction is not None
            text = f"incident {due.incident_id} ({due.type}): {tier.instruction}"
            code = new_code()
            page_id = await paging.insert_page(
                conn, due.incident_id, due.site_id, tier=index, tier_name=tier.name,
                sequence=sequence, user_id="", role="all", kind="instruction", message=text,
                ack_code=code,
            )  # fmt: skip
            queued = False
            if page_id is not None and self._page_ttl_s is not None:
                # Told to everyone on shift too, on their own channels (one chain each).
                everyone: list[str] = []
                for duty in (DutyRole.DUTY_STAFF, DutyRole.SUPERVISOR):
                    for user_id in await on_duty_async(conn, due.site_id, duty, due.now):
                        if user_id not in everyone:
                            everyone.append(user_id)
                for user_id in everyone:
                    page = StaffPage(
                        page_id, due.incident_id, user_id, tier.name, "instruction", code,
                        due.now + _seconds(self._page_ttl_s), instruction=tier.instruction,
                    )  # fmt: skip
                    queued = (await enqueue_staff_page(conn, page)) is not None or queued
            return 1, queued
        # Contacts: care incidents only (a device's trouble is the staff's business), queued
        # once per incident (the outbox retries and falls back by itself).
        if due.technical or due.resident_id is None or sequence > 0:
            return 0, False
        result = await enqueue_incident(
            conn, IncidentNotice(due.incident_id, due.resident_id, due.type, due.raised_at)
        )
        return len(result.outbox_ids), bool(result.outbox_ids)

    async def _stop(self, conn: AsyncConn, due: Due) -> None:
        reason = due.state  # acknowledged, dispatched, cancelled, resolved, ...
        await escalation.stop(conn, due.incident_id, reason)
        await _audit(conn, due.incident_id, "escalation.stopped",
                     {"reason": reason, "tier": due.tier})  # fmt: skip
        log.info(
            "escalation stopped",
            extra={"incident_id": due.incident_id, "reason": reason, "tier": due.tier},
        )


_STAFF_AUDIENCES = frozenset({Audience.DUTY_STAFF, Audience.SUPERVISOR})


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _next_at(
    ladder: Ladder, index: int, priority: int, started: datetime, now: datetime
) -> datetime:
    """The tier's next reminder or its timeout, whichever comes first (always after ``now``)."""
    timeout_at = started + _seconds(ladder.timeout_s(index, priority))
    reminder = ladder.reminder_s(index, priority)
    next_at = timeout_at if reminder is None else min(timeout_at, now + _seconds(reminder))
    if next_at <= now:  # past the timeout with no further tier: repeat at the tier's pace
        next_at = now + _seconds(
            reminder if reminder is not None else ladder.timeout_s(index, priority)
        )
    return next_at


async def _audit(conn: AsyncConn, incident_id: int, action: str, data: dict[str, Any]) -> None:
    await audit_store.append_async(conn, "system", action, f"incident:{incident_id}", data)
