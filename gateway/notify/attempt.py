"""One delivery attempt of a claimed outbox row: the step both outbox workers share, the
incident outbox (:mod:`gateway.notify.outbox`: notifications and staff pages) and the
message worker (:mod:`gateway.notify.messaging`: visit notices, the platform push).

:func:`attempt` sends (an exception of the sender becomes the worker's transient result,
so a bug never stalls the outbox), decides whether a failure is retried
(:meth:`RetryPolicy.retries`: transient, attempts left, within the deadline after queuing),
then in one transaction records the attempt, moves the row on (delivered, due again after
the backoff, or failed) and runs the worker's follow-up (its next channel, an audit entry).
A row whose lease ran out meanwhile is left to the worker that owns it now: no follow-up,
``kept`` False. What each worker logs stays its own.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from gateway.notify.channels import DeliveryResult, Outcome
from gateway.notify.settings import NotifySettings
from gateway.storage import outbox as rows

AsyncConn = psycopg.AsyncConnection[Any]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long a kind of message is retried on transient failures."""

    max_attempts: int = 8
    deadline_s: float = 86400.0  # after the row was queued
    backoff_base_s: float = 30.0
    backoff_max_s: float = 3600.0
    backoff_jitter: float = 0.2

    @classmethod
    def of(cls, notify: NotifySettings) -> RetryPolicy:
        """The incident outbox's policy (one channel of a contact or a staff page)."""
        return cls(
            max_attempts=notify.max_attempts,
            deadline_s=notify.channel_deadline_s,
            backoff_base_s=notify.backoff_base_s,
            backoff_max_s=notify.backoff_max_s,
            backoff_jitter=notify.backoff_jitter,
        )

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number ``attempt`` (1-based): exponential, capped, jittered."""
        base = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** max(0, attempt - 1))
        return max(0.0, base * (1.0 + rng.uniform(-self.backoff_jitter, self.backoff_jitter)))

    def retries(self, result: DeliveryResult, attempt: int, age_s: float, delay_s: float) -> bool:
        """Whether a row whose attempt number ``attempt`` ended with ``result``, queued
        ``age_s`` ago, is due again after ``delay_s`` (else it has failed on its channel)."""
        return (
            result.outcome is Outcome.TRANSIENT
            and attempt < self.max_attempts
            and age_s + delay_s <= self.deadline_s
        )


class Claimed(Protocol):
    """A claimed row of either kind (gateway.storage.outbox.Claimed, .messages.Message)."""

    @property
    def outbox_id(self) -> int: ...
    @property
    def attempt(self) -> int: ...
    @property
    def queued_at(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class Attempt(Generic[T]):
    """How one attempt ended; ``follow_up`` is what the worker's follow-up returned (None
    when the lease was lost and it did not run)."""

    result: DeliveryResult
    duration_s: float
    retry: bool
    kept: bool  # False: the lease ran out and another worker owns the row now
    follow_up: T | None

    @property
    def duration_ms(self) -> int:
        return int(self.duration_s * 1000)


Record = Callable[[AsyncConn, DeliveryResult, int], Awaitable[None]]
FollowUp = Callable[[AsyncConn, DeliveryResult, bool], Awaitable[T]]


async def attempt(
    pool: AsyncConnectionPool[Any],
    item: Claimed,
    send: Callable[[], Awaitable[DeliveryResult]],
    *,
    policy: RetryPolicy,
    rng: random.Random,
    record: Record,
    follow_up: FollowUp[T],
    on_raise: Callable[[Exception], DeliveryResult],
    stop: bool | Callable[[DeliveryResult], bool] = False,
) -> Attempt[T]:
    """Send ``item`` once and settle its row (see the module). ``record`` appends the attempt
    to the attempt log; ``follow_up(conn, result, retry)`` runs in the same transaction once
    the row was moved on; ``stop(result)``: a failure that is never retried (the chain ends)."""
    started = time.monotonic()
    try:
        result = await send()
    except Exception as exc:  # an adapter's or handler's bug must not stall the outbox
        result = on_raise(exc)
    duration_s = time.monotonic() - started
    delay = policy.delay(item.attempt, rng)
    age_s = (datetime.now(UTC) - item.queued_at).total_seconds()
    stopped = stop(result) if callable(stop) else stop
    retry = not stopped and policy.retries(result, item.attempt, age_s, delay)
    ms = int(duration_s * 1000)
    async with pool.connection() as conn, conn.transaction():
        await record(conn, result, ms)
        if result.ok:
            kept = await rows.mark_delivered(conn, item)
        elif retry:
            kept = await rows.mark_retry(conn, item, result.detail, delay)
        else:
            kept = await rows.mark_failed(conn, item, result.detail)
        if not kept:
            return Attempt(result, duration_s, retry, kept=False, follow_up=None)
        after = await follow_up(conn, result, retry)
    return Attempt(result, duration_s, retry, kept=True, follow_up=after)
