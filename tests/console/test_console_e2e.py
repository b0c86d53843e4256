"""End to end: a button pressed on an emulated ESP32 board running the real firmware
(boards/emulator, tests/fixtures/ward.py) → the call on the console in a real headless Chromium
→ acknowledged there → the terminal's reassurance lamp changes pattern."""
from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.console.conftest import login
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def segments(board, pin, since):
    """[(level, ms)] of the complete on/off segments of an output since `since` (monotonic s)."""
    edges = []
    for t, v in board.history(pin, since=since):
        v = 1 if v else 0
        if not edges or edges[-1][1] != v:
            edges.append((t, v))
    return [(edges[i][1], round((edges[i + 1][0] - edges[i][0]) * 1000)) for i in range(len(edges) - 1)]


def wait_segments(board, pin, since, count, timeout=10.0):
    """Wait (polling the emulator's output history) until `count` complete segments are recorded."""
    def enough():
        segs = segments(board, pin, since)
        return segs if len(segs) >= count else None
    return wait_until(enough, timeout, f"{count} complete on/off segments of {pin}", interval=0.1)


def test_button_on_an_emulated_board_to_acknowledge_changes_the_lamp(page, make_terminals):
    rig = make_terminals(2)
    board, device = rig.board(0), rig.devices[0]
    login(page, rig.ward.api_url)
    expect(page.locator(f'.bed[data-device="{device}"]')).to_have_attribute("data-status", "online")
    t0 = time.monotonic()
    board.tap("call", 150)
    card = page.locator(f'#calls li.call[data-device="{device}"]')
    expect(card).to_be_visible(timeout=5_000)
    expect(card).to_have_attribute("data-kind", "patient")
    expect(card).to_have_attribute("data-state", "placed")
    expect(card.locator(".where")).to_have_text("Room 101 · Bed 1")
    # a patient call: the lamps are steady (wardproto KINDS: normal), on the board and on the page
    board.wait_output("lamp_reassure", 1, 2)
    assert card.evaluate("el => getComputedStyle(el.querySelector('.lamp')).animationName") == "none"
    board.wait_console("host stored CALL", 5)
    assert segments(board, "lamp_reassure", t0) == [], "steady before the acknowledgement"
    t1 = time.monotonic()
    card.locator(".btn-ack").click()
    expect(card).to_have_attribute("data-state", "acknowledged")
    expect(card.locator(".status")).to_contain_text("Seen — coming")
    expect(card.locator(".btn-ack")).to_be_hidden()
    # the reassurance lamp now dips every 2 s (firmware lamps.ACKNOWLEDGED: 1.8 s on, 0.2 s off)
    segs = wait_segments(board, "lamp_reassure", t1, 4)[1:]
    assert len(segs) >= 3, segs
    for level, ms in segs:
        assert abs(ms - (1800 if level else 200)) <= 240, segs
    assert board.output("dome") == 1                          # the dome light keeps the call's pattern
    assert "Traceback" not in board.console()
