"""Helpers shared by the browser tests: Debian's Chromium under Playwright (never a downloaded
browser), a page with the tests' timeout and error capture, sign-in, screenshots, and the
axe-core accessibility check (axe.min.js from the installed axe-playwright-python package,
never a CDN).

The ``browser`` fixture is module-scoped; tests/e2e/conftest.py offers it to every e2e test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("SAFEHOME_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--autoplay-policy=user-gesture-required",
]  # fmt: skip
# One password for every account a browser test creates (random per test session).
PASSWORD = "pw-" + uuid.uuid4().hex[:12]
TIMEOUT_MS = 20_000
# Set to a directory to keep screenshots of the pages (development only).
SCREENSHOTS = os.environ.get("SAFEHOME_SCREENSHOT_DIR")
# The widths every page is checked at: desktop, tablet, phone.
WIDTHS = {"desktop": (1366, 800), "tablet": (768, 1024), "phone": (390, 844)}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium; a missing one fails the test (never skipped, never downloaded)."""
    if not CHROMIUM.exists():  # the test command installs it: never skip, fail loudly
        pytest.fail(f"Chromium is missing at {CHROMIUM}: run scripts/setup.sh --browser")
    from playwright.sync_api import expect, sync_playwright

    # Assertions wait as long as actions do (Playwright's own default is 5 s, which a
    # sign-in and a first render exceeded on a loaded machine: "the row came late").
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def new_page(
    browser: Any,
    errors: list[str] | None = None,
    *,
    width: int = 1366,
    height: int = 800,
    **context: Any,
) -> Any:
    """A page in a new context of ``width`` x ``height`` with the tests' default timeout;
    page errors (uncaught exceptions) are appended to ``errors``. Close it with
    ``page.context.close()``."""
    ctx = browser.new_context(viewport={"width": width, "height": height}, **context)
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    if errors is not None:
        page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def sign_in(page: Any, url: str, username: str, password: str = PASSWORD) -> None:
    """Open ``url`` and submit its sign-in form (the click is the user gesture that lets the
    console's alarm sound)."""
    page.goto(url)
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-form [type=submit]")


def shot(page: Any, name: str) -> None:
    """A full-page screenshot into SAFEHOME_SCREENSHOT_DIR, when set."""
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=True)


# -- accessibility (axe-core) --------------------------------------------------------------

# What the check fails on: axe's two highest impacts.
AXE_BLOCKING = frozenset({"serious", "critical"})


def axe_script() -> str:
    """axe.min.js as installed by pip (the axe-playwright-python package ships it)."""
    return (resources.files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (WCAG 2.x A and AA rules and axe's best
    practices). The script is evaluated by the test driver, so the page's own
    Content-Security-Policy (scripts from 'self' only) stays as it is."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_script())
    result = page.evaluate(
        "() => axe.run(document, {resultTypes: ['violations']})"
        ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary}))})))"
    )
    return list(result)


def axe_blocking(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in violations if v["impact"] in AXE_BLOCKING]


def axe_report(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']}")
        lines.extend(f"    {n['target']}: {n['summary']}" for n in v["nodes"][:5])
    return "\n".join(lines)
