"""The console shows each role what it may do, and nothing more, in a real Chromium against the
real host: a nurse acknowledges and silences; a charge nurse identifies a terminal from the ward
map; a technician reboots one only with the password again, and does not acknowledge; an
administrator ends a user's sessions."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.console.conftest import login, sim_terminal
from tests.fixtures.host import ADMIN, CHARGE, NURSE, TECH
from wardcall.protocol import wardproto

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def bed(page, device):
    return page.locator(f'#rooms .bed[data-device="{device}"]')


def test_a_nurse_acknowledges_and_silences_but_sees_no_terminal_or_user_actions(page, ward_server_factory, make_ward, aloop):
    ward = make_ward(terminals=2)
    server = ward_server_factory(ward)
    login(page, server.api_url, *NURSE)
    term = sim_terminal(aloop, ward, 0)
    aloop.run(term.place_call(wardproto.PATIENT))
    expect(page.locator("#user-role")).to_have_text("nurse")
    expect(page.locator("#calls li.call .btn-ack")).to_be_visible()
    expect(page.locator("#silence")).to_be_visible()
    expect(page.locator("#tab-admin")).to_be_hidden()
    # the beds of the map are no buttons for her: nothing to open
    expect(bed(page, term.device)).to_have_count(1)
    assert bed(page, term.device).evaluate("el => el.tagName") == "DIV"
    page.locator("#calls li.call .btn-ack").click()
    expect(page.locator("#calls li.call")).to_have_attribute("data-state", "acknowledged")


def test_a_charge_nurse_identifies_a_terminal_from_the_map(page, ward_server_factory, make_ward, aloop):
    ward = make_ward(terminals=2)
    server = ward_server_factory(ward)
    term = sim_terminal(aloop, ward, 1)
    login(page, server.api_url, *CHARGE)
    bed(page, term.device).click()
    expect(page.locator("#terminal-dialog")).to_be_visible()
    expect(page.locator("#cmd-identify")).to_be_visible()
    expect(page.locator("#cmd-lamp_test")).to_be_visible()
    expect(page.locator("#cmd-reboot")).to_be_hidden()
    mark = len(term.inbox)
    page.locator("#cmd-identify").click()
    expect(page.locator("#terminal-dialog")).to_be_hidden()
    aloop.run(term.wait_for(lambda m: m["type"] == wardproto.COMMAND and m["cmd"] == wardproto.CMD_IDENTIFY, 5, start=mark))


def test_a_technician_reboots_only_with_the_password_again_and_does_not_acknowledge(page, ward_server_factory, make_ward, aloop):
    ward = make_ward(terminals=2)
    server = ward_server_factory(ward)
    term = sim_terminal(aloop, ward, 0)
    aloop.run(term.place_call(wardproto.PATIENT))
    login(page, server.api_url, *TECH)
    expect(page.locator("#calls li.call")).to_have_count(1)
    expect(page.locator("#calls li.call .btn-ack")).to_be_hidden()
    bed(page, term.device).click()
    page.locator("#cmd-reboot").click()
    expect(page.locator("#terminal-password-row")).to_be_visible()
    page.fill("#terminal-password", "not the password")
    page.locator("#terminal-confirm").click()
    expect(page.locator("#terminal-error")).to_contain_text("password")
    assert not [m for m in term.inbox if m["type"] == wardproto.COMMAND and m["cmd"] == wardproto.CMD_REBOOT]
    page.fill("#terminal-password", TECH[1])
    page.locator("#terminal-confirm").click()
    expect(page.locator("#terminal-dialog")).to_be_hidden()
    aloop.run(term.wait_for(lambda m: m["type"] == wardproto.COMMAND and m["cmd"] == wardproto.CMD_REBOOT, 5))


def test_an_administrator_ends_a_users_sessions_from_the_console(page, ward_server_factory, make_ward, aloop):
    ward = make_ward(terminals=1)
    server = ward_server_factory(ward)
    nurse = aloop.run(server.login(*NURSE))
    try:
        login(page, server.api_url, *ADMIN)
        expect(page.locator("#tab-admin")).to_be_visible()
        page.locator("#tab-admin").click()
        row = page.locator('#table-sessions tr[data-user="nurse"]')
        expect(row).to_be_visible()
        row.locator("button").click()
        expect(page.locator("#toast")).to_contain_text("1 session(s) of nurse ended")
        expect(row).to_have_count(0)
        from wardcall.client import ApiError
        with pytest.raises(ApiError):
            aloop.run(nurse.state())
    finally:
        aloop.run(nurse.close())
