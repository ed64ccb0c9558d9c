"""The sign-in throttle shared by every gateway process, kept in PostgreSQL.

Both processes of a failover pair serve the API, and a restart must not forget: the failure
counts live in ``login_failures`` (:mod:`gateway.storage.login_attempts`). An attempt locks
its user-name row and its address row, :func:`gateway.api.throttle.decide` decides on the
stored times with the database's clock, and the outcome is written in the same transaction:
two processes hammering one account at once are decided one attempt at a time and never
admit more than the limit.

Keys are stored as HMAC-SHA256 under a secret derived from ``api.jwt_secret`` (the same in
every process of an installation): attacker-chosen user names, or a password typed into the
name field, never reach the database in the clear. Logs name a key by the first 12 hex
digits of its HMAC, never a user name or an address.

A key this process saw locked is remembered until its ``Retry-After`` passes
(:class:`gateway.api.throttle.Lockouts`), so a flood on a locked account is refused without
touching the database. Rows whose failures left the window are pruned by the sign-in path,
at most once per ``min(60 s, window)`` per process, so the table stays bounded.

A supervisor or an admin unlocks an account (:meth:`LoginThrottle.unlock`, ``POST
/users/{user_id}/unlock``, ``safehome user unlock``): its user-name row is deleted (the
address rows stay) and this process forgets the lockout; other processes ask the database
again within :data:`gateway.api.throttle.RECHECK_S`.

Every method that touches the database raises :class:`psycopg.OperationalError` when it is
unreachable (the route answers 503: without the database nobody can sign in anyway).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from gateway.api.throttle import Lockouts, ThrottlePolicy, Verdict, decide, user_key
from gateway.storage import login_attempts

log = logging.getLogger(__name__)

_KEY_CONTEXT = b"safehome-login-throttle-v1"
PRUNE_EVERY_MAX_S = 60.0


@dataclass(frozen=True, slots=True)
class Keys:
    """The HMACs of an attempt's user name (case-folded) and client address."""

    user: str
    address: str


@dataclass(frozen=True, slots=True)
class Admission:
    """The throttle's answer to an attempt: ``wait`` seconds (0: admitted at ``at``, the
    database's time, and counted as a failure until :meth:`LoginThrottle.succeeded`)."""

    keys: Keys
    wait: int
    at: datetime | None = None


class LoginThrottle:
    """Per user name and per client address limits of failed sign-ins, in the database."""

    def __init__(self, policy: ThrottlePolicy, secret: str, max_keys: int = 10_000) -> None:
        self.policy = policy
        self._hmac_key = hmac.new(secret.encode(), _KEY_CONTEXT, hashlib.sha256).digest()
        self._lockouts = Lockouts(max_keys)
        self._lock = threading.Lock()  # the lockouts, the prune clock, the database state
        self.prune_every_s = min(PRUNE_EVERY_MAX_S, policy.window.total_seconds())
        self._pruned_at: float | None = None
        self._database_up = True

    def _hash(self, kind: str, key: str) -> str:
        return hmac.new(self._hmac_key, f"{kind}\0{key}".encode(), hashlib.sha256).hexdigest()

    def keys(self, username: str, address: str) -> Keys:
        return Keys(self.user_hash(username), self._hash("address", address))

    def user_hash(self, username: str) -> str:
        """The stored key of a user name (case-folded), as :meth:`keys` makes it."""
        return self._hash("user", user_key(username))

    def unlock(self, conn: psycopg.Connection[Any], username: str, *, user_id: str,
               actor: str) -> int:  # fmt: skip
        """Clear the failures of ``username`` (the account ``user_id``), audited; how many."""
        key = self.user_hash(username)
        cleared = login_attempts.unlock(conn, key, user_id=user_id, actor=actor)
        with self._lock:
            self._lockouts.forget(key)
        log.info("sign-in unlocked", extra={"key": key[:12], "user_id": user_id, "actor": actor})
        return cleared

    def known_wait(self, keys: Keys, now: float) -> int:
        """Seconds this process already knows the attempt must wait (0: ask the database)."""
        with self._lock:
            return max(self._lockouts.wait(keys.user, now), self._lockouts.wait(keys.address, now))

    def begin(self, conn: psycopg.Connection[Any], keys: Keys) -> Admission:
        """Admit the attempt (it counts as a failure from now on) or say how long it waits."""
        with conn.transaction():
            locked = login_attempts.lock(conn, keys.user, keys.address)
            verdict = decide(locked.user, locked.address, locked.now, self.policy)
            login_attempts.store(
                conn, keys.user, keys.address,
                user_failures=verdict.user, address_failures=verdict.address, now=verdict.now,
            )  # fmt: skip
        now = time.monotonic()
        if not verdict.admitted:
            self._remember(keys, verdict, now)
        self._prune_if_due(conn, now)
        return Admission(keys, verdict.wait, verdict.now if verdict.admitted else None)

    def succeeded(self, conn: psycopg.Connection[Any], admission: Admission) -> None:
        """A correct password: the user name's failures are cleared, the address's count of
        this attempt taken back (its earlier failures stay)."""
        assert admission.at is not None, "only an admitted attempt succeeds"
        login_attempts.succeeded(conn, admission.keys.user, admission.keys.address, admission.at)
        with self._lock:
            self._lockouts.forget(admission.keys.user)

    def _remember(self, keys: Keys, verdict: Verdict, now: float) -> None:
        """Note the locked keys (logged once per lockout and process)."""
        with self._lock:
            locked = [
                (kind, key, wait)
                for kind, key, wait in (("user", keys.user, verdict.user_wait),
                                        ("address", keys.address, verdict.address_wait))
                if wait and self._lockouts.remember(key, now + wait, now)
            ]  # fmt: skip
        for kind, key, wait in locked:
            log.info(
                "sign-in locked out", extra={"kind": kind, "key": key[:12], "retry_after_s": wait}
            )

    def _prune_if_due(self, conn: psycopg.Connection[Any], now: float) -> None:
        with self._lock:
            if self._pruned_at is not None and now - self._pruned_at < self.prune_every_s:
                return
            self._pruned_at = now
        try:
            deleted = login_attempts.prune(conn, self.policy.window.total_seconds())
        except psycopg.OperationalError:
            return  # the next one tries again; the attempt itself was decided and stored
        if deleted:
            log.debug("sign-in throttle pruned", extra={"rows": deleted})

    def note_database(self, *, up: bool) -> None:
        """Whether the last sign-in reached the database; logs the changes (once each)."""
        with self._lock:
            changed, self._database_up = self._database_up != up, up
        if changed and up:
            log.info("sign-in throttle: database reachable again")
        elif changed:
            log.warning("sign-in throttle: database unreachable, sign-ins answered 503")
