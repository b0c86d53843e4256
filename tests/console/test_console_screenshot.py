"""A realistic ward on the console at 1600×900: a shift of two nurses and the charge nurse, several
calls of different priorities routed to them, one accepted on a nurse's phone, a nurse located in a
room by her badge, a terminal offline. The test checks what a person would see at the moment of
the picture: each call's card with its kind, room, bed and route in the page, and the cards'
colours in the PNG itself. The picture goes to the test's tmp dir; with WARDCALL_SCREENSHOT=1 it is also written to docs/console.png (for the README):

    WARDCALL_SCREENSHOT=1 .venv/bin/pytest tests/console/test_console_screenshot.py
"""
from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.console.conftest import login, sim_terminal
from tests.pocket.conftest import PASSWORD, STAFF, assign, staff_toml
from wardcall.client import WardApi
from wardcall.protocol import wardproto

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]
DOCS = Path(__file__).resolve().parents[2] / "docs"


def close(rgb: list[int], hex_colour: str, tolerance: int = 8) -> bool:
    want = [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, want))


def png_colours(page, path: Path, spots: dict[str, dict[str, tuple[float, float]]]) -> dict[str, dict[str, list[int]]]:
    """The [r, g, b] of the PNG file at each (x, y) CSS pixel, decoded by Chromium in a page of
    its own (an <img> drawn on a canvas)."""
    scale = page.evaluate("devicePixelRatio")
    decoder = page.context.new_page()
    try:
        return decoder.evaluate("""async ([png, spots, scale]) => {
            const img = new Image();
            img.src = "data:image/png;base64," + png;
            await img.decode();
            const canvas = document.createElement("canvas");
            canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
            const ctx = canvas.getContext("2d");
            ctx.drawImage(img, 0, 0);
            const out = {};
            for (const [name, where] of Object.entries(spots)) {
                out[name] = {};
                for (const [spot, [x, y]] of Object.entries(where)) {
                    const d = ctx.getImageData(Math.round(x * scale), Math.round(y * scale), 1, 1).data;
                    out[name][spot] = [d[0], d[1], d[2]];
                }
            }
            return out;
        }""", [base64.b64encode(path.read_bytes()).decode(), spots, scale])
    finally:
        decoder.close()


def test_screenshot_of_a_realistic_ward(page, ward_server_factory, make_ward, aloop, tmp_path):
    ward = make_ward(terminals=12, heartbeat_ms=500, extra_toml=staff_toml(wait_s={"patient": 120, "bathroom": 90}))
    ward.config_path.write_text(ward.config_path.read_text().replace('name = "Test ward"', 'name = "Ward 7 · Internal medicine"'))
    server = ward_server_factory(ward)
    # the shift: rooms 101-103 are Anna's (Ben her buddy), 104-106 Ben's; Carla has the shift
    assign(aloop, server.api_url, {"charge": "carla", "set": [
        {"rooms": ["101", "102", "103"], "primary": "anna", "secondary": "ben"},
        {"rooms": ["104", "105", "106"], "primary": "ben", "secondary": "anna"}]})

    async def phone(user: str) -> WardApi:      # each nurse's pocket console, open
        api = WardApi(server.api_url)
        await api.login(user, PASSWORD)
        await api.post("/api/pocket/heartbeat", {})
        return api
    phones = {user: aloop.run(phone(user)) for user in STAFF}
    login(page, server.api_url, "carla", PASSWORD)
    t = {d["device_id"]: sim_terminal(aloop, ward, d["device_id"]) for d in ward.devices}
    aloop.run(t["bed-101-1"].place_call(wardproto.PATIENT, age_ms=214_000))
    aloop.run(t["bed-104-2"].place_call(wardproto.PATIENT, age_ms=48_000))
    aloop.run(t["bed-102-2"].place_call(wardproto.BATHROOM, age_ms=97_000))
    aloop.run(t["bed-103-1"].place_call(wardproto.CODE_BLUE, age_ms=21_000))
    calls = page.locator("#calls li.call")
    expect(calls).to_have_count(4)
    # Anna accepts the oldest call on her phone
    first = next(c for c in aloop.run(phones["anna"].state())["calls"] if c["device"] == "bed-101-1")
    aloop.run(phones["anna"].post(f"/api/calls/{first['id']}/accept"))
    expect(page.locator('#calls li.call[data-device="bed-101-1"]')).to_have_attribute("data-state", "acknowledged")
    # Ben badges in at bed 105-1
    aloop.call(t["bed-105-1"].presence, True, STAFF["ben"][2])
    expect(page.locator('.room[data-room="105"]')).to_have_attribute("data-staff", "Ben Okafor")
    aloop.call(t["bed-106-2"].pause_heartbeats)
    expect(page.locator('.bed[data-device="bed-106-2"]')).to_have_attribute("data-status", "offline", timeout=10_000)
    expect(page.locator('#alarms li[data-kind="terminal_offline"]')).to_be_visible()
    page.mouse.move(0, 899)
    # a moment when the blinking lamps are lit
    page.evaluate("document.getAnimations().forEach(a => { a.pause(); a.effect.updateTiming({delay: 0}); a.currentTime = 100; })")
    path = tmp_path / "console.png"
    page.screenshot(path=str(path))

    # what a person sees at that moment: the four calls in board order, each card showing its
    # kind, room and bed; the acknowledged one saying so; the offline terminal's alarm
    cards = [(c.get_attribute("data-device"), c.locator(".kind").inner_text(), c.locator(".where").inner_text(),
              c.get_attribute("data-state")) for c in calls.all()]
    assert cards == [
        ("bed-103-1", "CODE BLUE", "Room 103 · Bed 1", "placed"),
        ("bed-102-2", "BATHROOM", "Room 102 · Bed 2", "placed"),
        ("bed-101-1", "PATIENT", "Room 101 · Bed 1", "acknowledged"),
        ("bed-104-2", "PATIENT", "Room 104 · Bed 2", "placed"),
    ], cards
    for card in calls.all():
        expect(card).to_be_in_viewport()
        expect(card.locator(".where")).to_be_visible()
    expect(page.locator('#calls li.call[data-device="bed-101-1"] .status')).to_contain_text("Seen — coming (Anna Berg")
    routes = {c.get_attribute("data-device"): c.locator(".route").inner_text() for c in calls.all()}
    assert "Anna Berg, Ben Okafor, Carla Diaz (everyone on shift)" in routes["bed-103-1"], routes
    assert routes["bed-102-2"].startswith("For Anna Berg (primary nurse)") and "to the buddy in" in routes["bed-102-2"], routes
    assert routes["bed-101-1"].startswith("Accepted by Anna Berg — coming"), routes
    assert routes["bed-104-2"].startswith("For Ben Okafor (primary nurse)"), routes
    expect(page.locator('.room[data-room="105"] .staff-names')).to_have_text("● Ben Okafor")
    expect(page.locator('#staff-list li[data-user="ben"] .staff-where')).to_contain_text("Room 105")
    expect(page.locator('#alarms li[data-kind="unassigned_beds"]')).to_have_count(0)
    expect(page.locator('#alarms li[data-kind="terminal_offline"] .alarm-text')).to_contain_text("bed-106-2")

    # and in the picture itself: each card's colour where nothing is drawn on it (its left
    # border, and the right padding of its background), read back from the PNG by the browser
    samples = {}
    for device, *_ in cards:
        box = page.locator(f'#calls li.call[data-device="{device}"]').bounding_box()
        middle = box["y"] + box["height"] / 2
        samples[device] = {"border": (box["x"] + 8, middle), "background": (box["x"] + box["width"] - 6, middle)}
    seen = png_colours(page, path, samples)
    expected = {   # console.css: --high, --medium, --low; an acknowledged card is --surface
        "bed-103-1": {"border": "#e01b24", "background": "#e01b24"},   # code blue: red, lit
        "bed-102-2": {"border": "#f5c211", "background": "#f5c211"},   # bathroom: yellow, lit
        "bed-101-1": {"border": "#33c7de", "background": "#1b2128"},   # acknowledged: calm card
        "bed-104-2": {"border": "#33c7de", "background": "#33c7de"},   # patient: cyan
    }
    for device, where in expected.items():
        for spot, colour in where.items():
            assert close(seen[device][spot], colour), (device, spot, seen[device][spot], colour)
    if os.environ.get("WARDCALL_SCREENSHOT"):
        shutil.copyfile(path, DOCS / "console.png")
    for api in phones.values():
        aloop.run(api.close())
