"""The console's test-mode banner in a real browser (Playwright + Debian Chromium).

An installer starts an acceptance test through the API; the duty staff console shows the
bed under test with a countdown (zh-CN first), and the banner goes once the test finishes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from gateway.api.auth import create_user
from tests.browser import PASSWORD, TIMEOUT_MS
from tests.browser import shot as _shot
from tests.browser import sign_in as _sign_in
from tests.support import (
    Broker,
    Database,
    InProcessGateway,
    gateway_settings,
    make_site,
    signed_in_client,
)

pytestmark = pytest.mark.e2e


def test_bed_under_test_shows_a_banner_with_a_countdown(
    db: Database, broker: Broker, browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    make_site(db, broker, site_id="site-a", beds=2)
    with db.connect() as conn:
        create_user(conn, "duty-a", "duty_staff", PASSWORD, site_id="site-a")
        create_user(conn, "inst-a", "installer", PASSWORD, site_id="site-a")
    errors: list[str] = []
    with InProcessGateway(gateway_settings(db, broker)) as gw:
        inst = signed_in_client(gw.api_url, "inst-a", PASSWORD)
        started = inst.post("/devices/site-a-bt0/acceptance", json={"timeout_s": 300})
        assert started.status_code == 201, started.text

        page = browser.new_context(viewport={"width": 1366, "height": 800}).new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        _sign_in(page, gw.api_url + "/", "duty-a")
        expect(page.locator("#board")).to_be_visible()
        banner = page.locator("#test-mode")
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("测试中")
        expect(banner).to_contain_text("BED-site-a-0000")
        expect(banner).to_contain_text("site-a-bt0")
        countdown = banner.locator(".countdown")
        expect(countdown).to_have_text(re.compile(r"^[45]:\d\d$"))
        first = countdown.inner_text()
        expect(countdown).not_to_have_text(first)  # it counts down every second
        page.screenshot(path=str(tmp_path / "test-mode.png"))
        _shot(page, "console-test-mode.png")

        done = inst.post(f"/acceptance/{started.json()['test_id']}/finish", json={"abort": True})
        assert done.status_code == 200
        expect(banner).to_be_hidden(timeout=15_000)  # the next poll (every 10 s)
        inst.close()
    assert errors == []
