"""Each person's language for what the gateway sends them (issue 11 §2): admins set a staff
user's (pages, acknowledgement answers) or a family / community-worker contact's
(notifications), zh-CN by default or en. Audited (``user.language``, ``contact.language``),
without names. The browser pages keep their own per-browser switch.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from gateway.api.deps import CurrentUser, DbConn, UserRole, allow
from gateway.storage import languages


class LanguageBody(BaseModel):
    """The language to use: ``zh-CN`` (the default) or ``en``."""

    language: Literal["zh-CN", "en"]


class LanguageSet(BaseModel):
    """Whose language was set, and to what."""

    target: str
    language: str


router = APIRouter(tags=["people"])


@router.post("/users/{user_id}/language", response_model=LanguageSet,
             summary="Set a user's language for pages (admins; audited)",
             **allow(UserRole.ADMIN))  # fmt: skip
def set_user_language(
    user_id: str, body: LanguageBody, user: CurrentUser, conn: DbConn
) -> LanguageSet:
    languages.set_user_language(conn, user_id, body.language, actor=user.user_id)
    return LanguageSet(target=f"user:{user_id}", language=body.language)


@router.post("/contacts/{contact_id}/language", response_model=LanguageSet,
             summary="Set a contact's language for notifications (admins; audited)",
             **allow(UserRole.ADMIN))  # fmt: skip
def set_contact_language(
    contact_id: str, body: LanguageBody, user: CurrentUser, conn: DbConn
) -> LanguageSet:
    languages.set_contact_language(conn, contact_id, body.language, actor=user.user_id)
    return LanguageSet(target=f"contact:{contact_id}", language=body.language)
