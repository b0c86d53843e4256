"""End to end: the real `wardcall serve` subprocess, simulated terminals with real keys, and the
console API as a console would use it."""
from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import time

import pytest

from wardcall.client import ApiError, alarms_of, find_call, find_terminal
from wardcall.protocol import wardproto as wp
from tests.support.simterm import Refused, SimTerminal, discover, open_terminal_connection
from tests.support.waiting import async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


# a call's routing lines (test_routing*.py): not what these tests look at
ROUTING_LINES = {"call_routed", "call_passed_on", "call_declined", "call_accepted"}


def db_rows(ward, query, *args):
    conn = sqlite3.connect(f"file:{ward.database}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(query, args)]
    finally:
        conn.close()


async def connected(ward, index, **kw) -> SimTerminal:
    term = ward.terminal(index, **kw)
    await term.connect()
    return term


async def test_call_lifecycle_end_to_end(ward_server, ward_api):
    ward = ward_server.ward
    term = await connected(ward, 0)
    device = term.device
    async with ward_api.events() as console:
        call_id = await term.place_call(wp.PATIENT)
        # CALL_ACK came back: by then the call must be committed to the record
        stored = db_rows(ward, "SELECT * FROM calls WHERE device = ? AND call_id = ?", device, call_id)
        assert len(stored) == 1 and stored[0]["state"] == "placed"

        state = await console.wait_for(lambda s: find_call(s, device, call_id) is not None)
        call = find_call(state, device, call_id)
        assert (call["kind_name"], call["room"], call["bed"], call["state"]) == ("patient", "101", "1", "placed")

        acked = await ward_api.acknowledge(call["id"])
        assert acked["state"] == "acknowledged" and acked["acknowledged_by"] == "nurse"
        msg = await term.wait_call_state(call_id, wp.ST_ACKNOWLEDGED)
        assert msg["by"] == "nurse"

        term.presence(True, "nurse-7")
        await term.wait_call_state(call_id, wp.ST_ATTENDED)
        await console.wait_for(lambda s: find_call(s, device, call_id)["state"] == "attended"
                               and next(r for r in s["rooms"] if r["id"] == "101")["presence"])

        await term.cancel(call_id, wp.CANCEL_PRESENCE)
        await term.wait_call_state(call_id, wp.ST_CLEARED)
        await console.wait_for(lambda s: find_call(s, device, call_id) is None)

    assert term.call_states(call_id) == ["placed", "acknowledged", "attended", "cleared"]   # placed: the host tells a new call its real state
    row = db_rows(ward, "SELECT * FROM calls WHERE device = ? AND call_id = ?", device, call_id)[0]
    assert row["state"] == "cleared" and row["acknowledged_by"] == "nurse" and row["attended_by"] == "nurse-7"
    assert row["placed_at"] <= row["acknowledged_at"] <= row["attended_at"] <= row["cleared_at"]
    kinds = [(e["kind"], e["user"]) for e in db_rows(ward, "SELECT * FROM events WHERE call = ? ORDER BY id", row["id"])
             if e["kind"] not in ROUTING_LINES]
    assert kinds == [("call_placed", None), ("call_acknowledged", "nurse"), ("call_attended", None), ("call_cleared", None)]
    for event in db_rows(ward, "SELECT * FROM events"):
        assert event["wall"] > 1e9 and event["mono"] > 0 and event["run"]
    await term.close()


async def test_calls_are_ordered_by_priority_then_age(make_ward, ward_server_factory):
    ward = make_ward(terminals=6)
    server = ward_server_factory(ward)
    terms = [await connected(ward, i) for i in range(6)]
    for term, kind in zip(terms, [wp.PATIENT, wp.TECHNICAL, wp.BATHROOM, wp.PATIENT, wp.CODE_BLUE, wp.STAFF_ASSIST]):
        await term.place_call(kind)
    async with await server.login() as api:
        state = await api.state()
    order = [(c["kind_name"], c["device"]) for c in state["calls"]]
    assert order == [("code_blue", "bed-103-1"), ("staff_assist", "bed-103-2"), ("bathroom", "bed-102-1"),
                     ("patient", "bed-101-1"), ("patient", "bed-102-2"), ("technical", "bed-101-2")]
    for term in terms:
        await term.close()


async def test_a_retransmitted_call_is_one_call(ward_server, ward_api):
    ward = ward_server.ward
    term = await connected(ward, 0)
    await term.place_call(wp.BATHROOM, call_id=0x00010007)
    await term.place_call(wp.BATHROOM, call_id=0x00010007, age_ms=3000)      # resent, acknowledged again
    await term.close()
    term = await connected(ward, 0)                                          # and again after a reconnect
    await term.place_call(wp.BATHROOM, call_id=0x00010007, age_ms=6000)
    state = await ward_api.state()
    assert [(c["device"], c["call_id"]) for c in state["calls"]] == [("bed-101-1", 0x00010007)]
    # cleared, then the CALL arrives once more (its CALL_ACK was lost): still one call, still cleared
    await term.cancel(0x00010007)
    await term.place_call(wp.BATHROOM, call_id=0x00010007, age_ms=9000)
    await term.cancel(0x00010007)
    assert (await ward_api.state())["calls"] == []
    assert len(db_rows(ward, "SELECT * FROM calls")) == 1
    await term.close()


async def test_escalation_and_realert_timing(make_ward, ward_server_factory):
    ward = make_ward(ack_timeout_s={"patient": 0.6}, attend_timeout_s=0.8)
    server = ward_server_factory(ward)
    term = await connected(ward, 0)
    other = await connected(ward, 2)                  # another room: chimes once the call escalates
    async with await server.login() as api, api.events() as console:
        placed = time.monotonic()
        call_id = await term.place_call(wp.PATIENT)
        await term.wait_call_state(call_id, wp.ST_ESCALATED, timeout=5)
        escalated_after = time.monotonic() - placed
        assert 0.6 <= escalated_after < 0.6 + 1.0
        await other.wait_for(lambda m: m["type"] == wp.COMMAND and m["cmd"] == wp.CMD_CHIME)
        state = await console.wait_for(lambda s: find_call(s, term.device, call_id)["escalation"] >= 1)
        host_id = find_call(state, term.device, call_id)["id"]

        mark = len(term.inbox)
        acked = time.monotonic()            # taken before the request: the host acknowledges after it
        await api.acknowledge(host_id)
        await term.wait_call_state(call_id, wp.ST_ACKNOWLEDGED, start=mark)
        state = await console.wait_for(lambda s: find_call(s, term.device, call_id)["realerts"] == 1, timeout=5)
        realerted_after = time.monotonic() - acked
        assert 0.8 <= realerted_after < 0.8 + 3.0, realerted_after     # never early; late only by load
        call = find_call(state, term.device, call_id)
        assert call["state"] == "placed" and call["acknowledged_by"] == "nurse"
        await term.wait_call_state(call_id, wp.ST_ESCALATED, start=mark)
    kinds = [e["kind"] for e in db_rows(ward, "SELECT kind FROM events WHERE call = ? ORDER BY id", host_id)
             if e["kind"] not in ROUTING_LINES]
    assert kinds[:3] == ["call_placed", "call_escalated", "call_acknowledged"] and "call_realerted" in kinds
    await term.close()
    await other.close()


async def test_supervision_raises_and_clears_terminal_offline(ward_server, ward_api):
    ward = ward_server.ward                                   # heartbeat 200 ms
    term = await connected(ward, 1)
    call_id = await term.place_call(wp.PATIENT)
    async with ward_api.events() as console:
        await console.wait_for(lambda s: find_terminal(s, term.device)["status"] == "online")
        term.pause_heartbeats()
        silent_since = time.monotonic()
        state = await console.wait_for(lambda s: alarms_of(s, "terminal_offline"), timeout=5)
        noticed_after = time.monotonic() - silent_since
        # the same change also brings the call's terminal status (its event follows the alarm's)
        state = await console.wait_for(lambda s: find_call(s, term.device, call_id)["terminal_status"] == "offline", timeout=2)
        # three heartbeats after the last one (0.4-0.6 s), never sooner; the upper bound leaves a
        # busy two-core machine room and still fails a host that waits for anything else
        assert 3 * 0.2 - 0.2 - 0.05 <= noticed_after <= 3.0, noticed_after
        alarm = alarms_of(state, "terminal_offline")[0]
        assert alarm["device"] == term.device and "terminal offline" in alarm["text"]
        assert find_terminal(state, term.device)["status"] == "offline"
        # the call from the terminal that went offline stays on the board
        assert find_call(state, term.device, call_id)["terminal_status"] == "offline"
        await asyncio.wait_for(term.closed.wait(), 5)    # the host also dropped the dead link
        # … and its log says which bed went and why, as it says when one connects
        gone = re.compile(rf"terminal {re.escape(term.device)} \(\S+\) disconnected: nothing received for \S+ s \(dead link\)")
        await async_wait_until(lambda: gone.search(ward_server.log_text()), 5, "the disconnection in the server's log")

        term.resume_heartbeats()                          # the terminal comes back and speaks
        await term.connect()
        state = await console.wait_for(lambda s: not alarms_of(s, "terminal_offline"))
        assert find_terminal(state, term.device)["status"] == "online"
        assert find_call(state, term.device, call_id)["state"] == "placed"
    await term.close()


async def test_a_terminal_closing_its_tls_session_is_one_line_in_the_log_and_no_warning(ward_server):
    """A terminal that ends its session cleanly (TLS close_notify, then FIN) is logged once, with
    why; asyncio must not add a warning of its own for each one (at a storm's thousands of
    closings that was a warning per terminal, not rate-limited)."""
    terms = [await connected(ward_server.ward, i) for i in range(3)]
    for term in terms:
        await term.close()
    gone = [re.compile(rf"terminal {re.escape(t.device)} \(\S+\) disconnected: connection closed by the terminal") for t in terms]
    await async_wait_until(lambda: all(g.search(ward_server.log_text()) for g in gone), 10,
                           "the three disconnections in the server's log")
    from_asyncio = [line for line in ward_server.log_text().splitlines()
                    if " asyncio: " in line and ("WARNING" in line or "ERROR" in line)]
    assert from_asyncio == [], from_asyncio


async def test_a_stop_ends_and_records_a_session_whose_terminal_does_not_answer_the_tls_close(make_ward, ward_server_factory):
    """At a stop the host closes every session; over TLS that close waits for the terminal's own
    close_notify. A terminal that does not send it (hung, or gone without a FIN) is cut off, so
    its session ends while the record is still open: the end is stored and nothing in the log
    blames the disk."""
    ward = make_ward(terminals=2)
    server = ward_server_factory(ward)
    term = await connected(ward, 0)
    await async_wait_until(lambda: db_rows(ward, "SELECT 1 FROM events WHERE kind = 'terminal_connected'"), 10,
                           "the terminal's session in the record")
    # stop() waits for the process here: this loop, and the terminal with it, answers nothing
    assert server.stop() == 0
    ends = db_rows(ward, "SELECT device, data FROM events WHERE kind = 'terminal_disconnected'")
    assert [(e["device"], json.loads(e["data"])["reason"]) for e in ends] == [(term.device, "server stopping")]
    assert "has not answered" not in server.log_text()
    await term.close()


async def test_restart_after_a_crash_restores_open_calls(make_ward, ward_server_factory):
    ward = make_ward(ack_timeout_s={"patient": 3.0, "bathroom": 30.0})
    server = ward_server_factory(ward)
    a, b = await connected(ward, 0), await connected(ward, 2)
    async with await server.login() as api:
        call_a = await a.place_call(wp.PATIENT)
        placed_a = time.time()
        call_b = await b.place_call(wp.BATHROOM)
        before = await api.state()
        await api.acknowledge(find_call(before, b.device, call_b)["id"])
    events_before = db_rows(ward, "SELECT id, kind FROM events ORDER BY id")

    server.kill()                                       # SIGKILL: no chance to tidy up
    await asyncio.wait_for(a.closed.wait(), 5)
    server.start()

    after_events = db_rows(ward, "SELECT id, kind FROM events ORDER BY id")
    assert after_events[:len(events_before)] == events_before          # nothing lost
    async with await server.login() as api, api.events() as console:
        state = console.state
        assert [(c["device"], c["call_id"], c["state"]) for c in state["calls"]] == [
            (b.device, call_b, "acknowledged"), (a.device, call_a, "placed")]
        assert find_call(state, b.device, call_b)["acknowledged_by"] == "nurse"
        # terminals were seen before the crash: until they return they are not "online"
        assert find_terminal(state, a.device)["status"] != "online"

        await a.connect()
        await b.connect()
        # a reconnecting terminal is told the state of its open calls
        await b.wait_call_state(call_b, wp.ST_ACKNOWLEDGED)
        # the patient call's escalation timer kept running from when it was placed
        state = await console.wait_for(lambda s: find_call(s, a.device, call_a)["escalation"] >= 1, timeout=10)
        escalated_at = find_call(state, a.device, call_a)["alerted_at"]
        assert escalated_at - placed_a >= 3.0 - 0.05
    restored = db_rows(ward, "SELECT device FROM events WHERE kind = 'call_restored' ORDER BY device")
    assert [r["device"] for r in restored] == [a.device, b.device]
    await a.close()
    await b.close()


async def test_wrong_key_is_refused_and_shown(ward_server, ward_api):
    ward = ward_server.ward
    good = await connected(ward, 0)
    impostor = SimTerminal(ward.device(1)["device_id"], os.urandom(32), ward_server.host, ward_server.terminal_port)
    with pytest.raises(Refused):
        await impostor.connect()
    state = await ward_api.state()
    alarm = alarms_of(state, "device_trying_to_connect")
    assert [(a["claimed_device"], a["reason"]) for a in alarm] == [("bed-101-2", "wrong key")]
    assert find_terminal(state, "bed-101-2")["status"] == "unknown"     # nothing was accepted from it
    refused = db_rows(ward, "SELECT * FROM events WHERE kind = 'auth_refused'")
    assert len(refused) == 1 and json.loads(refused[0]["data"])["reason"] == "wrong key"
    await good.place_call(wp.PATIENT)                                 # the server carries on
    await good.close()


async def test_replayed_hello_does_not_displace_the_terminal(ward_server, ward_api):
    """Someone on the network who captured a terminal's HELLO replays it: the host answers, but
    the replayer cannot speak the session key, so the real terminal keeps its session."""
    ward = ward_server.ward
    good = await connected(ward, 0)
    device = good.device
    captured = wp.Session(good.key, False).hello(device, "simterm-1", "emulator", 0, good.hwid)   # a HELLO seen on the air
    reader, writer = await open_terminal_connection(ward_server.host, ward_server.terminal_port)
    try:
        writer.write(captured)
        welcome = await asyncio.wait_for(wp.read_frame(reader), 5)
        assert welcome[3] == wp.WELCOME                       # answered, as to any HELLO
        writer.write(captured)                                 # and the replayer can only replay
        await writer.drain()
        # the host drops the replayer (its second "HELLO" is no frame of the new session):
        # read() returns only at the end of the stream
        await asyncio.wait_for(reader.read(), 5)
        assert reader.at_eof()
    finally:
        writer.close()
    call_id = await good.place_call(wp.PATIENT)               # the real session was never closed
    assert not good.closed.is_set()
    state = await ward_api.state()
    assert find_terminal(state, device)["status"] == "online" and find_call(state, device, call_id) is not None
    await good.close()


async def test_unknown_device_is_refused_and_shown(ward_server, ward_api):
    ghost = SimTerminal("bed-999-9", os.urandom(32), ward_server.host, ward_server.terminal_port)
    with pytest.raises(Refused):
        await ghost.connect()
    alarm = alarms_of(await ward_api.state(), "device_trying_to_connect")
    assert [(a["claimed_device"], a["reason"]) for a in alarm] == [("bed-999-9", "unknown device")]


async def test_malformed_frames_do_not_hurt_the_server(ward_server, ward_api):
    ward = ward_server.ward
    host, port = ward_server.host, ward_server.terminal_port

    async def closes_after(data: bytes) -> bool:
        reader, writer = await open_terminal_connection(host, port)
        writer.write(data)
        try:
            return await asyncio.wait_for(reader.read(), 5) == b""
        finally:
            writer.close()

    assert await closes_after(os.urandom(300))                     # noise
    assert await closes_after(b"\xff\xff" + b"x" * 100)             # impossible length
    assert await closes_after(b"\x00\x30" + b"\x01" * 48)           # right size, not a HELLO

    term = await connected(ward, 0)
    # an authentic CALL whose priority does not match its kind: ERROR, and the session goes on
    mark = len(term.inbox)
    term.send(wp.CALL, {"call": 99, "kind": wp.PATIENT, "priority": wp.CODE_BLUE, "age_ms": 0})
    error = await term.wait_for(lambda m: m["type"] == wp.ERROR, start=mark)
    assert error["code"] == wp.E_MALFORMED
    call_id = await term.place_call(wp.PATIENT)
    assert [c["call_id"] for c in (await ward_api.state())["calls"]] == [call_id]

    # a frame with a broken tag: the stream cannot be trusted, the host closes it
    frame = bytearray(wp.encode_frame(wp.Hmac(os.urandom(32)), wp.HEARTBEAT, 999, {"status": 0, "pending": 0, "uptime": 1}, False))
    term.send_raw(bytes(frame))
    await asyncio.wait_for(term.closed.wait(), 5)

    await term.connect()                                            # and it is welcome back
    await term.place_call(wp.PATIENT)
    rejected = db_rows(ward, "SELECT * FROM events WHERE kind = 'frame_rejected'")
    assert len(rejected) >= 4
    await term.close()


async def test_discovery_answers_known_devices_only(ward_server):
    ward = ward_server.ward
    board = ward.device(0)
    host, port = await discover(board["device_id"], board["key"], ward_server.discovery_port)
    assert (host, port) == ("127.0.0.1", ward_server.terminal_port)
    with pytest.raises(TimeoutError):
        await discover(board["device_id"], os.urandom(32), ward_server.discovery_port, timeout=0.5)


async def test_presence_elsewhere_forwards_calls_as_a_chime(ward_server, ward_api):
    ward = ward_server.ward
    caller, nurse_room = await connected(ward, 0), await connected(ward, 2)
    async with ward_api.events() as console:
        nurse_room.presence(True, "nurse-7")
        state = await console.wait_for(lambda s: next(r for r in s["rooms"] if r["id"] == "102")["presence"])
        assert next(r for r in state["rooms"] if r["id"] == "102")["staff"] == [nurse_room.device]
    await caller.place_call(wp.BATHROOM)
    chime = await nurse_room.wait_for(lambda m: m["type"] == wp.COMMAND)
    assert chime["cmd"] == wp.CMD_CHIME and chime["arg"] == bytes([wp.ALARM_MEDIUM])
    await caller.close()
    await nurse_room.close()


async def test_an_alert_no_console_sees_is_an_alarm(make_ward, ward_server_factory):
    ward = make_ward(no_console_grace_s=0.3)
    server = ward_server_factory(ward)
    term = await connected(ward, 0)
    await term.place_call(wp.PATIENT)
    async with await server.login() as api:
        deadline = time.monotonic() + 5
        while not alarms_of(await api.state(), "no_console"):       # GET /api/state is not a console
            assert time.monotonic() < deadline, "no 'no console' alarm"
            await asyncio.sleep(0.05)
        async with api.events() as console:                          # a console connects: it is seen now
            await console.wait_for(lambda s: not alarms_of(s, "no_console"))
    assert db_rows(ward, "SELECT * FROM events WHERE kind = 'alarm_raised' AND data LIKE '%no_console%'")
    await term.close()


async def test_console_login_silence_and_the_record_of_who_did_what(ward_server):
    async with ward_server.api() as anonymous:
        with pytest.raises(ApiError) as err:
            await anonymous.state()
        assert err.value.status == 401
        with pytest.raises(ApiError) as err:
            await anonymous.login("nurse", "wrong")
        assert err.value.status == 401
    term = await connected(ward_server.ward, 0)
    await term.place_call(wp.PATIENT)
    async with await ward_server.login() as api:
        assert (await api.state())["sound"]["audible"] is True
        sound = await api.silence(30)
        assert sound["audible"] is False and sound["silenced_by"] == "nurse"
        state = await api.state()
        assert len(state["calls"]) == 1                         # silence never clears the visual alert
        with pytest.raises(ApiError) as err:
            await api.acknowledge(12345)
        assert err.value.status == 404
    rows = db_rows(ward_server.ward, "SELECT kind, user FROM events WHERE kind IN ('console_login', 'console_login_failed', 'silence')")
    assert rows == [{"kind": "console_login_failed", "user": "nurse"}, {"kind": "console_login", "user": "nurse"},
                    {"kind": "silence", "user": "nurse"}]
    await term.close()
