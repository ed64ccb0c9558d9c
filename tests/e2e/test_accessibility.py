"""Every page the gateway serves passes axe-core with no serious or critical violation (issue 11
§8), in Debian's Chromium at desktop (1366 px), tablet (768 px) and phone (390 px) widths.

The staff console (signed out, a refused sign-in, the board with a selected incident and its
actions, the shift handover, the live bed board, in both languages), the family view, the
community worker's page (list and record form) and the district page, signed out and in, with
real data behind them: a real gateway, PostgreSQL and Mosquitto. axe.min.js comes from the
installed axe-playwright-python package (pip), never from a CDN.

SAFEHOME_AXE_REPORT=<file.json> keeps every violation found (any impact), page by page.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api.auth import create_user
from gateway.storage import people
from gateway.storage import visits as visits_store
from gateway.workflow.service import IncidentService, Trigger
from gateway.workflow.transitions import IncidentType
from tests.browser import (
    PASSWORD,
    WIDTHS,
    axe_blocking,
    axe_report,
    axe_violations,
    new_page,
    shot,
    sign_in,
)
from tests.support import (
    Broker,
    Database,
    InProcessGateway,
    access_token,
    gateway_settings,
    make_site,
)

pytestmark = pytest.mark.e2e

REPORT = os.environ.get("SAFEHOME_AXE_REPORT")
FALL_DETAILS = {"peak_g": 3.6, "posture_change_deg": 92.0, "confirm_window_s": 30.0, "sos": False}


def _raise(db: Database, kind: IncidentType, **kw: Any) -> int:
    with db.connect() as conn:
        incident, _ = IncidentService(conn).raise_or_join(
            Trigger(kind, "site-a", datetime.now(UTC), "detector text", **kw)
        )
    return incident.id


def _seed(db: Database, broker: Broker) -> dict[str, int]:
    make_site(db, broker, site_id="site-a", beds=4)
    with db.connect() as conn:
        duty = create_user(conn, "duty-a", "duty_staff", PASSWORD, site_id="site-a")
        create_user(conn, "sup-a", "supervisor", PASSWORD, site_id="site-a")
        people.set_display_name(conn, duty, "张丽", actor="test")
        conn.execute("UPDATE residents SET display_name = '李秀英', "
                     "consent_family_incidents = true WHERE resident_id = 'site-a-r0'")  # fmt: skip
        conn.execute(
            "INSERT INTO contacts (contact_id, resident_id, kind, display_name, relation, phone)"
            " VALUES ('c1', 'site-a-r0', 'family', 'Daughter', 'daughter', '13800000000')"
        )
        create_user(conn, "fam-a", "family", PASSWORD, residents=["site-a-r0"])
        people.set_care_phone(conn, "site-a", "0571-8888 6000", actor="test")
        worker = create_user(conn, "worker-a", "community_worker", PASSWORD)
        dsup = create_user(conn, "dsup-east", "district_supervisor", PASSWORD)
        visits_store.set_site_district(conn, "site-a", "d-east")
        visits_store.set_user_district(conn, dsup, "d-east")
        visits_store.assign_worker(conn, "site-a-r0", worker)
        visits_store.set_risks(conn, "site-a-r0", ["high_risk", "living_alone"])
        conn.execute("UPDATE residents SET created_at = now() - interval '20 days'")  # overdue
    ids = {
        "battery": _raise(db, IncidentType.LOW_BATTERY, resident_id="site-a-r1",
                          subject="site-a-wr1", details={"device_kind": "wearable",
                                                         "battery_pct": 9}),
        "hub": _raise(db, IncidentType.HUB_OFFLINE, subject="site-a-l1", details={"devices": 3}),
        "quiet": _raise(db, IncidentType.NO_ACTIVITY, resident_id="site-a-r0"),
    }  # fmt: skip
    with db.connect() as conn:  # long overdue: the red "overdue" countdown shows
        conn.execute("UPDATE incidents SET raised_at = raised_at - interval '5 minutes'")
    return ids


def test_every_page_has_no_serious_or_critical_axe_violation(
    db: Database, broker: Broker, browser: Any
) -> None:
    from playwright.sync_api import expect

    ids = _seed(db, broker)
    found: dict[str, list[dict[str, Any]]] = {}
    wider: list[str] = []  # pages wider than the screen (WCAG 1.4.10 reflow; axe cannot see it)
    errors: list[str] = []

    def check(page: Any, name: str) -> None:
        found[name] = axe_violations(page)
        if page.evaluate("document.documentElement.scrollWidth > window.innerWidth"):
            wider.append(name)

    with InProcessGateway(gateway_settings(db, broker)) as gw:
        url = gw.api_url
        staff = access_token(url, "duty-a", PASSWORD)
        sent = httpx.post(f"{url}/visits/door-knock", timeout=15,
                          headers={"Authorization": f"Bearer {staff}"},
                          json={"resident_id": "site-a-r0", "reason": "no_activity",
                                "incident_id": ids["quiet"]})  # fmt: skip
        assert sent.status_code == 201, sent.text

        for n, (width_name, (width, height)) in enumerate(WIDTHS.items()):
            phone = width_name == "phone"
            # A new fall at each width (the previous one was acknowledged): the alarm shows.
            fall = _raise(db, IncidentType.FALL, resident_id=("site-a-r0", "site-a-r2",
                                                              "site-a-r3")[n],
                          details=FALL_DETAILS)  # fmt: skip

            def page_at(width: int = width, height: int = height, phone: bool = phone) -> Any:
                return new_page(browser, errors, width=width, height=height, locale="zh-CN",
                                is_mobile=phone, has_touch=phone)  # fmt: skip

            def at(view: str, width_name: str = width_name) -> str:
                return f"{view} @{width_name}"

            # -- the staff console ------------------------------------------------------
            page = page_at()
            page.goto(url + "/")
            expect(page.locator("#login")).to_be_visible()
            check(page, at("console: signed out"))
            page.fill("#username", "duty-a")
            page.fill("#password", "wrong-password")
            page.click("#login-button")
            expect(page.locator("#error")).to_be_visible()
            check(page, at("console: refused sign-in"))
            sign_in(page, url + "/", "duty-a")
            expect(page.locator(f'tr[data-incident-id="{ids["battery"]}"]')).to_be_visible()
            expect(page.locator("#alarm")).to_be_visible()
            expect(page.locator("#visits-overdue-count")).to_be_visible()
            check(page, at("console: board with alarm"))
            shot(page, f"a11y-console-{width_name}.png")
            page.locator(f'tr[data-incident-id="{fall}"]').click()
            expect(page.locator("#resident-card")).to_be_visible()
            check(page, at("console: incident selected (raised)"))
            page.click("#act-acknowledge")
            expect(page.locator("#responder")).to_be_visible()
            check(page, at("console: incident acknowledged (actions)"))
            page.click("#handover-button")
            expect(page.locator("#handover")).to_be_visible()
            check(page, at("console: handover"))
            page.click("#board-button")
            expect(page.locator(".tile").first).to_be_visible()
            check(page, at("console: live board"))
            page.click("#lang")
            expect(page.locator("html")).to_have_attribute("lang", "en")
            page.locator(f'tr[data-incident-id="{ids["hub"]}"]').press("Enter")  # the keyboard
            expect(page.locator("#detail-title")).to_contain_text("#")
            check(page, at("console: English, technical incident"))
            page.context.close()

            # The supervisor's console: the resolved list and its close button.
            page = page_at()
            sign_in(page, url + "/", "sup-a")
            expect(page.locator(f'tr[data-incident-id="{ids["quiet"]}"]')).to_be_visible()
            page.locator(f'tr[data-incident-id="{ids["quiet"]}"]').click()
            expect(page.locator("#cancel-reason")).to_be_visible()
            check(page, at("console: supervisor"))
            page.context.close()

            # -- the family view --------------------------------------------------------
            page = page_at()
            page.goto(url + "/family")
            expect(page.locator("#login")).to_be_visible()
            check(page, at("family: signed out"))
            sign_in(page, url + "/family", "fam-a")
            expect(page.locator("#status-site-a-r0")).to_be_visible()
            check(page, at("family: signed in"))
            page.context.close()

            # -- the community worker's page ---------------------------------------------
            page = page_at()
            page.goto(url + "/worker")
            expect(page.locator("#login")).to_be_visible()
            check(page, at("worker: signed out"))
            sign_in(page, url + "/worker", "worker-a")
            expect(page.locator("article.task")).to_have_count(1)
            check(page, at("worker: list"))
            page.locator("article.task button.record-task").click()
            expect(page.locator("#record")).to_be_visible()
            check(page, at("worker: door-knock result form"))
            page.click("#cancel")
            page.locator("article.elder button.record-visit").first.click()
            expect(page.locator("#visit-fields")).to_be_visible()
            check(page, at("worker: visit form"))
            page.context.close()

            # -- the district page -------------------------------------------------------
            page = page_at()
            page.goto(url + "/district")
            expect(page.locator("#login")).to_be_visible()
            check(page, at("district: signed out"))
            sign_in(page, url + "/district", "dsup-east")
            expect(page.locator(".figure").first).to_be_visible()
            check(page, at("district: signed in"))
            page.context.close()

        # The check itself can fail: a button without a name is a critical violation.
        page = new_page(browser, errors)
        page.goto(url + "/")
        page.evaluate("document.querySelector('main').append(document.createElement('button'))")
        assert "button-name" in {v["id"] for v in axe_blocking(axe_violations(page))}
        page.context.close()

    if REPORT:
        Path(REPORT).write_text(json.dumps(found, ensure_ascii=False, indent=1))
    blocking = {view: axe_blocking(violations) for view, violations in found.items()}
    bad = {view: axe_report(violations) for view, violations in blocking.items() if violations}
    assert not bad, "\n".join(f"== {view}\n{report}" for view, report in bad.items())
    assert len(found) == 17 * len(WIDTHS)
    assert wider == [], wider
    assert errors == []
