# ruff: noqa: F811 - fixtures imported from other test modules are parameters here
"""Installer actions are audited (issue 10 §4), through the real API, broker and database:
credentials issued, rotated and revoked, binds and unbinds, registry creates and edits, bulk
imports. The audit log holds ids and the names of changed fields, never names or phones; a
refused change leaves no entry; the chain stays intact."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway import audit
from tests.integration.test_installer_api import (  # noqa: F401 - the fixture
    Inst,
    _register,
    _user_id,
    inst,
)

pytestmark = pytest.mark.integration


def _entries(inst: Inst, after: int) -> list[tuple[Any, ...]]:
    """Audit entries after ``after``, without the (already audited) reads of health data."""
    return inst.db.rows(
        "SELECT actor, action, target, data FROM audit_log WHERE seq > %s "
        "AND action <> 'health_data.read' ORDER BY seq",
        (after,),
    )


def test_device_lifecycle_and_registry_changes_are_audited(inst: Inst) -> None:
    me = _user_id(inst.db, "inst-a")
    start = int(inst.db.scalar("SELECT coalesce(max(seq), 0) FROM audit_log"))
    with inst.client("installer") as c:
        dev = _register(c, kind="button", model="BT9", serial="SN-0777")["config"]["device_id"]
        assert c.post(f"/devices/{dev}/credentials/rotate").status_code == 200
        room = {"location_id": "room-777", "kind": "room", "label": "Room 777"}
        assert c.post("/sites/site-a/locations", json=room).status_code == 201
        bed = {"bed_code": "BED-0777", "location_id": "room-777"}
        assert c.post("/sites/site-a/beds", json=bed).status_code == 201
        resident = {"elder_code": "ELD-0777", "display_name": "王秀英", "care_level": 2,
                    "bed_code": "BED-0777"}  # fmt: skip
        made = c.post("/sites/site-a/residents", json=resident)
        assert made.status_code == 201, made.text
        rid = made.json()["resident_id"]
        assert c.patch(f"/residents/{rid}", json={"display_name": "王秀兰"}).status_code == 200
        assert c.post(f"/devices/{dev}/bind", json={"bed": "BED-0777"}).status_code == 200
        assert c.post(f"/devices/{dev}/unbind").status_code == 200
        assert c.post(f"/devices/{dev}/decommission", json={"reason": "x"}).status_code == 200
        # Refused changes leave no entry.
        assert c.post(f"/devices/{dev}/bind", json={"bed": "BED-NOPE"}).status_code in (404, 409)
        assert c.post("/sites/site-a/beds", json=bed).status_code == 409
        csv_body = "location_id,kind,label,address\nroom-778,room,Room 778,\n"
        imported = c.post(
            "/sites/site-a/import/locations?dry_run=false",
            content=csv_body.encode(),
            headers={"Content-Type": "text/csv"},
        )
        assert imported.json()["created"] == 1
    got = [(a, act, t) for a, act, t, _ in _entries(inst, start)]
    assert got == [
        (me, "device.register", f"device:{dev}"),
        (me, "device.credentials.rotate", f"device:{dev}"),
        (me, "registry.location.create", "location:room-777"),
        (me, "registry.bed.create", "bed:BED-0777"),
        (me, "registry.resident.create", f"resident:{rid}"),
        (me, "registry.resident.edit", f"resident:{rid}"),
        (me, "device.bind", f"device:{dev}"),
        (me, "device.unbind", f"device:{dev}"),
        (me, "device.decommission", f"device:{dev}"),
        (me, "registry.locations.import", "site:site-a"),
    ]
    data = {act: d for _, act, _, d in _entries(inst, start)}
    assert data["device.register"]["credentials"] == "issued"
    assert data["device.decommission"] == {"credentials": "revoked"}
    assert data["device.bind"]["bed_id"] == "BED-0777"
    assert data["registry.resident.edit"] == {"fields": ["display_name"]}
    text = str(_entries(inst, start))
    for personal in ("王秀", "Room 777"):
        assert personal not in text
    with inst.db.connect() as conn:
        assert audit.verify(conn).ok


def test_site_apply_is_audited_with_the_credentials_it_issued(inst: Inst) -> None:
    rows = inst.db.rows(
        "SELECT actor, data FROM audit_log WHERE action = 'registry.site.apply' "
        "AND target = 'site:site-a'"
    )
    assert len(rows) == 1
    actor, data = rows[0]
    assert actor == "cli" and data["devices"] == 6 and data["residents"] == 2
    assert "site-a-bt0" in data["credentials_issued"]
    assert "Resident" not in str(data)  # ids and counts only


def test_user_creation_is_audited(inst: Inst) -> None:
    rows = inst.db.rows(
        "SELECT actor, target, data FROM audit_log WHERE action = 'user.create' ORDER BY seq"
    )
    assert [(a, t) for a, t, _ in rows] == [
        ("cli", f"user:{_user_id(inst.db, n)}") for n in ("inst-a", "inst-b", "duty-a", "root")
    ]
    assert rows[0][2] == {"role": "installer", "site_id": "site-a", "residents": []}


def test_admin_site_changes_are_audited(inst: Inst) -> None:
    start = int(inst.db.scalar("SELECT coalesce(max(seq), 0) FROM audit_log"))
    with inst.client("admin") as c:
        body = {"site_id": "site-q", "name": "Q", "kind": "nursing_home"}
        assert c.post("/sites", json=body).status_code == 201
        assert c.patch("/sites/site-q", json={"name": "Q2"}).status_code == 200
    with httpx.Client(base_url=inst.gw.api_url) as anon:
        assert anon.post("/sites", json=body).status_code == 401
    root = _user_id(inst.db, "root")
    assert [(a, act, t, d) for a, act, t, d in _entries(inst, start)] == [
        (root, "registry.site.create", "site:site-q", {}),
        (root, "registry.site.edit", "site:site-q", {"fields": ["name"]}),
    ]
