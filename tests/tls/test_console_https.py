"""The console and the pocket console over HTTPS, in Debian's Chromium trusting the ward CA by
its key (--ignore-certificate-errors-spki-list, tests/console/conftest.py; no blanket ignore of
certificate errors): a secure context (what the pocket console's service worker and wake lock
need), the session cookie Secure; a Chromium that trusts another CA's key gets no page."""
from __future__ import annotations

import pytest

from tests.tls.conftest import CHROMIUM, CHROMIUM_ARGS, login
from tests.support.testca import shared_ca_spki

pytestmark = [pytest.mark.timeout(120)]


def test_the_console_and_the_pocket_console_are_served_over_https(make_ward, ward_server_factory, page):
    ward = make_ward(terminals=1)
    ward_server_factory(ward)
    assert ward.api_url.startswith("https://")
    login(page, ward.api_url)
    assert page.evaluate("window.isSecureContext") is True
    assert page.evaluate("location.protocol") == "https:"
    cookie = next(c for c in page.context.cookies() if c["name"] == "wardcall_session")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.goto(ward.api_url + "/pocket/")
    assert page.evaluate("location.pathname") == "/pocket/"
    assert page.evaluate("window.isSecureContext && 'serviceWorker' in navigator && 'wakeLock' in navigator") is True


def test_a_browser_that_trusts_another_ca_gets_no_console(make_ward, ward_server_factory, tmp_path):
    from playwright.sync_api import Error, sync_playwright
    ward = make_ward(terminals=1)
    ward_server_factory(ward)
    another = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="       # not the ward CA's key
    assert another != shared_ca_spki()
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS + [f"--ignore-certificate-errors-spki-list={another}"])
        try:
            page = context.pages[0] if context.pages else context.new_page()
            with pytest.raises(Error) as err:
                page.goto(ward.api_url + "/", timeout=10_000)
            assert "ERR_CERT_AUTHORITY_INVALID" in str(err.value), str(err.value)
        finally:
            context.close()
