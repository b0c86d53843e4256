"""A flood of forged ids seen in a real Chromium console: the code blue that follows is the first
card, at the top of the page, above every alarm; the alarms are a handful, not thousands."""
from __future__ import annotations

import asyncio

import pytest
from playwright.sync_api import expect

from tests.console.conftest import login, sim_terminal
from tests.faults.ledger import db_rows
from tests.security.flooders import attacker_tls, flood_discovers, flood_hellos
from wardcall.protocol import wardproto

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def test_a_code_blue_after_thousands_of_forged_ids_is_the_top_card(page, ward_server_factory, make_ward, aloop):
    ward = make_ward(terminals=4, heartbeat_ms=500)
    server = ward_server_factory(ward)
    login(page, server.api_url)
    real = ward.device(1)["device_id"]
    assert flood_discovers(ward.discovery_port, 5000, real) == 0
    hellos = aloop.run(flood_hellos(ward.terminal_port, 2000, real, attacker_tls(ward.tls == "plain")), timeout=90)
    assert hellos.answered == 0 and hellos.closed >= 1000, hellos
    blue_terminal = sim_terminal(aloop, ward, 0)
    aloop.run(blue_terminal.place_call(wardproto.CODE_BLUE))
    first = page.locator("#calls li.call").first
    expect(first).to_have_attribute("data-device", blue_terminal.device)
    expect(first).to_have_attribute("data-kind", "code_blue")
    expect(page.locator("body")).to_have_attribute("data-connection", "live")
    alarms = page.locator("#alarms li.alarm")
    expect(alarms.first).to_be_visible()
    # the flood's alarms (this test ward assigns nobody: its standing "no nurse assigned" is not one)
    flood_alarms = page.locator('#alarms li.alarm:not([data-kind="unassigned_beds"])')
    assert flood_alarms.count() <= 6, f"{flood_alarms.count()} alarms on the console"
    assert page.locator("#unknown-devices .unknown").count() <= 6
    for width, height in ((1600, 900), (1000, 800)):        # two columns, and one
        page.set_viewport_size({"width": width, "height": height})
        page.evaluate("window.scrollTo(0, 0)")
        box = first.bounding_box()
        assert box is not None and box["y"] < 250, f"the code blue card is {box and box['y']} px down the page"
        for i in range(alarms.count()):
            alarm_box = alarms.nth(i).bounding_box()
            assert alarm_box is None or alarm_box["y"] >= box["y"], "an alarm is above the code blue"
        height_of_page = page.evaluate("document.documentElement.scrollHeight")
        assert height_of_page < 4000, f"the page is {height_of_page} px tall"
    rows = db_rows(ward.database, "SELECT * FROM events WHERE kind LIKE 'auth_refused%'")
    assert len(rows) <= 6, f"{len(rows)} refusal rows"
