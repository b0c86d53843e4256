"""Fixtures for the pocket console tests: one headless Chromium (Debian's, driven by Playwright)
and, for each nurse, a browser context of her own with a phone's viewport, touch and user agent
(Playwright's "Pixel 7" device), so two or three nurses are logged in at once, each on her phone."""
from __future__ import annotations

from typing import Any, Callable

import pytest

from tests.console.conftest import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, aloop, sim_terminal  # noqa: F401 (fixtures)

PHONE = "Pixel 7"


@pytest.fixture
def phones():
    """Factory: phones(label="anna") -> a new page in a new phone-sized context of one browser.
    Every page's JavaScript errors fail the test."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        device = {k: v for k, v in p.devices[PHONE].items() if k != "default_browser_type"}
        pages: list[Any] = []

        def phone(label: str = "phone", **context_kw: Any) -> Any:
            context = browser.new_context(**{**device, **context_kw})
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            page.label = label
            page.js_errors = []
            page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
            pages.append(page)
            return page

        try:
            yield phone
        finally:
            errors = {page.label: page.js_errors for page in pages if page.js_errors}
            for page in pages:
                page.context.close()
            browser.close()
        assert not errors, f"JavaScript errors on the phones: {errors}"


def pocket_login(page: Any, url: str, user: str, password: str) -> None:
    """Open the pocket console on this phone and log in; returns when its event stream is live."""
    from playwright.sync_api import expect
    page.goto(url + "/pocket/")
    page.fill("#login-user", user)
    page.fill("#login-password", password)
    page.click("#login button[type=submit]")
    expect(page.locator("#login-screen")).to_be_hidden()
    expect(page.locator("body")).to_have_attribute("data-connection", "live")


def my_card(page: Any, device: str) -> Any:
    return page.locator(f'#mine li.call[data-device="{device}"]')


def other_card(page: Any, device: str) -> Any:
    return page.locator(f'#others li.call[data-device="{device}"]')


PhoneFactory = Callable[..., Any]
