"""API authentication and authorisation: users, passwords, tokens and per-route roles.

- Passwords: argon2id (``argon2-cffi`` :class:`PasswordHasher`); only the hash is stored.
- Tokens: OAuth2 password flow, ``POST /auth/token`` returns a short-lived JWT (HS256,
  signed with ``api.jwt_secret``, lifetime ``api.token_ttl_s``, installers
  ``api.installer_token_ttl_s``) with the claims
  ``sub`` (user id), ``role``, ``site``, ``iat``, ``exp`` and ``jti``.
- The API refuses to start without a signing secret of at least :data:`MIN_SECRET_LENGTH`
  characters (:func:`check_jwt_secret`).
- Every route declares who may call it: ``**allow(Role...)`` on the route decorator adds
  the role check as a dependency and records the roles in the route's OpenAPI entry
  (``x-allowed-roles``); ``**PUBLIC`` declares a route open to anyone. A test walks
  ``app.routes`` and fails on any route without a declaration.

Logs carry user ids only, never user names or passwords.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import jwt
import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from pydantic import BaseModel

from gateway import audit
from gateway.settings import ApiSettings

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
    if len(password) < 8:
        raise AuthError("password too short: at least 8 characters")
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
        conn.execute(
            "INSERT INTO users (user_id, username, role, site_id, password_hash) "
            "VALUES (%s, %s, %s, %s, %s)",
            (uid, username, role.value, site_id, hash_password(password)),
        )
        for resident_id in links:
            conn.execute(
                "INSERT INTO family_links (user_id, resident_id) VALUES (%s, %s)",
                (uid, resident_id),
            )
        audit.append(conn, actor, "user.create", f"user:{uid}",
                     {"role": role.value, "site_id": site_id, "residents": links})  # fmt: skip
    log.info("user created", extra={"user_id": uid, "role": role.value})
    return uid


def authenticate(conn: psycopg.Connection[Any], username: str, password: str) -> Principal | None:
    """The active user with that name and password, or None (same cost either way)."""
    row = conn.execute(
        "SELECT user_id, role, site_id, password_hash FROM users WHERE username = %s AND active",
        (username,),
    ).fetchone()
    if row is None:
        verify_password(_DUMMY_HASH, password)
        return None
    user_id, role, site_id, password_hash = row
    if not verify_password(password_hash, password):
        log.info("sign-in refused", extra={"user_id": user_id})
        return None
    return Principal(user_id, UserRole(role), site_id)


# -- tokens ----------------------------------------------------------------------------


def issue_token(secret: str, principal: Principal, ttl_s: int, now: datetime | None = None) -> str:
    """A signed JWT for ``principal`` valid for ``ttl_s`` seconds."""
    iat = now or datetime.now(UTC)
    claims = {
        "sub": principal.user_id,
        "role": principal.role.value,
        "site": principal.site_id,
        "iat": iat,
        "exp": iat + timedelta(seconds=ttl_s),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(secret: str, token: str) -> Principal:
    """Verify ``token`` (signature, expiry, claims); raise :class:`jwt.InvalidTokenError`."""
    claims = jwt.decode(
        token, secret, algorithms=[ALGORITHM],
        options={"require": ["sub", "role", "exp", "iat", "jti"]},
    )  # fmt: skip
    try:
        role = UserRole(claims["role"])
    except ValueError:
        raise jwt.InvalidTokenError("unknown role") from None
    site = claims.get("site")
    return Principal(str(claims["sub"]), role, str(site) if site is not None else None)


# -- FastAPI dependencies --------------------------------------------------------------

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def get_current_user(request: Request, token: Annotated[str, Depends(oauth2_scheme)]) -> Principal:
    """The verified caller; 401 when the token is missing, forged or expired."""
    secret: str = request.app.state.jwt_secret
    try:
        return decode_token(secret, token)
    except jwt.ExpiredSignatureError:
        raise _unauthorized("token expired") from None
    except jwt.InvalidTokenError:
        raise _unauthorized("invalid token") from None


CurrentUser = Annotated[Principal, Depends(get_current_user)]


def _require(allowed: frozenset[UserRole]) -> Callable[[Principal], Principal]:
    def require_role(user: CurrentUser) -> Principal:
        if user.role not in allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="not allowed for this role")
        return user

    require_role.allowed_roles = allowed  # type: ignore[attr-defined]
    return require_role


def allow(*allowed: UserRole) -> dict[str, Any]:
    """Route-decorator keywords: only ``allowed`` roles may call the route (403 otherwise).

    Use as ``@router.get("/x", **allow(*STAFF))``; the roles also appear in the route's
    OpenAPI entry under ``x-allowed-roles``.
    """
    if not allowed:
        raise AuthError("a route must allow at least one role (or be declared PUBLIC)")
    roles = frozenset(allowed)
    return {
        "dependencies": [Depends(_require(roles))],
        "openapi_extra": {ROLES_KEY: sorted(r.value for r in roles)},
    }


# Route-decorator keywords for a route anyone may call (health, metrics, sign-in).
PUBLIC: dict[str, Any] = {"openapi_extra": {ROLES_KEY: [PUBLIC_ROLE]}}


# -- the token route -------------------------------------------------------------------


class Token(BaseModel):
    """An OAuth2 bearer token."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)
    expires_in: int
    role: UserRole


def build_auth_router() -> APIRouter:
    """``POST /auth/token``: the OAuth2 password flow."""
    router = APIRouter(tags=["auth"])

    @router.post("/auth/token", summary="Sign in (OAuth2 password flow)", **PUBLIC)
    def token(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Token:
        state = request.app.state
        with state.pool.connection() as conn:
            principal = authenticate(conn, form.username, form.password)
        if principal is None:
            raise _unauthorized("incorrect username or password")
        # Per-role lifetimes (installers: api.installer_token_ttl_s), else api.token_ttl_s.
        ttl: int = getattr(state, "token_ttl_by_role", {}).get(principal.role, state.token_ttl_s)
        return Token(
            access_token=issue_token(state.jwt_secret, principal, ttl),
            expires_in=ttl,
            role=principal.role,
        )

    return router


# -- database access for routes --------------------------------------------------------


def get_conn(request: Request) -> Iterator[psycopg.Connection[Any]]:
    """A pooled autocommit connection for the length of one request."""
    with request.app.state.pool.connection() as conn:
        yield conn


DbConn = Annotated[psycopg.Connection[Any], Depends(get_conn)]


def registry_writes(request: Request) -> Iterator[None]:
    """Router dependency of the registry-changing routers: after a successful POST/PATCH/...
    (its transaction committed: this dependency is set up first, so it exits last), tell the
    running gateway (``app.state.registry_changed``) to reload the device registry."""
    yield
    changed = getattr(request.app.state, "registry_changed", None)
    if request.method not in ("GET", "HEAD") and changed is not None:
        changed()
