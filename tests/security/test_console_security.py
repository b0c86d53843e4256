"""The console's login and actions tried as an attacker would: requests without the session's
token or from another origin, password guessing, user-name enumeration by timing, a nurse trying
what only a technician or an administrator may do, sessions that should have ended. Each is
refused while the legitimate path still works. Real `wardcall serve`, real HTTP."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
import time

import aiohttp
import pytest

from tests.fixtures.host import ADMIN, CHARGE, NURSE, TECH
from wardcall.client import ApiError
from wardcall.protocol import wardproto as wp
from wardcall.web.sessions import Sessions

pytestmark = [pytest.mark.timeout(120)]


def events_of(database, kind: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute("SELECT * FROM events WHERE kind = ? ORDER BY id", (kind,)))
    finally:
        conn.close()


def from_address(address: str) -> aiohttp.ClientSession:
    """An HTTP client whose connections come from another loopback address (another PC)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)),
                                 cookie_jar=aiohttp.CookieJar(unsafe=True))


async def post(http: aiohttp.ClientSession, url: str, body=None, headers=None, data=None):
    kw = {"json": body} if data is None else {"data": data}
    async with http.post(url, headers=headers or {}, timeout=aiohttp.ClientTimeout(total=15), **kw) as r:
        return r.status, await r.json(content_type=None), r.headers


async def test_actions_need_the_session_token_a_json_body_and_the_console_origin(ward_server):
    url = ward_server.api_url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        status, me, _ = await post(http, url + "/api/login", {"user": NURSE[0], "password": NURSE[1]})
        assert status == 200 and me["token"] and me["role"] == "nurse"
        token = {"X-Wardcall-Token": me["token"]}
        # the cookie alone does nothing
        status, body, _ = await post(http, url + "/api/silence", {"seconds": 60})
        assert status == 403 and "request token" in body["error"]
        status, _, _ = await post(http, url + "/api/silence", {"seconds": 60}, {"X-Wardcall-Token": "guess"})
        assert status == 403
        # another origin, or a cross-site fetch, even with the token
        for bad in ({"Origin": "http://127.0.0.1:1"}, {"Origin": "null"}, {"Sec-Fetch-Site": "same-site"},
                    {"Sec-Fetch-Site": "cross-site"}):
            status, body, _ = await post(http, url + "/api/silence", {"seconds": 60}, {**token, **bad})
            assert status == 403 and "may not act" in body["error"], (bad, body)
        # not JSON: a form or text/plain, which any page could send without a preflight
        status, body, _ = await post(http, url + "/api/silence", headers=token, data="seconds=60")
        assert status == 403 and "application/json" in body["error"]
        # login itself must be same-origin JSON too (no login forced on a nurse's browser)
        status, _, _ = await post(http, url + "/api/login", {"user": NURSE[0], "password": NURSE[1]}, {"Origin": "http://evil.example"})
        assert status == 403
        assert not events_of(ward_server.ward.database, "silence")
        # the console's own way works: its origin, JSON, the token
        own = {**token, "Origin": url, "Sec-Fetch-Site": "same-origin"}
        status, body, _ = await post(http, url + "/api/silence", {"seconds": 60}, own)
        assert status == 200 and body["sound"]["silenced_by"] == NURSE[0]
        assert [r["user"] for r in events_of(ward_server.ward.database, "silence")] == [NURSE[0]]


async def test_every_answer_forbids_framing_and_api_answers_are_not_cached(ward_server):
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/api/health", "/api/state"):
            async with http.get(ward_server.api_url + path) as r:
                assert r.headers["X-Frame-Options"] == "DENY", path
                assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"], path
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                if path.startswith("/api/"):
                    assert r.headers["Cache-Control"] == "no-store", path


async def test_roles_decide_who_may_do_what_and_the_record_names_who_did(make_ward, ward_server_factory):
    ward = make_ward(terminals=2)
    server = ward_server_factory(ward)
    term = ward.terminal(0)
    await term.connect()
    apis = {}
    try:
        for who in (NURSE, CHARGE, TECH, ADMIN):
            apis[who[0]] = await server.login(*who)
        nurse, charge, tech, admin = (apis[w[0]] for w in (NURSE, CHARGE, TECH, ADMIN))
        assert (await nurse.me())["may"] == ["acknowledge", "silence"]
        # a nurse may acknowledge and silence, nothing that touches a terminal or the users
        for what, call in (("identify", nurse.command("bed-101-1", "identify")),
                           ("reboot", nurse.command("bed-101-1", "reboot", NURSE[1])),
                           ("update", nurse.post("/api/ota/updates", {"package": {"version": "x", "files": []}, "password": NURSE[1]})),
                           ("users", nurse.post("/api/users/tech/sessions/end")),
                           ("sessions", nurse.get("/api/sessions"))):
            with pytest.raises(ApiError) as refused:
                await call
            assert refused.value.status == 403, what
        # a charge nurse identifies and tests lamps, but may not reboot
        assert await charge.command("bed-101-1", "identify") > 0
        with pytest.raises(ApiError) as refused:
            await charge.command("bed-101-1", "reboot", NURSE[1])
        assert refused.value.status == 403 and "may not reboot" in refused.value.message
        # a technician reboots, but only with the password again; a technician does not acknowledge
        with pytest.raises(ApiError) as refused:
            await tech.command("bed-101-1", "reboot")
        assert refused.value.status == 403 and "password" in refused.value.message
        with pytest.raises(ApiError):
            await tech.command("bed-101-1", "reboot", "not the password")
        await term.place_call(wp.PATIENT)
        state = await tech.state()
        with pytest.raises(ApiError) as refused:
            await tech.acknowledge(state["calls"][0]["id"])
        assert refused.value.status == 403
        assert await tech.command("bed-101-1", "reboot", TECH[1]) > 0
        await term.wait_for(lambda m: m["type"] == wp.COMMAND and m["cmd"] == wp.CMD_REBOOT, 5)
        sent = [(r["user"], r["data"]) for r in events_of(ward.database, "command_sent")]
        assert [u for u, _ in sent] == [CHARGE[0], TECH[0]]
        assert '"command":"reboot"' in sent[1][1]
        assert [r["user"] for r in events_of(ward.database, "password_confirmation_failed")] == [TECH[0]] * 2
        await nurse.acknowledge(state["calls"][0]["id"])
        assert [r["user"] for r in events_of(ward.database, "call_acknowledged")] == [NURSE[0]]
    finally:
        await term.close()
        for api in apis.values():
            await api.close()


async def test_password_guessing_waits_longer_each_time_raises_an_alarm_and_never_locks_out_the_user(make_ward, ward_server_factory):
    ward = make_ward(terminals=1, extra_toml="\n[console]\nlogin_alarm_failures = 5\n")
    server = ward_server_factory(ward)
    url = server.api_url + "/api/login"
    async with from_address("127.0.0.2") as attacker:
        statuses = []
        for i in range(6):
            status, body, headers = await post(attacker, url, {"user": NURSE[0], "password": f"guess {i}"})
            statuses.append(status)
            if status == 429:
                assert int(headers["Retry-After"]) >= 1 and "try again" in body["error"]
        # three free failures, then the address must wait; waiting is not guessing
        assert statuses[:3] == [401, 401, 401] and set(statuses[3:]) == {429}, statuses
        # even the right password is refused from there while it waits
        status, _, _ = await post(attacker, url, {"user": NURSE[0], "password": NURSE[1]})
        assert status == 429
    # the nurse logs in from her own PC all the same
    async with from_address("127.0.0.3") as nurse_pc:
        status, me, _ = await post(nurse_pc, url, {"user": NURSE[0], "password": NURSE[1]})
        assert status == 200 and me["user"] == NURSE[0]
    # guesses from more places raise an alarm naming the user
    for n in range(4, 7):
        async with from_address(f"127.0.0.{n}") as more:
            await post(more, url, {"user": NURSE[0], "password": "guess"})
    api = await server.login()
    try:
        alarms = [a for a in (await api.state())["alarms"] if a["kind"] == "login_attempts"]
        assert len(alarms) == 1 and alarms[0]["user"] == NURSE[0] and alarms[0]["failures"] >= 5, alarms
    finally:
        await api.close()
    # each refused wait costs no password hash: 4 recorded failures from the attacker, not 7
    failed = events_of(ward.database, "console_login_failed")
    assert sum(1 for r in failed if '"127.0.0.2"' in r["data"]) == 3


async def test_unknown_and_known_user_names_take_as_long_to_refuse(make_ward, ward_server_factory):
    """Without a dummy hash an unknown name is refused in microseconds and a known one in tens of
    milliseconds (scrypt): a stopwatch would tell which names exist."""
    server = ward_server_factory(make_ward(terminals=1))
    url = server.api_url + "/api/login"

    async def timed(user: str, n: int) -> float:
        async with from_address(f"127.0.1.{n}") as http:      # one address each: no waiting in between
            t0 = time.perf_counter()
            status, _, _ = await post(http, url, {"user": user, "password": "wrong"})
            assert status == 401
            return time.perf_counter() - t0

    known, unknown = [], []
    for i in range(5):
        known.append(await timed(NURSE[0], 2 * i + 1))
        unknown.append(await timed(f"nobody-{i}", 2 * i + 2))
    # both pay for scrypt: within a factor that load cannot explain, where without it the
    # factor is over 100
    assert statistics.median(unknown) > 0.3 * statistics.median(known), (known, unknown)


async def test_an_administrator_ends_every_session_of_a_user_and_its_event_stream(ward_server):
    nurse_phone = await ward_server.login()
    nurse_station = await ward_server.login()
    admin = await ward_server.login(*ADMIN)
    try:
        async with nurse_phone.events() as stream:
            listed = (await admin.get("/api/sessions"))["sessions"]
            assert sorted(s["user"] for s in listed) == ["admin", "nurse", "nurse"]
            assert (await admin.post(f"/api/users/{NURSE[0]}/sessions/end"))["ended"] == 2
            # the open stream ends at once, and the sessions are gone
            await asyncio.wait_for(_ended(stream), 5)
        for api in (nurse_phone, nurse_station):
            with pytest.raises(ApiError) as gone:
                await api.state()
            assert gone.value.status == 401
        assert (await admin.state())["ward"]
        ended = events_of(ward_server.ward.database, "console_sessions_ended")
        assert [r["user"] for r in ended] == [ADMIN[0]] and '"of_user":"nurse"' in ended[0]["data"]
    finally:
        for api in (nurse_phone, nurse_station, admin):
            await api.close()


async def _ended(stream) -> None:
    while not stream.ended:
        with pytest.raises(ConnectionError):
            await stream.wait_for(lambda s: False, timeout=5)


async def test_an_idle_session_expires(make_ward, ward_server_factory):
    # idle after 2 s without a request (an open console's event stream counts as use: see
    # test_sessions_expire_when_idle_or_old_and_use_keeps_them)
    server = ward_server_factory(make_ward(terminals=1, extra_toml="\n[console]\nidle_timeout_min = 0.034\n"))
    idle = await server.login()
    try:
        assert (await idle.state())["ward"]
        await asyncio.sleep(3.0)         # the time under test: longer than the idle timeout
        with pytest.raises(ApiError) as gone:
            await idle.state()
        assert gone.value.status == 401
    finally:
        await idle.close()


def test_sessions_expire_when_idle_or_old_and_use_keeps_them(tmp_path):
    now = [1000.0]
    sessions = Sessions(tmp_path / "s.json", idle_s=60, lifetime_s=600, clock=lambda: now[0])
    token, session = sessions.create("nurse", "Nurse")
    for _ in range(9):                   # in use every 50 s: stays, until its lifetime is over
        now[0] += 50
        assert sessions.get(token) is session
        sessions.touch(session)
    now[0] += 50
    assert now[0] - session.created >= 500 and sessions.get(token) is session
    now[0] += 60
    assert sessions.get(token) is None, "a session outlived its lifetime"
    token, session = sessions.create("nurse", "Nurse")
    now[0] += 61
    assert sessions.get(token) is None, "an idle session stayed"
    # the file on disk never holds a usable token
    token, _ = sessions.create("nurse", "Nurse")
    assert token not in (tmp_path / "s.json").read_text()
    assert Sessions(tmp_path / "s.json", idle_s=60, lifetime_s=600, clock=lambda: now[0]).get(token) is not None


async def test_a_session_survives_a_host_restart_but_not_its_logout(ward_server):
    api = await ward_server.login()
    try:
        ward_server.restart()
        assert (await api.state())["ward"] == "Test ward"       # the hashed copy brought it back
        await api.post("/api/logout")
        ward_server.restart()
        with pytest.raises(ApiError) as gone:
            await api.state()
        assert gone.value.status == 401
    finally:
        await api.close()


async def test_a_hostile_login_name_is_cut_short_and_escaped_before_it_is_logged_or_stored(ward_server):
    """A lone surrogate made the failed-login line unwritable (the database alarm went off); a
    60 KB name was written whole to the log at every attempt."""
    url = ward_server.api_url + "/api/login"
    names = ["\ud800nurse", "x" * 60_000, "bad\x00\x1b[31mname\n"]
    for n, name in enumerate(names):
        async with from_address(f"127.0.2.{n + 1}") as http:     # elsewhere: the nurse's own PC is not kept waiting
            # ASCII JSON text: the lone surrogate travels as the escape \ud800, as a browser can send it
            body = json.dumps({"user": name, "password": "wrong"})
            async with http.post(url, data=body, headers={"Content-Type": "application/json"},
                                 timeout=aiohttp.ClientTimeout(total=15)) as r:
                assert r.status == 401, await r.text()
    api = await ward_server.login()
    try:
        state = await api.state()
    finally:
        await api.close()
    assert not [a for a in state["alarms"] if a["kind"] == "database"], state["alarms"]
    stored = [r["user"] for r in events_of(ward_server.ward.database, "console_login_failed")]
    assert len(stored) == 3 and all(len(u) <= 70 for u in stored), [len(u) for u in stored]
    assert stored[0] == "\\ud800nurse" and "\\x00" in stored[2] and "\n" not in stored[2]
    assert "x" * 100 not in ward_server.log_text()
