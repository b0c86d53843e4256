"""The record cannot be written (a full disk): the hub in-process over a real SQLite record whose
size is capped with PRAGMA max_page_count, so SQLite itself fails with "database or disk is full".

Nothing stored, nothing acknowledged, nothing claimed on the board; the real error logged; a
`database` alarm to the consoles that sounds; and once there is room, the resent call is stored
once and the alarm clears."""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from wardcall.clock import ManualClock
from wardcall.config import parse_config
from wardcall.hub import WardHub
from wardcall.protocol import wardproto as wp
from wardcall.storage import AsyncWriter, Storage, StorageError

pytestmark = pytest.mark.timeout(30)


def make_config():
    return parse_config(Path("/tmp/test-ward.toml"), {
        "ward": {"name": "W"},
        "rooms": {"101": {"beds": ["1", "2"]}},
        "terminals": {"a1": {"room": "101", "bed": "1"}, "a2": {"room": "101", "bed": "2"}},
    })


class Link:
    def __init__(self) -> None:
        self.sent: list[tuple[int, dict]] = []

    def send(self, mtype, fields) -> None:
        self.sent.append((mtype, fields))

    def close(self, reason) -> None:
        pass


class Disk:
    """Fill and free the record's "disk": max_page_count at the pages in use, or lifted."""

    def __init__(self, storage: Storage) -> None:
        self.conn = storage.conn

    def fill(self) -> None:
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        self.conn.execute(f"PRAGMA max_page_count = {pages}")
        # and the room left in the event log's pages is taken too
        for size in (1000, 200, 50, 10, 0):
            while True:
                try:
                    self.conn.execute("INSERT INTO events (wall, mono, run, kind, data) VALUES (0, 0, '', 'filler', ?)",
                                      ("x" * size,))
                except sqlite3.OperationalError as exc:
                    assert "full" in str(exc), exc
                    break

    def free(self) -> None:
        self.conn.execute("PRAGMA max_page_count = 1073741823")


def rows(storage: Storage, query: str) -> list[dict]:
    return [dict(r) for r in storage.conn.execute(query)]


def drain(sub) -> list[tuple[str, dict]]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


def test_commit_reports_the_real_error(tmp_path):
    storage = Storage(tmp_path / "ward.db")
    Disk(storage).fill()
    hub_fx = WardHub(make_config(), {}, AsyncWriter(storage), ManualClock())
    fx, _ = hub_fx.ward.place_call("a1", 1, wp.PATIENT, 0)
    with pytest.raises(StorageError, match="database or disk is full") as caught:
        storage.commit_effects(fx)
    assert "rollback" not in str(caught.value)
    assert not storage.conn.in_transaction
    storage.close()


@pytest.mark.asyncio
async def test_a_call_that_cannot_be_stored_is_not_acknowledged_nor_kept(tmp_path, caplog):
    storage = Storage(tmp_path / "ward.db")
    writer = AsyncWriter(storage)
    hub = WardHub(make_config(), {}, writer, ManualClock())
    link = Link()
    hub.attach("a1", link)
    await hub.apply(hub.ward.terminal_connected("a1", "fw", "sim", 0, "127.0.0.1:1"))
    sub, _ = await hub.subscribe("nurse")
    await hub.terminal_call("a1", 1, wp.PATIENT, 0)
    await hub.acknowledge(1, "nurse")           # the console has seen it: nothing left sounding
    assert hub.ward.sound_view()["audible"] is False
    drain(sub)
    link.sent.clear()

    disk = Disk(storage)
    disk.fill()
    with caplog.at_level(logging.ERROR, logger="wardcall.hub"):
        with pytest.raises(StorageError, match="database or disk is full"):
            await hub.terminal_call("a1", 2, wp.STAFF_ASSIST, 0)
    # the real error is in the log, not "cannot rollback"
    assert any("database or disk is full" in r.getMessage() and "call_placed" in r.getMessage()
               for r in caplog.records), caplog.text
    assert "rollback" not in caplog.text
    # not on the board, and no frame went to the terminal for it (the session sends CALL_ACK
    # only when terminal_call returns)
    assert not hub.ward.is_open("a1", 2)
    assert [c["call_id"] for c in hub.ward.snapshot()["calls"]] == [1]
    assert not link.sent
    # the consoles hear about it without the disk, and sound
    events = drain(sub)
    alarms = [p["alarm"] for name, p in events if name == "alarm" and p["active"]]
    assert len(alarms) == 1 and alarms[0]["kind"] == "database"
    assert alarms[0]["text"].startswith("the record cannot be written: database or disk is full")
    assert [p["sound"]["audible"] for name, p in events if name == "sound"] == [True]
    assert [a["kind"] for a in hub.ward.snapshot()["alarms"]] == ["database"]

    # a CANCEL that cannot be stored leaves the call standing; a console's acknowledge fails
    with pytest.raises(StorageError):
        await hub.terminal_cancel("a1", 1, wp.CANCEL_ORIGIN, 0)
    assert hub.ward.is_open("a1", 1) and hub.ward.call_by_id(1).state == "acknowledged"
    # other changes stand and are still published (the live ward goes on); only unstored
    await hub.tick()

    disk.free()
    # the terminal resends: stored once, as call 2, and the alarm clears
    await hub.terminal_call("a1", 2, wp.STAFF_ASSIST, 0)
    await hub.terminal_call("a1", 2, wp.STAFF_ASSIST, 0)      # and a repeat is one call
    assert [(r["id"], r["call_id"]) for r in rows(storage, "SELECT id, call_id FROM calls ORDER BY id")] == [(1, 1), (2, 2)]
    assert [r["call"] for r in rows(storage, "SELECT call FROM events WHERE kind = 'call_placed'")] == [1, 2]
    recorded = rows(storage, "SELECT kind, data FROM events WHERE kind LIKE 'alarm_%'")
    assert [r["kind"] for r in recorded] == ["alarm_raised", "alarm_cleared"]
    assert "database or disk is full" in recorded[0]["data"]
    assert hub.ward.snapshot()["alarms"] == []
    events = drain(sub)
    assert any(name == "alarm" and not p["active"] and p["alarm"]["kind"] == "database" for name, p in events)
    assert any(name == "call" and p["call"]["call_id"] == 2 for name, p in events)
    # and the cancel, resent, is stored now
    await hub.terminal_cancel("a1", 1, wp.CANCEL_ORIGIN, 0)
    assert rows(storage, "SELECT state FROM calls WHERE id = 1") == [{"state": "cleared"}]
    writer.close()
