"""A record that does not answer (a dying disk, NFS): the hub in-process over a real SQLite record
whose write lock another connection holds, so the writer's own commit really waits (SQLite's busy
timeout). After the patience the alarm says so, the change is shown, nothing is acknowledged that
is not stored, and the timers go on; when the record answers, everything is written once."""
from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from wardcall.clock import ManualClock
from wardcall.config import parse_config
from wardcall.hub import WardHub
from wardcall.protocol import wardproto as wp
from wardcall.storage import AsyncWriter, Storage, StorageError

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

PATIENCE_S = 0.5


def make_config():
    return parse_config(Path("/tmp/test-ward.toml"), {
        "ward": {"name": "W"},
        "rooms": {"101": {"beds": ["1", "2"]}, "102": {"beds": ["1"]}},
        "terminals": {"a1": {"room": "101", "bed": "1"}, "a2": {"room": "101", "bed": "2"},
                      "b1": {"room": "102", "bed": "1"}},
        "timing": {"heartbeat_ms": 1000},
        "escalation": {"ack_timeout_s": {"code_blue": 10}},
    })


class Link:
    def send(self, mtype, fields) -> None:
        pass

    def close(self, reason) -> None:
        pass


def drain(sub) -> list[tuple[str, dict]]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


class Blocker:
    """Another connection that holds the record's write lock: the writer's commit waits for it."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def hold(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


async def a_ward(tmp_path):
    storage = Storage(tmp_path / "ward.db")
    writer = AsyncWriter(storage)
    clock = ManualClock()
    hub = WardHub(make_config(), {}, writer, clock, patience_s=PATIENCE_S)
    for device in ("a1", "b1"):
        hub.attach(device, Link())
        await hub.apply(hub.ward.terminal_connected(device, "fw", "sim", 0, "127.0.0.1:1"))
    sub, _ = await hub.subscribe("nurse")
    await hub.terminal_call("a1", 1, wp.PATIENT, 0)
    drain(sub)
    return storage, writer, clock, hub, sub


def rows(path: Path, query: str, *args) -> list[dict]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(query, args)]
    finally:
        conn.close()


async def test_a_call_while_the_record_hangs_is_shown_and_supervision_goes_on(tmp_path):
    storage, writer, clock, hub, sub = await a_ward(tmp_path)
    blocker = Blocker(storage.path)
    blocker.hold()
    try:
        started = time.monotonic()
        with pytest.raises(StorageError, match="has not answered"):
            await hub.terminal_call("a1", 2, wp.CODE_BLUE, 0)
        assert time.monotonic() - started < PATIENCE_S + 1.0
        state = hub.state()
        shown = {c["call_id"]: c for c in state["calls"]}
        assert shown[2]["recorded"] is False and shown[2]["kind_name"] == "code_blue"
        assert [a["text"] for a in state["alarms"] if a["kind"] == "database"] == [
            f"the record has not answered for {PATIENCE_S:g} s (a write waits for the disk)"]
        assert state["sound"]["audible"] is True
        events = drain(sub)
        assert any(name == "call" and p["call"]["call_id"] == 2 for name, p in events)

        # the timers do not wait for the record: a silent terminal goes offline, the code blue
        # escalates, each tick at once
        clock.advance(3.5)
        hub.ward.frame_received("a1")
        started = time.monotonic()
        await hub.tick()
        assert time.monotonic() - started < 0.3
        assert hub.state()["terminals"][2]["device"] == "b1"
        assert {t["device"]: t["status"] for t in hub.state()["terminals"]}["b1"] == "offline"
        clock.advance(7)
        hub.ward.frame_received("a1")
        await hub.tick()
        assert hub.ward.call_by_id(shown[2]["id"]).escalation == 2
        events = drain(sub)
        assert any(name == "alarm" and p["alarm"]["kind"] == "terminal_offline" for name, p in events)
        assert [p["call"]["escalation"] for name, p in events if name == "call" and p["call"]["call_id"] == 2][-1] == 2
        # a console action is not queued behind a write that hangs: refused at once
        started = time.monotonic()
        with pytest.raises(StorageError, match="has not answered"):
            await hub.acknowledge(shown[2]["id"], "nurse")
        assert time.monotonic() - started < 0.3
        assert hub.ward.call_by_id(shown[2]["id"]).state == "placed"
        # the resend is not acknowledged either, and does not wait
        with pytest.raises(StorageError):
            await hub.terminal_call("a1", 2, wp.CODE_BLUE, 0)
        assert rows(storage.path, "SELECT id FROM calls WHERE call_id = 2") == []
    finally:
        blocker.release()
    # the record answers: everything is written, once, as it stands now; the alarm clears
    await writer.settled()
    await hub.terminal_call("a1", 2, wp.CODE_BLUE, 0)
    await writer.settled()
    stored = rows(storage.path, "SELECT id, state, escalation FROM calls WHERE call_id = 2")
    assert stored == [{"id": shown[2]["id"], "state": "placed", "escalation": 2}]
    kinds = [r["kind"] for r in rows(storage.path, "SELECT kind FROM events WHERE call = ? ORDER BY id", shown[2]["id"])]
    assert kinds.count("call_placed") == 1 and "call_escalated" in kinds
    assert rows(storage.path, "SELECT kind FROM events WHERE kind = 'terminal_offline' AND device = 'b1'")
    assert [a for a in hub.state()["alarms"] if a["kind"] == "database"] == []
    assert all(c["recorded"] for c in hub.state()["calls"])
    await writer.aclose()


async def test_a_console_action_whose_own_write_hangs_stands_and_is_answered_once_stored(tmp_path):
    storage, writer, clock, hub, sub = await a_ward(tmp_path)
    blocker = Blocker(storage.path)
    blocker.hold()
    try:
        action = asyncio.ensure_future(hub.acknowledge(1, "nurse"))
        # its write is under way and cannot be taken back: after the patience it is shown
        await asyncio.sleep(PATIENCE_S + 0.5)
        assert not action.done()
        assert hub.ward.call_by_id(1).state == "acknowledged"
        events = drain(sub)
        assert any(name == "call" and p["call"]["state"] == "acknowledged" for name, p in events)
        assert any(name == "alarm" and p["alarm"]["kind"] == "database" for name, p in events)
    finally:
        blocker.release()
    view = await asyncio.wait_for(action, 15)
    assert view["state"] == "acknowledged"
    await writer.settled()
    assert rows(storage.path, "SELECT state, acknowledged_by FROM calls WHERE id = 1") == [
        {"state": "acknowledged", "acknowledged_by": "nurse"}]
    assert [a for a in hub.state()["alarms"] if a["kind"] == "database"] == []
    await writer.aclose()


async def test_a_call_that_must_be_looked_up_while_the_record_hangs_is_read_beside_it(tmp_path):
    """A CALL whose id is not above its board's in the record is looked up first (a resend after
    a lost CALL_ACK; a reflashed board counting from 1 again). While the writer hangs, the look-up
    is made beside it: the call is shown, and a call cleared before stays cleared."""
    storage, writer, clock, hub, sub = await a_ward(tmp_path)
    await hub.terminal_call("a1", 10, wp.PATIENT, 0)
    await hub.terminal_cancel("a1", 10, wp.CANCEL_PRESENCE, 0)
    blocker = Blocker(storage.path)
    blocker.hold()
    try:
        with pytest.raises(StorageError, match="not recorded yet"):
            await hub.terminal_cancel("a1", 1, wp.CANCEL_PRESENCE, 0)    # its write hangs past the patience
        drain(sub)
        # that clearing is in the transaction that hangs: it counts, though the record has not got it
        assert rows(storage.path, "SELECT state FROM calls WHERE call_id = 1") == [{"state": "placed"}]
        assert (await writer.find_call_beside("a1", 1))["state"] == "cleared"
        # a1 reflashed: its call 3 is below the 10 the record holds for it, so it is looked up
        started = time.monotonic()
        with pytest.raises(StorageError, match="shown but not recorded"):
            await hub.terminal_call("a1", 3, wp.CODE_BLUE, 0)
        assert time.monotonic() - started < PATIENCE_S + 1.0
        shown = {(c["device"], c["call_id"]): c for c in hub.state()["calls"]}
        assert shown[("a1", 3)]["recorded"] is False and shown[("a1", 3)]["kind_name"] == "code_blue"
        assert any(name == "call" and p["call"]["call_id"] == 3 for name, p in drain(sub))
        # a1's call 10, cleared in the record, sent again: acknowledged, and not on the board again
        await hub.terminal_call("a1", 10, wp.PATIENT, 0)
        assert ("a1", 10) not in {(c["device"], c["call_id"]) for c in hub.state()["calls"]}
        # a clearing queued behind the write that hangs counts, though the record has not got it
        writer.submit(hub.ward.cancel_call("a1", 3, wp.CANCEL_PRESENCE, 0))
        assert (await writer.find_call_beside("a1", 3))["state"] == "cleared"
        await hub.terminal_call("a1", 3, wp.CODE_BLUE, 0)
        assert ("a1", 3) not in {(c["device"], c["call_id"]) for c in hub.state()["calls"]}
    finally:
        blocker.release()
    await writer.settled()
    assert rows(storage.path, "SELECT device, call_id, state FROM calls ORDER BY device, call_id") == [
        {"device": "a1", "call_id": 1, "state": "cleared"}, {"device": "a1", "call_id": 3, "state": "cleared"},
        {"device": "a1", "call_id": 10, "state": "cleared"}]
    await writer.aclose()
