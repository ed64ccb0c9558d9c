"""Each person's language (``users.language``, ``contacts.language``; migration 0036).

zh-CN by default, ``en`` when chosen: staff pages follow the user's, family and
community-worker notifications the contact's. Changes are audited without a name.
"""

from __future__ import annotations

from typing import Any

import psycopg

from gateway import audit
from gateway.errors import InvalidError, NotFoundError

Conn = psycopg.Connection[Any]
LANGUAGES = ("zh-CN", "en")


def _check(language: str) -> str:
    if language not in LANGUAGES:
        raise InvalidError(f"language must be zh-CN or en, not {language!r}")
    return language


def set_user_language(conn: Conn, user_id: str, language: str, *, actor: str) -> None:
    """Set a user's language; audited (``user.language``)."""
    lang = _check(language)
    with conn.transaction():
        cur = conn.execute("UPDATE users SET language = %s WHERE user_id = %s", (lang, user_id))
        if cur.rowcount == 0:
            raise NotFoundError(f"no user {user_id}")
        audit.append(conn, actor, "user.language", f"user:{user_id}", {"language": lang})


def set_contact_language(conn: Conn, contact_id: str, language: str, *, actor: str) -> None:
    """Set a contact's language; audited (``contact.language``)."""
    lang = _check(language)
    with conn.transaction():
        cur = conn.execute(
            "UPDATE contacts SET language = %s WHERE contact_id = %s", (lang, contact_id)
        )
        if cur.rowcount == 0:
            raise NotFoundError(f"no contact {contact_id}")
        audit.append(conn, actor, "contact.language", f"contact:{contact_id}", {"language": lang})


def user_language(conn: Conn, user_id: str) -> str:
    """A user's language (zh-CN for an unknown user)."""
    row = conn.execute("SELECT language FROM users WHERE user_id = %s", (user_id,)).fetchone()
    return "zh-CN" if row is None else str(row[0])
