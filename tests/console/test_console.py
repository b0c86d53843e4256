"""The nurse console in a real headless Chromium against the real host (`wardcall serve`) and
simulated terminals (tests/support/simterm.py, the real protocol)."""
from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import expect

from tests.console.conftest import login, sim_terminal
from tests.fixtures.host import NURSE
from wardcall.protocol import wardproto
from tests.support.simterm import Refused, SimTerminal

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def card(page, device):
    return page.locator(f'#calls li.call[data-device="{device}"]')


def test_login_failure_shows_a_message_and_success_shows_the_board(page, ward_server_factory, make_ward):
    server = ward_server_factory(make_ward(terminals=2))
    page.goto(server.api_url + "/")
    expect(page.locator("#login-screen")).to_be_visible()
    expect(page.locator("#login-ward")).to_have_text("Test ward")
    page.fill("#login-user", NURSE[0])
    page.fill("#login-password", "wrong password")
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("Unknown user or wrong password.")
    expect(page.locator("#login-screen")).to_be_visible()
    page.fill("#login-password", NURSE[1])
    page.click("#login button[type=submit]")
    expect(page.locator("#login-screen")).to_be_hidden()
    expect(page.locator("body")).to_have_attribute("data-connection", "live")
    expect(page.locator("#no-calls")).to_be_visible()
    expect(page.locator("#user-name")).to_have_text("Test nurse")
    expect(page.locator("#ward-name")).to_have_text("Test ward")
    # every room and bed on the map, each terminal's health
    expect(page.locator('.room[data-room="101"] .bed')).to_have_count(2)
    expect(page.locator('.bed[data-device="bed-101-1"]')).to_have_attribute("data-status", "unknown")
    # a reload keeps the session (cookie): straight back to the board
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-connection", "live")
    expect(page.locator("#login-screen")).to_be_hidden()
    expect(page.locator("#user-name")).to_have_text("Test nurse")


def test_emergency_is_first_and_each_kind_blinks_like_its_dome_light(page, ward_server_factory, make_ward, aloop):
    ward = make_ward(terminals=6)
    server = ward_server_factory(ward)
    login(page, server.api_url)
    patient, bathroom, code = (sim_terminal(aloop, ward, i) for i in (0, 2, 4))
    aloop.run(patient.place_call(wardproto.PATIENT))
    expect(card(page, "bed-101-1")).to_be_visible()
    expect(page.locator('.bed[data-device="bed-101-1"]')).to_have_attribute("data-status", "online")
    expect(page.locator("body")).to_have_attribute("data-sound", "low")
    cb = aloop.run(bathroom.place_call(wardproto.BATHROOM))
    aloop.run(code.place_call(wardproto.CODE_BLUE))
    calls = page.locator("#calls li.call")
    expect(calls).to_have_count(3)
    # the newest call, a code blue, is at the top; then bathroom; the older patient call last
    expect(calls.nth(0)).to_have_attribute("data-kind", "code_blue")
    expect(calls.nth(1)).to_have_attribute("data-kind", "bathroom")
    expect(calls.nth(2)).to_have_attribute("data-kind", "patient")
    expect(page.locator("body")).to_have_attribute("data-sound", "high")
    expect(page.locator("body")).to_have_attribute("data-top", "code_blue")
    # the lamp on each card has the dome light's pattern (wardproto KINDS): 0.3/0.3, 1/1, steady
    lamp_anim = "el => { const s = getComputedStyle(el.querySelector('.lamp')); return [s.animationName, s.animationDuration, s.animationTimingFunction]; }"
    assert calls.nth(0).evaluate(lamp_anim) == ["lamp-blink", "0.6s", "steps(1)"]
    assert calls.nth(1).evaluate(lamp_anim) == ["lamp-blink", "2s", "steps(1)"]
    assert calls.nth(2).evaluate(lamp_anim)[0] == "none"
    expect(calls.nth(0).locator(".where")).to_have_text("Room 103 · Bed 1")
    expect(calls.nth(0).locator(".elapsed")).to_have_text(re.compile(r"^00:0\d$"))
    # the elapsed time counts up
    expect(calls.nth(2).locator(".elapsed")).not_to_have_text(calls.nth(2).locator(".elapsed").inner_text())
    # cleared at the bedside → gone from the board; the others stay in order
    aloop.run(bathroom.cancel(cb))
    expect(calls).to_have_count(2)
    expect(calls.nth(1)).to_have_attribute("data-kind", "patient")


def test_silence_never_clears_the_visual_alert_and_an_emergency_overrides_it(page, ward_server_factory, make_ward, aloop):
    ward = make_ward(terminals=4)
    server = ward_server_factory(ward)
    login(page, server.api_url)
    t0, t1 = sim_terminal(aloop, ward, 0), sim_terminal(aloop, ward, 2)
    aloop.run(t0.place_call(wardproto.BATHROOM))
    expect(page.locator("body")).to_have_attribute("data-sound", "medium")
    page.click("#silence")
    expect(page.locator("body")).to_have_attribute("data-sound", "off")
    expect(page.locator("#sound-status")).to_contain_text("Ward silenced until")   # the scope is said
    expect(page.locator("#sound-status")).to_contain_text("nurse")
    # the call is still on the board, still waiting, still blinking
    bath = card(page, "bed-101-1")
    expect(bath).to_be_visible()
    expect(bath).to_have_attribute("data-state", "placed")
    assert bath.evaluate("el => getComputedStyle(el).animationName") == "card-blink"
    expect(page.locator('.bed[data-device="bed-101-1"]')).to_have_attribute("data-call", "bathroom")
    # a code blue sounds although the sound is silenced …
    aloop.run(t1.place_call(wardproto.CODE_BLUE))
    expect(page.locator("body")).to_have_attribute("data-sound", "high")
    # … and goes on sounding after another silence, until it is acknowledged
    page.click("#silence")
    expect(page.locator("#sound-status")).to_contain_text("Emergency sounds despite silence")
    expect(page.locator("body")).to_have_attribute("data-sound", "high")
    card(page, "bed-102-1").locator(".btn-ack").click()
    expect(card(page, "bed-102-1")).to_have_attribute("data-state", "acknowledged")
    expect(page.locator("body")).to_have_attribute("data-sound", "off")
    expect(bath).to_have_attribute("data-state", "placed")       # never cleared from the console
    assert page.evaluate("window.wardcall.sounder.bursts") >= 1      # Web Audio did play


def test_untrusted_device_id_and_room_name_render_as_text(page, ward_server_factory, make_ward, aloop):
    ward = make_ward(terminals=2)
    evil_room = '<img src=x onerror="window.pwned=1">Room <b>101</b>'
    text = ward.config_path.read_text().replace('name = "Room 101"', f"name = '{evil_room}'")
    ward.config_path.write_text(text)
    server = ward_server_factory(ward)
    login(page, server.api_url)
    evil_device = '<img src=x onerror="window.pwned=2"><script>pwned=3</script>'
    assert len(evil_device) <= 64           # the host keeps the first 64 characters of a claimed id

    async def intruder():
        t = SimTerminal(evil_device, "00" * 32, "127.0.0.1", ward.terminal_port)
        try:
            await t.connect()
        except Refused:
            return True
        finally:
            await t.close()
        return False
    assert aloop.run(intruder())
    alarm = page.locator('#alarms li[data-kind="device_trying_to_connect"]')
    expect(alarm).to_be_visible()
    expect(alarm.locator(".alarm-text")).to_contain_text(evil_device)
    expect(page.locator("#unknown-devices .device-id")).to_have_text(evil_device)
    expect(page.locator('.room[data-room="101"] .room-name')).to_have_text(evil_room)
    t = sim_terminal(aloop, ward, 0)
    aloop.run(t.place_call(wardproto.PATIENT))
    expect(card(page, "bed-101-1").locator(".where")).to_have_text(f"{evil_room} · Bed 1")
    assert page.locator("img").count() == 0 and page.locator("main script, #alarms script").count() == 0
    assert page.evaluate("window.pwned") is None


def test_history_charts_room_table_and_csv(page, ward_server_factory, make_ward, aloop):
    ward = make_ward(terminals=4)
    server = ward_server_factory(ward)
    login(page, server.api_url)
    t0, t1 = sim_terminal(aloop, ward, 0), sim_terminal(aloop, ward, 2)
    c0 = aloop.run(t0.place_call(wardproto.PATIENT, age_ms=40_000))
    aloop.run(t1.place_call(wardproto.BATHROOM))
    expect(page.locator("#calls li.call")).to_have_count(2)
    card(page, "bed-101-1").locator(".btn-ack").click()
    expect(card(page, "bed-101-1")).to_have_attribute("data-state", "acknowledged")
    aloop.call(t0.presence, True, "nurse")
    expect(card(page, "bed-101-1")).to_have_attribute("data-state", "attended")
    expect(page.locator('.room[data-room="101"]')).to_have_attribute("data-presence", "true")
    aloop.run(t0.cancel(c0))
    expect(page.locator("#calls li.call")).to_have_count(1)
    page.click("#tab-history")
    expect(page.locator("#history-status")).to_contain_text("2 calls")
    expect(page.locator("#chart-calls svg rect.bar.k-patient")).to_have_count(1)
    expect(page.locator("#chart-calls svg rect.bar.k-bathroom")).to_have_count(1)
    expect(page.locator("#chart-response svg rect.bar.s-ack")).to_have_count(7)
    rooms = page.locator("#table-rooms tbody tr")
    expect(rooms).to_have_count(2)
    expect(rooms.nth(0).locator("th")).to_have_text("Room 101")
    expect(rooms.nth(0).locator("td").nth(0)).to_have_text("1")
    expect(rooms.nth(0).locator("td").nth(1)).to_have_text(re.compile(r"^4\d s$"))   # placed 40 s before it arrived
    with page.expect_download() as info:
        page.click("#csv")
    data = list(csv.DictReader(io.StringIO(open(info.value.path()).read())))
    room_rows = {r["group"]: r for r in data if r["group_by"] == "room"}
    assert room_rows["101"]["calls"] == "1" and room_rows["102"]["calls"] == "1"
    assert info.value.suggested_filename.startswith("wardcall-report-")


def test_connection_lost_banner_then_recovery_with_the_state_brought_up_to_date(page, ward_server_factory, make_ward, aloop):
    ward = make_ward(terminals=4)
    server = ward_server_factory(ward)
    login(page, server.api_url)
    t0 = sim_terminal(aloop, ward, 0)
    aloop.run(t0.place_call(wardproto.PATIENT))
    expect(card(page, "bed-101-1")).to_have_attribute("data-state", "placed")
    page.evaluate("window.sameDocument = true")            # no reload on the way
    server.kill()                                          # a crash: SIGKILL
    banner = page.locator("#lost")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("CONNECTION LOST")
    expect(page.locator("body")).to_have_attribute("data-connection", "lost")
    expect(card(page, "bed-101-1")).to_be_visible()        # the last known calls stay on the board
    # hold the console off until the restarted host has changed state it has not seen
    page.route("**/api/**", lambda route: route.abort())
    server.start()
    api = aloop.run(server.login())
    try:
        call = aloop.run(api.state())["calls"][0]
        aloop.run(api.acknowledge(call["id"]))
        t2 = sim_terminal(aloop, ward, 2)
        aloop.run(t2.place_call(wardproto.CODE_BLUE))
    finally:
        aloop.run(api.close())
    expect(page.locator("#lost-detail")).to_contain_text("attempt")
    expect(banner).to_be_visible()
    page.unroute("**/api/**")
    # reconnects by itself (the session survives the restart), and the snapshot brings it up to date
    expect(banner).to_be_hidden(timeout=15_000)
    expect(page.locator("body")).to_have_attribute("data-connection", "live")
    calls = page.locator("#calls li.call")
    expect(calls).to_have_count(2)
    expect(calls.nth(0)).to_have_attribute("data-kind", "code_blue")
    expect(card(page, "bed-101-1")).to_have_attribute("data-state", "acknowledged")
    expect(page.locator("#login-screen")).to_be_hidden()
    assert page.evaluate("window.sameDocument") is True
