"""A CALL the host does not hold open is looked up in the record before it is placed: a call
cleared before (before a restart too) and sent again must not come back as a new call. A new
call needs no look-up when its id is above every id of its board in the record (call ids grow
with the board's boot counter): the hub in-process over a real SQLite record, restarted the
way `wardcall serve` restores it."""
from __future__ import annotations

from pathlib import Path

import pytest

from wardcall.clock import ManualClock
from wardcall.hub import WardHub
from wardcall.protocol import wardproto as wp
from wardcall.storage import AsyncWriter, Storage

from tests.support.hubrig import IdleLink, one_bed_config

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

BOOT_3_CALL_1 = 0x00030001      # (boot counter << 16) | n, PROTOCOL.md


async def started(path: Path) -> tuple[WardHub, AsyncWriter, Storage]:
    """A hub on the record at `path`, restored as `wardcall serve` restores it, terminal a1 on."""
    storage = Storage(path)
    writer = AsyncWriter(storage)
    hub = WardHub(one_bed_config(), {}, writer, ManualClock())
    calls = await writer.run(storage.open_calls)
    terminals = await writer.run(storage.terminal_rows)
    next_id = await writer.run(storage.next_call_id)
    assignments = await writer.run(storage.assignment_rows)
    await writer.load_ceilings()
    await hub.apply(hub.ward.restore(calls, terminals, next_id, assignments))
    hub.attach("a1", IdleLink())
    await hub.apply(hub.ward.terminal_connected("a1", "fw", "sim", 0, "127.0.0.1:1"))
    return hub, writer, storage


def rows(storage: Storage, query: str, *args) -> list[dict]:
    return [dict(r) for r in storage.conn.execute(query, args)]


async def test_a_call_cleared_before_a_restart_and_sent_again_stays_cleared(tmp_path):
    hub, writer, storage = await started(tmp_path / "ward.db")
    await hub.terminal_call("a1", BOOT_3_CALL_1, wp.PATIENT, 0)
    await hub.terminal_cancel("a1", BOOT_3_CALL_1, wp.CANCEL_PRESENCE, 0)
    await writer.aclose()

    hub, writer, storage = await started(tmp_path / "ward.db")
    try:
        # what the record holds is known from the start: that id is looked up, the next is not
        assert not writer.holds_no_call("a1", BOOT_3_CALL_1) and writer.holds_no_call("a1", BOOT_3_CALL_1 + 1)
        # its CALL_ACK was lost in the crash: the terminal sends the call again
        await hub.terminal_call("a1", BOOT_3_CALL_1, wp.PATIENT, 0)
        assert not hub.ward.calls
        assert len(rows(storage, "SELECT id FROM events WHERE kind = 'message_repeated'")) == 1
        # the board's next call is new, and placed
        await hub.terminal_call("a1", BOOT_3_CALL_1 + 1, wp.PATIENT, 0)
        assert [c.call_id for c in hub.ward.calls.values()] == [BOOT_3_CALL_1 + 1]
        # the same board reflashed (its boot counter from 1 again): ids below the record's, and new
        await hub.terminal_call("a1", 0x00010001, wp.STAFF_ASSIST, 0)
        assert sorted(c.call_id for c in hub.ward.calls.values()) == [0x00010001, BOOT_3_CALL_1 + 1]
        assert rows(storage, "SELECT call_id, state FROM calls ORDER BY id") == [
            {"call_id": BOOT_3_CALL_1, "state": "cleared"}, {"call_id": BOOT_3_CALL_1 + 1, "state": "placed"},
            {"call_id": 0x00010001, "state": "placed"}]
    finally:
        await writer.aclose()


async def test_a_call_cleared_in_this_run_and_sent_again_stays_cleared(tmp_path):
    hub, writer, storage = await started(tmp_path / "ward.db")
    try:
        for n in range(1, 4):
            await hub.terminal_call("a1", BOOT_3_CALL_1 + n, wp.PATIENT, 0)
            await hub.terminal_cancel("a1", BOOT_3_CALL_1 + n, wp.CANCEL_PRESENCE, 0)
        await hub.terminal_call("a1", BOOT_3_CALL_1 + 2, wp.PATIENT, 0)      # an old one, again
        assert not hub.ward.calls
        assert rows(storage, "SELECT count(*) AS n FROM calls") == [{"n": 3}]
    finally:
        await writer.aclose()


async def test_what_the_record_may_hold_counts_calls_queued_but_not_yet_written(tmp_path):
    hub, writer, storage = await started(tmp_path / "ward.db")
    try:
        assert writer.holds_no_call("a1", 5)                 # the record is new: none of a1's
        fx, call = hub.ward.place_call("a1", 7, wp.PATIENT, 0, "")
        assert call is not None
        batch = writer.submit(fx)                            # queued, not yet written
        assert not writer.holds_no_call("a1", 7) and not writer.holds_no_call("a1", 6)
        assert writer.holds_no_call("a1", 8)
        assert writer.holds_no_call("a1", 1, "0a0b")         # another board of that device: none of its
        await batch.future
        assert rows(storage, "SELECT call_id FROM calls") == [{"call_id": 7}]
    finally:
        await writer.aclose()
