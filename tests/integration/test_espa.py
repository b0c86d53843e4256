"""ESPA 4.4.4 paging over a pseudo-terminal pair, against the receiver in espa_receiver.py, with
the real host subprocess."""
from __future__ import annotations

import pytest

from tests.integration.espa_receiver import EspaReceiver
from tests.support.waiting import async_wait_until
from wardcall.protocol import wardproto as wp


@pytest.fixture
def receiver():
    r = EspaReceiver()
    yield r
    r.close()


def espa_toml(device: str, extra: str = "") -> str:
    return (f'\n[integrations.espa]\ndevice = "{device}"\naddress = "1"\nanswer_timeout_s = 0.3\nretry_s = 0.2\n'
            f'check_s = 0.5\nnumbers = {{ patient = "100", code_blue = "999" }}\n{extra}')


async def _state_if(api, predicate):
    state = await api.state()
    return state if predicate(state) else None


def unreachable(state) -> bool:
    return any(a["kind"] == "integration_unreachable" and a.get("peer") == "espa" for a in state["alarms"])


async def test_a_call_is_paged_once_through_a_nak(make_ward, ward_server_factory, receiver):
    receiver.nak_next = 1               # the first good block is refused: the host must send it again
    ward = make_ward(extra_toml=espa_toml(receiver.device))
    ward_server_factory(ward)
    term = ward.terminal(0)
    await term.connect()
    try:
        await term.place_call(wp.CODE_BLUE)
        await async_wait_until(lambda: receiver.pages, 10, "the page")
        await term.place_call(wp.PATIENT)
        await async_wait_until(lambda: len(receiver.pages) >= 2, 10, "the second page")
    finally:
        await term.close()
    first, second = receiver.pages[:2]
    assert first["1"] == "999" and "101/1" in first["2"] and "code blue" in first["2"] and first["6"] == "2"
    assert second["1"] == "100" and second["6"] == "1"
    assert receiver.blocks >= 3 and receiver.bad_bcc == 0     # the NAKed block came again, taken once
    assert len(receiver.pages) == 2


async def test_a_silent_paging_system_is_an_alarm_and_the_page_waits(make_ward, ward_server_factory, receiver):
    receiver.answering = False
    ward = make_ward(extra_toml=espa_toml(receiver.device))
    server = ward_server_factory(ward)
    api = await server.login()
    term = ward.terminal(0)
    await term.connect()
    try:
        await term.place_call(wp.PATIENT)
        await async_wait_until(lambda: _state_if(api, unreachable), 10, "the paging alarm")
        assert not receiver.pages
        receiver.answering = True
        await async_wait_until(lambda: receiver.pages, 10, "the page after the paging system is back")
        await async_wait_until(lambda: _state_if(api, lambda s: not unreachable(s)), 10, "the alarm cleared")
    finally:
        await api.close()
        await term.close()
    assert [p["1"] for p in receiver.pages] == ["100"]


async def test_the_assigned_nurses_handset_is_paged(make_ward, ward_server_factory, receiver):
    ward = make_ward(extra_toml=espa_toml(receiver.device, 'handsets = { nurse = "201" }\n'))
    server = ward_server_factory(ward)
    charge = await server.login("charge")
    nurse = await server.login("nurse")          # logged in: reachable, so the call is routed to her
    term = ward.terminal(0)
    await term.connect()
    try:
        await charge.post("/api/assignment", {"charge": "charge", "set": [{"rooms": ["101"], "primary": "nurse"}]})
        await term.place_call(wp.PATIENT)
        await async_wait_until(lambda: receiver.pages, 10, "the page")
    finally:
        await charge.close()
        await nurse.close()
        await term.close()
    assert receiver.pages[0]["1"] == "201"


async def test_a_page_waiting_for_the_paging_system_survives_a_restart(make_ward, ward_server_factory, receiver):
    receiver.answering = False
    ward = make_ward(extra_toml=espa_toml(receiver.device))
    server = ward_server_factory(ward)
    term = ward.terminal(0)
    await term.connect()
    await term.place_call(wp.CODE_BLUE)
    await term.close()
    server.restart()
    receiver.answering = True
    await async_wait_until(lambda: receiver.pages, 10, "the page after the restart")
    server.stop()
    assert [p["1"] for p in receiver.pages] == ["999"]          # once: not paged again for the restored call
