"""A duty shift on the console in a real browser (issue 11): care and technical incidents
apart, names instead of ids, plain sentences in the site's time, a language switch, the
supervisor's close and cancel, at desktop, 768 px tablet and 390 px phone widths.

Playwright drives Debian's Chromium (never a downloaded browser); the gateway, PostgreSQL
and Mosquitto are real. Incidents are raised through the workflow service, as the analysis
would raise them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.api.auth import create_user
from gateway.storage import people
from gateway.workflow.service import IncidentService, Trigger
from gateway.workflow.transitions import IncidentType
from tests.browser import PASSWORD, WIDTHS, new_page
from tests.browser import shot as _shot
from tests.browser import sign_in as _sign_in
from tests.support import Broker, Database, InProcessGateway, gateway_settings, make_site

pytestmark = pytest.mark.e2e

FALL_DETAILS = {"peak_g": 3.6, "posture_change_deg": 92.0, "confirm_window_s": 30.0, "sos": False}


def _raise(db: Database, kind: IncidentType, **kw: Any) -> int:
    with db.connect() as conn:
        incident, _ = IncidentService(conn).raise_or_join(
            Trigger(kind, "site-a", datetime.now(UTC), "detector text", **kw)
        )
    return incident.id


def test_care_and_technical_apart_with_names_and_targets(
    db: Database, broker: Broker, browser: Any
) -> None:
    from playwright.sync_api import expect

    make_site(db, broker, site_id="site-a", beds=2)
    with db.connect() as conn:
        duty = create_user(conn, "duty-a", "duty_staff", PASSWORD, site_id="site-a")
        sup = create_user(conn, "sup-a", "supervisor", PASSWORD, site_id="site-a")
        people.set_display_name(conn, duty, "张丽", actor="test")
        people.set_display_name(conn, sup, "王芳", actor="test")
        conn.execute("UPDATE residents SET display_name = '李秀英', "
                     "consent_family_incidents = true WHERE resident_id = 'site-a-r0'")  # fmt: skip
        create_user(conn, "fam-a", "family", PASSWORD, residents=["site-a-r0"])
        people.set_care_phone(conn, "site-a", "0571-8888 6000", actor="test")
    fall = _raise(db, IncidentType.FALL, resident_id="site-a-r0", details=FALL_DETAILS)
    battery = _raise(db, IncidentType.LOW_BATTERY, resident_id="site-a-r1", subject="site-a-wr1",
                     details={"device_kind": "wearable", "battery_pct": 9})  # fmt: skip
    offline = _raise(db, IncidentType.DEVICE_OFFLINE, resident_id="site-a-r1",
                     subject="site-a-bs1", details={"device_kind": "bed_sensor"})  # fmt: skip
    hub = _raise(db, IncidentType.HUB_OFFLINE, subject="site-a-l1", details={"devices": 3})
    # Five minutes old: the fall is long overdue (60 s), the technical ones are not (hours).
    with db.connect() as conn:
        conn.execute("UPDATE incidents SET raised_at = raised_at - interval '5 minutes'")
    settings = gateway_settings(db, broker, SAFEHOME_API__CONSOLE_RECONCILE_S="1")
    errors: list[str] = []

    with InProcessGateway(settings) as gw:
        for name, (width, height) in WIDTHS.items():
            page = new_page(browser, errors, width=width, height=height)
            _sign_in(page, gw.api_url + "/", "duty-a")

            care = page.locator("#incident-rows")
            tech = page.locator("#tech-rows")
            fall_row = care.locator(f'tr[data-incident-id="{fall}"]')
            expect(fall_row).to_contain_text("李秀英")  # the name, not site-a-r0
            expect(fall_row).not_to_contain_text("site-a-r0")
            expect(fall_row.locator(".sla")).to_have_class("sla sla-over")
            # Technical rows: their own section, their own (hours) target, never red.
            for inc in (battery, offline, hub):
                row = tech.locator(f'tr[data-incident-id="{inc}"]')
                expect(row).to_be_visible()
                expect(row.locator(".sla")).to_have_class("sla sla-tech")
                expect(row).not_to_contain_text("超时")
                expect(row).not_to_contain_text("null")
            expect(care.locator(f'tr[data-incident-id="{battery}"]')).to_have_count(0)
            # A device row names the device and where it is.
            expect(tech.locator(f'tr[data-incident-id="{battery}"]')).to_contain_text("手环")
            expect(tech.locator(f'tr[data-incident-id="{offline}"]')).to_contain_text("床垫传感器")
            expect(tech.locator(f'tr[data-incident-id="{offline}"]')).to_contain_text("Room 101")
            expect(tech.locator(f'tr[data-incident-id="{hub}"]')).to_contain_text("Room 101")
            # Only the care emergency raises the banner.
            expect(page.locator("#alarm-text")).to_contain_text("跌倒")
            expect(page.locator("#alarm-text")).not_to_contain_text("电量")
            expect(page.locator("#site-clock")).to_contain_text("UTC+8")
            expect(page.locator("#tech-incidents thead th")).to_have_text(
                ["类型", "设备 / 位置", "状态", "已过", "响应时限"]
            )

            # The hub card: a plain sentence, no literal null anywhere.
            tech.locator(f'tr[data-incident-id="{hub}"]').click()
            expect(page.locator("#detail")).to_contain_text("网关离线：此处 3 台设备")
            expect(page.locator("#detail")).not_to_contain_text("null")

            # The fall: a plain sentence, the buttons within reach on every width.
            fall_row.click()
            detail = page.locator("#detail")
            expect(detail).to_contain_text("跌倒：撞击 3.6g 后平躺未起，30 秒内未取消")
            expect(detail).to_contain_text("(UTC+8)")
            expect(page.locator("#act-acknowledge")).to_be_in_viewport()
            _shot(page, f"shift-{name}.png")
            page.context.close()

        # The daughter's phone (360 px): honestly "still being alerted" while nobody has taken
        # it, the care centre's phone, a header on one line.
        fpage = new_page(browser, errors, width=360, height=740, is_mobile=True)
        _sign_in(fpage, gw.api_url + "/family", "fam-a")
        line = fpage.locator("#status-site-a-r0")
        expect(line).to_have_attribute("data-kind", "alerting")
        expect(line).to_contain_text("正在通知工作人员")
        verdict = fpage.locator("#verdict-site-a-r0")  # nobody has it: not "being handled"
        expect(verdict).to_contain_text("有事件待响应")
        expect(verdict).not_to_contain_text("正在处理")
        expect(fpage.locator("#phone-site-a-r0")).to_contain_text("0571-8888 6000")
        header = fpage.locator("header.top").bounding_box()
        assert header is not None and header["height"] < 80  # one line, not wrapped
        _shot(fpage, "family-360.png")

        # Acknowledge, then switch to English: the same screen in the other language.
        page = new_page(browser, errors, width=1366, height=900)
        _sign_in(page, gw.api_url + "/", "duty-a")
        page.locator(f'tr[data-incident-id="{fall}"]').click()
        # Act only once the clicked incident is the one shown (never on the previous one).
        expect(page.locator("#detail-title")).to_contain_text(f"#{fall}")
        page.click("#act-acknowledge")
        expect(page.locator("#timeline")).to_contain_text("护工 张丽")
        expect(page.locator("#alarm")).to_be_hidden()
        fpage.reload()
        expect(line).to_have_attribute("data-kind", "handling")
        expect(line).to_contain_text("正在处理：护工 张丽已接单")
        expect(verdict).to_contain_text("有事件正在处理")
        fpage.context.close()
        page.click("#lang")
        expect(page.locator("#detail")).to_contain_text("Fall: impact 3.6 g, then lying still")
        expect(page.locator("#timeline")).to_contain_text("Carer 张丽")
        expect(page.locator("#incident-rows")).to_contain_text("Acknowledged")
        # Both tables' headers (one template in console.js) follow the language.
        expect(page.locator("#incidents thead th")).to_have_text(
            ["Type", "Resident / place", "State", "Age", "Target"]
        )
        expect(page.locator("#tech-incidents thead th").nth(1)).to_have_text("Device / place")
        # False alarm needs a reason (duty staff may not cancel: the workflow's rule).
        expect(page.locator("#act-cancel")).to_have_count(0)
        page.click("#act-false-alarm")
        expect(page.locator("#error")).to_contain_text("Enter a reason")
        page.fill("#false-reason", "resident sat down hard, unhurt")
        page.click("#act-false-alarm")
        expect(page.locator(f'tr[data-incident-id="{fall}"]')).to_have_count(0)
        page.context.close()

        # The supervisor closes the reviewed one and cancels a technical one raised in error.
        page = new_page(browser, errors, width=1366, height=900)
        _sign_in(page, gw.api_url + "/", "sup-a")
        page.locator(f'#resolved-rows button[data-incident-id="{fall}"]').click()
        expect(page.locator("#detail-title")).to_contain_text(f"#{fall}")
        page.click("#act-close")
        expect(page.locator(f'#resolved-rows button[data-incident-id="{fall}"]')).to_have_count(0)
        page.locator(f'tr[data-incident-id="{battery}"]').click()
        expect(page.locator("#detail-title")).to_contain_text(f"#{battery}")
        page.fill("#cancel-reason", "battery was replaced during the install")
        page.click("#act-cancel")
        expect(page.locator("#error")).to_be_hidden()  # (a refused cancel says why here)
        expect(page.locator(f'tr[data-incident-id="{battery}"]')).to_have_count(0)
        # The handover summary: residents flagged this shift, what is open, devices to fix.
        page.click("#handover-button")
        expect(page.locator("#handover")).to_have_text("交班摘要")
        expect(page.locator("#handover-flagged")).to_contain_text("李秀英")
        expect(page.locator("#handover-flagged")).to_contain_text("跌倒")
        expect(page.locator("#handover-devices")).to_contain_text("床垫传感器")
        expect(page.locator("#handover-devices")).to_contain_text("网关离线")
        expect(page.locator("#handover-devices")).not_to_contain_text("电量低")  # cancelled
        expect(page.locator("#detail")).to_contain_text("误报 1 起")
        _shot(page, "handover.png")

        # The live board: each bed's state; a new incident shows at the next refresh (every
        # 4 s; a generous deadline under load).
        page.click("#board-button")
        bed0 = page.locator('.tile[data-bed="BED-site-a-0000"]')
        bed1 = page.locator('.tile[data-bed="BED-site-a-0001"]')
        expect(bed0).to_have_attribute("data-state", "no_recent_activity")
        expect(bed0).to_contain_text("李秀英")
        expect(bed1).to_have_attribute("data-state", "device_offline")  # its bed sensor
        again = _raise(db, IncidentType.NOT_UP, resident_id="site-a-r0")
        expect(bed0).to_have_attribute("data-state", "incident", timeout=10_000)
        expect(bed0).to_contain_text("未起床")
        _shot(page, "board.png")
        bed0.click()  # the tile opens the incident
        expect(page.locator("#detail-title")).to_contain_text(f"#{again}")
        page.context.close()

    states = dict(db.rows("SELECT id, state FROM incidents WHERE id IN (%s, %s)", (fall, battery)))
    assert states == {fall: "closed", battery: "cancelled"}
    assert db.scalar("SELECT outcome FROM incidents WHERE id = %s", (fall,)) == "false_alarm"
    # The residents' names on the rows: audited once per user and shift, not per refresh
    # (four sign-ins of duty-a with a 1 s reconcile: still one entry for duty-a).
    name_reads = db.rows(
        "SELECT actor, data FROM audit_log WHERE action = 'resident.name_read' ORDER BY seq"
    )
    by_duty = [data for actor, data in name_reads if actor == duty]
    assert len(by_duty) == 1
    assert sorted(by_duty[0]["residents"]) == ["site-a-r0", "site-a-r1"]
    assert errors == []


def test_typing_a_reason_survives_the_reconcile(db: Database, broker: Broker, browser: Any) -> None:
    """The detail panel is re-rendered by every live event and reconcile (here every 1 s).
    Re-inserting a focused field blurs it: the rest of what the nurse types went nowhere
    (this test's own cancel once failed on an empty reason that way). The field keeps the
    focus, the caret and its text."""
    from playwright.sync_api import expect

    make_site(db, broker, site_id="site-a", beds=1)
    with db.connect() as conn:
        create_user(conn, "sup-a", "supervisor", PASSWORD, site_id="site-a")
    battery = _raise(db, IncidentType.LOW_BATTERY, resident_id="site-a-r0", subject="site-a-wr0",
                     details={"device_kind": "wearable", "battery_pct": 9})  # fmt: skip
    settings = gateway_settings(db, broker, SAFEHOME_API__CONSOLE_RECONCILE_S="1")
    errors: list[str] = []
    with InProcessGateway(settings) as gw:
        page = new_page(browser, errors, width=1366, height=900)
        _sign_in(page, gw.api_url + "/", "sup-a")
        page.locator(f'tr[data-incident-id="{battery}"]').click()
        expect(page.locator("#detail-title")).to_contain_text(f"#{battery}")
        page.click("#cancel-reason")
        page.keyboard.type("battery ")
        # Two reconciles later (each re-reads the incident and re-renders the panel):
        body = page.locator("body")
        seen = int(body.get_attribute("data-reconciles") or "0")
        deadline = time.monotonic() + 20
        while int(body.get_attribute("data-reconciles") or "0") < seen + 2:
            assert time.monotonic() < deadline, "the console stopped reconciling"
            page.wait_for_timeout(100)
        expect(page.locator("#cancel-reason")).to_be_focused()
        page.keyboard.type("replaced")
        expect(page.locator("#cancel-reason")).to_have_value("battery replaced")
        page.click("#act-cancel")
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator(f'tr[data-incident-id="{battery}"]')).to_have_count(0)
        page.context.close()
    assert db.scalar("SELECT state FROM incidents WHERE id = %s", (battery,)) == "cancelled"
    assert errors == []
