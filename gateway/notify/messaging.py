"""The outbox's worker for messages not tied to an incident (migration 0032).

Rows of ``notification_outbox`` with a ``kind`` other than ``incident`` are queued with an
idempotency key (``dedupe_key``: queuing twice, or from two processes, makes one message)
by :func:`gateway.storage.messages.insert_message`, and delivered here by the handler of
their kind (:class:`MessageHandler`): an overdue-visit notice to a supervisor's staff
channels (:class:`UserNoticeHandler`), the monthly platform push
(:class:`gateway.platform.push.PlatformPushHandler`).

Same life cycle as the incident outbox (:mod:`gateway.notify.outbox`), whose rows this
worker never takes, and the same attempt step (:mod:`gateway.notify.attempt`): claim with
``FOR UPDATE SKIP LOCKED`` and a lease (several workers, a crashed worker's row is taken
again after its lease), one ``notification_attempts`` row per attempt, transient failures
retried with exponential backoff and jitter up to the handler's :class:`RetryPolicy`, then
``failed`` (the dead letter, kept with its last error); a user's message moves on to their
next channel. A handler with an ``audit_action`` has every attempt's result appended to the
audit log in the attempt's transaction.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any, Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool

from gateway.notify.attempt import RetryPolicy, attempt
from gateway.notify.channels import DeliveryResult, Notification, Notifier
from gateway.notify.messages import RenderedMessage
from gateway.pollworker import PollingWorker
from gateway.storage import audit as audit_store
from gateway.storage import messages as store
from gateway.storage.messages import Message

__all__ = ["MessageHandler", "MessageWorker", "RetryPolicy", "UserNoticeHandler"]

log = logging.getLogger(__name__)

AsyncConn = psycopg.AsyncConnection[Any]


class MessageHandler(Protocol):
    """Delivers the messages of one kind; never raises for a delivery failure."""

    @property
    def retry(self) -> RetryPolicy: ...

    @property
    def audit_action(self) -> str | None:
        """Audit every attempt under this action (None: the attempt log only)."""
        ...

    async def send(self, item: Message) -> DeliveryResult: ...


class UserNoticeHandler:
    """A notice to a staff user (e.g. an overdue visit to a supervisor) on their staff
    channels, in order; the rendered text is in the payload (codes only, never a name)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        notifiers: Mapping[str, Notifier],
        retry: RetryPolicy,
        *,
        audit_action: str | None = None,
    ) -> None:
        self._pool = pool
        self._notifiers = dict(notifiers)
        self._retry = retry
        self._audit_action = audit_action

    @property
    def retry(self) -> RetryPolicy:
        return self._retry

    @property
    def audit_action(self) -> str | None:
        return self._audit_action

    async def send(self, item: Message) -> DeliveryResult:
        ids = item.payload.get("channel_ids", [])
        if item.user_id is None or item.channel_index >= len(ids):
            return DeliveryResult.permanent("no such channel")
        async with self._pool.connection() as conn:
            target = await store.channel_target(conn, int(ids[item.channel_index]), item.user_id)
        if target is None:
            return DeliveryResult.permanent("channel removed")
        address, active = target
        if not active:
            return DeliveryResult.permanent("user inactive")
        notifier = self._notifiers.get(item.channel)
        if notifier is None:
            return DeliveryResult.permanent("channel not configured")
        if notifier.address_kind is not None and not address:
            return DeliveryResult.permanent(f"channel has no {notifier.address_kind}")
        raw = item.payload.get("message", {})
        message = Notification(
            notification_id=item.outbox_id,
            incident_id=0,  # not an incident: recipient_kind "user" tells adapters so
            contact_id=None,
            channel=item.channel,
            message=RenderedMessage(
                str(raw.get("title", "")), str(raw.get("body", "")), dict(raw.get("fields", {}))
            ),
            sms_params={str(k): str(v) for k, v in dict(raw.get("sms", {})).items()},
            address=address,
            recipient_kind="user",
            user_id=item.user_id,
        )
        return await notifier.send(message)


class MessageWorker(PollingWorker):
    """Claims due non-incident rows of the kinds it has a handler for and delivers them."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        handlers: Mapping[str, MessageHandler],
        *,
        poll_interval_s: float = 5.0,
        batch_size: int = 20,
        lease_s: float = 120.0,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            "message outbox", poll_interval_s=poll_interval_s, batch_size=batch_size, logger=log
        )
        self._pool = pool
        self._handlers = dict(handlers)
        self._lease_s = lease_s
        self._rng = rng or random.Random()

    async def run_once(self) -> int:
        """Claim one batch of due rows and deliver them one by one; how many were claimed."""
        if not self._handlers:
            return 0
        async with self._pool.connection() as conn:
            claimed = await store.claim(
                conn, sorted(self._handlers), self._batch_size, self._lease_s
            )
        for item in claimed:
            await self._process(item)
        return len(claimed)

    async def _process(self, item: Message) -> None:
        handler = self._handlers[item.kind]

        def raised(exc: Exception) -> DeliveryResult:
            log.error(
                "message handler raised",
                extra={"outbox_id": item.outbox_id, "kind": item.kind, "error": type(exc).__name__},
            )
            return DeliveryResult.transient(f"handler error: {type(exc).__name__}")

        async def record(conn: AsyncConn, result: DeliveryResult, duration_ms: int) -> None:
            await store.record_attempt(conn, item, result.outcome.value, result.detail, duration_ms)

        async def follow_up(conn: AsyncConn, result: DeliveryResult, retry: bool) -> int | None:
            next_id = None if result.ok or retry else await self._next_channel(conn, item)
            if handler.audit_action is not None:
                await audit_store.append_async(
                    conn,
                    "system",
                    handler.audit_action,
                    f"outbox:{item.outbox_id}",
                    {
                        "kind": item.kind,
                        "subject": item.subject,
                        "key": item.dedupe_key,
                        "channel": item.channel,
                        "attempt": item.attempt,
                        "result": result.outcome.value,
                        "detail": result.detail,
                        "state": "delivered" if result.ok else "retry" if retry else "failed",
                        "next_outbox_id": next_id,
                    },
                )
            return next_id

        done = await attempt(
            self._pool, item, lambda: handler.send(item), policy=handler.retry, rng=self._rng,
            record=record, follow_up=follow_up, on_raise=raised,
        )  # fmt: skip
        extra = {
            "outbox_id": item.outbox_id,
            "kind": item.kind,
            "subject": item.subject,
            "user_id": item.user_id,
            "channel": item.channel,
            "attempt": item.attempt,
            "detail": done.result.detail,
            "duration_ms": done.duration_ms,
        }
        if not done.kept:
            log.warning("message lease lost", extra=extra)
        elif done.result.ok:
            log.info("message delivered", extra=extra)
        elif done.retry:
            log.warning("message attempt failed, will retry", extra=extra)
        elif done.follow_up is not None:
            log.warning("message channel failed, next channel queued", extra=extra)
        else:
            log.warning("message failed for good", extra=extra)

    @staticmethod
    async def _next_channel(conn: AsyncConn, item: Message) -> int | None:
        """A user's next channel (due now); None when none is left (or not a user)."""
        if item.recipient_kind != "user":
            return None
        channels = [str(c) for c in item.payload.get("channels", [])]
        for index in range(item.channel_index + 1, len(channels)):
            row_id = await store.insert_next_channel(conn, item, channels[index], index)
            if row_id is not None:
                return row_id
        return None
