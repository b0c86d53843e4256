"""A realistic ward on the console at 1600×900: several calls of different priorities, one
acknowledged, staff present in a room, a terminal offline. The picture goes to the test's
tmp dir; with WARDCALL_SCREENSHOT=1 it is also written to docs/console.png (for the README):

    WARDCALL_SCREENSHOT=1 .venv/bin/pytest tests/console/test_console_screenshot.py
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.console.conftest import login, sim_terminal
from wardcall.protocol import wardproto

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]
DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_screenshot_of_a_realistic_ward(page, ward_server_factory, make_ward, aloop, tmp_path):
    ward = make_ward(terminals=12, heartbeat_ms=500)
    ward.config_path.write_text(ward.config_path.read_text().replace('name = "Test ward"', 'name = "Ward 7 · Internal medicine"'))
    server = ward_server_factory(ward)
    login(page, server.api_url)
    t = {d["device_id"]: sim_terminal(aloop, ward, d["device_id"]) for d in ward.devices}
    aloop.run(t["bed-101-1"].place_call(wardproto.PATIENT, age_ms=214_000))
    aloop.run(t["bed-104-2"].place_call(wardproto.PATIENT, age_ms=48_000))
    aloop.run(t["bed-102-2"].place_call(wardproto.BATHROOM, age_ms=97_000))
    aloop.run(t["bed-103-1"].place_call(wardproto.CODE_BLUE, age_ms=21_000))
    calls = page.locator("#calls li.call")
    expect(calls).to_have_count(4)
    page.locator('#calls li.call[data-device="bed-101-1"] .btn-ack').click()
    expect(page.locator('#calls li.call[data-device="bed-101-1"]')).to_have_attribute("data-state", "acknowledged")
    aloop.call(t["bed-105-1"].presence, True, "nurse")
    expect(page.locator('.room[data-room="105"]')).to_have_attribute("data-presence", "true")
    aloop.call(t["bed-106-2"].pause_heartbeats)
    expect(page.locator('.bed[data-device="bed-106-2"]')).to_have_attribute("data-status", "offline", timeout=10_000)
    expect(page.locator('#alarms li[data-kind="terminal_offline"]')).to_be_visible()
    page.mouse.move(0, 899)
    # a moment when the blinking lamps are lit
    page.evaluate("document.getAnimations().forEach(a => { a.pause(); a.effect.updateTiming({delay: 0}); a.currentTime = 100; })")
    path = tmp_path / "console.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 20_000
    if os.environ.get("WARDCALL_SCREENSHOT"):
        shutil.copyfile(path, DOCS / "console.png")
