"""Fixtures for the console tests: a real headless Chromium (Debian's, driven by Playwright),
the host with the console routes, and simulated terminals driven from synchronous test code."""
from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.host import NURSE
from tests.support.testca import shared_ca_spki

CHROMIUM = os.environ.get("WARDCALL_CHROMIUM", "/usr/bin/chromium")


def trusting_ward_ca() -> list[str]:
    """Chromium's arguments, trusting the test wards' CA as a ward PC or phone does once the CA is
    installed (Chromium has its own store: it is given the CA's key hash)."""
    return CHROMIUM_ARGS + [f"--ignore-certificate-errors-spki-list={shared_ca_spki()}"]


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]
TIMEOUT_MS = 10_000
ROOT = Path(__file__).resolve().parents[2]


class Loop:
    """One asyncio loop in a thread, for SimTerminals and the API client from sync test code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *args) -> Any:
        async def wrapper():
            return fn(*args)
        return self.run(wrapper())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def aloop():
    loop = Loop()
    terminals: list = []
    loop.terminals = terminals
    yield loop
    for t in terminals:
        try:
            loop.run(t.close(), 5)
        except Exception:
            pass
    loop.close()


def sim_terminal(aloop: Loop, ward, index_or_device) -> Any:
    """A connected SimTerminal (created inside the loop's thread)."""
    async def make():
        t = ward.terminal(index_or_device)
        await t.connect()
        return t
    t = aloop.run(make())
    aloop.terminals.append(t)
    return t


@pytest.fixture
def browser(tmp_path):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            # the test wards' consoles are HTTPS with certificates from one CA: trust that CA's key
            args=trusting_ward_ca(),
            viewport={"width": 1600, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser):
    page = browser.pages[0] if browser.pages else browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    yield page
    assert not errors, f"JavaScript errors on the page: {errors}"


def login(page, url: str, user: str = NURSE[0], password: str = NURSE[1]) -> None:
    from playwright.sync_api import expect
    page.goto(url + "/")
    page.fill("#login-user", user)
    page.fill("#login-password", password)
    page.click("#login button[type=submit]")
    expect(page.locator("#login-screen")).to_be_hidden()
    expect(page.locator("body")).to_have_attribute("data-connection", "live")
