"""Residents' own phones and rooms'/homes' landlines (what click-to-call dials) set through the
installer's imports: the site definition (TOML) and the CSV imports of the installer API, on a
real gateway with real PostgreSQL and Mosquitto. The duty console's callee list shows the
numbers masked; a bad number is refused with where it is (never the number itself); a
left-out phone keeps the current one; audit entries and logs name owners, never numbers."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api.auth import create_user
from gateway.commissioning import (
    CommissioningError,
    apply_site_definition,
    load_site_definition,
)
from gateway.workflow.service import IncidentService, Trigger
from gateway.workflow.transitions import IncidentType
from tests.support import Broker, Database, InProcessGateway, gateway_settings, signed_in_client

pytestmark = pytest.mark.integration

PASSWORD = "pw-" + uuid.uuid4().hex[:12]
ROOM_LINE = "021-5555 0199"  # p-l0's landline (site definition)
OWN_PHONE = "+86 138 1234 1234"  # p-r1's own phone (site definition)
HOME_LINE = "0571 8888 0000"  # p-l1's landline (locations CSV)
NEW_PHONE = "13912345678"  # p-r0's own phone (residents CSV)
NUMBERS = (ROOM_LINE, OWN_PHONE, HOME_LINE, NEW_PHONE, "02155550199", "13812341234",
           "057188880000")  # fmt: skip

SITE = """
[site]
id = "site-p"
name = "Phones"
kind = "nursing_home"

[[locations]]
id = "p-l0"
kind = "room"
label = "Room 100"
phone = "{room}"

[[locations]]
id = "p-l1"
kind = "room"
label = "Room 101"

[[beds]]
id = "p-b0"
code = "BED-p-0000"
location = "p-l0"

[[beds]]
id = "p-b1"
code = "BED-p-0001"
location = "p-l1"

[[residents]]
id = "p-r0"
code = "ELD-p-0000"
name = "Resident 0"
bed = "p-b0"
care_level = 2

[[residents]]
id = "p-r1"
code = "ELD-p-0001"
name = "Resident 1"
bed = "p-b1"
care_level = 2
{r1_phone}
"""


def _site(tmp_path: Path, *, room: str = ROOM_LINE, r1_phone: str = f'phone = "{OWN_PHONE}"'
          ) -> Path:  # fmt: skip
    path = tmp_path / f"site-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(SITE.format(room=room, r1_phone=r1_phone), encoding="utf-8")
    return path


def _apply(db: Database, path: Path) -> None:
    with db.connect() as conn:
        apply_site_definition(conn, load_site_definition(path))


def _raise(db: Database, resident: str) -> int:
    with db.connect() as conn:
        incident, _ = IncidentService(conn).raise_or_join(
            Trigger(IncidentType.EMERGENCY_CALL, "site-p", datetime.now(UTC), "button",
                    resident_id=resident)
        )  # fmt: skip
    return incident.id


def _no_number_in(text: str) -> None:
    for number in NUMBERS:
        assert number not in text, f"a phone number leaked: …{number[-4:]}"


def _audit(db: Database, action: str) -> list[dict[str, Any]]:
    rows = db.rows("SELECT data FROM audit_log WHERE action = %s ORDER BY seq", (action,))
    return [r[0] for r in rows]


def test_site_definition_and_csv_imports_set_the_numbers_click_to_call_dials(
    db: Database, broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _apply(db, _site(tmp_path))
    with db.connect() as conn:
        create_user(conn, "duty-p", "duty_staff", PASSWORD, site_id="site-p")
        create_user(conn, "inst-p", "installer", PASSWORD, site_id="site-p")
    first = {"p-r0": _raise(db, "p-r0"), "p-r1": _raise(db, "p-r1")}

    def masked(c: httpx.Client) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for rid, incident_id in first.items():
            listed = c.get(f"/incidents/{incident_id}/callees")
            assert listed.status_code == 200, listed.text
            _no_number_in(listed.text)
            [me] = [e for e in listed.json() if e["kind"] == "resident"]
            assert me["phone"] is None  # duty staff never see the number itself
            out[rid] = me["masked_phone"]
        return out

    def imp(c: httpx.Client, kind: str, text: str, *, dry: bool = False) -> dict[str, Any]:
        resp = c.post(f"/sites/site-p/import/{kind}?dry_run={str(dry).lower()}",
                      content=text.encode(), headers={"Content-Type": "text/csv"})  # fmt: skip
        assert resp.status_code == 200, resp.text
        _no_number_in(resp.text)
        out: dict[str, Any] = resp.json()
        return out

    with InProcessGateway(gateway_settings(db, broker)) as gw:
        duty = signed_in_client(gw.api_url, "duty-p", PASSWORD)
        inst = signed_in_client(gw.api_url, "inst-p", PASSWORD)
        # The site definition: p-r0 has no own phone, so their room's landline; p-r1's own.
        assert masked(duty) == {"p-r0": "021****0199", "p-r1": "138****1234"}

        # CSV: p-l1 gets a landline; p-r0 an own phone; p-r1's empty cell keeps theirs.
        locs = f"location_id,kind,label,phone\np-l1,room,Room 101,{HOME_LINE}\n"
        assert imp(inst, "locations", locs, dry=True)["errors"] == []
        assert db.scalar("SELECT phone FROM locations WHERE location_id = 'p-l1'") is None
        assert imp(inst, "locations", locs)["updated"] == 1
        residents = (
            "resident_id,elder_code,display_name,care_level,bed_code,phone\n"
            f"p-r0,ELD-p-0000,Resident 0,2,BED-p-0000,{NEW_PHONE}\n"
            "p-r1,ELD-p-0001,Resident 1,2,BED-p-0001,\n"
        )
        assert imp(inst, "residents", residents)["updated"] == 2
        assert masked(duty) == {"p-r0": "139****5678", "p-r1": "138****1234"}

        # Bad numbers: a row error with line and column, never the number; nothing written.
        bad = (
            "resident_id,elder_code,display_name,care_level,bed_code,phone\n"
            "p-r0,ELD-p-0000,Resident 0,2,BED-p-0000,13700001111\n"
            "p-r1,ELD-p-0001,Resident 1,2,BED-p-0001,call 138 1234 1234 x9\n"
        )
        out = imp(inst, "residents", bad)
        assert [(e["line"], e["column"]) for e in out["errors"]] == [(3, "phone")]
        assert "not a phone number" in json.dumps(out) and "1234 x9" not in json.dumps(out)
        bad_loc = "location_id,kind,label,phone\np-l0,room,Room 100,12\n"
        out = imp(inst, "locations", bad_loc)
        assert [(e["line"], e["column"]) for e in out["errors"]] == [(2, "phone")]
        assert masked(duty) == {"p-r0": "139****5678", "p-r1": "138****1234"}

        # The site definition again: `phone = ""` clears p-r1's own phone (so p-l1's landline
        # from the CSV is dialled); p-r0, who has no phone key, keeps the CSV's number.
        _apply(db, _site(tmp_path, r1_phone='phone = ""'))
        assert masked(duty) == {"p-r0": "139****5678", "p-r1": "057****0000"}
        # A bad number or one written as a TOML number is refused, and nothing changes.
        for r1_phone, why in (('phone = "ring ring"', "not a phone number"),
                              ("phone = 13812341234", "quoted string")):  # fmt: skip
            with pytest.raises(CommissioningError, match=f"residents\\[1\\].*{why}") as exc:
                _apply(db, _site(tmp_path, room="0000000", r1_phone=r1_phone))
            _no_number_in(str(exc.value))
        assert db.scalar("SELECT phone FROM locations WHERE location_id = 'p-l0'") == ROOM_LINE
        assert masked(duty) == {"p-r0": "139****5678", "p-r1": "057****0000"}
        duty.close()
        inst.close()

    # Audit: whose phone changed, never the number (an unchanged number is not listed).
    assert [d["phone_changed"] for d in _audit(db, "registry.site.apply")] == [
        ["location:p-l0", "resident:p-r1"], ["resident:p-r1"]]  # fmt: skip
    assert [d["phone_changed"] for d in _audit(db, "registry.locations.import")] == [
        ["location:p-l1"]]  # fmt: skip
    assert [d["phone_changed"] for d in _audit(db, "registry.residents.import")] == [
        ["resident:p-r0"]]  # fmt: skip
    _no_number_in(" ".join(r[0] for r in db.rows("SELECT data::text FROM audit_log", ())))
    for record in caplog.records:
        _no_number_in(record.getMessage() + repr(record.__dict__))
