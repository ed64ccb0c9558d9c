"""The staff live feed: ``GET /incidents/stream`` (Server-Sent Events).

Every incident change is a row of ``incident_events`` (raised, triggered, acknowledged,
...). Its ``feed_seq``, numbered **at commit** (migration 0021), is the SSE event id. One
:class:`LiveFeed` per app reads new rows and fans them out to the connected clients:

- it wakes on ``LISTEN incident_events`` (the trigger of migration 0012 notifies on every
  insert) and in any case every ``poll_s`` (200 ms), so a lost notification or a lost
  listening connection only delays an event, never loses it;
- each client has a bounded queue (``queue_size``); a client whose queue is full is
  disconnected instead of slowing the others. It reconnects with ``Last-Event-ID`` and
  resumes from the backlog; streams also end when the gateway stops;
- a client that sends ``Last-Event-ID: N`` first receives every event with feed_seq > N
  that it may see, then follows live; events already sent are never repeated;
- a stream ends (last frame ``event: auth``, ``data: {"reason": ...}``) when its access
  token expires, and within ``api.stream_recheck_s`` once its session is revoked (logout,
  password change, user deactivated or deleted): the client renews its token and resumes.

Commit order, not insert order. The row id is taken at INSERT and becomes visible at
COMMIT, so two incident transactions may commit in the other order than their ids: a
reader that has read id 6 would never see id 5 committed after it. Three ways to close
that gap were weighed:

- *read only below the oldest in-flight transaction* (``pg_snapshot_xmin``): correct only
  with a cursor on transaction ids, and any long writer anywhere in the cluster (a bulk
  ingest batch, a migration, an idle-in-transaction session) would hold back every alarm;
- *a periodic reconcile re-reading a window*: bounded delay only as long as the window, and
  each event would need de-duplication by id;
- *numbering at commit* (chosen): a deferred constraint trigger takes a transaction lock at
  COMMIT and sets ``feed_seq`` from a sequence. The lock is released only once the commit
  is visible, so ``feed_seq`` order is visibility order: whoever sees N sees every
  committed event before N, and ``feed_seq > cursor`` can neither skip nor repeat. The
  lock covers only the end of a commit of transactions that wrote a timeline event (they
  already serialise on the audit chain's lock for longer).

``tests/integration/test_live_feed.py`` commits two incidents out of id order against the
real database and checks that the follower and a resuming client both get both. The
console in addition re-reads the open incidents every ``api.console_reconcile_s`` (≤ 10 s,
``GET /console/config``), so even a stream that is stalled somewhere on the way (a proxy,
a sleeping tablet) cannot hide an emergency for longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from fastapi.encoders import jsonable_encoder
from psycopg_pool import ConnectionPool, PoolClosed

from gateway.storage import live

log = logging.getLogger(__name__)

_PAGE = 1000
KEEPALIVE_S = 15.0
_STOP_CHECK_S = 0.5  # how soon a stream notices the gateway stopping


@dataclass(eq=False)
class Subscription:
    """One client's bounded queue of events; ``overflowed`` once it fell behind."""

    site_id: str | None
    queue: asyncio.Queue[dict[str, Any]]
    overflowed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class LiveFeed:
    """Reads new timeline events once for all clients and fans them out."""

    def __init__(
        self,
        pool: ConnectionPool[Any],
        conninfo: str | None,
        *,
        poll_s: float = 0.2,
        queue_size: int = 256,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._pool = pool
        self.stopping = stopping
        self._conninfo = conninfo
        self._poll_s = poll_s
        self._queue_size = queue_size
        self._subs: set[Subscription] = set()
        self._cursor = 0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def subscribers(self) -> int:
        """How many clients are connected."""
        return len(self._subs)

    def fetch(self, after: int, site_id: str | None, limit: int = _PAGE) -> list[dict[str, Any]]:
        """Events with feed_seq > ``after`` (of ``site_id``, or every site), in commit order."""
        with self._pool.connection() as conn:
            return live.events_after(conn, after, site_id, limit)

    def _head(self) -> int:
        with self._pool.connection() as conn:
            return live.feed_head(conn)

    async def subscribe(self, site_id: str | None) -> Subscription:
        """Register a client: it receives every event committed after this call returns."""
        async with self._lock:
            if self._task is None:
                self._cursor = await asyncio.to_thread(self._head)
                self._task = asyncio.create_task(self._run(), name="live-feed")
            sub = Subscription(site_id, asyncio.Queue(self._queue_size))
            self._subs.add(sub)
            return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a client (on disconnect)."""
        self._subs.discard(sub)

    async def _run(self) -> None:
        listener: psycopg.AsyncConnection[Any] | None = None
        try:
            while self._subs:
                if listener is None or listener.closed:
                    listener = await self._listen()
                await self._wait(listener)
                rows = await asyncio.to_thread(self.fetch, self._cursor, None)
                for row in rows:
                    self._cursor = row["seq"]
                    self._fan_out(row)
        except (psycopg.OperationalError, PoolClosed) as exc:
            log.warning("live feed: database unavailable", extra={"error": str(exc)})
            for sub in list(self._subs):  # clients reconnect and resume with Last-Event-ID
                self._drop(sub)
        finally:
            # No await between the loop's last check and here: a subscriber arriving from
            # now on starts a new task instead of joining one that is ending.
            if self._task is asyncio.current_task():
                self._task = None
            if listener is not None:
                await listener.close()

    async def _listen(self) -> psycopg.AsyncConnection[Any] | None:
        if self._conninfo is None:
            return None
        try:
            conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            await live.listen(conn)
            return conn
        except psycopg.OperationalError:
            return None  # poll only; retried on the next round

    async def _wait(self, listener: psycopg.AsyncConnection[Any] | None) -> None:
        if listener is None:
            await asyncio.sleep(self._poll_s)
            return
        try:
            async for _ in listener.notifies(timeout=self._poll_s, stop_after=1):
                pass
        except psycopg.OperationalError:
            await listener.close()
            await asyncio.sleep(self._poll_s)

    def _fan_out(self, row: dict[str, Any]) -> None:
        for sub in list(self._subs):
            if sub.site_id is not None and sub.site_id != row["site_id"]:
                continue
            try:
                sub.queue.put_nowait(row)
            except asyncio.QueueFull:
                log.warning("live feed: slow client disconnected", extra={"event_id": row["id"]})
                self._drop(sub)
            else:
                sub.wake.set()

    def _drop(self, sub: Subscription) -> None:
        sub.overflowed = True
        self._subs.discard(sub)
        sub.wake.set()


@dataclass(frozen=True)
class StreamAuth:
    """The stream's credentials, re-checked while it runs (issue 10 §3): the stream ends at
    the access token's expiry (``expires_at``, unix seconds) and, within ``recheck_s``, once
    ``still_valid`` says the session was revoked. The client refreshes and resumes."""

    still_valid: Callable[[], Awaitable[bool]]
    expires_at: float | None
    recheck_s: float

    def ended(self, reason: str) -> str:
        """The last frame of a stream whose credentials ended."""
        return f"event: auth\ndata: {json.dumps({'reason': reason})}\n\n"


def sse(row: dict[str, Any]) -> str:
    """One event in SSE framing (id = the event's feed_seq, its number in commit order)."""
    data = json.dumps(jsonable_encoder(row), separators=(",", ":"))
    return f"id: {row['seq']}\nevent: incident\ndata: {data}\n\n"


async def stream(
    feed: LiveFeed, site_id: str | None, last_event_id: int | None,
    auth: StreamAuth | None = None,
) -> AsyncIterator[str]:  # fmt: skip
    """The SSE body: the backlog after ``last_event_id``, then live events."""
    next_check = time.monotonic() + (auth.recheck_s if auth else 0.0)
    sub = await feed.subscribe(site_id)
    try:
        sent = -1
        yield f"retry: 1000\n: connected (subscribers {feed.subscribers})\n\n"
        if last_event_id is not None:
            after = last_event_id
            while True:
                rows = await asyncio.to_thread(feed.fetch, after, site_id)
                for row in rows:
                    yield sse(row)
                    sent = after = row["seq"]
                if len(rows) < _PAGE:
                    break
        quiet_since = time.monotonic()
        while not sub.overflowed and not feed.stopping():
            if auth is not None:
                if auth.expires_at is not None and time.time() >= auth.expires_at:
                    yield auth.ended("token expired")
                    break
                if time.monotonic() >= next_check:
                    if not await auth.still_valid():
                        yield auth.ended("session ended")
                        break
                    next_check = time.monotonic() + auth.recheck_s
            if sub.queue.empty():
                sub.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sub.wake.wait(), _STOP_CHECK_S)
                if time.monotonic() - quiet_since > KEEPALIVE_S:
                    yield ": keepalive\n\n"
                    quiet_since = time.monotonic()
                continue
            quiet_since = time.monotonic()
            row = sub.queue.get_nowait()
            if row["seq"] > sent:
                yield sse(row)
                sent = row["seq"]
    finally:
        feed.unsubscribe(sub)
