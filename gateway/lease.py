"""The gateway lease: which of two gateway processes is active (issue 15 §1).

Two gateways share one database and one broker. Exactly one is *active*: it holds the lease
and runs everything that acts on alarms (the MQTT ingest session, analysis, alarm recovery,
escalation, the outbox, the broker's ``$SYS`` monitor) and every other periodic worker that
writes or sends (visits sweep, message outbox, away-period release, retention). The other is
the *standby*: it serves the API (reads and writes go to the same database) and waits for the
lease. The broker binds
client ids to user names, so both share one MQTT session identity: the standby must not
connect before it holds the lease, or it would take the active's session over.

Why an advisory lock plus a heartbeat row (and not a lease row alone):

* The lease is a session-level ``pg_try_advisory_lock`` on a dedicated connection.
  PostgreSQL releases it the moment that session ends, so a killed or crashed holder hands
  over at the standby's next attempt (``failover.check_interval_s``), without waiting out
  any expiry, and two processes can never both acquire it: mutual exclusion is the
  database's, not a comparison of clocks.
* A lock alone cannot detect a holder that is frozen (``SIGSTOP``, a VM paused) or cut off
  from the database by a partition in which the server does not notice the dead peer (a
  proxy, a NAT that keeps the socket): its session, and so the lock, stays. So the holder
  also renews ``gateway_lease.heartbeat_at`` on the same connection (the periodic liveness
  query), and a standby that sees the heartbeat older than ``failover.takeover_after_s``
  (measured on the database's clock alone) ends every session of that holder with
  ``pg_terminate_backend``: they all carry the holder's ``application_name``, so the lock is
  released *and* none of the old holder's open transactions can commit any more.
* The holder fences itself first. It counts its lease as valid only until
  ``failover.lease_ttl_s`` after the last renewal it *sent* (its monotonic clock; a renewal
  sent earlier cannot have been stamped later, so its deadline falls before the standby's
  by at least ``takeover_after_s - lease_ttl_s``). When a renewal fails, the lease
  connection breaks, or the deadline passes, the process stops at once (``os._exit``: its
  MQTT socket closes with it, the persistent session stays with the broker for the next
  holder) and the supervisor restarts it as a standby. A frozen process that wakes up sees
  its deadline passed on the first tick of the guard thread (within 0.1 s); and the MQTT
  session confirms the lease with a synchronous renewal
  (:meth:`Lease.confirm`) before every (re)connection, so a holder whose lease session was
  ended cannot take the session back from the new holder. The ingest writer also checks
  :meth:`Lease.valid` before each commit, and acks go out only after a commit.
* A fencing ``token`` (incremented at every takeover) identifies the holding; renewals are
  conditional on it, so a holder whose row was taken over learns so at once.

What remains at-least-once rather than exactly-once across a takeover is what already was
across a restart: a page or notification whose send was in flight when the holder froze may
be sent again by the new holder (the outbox's claim expires), and a message the old holder
stored but had not acked is redelivered and stored once (duplicates are ignored).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from gateway.settings import FailoverSettings
from gateway.storage import lease as sql

log = logging.getLogger(__name__)

EXIT_LEASE_LOST = 75  # EX_TEMPFAIL: the supervisor restarts the process (as a standby)


def instance_name(base: str) -> str:
    """A process's own application_name: the configured one plus a random instance tag."""
    return f"{base}/{secrets.token_hex(6)}"


def _fence_exit(reason: str) -> None:
    log.critical("lease lost; stopping at once (fencing)", extra={"reason": reason})
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):  # exiting anyway
            handler.flush()
    os._exit(EXIT_LEASE_LOST)


class Lease:
    """The lease as seen by one process. ``acquire_once`` from the standby's loop; once
    acquired, :meth:`start_guard` keeps it renewed and calls ``on_lost`` (default: exit the
    process at once) when it cannot be sure it still holds it."""

    def __init__(
        self,
        settings: FailoverSettings,
        conninfo: str,
        holder: str,
        *,
        on_lost: Callable[[str], None] = _fence_exit,
    ) -> None:
        self._s = settings
        ttl_ms = int(settings.lease_ttl_s * 1000)
        idle = max(1, int(settings.check_interval_s))
        # Both ends notice a dead peer within about the lease's lifetime: libpq's keepalives
        # and TCP_USER_TIMEOUT on our side, the server's own on its side.
        server = (
            f"-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval=1 "
            f"-c tcp_keepalives_count=3 -c tcp_user_timeout={ttl_ms} "
            f"-c statement_timeout={ttl_ms}"
        )
        self._conninfo = make_conninfo(
            conninfo, application_name=holder, keepalives=1, keepalives_idle=idle,
            keepalives_interval=1, keepalives_count=3, tcp_user_timeout=ttl_ms, options=server,
        )  # fmt: skip
        self.holder = holder
        self.token: int | None = None
        self._on_lost = on_lost
        self._conn: psycopg.Connection[Any] | None = None
        self._last_ok = 0.0  # monotonic time the last successful renewal was sent
        self._lost: str | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stale_logged: str | None = None

    # standby ---------------------------------------------------------------------------------

    def acquire_once(self) -> bool:
        """One attempt, waiting for the lock up to ``check_interval_s`` (so a killed holder's
        lock passes to the waiting standby at once): True when this process now holds the
        lease. A holder silent for longer than ``takeover_after_s`` has its sessions ended
        (the lock is then free at the next attempt). Database errors propagate."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo, autocommit=True)
        conn = self._conn
        try:
            if sql.try_lock(conn, self._s.lock_key, self._s.check_interval_s):
                sent = time.monotonic()  # the claim stamps heartbeat_at no earlier than this
                self.token = sql.claim(conn, self._s.lock_key, self.holder)
                self._last_ok = sent
                log.info("lease acquired", extra={"token": self.token})
                return True
            info = sql.holder(conn, self._s.lock_key)
            if info is not None and info.heartbeat_age_s > self._s.takeover_after_s:
                ended = sql.end_holder(conn, info)
                if self._stale_logged != info.holder:
                    self._stale_logged = info.holder
                    log.warning(
                        "lease holder silent; its sessions ended",
                        extra={"silent_s": round(info.heartbeat_age_s, 1), "sessions": ended},
                    )
            return False
        except (psycopg.OperationalError, psycopg.InterfaceError):
            conn.close()
            self._conn = None
            raise

    # holder ----------------------------------------------------------------------------------

    def valid(self) -> bool:
        """Whether this process may still act as the holder (write, ack, connect MQTT)."""
        return (
            self.token is not None
            and self._lost is None
            and time.monotonic() - self._last_ok < self._s.lease_ttl_s
        )

    def confirm(self) -> bool:
        """Renew now, synchronously: True only if this process still holds the lease. The
        MQTT session asks this before every (re)connection: the moment the broker dropped
        us may be the moment a standby took over, and connecting again would take its
        session back. A failure fences the process like any other loss."""
        if not self.valid() or self._conn is None or self.token is None:
            return False
        sent = time.monotonic()
        try:
            ok = sql.renew(self._conn, self._s.lock_key, self.token)
        except psycopg.Error as exc:
            self._lose(f"renewal failed: {type(exc).__name__}")
            return False
        if not ok:
            self._lose("lease taken over")
            return False
        self._last_ok = max(self._last_ok, sent)
        return True

    def start_guard(self) -> None:
        """Renew the heartbeat every check interval (one thread) and watch the deadline
        (another: a renewal stuck on a partitioned socket must not delay the fencing)."""
        assert self.token is not None
        for name, target in (("lease-renew", self._renew_loop), ("lease-guard", self._guard)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _lose(self, reason: str) -> None:
        if self._lost is not None or self._stop.is_set():
            return
        self._lost = reason
        self._on_lost(reason)

    def _renew_loop(self) -> None:
        assert self._conn is not None and self.token is not None
        while not self._stop.wait(self._s.check_interval_s):
            sent = time.monotonic()
            try:
                ok = sql.renew(self._conn, self._s.lock_key, self.token)
            except psycopg.Error as exc:
                self._lose(f"renewal failed: {type(exc).__name__}")
                return
            if not ok:
                self._lose("lease taken over")
                return
            self._last_ok = sent

    def _guard(self) -> None:
        tick = min(0.1, self._s.check_interval_s / 4)
        while not self._stop.wait(tick):
            if time.monotonic() - self._last_ok >= self._s.lease_ttl_s:
                self._lose(f"not renewed within {self._s.lease_ttl_s}s")
                return

    def release(self) -> None:
        """A clean stop: end the lease session (the lock is released with it)."""
        self._stop.set()
        held, self.token = self.token is not None, None
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(self._s.lease_ttl_s + 1)
        if self._conn is not None:
            if held:
                with contextlib.suppress(psycopg.Error):  # else the session's end releases it
                    sql.unlock(self._conn, self._s.lock_key)
            self._conn.close()
            self._conn = None
