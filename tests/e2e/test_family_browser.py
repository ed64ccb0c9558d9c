"""The family view's ratings and away mode (issue 13 §7) in a real browser (Playwright +
Debian Chromium), on a 390 px phone and a 1366 px desktop: the family member sees the
outcome of a resolved incident, recent visits and services, rates the handling with stars
and a comment, sets "随家人外出" for two days and ends it again; nothing overflows the width.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.api.auth import create_user
from gateway.storage import visits as visits_store
from gateway.workflow.service import Actor, IncidentService, Trigger
from gateway.workflow.transitions import IncidentType, Role
from tests.browser import PASSWORD, new_page, shot, sign_in
from tests.support import Broker, Database, InProcessGateway, gateway_settings, make_site

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 800}


def _resolved_incident(db: Database, staff_id: str) -> int:
    actor = Actor(staff_id, Role.DUTY_STAFF)
    with db.connect() as conn:
        service = IncidentService(conn)
        incident, _ = service.raise_or_join(
            Trigger(
                IncidentType.FALL,
                "site-a",
                datetime.now(UTC) - timedelta(hours=2),
                "test fall",
                resident_id="site-a-r0",
            )
        )
        service.acknowledge(incident.id, actor)
        service.resolve(incident.id, actor, "assisted")
    return incident.id


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["390px", "1366px"])
def test_family_rates_a_resolved_incident_and_sets_away_mode(
    db: Database, broker: Broker, browser: Any, viewport: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    make_site(db, broker, site_id="site-a", beds=1)
    now = datetime.now(UTC)
    with db.connect() as conn:
        staff_id = create_user(conn, "duty-a", "duty_staff", PASSWORD, site_id="site-a")
        create_user(conn, "fam-a", "family", PASSWORD, residents=["site-a-r0"])
        visits_store.insert_visit(
            conn, "site-a-r0", kind="phone", visitor_id=staff_id,
            visited_at=now - timedelta(days=1), outcome="well", notes="private note",
            concerns=[], proof_code=None, proof_method=None,
        )  # fmt: skip
        visits_store.insert_service(
            conn, "site-a-r0", service="bathing", staff_id=staff_id,
            delivered_at=now - timedelta(days=2), minutes=40, proof_code="ELD-site-a-0000",
            proof_method="scan", notes=None,
        )  # fmt: skip
    incident_id = _resolved_incident(db, staff_id)
    errors: list[str] = []
    mobile = viewport["width"] < 500
    with InProcessGateway(gateway_settings(db, broker)) as gw:
        page = new_page(browser, errors, width=viewport["width"], height=viewport["height"],
                        locale="zh-CN", is_mobile=mobile, has_touch=mobile)  # fmt: skip
        ctx = page.context
        sign_in(page, gw.api_url + "/family", "fam-a")
        card = page.locator('article[data-resident-id="site-a-r0"]')
        expect(card).to_be_visible()
        # the outcome of the incident, recent visits and services (no visitor, no notes)
        item = card.locator(f'li[data-incident-id="{incident_id}"]')
        expect(item).to_contain_text("跌倒")
        expect(item).to_contain_text("处理结果：已协助")
        expect(card.locator("ul.visits")).to_contain_text("电话探访 · 状况良好")
        expect(card.locator("ul.services")).to_contain_text("助浴 · 40 分钟")
        expect(card).not_to_contain_text("private note")

        # rate the handling: 4 stars and a comment
        page.click(f"#rate-{incident_id}")
        form = page.locator(f"#rate-form-{incident_id}")
        expect(form).to_contain_text("您对这次处理满意吗？")
        form.locator('button[data-stars="4"]').click()
        expect(form.locator('button[data-stars="4"]')).to_have_attribute("aria-pressed", "true")
        page.fill(f"#rate-comment-{incident_id}", "护工来得很快")
        page.click(f"#rate-submit-{incident_id}")
        expect(page.locator(f"#rated-{incident_id}")).to_contain_text("★★★★☆")
        expect(card.locator(".notice")).to_have_text("评价已提交，谢谢！")
        assert db.rows("SELECT stars, comment FROM incident_ratings") == [(4, "护工来得很快")]
        shot(page, f"family-rated-{viewport['width']}.png")

        # away mode: today and tomorrow (the site's zone, UTC+8)
        today = (now + timedelta(hours=8)).date()
        page.fill("#away-end-site-a-r0", str(today + timedelta(days=1)))
        page.fill("#away-note-site-a-r0", "去女儿家住两天")
        page.click("#away-submit-site-a-r0")
        period = card.locator(".away-period.active")
        expect(period).to_contain_text(f"外出中：{today} 至 {today + timedelta(days=1)}")
        expect(period).to_contain_text("去女儿家住两天")
        expect(card.locator(".notice")).to_have_text("已设置外出")
        expect(card.locator(".status-line")).to_have_text(
            f"随家人外出中（至 {today + timedelta(days=1)}）"
        )
        assert db.scalar("SELECT count(*) FROM away_periods WHERE ended_at IS NULL") == 1
        fits = "document.documentElement.scrollWidth <= window.innerWidth"
        assert page.evaluate(fits), "the family view overflows the screen width"
        if mobile:  # the smallest phone the view is made for
            page.set_viewport_size({"width": 360, "height": 740})
            assert page.evaluate(fits), "the family view overflows a 360 px screen"
            shot(page, "family-away-360.png")
        shot(page, f"family-away-{viewport['width']}.png")

        # back home early: end it
        period.locator("button").click()
        expect(card.locator(".notice")).to_have_text("已结束外出")
        expect(card.locator(".away-period")).to_have_count(0)
        assert db.scalar("SELECT count(*) FROM away_periods WHERE ended_at IS NOT NULL") == 1

        # English on request
        page.click("#lang")
        expect(page.locator(f"#rated-{incident_id}")).to_contain_text("Your rating")
        expect(card.locator(".away h3")).to_have_text("Away with family")
        assert page.evaluate(fits)
        ctx.close()
    assert errors == []
