"""The staff console and the family view in a real browser (Playwright + Debian Chromium).

A real button press goes device → Mosquitto → gateway → incident → live stream → console;
the duty staff acknowledges it with a click and the audit log names them; the family member
sees the open incident and who is handling it. Under CI a missing Chromium fails the test.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from devices import protocol as p
from gateway.api.auth import create_user
from gateway.storage import people
from tests.browser import PASSWORD, TIMEOUT_MS
from tests.browser import shot as _shot
from tests.browser import sign_in as _sign_in
from tests.support import (
    PREFIX,
    Broker,
    Database,
    DeviceClient,
    InProcessGateway,
    gateway_settings,
    make_site,
    wait_until,
)

pytestmark = pytest.mark.e2e
# The browser (Debian's Chromium), sign-in and screenshots: tests/browser.py.


def test_button_press_appears_is_acknowledged_by_click_and_audited(
    db: Database, broker: Broker, browser: Any
) -> None:
    from playwright.sync_api import expect

    creds = make_site(db, broker, site_id="site-a", beds=2)
    with db.connect() as conn:
        conn.execute(
            "UPDATE residents SET consent_family_incidents = true WHERE resident_id = 'site-a-r0'"
        )
        conn.execute(
            "INSERT INTO contacts (contact_id, resident_id, kind, display_name, relation, phone)"
            " VALUES ('c1', 'site-a-r0', 'family', 'Daughter', 'daughter', '13800000000')"
        )
        staff_id = create_user(conn, "duty-a", "duty_staff", PASSWORD, site_id="site-a")
        people.set_display_name(conn, staff_id, "张丽", actor="test")
        create_user(conn, "fam-a", "family", PASSWORD, residents=["site-a-r0"])
    settings = gateway_settings(db, broker, SAFEHOME_ANALYSIS__CHECK_INTERVAL_S="0.2")
    button = next(c for c in creds if c.device_id == "site-a-bt0")
    errors: list[str] = []

    with InProcessGateway(settings) as gw:
        staff = browser.new_context(viewport={"width": 1366, "height": 800})
        page = staff.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        # Wrong password: a clear message, no board.
        page.goto(gw.api_url + "/")
        page.fill("#username", "duty-a")
        page.fill("#password", "wrong-password")
        page.click("#login-button")
        expect(page.locator("#error")).to_contain_text("用户名或密码错误")  # zh-CN by default
        expect(page.locator("#board")).to_be_hidden()

        _sign_in(page, gw.api_url + "/", "duty-a")
        expect(page.locator("#board")).to_be_visible()
        expect(page.locator("#empty")).to_be_visible()
        expect(page.locator("#feed-status")).to_have_class("feed feed-on")  # stream connected
        expect(page.locator("#alarm")).to_be_hidden()

        # A real press through the broker.
        with DeviceClient(broker.port, button.device_id, button.password) as dev:
            ts = int(time.time() * 1000)
            dev.publish(
                f"{PREFIX}/v1/site-a/{button.device_id}/event",
                p.encode_event(button.device_id, "press-1", 1, ts, event="press"),
            )
            wait_until(lambda: db.scalar("SELECT count(*) FROM incidents") == 1, 15, "incident")
        incident_id = int(db.scalar("SELECT id FROM incidents"))
        assert db.scalar("SELECT type FROM incidents") == "emergency_call"

        # It appears live (no reload) with its SLA countdown, the banner flashes, it beeps.
        row = page.locator(f'tr[data-incident-id="{incident_id}"]')
        expect(row).to_be_visible()
        expect(row).to_contain_text("紧急呼叫")
        # The resident's name (audited once per shift, not per refresh), never the id.
        expect(row).to_contain_text("Resident 0")
        expect(row).not_to_contain_text("site-a-r0")
        # Where to go, before any (audited) card read: bed code and room from the list.
        expect(row.locator(".where")).to_have_text("床位 BED-site-a-0000 · Room 100")
        assert db.scalar("SELECT count(*) FROM audit_log WHERE action = 'health_data.read'") == 0
        expect(row.locator(".sla")).to_contain_text("接单")
        expect(page.locator("#alarm")).to_be_visible()
        expect(page.locator("#alarm-text")).to_contain_text("新紧急事件")
        expect(page.locator("#alarm-text")).to_contain_text("BED-site-a-0000 · Room 100")
        page.wait_for_function("Number(document.body.dataset.beeps || 0) >= 1")
        assert page.evaluate("document.body.dataset.audio") == "running"

        # Select it: the context card (bed, room, contacts) and the acknowledge button.
        row.click()
        expect(page.locator("#resident-card")).to_contain_text("BED-site-a-0000")
        expect(page.locator("#resident-card")).to_contain_text("Room 100")
        expect(page.locator("#resident-card")).to_contain_text("Daughter")
        expect(row.locator(".where")).to_contain_text("Room 100")  # still there after the read
        _shot(page, "console.png")
        page.click("#act-acknowledge")
        expect(page.locator("#detail-state")).to_have_attribute("data-state", "acknowledged")
        expect(row).to_have_attribute("data-state", "acknowledged")
        expect(page.locator("#alarm")).to_be_hidden()
        expect(page.locator("#timeline")).to_contain_text("护工 张丽")  # a name, not an id
        expect(page.locator("#timeline")).not_to_contain_text(staff_id)
        expect(page.locator("#detail")).to_contain_text("接单人")
        # The resident card's own line follows the acknowledgement (no stale "待响应").
        expect(page.locator(f'#recent-incidents li[data-incident-id="{incident_id}"]')
               ).to_contain_text("已接单")  # fmt: skip

        # The audit log and the API timeline name who acknowledged.
        actors = db.rows(
            "SELECT actor FROM audit_log WHERE action = 'incident.acknowledge' AND target = %s",
            (f"incident:{incident_id}",),
        )
        assert actors == [(staff_id,)]
        token = page.evaluate("sessionStorage.getItem('shg.token')")
        detail = httpx.get(
            f"{gw.api_url}/incidents/{incident_id}",
            headers={"Authorization": f"Bearer {token}"}, timeout=10,
        ).json()  # fmt: skip
        assert detail["acknowledged_by"] == staff_id
        last = detail["timeline"][-1]
        assert (last["kind"], last["actor"]) == ("acknowledged", staff_id)

        # Dispatch, then the family view shows who handles it.
        page.fill("#responder", "nurse-07")
        page.click("#act-dispatch")
        expect(page.locator("#detail-state")).to_have_attribute("data-state", "dispatched")

        family = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
        fpage = family.new_page()
        fpage.set_default_timeout(TIMEOUT_MS)
        fpage.on("pageerror", lambda exc: errors.append(str(exc)))
        _sign_in(fpage, gw.api_url + "/family", "fam-a")
        verdict = fpage.locator("#verdict-site-a-r0")
        expect(verdict).to_contain_text("有事件正在处理")
        expect(verdict).to_contain_text("紧急呼叫")
        card = fpage.locator('article[data-resident-id="site-a-r0"]')
        expect(card).to_contain_text("张丽")  # the display name, never the login name
        expect(card).not_to_contain_text("duty-a")
        expect(card).to_contain_text("nurse-07")
        _shot(fpage, "family.png")

        # A staff account is refused by the family page, and the reverse.
        other = browser.new_context()
        opage = other.new_page()
        opage.set_default_timeout(TIMEOUT_MS)
        _sign_in(opage, gw.api_url + "/", "fam-a")
        expect(opage.locator("#error")).to_contain_text("仅供值班人员")
        expect(opage.locator("#board")).to_be_hidden()

        # Resolve with an outcome and notes: it leaves the open list; the family sees it safe.
        page.select_option("#outcome", "assisted")
        page.fill("#notes", "helped back to bed")
        page.click("#act-resolve")
        expect(row).to_have_count(0)
        expect(page.locator("#empty")).to_be_visible()
        fpage.reload()
        expect(verdict).to_contain_text("平安")
        expect(card).to_contain_text("已协助")

        # A colleague acts first: the console still shows the old state, the click answers
        # 409 and the page says so clearly. The list and detail reads are frozen (served the
        # state before the colleague's acknowledgement) so the stale view is deterministic.
        second = next(c for c in creds if c.device_id == "site-a-bt1")
        with DeviceClient(broker.port, second.device_id, second.password) as dev:
            dev.publish(
                f"{PREFIX}/v1/site-a/{second.device_id}/event",
                p.encode_event(second.device_id, "press-2", 1, int(time.time() * 1000),
                               event="press"),
            )  # fmt: skip
            row2 = page.locator('tr[data-state="raised"]')
            expect(row2).to_have_count(1)
        incident2 = int(row2.get_attribute("data-incident-id") or 0)
        auth = {"Authorization": f"Bearer {token}"}
        stale = {
            "list": httpx.get(f"{gw.api_url}/console/incidents", headers=auth).text,
            "one": httpx.get(f"{gw.api_url}/incidents/{incident2}", headers=auth).text,
        }

        def frozen(route: Any) -> None:
            if route.request.method != "GET":
                route.continue_()
                return
            one = route.request.url.endswith(f"/incidents/{incident2}")
            route.fulfill(status=200, content_type="application/json",
                          body=stale["one" if one else "list"])  # fmt: skip

        reads = re.compile(rf"(/console/incidents|/incidents/{incident2})$")
        page.route(reads, frozen)
        colleague = httpx.post(f"{gw.api_url}/incidents/{incident2}/acknowledge", headers=auth)
        assert colleague.status_code == 200
        row2.click()
        page.click("#act-acknowledge")
        expect(page.locator("#error")).to_be_visible()
        expect(page.locator("#error-text")).to_contain_text("操作冲突（409）")
        page.unroute(reads)
        assert db.scalar(
            "SELECT count(*) FROM audit_log WHERE action = 'incident.acknowledge' AND target = %s",
            (f"incident:{incident2}",),
        ) == 1  # fmt: skip
        for ctx in (staff, family, other):
            ctx.close()

    assert db.scalar("SELECT outcome FROM incidents WHERE id = %s", (incident_id,)) == "assisted"
    assert errors == []


def test_pages_are_static_and_carry_no_data(db: Database, broker: Broker) -> None:
    make_site(db, broker, site_id="site-a", beds=1)
    with (
        InProcessGateway(gateway_settings(db, broker)) as gw,
        httpx.Client(base_url=gw.api_url, timeout=10) as client,
    ):
        for path in ("/", "/family", "/static/console.js", "/static/family.css"):
            resp = client.get(path)
            assert resp.status_code == 200, path
            assert "default-src 'self'" in resp.headers["content-security-policy"]
        assert client.get("/").headers["content-type"].startswith("text/html")
        for path in ("/static/../app.py", "/static/routes_pages.py", "/static/nope.js"):
            assert client.get(path).status_code == 404, path
        # API docs and the icon come from the gateway itself: nothing from a CDN (issue 11).
        for path in ("/docs", "/redoc"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert "/docs-assets/" in page.text and "cdn" not in page.text.lower(), path
            assert "https://" not in page.text, path
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            assert client.get(f"/docs-assets/{asset}").status_code == 200, asset
        assert client.get("/docs-assets/../app.py").status_code == 404
        assert client.get("/favicon.ico").status_code == 200
        assert client.get("/static/i18n.js").status_code == 200
