"""Registry administration for installers: sites, locations, beds and residents.

The API's installer routes (``gateway.api.routes_registry``) call these functions with a
pooled autocommit connection; each change runs in its own transaction. The rules (codes,
ids) come from :mod:`gateway.registry_rules`, the rows from the repository
:mod:`gateway.storage.registry`; problems are domain errors (:mod:`gateway.errors`) with a
``detail`` and, where the user can do something about it, a ``hint``. Answers are the
records as JSON-ready dicts. Bulk CSV import is :mod:`gateway.registry_import`.

Site scoping (an installer sees only their own site) is the routes' job; functions here
take the site.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from gateway.errors import ConflictError, InvalidError, NotFoundError
from gateway.registry_rules import check_code, check_id
from gateway.storage import registry as repo

Conn = psycopg.Connection[Any]


class TooLargeError(InvalidError):
    """A request body (an import file) over the configured size."""


def not_found(what: str, key: str, hint: str | None = None) -> NotFoundError:
    return repo.not_found(what, key, hint)


# -- sites -----------------------------------------------------------------------------


def list_sites(conn: Conn, site_id: str | None) -> list[dict[str, Any]]:
    return [s.model_dump() for s in repo.list_sites(conn, site_id)]


def get_site(conn: Conn, site_id: str) -> dict[str, Any]:
    return repo.get_site(conn, site_id).model_dump()


def create_site(conn: Conn, site_id: str, name: str, kind: str, utc_offset_s: int) -> None:
    repo.insert_site(conn, check_id(site_id, "site_id"), name, kind, utc_offset_s)


def patch_site(conn: Conn, site_id: str, changes: Mapping[str, Any]) -> None:
    repo.update_site(conn, site_id, changes)


# -- locations -------------------------------------------------------------------------


def list_locations(conn: Conn, site_id: str) -> list[dict[str, Any]]:
    return [loc.model_dump() for loc in repo.list_locations(conn, site_id)]


def find_location(conn: Conn, location_id: str) -> dict[str, Any]:
    return repo.find_location(conn, location_id).model_dump()


def create_location(
    conn: Conn, site_id: str, location_id: str, *, kind: str, label: str, address: str | None
) -> None:
    check_id(location_id, "location_id")
    try:
        repo.insert_location(conn, site_id, location_id, kind=kind, label=label, address=address)
    except psycopg.errors.UniqueViolation:
        raise ConflictError(
            f"location {location_id!r} already exists",
            "choose another location_id, or edit it with PATCH",
        ) from None


def patch_location(conn: Conn, location_id: str, changes: Mapping[str, Any]) -> None:
    repo.update_location(conn, location_id, changes)


# -- beds ------------------------------------------------------------------------------


def list_beds(conn: Conn, site_id: str) -> list[dict[str, Any]]:
    return [b.model_dump() for b in repo.list_beds(conn, site_id)]


def find_bed(conn: Conn, key: str) -> dict[str, Any]:
    """A bed by bed_id or bed_code (an id match wins), with its active devices."""
    return repo.find_bed(conn, key).model_dump()


def _location_of_site(conn: Conn, site_id: str, location_id: str) -> None:
    if repo.site_of_location(conn, location_id) != site_id:
        raise not_found("location", location_id,
                        f"create it first: safehome location create {location_id} ...")  # fmt: skip


def create_bed(
    conn: Conn, site_id: str, bed_code: str, location_id: str, bed_id: str | None
) -> str:
    check_code(bed_code, "bed_code")
    bid = check_id(bed_id or bed_code, "bed_id")
    with conn.transaction():
        _location_of_site(conn, site_id, location_id)
        if repo.bed_taken(conn, bed_code, bid):
            raise ConflictError(f"bed code {bed_code!r} or bed id {bid!r} is already in use",
                                f"show it: safehome bed show {bed_code}")  # fmt: skip
        repo.insert_bed(conn, site_id, bid, bed_code, location_id)
    return bid


def patch_bed(conn: Conn, bed: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
    with conn.transaction():
        if "bed_code" in changes:
            check_code(changes["bed_code"], "bed_code")
            if repo.bed_code_used_elsewhere(conn, changes["bed_code"], bed["bed_id"]):
                raise ConflictError(f"bed code {changes['bed_code']!r} is already in use")
        if "location_id" in changes:
            _location_of_site(conn, bed["site_id"], changes["location_id"])
        repo.update_bed(conn, bed["bed_id"], changes)


# -- residents -------------------------------------------------------------------------


def list_residents(conn: Conn, site_id: str) -> list[dict[str, Any]]:
    return [r.model_dump() for r in repo.list_residents(conn, site_id)]


def find_resident(conn: Conn, key: str) -> dict[str, Any]:
    """A resident by resident_id or elder_code (an id match wins), with devices bound."""
    return repo.find_resident(conn, key).model_dump()


def resolve_bed(conn: Conn, site_id: str, key: str) -> str:
    """The bed_id of bed ``key`` (id or code) at ``site_id``; not found otherwise."""
    found = repo.bed_site(conn, key)
    if found is None or found[1] != site_id:
        raise not_found("bed", key, repo.BED_HINT)
    return found[0]


def _bed_free(conn: Conn, bed_id: str, resident_id: str | None) -> None:
    holder = repo.resident_in_bed(conn, bed_id)
    if holder is not None and holder[0] != resident_id:
        raise ConflictError(
            f"bed {bed_id!r} is already assigned to resident {holder[1]}",
            f"move that resident first: safehome resident edit {holder[1]} --bed ...",
        )


def create_resident(conn: Conn, site_id: str, values: Mapping[str, Any]) -> str:
    elder_code = check_code(str(values["elder_code"]), "elder_code")
    rid = check_id(str(values.get("resident_id") or elder_code), "resident_id")
    with conn.transaction():
        if repo.resident_taken(conn, elder_code, rid):
            raise ConflictError(
                f"elder code {elder_code!r} or resident id {rid!r} is already in use",
                f"show it: safehome resident show {elder_code}",
            )
        bed_id = None
        if values.get("bed"):
            bed_id = resolve_bed(conn, site_id, str(values["bed"]))
            _bed_free(conn, bed_id, None)
        repo.insert_resident(
            conn, site_id, {**values, "resident_id": rid, "elder_code": elder_code,
                            "bed_id": bed_id},
        )  # fmt: skip
    return rid


def patch_resident(conn: Conn, resident: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
    cols = dict(changes)
    with conn.transaction():
        if "elder_code" in cols:
            check_code(cols["elder_code"], "elder_code")
            if repo.elder_code_used_elsewhere(conn, cols["elder_code"], resident["resident_id"]):
                raise ConflictError(f"elder code {cols['elder_code']!r} is already in use")
        if "bed" in cols:
            key = cols.pop("bed")
            bed_id = None if key is None else resolve_bed(conn, resident["site_id"], str(key))
            if bed_id is not None:
                _bed_free(conn, bed_id, str(resident["resident_id"]))
            cols["bed_id"] = bed_id
        repo.update_resident(conn, resident["resident_id"], cols)
