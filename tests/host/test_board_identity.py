"""Two physical boards, one device id: a replacement deployed while the old board is still
plugged in, a swapped board whose boot counter starts again at 1, a cloned board. A call's
identity is (device, the board's hardware id, call id), so no board's call is ever taken for
another's; the console says plainly that two boards claim the bed. Real `wardcall serve`,
simulated terminals speaking the real protocol (with their HELLO's hwid)."""
from __future__ import annotations

import sqlite3

import pytest

from tests.support.simterm import SimTerminal
from wardcall.client import alarms_of
from wardcall.protocol import wardproto as wp

pytestmark = [pytest.mark.timeout(90)]

SAME_ID = (1 << 16) | 1          # what two fresh boards both give their first call: boot 1, call 1


def board(ward, device: str, hwid: bytes) -> SimTerminal:
    return ward.terminal(device, hwid=hwid)


def rows(ward, sql: str, *args):
    conn = sqlite3.connect(f"file:{ward.database}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


async def test_two_live_boards_with_one_device_id_both_deliver_their_calls_and_raise_an_alarm(make_ward, ward_server_factory):
    ward = make_ward(terminals=2)
    server = ward_server_factory(ward)
    device = ward.devices[0]["device_id"]
    old, new = board(ward, device, b"\x0a" * 6), board(ward, device, b"\x0b" * 6)
    api = await server.login()
    try:
        async with api.events() as console:
            await old.connect()
            await new.connect()
            # the same call id from both boards (their boot counters match): two calls
            await old.place_call(wp.PATIENT, call_id=SAME_ID)
            await new.place_call(wp.BATHROOM, call_id=SAME_ID)
            state = await console.wait_for(lambda s: len([c for c in s["calls"] if c["device"] == device]) == 2)
            state = await console.wait_for(lambda s: alarms_of(s, "duplicate_device"))
            alarm = alarms_of(state, "duplicate_device")[0]
            assert alarm["text"].startswith(f"two boards claim {device}")
            assert old.local_address in alarm["text"] and new.local_address in alarm["text"], alarm
            # neither session was closed by the other (no switching back and forth): both still
            # answer, each on its own session, over several heartbeats
            before = len(old.inbox), len(new.inbox)
            await old.wait_for(lambda m: m["type"] == wp.HEARTBEAT, 5, start=before[0])
            await new.wait_for(lambda m: m["type"] == wp.HEARTBEAT, 5, start=before[1])
            assert not old.closed.is_set() and not new.closed.is_set()
            # each board hears only about its own call
            calls = {c["kind_name"]: c for c in console.state["calls"] if c["device"] == device}
            await api.acknowledge(calls["bathroom"]["id"])
            await new.wait_call_state(SAME_ID, wp.ST_ACKNOWLEDGED)
            assert wp.ST_ACKNOWLEDGED not in [m["state"] for m in old.inbox if m["type"] == wp.CALL_STATE]
            # one clears: the other stays on the board
            await old.cancel(SAME_ID, wp.CANCEL_ORIGIN)
            state = await console.wait_for(lambda s: [c["kind_name"] for c in s["calls"] if c["device"] == device] == ["bathroom"])
        stored = rows(ward, "SELECT hwid, call_id, kind, state FROM calls WHERE device = ? ORDER BY id", device)
        assert stored == [{"hwid": "0a" * 6, "call_id": SAME_ID, "kind": wp.PATIENT, "state": "cleared"},
                          {"hwid": "0b" * 6, "call_id": SAME_ID, "kind": wp.BATHROOM, "state": "acknowledged"}]
    finally:
        await api.close()
        await old.close()
        await new.close()


async def test_a_swapped_board_whose_counter_starts_again_is_never_taken_for_the_old_one(make_ward, ward_server_factory):
    ward = make_ward(terminals=2)
    server = ward_server_factory(ward)
    device = ward.devices[0]["device_id"]
    old = board(ward, device, b"\x01\x02\x03\x04\x05\x06")
    await old.connect()
    await old.place_call(wp.PATIENT, call_id=SAME_ID)
    await old.cancel(SAME_ID, wp.CANCEL_PRESENCE)
    await old.close()                      # the old board is unplugged
    replacement = board(ward, device, b"\x06\x05\x04\x03\x02\x01")
    await replacement.connect()
    api = await server.login()
    try:
        # its first call has the id the old board's first call had: a new call, on the board
        await replacement.place_call(wp.STAFF_ASSIST, call_id=SAME_ID)
        state = await api.state()
        assert [(c["device"], c["kind_name"], c["state"]) for c in state["calls"]] == [(device, "staff_assist", "placed")]
        assert not rows(ward, "SELECT id FROM events WHERE kind = 'message_repeated'")
        # a replacement alone is routine maintenance: no alarm
        assert not alarms_of(state, "duplicate_device")
    finally:
        await api.close()
        await replacement.close()


async def test_a_board_whose_live_session_keeps_being_replaced_is_flagged(make_ward, ward_server_factory):
    """Two boards presenting one hardware id too (a stolen key, a spoofed id: a real ESP32's
    unique_id is burnt in, a copied flash does not copy it): the sessions keep taking each
    other's place. The host stops counting that as reconnections and says so."""
    ward = make_ward(terminals=2)
    server = ward_server_factory(ward)
    device = ward.devices[0]["device_id"]
    hwid = b"\xc1" * 6
    sessions = []
    api = await server.login()
    try:
        for i in range(5):
            t = board(ward, device, hwid)
            await t.connect()
            # an authentic frame: now it is the terminal
            await t.place_call((wp.PATIENT, wp.BATHROOM, wp.STAFF_ASSIST)[i % 3], call_id=SAME_ID + i)
            sessions.append(t)
        state = await api.state()
        alarm = alarms_of(state, "duplicate_device")
        assert len(alarm) == 1 and f"two boards claim {device}" in alarm[0]["text"], state["alarms"]
        assert "replaced each other" in alarm[0]["text"]
        # every call they sent is on the board
        assert len([c for c in state["calls"] if c["device"] == device]) == 5
    finally:
        await api.close()
        for t in sessions:
            await t.close()


def test_a_version_1_record_gets_the_hardware_id_column_and_keeps_every_call(tmp_path):
    """An existing ward's record (calls unique by device and call id) is brought forward in
    place: every call stays, cleared ones too, and a second board's call with the same id fits."""
    from wardcall.storage import Storage
    path = tmp_path / "ward.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema', '1');
        CREATE TABLE calls (id INTEGER PRIMARY KEY, device TEXT NOT NULL, call_id INTEGER NOT NULL,
            kind INTEGER NOT NULL, room TEXT NOT NULL, bed TEXT NOT NULL, state TEXT NOT NULL,
            placed_at REAL NOT NULL, received_at REAL NOT NULL, alerted_at REAL NOT NULL,
            acknowledged_at REAL, acknowledged_by TEXT, last_acknowledged_at REAL, attended_at REAL,
            attended_by TEXT, cleared_at REAL, cleared_reason TEXT, escalation INTEGER NOT NULL DEFAULT 0,
            realerts INTEGER NOT NULL DEFAULT 0, UNIQUE (device, call_id));
        INSERT INTO calls (id, device, call_id, kind, room, bed, state, placed_at, received_at, alerted_at)
            VALUES (1, 'bed-101-1', 65537, 4, '101', '1', 'cleared', 1, 1, 1),
                   (2, 'bed-101-1', 65538, 3, '101', '1', 'placed', 2, 2, 2);
    """)
    conn.close()
    storage = Storage(path)
    try:
        got = [dict(r) for r in storage.conn.execute("SELECT id, device, hwid, call_id, state FROM calls ORDER BY id")]
        assert got == [{"id": 1, "device": "bed-101-1", "hwid": "", "call_id": 65537, "state": "cleared"},
                       {"id": 2, "device": "bed-101-1", "hwid": "", "call_id": 65538, "state": "placed"}]
        assert storage.find_call("bed-101-1", 65538)["state"] == "placed"
        storage.conn.execute("INSERT INTO calls (id, device, hwid, call_id, kind, room, bed, state, placed_at, received_at, "
                             "alerted_at) VALUES (3, 'bed-101-1', 'ab', 65537, 4, '101', '1', 'placed', 3, 3, 3)")
        assert storage.conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "2"
    finally:
        storage.close()
