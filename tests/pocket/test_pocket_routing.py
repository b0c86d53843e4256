"""Calls reach the nurse wherever she is, end to end: real emulated bed terminals (the real
firmware in MicroPython), the real host, and three nurses each logged in on her own phone (a
Chromium context with a phone's viewport) — Anna and Ben, each the other's buddy, and Carla, the
charge nurse — plus the station console. Timings come from the test ward's short `wait_s`
(bathroom 3 s, patient 30 s), never from sleeps."""
from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.console.conftest import login as station_login
from tests.pocket.conftest import PASSWORD, STAFF, assign, my_card, other_card, pocket_login, shift, staff_toml
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]
BATHROOM_WAIT_S = 3.0          # staff_toml: a bathroom call's step waits this long for an Accept
ROUTED_MS = 8_000              # a call on a phone after a button press, on a busy two-core machine


def staffed(make_terminals, n: int = 4, **toml_kw):
    """A ward of n real boards (two beds a room), STAFF with badges, this shift assigned."""
    rig = make_terminals(n, extra_toml=staff_toml(**toml_kw))
    rooms = sorted({d["room"] for d in rig.ward.devices})
    assign(rig.api, rig.ward.api_url, shift(rooms))
    return rig


def phone_of(phones, url: str, user: str):
    page = phones(user)
    pocket_login(page, url, user, PASSWORD)
    return page


def station(phones, url: str, user: str = "carla"):
    page = phones("station", desktop=True)
    station_login(page, url, user, PASSWORD)
    return page


def station_card(page, device: str):
    return page.locator(f'#calls li.call[data-device="{device}"]')


def test_a_call_reaches_its_nurse_first_and_a_decline_moves_it_to_the_buddy(phones, make_terminals):
    rig = staffed(make_terminals, 4)
    url = rig.ward.api_url
    anna, ben, carla = (phone_of(phones, url, who) for who in ("anna", "ben", "carla"))
    desk = station(phones, url)
    board, device = rig.board(0), "bed-101-1"                  # Anna's bed; Ben is her buddy

    board.tap("call", 150)
    card = my_card(anna, device)
    expect(card).to_be_visible(timeout=ROUTED_MS)
    expect(card.locator(".where")).to_have_text("Room 101 · Bed 1")
    expect(card.locator(".kind")).to_have_text("Patient")
    expect(card.locator(".status")).to_contain_text("For you — primary nurse")
    expect(card.locator(".btn-accept")).to_be_visible()
    expect(card.locator(".btn-decline")).to_be_visible()
    # the others see it below their own calls, with no buttons, and their phones stay quiet
    for other in (ben, carla):
        expect(other_card(other, device)).to_be_visible()
        expect(other_card(other, device).locator(".status")).to_contain_text("For Anna Berg (primary nurse)")
        expect(other_card(other, device).locator(".actions")).to_be_hidden()
        expect(my_card(other, device)).to_have_count(0)
        expect(other.locator("body")).to_have_attribute("data-sound", "off")
    # Anna's phone sounds (a patient call: low priority) and asks to vibrate
    expect(anna.locator("body")).to_have_attribute("data-sound", "low")
    anna.wait_for_function("() => pocket.buzz.count > 0 && pocket.buzz.last === 'low'")
    expect(station_card(desk, device).locator(".route")).to_contain_text("For Anna Berg (primary nurse)")

    # Anna is busy: Decline passes it to Ben at once (a patient call would wait 30 s)
    card.locator(".btn-decline").click()
    bens = my_card(ben, device)
    expect(bens).to_be_visible()
    expect(bens.locator(".status")).to_contain_text("For you — buddy")
    expect(bens.locator(".status")).to_contain_text("declined: Anna Berg")
    expect(bens.locator(".btn-accept")).to_be_visible()
    expect(my_card(anna, device)).to_have_count(0)
    expect(other_card(anna, device).locator(".status")).to_contain_text("You declined")
    expect(anna.locator("body")).to_have_attribute("data-sound", "off")
    expect(ben.locator("body")).to_have_attribute("data-sound", "low")
    expect(station_card(desk, device).locator(".route")).to_contain_text("declined: Anna Berg")
    expect(station_card(desk, device).locator(".route")).to_contain_text("Ben Okafor")

    # Ben accepts: he is coming — on every phone, at the station, and on the bed's reassurance lamp
    bens.locator(".btn-accept").click()
    expect(bens.locator(".status")).to_have_text("You accepted — you are coming")
    expect(bens.locator(".actions")).to_be_hidden()
    for other in (anna, carla):
        expect(other_card(other, device).locator(".status")).to_contain_text("Ben Okafor is coming")
    expect(station_card(desk, device)).to_have_attribute("data-state", "acknowledged")
    expect(station_card(desk, device).locator(".status")).to_contain_text("Ben Okafor")
    board.wait_output("lamp_reassure", 0, 5)                  # acknowledged: the steady lamp starts to dip
    expect(ben.locator("body")).to_have_attribute("data-sound", "off")


def test_no_answer_passes_the_call_to_the_buddy_then_the_charge_nurse_then_everyone(phones, make_terminals):
    rig = staffed(make_terminals, 4)
    url = rig.ward.api_url
    anna, ben, carla = (phone_of(phones, url, who) for who in ("anna", "ben", "carla"))
    desk = station(phones, url, "admin")
    board, device = rig.board(2), "bed-102-1"                  # Ben's bed; Anna is his buddy

    placed = time.monotonic()
    board.cord("pulled")                                       # a bathroom call: 3 s a step
    expect(my_card(ben, device)).to_be_visible(timeout=ROUTED_MS)
    expect(my_card(ben, device).locator(".status")).to_contain_text("For you — primary nurse")
    expect(ben.locator("body")).to_have_attribute("data-sound", "medium")
    expect(my_card(anna, device)).to_have_count(0)

    expect(my_card(anna, device)).to_be_visible(timeout=ROUTED_MS + 1000 * BATHROOM_WAIT_S)
    to_buddy = time.monotonic() - placed
    expect(my_card(anna, device).locator(".status")).to_contain_text("For you — buddy")
    expect(my_card(carla, device)).to_be_visible(timeout=ROUTED_MS + 1000 * BATHROOM_WAIT_S)
    to_charge = time.monotonic() - placed
    expect(my_card(carla, device).locator(".status")).to_contain_text("For you — charge nurse")
    route = station_card(desk, device).locator(".route")
    expect(route).to_have_attribute("data-step", "all", timeout=ROUTED_MS + 1000 * BATHROOM_WAIT_S)
    to_all = time.monotonic() - placed
    expect(route).to_contain_text("everyone on shift")
    # each step waited its 3 s for an Accept (never less: the host's clock cannot run early)
    assert to_buddy >= BATHROOM_WAIT_S - 0.2 and to_charge >= 2 * BATHROOM_WAIT_S - 0.2 and to_all >= 3 * BATHROOM_WAIT_S - 0.2, \
        (to_buddy, to_charge, to_all)
    # a route only widens: all three still have it, and it still rings on each phone
    for page in (anna, ben, carla):
        expect(my_card(page, device).locator(".btn-accept")).to_be_visible()
        expect(page.locator("body")).to_have_attribute("data-sound", "medium")
    my_card(carla, device).locator(".btn-accept").click()
    for page in (anna, ben):
        expect(other_card(page, device).locator(".status")).to_contain_text("Carla Diaz is coming")
        expect(page.locator("body")).to_have_attribute("data-sound", "off")
    expect(station_card(desk, device)).to_have_attribute("data-state", "acknowledged")


def test_a_logged_out_nurse_is_skipped_and_an_unassigned_bed_goes_to_the_charge_nurse_and_warns(phones, make_terminals):
    rig = make_terminals(4, extra_toml=staff_toml())
    url = rig.ward.api_url
    # this shift: room 101 is Anna's (Ben her buddy); bed 102-1 is Ben's; nobody has bed 102-2
    assign(rig.api, url, {"charge": "carla", "set": [{"rooms": ["101"], "primary": "anna", "secondary": "ben"},
                                                   {"beds": ["102/1"], "primary": "ben"}]})
    desk = station(phones, url)
    warning = desk.locator('#alarms li[data-kind="unassigned_beds"]')
    expect(warning).to_be_visible()
    expect(warning.locator(".alarm-text")).to_contain_text("no nurse assigned: Room 102 bed 2")
    anna, ben, carla = (phone_of(phones, url, who) for who in ("anna", "ben", "carla"))

    # Anna logs out (end of her break: she forgot to log back in)
    anna.click("#logout")
    expect(anna.locator("#login-screen")).to_be_visible()
    rig.board(0).tap("call", 150)                              # her bed
    # skipped at once, not after the 30 s a patient call's step waits: Ben has it
    expect(my_card(ben, "bed-101-1")).to_be_visible(timeout=ROUTED_MS)
    expect(my_card(ben, "bed-101-1").locator(".status")).to_contain_text("For you — buddy")
    route = station_card(desk, "bed-101-1").locator(".route")
    expect(route).to_contain_text("skipped: Anna Berg (logged out)")
    expect(desk.locator('#staff-list li[data-user="anna"] .staff-reach')).to_have_text("logged out")

    # a call on the bed nobody has: straight to the charge nurse, and the warning stands
    rig.board(3).tap("call", 150)
    expect(my_card(carla, "bed-102-2")).to_be_visible(timeout=ROUTED_MS)
    expect(my_card(carla, "bed-102-2").locator(".status")).to_contain_text("For you — charge nurse")
    expect(warning).to_be_visible()
    # the charge nurse assigns the bed on the grid: the warning goes
    desk.click("#tab-assign")
    row = desk.locator('#assign-grid tr[data-bed="102/2"]')
    expect(row).to_have_attribute("data-unassigned", "true")
    expect(desk.locator("#assign-unassigned")).to_contain_text("Room 102 bed 2")
    row.locator('button[data-user="ben"][data-role="primary"]').click()
    expect(row).to_have_attribute("data-unassigned", "false")
    expect(row.locator('button[data-user="ben"][data-role="primary"]')).to_have_attribute("aria-pressed", "true")
    expect(desk.locator("#assign-unassigned")).to_be_hidden()
    desk.click("#tab-board")
    expect(warning).to_have_count(0)


def test_the_phone_says_it_is_open_every_15_s_and_a_silent_phone_is_skipped(phones, make_terminals):
    rig = staffed(make_terminals, 2, phone_silent_s=20)
    url = rig.ward.api_url
    desk = station(phones, url)
    # Ben's phone stays open: it is the one whose heartbeats are timed
    beats: list[float] = []
    ben = phones("ben")
    ben.on("request", lambda r: beats.append(time.monotonic()) if r.method == "POST" and r.url.endswith("/api/pocket/heartbeat") else None)
    pocket_login(ben, url, "ben", PASSWORD)
    anna = phone_of(phones, url, "anna")
    expect(desk.locator('#staff-list li[data-user="anna"]')).to_have_attribute("data-reachable", "true")
    expect(anna.locator("#duty")).to_contain_text("calls for you ring here")

    # Anna's phone goes dark (the page closed) while Ben's goes on: both at once, one wait
    anna.close()
    # Ben's next heartbeat 15 s after his first (bounded from below: it can come late, never early)
    ben.wait_for_function("() => pocket.link.heartbeats >= 2", timeout=25_000)
    assert len(beats) >= 2 and beats[1] - beats[0] >= 14.5, beats
    # after phone_silent_s the host skips Anna
    reach = desk.locator('#staff-list li[data-user="anna"] .staff-reach')
    expect(reach).to_have_text("phone silent", timeout=30_000)
    expect(desk.locator('#staff-list li[data-user="ben"]')).to_have_attribute("data-reachable", "true")
    rig.board(0).tap("call", 150)                              # her bed
    expect(my_card(ben, "bed-101-1")).to_be_visible(timeout=ROUTED_MS)
    expect(station_card(desk, "bed-101-1").locator(".route")).to_contain_text("skipped: Anna Berg (phone silent)")


def test_touch_targets_are_large_on_a_phone(phones, make_terminals):
    rig = staffed(make_terminals, 2)
    anna = phone_of(phones, rig.ward.api_url, "anna")
    rig.board(0).tap("call", 150)
    card = my_card(anna, "bed-101-1")
    expect(card).to_be_visible(timeout=ROUTED_MS)
    for button in (card.locator(".btn-accept"), card.locator(".btn-decline"), anna.locator("#logout")):
        box = button.bounding_box()
        assert box["height"] >= 56 and box["width"] >= 56, box
    # nothing wider than the phone: no sideways scrolling
    assert anna.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    expect(card.locator(".where")).to_be_in_viewport()
    assert STAFF["anna"][0] in anna.locator("#user-name").inner_text()


def sounded(board, since: float) -> bool:
    """The board's buzzer made a sound (a PWM duty above 0) since `since`."""
    return any(value for _, value in board.history("buzzer", since=since))


def test_a_badge_in_moves_the_chime_to_the_room_the_nurse_is_in(phones, make_terminals):
    rig = staffed(make_terminals, 6)            # rooms 101 and 103 are Anna's, 102 Ben's
    url = rig.ward.api_url
    anna = phone_of(phones, url, "anna")
    desk = station(phones, url)
    board = {d: rig.board(i) for i, d in enumerate(rig.devices)}
    badge = STAFF["anna"][2]

    # Anna badges in at a bed of room 102: she is there, on the station's map and on her phone
    board["bed-102-1"].present_badge(badge)
    expect(desk.locator('.room[data-room="102"]')).to_have_attribute("data-staff", "Anna Berg", timeout=ROUTED_MS)
    expect(desk.locator('.room[data-room="102"] .staff-names')).to_have_text("● Anna Berg")
    expect(desk.locator('#staff-list li[data-user="anna"] .staff-where')).to_contain_text("Room 102")
    expect(anna.locator("#user-where")).to_have_text("in Room 102")
    board["bed-102-1"].remove_badge()                           # she puts the card away (no second toggle)

    # a call on her bed in room 101: her phone, and the terminals of the room she is in (CMD_NOTIFY:
    # a burst, and the call's pattern on the dome — a patient call: steady); room 103 stays dark
    since = time.monotonic()
    board["bed-101-1"].tap("call", 150)
    expect(my_card(anna, "bed-101-1")).to_be_visible(timeout=ROUTED_MS)
    for device in ("bed-102-1", "bed-102-2"):
        board[device].wait_output("dome", 1, 5)
        # the lamp and buzzer tasks drive their pins each in its own time: wait for the burst too
        wait_until(lambda: sounded(board[device], since), 5, f"the burst on {device}")
    for device in ("bed-103-1", "bed-103-2"):
        assert not any(v for _, v in board[device].history("dome", since=since)), device
        assert not sounded(board[device], since), device

    # she walks on to room 103 and badges in there: the call moves with her
    moved = time.monotonic()
    board["bed-103-1"].present_badge(badge)
    expect(desk.locator('.room[data-room="103"]')).to_have_attribute("data-staff", "Anna Berg", timeout=ROUTED_MS)
    expect(desk.locator('.room[data-room="102"]')).to_have_attribute("data-staff", "")
    expect(anna.locator("#user-where")).to_have_text("in Room 103")
    for device in ("bed-103-1", "bed-103-2"):
        board[device].wait_output("dome", 1, 5)
        wait_until(lambda: sounded(board[device], moved), 5, f"the burst on {device}")
    for device in ("bed-102-1", "bed-102-2"):
        board[device].wait_output("dome", 0, 5)                # no call of its own: dark again
    # accepted on her phone: she is coming
    my_card(anna, "bed-101-1").locator(".btn-accept").click()
    expect(station_card(desk, "bed-101-1")).to_have_attribute("data-state", "acknowledged")
