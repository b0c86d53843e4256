"""One source must not drown the ward (the real `wardcall serve`, simulated terminals with real
keys, everything on loopback): thousands of forged ids, a terminal sending a thousand CALLs, a
flood of valid DISCOVERs; and two call-path details seen end to end (no false "staff left the
room" before a CANCEL, CALL_STATE for a new call)."""
from __future__ import annotations

import asyncio
import json
import os

import pytest

from tests.faults.ledger import db_rows
from tests.security.flooders import (OTHER_MACHINES, attacker_tls, discover_retrying, flood_discovers, flood_hellos, refusal_rows,
                                     rows_of)
from wardcall.client import alarms_of, find_call
from wardcall.protocol import wardproto as wp

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]

OPEN_CALLS_PER_KIND = 4         # docs/HOST.md, "Limits"


async def test_thousands_of_forged_ids_leave_a_code_blue_on_top(make_ward, ward_server_factory):
    ward = make_ward(terminals=4, heartbeat_ms=500)
    server = ward_server_factory(ward)
    real = ward.device(1)["device_id"]
    async with await server.login() as api, api.events() as console:
        hellos = await flood_hellos(ward.terminal_port, 2000, real, attacker_tls(ward.tls == "plain"))
        assert hellos.answered == 0, "a forged HELLO was answered"
        assert hellos.closed >= 1000, f"only {hellos.closed} of 2,000 forged HELLOs were read and refused"
        # every HELLO the host refused is counted (the console's count follows within a second or so)
        await console.wait_for(lambda s: attempts_counted(s) >= hellos.closed, timeout=10)
        assert await asyncio.to_thread(flood_discovers, ward.discovery_port, 5000, real) == 0, \
            "a forged DISCOVER was answered"
        term = ward.terminal(0)
        await term.connect()
        blue = await term.place_call(wp.CODE_BLUE, timeout=4)
        await console.wait_for(lambda s: find_call(s, term.device, blue), timeout=4)
        # the console's own view and /api/state agree: the code blue comes first, and the
        # forged attempts are a handful of alarms (one per source), not thousands
        for state in (console.state, await api.state()):
            assert [(c["device"], c["kind_name"]) for c in state["calls"]][:1] == [(term.device, "code_blue")]
            attempts = alarms_of(state, "device_trying_to_connect")
            assert 1 <= len(attempts) <= 6, [a["id"] for a in attempts]
            assert len([a for a in state["alarms"] if a["kind"] != "unassigned_beds"]) <= 6     # the test ward's beds are unassigned
        # no attempt counted twice: at most the 7,000 sent (UDP may drop some DISCOVERs)
        assert attempts_counted(await api.state()) <= 7000
        by_source = {a["id"]: a for a in alarms_of(console.state, "device_trying_to_connect")}
        # one alarm for each of the first five sources refused (in whatever order the flood's
        # handshakes ended), one for the rest
        sources = set(by_source) - {"attempt:others"}
        assert len(sources) <= 5 and sources <= {f"attempt:{s}" for s in OTHER_MACHINES}, sorted(by_source)
        one = by_source[min(sources)]
        assert one["count"] > 100 and 1 <= len(one["claimed_devices"]) <= 5 and one["reason"]
        await term.close()
    # the record: the first attempt per alarm (a summary row a minute would follow), not one each
    rows = refusal_rows(ward.database)
    assert len(rows) <= 6, f"{len(rows)} refusal rows for 7,000 forged attempts"
    assert len([r for r in rows_of(ward.database, "alarm_raised") if '"unassigned_beds"' not in r["data"]]) <= 6
    log = server.log_text()
    assert len(log) < 100_000, f"the server log grew to {len(log)} bytes"
    refused = [line for line in log.splitlines() if "refused" in line]
    assert 1 <= len(refused) <= 8, f"{len(refused)} log lines about refused ids (rate-limited: a few a 10 s)"
    assert "Traceback" not in log


def attempts_counted(state: dict) -> int:
    return sum(a["count"] for a in alarms_of(state, "device_trying_to_connect"))


async def test_valid_discovers_are_answered_at_a_bounded_rate_per_source(make_ward, ward_server_factory):
    ward = make_ward(terminals=2)
    server = ward_server_factory(ward)
    dev = ward.device(0)
    mac = wp.Hmac(wp.key_from_hex(dev["key"]))
    loop = asyncio.get_running_loop()
    answers: list[bytes] = []

    class Collect(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            answers.append(data)

    # a captured genuine DISCOVER replayed (fresh nonces, the device's own key) 2,000 times
    transport, _ = await loop.create_datagram_endpoint(Collect, local_addr=(OTHER_MACHINES[0], 0),
                                                       remote_addr=("127.0.0.1", ward.discovery_port))
    started = loop.time()
    try:
        for n in range(2000):
            transport.sendto(wp.discover(mac, dev["device_id"], os.urandom(wp.NONCE_LEN)))
            if n % 100 == 99:
                await asyncio.sleep(0.005)
        elapsed = loop.time() - started
        await asyncio.sleep(0.5)
    finally:
        transport.close()
    # the token bucket: 200 at once, then 20 a second (the defaults)
    assert 150 <= len(answers) <= 200 + 20 * (elapsed + 0.5) + 5, (len(answers), elapsed)
    # another address is answered at once
    host, port = await discover_retrying(dev["device_id"], dev["key"], ward.discovery_port)
    assert port == ward.terminal_port
    assert len(server.log_text()) < 50_000


async def test_a_terminal_sending_a_thousand_calls_is_capped_and_loses_nothing(make_ward, ward_server_factory):
    ward = make_ward(terminals=4, heartbeat_ms=500)
    server = ward_server_factory(ward)
    nurse = ward.terminal(2)                      # room 102: a nurse present there
    await nurse.connect()
    nurse.presence(True, "nurse-7")
    broken = ward.terminal(0)                     # room 101
    await broken.connect()
    async with await server.login() as api, api.events() as console:
        await console.wait_for(lambda s: next(r for r in s["rooms"] if r["id"] == "102")["presence"], timeout=5)
        mark = len(broken.inbox)
        ids = [broken.next_call_id() for _ in range(1000)]
        for cid in ids:
            broken.send(wp.CALL, {"call": cid, "kind": wp.PATIENT, "priority": wp.PATIENT, "age_ms": 0})

        def answers():
            out = {}
            for m in broken.inbox[mark:]:
                if m["type"] == wp.CALL_ACK and m["of"] == wp.CALL:
                    out[m["call"]] = "ack"
                elif m["type"] == wp.ERROR:
                    out.setdefault("busy", 0)
                    out["busy"] += 1
            return out
        await broken.wait_for(lambda m: sum(1 for k, v in answers().items() if v == "ack") + answers().get("busy", 0) >= 1000,
                              timeout=60, start=mark)
        got = answers()
        acked = sorted(k for k, v in got.items() if v == "ack")
        errors = [m for m in broken.inbox[mark:] if m["type"] == wp.ERROR]
        assert len(acked) == OPEN_CALLS_PER_KIND, f"{len(acked)} calls of one kind acknowledged"
        assert len(errors) == 1000 - OPEN_CALLS_PER_KIND and {m["code"] for m in errors} == {wp.E_BUSY}
        assert not broken.closed.is_set()
        state = await api.state()
        assert len([c for c in state["calls"] if c["device"] == broken.device]) == OPEN_CALLS_PER_KIND
        # the alarm names the device, its room and how many were refused
        await console.wait_for(lambda s: any(a["refused"] == 1000 - OPEN_CALLS_PER_KIND
                                             for a in alarms_of(s, "terminal_misbehaving")), timeout=5)
        alarm = alarms_of(console.state, "terminal_misbehaving")[0]
        assert alarm["device"] == broken.device and alarm["room"] == "101" and "996 refused" in alarm["text"]
        # the nurse in room 102 heard a handful of chimes, not a thousand
        chimes = [m for m in nurse.inbox if m["type"] == wp.COMMAND and m["cmd"] == wp.CMD_CHIME]
        assert 1 <= len(chimes) <= 3, f"{len(chimes)} chimes at the nurse's terminal"
        # one open call cleared at the terminal; the first refused call, sent again, is placed
        await broken.cancel(acked[0])
        refused = next(c for c in ids if c not in acked)
        await broken.place_call(wp.PATIENT, call_id=refused, timeout=5)
        await console.wait_for(lambda s: find_call(s, broken.device, refused), timeout=5)
    rows = rows_of(ward.database, "call_refused")
    assert len(rows) == 1 and json.loads(rows[0]["data"])["call_id"] == refused
    assert len(db_rows(ward.database, "SELECT * FROM calls")) == OPEN_CALLS_PER_KIND + 1
    assert len(server.log_text()) < 100_000
    await broken.close()
    await nurse.close()


async def test_presence_off_just_before_the_cancel_is_no_false_realert(make_ward, ward_server_factory):
    """The bathroom flow on the demo beds: presence elsewhere, cord pulled, presence on, cord
    back, presence pressed again — the terminal sends PRESENCE off and then the CANCEL."""
    ward = make_ward(terminals=4, heartbeat_ms=200)
    server = ward_server_factory(ward)
    nurse, bed = ward.terminal(2), ward.terminal(0)
    await nurse.connect()
    await bed.connect()
    async with await server.login() as api, api.events() as console:
        nurse.presence(True, "")
        await console.wait_for(lambda s: next(r for r in s["rooms"] if r["id"] == "102")["presence"], timeout=5)
        cid = await bed.place_call(wp.BATHROOM)
        await nurse.wait_for(lambda m: m["type"] == wp.COMMAND and m["cmd"] == wp.CMD_CHIME, timeout=5)
        bed.presence(True, "")
        await bed.wait_call_state(cid, wp.ST_ATTENDED)
        chimes_before = len([m for m in nurse.inbox if m["type"] == wp.COMMAND])
        bed.presence(False, "")                               # the press: presence off …
        await bed.cancel(cid, wp.CANCEL_PRESENCE)             # … and its CANCEL right after
        # the CANCEL is stored (acknowledged) and the call gone: a re-alert for it could only have
        # come before, from the PRESENCE off
        await console.wait_for(lambda s: find_call(s, bed.device, cid) is None, timeout=5)
    assert rows_of(ward.database, "call_realerted") == [], "a false 'staff left the room' re-alert was recorded"
    assert len([m for m in nurse.inbox if m["type"] == wp.COMMAND]) == chimes_before, "another room was chimed"
    assert "escalated" not in bed.call_states(cid)
    await nurse.close()
    await bed.close()


async def test_a_new_call_is_told_its_state_so_the_lamp_is_right(make_ward, ward_server_factory):
    """After the host lost its record, a terminal re-announces a call it still shows as
    acknowledged: the host takes it as new and says so (placed; escalated for emergencies)."""
    ward = make_ward(terminals=2)
    server = ward_server_factory(ward)
    term = ward.terminal(0)
    await term.connect()
    old = await term.place_call(wp.PATIENT, call_id=0x00030001, age_ms=600_000)
    await term.wait_call_state(old, wp.ST_PLACED, timeout=5)
    blue = await term.place_call(wp.CODE_BLUE, call_id=0x00030002)
    await term.wait_call_state(blue, wp.ST_ESCALATED, timeout=5)
    # a repeat of a call the host has open is not told anything new
    mark = len(term.inbox)
    await term.place_call(wp.PATIENT, call_id=old)
    assert [m for m in term.inbox[mark:] if m["type"] == wp.CALL_STATE] == []
    await term.close()
