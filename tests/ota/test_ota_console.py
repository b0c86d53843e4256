"""A technician watching the console sees an over-the-air update's progress and its result there,
not only on the command line: a real Chromium on the real host, an emulated board running the real
firmware, a package signed with the ward's key."""
from __future__ import annotations

import threading

import pytest
from playwright.sync_api import expect

from tests.console.conftest import browser, login, page  # noqa: F401  (the console's browser fixtures)
from tests.fixtures.host import TECH
from tests.ota.test_ota_e2e import signed_build, update

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(150)]


def test_the_console_shows_an_updates_progress_and_result(page, ota_ward, firmware_copy):  # noqa: F811
    rig = ota_ward(n=1)
    dev = rig.devices[0]
    rig.board(0).fault(delay_ms=10)        # a slower radio: the transfer is seen going
    login(page, rig.ward.api_url, *TECH)
    package = signed_build(rig, firmware_copy("0.2.0-console"))
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(job=update(rig, package, trial_s=20)[0]), daemon=True)
    runner.start()
    item = page.locator(f'#ota li.ota-item[data-device="{dev}"]')
    expect(page.locator("#ota-box")).to_be_visible(timeout=30_000)
    expect(item).to_contain_text("0.2.0-console")
    expect(item).to_have_attribute("data-state", "ok", timeout=90_000)
    expect(item).to_contain_text("updated")
    runner.join(30)
    assert outcome["job"]["devices"][0]["state"] == "ok"
    # a page opened after the update still shows its result (from /api/ota/updates)
    page.reload()
    expect(item).to_have_attribute("data-state", "ok")
