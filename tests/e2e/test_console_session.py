"""The console's session in a real browser (issue 10 §3): short access tokens are renewed
with the rotating refresh token without the user noticing, sign-out ends the session at the
gateway, and a deactivated user's console is signed out by the gateway (its stream ends).

``api.token_ttl_s`` is at its minimum (60 s): the page renews a token that expires within a
minute, so it renews on every call here, which exercises renewal (and its single flight: a
refresh token works once) from the first request on.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.api.auth import create_user
from tests.browser import PASSWORD, new_page, sign_in
from tests.support import (
    Broker,
    Database,
    InProcessGateway,
    access_token,
    gateway_settings,
    make_site,
    wait_until,
)

pytestmark = pytest.mark.e2e


def test_console_renews_tokens_signs_out_and_is_signed_out_on_deactivation(
    db: Database, broker: Broker, browser: Any
) -> None:
    from playwright.sync_api import expect

    make_site(db, broker, site_id="site-a", beds=1)
    with db.connect() as conn:
        staff_id = create_user(conn, "duty-a", "duty_staff", PASSWORD, site_id="site-a")
        create_user(conn, "root", "admin", PASSWORD)
    settings = gateway_settings(
        db, broker, SAFEHOME_API__TOKEN_TTL_S="60", SAFEHOME_API__STREAM_RECHECK_S="0.3"
    )
    errors: list[str] = []
    refreshes: list[int] = []
    with InProcessGateway(settings) as gw:
        page = new_page(browser, errors, width=1366, height=800)
        page.on(
            "response",
            lambda r: refreshes.append(r.status) if r.url.endswith("/auth/refresh") else None,
        )

        def sign_in_duty() -> None:
            sign_in(page, gw.api_url + "/", "duty-a")
            expect(page.locator("#board")).to_be_visible()
            expect(page.locator("#feed-status")).to_have_class("feed feed-on")

        sign_in_duty()
        assert refreshes and set(refreshes) == {200}, refreshes  # renewed, never refused
        assert (
            db.scalar(
                "SELECT count(*) FROM auth_sessions WHERE user_id = %s AND revoked_at IS NULL",
                (staff_id,),
            )
            == 1
        )  # one session, still open: no refresh token was presented twice
        # Sign out: the gateway ends the session.
        page.click("#sign-out")
        expect(page.locator("#login")).to_be_visible()
        page.wait_for_function("() => !sessionStorage.getItem('shg.token')")
        wait_until(
            lambda: db.scalar(
                "SELECT revoked_reason FROM auth_sessions WHERE user_id = %s", (staff_id,)
            ) == "logout",
            10, "session ended by sign-out",
        )  # fmt: skip

        # Signed in again, then deactivated by an admin: the console goes back to sign-in.
        sign_in_duty()
        admin = access_token(gw.api_url, "root", PASSWORD)
        done = httpx.post(
            f"{gw.api_url}/users/{staff_id}/deactivate",
            headers={"Authorization": f"Bearer {admin}"}, timeout=30,
        )  # fmt: skip
        assert done.status_code == 200
        expect(page.locator("#login")).to_be_visible()
        expect(page.locator("#error")).to_contain_text("登录已过期")
        assert not errors, errors
