"""API authentication and authorisation: users, passwords, tokens and per-route roles.

- Passwords: argon2id (``argon2-cffi`` :class:`PasswordHasher`); only the hash is stored.
- Tokens: OAuth2 password flow, ``POST /auth/token`` opens a session and returns a
  short-lived access JWT (HS256, signed with ``api.jwt_secret``, lifetime
  ``api.token_ttl_s``, installers ``api.installer_token_ttl_s``) with the claims
  ``sub`` (user id), ``role``, ``site``, ``sid`` (session), ``iat``, ``exp`` and ``jti``,
  and an opaque refresh token. ``POST /auth/refresh`` exchanges the refresh token for a new
  pair (rotation; the old refresh token is spent); ``POST /auth/logout`` ends the session.
- Revocation: every authenticated request checks its session in the database
  (:func:`gateway.storage.auth_sessions.session_valid`): a logged-out session, a deactivated
  or deleted user, or a changed password (all sessions revoked) is refused with 401 on the
  next request.
- Sign-in hardening: failures are throttled per user name and per client address (429 with
  ``Retry-After``, :mod:`gateway.api.throttle`), counted in the database so every gateway
  process and a restarted one see the same counts (:mod:`gateway.api.login_throttle`); the
  argon2 verification runs in a worker
  thread of lowered CPU priority under a concurrency limit (``api.login_hash_concurrency``),
  after the database
  connection that fetched the hash went back to the pool, so a flood of sign-ins neither
  holds pool connections nor starves the console; an unknown or inactive user costs a
  verification too (no user enumeration by timing).
- The API refuses to start without a signing secret of at least :data:`MIN_SECRET_LENGTH`
  characters (:func:`check_jwt_secret`).
- Every route declares who may call it: ``**allow(Role...)`` on the route decorator adds
  the role check as a dependency and records the roles in the route's OpenAPI entry
  (``x-allowed-roles``); ``**PUBLIC`` declares a route open to anyone. A test walks
  ``app.routes`` and fails on any route without a declaration.

Logs carry user ids only, never user names or passwords.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt
import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, status
from prometheus_client import CollectorRegistry, Counter

from gateway import audit
from gateway.api.login_throttle import LoginThrottle
from gateway.api.throttle import ThrottlePolicy
from gateway.settings import ApiSettings
from gateway.storage import auth_sessions, users

log = logging.getLogger(__name__)

MIN_SECRET_LENGTH = 32
ALGORITHM = "HS256"
ROLES_KEY = "x-allowed-roles"
PUBLIC_ROLE = "public"

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when the user does not exist, so both paths cost one argon2 verify.
_DUMMY_HASH = _hasher.hash("not-a-password-" + uuid.uuid4().hex)


class AuthError(Exception):
    """Base error of API authentication (bad configuration, bad user data)."""


class UserRole(StrEnum):
    """Who signs in to the API."""

    DUTY_STAFF = "duty_staff"
    SUPERVISOR = "supervisor"
    FAMILY = "family"
    INSTALLER = "installer"
    ADMIN = "admin"
    COMMUNITY_WORKER = "community_worker"  # visits assigned elders (gateway.visits)
    DISTRICT_SUPERVISOR = "district_supervisor"  # read-only district totals (supervision)


STAFF = (UserRole.DUTY_STAFF, UserRole.SUPERVISOR, UserRole.ADMIN)
SITE_ROLES = frozenset({UserRole.DUTY_STAFF, UserRole.SUPERVISOR, UserRole.INSTALLER})


def check_jwt_secret(api: ApiSettings) -> str:
    """Return the signing secret, or raise :class:`AuthError` when it is missing or short."""
    if api.jwt_secret is None:
        raise AuthError(
            "api.jwt_secret is not set: the HTTP API will not start without a token signing "
            "secret; set SAFEHOME_API__JWT_SECRET or SAFEHOME_API__JWT_SECRET_FILE "
            f"(at least {MIN_SECRET_LENGTH} characters, e.g. `openssl rand -hex 32`)"
        )
    secret = api.jwt_secret.get_secret_value()
    if len(secret) < MIN_SECRET_LENGTH:
        raise AuthError(
            f"api.jwt_secret is too short ({len(secret)} characters): at least "
            f"{MIN_SECRET_LENGTH} are required (e.g. `openssl rand -hex 32`)"
        )
    return secret


# -- passwords and users ---------------------------------------------------------------


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (False on any mismatch or bad hash)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request, from a verified token."""

    user_id: str
    role: UserRole
    site_id: str | None
    session_id: str | None = None  # the sign-in session (claim "sid")
    expires_at: float | None = None  # the access token's expiry, unix seconds (claim "exp")

    @property
    def is_admin(self) -> bool:
        """Admins act on every site."""
        return self.role is UserRole.ADMIN


def create_user(
    conn: psycopg.Connection[Any],
    username: str,
    role: UserRole | str,
    password: str,
    *,
    site_id: str | None = None,
    residents: Iterable[str] = (),
    user_id: str | None = None,
    actor: str = "cli",
) -> str:
    """Create a user (and family links) in one transaction; return the user id. Audited
    (``user.create`` by ``actor``: the new id, role, site and linked resident ids)."""
    role = UserRole(role)
    links = list(residents)
    check_new_password(password)
    if role in SITE_ROLES and not site_id:
        raise AuthError(f"a {role.value} user needs a site")
    if role is UserRole.ADMIN and site_id:
        raise AuthError("an admin is not tied to a site")
    if links and role is not UserRole.FAMILY:
        raise AuthError("only family users are linked to residents")
    if role is UserRole.FAMILY and not links:
        raise AuthError("a family user needs at least one resident")
    uid = user_id or "u-" + uuid.uuid4().hex[:16]
    with conn.transaction():
        users.insert_user(
            conn, uid, username=username, role=role.value, site_id=site_id,
            password_hash=hash_password(password), residents=links,
        )  # fmt: skip
        audit.append(conn, actor, "user.create", f"user:{uid}",
                     {"role": role.value, "site_id": site_id, "residents": links})  # fmt: skip
    log.info("user created", extra={"user_id": uid, "role": role.value})
    return uid


def authenticate(conn: psycopg.Connection[Any], username: str, password: str) -> Principal | None:
    """The active user with that name and password, or None (same cost either way).

    Verifies on the caller's connection; the API's sign-in route instead fetches the hash,
    returns the connection, and verifies in a limited worker thread.
    """
    row = auth_sessions.find_user(conn, username)
    return check_password(row, password)


def check_password(row: auth_sessions.UserRow | None, password: str) -> Principal | None:
    """The principal of ``row`` if it is active and ``password`` matches; one argon2
    verification whatever the outcome (unknown and inactive users included)."""
    if row is None or not row.active:
        verify_password(_DUMMY_HASH, password)
        return None
    if not verify_password(row.password_hash, password):
        log.info("sign-in refused", extra={"user_id": row.user_id})
        return None
    return Principal(row.user_id, UserRole(row.role), row.site_id)


def check_new_password(password: str) -> None:
    """Raise :class:`AuthError` for a password too weak to set."""
    if len(password) < 8:
        raise AuthError("password too short: at least 8 characters")


# -- tokens ----------------------------------------------------------------------------


def issue_token(secret: str, principal: Principal, ttl_s: int, now: datetime | None = None) -> str:
    """A signed JWT for ``principal`` valid for ``ttl_s`` seconds."""
    iat = now or datetime.now(UTC)
    claims = {
        "sub": principal.user_id,
        "role": principal.role.value,
        "site": principal.site_id,
        "sid": principal.session_id or "",
        "iat": iat,
        "exp": iat + timedelta(seconds=ttl_s),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(secret: str, token: str) -> Principal:
    """Verify ``token`` (signature, expiry, claims); raise :class:`jwt.InvalidTokenError`."""
    claims = jwt.decode(
        token, secret, algorithms=[ALGORITHM],
        options={"require": ["sub", "role", "exp", "iat", "jti", "sid"]},
    )  # fmt: skip
    try:
        role = UserRole(claims["role"])
    except ValueError:
        raise jwt.InvalidTokenError("unknown role") from None
    site = claims.get("site")
    return Principal(
        str(claims["sub"]), role, str(site) if site is not None else None,
        session_id=str(claims["sid"]), expires_at=float(claims["exp"]),
    )  # fmt: skip


ALL_ROLES = tuple(UserRole)


HASH_NICE = 10  # the password-hashing threads' nice value (at least)


def _lower_priority() -> None:
    """Lower this thread's CPU priority (Linux: nice values are per thread; the threads
    libargon2 starts for its lanes inherit it). Elsewhere a no-op."""
    if sys.platform == "linux":
        tid = threading.get_native_id()
        with contextlib.suppress(OSError):
            os.setpriority(
                os.PRIO_PROCESS, tid, max(HASH_NICE, os.getpriority(os.PRIO_PROCESS, tid))
            )


class LoginGuard:
    """Sign-in throttling, the argon2 concurrency limit and their counters (one per app)."""

    def __init__(self, api: ApiSettings, registry: CollectorRegistry, secret: str) -> None:
        # Failure counts in the database, shared by every process (keys HMAC'd with secret).
        self.throttle = LoginThrottle(ThrottlePolicy.of(api), secret)
        # Password checks run here, at most login_hash_concurrency at once, in threads of
        # lowered CPU priority: a flood of sign-ins takes only CPU the console leaves idle.
        self.hasher = ThreadPoolExecutor(
            api.login_hash_concurrency, thread_name_prefix="argon2", initializer=_lower_priority
        )
        self.queue_max = api.login_queue_max
        self.waiting = 0
        self.logins = Counter(
            "safehome_api_logins", "Sign-in attempts by result (ok, failed, throttled, busy)",
            ["result"], registry=registry,
        )  # fmt: skip
        for result in ("ok", "failed", "throttled", "busy"):
            self.logins.labels(result)

    def too_many(self, retry_after: int, detail: str) -> HTTPException:
        return HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, detail=detail,
            headers={"Retry-After": str(retry_after)},
        )  # fmt: skip

    def unavailable(self, retry_after: int) -> HTTPException:
        """The database is unreachable: nobody can sign in (counted as ``busy``)."""
        self.logins.labels("busy").inc()
        return HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="sign-in unavailable: the database is not reachable; try again shortly",
            headers={"Retry-After": str(retry_after)},
        )  # fmt: skip
