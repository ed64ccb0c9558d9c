"""The community worker's phone page and the district page in a real browser (Playwright
+ Debian Chromium) against a real gateway: the worker sees an overdue visit and a door-knock
task raised from an unanswered no-activity alert, types the bed's code as proof of presence
(headless Chromium on Linux has no BarcodeDetector: the typed fallback), records the result
and the visit, and the incident shows the result; the district supervisor sees the month's
figures and a short night shift."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.api.auth import create_user
from gateway.storage import demo_sites, people
from gateway.storage import visits as visits_store
from gateway.workflow.service import IncidentService, Trigger
from gateway.workflow.transitions import IncidentType
from tests.browser import PASSWORD, new_page
from tests.browser import shot as _shot
from tests.browser import sign_in as _sign_in
from tests.support import (
    Broker,
    Database,
    InProcessGateway,
    access_token,
    gateway_settings,
    make_site,
)

pytestmark = pytest.mark.e2e


def test_worker_knocks_records_and_the_district_sees_it(
    db: Database, broker: Broker, browser: Any
) -> None:
    from playwright.sync_api import expect

    make_site(db, broker, site_id="site-a", beds=2)
    with db.connect() as conn:
        worker = create_user(conn, "worker-a", "community_worker", PASSWORD)
        people.set_display_name(conn, worker, "林芳", actor="test")
        duty = create_user(conn, "duty-a", "duty_staff", PASSWORD, site_id="site-a")
        dsup = create_user(conn, "dsup-east", "district_supervisor", PASSWORD)
        visits_store.set_site_district(conn, "site-a", "d-east")
        visits_store.set_user_district(conn, dsup, "d-east")
        visits_store.assign_worker(conn, "site-a-r0", worker)
        visits_store.set_risks(conn, "site-a-r0", ["high_risk", "living_alone"])
        conn.execute("UPDATE residents SET created_at = now() - interval '20 days'")
        # day and evening shifts staffed all week, nobody at night
        local = datetime.now(UTC) + timedelta(hours=8)
        midnight = datetime(local.year, local.month, local.day, tzinfo=UTC) - timedelta(hours=8)
        for d in range(8):
            base = midnight + timedelta(days=d)
            conn.execute("INSERT INTO duty_shifts (site_id, user_id, role, starts_at, ends_at) "
                         "VALUES ('site-a', %s, 'duty_staff', %s, %s)",
                         (duty, base + timedelta(hours=8), base + timedelta(hours=24)))  # fmt: skip
        incident, _ = IncidentService(conn).raise_or_join(
            Trigger(IncidentType.NO_ACTIVITY, "site-a", datetime.now(UTC), "no activity 12 h",
                    resident_id="site-a-r0"))  # fmt: skip
    settings = gateway_settings(db, broker)
    with InProcessGateway(settings) as gw:
        url = gw.api_url
        staff = access_token(url, "duty-a", PASSWORD)
        headers = {"Authorization": f"Bearer {staff}"}
        # The phone call went unanswered: the duty staff sends the community worker.
        sent = httpx.post(f"{url}/visits/door-knock", headers=headers, timeout=15,
                          json={"resident_id": "site-a-r0", "reason": "no_activity",
                                "incident_id": incident.id})  # fmt: skip
        assert sent.status_code == 201, sent.text

        # The console shows the overdue visit and the open door-knock task.
        page = new_page(browser, width=1280, height=900, locale="zh-CN")
        _sign_in(page, f"{url}/", "duty-a")
        expect(page.locator("#visits-overdue-count")).to_have_text("1")
        expect(page.locator(".visits-overdue li")).to_contain_text("ELD-site-a-0000")
        expect(page.locator(".visits-tasks li")).to_contain_text("无活动告警电话未解决")
        # One language at a time (issue 11 §2): no "Visits"/"none" beside the Chinese.
        panel = page.locator("#visits-panel")
        expect(panel).to_contain_text("已通知主管")
        assert not re.search(r"Visits|Door-knock|none|Supervisor|overdue", panel.inner_text())
        _shot(page, "console-visits.png")
        page.context.close()

        page = new_page(browser, width=390, height=844, locale="zh-CN", is_mobile=True,
                        has_touch=True)  # fmt: skip
        _sign_in(page, f"{url}/worker", "worker-a")
        task = page.locator("article.task")
        expect(task).to_have_count(1)
        expect(task).to_contain_text("无活动告警电话未解决")
        elder = page.locator("article.elder[data-resident-id=site-a-r0]")
        expect(elder).to_contain_text("已逾期")
        expect(elder).to_contain_text("高风险")
        expect(page.locator("#summary")).to_contain_text("逾期 2 项")
        # zh-CN only, no doubled English labels; the due day as the API gives it (the site's
        # calendar day, never shifted by the browser's zone); English on request.
        english = re.compile(r"Sign out|Record|Visits|Door-knock|overdue|Overdue")
        assert not english.search(page.inner_text("body"))
        expect(elder).to_contain_text(re.compile(r"应于 \d{4}-\d{2}-\d{2}"))
        page.click("#lang")
        expect(page.locator("#summary")).to_contain_text("2 overdue")
        expect(task.locator("button.record-task")).to_have_text("Record result")
        expect(page.locator("h1")).to_have_text("Visiting care")
        page.click("#lang")
        expect(page.locator("#summary")).to_contain_text("逾期 2 项")
        expect(task.locator("button.record-task")).to_have_text("记录敲门结果")
        _shot(page, "worker-list.png")

        task.locator("button.record-task").click()
        expect(page.locator("#scan-hint")).to_be_visible()  # no BarcodeDetector: typed code
        expect(page.locator("#scan")).to_be_hidden()
        page.fill("#proof-code", "BED-site-a-0001")  # another elder's bed: refused
        page.click("#save")
        expect(page.locator("#error")).to_contain_text("编码不属于该老人或其床位")
        page.fill("#proof-code", "BED-site-a-0000")
        page.fill("#notes", "老人在家，午睡未听到电话")
        _shot(page, "worker-result-form.png")
        page.click("#save")
        expect(page.locator("#notice")).to_contain_text("开门，正常")
        expect(page.locator("article.task")).to_have_count(0)

        # The phone visit is still overdue: record it.
        elder.locator("button.record-visit").click()
        expect(page.locator("#kind")).to_have_value("phone")
        expect(page.locator("#proof")).to_be_hidden()
        page.select_option("#outcome", "well")
        page.click("#save")
        expect(page.locator("#notice")).to_contain_text("探访已记录")
        expect(page.locator("#summary")).to_contain_text("逾期 0 项")
        expect(elder).not_to_contain_text("已逾期")
        _shot(page, "worker-done.png")
        page.context.close()

        detail = httpx.get(f"{url}/incidents/{incident.id}", headers=headers, timeout=15).json()
        assert detail["state"] == "resolved"
        knocks = [e for e in detail["timeline"] if e["kind"] == "door_knock_result"]
        assert knocks and knocks[0]["data"]["label"] == "开门，正常"

        # The console's timeline says it in words, by name: who was sent, what they found
        # (the resolved incident, in the supervisor's list to review and close).
        with db.connect() as conn:
            create_user(conn, "sup-a", "supervisor", PASSWORD, site_id="site-a")
        page = new_page(browser, width=1280, height=900, locale="zh-CN")
        _sign_in(page, f"{url}/", "sup-a")
        page.click(f"#resolved-rows button[data-incident-id='{incident.id}']")
        timeline = page.locator("#timeline")
        expect(timeline.locator("li[data-kind=door_knock]")).to_contain_text(
            "派社区工作者 林芳上门敲门（无活动告警电话未解决）"
        )
        expect(timeline.locator("li[data-kind=door_knock_result]")).to_contain_text(
            "敲门结果：开门，正常 · 社区工作者 林芳"
        )
        assert "door_knock" not in timeline.inner_text()
        _shot(page, "console-door-knock-timeline.png")
        page.context.close()

        page = new_page(browser, width=1280, height=900, locale="zh-CN")
        _sign_in(page, f"{url}/district", "dsup-east")
        expect(page.locator(".figure[data-key=beds_served] b")).to_have_text("2")
        expect(page.locator(".figure[data-key=home_visits] b")).to_have_text("1")
        expect(page.locator(".figure[data-key=home_visit_rate] b")).to_have_text("100%")
        short = page.locator("#staffing tr.short")
        expect(short).to_have_count(7)
        expect(short.first).to_contain_text("夜班")
        expect(short.first).to_contain_text("缺 1 人")
        expect(short.first.locator("td").first).to_have_text("Site site-a")  # a name, not an id
        assert "Resident" not in page.content()
        assert not re.search(r"Beds served|short|Sign out|Month", page.inner_text("body"))
        page.click("#lang")
        expect(short.first).to_contain_text("1 short")
        expect(page.locator(".figure[data-key=beds_served]")).to_contain_text("Beds served")
        page.click("#lang")
        expect(short.first).to_contain_text("缺 1 人")
        with page.expect_download() as download:  # the month's per-bed report (PDF)
            page.get_by_role("button", name="下载按床位月报").click()
        pdf = download.value
        assert pdf.suggested_filename.endswith(".pdf")
        with open(pdf.path(), "rb") as fh:
            assert fh.read(5) == b"%PDF-"
        _shot(page, "district.png")
        page.context.close()


def test_worker_deadline_in_the_sites_zone_as_on_the_console(
    db: Database, broker: Broker, browser: Any
) -> None:
    """A site not on UTC+8: the worker's phone shows a door-knock deadline in the site's
    zone, the same text as the console (it once showed UTC+8 on the phone)."""
    from playwright.sync_api import expect

    make_site(db, broker, site_id="site-z", beds=1)
    with db.connect() as conn:
        worker = create_user(conn, "worker-z", "community_worker", PASSWORD)
        create_user(conn, "duty-z", "duty_staff", PASSWORD, site_id="site-z")
        visits_store.assign_worker(conn, "site-z-r0", worker)
        conn.execute("UPDATE sites SET utc_offset_s = -5400 WHERE site_id = 'site-z'")
    settings = gateway_settings(db, broker)
    with InProcessGateway(settings) as gw:
        url = gw.api_url
        headers = {"Authorization": f"Bearer {access_token(url, 'duty-z', PASSWORD)}"}
        sent = httpx.post(f"{url}/visits/door-knock", headers=headers, timeout=15,
                          json={"resident_id": "site-z-r0", "reason": "unreachable"})  # fmt: skip
        assert sent.status_code == 201, sent.text
        (task,) = httpx.get(f"{url}/visits/tasks", headers=headers, timeout=15).json()
        assert task["utc_offset_s"] == -5400
        due = datetime.fromisoformat(task["due_at"]) - timedelta(seconds=5400)
        expected = f"{due:%H:%M:%S} (UTC-1:30)"

        page = new_page(browser, width=1280, height=900, locale="zh-CN")
        _sign_in(page, f"{url}/", "duty-z")
        expect(page.locator(".visits-tasks li")).to_contain_text(expected)
        page.context.close()

        page = new_page(browser, width=390, height=844, locale="zh-CN", is_mobile=True,
                        has_touch=True)  # fmt: skip
        _sign_in(page, f"{url}/worker", "worker-z")
        expect(page.locator("article.task")).to_contain_text(expected)
        assert "UTC+8" not in page.inner_text("body")
        page.context.close()

        # The demo's shifted clock (safehome demo) is labelled 演示时钟, not "UTC-1:30".
        site = httpx.get(f"{url}/console/site", headers=headers, timeout=15).json()
        assert site["demo_clock"] is False
        with db.connect() as conn:
            demo_sites.set_site_clock(conn, "site-z", -5400)
        site = httpx.get(f"{url}/console/site", headers=headers, timeout=15).json()
        assert (site["utc_offset_s"], site["demo_clock"]) == (-5400, True)
        (task,) = httpx.get(f"{url}/visits/tasks", headers=headers, timeout=15).json()
        assert task["demo_clock"] is True
        demo_text = f"{due:%H:%M:%S} (演示时钟)"
        page = new_page(browser, width=1280, height=900, locale="zh-CN")
        _sign_in(page, f"{url}/", "duty-z")
        expect(page.locator("#site-clock")).to_contain_text("站点时间 演示时钟")
        expect(page.locator(".visits-tasks li")).to_contain_text(demo_text)
        assert "UTC-1:30" not in page.inner_text("body")
        page.context.close()
        page = new_page(browser, width=390, height=844, locale="zh-CN", is_mobile=True,
                        has_touch=True)  # fmt: skip
        _sign_in(page, f"{url}/worker", "worker-z")
        expect(page.locator("article.task")).to_contain_text(demo_text)
        page.click("#lang")
        expect(page.locator("article.task")).to_contain_text(f"{due:%H:%M:%S} (demo clock)")
        page.context.close()
