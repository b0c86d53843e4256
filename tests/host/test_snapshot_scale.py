"""A console snapshot of a large ward: the per-room indexes (ward/state.py) and the JSON encoded
in turns (web/ward_routes.py) give what the plain definitions give. Its time is measured by
bench/bench_snapshot.py, not here."""
from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from wardcall.clock import ManualClock
from wardcall.config import parse_config
from wardcall.protocol import wardproto as wp
from wardcall.ward import Ward
from wardcall.web.ward_routes import ENCODE_CHUNK, json_in_turns

pytestmark = pytest.mark.timeout(60)


def big_ward(terminals: int) -> Ward:
    rooms = {str(100 + r): {"beds": ["1", "2", "3"]} for r in range((terminals + 2) // 3)}
    devices = {f"t{i}": {"room": str(100 + i // 3), "bed": str(1 + i % 3)} for i in range(terminals)}
    data = {"ward": {"name": "W"}, "timing": {"heartbeat_ms": 1000}, "rooms": rooms, "terminals": devices}
    return Ward(parse_config(Path("/tmp/test-ward.toml"), data), ManualClock())


def test_rooms_and_terminals_of_a_large_ward_are_as_defined():
    ward = big_ward(1500)
    rng = random.Random(7)
    devices = sorted(ward.terminals)
    for device in devices:
        ward.terminal_connected(device, "fw", "sim", 0, "127.0.0.1:1")
    # presence on and off again in many rooms, some calls
    for device in rng.sample(devices, 400):
        ward.presence(device, True, "")
    for device in rng.sample(devices, 150):
        ward.presence(device, False, "")
    for i, device in enumerate(rng.sample(devices, 60)):
        ward.place_call(device, 1000 + i, wp.PATIENT, age_ms=0)
    snap = ward.snapshot()

    terminals = ward.terminals.values()
    expected_rooms = []
    for room_id, room in ward.config.rooms.items():
        staff = sorted(t.device for t in terminals if t.room == room_id and t.presence)
        expected_rooms.append({"id": room_id, "name": room.name, "presence": bool(staff), "staff": staff})
    assert snap["rooms"] == expected_rooms
    assert any(r["presence"] for r in snap["rooms"]) and not all(r["presence"] for r in snap["rooms"])
    order = sorted(terminals, key=lambda t: (t.room, t.bed, t.device))
    assert [t["device"] for t in snap["terminals"]] == [t.device for t in order]
    assert [t["presence"] for t in snap["terminals"]] == [t.presence for t in order]
    assert len(snap["calls"]) == 60


def test_a_room_whose_last_nurse_leaves_has_no_presence():
    ward = big_ward(30)
    ward.presence("t3", True, "")
    ward.presence("t4", True, "")
    assert ward.room_view("101")["staff"] == ["t3", "t4"]
    ward.presence("t3", False, "")
    assert ward.room_view("101") == {"id": "101", "name": ward.config.rooms["101"].name, "presence": True, "staff": ["t4"]}
    ward.presence("t4", False, "")
    assert ward.room_view("101")["presence"] is False


def test_snapshot_json_in_turns_is_the_same_json():
    ward = big_ward(ENCODE_CHUNK * 3 + 7)
    for device in ward.terminals:
        ward.terminal_connected(device, "fw", "sim", 0, "127.0.0.1:1")
    snap = {"seq": 5, **ward.snapshot()}
    text = asyncio.run(json_in_turns(snap))
    assert json.loads(text) == json.loads(json.dumps(snap))
    assert list(json.loads(text)) == list(snap)        # key order kept


async def test_a_change_while_a_snapshot_is_built_in_turns_reaches_the_console(tmp_path):
    """The hub builds a large ward's snapshot a chunk per loop turn: a terminal that goes online
    and a call placed meanwhile are either in the snapshot or follow it as changes, so a
    console applying the snapshot and then its changes ends with the true state."""
    from wardcall.hub import STATE_CHUNK, WardHub
    from wardcall.storage import AsyncWriter, Storage

    n = STATE_CHUNK * 3
    rooms = {str(100 + r): {"beds": ["1", "2"]} for r in range((n + 1) // 2)}
    devices = {f"t{i}": {"room": str(100 + i // 2), "bed": str(1 + i % 2)} for i in range(n)}
    config = parse_config(Path("/tmp/test-ward.toml"), {"ward": {"name": "W"}, "rooms": rooms, "terminals": devices})
    writer = AsyncWriter(Storage(tmp_path / "ward.db"))
    hub = WardHub(config, {}, writer, ManualClock())
    try:
        late = [hub.ward.terminal_order[0].device, hub.ward.terminal_order[-1].device]   # built first and last

        async def meanwhile():
            await asyncio.sleep(0)          # the snapshot has begun
            for device in late:
                await hub.apply(hub.ward.terminal_connected(device, "fw", "sim", 0, "127.0.0.1:1"))
            await hub.terminal_call(late[1], 5, wp.CODE_BLUE, 0)
        changes = asyncio.ensure_future(meanwhile())
        sub, snapshot = await hub.subscribe("nurse")
        await changes
        # a console: the snapshot, then every change queued after it
        terminals = {t["device"]: t for t in snapshot["terminals"]}
        calls = {(c["device"], c["call_id"]): c for c in snapshot["calls"]}
        while not sub.queue.empty():
            name, payload = sub.queue.get_nowait()
            assert payload["seq"] > snapshot["seq"]
            if name == "terminal":
                terminals[payload["terminal"]["device"]] = payload["terminal"]
            elif name == "call":
                calls[(payload["call"]["device"], payload["call"]["call_id"])] = payload["call"]
        assert [terminals[d]["connected"] for d in late] == [True, True]
        assert calls[(late[1], 5)]["kind_name"] == "code_blue"
        assert terminals == {t["device"]: t for t in hub.state()["terminals"]}
        assert list(snapshot) == list(hub.state())        # nothing of the whole state left out
    finally:
        await writer.aclose(5)
