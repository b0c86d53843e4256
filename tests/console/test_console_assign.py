"""The station console's assignment grid, each call's route, and who is where — in a real headless
Chromium against the real host and simulated terminals (the firmware is not the point here; the
pocket tests drive real boards). The staff are tests/pocket/conftest.py's: Anna and Ben, nurses,
Carla, the charge nurse, each with a badge."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.console.conftest import login, sim_terminal
from tests.pocket.conftest import PASSWORD, STAFF, assign, phones, staff_toml  # noqa: F401 (phones: a fixture)
from wardcall.client import WardApi
from wardcall.protocol import wardproto

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def row(page, bed: str):
    return page.locator(f'#assign-grid tr[data-bed="{bed}"]')


def cell(page, bed: str, user: str, role: str):
    return row(page, bed).locator(f'button[data-user="{user}"][data-role="{role}"]')


def test_a_charge_nurse_assigns_the_shift_on_the_grid_in_bulk_by_bed_and_by_copying_the_last_shift(phones, ward_server_factory, make_ward, aloop):
    ward = make_ward(terminals=6, extra_toml=staff_toml())
    server = ward_server_factory(ward)
    page = phones("carla", desktop=True)            # two PCs: a browser context each
    login(page, server.api_url, "carla", PASSWORD)
    # a nurse's console on another PC: she sees the same grid, live, and cannot change it
    other = phones("anna", desktop=True)
    login(other, server.api_url, "anna", PASSWORD)

    page.click("#tab-assign")
    expect(page.locator("#view-assign")).to_be_visible()
    expect(page.locator("#assign-shift")).to_contain_text("/")          # a shift id: <date>/<name>
    expect(page.locator("#assign-grid tbody tr")).to_have_count(6)
    for login_name, (name, _, _) in STAFF.items():
        expect(page.locator(f'#assign-grid thead th[data-user="{login_name}"] .who')).to_have_text(name)
    # nobody assigned yet: every bed warns, on the grid and in the board's alarms
    expect(page.locator("#assign-unassigned")).to_contain_text("No nurse assigned: Room 101 bed 1, Room 101 bed 2")
    expect(row(page, "101/1")).to_have_attribute("data-unassigned", "true")

    # "rooms 101 to 102 to Anna", then "101 to 103, buddy Ben"
    page.select_option("#bulk-from", "101")
    page.select_option("#bulk-to", "102")
    page.select_option("#bulk-role", "primary")
    page.select_option("#bulk-user", "anna")
    page.click("#bulk-apply")
    for bed in ("101/1", "101/2", "102/1", "102/2"):
        expect(cell(page, bed, "anna", "primary")).to_have_attribute("aria-pressed", "true")
        expect(row(page, bed)).to_have_attribute("data-unassigned", "false")
    expect(cell(page, "103/1", "anna", "primary")).to_have_attribute("aria-pressed", "false")
    expect(page.locator('#assign-grid tfoot td[data-user="anna"]')).to_have_text("4 beds")
    expect(page.locator("#assign-unassigned")).to_have_text("⚠ No nurse assigned: Room 103 bed 1, Room 103 bed 2")
    page.select_option("#bulk-to", "103")
    page.select_option("#bulk-role", "secondary")
    page.select_option("#bulk-user", "ben")
    page.click("#bulk-apply")
    expect(cell(page, "103/2", "ben", "secondary")).to_have_attribute("aria-pressed", "true")
    # one bed at a time; the charge nurse of the shift
    cell(page, "103/1", "ben", "primary").click()
    cell(page, "103/2", "ben", "primary").click()
    expect(page.locator("#assign-unassigned")).to_be_hidden()
    page.select_option("#assign-charge", "carla")
    expect(page.locator('#assign-grid thead th[data-user="carla"] .role')).to_have_text("charge of the shift")
    # the nurse's console follows at once, and offers no changes
    other.click("#tab-assign")
    expect(cell(other, "103/1", "ben", "primary")).to_have_attribute("aria-pressed", "true")
    expect(cell(other, "103/1", "ben", "primary")).to_be_disabled()
    expect(other.locator("#assign-bulk")).to_be_hidden()
    expect(other.locator("#assign-copy")).to_be_hidden()
    cell(page, "101/2", "anna", "primary").click()                     # tapped again: taken back
    expect(cell(other, "101/2", "anna", "primary")).to_have_attribute("aria-pressed", "false")
    expect(other.locator("#assign-unassigned")).to_have_text("⚠ No nurse assigned: Room 101 bed 2")
    page.click("#tab-board")
    expect(page.locator('#alarms li[data-kind="unassigned_beds"] .alarm-text')).to_contain_text("no nurse assigned: Room 101 bed 2")

    # the last shift had Ben on every bed: "Copy from the last shift" makes this one the same
    async def last_shift() -> str:
        async with WardApi(server.api_url) as api:
            await api.login("carla", PASSWORD)
            return (await api.get("/api/assignment?shift=previous"))["shift"]
    previous = aloop.run(last_shift())
    assign(aloop, server.api_url, {"shift": previous, "charge": "ben",
                                   "set": [{"rooms": ["101", "102", "103"], "primary": "ben", "secondary": None}]})
    page.click("#tab-assign")
    page.select_option("#assign-which", "previous")
    expect(page.locator("#assign-shift")).to_contain_text(previous)
    expect(cell(page, "101/1", "ben", "primary")).to_have_attribute("aria-pressed", "true")
    page.select_option("#assign-which", "current")
    expect(cell(page, "101/1", "anna", "primary")).to_have_attribute("aria-pressed", "true")
    page.click("#assign-copy")
    expect(page.locator("#toast")).to_contain_text("Copied the last shift's assignment")
    for bed in ("101/1", "101/2", "102/1", "102/2", "103/1", "103/2"):
        expect(cell(page, bed, "ben", "primary")).to_have_attribute("aria-pressed", "true")
        expect(cell(page, bed, "anna", "primary")).to_have_attribute("aria-pressed", "false")
        expect(cell(page, bed, "ben", "secondary")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#assign-charge")).to_have_value("ben")
    expect(page.locator("#assign-unassigned")).to_be_hidden()
    expect(cell(other, "102/2", "ben", "primary")).to_have_attribute("aria-pressed", "true")


def test_each_card_shows_where_its_route_stands_and_the_map_shows_who_is_where(page, ward_server_factory, make_ward, aloop):
    ward = make_ward(terminals=4, extra_toml=staff_toml())
    server = ward_server_factory(ward)
    assign(aloop, server.api_url, {"charge": "carla", "set": [{"rooms": ["101"], "primary": "anna", "secondary": "ben"},
                                                            {"rooms": ["102"], "primary": "ben", "secondary": "anna"}]})
    login(page, server.api_url, "carla", PASSWORD)

    # Anna's phone: logged in, and saying it is open
    async def phone() -> WardApi:
        api = WardApi(server.api_url)
        await api.login("anna", PASSWORD)
        await api.post("/api/pocket/heartbeat", {})
        return api
    anna = aloop.run(phone())
    try:
        t = {d["device_id"]: sim_terminal(aloop, ward, d["device_id"]) for d in ward.devices}
        staff = page.locator("#staff-list")
        expect(staff.locator('li[data-user="anna"] .staff-reach')).to_have_text("phone on")
        expect(staff.locator('li[data-user="ben"] .staff-reach')).to_have_text("logged out")
        expect(staff.locator('li[data-user="anna"] .staff-where')).to_have_text("—")

        # who is where: Anna's badge at bed 102-1 puts her in room 102; the button alone says only "staff"
        aloop.call(t["bed-102-1"].presence, True, STAFF["anna"][2])
        expect(page.locator('.room[data-room="102"] .staff-names')).to_have_text("● Anna Berg")
        expect(staff.locator('li[data-user="anna"] .staff-where')).to_contain_text("Room 102 since")
        aloop.call(t["bed-101-2"].presence, True, "")
        expect(page.locator('.room[data-room="101"] .staff')).to_have_text("● Staff present")

        # a call on Anna's bed: the card says it is hers, and when it passes on; Ben was skipped
        # before it could reach him (he is logged out)
        aloop.run(t["bed-101-1"].place_call(wardproto.PATIENT))
        route = page.locator('#calls li.call[data-device="bed-101-1"] .route')
        expect(route).to_contain_text("For Anna Berg (primary nurse)")
        expect(route).to_contain_text("to the buddy in")
        expect(route).to_have_attribute("data-step", "primary")
        call = next(c for c in aloop.run(anna.state())["calls"] if c["device"] == "bed-101-1")
        aloop.run(anna.post(f"/api/calls/{call['id']}/decline", {"reason": "busy"}))
        # declined: the buddy is not reachable, so on to the charge nurse (logged in here, at the station)
        expect(route).to_contain_text("declined: Anna Berg")
        expect(route).to_contain_text("skipped: Ben Okafor (logged out)")
        expect(route).not_to_have_attribute("data-step", "primary")
        aloop.run(anna.post(f"/api/calls/{call['id']}/accept"))
        expect(route).to_contain_text("Accepted by Anna Berg — coming")
        expect(page.locator('#calls li.call[data-device="bed-101-1"]')).to_have_attribute("data-state", "acknowledged")
        expect(page.locator('#calls li.call[data-device="bed-101-1"] .status')).to_contain_text("Seen — coming (Anna Berg")
        # presence ends where she badged in: she is nowhere now
        aloop.call(t["bed-102-1"].presence, False, STAFF["anna"][2])
        expect(page.locator('.room[data-room="102"] .staff-names')).to_have_count(0)
        expect(staff.locator('li[data-user="anna"] .staff-where')).to_have_text("—")
        # the history: who accepted, at which step, and that the call had to be passed on
        page.click("#tab-history")
        expect(page.locator('#table-nurses tr[data-group="anna"] th')).to_have_text("Anna Berg")
        expect(page.locator('#table-nurses tr[data-group="anna"] td').first).to_have_text("1")
        expect(page.locator("#routing-counts")).to_contain_text("1 passed on at least once")
        expect(page.locator("#table-steps tbody tr")).to_have_count(1)
    finally:
        aloop.run(anna.close())
