"""A console that missed the live event still shows and sounds the emergency (real browser).

Two consoles in Debian's Chromium: one whose stream is connected but whose event is dropped
at the gateway's feed, one whose stream never opens (paused on the way). An emergency is
raised; both show it, flash the banner and beep within the reconcile interval
(``api.console_reconcile_s``, set short here), exactly as for a live event. The selected
incident's timeline shows the escalation: the tier reached and the nurse paged on the console.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.api.auth import create_user
from gateway.api.livefeed import LiveFeed
from gateway.escalation import intake
from gateway.escalation.roster import DutyRole, add_shift
from gateway.workflow.service import IncidentService, Trigger
from gateway.workflow.transitions import IncidentType
from tests.browser import PASSWORD, SCREENSHOTS, new_page, sign_in
from tests.support import Broker, Database, InProcessGateway, gateway_settings, make_site

pytestmark = pytest.mark.e2e

RECONCILE_S = 3.0
SLACK_S = 2.0  # page work and one refresh round trip on a loaded machine
POSITIVE = re.compile(r"^[1-9][0-9]*$")


def test_console_that_missed_the_event_shows_and_sounds_within_the_reconcile_interval(
    db: Database, broker: Broker, browser: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from playwright.sync_api import expect

    make_site(db, broker, site_id="site-a", beds=1)
    now = datetime.now(UTC)
    with db.connect() as conn:
        nurse = create_user(conn, "duty-a", "duty_staff", PASSWORD, site_id="site-a")
        add_shift(conn, "site-a", user_id=nurse, role=DutyRole.DUTY_STAFF,
                  starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=7))  # fmt: skip
    ladder = tmp_path / "escalation.toml"
    ladder.write_text(
        '[ladder]\n[[ladder.tiers]]\nname = "duty_staff"\naudience = "duty_staff"\n'
        "timeout_s = 600\n"
    )
    settings = gateway_settings(
        db, broker,
        SAFEHOME_API__CONSOLE_RECONCILE_S=str(RECONCILE_S),
        SAFEHOME_ESCALATION__LADDER_CONFIG=str(ladder),
        SAFEHOME_ESCALATION__POLL_INTERVAL_S="0.1",
    )  # fmt: skip
    errors: list[str] = []
    with InProcessGateway(settings) as gw:
        url = gw.api_url + "/"
        # Console A: the stream connects for real.
        live = new_page(browser, errors, width=1366, height=900)
        sign_in(live, url, "duty-a")  # the click is the user gesture that lets the alarm sound
        expect(live.locator("#feed-status")).to_have_class("feed feed-on")
        # Console B (a phone): the stream request never gets an answer (paused on the way).
        paused = new_page(browser, errors, width=390, height=900)
        paused.route("**/incidents/stream", lambda route: None)
        sign_in(paused, url, "duty-a")
        for page in (live, paused):
            expect(page.locator("#board")).to_be_visible()
            expect(page.locator("#empty")).to_be_visible()
            # The setting reached the page; the clock runs in a worker (allowed by the page's
            # Content-Security-Policy, not throttled in a background tab) and ticks.
            body = page.locator("body")
            expect(body).to_have_attribute("data-reconcile-ms", str(int(RECONCILE_S * 1000)))
            expect(body).to_have_attribute("data-reconcile-clock", "worker")
            expect(body).to_have_attribute("data-reconciles", POSITIVE)
            assert page.evaluate("document.body.dataset.beeps") is None
        expect(paused.locator("#feed-status")).to_have_class("feed feed-off")
        # From now on the feed drops every event: console A's stream stays connected, silent.
        monkeypatch.setattr(LiveFeed, "_fan_out", lambda self, row: None)

        with db.connect() as conn, conn.transaction():
            incident, _ = IncidentService(conn).raise_or_join(
                Trigger(IncidentType.EMERGENCY_CALL, "site-a", datetime.now(UTC), "press",
                        resident_id="site-a-r0")
            )  # fmt: skip
            intake.start_escalation(conn, incident.id, "site-a")
        raised = time.monotonic()
        within_ms = (RECONCILE_S + SLACK_S) * 1000
        for page in (live, paused):
            row = page.locator(f'tr[data-incident-id="{incident.id}"]')
            expect(row).to_be_visible(timeout=within_ms)
            expect(page.locator("#alarm")).to_be_visible(timeout=within_ms)
            expect(page.locator("#alarm-text")).to_contain_text("新紧急事件")
            expect(page.locator("body")).to_have_attribute("data-beeps", POSITIVE,
                                                           timeout=within_ms)  # fmt: skip
            assert page.evaluate("document.body.dataset.audio") == "running"
        took = time.monotonic() - raised
        assert took <= RECONCILE_S + SLACK_S, f"shown after {took:.1f} s"
        expect(live.locator("#feed-status")).to_have_class("feed feed-on")  # never noticed
        for page in (live, paused):  # found by the worker's clock, not a fallback timer
            expect(page.locator("body")).to_have_attribute("data-reconcile-clock", "worker")

        # The timeline card: the state change and the escalation (tier, the nurse paged).
        for page in (live, paused):
            page.locator(f'tr[data-incident-id="{incident.id}"]').click()
            timeline = page.locator("#timeline")
            expect(timeline.locator('li[data-kind="raised"]')).to_have_count(1)
            expect(timeline.locator('li[data-kind="escalation.tier"]')).to_contain_text(
                "值班护工", timeout=within_ms
            )
            page_line = timeline.locator('li[data-kind="escalation.page"]')
            expect(page_line).to_contain_text("呼叫 → 值班护工 · 值班台")
            expect(timeline).not_to_contain_text("duty-a")  # never the login name
            # Events and escalation steps in time order (a step once came before an
            # earlier page): every item's data-time, non-decreasing.
            times = [int(t) for t in timeline.locator("li").evaluate_all(
                "(items) => items.map((li) => li.dataset.time)")]  # fmt: skip
            assert len(times) >= 3 and times == sorted(times), times
        if SCREENSHOTS:
            live.screenshot(path=f"{SCREENSHOTS}/console-reconcile-desktop.png", full_page=True)
            paused.screenshot(path=f"{SCREENSHOTS}/console-reconcile-390.png", full_page=True)
        live.context.close()
        paused.context.close()
    assert errors == []
