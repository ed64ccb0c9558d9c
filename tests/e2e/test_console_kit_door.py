"""The staff console names a "door not opened for days" incident (i18n-kit-door.js) in a real
browser (Playwright + Debian Chromium): its type label and plain reason sentence, zh-CN
first, English after the language switch."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.api.auth import create_user
from gateway.workflow.service import IncidentService, Trigger
from gateway.workflow.transitions import IncidentType
from tests.browser import PASSWORD, TIMEOUT_MS
from tests.browser import sign_in as _sign_in
from tests.support import Broker, Database, InProcessGateway, gateway_settings, make_site

pytestmark = pytest.mark.e2e


def test_the_console_labels_and_explains_a_door_unused_incident(
    db: Database, broker: Broker, browser: Any
) -> None:
    from playwright.sync_api import expect

    make_site(db, broker, site_id="site-a", beds=1, wearables=False, buttons=False)
    with db.connect() as conn:
        create_user(conn, "duty-door", "duty_staff", PASSWORD, site_id="site-a")
        details = {"unused_days": 3.2, "last_opened": time.time() - 3.2 * 86400}
        incident, _ = IncidentService(conn).raise_or_join(
            Trigger(IncidentType.DOOR_UNUSED, "site-a", datetime.now(UTC),
                    "door not opened for 3.2 days", resident_id="site-a-r0", details=details)
        )  # fmt: skip
    errors: list[str] = []
    with InProcessGateway(gateway_settings(db, broker)) as gw:
        page = browser.new_context(viewport={"width": 1366, "height": 800}).new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        _sign_in(page, gw.api_url + "/", "duty-door")
        row = page.locator(f'tr[data-incident-id="{incident.id}"]')
        expect(row).to_contain_text("多日未开门")
        expect(row).to_contain_text("P3")
        row.click()
        expect(page.locator("#detail")).to_contain_text("家门已 3 天未打开")
        expect(page.locator("#detail")).to_contain_text("请电话或上门确认老人安好")
        page.click("#lang")
        expect(row).to_contain_text("Door not opened for days")
        expect(page.locator("#detail")).to_contain_text("call or visit to check the resident")
    assert errors == []
