"""A flood cannot fill the disk that holds the calls: what is not a call's is kept to a row budget
and an age, pruned on the timers, oldest first; a call and its lines are never pruned. The hub
in-process over a real SQLite record, the lines made by the real ward rules."""
from __future__ import annotations

import pytest

from wardcall.clock import ManualClock
from wardcall.hub import PRUNE_S, WardHub
from wardcall.protocol import wardproto as wp
from wardcall.storage import NOISE_KINDS, AsyncWriter, Storage

from tests.support.hubrig import IdleLink, one_bed_config

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


def rows(storage: Storage, query: str, *args) -> list[dict]:
    return [dict(r) for r in storage.conn.execute(query, args)]


async def flood(hub: WardHub, n: int) -> None:
    for i in range(n):
        address = f"10.0.{i // 250}.{i % 250}:7300"
        # lines that passed the flood gates (ward/flood.py) over a long time: written as they are
        await hub.apply(hub.ward.note("auth_refused", claimed_device=f"intruder-{i}", address=address, reason="unknown device"))
        await hub.apply(hub.ward.note("frame_rejected", address=address, problem="bad length", closed=True))


async def test_a_flood_is_pruned_to_its_budget_and_the_calls_stay(tmp_path):
    storage = Storage(tmp_path / "ward.db")
    storage.noise_rows_max = 100
    writer = AsyncWriter(storage)
    clock = ManualClock()
    hub = WardHub(one_bed_config(), {}, writer, clock)
    hub.attach("a1", IdleLink())
    await hub.apply(hub.ward.terminal_connected("a1", "fw", "sim", 0, "127.0.0.1:1"))
    await hub.terminal_call("a1", 1, wp.PATIENT, 0)
    await flood(hub, 200)                                   # 400 noise lines
    await hub.terminal_cancel("a1", 1, wp.CANCEL_ORIGIN, 0)
    await hub.terminal_cancel("a1", 1, wp.CANCEL_ORIGIN, 0)     # a repeat: message_repeated, noise too
    call_lines = rows(storage, "SELECT id, kind FROM events WHERE call IS NOT NULL ORDER BY id")
    assert [r["kind"] for r in call_lines] == ["call_placed", "call_cleared"]
    newest_noise = rows(storage, f"SELECT id FROM events WHERE kind IN {NOISE_KINDS!r} ORDER BY id DESC LIMIT 100")

    clock.advance(PRUNE_S + 0.5)
    await hub.tick()
    await hub.upkeep_done()
    noise = rows(storage, f"SELECT id FROM events WHERE kind IN {NOISE_KINDS!r} ORDER BY id DESC")
    assert noise == newest_noise                            # the newest hundred, the oldest gone
    assert rows(storage, "SELECT kind FROM events WHERE kind = 'terminal_connected'")   # not noise: kept
    assert rows(storage, "SELECT id, kind FROM events WHERE call IS NOT NULL ORDER BY id") == call_lines
    assert rows(storage, "SELECT call_id, state FROM calls") == [{"call_id": 1, "state": "cleared"}]
    pruned = rows(storage, "SELECT data FROM events WHERE kind = 'record_pruned'")
    assert len(pruned) == 1 and '"auth_refused"' in pruned[0]["data"] and '"frame_rejected"' in pruned[0]["data"]
    await writer.aclose()


async def test_noise_older_than_its_age_is_pruned(tmp_path):
    storage = Storage(tmp_path / "ward.db")
    writer = AsyncWriter(storage)
    clock = ManualClock()
    hub = WardHub(one_bed_config(), {}, writer, clock)
    await flood(hub, 10)
    clock.advance(storage.noise_max_age_s + 1)
    await flood(hub, 3)
    await hub.apply(hub.ward.note("console_connected", user="nurse", consoles=1))
    deleted = await writer.run(storage.prune_step, clock.wall())
    assert deleted == {"auth_refused": 10, "frame_rejected": 10}
    assert await writer.run(storage.prune_step, clock.wall()) == {}
    assert len(rows(storage, f"SELECT id FROM events WHERE kind IN {NOISE_KINDS!r}")) == 6
    assert rows(storage, "SELECT kind FROM events WHERE kind = 'console_connected'")
    await writer.aclose()


async def test_lines_that_are_not_a_calls_are_kept_to_their_budget_and_a_calls_lines_all(tmp_path):
    storage = Storage(tmp_path / "ward.db")
    storage.other_rows_max = 50
    writer = AsyncWriter(storage)
    clock = ManualClock()
    hub = WardHub(one_bed_config(), {}, writer, clock)
    hub.attach("a1", IdleLink())
    await hub.apply(hub.ward.terminal_connected("a1", "fw", "sim", 0, "127.0.0.1:1"))
    for i in range(1, 21):
        await hub.terminal_call("a1", i, wp.PATIENT, 0)
        for _ in range(10):
            await hub.apply(hub.ward.note("console_connected", user="nurse", consoles=1))
        await hub.terminal_cancel("a1", i, wp.CANCEL_ORIGIN, 0)
    call_lines = rows(storage, "SELECT id, kind, call FROM events WHERE call IS NOT NULL ORDER BY id")
    assert len(call_lines) == 40
    newest = rows(storage, "SELECT id FROM events WHERE call IS NULL ORDER BY id DESC LIMIT 50")
    clock.advance(PRUNE_S + 0.5)
    hub.ward.frame_received("a1")                           # it is still there: nothing else to record
    await hub.tick()
    await hub.upkeep_done()
    assert len(rows(storage, "SELECT id FROM events WHERE kind = 'record_pruned'")) == 1
    assert rows(storage, "SELECT id, kind, call FROM events WHERE call IS NOT NULL ORDER BY id") == call_lines
    assert rows(storage, "SELECT id FROM events WHERE call IS NULL AND kind != 'record_pruned' ORDER BY id DESC") == newest
    assert len(rows(storage, "SELECT id FROM calls")) == 20
    await writer.aclose()


async def test_a_prune_of_more_ids_than_one_statement_takes_deletes_exactly_the_oldest(tmp_path):
    """The ids go up to 999 to a DELETE (storage.statement_parts): a step of 5,000 spans several
    statements and deletes exactly the oldest noise beyond the budget, nothing else."""
    from wardcall.storage import PRUNE_CHUNK
    from wardcall.ward import Record

    storage = Storage(tmp_path / "ward.db")
    storage.noise_rows_max = 10
    storage.commit([Record("terminal_connected", 1.0, 1.0, device="a1")], [], [])
    storage.commit([Record("auth_refused", 2.0, 2.0, data={"n": i}) for i in range(2500)], [], [])
    kept = rows(storage, "SELECT id FROM events WHERE kind = 'auth_refused' ORDER BY id DESC LIMIT 10")
    deleted = storage.prune_step(now=3.0)
    assert deleted == {"auth_refused": 2490} and 2490 < PRUNE_CHUNK
    assert rows(storage, "SELECT id FROM events WHERE kind = 'auth_refused' ORDER BY id DESC") == kept
    assert [r["kind"] for r in rows(storage, "SELECT kind FROM events WHERE kind != 'auth_refused'")] == ["terminal_connected"]
    storage.close()
