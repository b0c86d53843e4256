"""The record cannot be written (a full disk): the hub in-process over a real SQLite record whose
size is capped with PRAGMA max_page_count, so SQLite itself fails with "database or disk is full".

A call is shown and sounded on every console at once, marked not recorded, and not acknowledged
to its terminal; the real error is logged and a `database` alarm sounds. What could not be written
is held and goes with the next write that succeeds (or a retry from the timers): the call once,
with its state at that time and its lines. A flood while the disk is full cannot eat the memory."""
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
        "rooms": {"101": {"beds": ["1", "2"]}, "102": {"beds": ["1"]}},
        "terminals": {"a1": {"room": "101", "bed": "1"}, "a2": {"room": "101", "bed": "2"},
                      "b1": {"room": "102", "bed": "1"}},
        "escalation": {"ack_timeout_s": {"code_blue": 10}},
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


def rows(storage: Storage, query: str, *args) -> list[dict]:
    return [dict(r) for r in storage.conn.execute(query, args)]


def drain(sub) -> list[tuple[str, dict]]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


def call_events(events, call_id):
    return [p["call"] for name, p in events if name == "call" and p["call"]["call_id"] == call_id]


async def ward_with_a_call(tmp_path, **writer_kw):
    """A hub with terminal a1 connected, a console, and call 1 placed and acknowledged."""
    storage = Storage(tmp_path / "ward.db")
    writer = AsyncWriter(storage, **writer_kw)
    clock = ManualClock()
    hub = WardHub(make_config(), {}, writer, clock)
    link = Link()
    hub.attach("a1", link)
    await hub.apply(hub.ward.terminal_connected("a1", "fw", "sim", 0, "127.0.0.1:1"))
    sub, _ = await hub.subscribe("nurse")
    await hub.terminal_call("a1", 1, wp.PATIENT, 0)
    await hub.acknowledge(1, "nurse")           # the console has seen it: nothing left sounding
    assert hub.ward.sound_view()["audible"] is False
    drain(sub)
    link.sent.clear()
    return storage, writer, clock, hub, link, sub


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
async def test_a_call_that_cannot_be_stored_is_shown_not_acknowledged_and_recorded_later(tmp_path, caplog):
    storage, writer, clock, hub, link, sub = await ward_with_a_call(tmp_path)
    disk = Disk(storage)
    disk.fill()
    with caplog.at_level(logging.ERROR, logger="wardcall.hub"):
        with pytest.raises(StorageError, match="database or disk is full"):
            await hub.terminal_call("a1", 2, wp.CODE_BLUE, 0)
    # the real error is in the log, not "cannot rollback"
    assert any("database or disk is full" in r.getMessage() and "call_placed" in r.getMessage()
               for r in caplog.records), caplog.text
    assert "rollback" not in caplog.text

    # on the board, marked not recorded, sounding; the alarm first, then the call, at once
    shown = {c["call_id"]: c for c in hub.state()["calls"]}
    assert shown[2]["kind_name"] == "code_blue" and shown[2]["recorded"] is False
    assert shown[1]["recorded"] is True
    events = drain(sub)
    names = [name for name, _ in events]
    alarms = [p["alarm"] for name, p in events if name == "alarm" and p["active"]]
    assert len(alarms) == 1 and alarms[0]["kind"] == "database"
    assert alarms[0]["text"].startswith("the record cannot be written: database or disk is full")
    assert [c["recorded"] for c in call_events(events, 2)] == [False]
    assert names.index("alarm") < names.index("call")
    assert events[-1][0] == "sound" and events[-1][1]["sound"]["audible"] is True
    assert rows(storage, "SELECT * FROM calls WHERE call_id = 2") == []

    # the resend while still full: still not acknowledged, still one call on the board
    with pytest.raises(StorageError):
        await hub.terminal_call("a1", 2, wp.CODE_BLUE, 0)
    assert [c["call_id"] for c in hub.state()["calls"]].count(2) == 1
    # a console cannot acknowledge it yet (503): it goes on sounding
    with pytest.raises(StorageError):
        await hub.acknowledge(shown[2]["id"], "nurse")
    assert hub.ward.call_by_id(shown[2]["id"]).state == "placed"
    # its timers run: escalated again while not recorded (code blue starts at escalation 1)
    clock.advance(10.5)
    await hub.tick()
    assert hub.ward.call_by_id(shown[2]["id"]).escalation == 2
    assert [c["escalation"] for c in call_events(drain(sub), 2)] == [2]
    # a CANCEL that cannot be stored leaves its call standing (not acknowledged: it is resent)
    with pytest.raises(StorageError):
        await hub.terminal_cancel("a1", 1, wp.CANCEL_ORIGIN, 0)
    assert hub.ward.is_open("a1", 1) and hub.ward.call_by_id(1).state == "acknowledged"

    disk.free()
    # the terminal resends (every 3 s): now stored — once, as it is now — and acknowledged
    await hub.terminal_call("a1", 2, wp.CODE_BLUE, 0)
    await hub.terminal_call("a1", 2, wp.CODE_BLUE, 0)      # and a repeat is one call
    stored = rows(storage, "SELECT id, call_id, state, escalation FROM calls ORDER BY id")
    assert stored == [{"id": 1, "call_id": 1, "state": "acknowledged", "escalation": 0},
                      {"id": 2, "call_id": 2, "state": "placed", "escalation": 2}]
    await writer.settled()
    kinds = [r["kind"] for r in rows(storage, "SELECT kind FROM events WHERE call = 2 ORDER BY id")]
    # every line held while the disk was full is there, in order (the failed resend too)
    assert kinds == ["call_placed", "call_repeated", "call_escalated", "call_repeated", "call_repeated"]
    recorded = rows(storage, "SELECT kind, data FROM events WHERE kind LIKE 'alarm_%' AND data LIKE '%database_write%'")
    assert [r["kind"] for r in recorded] == ["alarm_raised", "alarm_cleared"]
    assert "database or disk is full" in recorded[0]["data"]
    assert [a for a in hub.state()["alarms"] if a["kind"] == "database"] == []
    events = drain(sub)
    assert any(name == "alarm" and not p["active"] and p["alarm"]["kind"] == "database" for name, p in events)
    assert [c["recorded"] for c in call_events(events, 2)][:1] == [True]
    assert all(c["recorded"] for c in hub.state()["calls"])
    # and the cancel, resent, is stored now
    await hub.terminal_cancel("a1", 1, wp.CANCEL_ORIGIN, 0)
    assert rows(storage, "SELECT state FROM calls WHERE id = 1") == [{"state": "cleared"}]
    await writer.aclose()


@pytest.mark.asyncio
async def test_what_is_held_is_written_by_the_timers_without_a_resend(tmp_path):
    storage, writer, clock, hub, link, sub = await ward_with_a_call(tmp_path)
    disk = Disk(storage)
    disk.fill()
    with pytest.raises(StorageError):
        await hub.terminal_call("a1", 2, wp.STAFF_ASSIST, 0)
    assert [(c["call_id"], c["recorded"]) for c in hub.state()["calls"]] == [(2, False), (1, True)]
    drain(sub)
    disk.free()
    # nothing else happens on the ward: the timers try again
    clock.advance(2.0)          # more than RECORD_RETRY_S
    await hub.tick()
    await writer.settled()
    assert rows(storage, "SELECT call_id, state FROM calls WHERE call_id = 2") == [{"call_id": 2, "state": "placed"}]
    assert [r["kind"] for r in rows(storage, "SELECT kind FROM events WHERE call = 2")] == ["call_placed"]
    events = drain(sub)
    assert [c["recorded"] for c in call_events(events, 2)] == [True]
    assert any(name == "alarm" and not p["active"] for name, p in events)
    # the terminal's resend is acknowledged (no error), and the call stays one
    await hub.terminal_call("a1", 2, wp.STAFF_ASSIST, 0)
    assert len(rows(storage, "SELECT id FROM calls WHERE call_id = 2")) == 1
    await writer.aclose()


@pytest.mark.asyncio
async def test_the_record_alarm_can_be_silenced_while_the_disk_is_full_and_the_silence_is_recorded_later(tmp_path):
    storage, writer, clock, hub, link, sub = await ward_with_a_call(tmp_path)
    disk = Disk(storage)
    disk.fill()
    with pytest.raises(StorageError):
        await hub.terminal_call("a1", 2, wp.PATIENT, 0)
    assert hub.ward.sound_view()["audible"] is True          # the new call and the record alarm sound
    sound = await hub.silence(60, "nurse")                    # no 503: the ward can be quietened
    assert sound["audible"] is False and sound["silenced_by"] == "nurse"
    disk.free()
    clock.advance(2.0)
    await hub.tick()
    await writer.settled()
    assert [r["user"] for r in rows(storage, "SELECT user FROM events WHERE kind = 'silence'")] == ["nurse"]
    await writer.aclose()


@pytest.mark.asyncio
async def test_a_flood_while_the_disk_is_full_is_capped_and_never_drops_a_call(tmp_path):
    storage, writer, clock, hub, link, sub = await ward_with_a_call(tmp_path, held_records_max=50)
    disk = Disk(storage)
    disk.fill()
    with pytest.raises(StorageError):
        await hub.terminal_call("a1", 2, wp.PATIENT, 0)
    for i in range(300):
        await hub.apply(hub.ward.note("auth_refused", claimed_device="intruder", address=f"10.0.0.{i % 250}:1",
                                      reason="unknown device"))
        if i == 150:
            with pytest.raises(StorageError):
                await hub.terminal_call("a1", 3, wp.BATHROOM, 0)
    lines, calls = writer.held_counts()
    assert lines <= 50 + 2 and calls == 2          # the cap, plus the two calls' own lines
    assert writer.dropped["auth_refused"] >= 240
    disk.free()
    await hub.terminal_call("a1", 3, wp.BATHROOM, 0)
    await writer.settled()
    assert [r["call_id"] for r in rows(storage, "SELECT call_id FROM calls ORDER BY id")] == [1, 2, 3]
    assert sorted(r["call"] for r in rows(storage, "SELECT call FROM events WHERE kind = 'call_placed'")) == [1, 2, 3]
    dropped = rows(storage, "SELECT data FROM events WHERE kind = 'records_dropped'")
    assert len(dropped) == 1 and '"auth_refused":' in dropped[0]["data"]
    await writer.aclose()


@pytest.mark.asyncio
async def test_a_line_the_record_refuses_costs_only_itself_never_the_calls_around_it(tmp_path, caplog):
    """A bug (a line SQLite or JSON cannot take) is not a full disk: retrying cannot help, so that
    one batch is dropped, logged, and the calls written in the same transaction are not held back."""
    from wardcall.ward import Effects, Record
    storage, writer, clock, hub, link, sub = await ward_with_a_call(tmp_path)
    disk = Disk(storage)
    disk.fill()
    with pytest.raises(StorageError):
        await hub.terminal_call("a1", 2, wp.PATIENT, 0)
    await hub.apply(Effects(records=[Record("console_connected", clock.wall(), clock.mono(), data={"not json": {1, 2}})]))
    disk.free()
    # the held call, the bad line and a new call go into one transaction, which fails on the line
    with caplog.at_level(logging.ERROR, logger="wardcall.storage"):
        await hub.terminal_call("a1", 3, wp.BATHROOM, 0)
    await writer.settled()
    assert any("not written, a bug" in r.getMessage() and "console_connected" in r.getMessage()
               for r in caplog.records), caplog.text
    assert [r["call_id"] for r in rows(storage, "SELECT call_id FROM calls ORDER BY id")] == [1, 2, 3]
    assert sorted(r["call"] for r in rows(storage, "SELECT call FROM events WHERE kind = 'call_placed'")) == [1, 2, 3]
    await hub.terminal_call("a1", 2, wp.PATIENT, 0)          # the resend is acknowledged now
    assert all(c["recorded"] for c in hub.state()["calls"])
    assert [a for a in hub.state()["alarms"] if a["kind"] == "database"] == []
    await writer.aclose()
