"""User management by admins: deactivate, reactivate, set a password (issue 10 §3).

Every change revokes what it must in the same transaction (deactivation and a new password
end every session of the user: their tokens are refused on the next request, their live
streams close within ``api.stream_recheck_s``) and is audited with the admin as actor.
The CLI offers the same (``safehome user deactivate|reactivate|passwd``).

``POST /users/{user_id}/unlock`` ends a sign-in lockout (the throttle's failures of the
user's sign-in name, :mod:`gateway.api.login_throttle`): admins for anyone, supervisors for
users of their own site; audited ``auth.unlocked`` (``safehome user unlock`` likewise).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from gateway.api.auth import AuthError, check_new_password, hash_password
from gateway.api.deps import CurrentUser, DbConn, HostDep, UserRole, allow
from gateway.storage import auth_sessions, users


class UserChange(BaseModel):
    """The outcome of a user-management action."""

    user_id: str
    active: bool | None = None
    changed: bool
    sessions_revoked: int | None = None


class Unlocked(BaseModel):
    """The outcome of ``POST /users/{user_id}/unlock``."""

    user_id: str
    failures_cleared: int  # 0: the account was not locked (nothing to clear)


class NewPassword(BaseModel):
    """``POST /users/{user_id}/password``."""

    password: str = Field(min_length=8, max_length=256)


def _not_found(user_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user {user_id}")


router = APIRouter(tags=["users"])
ADMIN_ONLY = allow(UserRole.ADMIN)


@router.post("/users/{user_id}/deactivate", summary="Deactivate a user (ends sessions)",
             **ADMIN_ONLY)  # fmt: skip
def deactivate(user_id: str, user: CurrentUser, conn: DbConn) -> UserChange:
    if user_id == user.user_id:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="you cannot deactivate yourself")
    try:
        changed = auth_sessions.set_active(conn, user_id, False, actor=user.user_id)
    except auth_sessions.UserNotFoundError:
        raise _not_found(user_id) from None
    return UserChange(user_id=user_id, active=False, changed=changed)


@router.post("/users/{user_id}/reactivate", summary="Reactivate a user", **ADMIN_ONLY)
def reactivate(user_id: str, user: CurrentUser, conn: DbConn) -> UserChange:
    try:
        changed = auth_sessions.set_active(conn, user_id, True, actor=user.user_id)
    except auth_sessions.UserNotFoundError:
        raise _not_found(user_id) from None
    return UserChange(user_id=user_id, active=True, changed=changed)


@router.post("/users/{user_id}/password", summary="Set a user's password (ends sessions)",
             **ADMIN_ONLY)  # fmt: skip
def set_password(user_id: str, body: NewPassword, user: CurrentUser, conn: DbConn) -> UserChange:
    try:
        check_new_password(body.password)
    except AuthError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    try:
        revoked = auth_sessions.set_password_hash(
            conn, user_id, hash_password(body.password), actor=user.user_id
        )
    except auth_sessions.UserNotFoundError:
        raise _not_found(user_id) from None
    return UserChange(user_id=user_id, changed=True, sessions_revoked=revoked)


@router.post("/users/{user_id}/unlock", summary="End a sign-in lockout (failed passwords)",
             response_model=Unlocked, **allow(UserRole.ADMIN, UserRole.SUPERVISOR))  # fmt: skip
def unlock(user_id: str, user: CurrentUser, conn: DbConn, host: HostDep) -> Unlocked:
    found = users.sign_in_name(conn, user_id)
    if found is None and user.is_admin:
        raise _not_found(user_id)
    if found is None or not (
        user.is_admin or (user.site_id is not None and found[1] == user.site_id)
    ):
        # A supervisor learns nothing of users beyond their site, not even whether they exist.
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="not allowed for this user")
    cleared = host.login_guard.throttle.unlock(conn, found[0], user_id=user_id, actor=user.user_id)
    return Unlocked(user_id=user_id, failures_cleared=cleared)
