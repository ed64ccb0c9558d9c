"""The browser tests' module-scoped ``browser`` fixture (Debian's Chromium): tests/browser.py."""

from tests.browser import browser  # noqa: F401 - a fixture, offered to every e2e test module
