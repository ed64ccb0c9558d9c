"""The token routes: ``POST /auth/token`` (OAuth2 password flow), ``/auth/refresh`` and
``/auth/logout`` (see :mod:`gateway.api.auth` for tokens, sessions and sign-in hardening)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime
from typing import Annotated

import anyio
import anyio.to_thread
import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field

from gateway.api.auth import ALL_ROLES, Principal, UserRole, check_password, issue_token
from gateway.api.deps import PUBLIC, ApiHost, CurrentUser, HostDep, allow, unauthorized
from gateway.api.login_throttle import Admission
from gateway.storage import auth_sessions

log = logging.getLogger(__name__)

router = APIRouter(tags=["auth"])


class Token(BaseModel):
    """An OAuth2 bearer token, with the refresh token that renews it."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)
    expires_in: int
    role: UserRole
    refresh_token: str
    session_expires_at: datetime  # the refresh token works until then at the latest


class RefreshRequest(BaseModel):
    """``POST /auth/refresh``: the refresh token of the last answer (spent by this call)."""

    refresh_token: str = Field(min_length=16, max_length=256)


def _session_ttl(host: ApiHost, role: UserRole) -> tuple[int, int]:
    """(access token lifetime, session lifetime) of ``role``."""
    api = host.settings.api
    if role is UserRole.INSTALLER:
        return api.installer_token_ttl_s, api.installer_session_max_s
    return api.token_ttl_s, api.session_max_s


def _issue_pair(host: ApiHost, principal: Principal, refresh: str, session_end: datetime) -> Token:
    ttl, _ = _session_ttl(host, principal.role)
    # Never beyond the session: an access token outliving its session would be refused anyway.
    ttl = max(1, min(ttl, int((session_end - datetime.now(UTC)).total_seconds())))
    return Token(
        access_token=issue_token(host.jwt_secret, principal, ttl),
        expires_in=ttl,
        role=principal.role,
        refresh_token=refresh,
        session_expires_at=session_end,
    )


@router.post(
    "/auth/token", summary="Sign in (OAuth2 password flow)", response_model=Token,
    responses={429: {"description": "too many failed sign-ins; see Retry-After"}},
    **PUBLIC,
)  # fmt: skip
async def token(
    request: Request, host: HostDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> Token:
    guard = host.login_guard
    throttle = guard.throttle
    keys = throttle.keys(form.username, request.client.host if request.client else "unknown")
    if guard.waiting >= guard.queue_max:
        guard.logins.labels("busy").inc()
        raise guard.too_many(1, "too many sign-ins at once; try again shortly")
    wait = throttle.known_wait(keys, time.monotonic())  # a known lock-out: no database trip
    if wait:
        guard.logins.labels("throttled").inc()
        raise guard.too_many(wait, "too many failed sign-ins; try again later")
    timeout_s = host.settings.database.connect_timeout_s
    guard.waiting += 1
    try:

        def admit() -> tuple[Admission, auth_sessions.UserRow | None]:
            # Counted (shared by every gateway process) before the password is checked;
            # the connection goes back to the pool before the hash is checked.
            with host.pool.connection(timeout=timeout_s) as conn:
                admission = throttle.begin(conn, keys)
                if admission.wait:
                    return admission, None
                return admission, auth_sessions.find_user(conn, form.username)

        try:
            admission, row = await anyio.to_thread.run_sync(admit)
        except psycopg.OperationalError:  # PoolTimeout too: nobody can sign in right now
            throttle.note_database(up=False)
            raise guard.unavailable(max(1, math.ceil(timeout_s))) from None
        throttle.note_database(up=True)
        if admission.wait:
            guard.logins.labels("throttled").inc()
            raise guard.too_many(admission.wait, "too many failed sign-ins; try again later")
        principal = await asyncio.get_running_loop().run_in_executor(
            guard.hasher, check_password, row, form.password
        )
    finally:
        guard.waiting -= 1
    if principal is None:  # counted as a failure by begin() already
        guard.logins.labels("failed").inc()
        raise unauthorized("incorrect username or password")
    _, max_s = _session_ttl(host, principal.role)
    idle_s = host.settings.api.refresh_idle_s

    def open_session() -> tuple[str, str, datetime]:
        with host.pool.connection(timeout=timeout_s) as conn:
            throttle.succeeded(conn, admission)
            return auth_sessions.open_session(conn, principal.user_id, max_s, idle_s)

    try:
        sid, refresh_token, end = await anyio.to_thread.run_sync(open_session)
    except psycopg.OperationalError:
        throttle.note_database(up=False)
        raise guard.unavailable(max(1, math.ceil(timeout_s))) from None
    guard.logins.labels("ok").inc()
    signed_in = Principal(principal.user_id, principal.role, principal.site_id, sid)
    return _issue_pair(host, signed_in, refresh_token, end)


@router.post("/auth/refresh", summary="New access token for a refresh token (rotated)",
             response_model=Token, **PUBLIC)  # fmt: skip
def refresh(host: HostDep, body: RefreshRequest) -> Token:
    with host.pool.connection() as conn:
        rotated = auth_sessions.rotate(conn, body.refresh_token, host.settings.api.refresh_idle_s)
    if rotated is None:
        raise unauthorized("refresh token invalid, used or expired: sign in again")
    principal = Principal(
        rotated.user_id, UserRole(rotated.role), rotated.site_id, rotated.session_id
    )
    return _issue_pair(host, principal, rotated.refresh_token, rotated.expires_at)


@router.post("/auth/logout", summary="End this session (its tokens stop working)",
             status_code=204, response_model=None, **allow(*ALL_ROLES))  # fmt: skip
def logout(host: HostDep, user: CurrentUser) -> None:
    assert user.session_id is not None  # get_current_user checked it
    with host.pool.connection() as conn:
        auth_sessions.revoke_session(conn, user.session_id, "logout")
    log.info("signed out", extra={"user_id": user.user_id})
