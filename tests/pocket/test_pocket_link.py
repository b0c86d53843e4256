"""The pocket console's link to the host, as a nurse roaming between access points lives it: the
link drops (nothing reaches the host), the phone says so at once — banner, grey calls, a low
tone — and when the link is back it resumes from the last event it saw (Last-Event-ID): the host
replays what the phone missed, without a new snapshot, and a call placed meanwhile is there. A
host that restarted has no such events: the phone gets a whole snapshot, never a replay of another
run's numbers (which could hide a call)."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.fixtures.host import NURSE
from tests.pocket.conftest import pocket_login, sim_terminal
from tests.support.waiting import wait_until
from wardcall.protocol import wardproto

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]
RECONNECT_TIMEOUT_MS = 15_000
LOST_TIMEOUT_MS = 15_000


def card(page, device):
    return page.locator(f'li.call[data-device="{device}"]')


def link(page) -> dict:
    return page.evaluate("({snapshots: pocket.link.snapshots, resumes: pocket.link.resumes, lastId: pocket.link.lastId})")


def seq_of(event_id: str) -> int:
    """The change number in an SSE id ("<run>-<seq>", docs/HOST.md)."""
    return int(event_id.rpartition("-")[2])


def cut_the_link(page) -> None:
    """Nothing from this phone reaches the host any more; the stream already open is dropped by
    the page itself once the host stops answering its health checks."""
    page.route("**/api/**", lambda route: route.abort())
    # two health checks 3 s apart must fail first
    expect(page.locator("#lost")).to_be_visible(timeout=LOST_TIMEOUT_MS)
    expect(page.locator("body")).to_have_attribute("data-connection", "lost")


def test_the_link_drops_and_the_phone_resumes_where_it_left_off_without_a_snapshot(phones, ward_server_factory, make_ward, aloop):
    ward = make_ward(terminals=2)
    server = ward_server_factory(ward)
    page = phones("nurse")
    pocket_login(page, server.api_url, *NURSE)
    first, second = sim_terminal(aloop, ward, 0), sim_terminal(aloop, ward, 1)
    aloop.run(first.place_call(wardproto.PATIENT))
    expect(card(page, "bed-101-1")).to_be_visible()
    assert link(page)["snapshots"] == 1

    page.evaluate("window.sameDocument = true")            # no reload on the way
    cut_the_link(page)
    banner = page.locator("#lost")
    expect(banner).to_contain_text("NO CONNECTION")
    expect(banner).to_contain_text("Calls are not reaching this phone")
    expect(page.locator("body")).to_have_attribute("data-sound", "low")      # a low tone says so
    expect(card(page, "bed-101-1")).to_be_visible()                         # the last known calls stay
    missed_from = link(page)["lastId"]
    # meanwhile on the ward: a bathroom call, and the first call acknowledged at the station
    aloop.run(second.place_call(wardproto.BATHROOM))
    api = aloop.run(server.login())
    try:
        call = next(c for c in aloop.run(api.state())["calls"] if c["device"] == "bed-101-1")
        aloop.run(api.acknowledge(call["id"]))
    finally:
        aloop.run(api.close())
    expect(page.locator("#lost-detail")).to_contain_text("attempt")
    expect(card(page, "bed-101-2")).to_have_count(0)                        # not seen while cut off

    page.unroute("**/api/**")
    expect(banner).to_be_hidden(timeout=RECONNECT_TIMEOUT_MS)
    expect(page.locator("body")).to_have_attribute("data-connection", "live")
    expect(card(page, "bed-101-2")).to_be_visible()
    expect(card(page, "bed-101-2")).to_have_attribute("data-kind", "bathroom")
    expect(card(page, "bed-101-1")).to_have_attribute("data-state", "acknowledged")
    after = link(page)
    assert after["resumes"] == 1 and after["snapshots"] == 1, (missed_from, after)
    assert seq_of(after["lastId"]) > seq_of(missed_from)
    assert page.evaluate("window.sameDocument") is True
    expect(page.locator("#login-screen")).to_be_hidden()


def test_a_restarted_host_gives_the_phone_a_snapshot_never_a_replay_of_another_runs_events(phones, ward_server_factory, make_ward, aloop):
    ward = make_ward(terminals=4)
    server = ward_server_factory(ward)
    page = phones("nurse")
    pocket_login(page, server.api_url, *NURSE)
    t0 = sim_terminal(aloop, ward, 0)
    aloop.run(t0.place_call(wardproto.PATIENT))
    expect(card(page, "bed-101-1")).to_be_visible()
    seen = seq_of(link(page)["lastId"])

    page.route("**/api/**", lambda route: route.abort())
    server.kill()                                          # a crash: its recent events are gone
    expect(page.locator("#lost")).to_be_visible(timeout=LOST_TIMEOUT_MS)
    server.start()
    # the new run numbers its events from its own start: let it pass the number the phone saw,
    # with calls the phone has not seen
    terminals = [sim_terminal(aloop, ward, i) for i in (1, 2, 3)]
    api = aloop.run(server.login())
    try:
        for t in terminals:
            aloop.run(t.place_call(wardproto.BATHROOM))

        def past_the_phones_number() -> bool:
            if aloop.run(api.state())["seq"] > seen + 3:
                return True
            aloop.call(terminals[0].presence, True)      # more events of the new run
            aloop.call(terminals[0].presence, False)
            return False
        wait_until(past_the_phones_number, 15, "the new run's events numbered past the phone's last one")
    finally:
        aloop.run(api.close())
    page.unroute("**/api/**")
    expect(page.locator("#lost")).to_be_hidden(timeout=RECONNECT_TIMEOUT_MS)
    for device in ("bed-101-1", "bed-101-2", "bed-102-1", "bed-102-2"):
        expect(card(page, device)).to_be_visible()
    assert link(page)["snapshots"] == 2
