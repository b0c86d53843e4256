"""Anna's phone in the middle of a shift, for the README: a code blue for everyone and a bathroom
call on her own bed under "My calls", each with Accept and Decline; below, the rest of the ward —
Ben's call and one he accepted; the header says she is in room 102. The test checks what a person
would see at that moment — the cards in order with their kind, room, bed and what they say, the
buttons — and the cards' colours in the PNG itself. The picture goes to the test's tmp dir; with
WARDCALL_SCREENSHOT=1 it is also written to docs/pocket.png:

    WARDCALL_SCREENSHOT=1 .venv/bin/pytest tests/pocket/test_pocket_screenshot.py
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.console.test_console_screenshot import close, png_colours
from tests.pocket.conftest import PASSWORD, STAFF, assign, pocket_login, sim_terminal, staff_toml
from wardcall.client import WardApi
from wardcall.protocol import wardproto

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]
DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_screenshot_of_a_nurses_phone(phones, ward_server_factory, make_ward, aloop, tmp_path):
    ward = make_ward(terminals=8, extra_toml=staff_toml(wait_s={"patient": 120, "bathroom": 90}))
    ward.config_path.write_text(ward.config_path.read_text().replace('name = "Test ward"', 'name = "Ward 7 · Internal medicine"'))
    server = ward_server_factory(ward)
    assign(aloop, server.api_url, {"charge": "carla", "set": [
        {"rooms": ["101", "102"], "primary": "anna", "secondary": "ben"},
        {"rooms": ["103", "104"], "primary": "ben", "secondary": "anna"}]})

    async def phone(user: str) -> WardApi:      # Ben's and Carla's phones, open
        api = WardApi(server.api_url)
        await api.login(user, PASSWORD)
        await api.post("/api/pocket/heartbeat", {})
        return api
    others = {user: aloop.run(phone(user)) for user in ("ben", "carla")}
    page = phones("anna", device_scale_factor=2)
    pocket_login(page, server.api_url, "anna", PASSWORD)
    t = {d["device_id"]: sim_terminal(aloop, ward, d["device_id"]) for d in ward.devices}
    aloop.call(t["bed-102-1"].presence, True, STAFF["anna"][2])          # her badge, at bed 102-1
    expect(page.locator("#user-where")).to_have_text("in Room 102")
    aloop.run(t["bed-103-2"].place_call(wardproto.PATIENT, age_ms=131_000))
    aloop.run(t["bed-104-1"].place_call(wardproto.PATIENT, age_ms=52_000))
    aloop.run(t["bed-101-2"].place_call(wardproto.BATHROOM, age_ms=38_000))
    aloop.run(t["bed-103-1"].place_call(wardproto.CODE_BLUE, age_ms=9_000))
    accepted = next(c for c in aloop.run(others["ben"].state())["calls"] if c["device"] == "bed-103-2")
    aloop.run(others["ben"].post(f"/api/calls/{accepted['id']}/accept"))
    mine, rest = page.locator("#mine li.call"), page.locator("#others li.call")
    expect(mine).to_have_count(2)
    expect(rest).to_have_count(2)
    expect(page.locator('#others li.call[data-device="bed-103-2"] .status')).to_have_text("Ben Okafor is coming")
    expect(page.locator("body")).to_have_attribute("data-sound", "high")
    page.evaluate("document.getAnimations().forEach(a => { a.pause(); a.effect.updateTiming({delay: 0}); a.currentTime = 100; })")
    path = tmp_path / "pocket.png"
    page.screenshot(path=str(path))

    # what she sees: her two calls first, most urgent first, each with Accept and Decline; then the ward
    def seen(cards):
        return [(c.get_attribute("data-device"), c.locator(".kind").inner_text(), c.locator(".where").inner_text())
                for c in cards.all()]
    assert seen(mine) == [("bed-103-1", "CODE BLUE", "Room 103 · Bed 1"), ("bed-101-2", "BATHROOM", "Room 101 · Bed 2")]
    assert seen(rest) == [("bed-103-2", "PATIENT", "Room 103 · Bed 2"), ("bed-104-1", "PATIENT", "Room 104 · Bed 1")]
    expect(mine.nth(0).locator(".status")).to_contain_text("For everyone on shift")
    expect(mine.nth(1).locator(".status")).to_contain_text("For you — primary nurse")
    expect(mine.nth(1).locator(".status")).to_contain_text("to the buddy in")
    expect(rest.nth(1).locator(".status")).to_contain_text("For Ben Okafor (primary nurse)")
    for card in mine.all():
        expect(card.locator(".btn-accept")).to_be_in_viewport()
        expect(card.locator(".btn-decline")).to_be_visible()
    for card in rest.all():
        expect(card.locator(".actions")).to_be_hidden()
    for card in [*mine.all(), *rest.all()]:
        expect(card).to_be_in_viewport(ratio=1)             # all on one phone screen
    expect(page.locator("#user-name")).to_have_text("Anna Berg")
    expect(page.locator("#duty")).to_contain_text("calls for you ring here")
    expect(page.locator("#duty")).to_contain_text("yours: 101, 102 · buddy: 103, 104")
    expect(page.locator("#lost")).to_be_hidden()
    assert page.viewport_size == {"width": 412, "height": 839}

    # and in the picture: each card's colour at its left border and where its background shows
    spots = {}
    for card in [*mine.all(), *rest.all()]:
        box = card.bounding_box()
        spots[card.get_attribute("data-device")] = {"border": (box["x"] + 6, box["y"] + box["height"] / 2),
                                                    "background": (box["x"] + box["width"] - 6, box["y"] + 8)}
    accept = mine.nth(1).locator(".btn-accept").bounding_box()
    spots["accept"] = {"button": (accept["x"] + 8, accept["y"] + accept["height"] / 2)}
    colours = png_colours(page, path, spots)
    expected = {   # pocket.css: --high, --medium, --low; the rest of the ward is --surface
        "bed-103-1": {"border": "#e01b24", "background": "#e01b24"},     # code blue: red, lit
        "bed-101-2": {"border": "#f5c211", "background": "#f5c211"},     # bathroom: yellow, lit
        "bed-103-2": {"border": "#33c7de", "background": "#1b2128"},     # someone else's: calm
        "bed-104-1": {"border": "#33c7de", "background": "#1b2128"},
        "accept": {"button": "#ffffff"},
    }
    for name, where in expected.items():
        for spot, colour in where.items():
            assert close(colours[name][spot], colour), (name, spot, colours[name][spot], colour)
    if os.environ.get("WARDCALL_SCREENSHOT"):
        shutil.copyfile(path, DOCS / "pocket.png")
    for api in others.values():
        aloop.run(api.close())
