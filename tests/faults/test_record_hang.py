"""A record that does not answer, with the real `wardcall serve`: another connection holds the
record's write lock for longer than the host's patience (a real hang of the host's own commit, as
on a dying disk or a stuck NFS mount). Calls are shown at once and not acknowledged, the alarm
says the record does not answer, supervision goes on; when the lock goes, the call is written
once and acknowledged. A board's first call of the run, made while the record hangs, is shown
too: nothing is looked up for a new call."""
from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time

import pytest

from tests.faults.ledger import db_rows
from wardcall.client import alarms_of, find_call, find_terminal
from wardcall.hub import RECORD_PATIENCE_S
from wardcall.protocol import wardproto as wp

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]


async def test_a_record_that_does_not_answer_hides_no_call_and_stops_no_timer(make_ward, ward_server_factory):
    ward = make_ward(terminals=3, heartbeat_ms=500)
    server = ward_server_factory(ward)
    caller, first, silent = ward.terminal(0), ward.terminal(1), ward.terminal(2)
    await caller.connect()
    await first.connect()
    await silent.connect()
    api = await server.login()
    blocker = sqlite3.connect(ward.database, isolation_level=None, check_same_thread=False)
    try:
        async with api.events() as console:
            await console.wait_for(lambda s: find_terminal(s, silent.device)["status"] == "online")
            blocker.execute("BEGIN IMMEDIATE")          # the host's next commit waits on it
            held_since = time.monotonic()
            code = caller.next_call_id()
            mark = len(caller.inbox)
            caller.send(wp.CALL, {"call": code, "kind": wp.CODE_BLUE, "priority": wp.CODE_BLUE, "age_ms": 0})
            state = await console.wait_for(lambda s: find_call(s, caller.device, code) is not None,
                                           timeout=RECORD_PATIENCE_S + 3)
            assert find_call(state, caller.device, code)["recorded"] is False
            state = await console.wait_for(lambda s: alarms_of(s, "database"), timeout=3)
            assert "has not answered" in alarms_of(state, "database")[0]["text"], state["alarms"]
            assert state["sound"]["audible"] is True
            # a board that has not called in this run calls now: shown at once, not acknowledged
            first_code = first.next_call_id()
            first_mark = len(first.inbox)
            first.send(wp.CALL, {"call": first_code, "kind": wp.PATIENT, "priority": wp.PATIENT, "age_ms": 0})
            state = await console.wait_for(lambda s: find_call(s, first.device, first_code) is not None, timeout=3)
            assert find_call(state, first.device, first_code)["recorded"] is False
            # supervision goes on: a terminal that falls silent is flagged while the record hangs
            silent.pause_heartbeats()
            await console.wait_for(lambda s: find_terminal(s, silent.device)["status"] == "offline", timeout=5)
            assert not [m for m in caller.inbox[mark:] if m["type"] == wp.CALL_ACK and m["call"] == code], \
                "the host acknowledged a call it had not stored"
            assert not [m for m in first.inbox[first_mark:] if m["type"] == wp.CALL_ACK], \
                "the host acknowledged a call it had not stored"
            assert time.monotonic() - held_since < 9, "the hang must outlast the test, not SQLite's busy timeout"
            blocker.execute("ROLLBACK")

            # the terminals resend (every 3 s): now the calls are written, and acknowledged
            for terminal, kind, call_id in ((caller, wp.CODE_BLUE, code), (first, wp.PATIENT, first_code)):
                deadline = asyncio.get_running_loop().time() + 20
                while True:
                    try:
                        await terminal.place_call(kind, call_id=call_id, timeout=3)
                        break
                    except TimeoutError:
                        if asyncio.get_running_loop().time() > deadline:
                            raise
            await console.wait_for(lambda s: find_call(s, caller.device, code)["recorded"] is True
                                   and find_call(s, first.device, first_code)["recorded"] is True
                                   and not alarms_of(s, "database"), timeout=5)
        for terminal, call_id in ((caller, code), (first, first_code)):
            rows = db_rows(ward.database, "SELECT id FROM calls WHERE device = ? AND call_id = ?", terminal.device, call_id)
            assert len(rows) == 1
            assert len(db_rows(ward.database, "SELECT id FROM events WHERE kind = 'call_placed' AND call = ?",
                               rows[0]["id"])) == 1
        assert db_rows(ward.database, "SELECT id FROM events WHERE kind = 'terminal_offline' AND device = ?", silent.device)
    finally:
        with contextlib.suppress(sqlite3.Error):
            blocker.execute("ROLLBACK")
        blocker.close()
        await caller.close()
        await first.close()
        await silent.close()
        await api.close()
