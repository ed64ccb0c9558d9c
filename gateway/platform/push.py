"""Queue, deliver and schedule the monthly platform push.

* :func:`enqueue_monthly` builds the site's document (:mod:`gateway.platform.report`) and
  queues it in the outbox as a ``platform_push`` row whose ``dedupe_key`` is the document's
  idempotency key: queuing again (the CLI, the schedule, a second process) does nothing.
* :class:`PlatformPushHandler` (a :class:`gateway.notify.messaging.MessageHandler`) POSTs
  the stored document, signed, with a fresh timestamp per attempt; 2xx delivered, 408/425/
  429/5xx and network errors retried with backoff, other statuses (a rejected signature)
  failed at once. Every attempt is audited (``platform.push_attempt``).
* :class:`PlatformScheduler` queues the latest due month of every site once its day and
  hour have come (``platform.push_day``/``push_hour`` in ``platform.utc_offset_s``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from gateway import audit
from gateway.notify.delivery import DeliveryResult, classify_http, http_post, network_failure
from gateway.notify.messaging import RetryPolicy
from gateway.platform.report import idempotency_key, monthly_document
from gateway.platform.settings import PlatformSettings
from gateway.platform.signing import (
    DELIVERY_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from gateway.pollworker import PollingWorker
from gateway.storage import messages as store
from gateway.storage.messages import Message, QueuedRow
from gateway.visits.config import VisitsConfig

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
KIND = "platform_push"
AUDIT_ATTEMPT = "platform.push_attempt"


@dataclass(frozen=True, slots=True)
class Queued:
    """The outcome of queuing one site's month: the new row's id, or the existing rows."""

    site_id: str
    month: str
    key: str
    outbox_id: int | None
    existing: tuple[QueuedRow, ...] = ()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def body_of(document: dict[str, Any]) -> bytes:
    """The bytes pushed for a stored document (stable: sorted keys, UTF-8)."""
    return json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def enqueue_monthly(
    conn: Conn,
    cfg: VisitsConfig,
    settings: PlatformSettings,
    site_id: str,
    month: str,
    *,
    actor: str,
    now: datetime | None = None,
) -> Queued:
    """Queue the push of ``site_id``'s ``month`` (idempotent by its key; audited when
    queued)."""
    at = now or _utcnow()
    key = idempotency_key(settings.source_id, site_id, month)
    existing = store.queued(conn, key)
    if existing:
        return Queued(site_id, month, key, None, tuple(existing))
    document = monthly_document(conn, cfg, site_id, month, now=at, source_id=settings.source_id)
    with conn.transaction():
        row_id = store.insert_message(
            conn,
            kind=KIND,
            subject=f"site:{site_id}/{month}",
            dedupe_key=key,
            recipient_kind="platform",
            user_id=None,
            channel="platform",
            payload={"document": document},
        )
        if row_id is None:  # queued by someone else meanwhile
            return Queued(site_id, month, key, None, tuple(store.queued(conn, key)))
        audit.append(
            conn,
            actor,
            "platform.push_queued",
            f"outbox:{row_id}",
            {
                "site_id": site_id,
                "month": month,
                "key": key,
                "incidents": len(document["incidents"]),
            },
        )
    log.info(
        "platform push queued", extra={"outbox_id": row_id, "site_id": site_id, "month": month}
    )
    return Queued(site_id, month, key, row_id)


def retry_policy(settings: PlatformSettings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.max_attempts,
        deadline_s=settings.deadline_s,
        backoff_base_s=settings.backoff_base_s,
        backoff_max_s=settings.backoff_max_s,
        backoff_jitter=settings.backoff_jitter,
    )


class PlatformPushHandler:
    """Delivers ``platform_push`` rows: a signed POST of the stored document."""

    audit_action: str | None = AUDIT_ATTEMPT

    def __init__(
        self, settings: PlatformSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        if settings.url is None or settings.secret is None:
            raise ValueError("the platform push needs platform.url and platform.secret")
        self._url = settings.url
        self._secret = settings.secret.get_secret_value().encode()
        self._timeout_s = settings.timeout_s
        self._retry = retry_policy(settings)
        self._clock = clock

    @property
    def retry(self) -> RetryPolicy:
        return self._retry

    async def send(self, item: Message) -> DeliveryResult:
        document = item.payload.get("document")
        if not isinstance(document, dict):
            return DeliveryResult.permanent("no document")
        body = body_of(document)
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "safehome-guardian",
            IDEMPOTENCY_HEADER: item.dedupe_key,
            DELIVERY_HEADER: str(item.outbox_id),
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        try:
            status, _ = await asyncio.to_thread(
                http_post, self._url, body, headers, self._timeout_s
            )
        except (OSError, urllib.error.URLError) as exc:
            return network_failure(exc)
        return classify_http(status)


def due_month(now: datetime, settings: PlatformSettings) -> str:
    """The latest month whose push is due at ``now``: the previous local month once its
    day and hour have come, the one before until then."""
    local = now.astimezone(timezone(timedelta(seconds=settings.utc_offset_s)))
    first = date(local.year, local.month, 1)
    back = 1 if (local.day, local.hour) >= (settings.push_day, settings.push_hour) else 2
    for _ in range(back):
        first = (first - timedelta(days=1)).replace(day=1)
    return f"{first.year:04d}-{first.month:02d}"


class PlatformScheduler(PollingWorker):
    """Queues the due month of every site (``platform.sites``, or all) every
    ``schedule_check_s``; idempotent, so a restart or a second process changes nothing."""

    def __init__(
        self,
        pool: ConnectionPool[Any],
        cfg: VisitsConfig,
        settings: PlatformSettings,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__(
            "platform schedule",
            poll_interval_s=settings.schedule_check_s,
            batch_size=1 << 30,
            logger=log,
        )
        self._pool = pool
        self._cfg = cfg
        self._settings = settings
        self._clock = clock
        self.on_queued: Callable[[], None] | None = None

    def schedule_once(self) -> int:
        """Queue what is due; how many pushes were newly queued."""
        now = self._clock()
        month = due_month(now, self._settings)
        queued = 0
        with self._pool.connection() as conn:
            sites = self._settings.sites or store.site_ids(conn)
            for site_id in sites:
                try:
                    result = enqueue_monthly(
                        conn, self._cfg, self._settings, site_id, month, actor="system", now=now
                    )
                except LookupError:  # a configured site that does not exist (any more)
                    log.warning("platform push: no such site", extra={"site_id": site_id})
                    continue
                queued += result.outbox_id is not None
        return queued

    async def run_once(self) -> int:
        if await asyncio.to_thread(self.schedule_once) and self.on_queued is not None:
            self.on_queued()  # on the loop: wakes the message worker
        return 0
