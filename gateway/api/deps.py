"""Typed FastAPI dependencies of the gateway API, and the host the app holds.

The app keeps ONE typed object, :class:`ApiHost`, on ``app.state.host`` (set by
:func:`install_host`); route handlers never read ``app.state`` themselves. They declare
what they need with ``Annotated`` dependencies::

    from gateway.api.deps import STAFF, CurrentUser, DbConn, HostDep, allow, scope_site

    @router.get("/things", response_model=list[Thing], **allow(*STAFF))
    def things(user: CurrentUser, conn: DbConn, host: HostDep, site: str | None = None) -> ...:
        site_id = scope_site(user, site)  # 403 for another site; admins: any site

- :data:`HostDep`, :data:`SettingsDep`, :data:`PoolDep`, :data:`DbConn` (one pooled
  autocommit connection per request), :data:`BrokerSyncDep`;
- :data:`CurrentUser`: the verified caller (401 when the token is missing, forged, expired
  or its session revoked), with its role;
- :func:`allow` (route-decorator keywords built on the :func:`require_roles` factory) and
  :data:`PUBLIC`: every route declares who may call it;
- the scope helpers :func:`scope_site` and :func:`may_see_site`.

:class:`GatewayHost` is what :func:`gateway.api.app.build_app` needs from the running
gateway (structurally: :class:`gateway.runtime.Runtime` satisfies it without importing
this module), so the API never imports the runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import jwt
import psycopg
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from psycopg_pool import ConnectionPool

from gateway import audit
from gateway.api.auth import (
    ALL_ROLES,
    PUBLIC_ROLE,
    ROLES_KEY,
    STAFF,
    AuthError,
    LoginGuard,
    Principal,
    UserRole,
    decode_token,
)
from gateway.brokersync import BrokerSync
from gateway.settings import Settings
from gateway.storage import auth_sessions
from gateway.telephony import build_adapter
from gateway.telephony.adapter import TelephonyAdapter
from gateway.telephony.metered import MeteredAdapter

if TYPE_CHECKING:
    from gateway.api.livefeed import LiveFeed
    from gateway.ingest import IngestPipeline
    from gateway.metrics import Metrics
    from gateway.mqttsession import MqttSession

__all__ = [
    "ALL_ROLES", "PUBLIC", "STAFF", "ApiHost", "BrokerSyncDep", "CurrentUser", "DbConn",
    "GatewayHost", "HostDep", "PoolDep", "Principal", "SettingsDep", "UserRole", "allow",
    "get_current_user", "install_host", "may_see_site", "registry_writes", "request_host",
    "require_roles", "scope_site", "session_open",
]  # fmt: skip


class DatabaseFacts(Protocol):
    """What the API shows of the database found at start-up (its TimescaleDB edition)."""

    @property
    def edition(self) -> Enum: ...


class GatewayHost(Protocol):
    """What the API reads of the running gateway (:class:`gateway.runtime.Runtime`)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def api_pool(self) -> ConnectionPool[Any] | None: ...
    @property
    def metrics(self) -> Metrics | None: ...
    @property
    def session(self) -> MqttSession | None: ...
    @property
    def ingest(self) -> IngestPipeline | None: ...
    @property
    def tsinfo(self) -> DatabaseFacts | None: ...
    @property
    def standby(self) -> bool: ...
    @property
    def stopping(self) -> bool: ...
    def registry_changed(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiHost:
    """Everything route dependencies read, typed, in one object on ``app.state.host``."""

    settings: Settings
    pool: ConnectionPool[Any]
    jwt_secret: str
    broker_sync: BrokerSync
    read_ledger: audit.ReadLedger
    login_guard: LoginGuard
    live_feed: LiveFeed
    metrics: Metrics | None = None
    # Called after a registry-changing request committed: the gateway reloads its registry.
    registry_changed: Callable[[], None] | None = None


def install_host(app: FastAPI, host: ApiHost) -> None:
    """Hand ``host`` to the app (the only value the API keeps on ``app.state``)."""
    app.state.host = host


def request_host(request: Request) -> ApiHost:
    """The :class:`ApiHost` of the app serving ``request`` (for helpers given the request)."""
    host: ApiHost = request.app.state.host
    return host


async def get_host(request: Request) -> ApiHost:
    """The app's :class:`ApiHost` (async, like the other trivial getters: no worker thread)."""
    return request_host(request)


HostDep = Annotated[ApiHost, Depends(get_host)]


async def get_settings(host: HostDep) -> Settings:
    """The gateway's settings."""
    return host.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_pool(host: HostDep) -> ConnectionPool[Any]:
    """The API's pool of autocommit connections."""
    return host.pool


PoolDep = Annotated[ConnectionPool[Any], Depends(get_pool)]


def get_conn(pool: PoolDep) -> Iterator[psycopg.Connection[Any]]:
    """A pooled autocommit connection for the length of one request."""
    with pool.connection() as conn:
        yield conn


DbConn = Annotated[psycopg.Connection[Any], Depends(get_conn)]


async def get_broker_sync(host: HostDep) -> BrokerSync:
    """Broker credentials and ACL sync (device create, rotate, replace, retire)."""
    return host.broker_sync


BrokerSyncDep = Annotated[BrokerSync, Depends(get_broker_sync)]


async def get_telephony(host: HostDep) -> TelephonyAdapter | None:
    """The click-to-call adapter of ``[telephony]`` (None when click-to-call is off),
    counted and timed on the gateway's metrics (gateway.telephony.metered)."""
    adapter = build_adapter(host.settings.telephony)
    if adapter is None or host.metrics is None:
        return adapter
    return MeteredAdapter(adapter, host.metrics)


TelephonyDep = Annotated[TelephonyAdapter | None, Depends(get_telephony)]


# -- the caller ------------------------------------------------------------------------

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token")
TokenDep = Annotated[str, Depends(oauth2_scheme)]


def unauthorized(detail: str) -> HTTPException:
    """A 401 that asks for a bearer token."""
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def session_open(pool: ConnectionPool[Any], principal: Principal) -> bool:
    """Whether the caller's session is still open and its user active (a database read)."""
    if not principal.session_id:
        return False
    with pool.connection() as conn:
        return auth_sessions.session_valid(conn, principal.session_id, principal.user_id)


def get_current_user(host: HostDep, token: TokenDep) -> Principal:
    """The verified caller; 401 when the token is missing, forged, expired or revoked."""
    try:
        principal = decode_token(host.jwt_secret, token)
    except jwt.ExpiredSignatureError:
        raise unauthorized("token expired") from None
    except jwt.InvalidTokenError:
        raise unauthorized("invalid token") from None
    if not session_open(host.pool, principal):
        raise unauthorized("session ended (signed out, password changed or user deactivated)")
    return principal


CurrentUser = Annotated[Principal, Depends(get_current_user)]


def require_roles(*allowed: UserRole) -> Callable[[Principal], Principal]:
    """A dependency: the caller, if their role is one of ``allowed`` (403 otherwise). The
    roles are kept on the function (``allowed_roles``) for the route-declaration test."""
    roles = frozenset(allowed)

    def require_role(user: CurrentUser) -> Principal:
        if user.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="not allowed for this role")
        return user

    require_role.allowed_roles = roles  # type: ignore[attr-defined]
    return require_role


def allow(*allowed: UserRole) -> dict[str, Any]:
    """Route-decorator keywords: only ``allowed`` roles may call the route (403 otherwise).

    Use as ``@router.get("/x", **allow(*STAFF))``; the roles also appear in the route's
    OpenAPI entry under ``x-allowed-roles``.
    """
    if not allowed:
        raise AuthError("a route must allow at least one role (or be declared PUBLIC)")
    return {
        "dependencies": [Depends(require_roles(*allowed))],
        "openapi_extra": {ROLES_KEY: sorted({r.value for r in allowed})},
    }


# Route-decorator keywords for a route anyone may call (health, metrics, sign-in).
PUBLIC: dict[str, Any] = {"openapi_extra": {ROLES_KEY: [PUBLIC_ROLE]}}


def registry_writes(request: Request, host: HostDep) -> Iterator[None]:
    """Router dependency of the registry-changing routers: after a successful POST/PATCH/...
    (its transaction committed: this dependency is set up first, so it exits last), tell the
    running gateway (:attr:`ApiHost.registry_changed`) to reload the device registry."""
    yield
    if request.method not in ("GET", "HEAD") and host.registry_changed is not None:
        host.registry_changed()


# -- scope -----------------------------------------------------------------------------


def scope_site(user: Principal, site: str | None) -> str | None:
    """The site a site-bound user may query (``site`` must be theirs); admins: ``site``."""
    if user.is_admin:
        return site
    if site is not None and site != user.site_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="not allowed for this site")
    return user.site_id


def may_see_site(user: Principal, site_id: str) -> bool:
    """Whether ``user`` may see something of ``site_id``."""
    return user.is_admin or user.site_id == site_id
