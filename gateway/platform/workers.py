"""Start the outbox's message worker (overdue notices, the platform push) and the monthly
push schedule: one hook line in :mod:`gateway.runtime`, next to the visits sweep.

Only the active process runs them (in a failover pair: the lease holder, gateway.lease). The
worker still claims rows with ``SKIP LOCKED`` and a lease, and queuing is idempotent by key,
so a restart or a takeover in the middle of a send repeats nothing but that send.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

from psycopg_pool import AsyncConnectionPool, ConnectionPool

from gateway.notify.channels import build_notifiers
from gateway.notify.messaging import MessageHandler, MessageWorker, RetryPolicy, UserNoticeHandler
from gateway.notify.settings import NotifySettings
from gateway.platform.push import KIND as PUSH_KIND
from gateway.platform.push import PlatformPushHandler, PlatformScheduler
from gateway.settings import Settings
from gateway.visits.config import VisitsConfig
from gateway.visits.notices import KIND as NOTICE_KIND

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None], str], None]


def notice_policy(notify: NotifySettings) -> RetryPolicy:
    """Overdue notices retry like incident notifications on one channel."""
    return RetryPolicy(
        max_attempts=notify.max_attempts,
        deadline_s=notify.channel_deadline_s,
        backoff_base_s=notify.backoff_base_s,
        backoff_max_s=notify.backoff_max_s,
        backoff_jitter=notify.backoff_jitter,
    )


async def start_message_workers(
    settings: Settings,
    sync_pool: ConnectionPool[Any],
    visits_cfg: VisitsConfig,
    stack: AsyncExitStack,
    spawn: Spawn,
) -> MessageWorker | None:
    """Start the message worker (and the push schedule when the platform is enabled)."""
    s = settings
    if not (s.notify.enabled or s.platform.enabled):
        return None
    db = s.database
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        db.conninfo(),
        min_size=1,
        max_size=2,
        kwargs={"autocommit": True},
        open=False,
        name="messages",
    )
    stack.push_async_callback(pool.close, timeout=5)  # after the worker's task ends
    await pool.open(wait=True, timeout=db.connect_timeout_s)
    handlers: dict[str, MessageHandler] = {}
    if s.notify.enabled:
        handlers[NOTICE_KIND] = UserNoticeHandler(
            pool, build_notifiers(s.notify), notice_policy(s.notify)
        )
    if s.platform.enabled:
        handlers[PUSH_KIND] = PlatformPushHandler(s.platform)
    worker = MessageWorker(
        pool,
        handlers,
        poll_interval_s=s.platform.poll_interval_s,
        lease_s=max(60.0, 3 * s.platform.timeout_s),
    )
    spawn(worker.run(), "message-outbox")
    if s.platform.enabled:
        scheduler = PlatformScheduler(sync_pool, visits_cfg, s.platform)
        scheduler.on_queued = worker.wake
        spawn(scheduler.run(), "platform-schedule")
    log.info("message outbox started", extra={"kinds": sorted(handlers)})
    return worker
