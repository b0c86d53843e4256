"""The record's files in-process, over a real SQLite record: a removed folder that cannot be made
again at once (nothing is acknowledged until the record is written back), and the regular WAL
checkpoint (the database file holds what the WAL does, so a lost WAL loses little)."""
from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from wardcall.clock import ManualClock
from wardcall.hub import CHECKPOINT_S, WardHub
from wardcall.protocol import wardproto as wp
from wardcall.storage import AsyncWriter, Storage, StorageError

from tests.support.hubrig import IdleLink, one_bed_config

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


def calls_in(path: Path) -> list[int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if not conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'calls'").fetchone()[0]:
            return []       # not even the tables: all of it is still in the WAL
        return [r[0] for r in conn.execute("SELECT call_id FROM calls ORDER BY id")]
    finally:
        conn.close()


async def a_ward(database: Path):
    writer = AsyncWriter(Storage(database))
    clock = ManualClock()
    hub = WardHub(one_bed_config(), {}, writer, clock)
    hub.attach("a1", IdleLink())
    await hub.apply(hub.ward.terminal_connected("a1", "fw", "sim", 0, "127.0.0.1:1"))
    return writer, clock, hub


async def test_a_removed_folder_that_cannot_be_made_again_holds_every_call_until_it_can(tmp_path):
    database = tmp_path / "record" / "ward.db"
    writer, clock, hub = await a_ward(database)
    await hub.terminal_call("a1", 1, wp.PATIENT, 0)
    shutil.rmtree(database.parent)
    database.parent.write_text("not a folder")         # the folder cannot be made again yet
    with pytest.raises(StorageError, match="not recorded yet"):
        await hub.terminal_call("a1", 2, wp.CODE_BLUE, 0)
    state = hub.state()
    assert [(c["call_id"], c["recorded"]) for c in state["calls"]] == [(2, False), (1, True)]
    texts = [a["text"] for a in state["alarms"] if a["kind"] == "database"]
    assert any(f"the record's folder {database.parent} was removed while the host runs" in t for t in texts), texts
    assert any(t.startswith("the record cannot be written") for t in texts), texts

    database.parent.unlink()                          # the folder can be made again
    clock.advance(2)                                  # more than RECORD_RETRY_S: the timers try again
    await hub.tick()
    await writer.settled()
    assert calls_in(database) == [1, 2]
    state = hub.state()
    assert all(c["recorded"] for c in state["calls"])
    texts = [a["text"] for a in state["alarms"] if a["kind"] == "database"]
    assert len(texts) == 1 and "written back from the open record, nothing was lost" in texts[0], texts
    await hub.terminal_call("a1", 2, wp.CODE_BLUE, 0)         # and now it is acknowledged
    await writer.aclose()
    # the record written back is whole: its first line is still the host's first
    conn = sqlite3.connect(database)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT kind FROM events ORDER BY id LIMIT 1").fetchone()[0] == "terminal_connected"
    conn.close()


async def test_the_wal_is_checkpointed_on_a_timer(tmp_path):
    database = tmp_path / "ward.db"
    writer, clock, hub = await a_ward(database)
    await hub.terminal_call("a1", 1, wp.PATIENT, 0)
    alone = tmp_path / "alone"

    def database_file_alone() -> list[int]:
        """What ward.db itself holds, without its WAL."""
        shutil.rmtree(alone, ignore_errors=True)
        alone.mkdir()
        shutil.copyfile(database, alone / "ward.db")
        return calls_in(alone / "ward.db")

    assert database_file_alone() == []                # the call is only in the WAL so far
    clock.advance(CHECKPOINT_S + 0.5)
    await hub.tick()
    await hub.upkeep_done()
    assert database_file_alone() == [1]
    await writer.aclose()
