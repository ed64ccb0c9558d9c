"""The community worker's calls on /worker in a real browser (Playwright + Debian Chromium)
at 390 px (a phone), against a real gateway with real PostgreSQL and Mosquitto and the
default desk-phone adapter (tel: links): from the elder's card, "呼叫" lists the elder and
the family with masked numbers; calling the son gives the tel: link to tap; the outcome
"接通" with a note is recorded and offered as a phone visit (prefilled), which is saved; from
the door-knock task, the call to the elder ("未接通") lands on the incident's timeline. No
horizontal scrolling at 390 px; English through the page's language choice."""

from __future__ import annotations

from datetime import UTC, datetime
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
    axe_blocking,
    axe_report,
    axe_violations,
    new_page,
    shot,
    sign_in,
)
from tests.support import Broker, Database, InProcessGateway, gateway_settings, make_site

pytestmark = pytest.mark.e2e

FAMILY_PHONE = "13812341234"
ELDER_PHONE = "021-5555-0199"


def _no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways at 390 px ({width} px)"


def _accessible(page: Any) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    blocking = axe_blocking(axe_violations(page))
    assert not blocking, axe_report(blocking)


def test_worker_calls_the_family_records_a_phone_visit_and_calls_from_a_task(
    db: Database, broker: Broker, browser: Any
) -> None:
    from playwright.sync_api import expect

    make_site(db, broker, site_id="site-a", beds=2, wearables=False)
    with db.connect() as conn:
        worker = create_user(conn, "worker-a", "community_worker", PASSWORD)
        people.set_display_name(conn, worker, "赵强", actor="test")
        create_user(conn, "duty-a", "duty_staff", PASSWORD, site_id="site-a")
        conn.execute(
            "INSERT INTO staff_channels (user_id, position, channel, address)"
            " VALUES (%s, 0, 'voice', '13955556666')",
            (worker,),
        )
        visits_store.assign_worker(conn, "site-a-r0", worker)
        visits_store.set_risks(conn, "site-a-r0", ["high_risk", "living_alone"])
        conn.execute("UPDATE residents SET created_at = now() - interval '20 days'")
        conn.execute("UPDATE residents SET phone = %s WHERE resident_id = 'site-a-r0'",
                     (ELDER_PHONE,))  # fmt: skip
        conn.execute(
            "INSERT INTO contacts (contact_id, resident_id, kind, display_name, relation, phone)"
            " VALUES ('c1', 'site-a-r0', 'family', '李明', '儿子', %s)",
            (FAMILY_PHONE,),
        )
        incident, _ = IncidentService(conn).raise_or_join(
            Trigger(IncidentType.NO_ACTIVITY, "site-a", datetime.now(UTC), "no activity 12 h",
                    resident_id="site-a-r0"))  # fmt: skip
    errors: list[str] = []
    with InProcessGateway(gateway_settings(db, broker)) as gw:
        url = gw.api_url
        form = {"username": "duty-a", "password": PASSWORD}
        staff = httpx.post(f"{url}/auth/token", data=form, timeout=15).json()["access_token"]
        headers = {"Authorization": f"Bearer {staff}"}
        sent = httpx.post(f"{url}/visits/door-knock", headers=headers, timeout=15,
                          json={"resident_id": "site-a-r0", "reason": "no_activity",
                                "incident_id": incident.id})  # fmt: skip
        assert sent.status_code == 201, sent.text

        page = new_page(browser, errors, width=390, height=844, locale="zh-CN",
                        is_mobile=True, has_touch=True)  # fmt: skip
        sign_in(page, f"{url}/worker", "worker-a")
        elder = page.locator("article.elder[data-resident-id=site-a-r0]")
        expect(elder).to_contain_text("已逾期")
        _no_sideways_scroll(page)

        # 呼叫 from the elder's card: the elder and the son, masked.
        elder.locator("button.call-open").click()
        sheet = page.locator("#call")
        expect(sheet).to_be_visible()
        expect(page.locator("#work")).to_be_hidden()
        expect(page.locator("#wcall-title")).to_have_text("呼叫 · Resident 0")
        callees = page.locator("#wcallees li")
        expect(callees).to_have_count(2)
        expect(callees.nth(0)).to_contain_text("老人本人 Resident 0 · 021****0199")
        expect(callees.nth(1)).to_contain_text("家属 李明（儿子） · 138****1234")
        assert FAMILY_PHONE not in sheet.inner_text()
        _no_sideways_scroll(page)
        _accessible(page)
        shot(page, "worker-calls-callees.png")

        # The desk-phone adapter: the worker taps the tel: link to dial.
        page.click("#wcall-family-c1")
        dial = page.locator("#wcall-dial")
        expect(dial).to_have_text("拨打 138****1234")
        expect(dial).to_have_attribute("href", f"tel:{FAMILY_PHONE}")
        pending = page.locator("#wcalls-open li")
        expect(pending).to_have_count(1)
        expect(pending).to_contain_text("家属 李明（儿子） · 已拨出")
        call_id = pending.get_attribute("data-call-id")
        page.click(f"#wcall-record-{call_id}")  # no outcome chosen: told, nothing recorded
        expect(page.locator("#error")).to_contain_text("请选择通话结果")
        page.select_option(f"#wcall-outcome-{call_id}", "connected")
        page.fill(f"#wcall-note-{call_id}", "老人一切安好，儿子周末回家")
        _no_sideways_scroll(page)
        _accessible(page)
        shot(page, "worker-calls-outcome.png")
        page.click(f"#wcall-record-{call_id}")
        expect(page.locator("#wcall-recorded")).to_contain_text("通话结果已记录：接通")
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("#wcalls-open")).to_have_count(0)
        expect(page.locator("#wcalls-done li")).to_contain_text("接通")

        # 记录为电话探访: the visit form, prefilled; saving it records the phone visit.
        page.click("#wcall-as-visit")
        expect(page.locator("#record")).to_be_visible()
        expect(sheet).to_be_hidden()
        expect(page.locator("#kind")).to_have_value("phone")
        expect(page.locator("#outcome")).to_have_value("well")
        expect(page.locator("#notes")).to_have_value("老人一切安好，儿子周末回家")
        expect(page.locator("#proof")).to_be_hidden()
        page.click("#save")
        expect(page.locator("#notice")).to_contain_text("探访已记录")

        # 呼叫 from the door-knock task: the elder, no answer; on the incident's timeline.
        task = page.locator("article.task")
        expect(task).to_have_count(1)
        task.locator("button.call-open").click()
        page.click("#wcall-resident-site-a-r0")
        expect(page.locator("#wcall-dial")).to_have_attribute("href", "tel:02155550199")
        pending = page.locator("#wcalls-open li")
        expect(pending).to_contain_text("敲门任务")
        call_id = pending.get_attribute("data-call-id")
        page.select_option(f"#wcall-outcome-{call_id}", "no_answer")
        page.click(f"#wcall-record-{call_id}")
        expect(page.locator("#wcall-recorded")).to_contain_text("未接通")
        expect(page.locator("#wcall-as-visit")).to_have_count(0)  # only a connected call
        page.click("#wcall-close")
        expect(page.locator("#work")).to_be_visible()
        expect(task).to_have_count(1)

        # English: the same sheet in the language the user chose (shg.lang).
        page.evaluate("SHG.setLang('en')")
        elder.locator("button.call-open").click()
        expect(page.locator("#wcall-title")).to_have_text("Call · Resident 0")
        expect(page.locator("#wcallees li").nth(1)).to_contain_text("family 李明（儿子）")
        done = page.locator("#wcalls-done li")  # newest first: the task's call, then the son's
        expect(done.nth(0)).to_contain_text("the elder Resident 0 · no answer")
        expect(done.nth(1)).to_contain_text("family 李明（儿子） · connected")
        shot(page, "worker-calls-en.png")
        page.context.close()

        # The console: the worker's call on the incident's timeline, named as such.
        page = new_page(browser, errors, width=1366, height=800, locale="zh-CN")
        sign_in(page, f"{url}/", "duty-a")
        page.locator(f'tr[data-incident-id="{incident.id}"]').click()
        timeline = page.locator("#timeline")
        expect(timeline).to_contain_text("社区工作者 赵强 呼叫 住户 Resident 0 · 座机 · 已拨出")
        expect(timeline).to_contain_text("社区工作者 赵强 记录通话结果：住户 Resident 0 · 未接通")
        page.context.close()

        detail = httpx.get(f"{url}/incidents/{incident.id}", headers=headers, timeout=15).json()
        placed = [e["data"] for e in detail["timeline"] if e["kind"] == "call_placed"]
        assert [(d["caller_name"], d["callee_kind"], d["task_id"]) for d in placed] == [
            ("赵强", "resident", sent.json()["task_id"])]  # fmt: skip
        outcomes = [e["data"]["outcome"] for e in detail["timeline"] if e["kind"] == "call_outcome"]
        assert outcomes == ["no_answer"]
    assert errors == []


def test_worker_sees_every_assigned_elder_and_calls_one_with_no_visit_due(
    db: Database, broker: Broker, browser: Any
) -> None:
    """An elder assigned to the worker whose risk categories give no visit plan has a card
    too, in the quieter "其他负责老人" section after the unchanged due list, with the same
    actions: call (the elder's own number) and record a visit."""
    from playwright.sync_api import expect

    make_site(db, broker, site_id="site-a", beds=3, wearables=False)
    with db.connect() as conn:
        worker = create_user(conn, "worker-a", "community_worker", PASSWORD)
        create_user(conn, "duty-a", "duty_staff", PASSWORD, site_id="site-a")
        conn.execute(
            "INSERT INTO staff_channels (user_id, position, channel, address)"
            " VALUES (%s, 0, 'voice', '13955556666')",
            (worker,),
        )
        for resident in ("site-a-r0", "site-a-r1"):
            visits_store.assign_worker(conn, resident, worker)
        visits_store.set_risks(conn, "site-a-r0", ["high_risk"])  # a plan: due (overdue)
        conn.execute("UPDATE residents SET created_at = now() - interval '20 days'")
        conn.execute("UPDATE residents SET phone = %s WHERE resident_id = 'site-a-r1'",
                     (ELDER_PHONE,))  # fmt: skip
    errors: list[str] = []
    with InProcessGateway(gateway_settings(db, broker)) as gw:
        page = new_page(browser, errors, width=390, height=844, locale="zh-CN",
                        is_mobile=True, has_touch=True)  # fmt: skip
        sign_in(page, f"{gw.api_url}/worker", "worker-a")
        due = page.locator("#elders article.elder")
        expect(due).to_have_count(1)
        expect(due).to_have_attribute("data-resident-id", "site-a-r0")
        expect(due).to_contain_text("已逾期")
        section = page.locator("#others-section")
        expect(section).to_be_visible()
        expect(section.locator("h2")).to_contain_text("其他负责老人")
        other = section.locator("article.elder")
        expect(other).to_have_count(1)  # r2 is not hers
        expect(other).to_have_attribute("data-resident-id", "site-a-r1")
        expect(other).to_have_class("card elder quiet")
        expect(other.locator("li.due")).to_have_count(0)
        due_box, other_box = due.bounding_box(), other.bounding_box()
        assert due_box is not None and other_box is not None
        assert due_box["y"] < other_box["y"]  # the due list first
        _no_sideways_scroll(page)
        _accessible(page)
        shot(page, "worker-other-elders.png")

        # 呼叫 from the quiet card: the elder's own number, masked.
        other.locator("button.call-open").click()
        expect(page.locator("#wcall-title")).to_have_text("呼叫 · Resident 1")
        callees = page.locator("#wcallees li")
        expect(callees).to_have_count(1)
        expect(callees.nth(0)).to_contain_text("老人本人 Resident 1 · 021****0199")
        page.click("#wcall-resident-site-a-r1")
        expect(page.locator("#wcall-dial")).to_have_attribute("href", "tel:02155550199")
        _no_sideways_scroll(page)
        page.click("#wcall-close")
        expect(page.locator("#work")).to_be_visible()

        # 记录探访 from the quiet card: a phone visit; the elder stays among the others.
        other.locator("button.record-visit").click()
        expect(page.locator("#record")).to_be_visible()
        expect(page.locator("#record-title")).to_have_text("记录探访 · Resident 1")
        expect(page.locator("#kind")).to_have_value("phone")
        page.click("#save")
        expect(page.locator("#notice")).to_contain_text("探访已记录")
        expect(other).to_have_count(1)
        expect(due).to_have_count(1)
        page.context.close()

        # Staff on the same page: the site's due list, no "other elders" section.
        page = new_page(browser, errors, width=390, height=844, locale="zh-CN")
        sign_in(page, f"{gw.api_url}/worker", "duty-a")
        expect(page.locator("#elders article.elder")).to_have_count(1)
        expect(page.locator("#others-section")).to_be_hidden()
        page.context.close()
    visits = db.rows("SELECT resident_id, kind, visitor_id FROM visits")
    assert visits == [("site-a-r1", "phone", worker)]
    assert errors == []
