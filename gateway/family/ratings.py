"""Family ratings: after an incident of their relative is resolved or closed, a family
member rates how it was handled (1-5 stars, an optional comment), once per incident; they
may change it for ``family.rating_edit_window_s`` after giving it. Audited (the stars, never
the comment's text). Counted per site and month for supervision (:func:`site_month`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from gateway import audit
from gateway.errors import ConflictError, InvalidError, NotFoundError
from gateway.settings.family import FamilySettings
from gateway.storage import family_ratings as store

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

RATEABLE_STATES: Final = frozenset({"resolved", "closed"})
COMMENT_MAX: Final = 500


def editable_until(created_at: datetime, settings: FamilySettings) -> datetime:
    return created_at + timedelta(seconds=settings.rating_edit_window_s)


def rate(
    conn: Conn,
    user_id: str,
    incident_id: int,
    *,
    stars: int,
    comment: str | None,
    now: datetime,
    settings: FamilySettings,
) -> dict[str, Any]:
    """Give or change the user's rating of the incident. :class:`NotFoundError` when it is
    not an incident of their relative (or not shared with them), :class:`ConflictError`
    when it is not resolved yet or the rating can no longer be changed."""
    if not 1 <= stars <= 5:
        raise InvalidError("stars are 1 to 5")
    text = (comment or "").strip() or None
    if text is not None and "\x00" in text:
        raise InvalidError("the comment contains a NUL character")
    if text is not None and len(text) > COMMENT_MAX:
        raise InvalidError(f"the comment is at most {COMMENT_MAX} characters")
    with conn.transaction():
        incident = store.rateable_incident(conn, user_id, incident_id)
        if incident is None:
            raise NotFoundError("no such incident")
        if incident["state"] not in RATEABLE_STATES:
            raise ConflictError("the incident is not resolved yet", hint="处理完成后才能评价")
        before = store.rating(conn, incident_id, user_id)
        if before is not None and now > editable_until(before["created_at"], settings):
            raise ConflictError("the rating can no longer be changed", hint="评价已超过可修改期限")
        row = store.save(conn, incident, user_id, stars=stars, comment=text, now=now)
        audit.append(conn, user_id, "incident.rated" if before is None else "incident.rerated",
                     f"incident:{incident_id}",
                     {"stars": stars, "comment": text is not None,
                      "resident": incident["resident_id"]})  # fmt: skip
    log.info("incident rated", extra={"incident": incident_id, "stars": stars,
                                      "changed": before is not None})  # fmt: skip
    return row


def site_month(
    conn: Conn, site_ids: Sequence[str] | None, start: datetime, end: datetime
) -> dict[str, Any]:
    """The ratings of ``site_ids`` given in [start, end): per site (count, average) and in
    all (``family_ratings``, ``family_rating_avg``)."""
    rows = store.monthly_by_site(conn, site_ids, start, end)
    count = sum(int(r["ratings"]) for r in rows)
    total = sum(int(r["stars_total"]) for r in rows)
    return {
        "sites": rows,
        "family_ratings": count,
        "family_rating_avg": round(total / count, 2) if count else None,
    }
