"""District assignment (issue 13 §5) without code: which sites belong to a district and
which district supervisor (民政监管) or community worker belongs to one.

Used by ``safehome district ...`` (:mod:`gateway.cli_district`) and the admin routes of
:mod:`gateway.api.routes_districts`. Every change is audited (``district.site_assign``,
``district.site_unassign``, ``district.user_assign``) with the acting user (``cli`` from
the command line). SQL lives in :mod:`gateway.storage.supervision` and
:mod:`gateway.storage.visits`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Final

import psycopg

from gateway import audit
from gateway.errors import InvalidError, NotFoundError
from gateway.storage import auth_sessions
from gateway.storage import supervision as store
from gateway.storage import visits as visits_store

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
DISTRICT_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
"""District ids: letters, digits, ``_`` and ``-`` (the ``site_districts`` check)."""
DISTRICT_ROLES: Final = ("district_supervisor", "community_worker")
"""Roles a user must have to belong to a district."""


@dataclass(frozen=True, slots=True)
class District:
    """One district: its sites, its supervisors (user ids) and its community-worker count."""

    district_id: str
    sites: list[str]
    supervisors: list[str]
    workers: int


def check_district_id(district_id: str) -> str:
    """``district_id`` if well formed, else :class:`InvalidError`."""
    if not re.fullmatch(DISTRICT_PATTERN, district_id):
        raise InvalidError(f"not a district id: {district_id!r}",
                           hint="letters, digits, _ and -, at most 64")  # fmt: skip
    return district_id


def list_districts(conn: Conn, district_id: str | None = None) -> list[District]:
    """Every district with a site or a user (or only ``district_id``), by id."""
    return [
        District(str(r["district_id"]), list(r["sites"]), list(r["supervisors"]), int(r["workers"]))
        for r in store.districts(conn, district_id)
    ]


def get_district(conn: Conn, district_id: str) -> District:
    """One district (empty when nothing belongs to it yet)."""
    found = list_districts(conn, check_district_id(district_id))
    return found[0] if found else District(district_id, [], [], 0)


def assign_site(conn: Conn, site_id: str, district_id: str, *, actor: str) -> str | None:
    """Put ``site_id`` in ``district_id`` (moving it from its old district, which is
    returned); audited."""
    check_district_id(district_id)
    with conn.transaction():
        if store.site_info(conn, site_id) is None:
            raise NotFoundError(f"no site {site_id!r}")
        before = store.site_district(conn, site_id)
        visits_store.set_site_district(conn, site_id, district_id)
        audit.append(conn, actor, "district.site_assign", f"site:{site_id}",
                     {"district": district_id, "before": before})  # fmt: skip
    log.info("site district set", extra={"site": site_id, "district": district_id})
    return before


def unassign_site(conn: Conn, site_id: str, *, actor: str) -> str:
    """Take ``site_id`` out of its district (returned); audited. NotFound when it has none."""
    with conn.transaction():
        before = store.site_district(conn, site_id)
        if before is None or not store.unset_site_district(conn, site_id):
            raise NotFoundError(f"site {site_id!r} is in no district")
        audit.append(conn, actor, "district.site_unassign", f"site:{site_id}",
                     {"before": before})  # fmt: skip
    log.info("site district removed", extra={"site": site_id, "district": before})
    return before


def assign_user(conn: Conn, user: str, district_id: str, *, actor: str) -> tuple[str, str]:
    """Put a district supervisor or community worker (user id or sign-in name) in
    ``district_id``; returns (user id, role); audited."""
    check_district_id(district_id)
    with conn.transaction():
        user_id = auth_sessions.resolve_user(conn, user)
        role = None if user_id is None else visits_store.user_role(conn, user_id)
        if user_id is None or role is None:
            raise NotFoundError(f"no active user {user!r}")
        if role not in DISTRICT_ROLES:
            raise InvalidError(f"user {user_id} is a {role}",
                               hint="only district_supervisor and community_worker users "
                                    "belong to a district")  # fmt: skip
        before = visits_store.user_district(conn, user_id)
        visits_store.set_user_district(conn, user_id, district_id)
        audit.append(conn, actor, "district.user_assign", f"user:{user_id}",
                     {"district": district_id, "role": role, "before": before})  # fmt: skip
    log.info("user district set", extra={"user": user_id, "district": district_id})
    return user_id, role
