"""The host's own heartbeat period (docs/SESSION.md): a terminal whose HELLO has CAP_HOST_BEAT
hears the host's HEARTBEAT every `host_heartbeat_every` heartbeat intervals, and every frame it
sends but a HEARTBEAT answered at once, also while the record hangs and the CALL_ACK waits for it
(the terminal counts a frame unanswered for 3 x hb_ms a dead link). A terminal without the bit,
as older firmware, hears the host every hb_ms as before."""
from __future__ import annotations

import sqlite3

import pytest

from tests.support.simterm import DEFAULT_CAPS
from wardcall.client import find_call, find_terminal
from wardcall.hub import RECORD_PATIENCE_S
from wardcall.protocol import wardproto as wp

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]

FOLLOWS = DEFAULT_CAPS | wp.CAP_HOST_BEAT


def host_beats(term, start: int) -> int:
    return sum(1 for m in term.inbox[start:] if m["type"] == wp.HEARTBEAT)


async def test_a_terminal_that_follows_it_hears_the_host_every_tenth_beat_an_older_one_every_beat(
        make_ward, ward_server_factory):
    every, hb_s = 10, 0.2
    ward = make_ward(terminals=2, heartbeat_ms=int(hb_s * 1000), host_heartbeat_every=every)
    ward_server_factory(ward)
    follows, older = ward.terminal(0, caps=FOLLOWS), ward.terminal(1)
    welcome = await follows.connect()
    assert (welcome["hb_ms"], welcome["flags"] & wp.WF_HOST_BEATS) == (200, every)
    welcome = await older.connect()
    assert welcome["flags"] == 0        # every hb_ms, as before CAP_HOST_BEAT
    # a window 20 of the older terminal's host beats long, as it received them: at least 19
    # intervals, longer if the loaded machine made the host skip beats (it never sends a burst)
    await older.wait_for(lambda m: m["type"] == wp.HEARTBEAT, 10)
    start_older, start_follows = len(older.inbox), len(follows.inbox)
    first = older.inbox[-1]["received"]
    await older.wait_for(lambda m: m["type"] == wp.HEARTBEAT and host_beats(older, start_older) >= 20, 60, start_older)
    window = older.inbox[-1]["received"] - first
    heard = host_beats(follows, start_follows)
    # the host's grid for this terminal is every x hb_ms: at most window / period + 1 beats in it
    assert heard <= window / (every * hb_s) + 2, (heard, window)
    assert follows.connected and older.connected


async def test_each_frame_is_answered_at_once_while_its_call_ack_waits_for_a_hung_record(make_ward, ward_server_factory):
    # the host's period 15 s: within the test, a HEARTBEAT after the CALL can only be its answer
    ward = make_ward(terminals=1, heartbeat_ms=1000, host_heartbeat_every=15)
    server = ward_server_factory(ward)
    term = ward.terminal(0, caps=FOLLOWS)
    await term.connect()
    api = await server.login()
    blocker = sqlite3.connect(ward.database, isolation_level=None, check_same_thread=False)
    try:
        async with api.events() as console:
            await console.wait_for(lambda s: find_terminal(s, term.device)["status"] == "online")
            await term.wait_for(lambda m: m["type"] == wp.HEARTBEAT, 5)    # the session's first beat
            blocker.execute("BEGIN IMMEDIATE")          # the host's next commit waits on it
            call = term.next_call_id()
            mark = len(term.inbox)
            term.send(wp.CALL, {"call": call, "kind": wp.PATIENT, "priority": wp.PATIENT, "age_ms": 0})
            answer = await term.wait_for(lambda m: True, 10, mark)
            assert answer["type"] == wp.HEARTBEAT, answer
            await console.wait_for(lambda s: find_call(s, term.device, call) is not None, timeout=RECORD_PATIENCE_S + 3)
            assert not [m for m in term.inbox[mark:] if m["type"] == wp.CALL_ACK], "acknowledged before it was stored"
            blocker.execute("ROLLBACK")
            await term.resend_until_acknowledged(wp.PATIENT, call, within_s=20, reconnect=False)
            # a PRESENCE, which nothing acknowledges, is answered the same way
            mark = len(term.inbox)
            term.presence(True, "nurse-7")
            answer = await term.wait_for(lambda m: True, 10, mark)
            assert answer["type"] == wp.HEARTBEAT, answer
    finally:
        blocker.close()
        await term.close()
        await api.close()
