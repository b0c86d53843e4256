"""`wardcall hospital` against two real wards over real nats-server processes: every ward's
board, the emergencies of every ward, a team member's accept reaching the ward's host (and its
terminal), response times across wards from the streams."""
from __future__ import annotations

import json

import aiohttp
import pytest
import nats

from wardcall.federation.subjects import rpc_subject

from wardcall.protocol import wardproto
from tests.federation.conftest import SUPERVISOR, TEAM_USER
from tests.support.waiting import async_wait_until

WARDS = {"a": "Ward A", "b": "Ward B"}


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))     # cookies for 127.0.0.1


async def _login(session: aiohttp.ClientSession, url: str, who: tuple[str, str]) -> None:
    async with session.post(url + "/api/login", json={"user": who[0], "password": who[1]}) as reply:
        assert reply.status == 200, await reply.text()


async def _state(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url + "/api/state") as reply:
        assert reply.status == 200
        return await reply.json()


async def test_the_hospital_sees_every_ward_and_a_team_accepts_across_wards(
        nats_hospital, fed_ward, ward_server_factory, hospital_console):
    hospital = nats_hospital
    hospital.hub()
    wards = {w: fed_ward(hospital, w, terminals=2) for w in WARDS}
    servers = {w: ward_server_factory(ward) for w, ward in wards.items()}
    ward_b_server = servers["b"]
    console = hospital_console(hospital.hub_url, WARDS)
    bed_a, bed_b = wards["a"].terminal(0), wards["b"].terminal(1)
    await bed_a.connect()
    await bed_b.connect()
    try:
        patient = await bed_a.place_call(wardproto.PATIENT)
        code = await bed_b.place_call(wardproto.CODE_BLUE)
        async with _session() as sup, _session() as team:
            await _login(sup, console.url, SUPERVISOR)

            async def both_boards() -> dict | None:
                state = await _state(sup, console.url)
                boards = {w["id"]: [(c["device"], c["call_id"]) for c in w["calls"]] for w in state["wards"]}
                return state if boards == {"a": [("bed-101-1", patient)], "b": [("bed-101-2", code)]} else None
            state = await async_wait_until(both_boards, 15, "each ward's call on its board")
            assert [(e["ward"], e["call_id"], e["kind_name"]) for e in state["emergencies"]] == [("b", code, "code_blue")]

            await _login(team, console.url, TEAM_USER)
            call_b = next(c for c in state["wards"][1]["calls"])
            # a team is alerted for emergencies only: the patient call of ward a is not hers to accept
            call_a = next(c for c in state["wards"][0]["calls"])
            async with team.post(f"{console.url}/api/calls/a/{call_a['id']}/accept") as reply:
                assert reply.status == 403
            async with team.post(f"{console.url}/api/calls/b/{call_b['id']}/accept") as reply:
                assert reply.status == 200, await reply.text()
                accepted = await reply.json()
            assert accepted["state"] == "acknowledged" and accepted["acknowledged_by"] == "drx (Rapid response)"
            # the ward host took it: its terminal's lamp changes, its record and console say who
            await bed_b.wait_call_state(code, wardproto.ST_ACKNOWLEDGED, timeout=5)

            async def acknowledged_on_hospital_board() -> bool:
                state = await _state(sup, console.url)
                return any(c["call_id"] == code and c["acknowledged_by"] == "drx (Rapid response)"
                           for c in state["emergencies"])
            await async_wait_until(acknowledged_on_hospital_board, 10, "the accept on the hospital's board")

            await _bad_accepts_are_answered(hospital.hub_url, wards["b"], ward_b_server)

            # cleared at the bedside: off the boards, into the response times
            await bed_b.cancel(code)
            await bed_a.cancel(patient)

            async def report() -> list | None:
                async with sup.get(console.url + "/api/report") as reply:
                    rows = (await reply.json())["report"]
                return rows if sum(r["calls"] for r in rows if r["ward"]) == 2 else None
            rows = await async_wait_until(report, 10, "two cleared calls in the report")
            by = {(r["ward"], r["kind"]): r for r in rows}
            assert by[("b", "code_blue")]["acknowledge"]["n"] == 1
            assert by[("a", "patient")]["acknowledge"]["n"] == 0     # cleared without acknowledge
            assert by[("", "code_blue")]["calls"] == 1 and by[("", "patient")]["calls"] == 1
            state = await _state(sup, console.url)
            assert all(not w["calls"] for w in state["wards"]) and not state["emergencies"]
    finally:
        await bed_a.close()
        await bed_b.close()


async def test_the_console_needs_a_login_and_a_post_from_elsewhere_is_refused(nats_hospital, hospital_console):
    hospital = nats_hospital
    hospital.hub()
    console = hospital_console(hospital.hub_url, WARDS)
    async with _session() as session:
        async with session.get(console.url + "/api/state") as reply:
            assert reply.status == 401
        async with session.post(console.url + "/api/login", json={"user": "sup", "password": "wrong"}) as reply:
            assert reply.status == 401
        await _login(session, console.url, SUPERVISOR)
        async with session.post(console.url + "/api/calls/a/1/accept", headers={"Origin": "http://evil.example"}) as reply:
            assert reply.status == 403
        # guessing is slowed down as on the ward's console: after a few failures this address waits
        statuses = []
        for _ in range(5):
            async with session.post(console.url + "/api/login", json={"user": "drx", "password": "guess"}) as reply:
                statuses.append(reply.status)
        assert statuses[:3] == [401, 401, 401] and 429 in statuses[3:]
        # HTTPS only: the same port in clear gets no page, and no standing settings alarm
        assert (await _state(session, console.url))["console_alarms"] == []
    with pytest.raises(aiohttp.ClientError):
        async with _session() as clear:
            async with clear.get(console.url.replace("https://", "http://") + "/api/health") as reply:
                await reply.read()


async def test_a_console_in_plain_http_is_a_standing_alarm(nats_hospital, hospital_console, tmp_path):
    hospital = nats_hospital
    hospital.hub()
    console = hospital_console(hospital.hub_url, WARDS, extra_toml='[tls]\nconsole = "http"\n')
    assert console.url.startswith("http://")
    async with _session() as session:
        await _login(session, console.url, SUPERVISOR)
        alarms = (await _state(session, console.url))["console_alarms"]
    assert len(alarms) == 1 and "plain HTTP" in alarms[0], alarms
    assert "plain HTTP" in console.log_path.read_text()


async def test_the_hospital_view_catches_up_after_the_hub_was_down(nats_hospital, fed_ward, ward_server_factory,
                                                                    hospital_console):
    hospital = nats_hospital
    hospital.hub()
    ward = fed_ward(hospital, "a", terminals=1)
    ward_server_factory(ward)
    console = hospital_console(hospital.hub_url, {"a": "Ward A"})
    bed = ward.terminal(0)
    await bed.connect()
    try:
        async with _session() as sup:
            await _login(sup, console.url, SUPERVISOR)
            first = await bed.place_call(wardproto.PATIENT)

            async def calls() -> list[int]:
                return [c["call_id"] for c in (await _state(sup, console.url))["wards"][0]["calls"]]
            await async_wait_until(lambda: _has(calls, [first]), 10, "the first call on the hospital board")
            hospital.hub_server.stop()
            await async_wait_until(lambda: _hub_lost(sup, console.url), 10, "the console saying the hub is lost")
            code = await bed.place_call(wardproto.CODE_BLUE, timeout=2)
            await bed.cancel(first, timeout=2)
            hospital.hub_server.start()
            await async_wait_until(lambda: _has(calls, [code]), 20, "the board caught up: the code blue, the first call cleared")
            state = await _state(sup, console.url)
            assert state["hub"]["connected"] and [e["call_id"] for e in state["emergencies"]] == [code]
    finally:
        await bed.close()


async def _has(calls, expected: list[int]) -> bool:
    return await calls() == expected


async def _hub_lost(session, url: str) -> bool:
    return not (await _state(session, url))["hub"]["connected"]



async def _bad_accepts_are_answered(hub_url: str, ward, server) -> None:
    """Bad accept requests on the ward's subject get a clear answer and a log line; the ward goes on."""
    nc = await nats.connect(hub_url)      # from the hub's side, as the hospital console asks
    try:
        async def ask(data: bytes) -> dict:
            return json.loads((await nc.request(rpc_subject("b", "accept"), data, timeout=5)).data)
        for junk in (b"\xff\xfe", b"[1,2]", json.dumps({"call_id": "1", "user": "x", "team": "t"}).encode(),
                     json.dumps({"call_id": 1, "user": "", "team": "t"}).encode(),
                     json.dumps({"call_id": 1, "user": "x" * 500, "team": "t"}).encode()):
            answer = await ask(junk)
            assert answer["ok"] is False and answer["status"] == "bad_request" and answer["error"].startswith("bad request")
        answer = await ask(json.dumps({"call_id": 999, "user": "drx", "team": "Rapid response"}).encode())
        assert answer == {"ok": False, "error": "no open call 999", "status": "not_found"}
        assert "bad accept request" in server.log_text()
    finally:
        await nc.close()
