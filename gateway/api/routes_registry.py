"""Installer routes over the registry: sites, locations, beds, residents, CSV import.

The contract is docs/installer-api.md. Installers act on the site of their token (another
site's object is 404, an explicit ``?site=`` of another site 403); admins on any site.
Errors carry ``detail`` and, where the user can act on it, a ``hint``
(domain errors, :mod:`gateway.errors`, turned into JSON by ``gateway.api.errors``).

Every read of a resident's record (the record, the resident list, a change's answer) is
audited as ``health_data.read`` with the reader's user id, like the staff context card.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway import audit, registry_import
from gateway import registry_admin as reg
from gateway.api.deps import (
    CurrentUser,
    DbConn,
    HostDep,
    Principal,
    UserRole,
    allow,
    may_see_site,
    registry_writes,
)
from gateway.api.schemas import ApiModel
from gateway.errors import ForbiddenError, InvalidError
from gateway.facts import DEFAULT_UTC_OFFSET_S_INT
from gateway.registry_rules import CODE_PATTERN, ID_PATTERN, ImportKind, LocationKind, SiteKind
from gateway.storage.registry import Bed, BedRecord, Location, Resident, ResidentRecord, Site

INSTALLERS = (UserRole.INSTALLER, UserRole.ADMIN)
Code = Annotated[str, Field(min_length=3, max_length=64, pattern=CODE_PATTERN)]
Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
Text = Annotated[str, Field(min_length=1, max_length=200)]


class SiteIn(BaseModel):
    site_id: Ident
    name: Text
    kind: SiteKind
    utc_offset_s: int = Field(DEFAULT_UTC_OFFSET_S_INT, ge=-14 * 3600, le=14 * 3600)


class SitePatch(BaseModel):
    name: Text | None = None
    utc_offset_s: int | None = Field(None, ge=-14 * 3600, le=14 * 3600)


class LocationIn(BaseModel):
    location_id: Ident
    kind: LocationKind
    label: Text
    address: Annotated[str, Field(max_length=500)] | None = None


class LocationPatch(BaseModel):
    kind: LocationKind | None = None
    label: Text | None = None
    address: Annotated[str, Field(max_length=500)] | None = None


class BedIn(BaseModel):
    bed_code: Code
    location_id: Ident
    bed_id: Ident | None = None


class BedPatch(BaseModel):
    bed_code: Code | None = None
    location_id: Ident | None = None


class ResidentIn(BaseModel):
    elder_code: Code
    display_name: Text
    care_level: int = Field(ge=0, le=5)
    resident_id: Ident | None = None
    bed_id: Ident | None = None
    bed_code: Code | None = None
    lives_alone: bool = False
    high_risk: bool = False
    consent_family_health: bool = False
    consent_family_incidents: bool = True


class ResidentPatch(BaseModel):
    elder_code: Code | None = None
    display_name: Text | None = None
    care_level: int | None = Field(None, ge=0, le=5)
    bed: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None, description="bed_id or bed_code; null moves the resident out of their bed"
    )
    status: Literal["home", "away", "hospital"] | None = None
    lives_alone: bool | None = None
    high_risk: bool | None = None
    consent_family_health: bool | None = None
    consent_family_incidents: bool | None = None


# -- response models: the registry repository's own records (gateway.storage.registry) --


class ImportRowError(ApiModel):
    line: int
    column: str | None
    message: str


class ImportOut(ApiModel):
    """What a CSV import did (or would do, ``dry_run``): rows read, created, updated, and
    the row errors (nothing is applied when there is one)."""

    dry_run: bool
    rows: int
    created: int
    updated: int
    errors: list[ImportRowError]


def _changes(body: BaseModel, nullable: Iterable[str] = ()) -> dict[str, Any]:
    """Fields the client set; ``None`` kept only for ``nullable`` fields."""
    keep = set(nullable)
    return {k: v for k, v in body.model_dump(exclude_unset=True).items()
            if v is not None or k in keep}  # fmt: skip


def site_of(conn: DbConn, user: Principal, site_id: str) -> dict[str, Any]:
    """The site named in a path, if ``user`` may act on it (404 otherwise)."""
    if not may_see_site(user, site_id):
        raise reg.not_found("site", site_id, "installers work on the site of their login")
    return reg.get_site(conn, site_id)


def _visible(user: Principal, row: dict[str, Any], what: str, key: str) -> dict[str, Any]:
    if not may_see_site(user, row["site_id"]):
        raise reg.not_found(what, key)
    return row


def audit_resident_reads(
    conn: DbConn, user: Principal, resident_ids: Iterable[str], what: str
) -> None:
    """One ``health_data.read`` audit entry per resident read, in one transaction."""
    ids = list(resident_ids)
    if not ids:
        return
    with conn.transaction():
        for rid in ids:
            audit.append(conn, user.user_id, "health_data.read", f"resident:{rid}",
                         {"what": what})  # fmt: skip


def _audit(
    conn: DbConn,
    user: Principal,
    action: str,
    target: str,
    body: BaseModel | None = None,
    **data: Any,
) -> None:
    """Audit a registry change in its transaction: ids and the names of changed fields only
    (never their values: names, phones and addresses stay out of the audit log)."""
    if body is not None:
        data["fields"] = sorted(_changes(body))
    audit.append(conn, user.user_id, action, target, data)


router = APIRouter(tags=["registry"], dependencies=[Depends(registry_writes)])

# -- sites -----------------------------------------------------------------------------


@router.get(
    "/sites",
    summary="Sites visible to the caller",
    response_model=list[Site],
    **allow(*INSTALLERS),
)
def list_sites(user: CurrentUser, conn: DbConn) -> list[dict[str, Any]]:
    return reg.list_sites(conn, None if user.is_admin else user.site_id)


@router.post("/sites", summary="Create a site", status_code=status.HTTP_201_CREATED,
             response_model=Site, **allow(*INSTALLERS))  # fmt: skip
def create_site(body: SiteIn, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    if not user.is_admin and body.site_id != user.site_id:
        raise ForbiddenError("installers may create only their own site",
                             "ask an admin to create other sites")  # fmt: skip
    with conn.transaction():
        reg.create_site(conn, body.site_id, body.name, body.kind, body.utc_offset_s)
        _audit(conn, user, "registry.site.create", f"site:{body.site_id}")
    return reg.get_site(conn, body.site_id)


@router.get(
    "/sites/{site_id}", summary="One site with counts", response_model=Site, **allow(*INSTALLERS)
)
def get_site(site_id: str, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    return site_of(conn, user, site_id)


@router.patch("/sites/{site_id}", summary="Edit a site", response_model=Site, **allow(*INSTALLERS))
def patch_site(site_id: str, body: SitePatch, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    site_of(conn, user, site_id)
    with conn.transaction():
        reg.patch_site(conn, site_id, _changes(body))
        _audit(conn, user, "registry.site.edit", f"site:{site_id}", body)
    return reg.get_site(conn, site_id)


# -- locations -------------------------------------------------------------------------


@router.get("/sites/{site_id}/locations", summary="Locations of a site",
            response_model=list[Location], **allow(*INSTALLERS))  # fmt: skip
def list_locations(site_id: str, user: CurrentUser, conn: DbConn) -> list[dict[str, Any]]:
    site_of(conn, user, site_id)
    return reg.list_locations(conn, site_id)


@router.post("/sites/{site_id}/locations", summary="Create a location (room or home)",
             status_code=status.HTTP_201_CREATED, response_model=Location,
             **allow(*INSTALLERS))  # fmt: skip
def create_location(
    site_id: str, body: LocationIn, user: CurrentUser, conn: DbConn
) -> dict[str, Any]:
    site_of(conn, user, site_id)
    with conn.transaction():
        reg.create_location(conn, site_id, body.location_id, kind=body.kind,
                            label=body.label, address=body.address)  # fmt: skip
        _audit(
            conn,
            user,
            "registry.location.create",
            f"location:{body.location_id}",
            None,
            site_id=site_id,
        )
    return reg.find_location(conn, body.location_id)


@router.get(
    "/locations/{location_id}",
    summary="One location",
    response_model=Location,
    **allow(*INSTALLERS),
)
def get_location(location_id: str, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    return _visible(user, reg.find_location(conn, location_id), "location", location_id)


@router.patch(
    "/locations/{location_id}",
    summary="Edit a location",
    response_model=Location,
    **allow(*INSTALLERS),
)
def patch_location(
    location_id: str, body: LocationPatch, user: CurrentUser, conn: DbConn
) -> dict[str, Any]:
    _visible(user, reg.find_location(conn, location_id), "location", location_id)
    with conn.transaction():
        reg.patch_location(conn, location_id, _changes(body, nullable=("address",)))
        _audit(conn, user, "registry.location.edit", f"location:{location_id}", body)
    return reg.find_location(conn, location_id)


# -- beds ------------------------------------------------------------------------------


@router.get(
    "/sites/{site_id}/beds",
    summary="Beds of a site",
    response_model=list[Bed],
    **allow(*INSTALLERS),
)
def list_beds(site_id: str, user: CurrentUser, conn: DbConn) -> list[dict[str, Any]]:
    site_of(conn, user, site_id)
    return reg.list_beds(conn, site_id)


@router.post("/sites/{site_id}/beds", summary="Create a bed with its bed code",
             status_code=status.HTTP_201_CREATED, response_model=BedRecord,
             **allow(*INSTALLERS))  # fmt: skip
def create_bed(site_id: str, body: BedIn, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    site_of(conn, user, site_id)
    with conn.transaction():
        bed_id = reg.create_bed(conn, site_id, body.bed_code, body.location_id, body.bed_id)
        _audit(conn, user, "registry.bed.create", f"bed:{bed_id}", None, site_id=site_id)
    return reg.find_bed(conn, bed_id)


@router.get(
    "/beds/{bed}",
    summary="One bed by bed_id or bed_code",
    response_model=BedRecord,
    **allow(*INSTALLERS),
)
def get_bed(bed: str, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    return _visible(user, reg.find_bed(conn, bed), "bed", bed)


@router.patch(
    "/beds/{bed}",
    summary="Edit a bed (code, location)",
    response_model=BedRecord,
    **allow(*INSTALLERS),
)
def patch_bed(bed: str, body: BedPatch, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    row = _visible(user, reg.find_bed(conn, bed), "bed", bed)
    with conn.transaction():
        reg.patch_bed(conn, row, _changes(body))
        _audit(conn, user, "registry.bed.edit", f"bed:{row['bed_id']}", body)
    return reg.find_bed(conn, row["bed_id"])


# -- residents -------------------------------------------------------------------------


@router.get("/sites/{site_id}/residents", summary="Residents of a site (audited)",
            response_model=list[Resident], **allow(*INSTALLERS))  # fmt: skip
def list_residents(site_id: str, user: CurrentUser, conn: DbConn) -> list[dict[str, Any]]:
    site_of(conn, user, site_id)
    rows = reg.list_residents(conn, site_id)
    audit_resident_reads(conn, user, (r["resident_id"] for r in rows), "registry_list")
    return rows


@router.post("/sites/{site_id}/residents", summary="Create a resident with their elder code",
             status_code=status.HTTP_201_CREATED, response_model=ResidentRecord,
             **allow(*INSTALLERS))  # fmt: skip
def create_resident(
    site_id: str, body: ResidentIn, user: CurrentUser, conn: DbConn
) -> dict[str, Any]:
    site_of(conn, user, site_id)
    if body.bed_id and body.bed_code:
        raise InvalidError("give bed_id or bed_code, not both")
    values = body.model_dump()
    values["bed"] = body.bed_id or body.bed_code
    with conn.transaction():
        rid = reg.create_resident(conn, site_id, values)
        _audit(conn, user, "registry.resident.create", f"resident:{rid}", None, site_id=site_id)
    row = reg.find_resident(conn, rid)
    audit_resident_reads(conn, user, [rid], "registry_record")
    return row


@router.get("/residents/{resident}/registry",
            summary="A resident's registry record by resident_id or elder_code (audited)",
            response_model=ResidentRecord, **allow(*INSTALLERS))  # fmt: skip
def get_resident(resident: str, user: CurrentUser, conn: DbConn) -> dict[str, Any]:
    row = _visible(user, reg.find_resident(conn, resident), "resident", resident)
    audit_resident_reads(conn, user, [row["resident_id"]], "registry_record")
    return row


@router.patch("/residents/{resident}", summary="Edit a resident (bed, care level, ...)",
              response_model=ResidentRecord, **allow(*INSTALLERS))  # fmt: skip
def patch_resident(
    resident: str, body: ResidentPatch, user: CurrentUser, conn: DbConn
) -> dict[str, Any]:
    row = _visible(user, reg.find_resident(conn, resident), "resident", resident)
    with conn.transaction():
        reg.patch_resident(conn, row, _changes(body, nullable=("bed",)))
        _audit(conn, user, "registry.resident.edit", f"resident:{row['resident_id']}", body)
    out = reg.find_resident(conn, row["resident_id"])
    audit_resident_reads(conn, user, [row["resident_id"]], "registry_record")
    return out


# -- bulk import -----------------------------------------------------------------------


@router.post("/sites/{site_id}/import/{kind}",
             summary="Bulk import locations, beds or residents from CSV (dry run first)",
             response_model=ImportOut, **allow(*INSTALLERS))  # fmt: skip
async def import_csv(
    site_id: str,
    kind: ImportKind,
    request: Request,
    user: CurrentUser,
    conn: DbConn,
    *,
    host: HostDep,
    dry_run: Annotated[bool, Query()] = True,
) -> dict[str, Any]:
    limit: int = host.settings.commissioning.import_max_bytes
    raw = await request.body()
    if len(raw) > limit:
        raise reg.TooLargeError(f"the CSV is larger than {limit} bytes",
                                "split the file into smaller ones")  # fmt: skip
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidError(f"the CSV is not UTF-8 (byte {exc.start})",
                          "save it as 'CSV UTF-8' and try again") from None  # fmt: skip

    def run() -> dict[str, Any]:
        site_of(conn, user, site_id)
        with conn.transaction():
            result = registry_import.import_csv(conn, site_id, kind, text, dry_run=dry_run)
            out = result.json()
            if not dry_run and (out["created"] or out["updated"]):
                _audit(conn, user, f"registry.{kind}.import", f"site:{site_id}",
                       created=out["created"], updated=out["updated"],
                       phone_changed=result.phone_changed)  # fmt: skip
        return out

    return await run_in_threadpool(run)
