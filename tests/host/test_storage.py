"""The record: WAL mode, a corrupt file kept aside (never overwritten), and the CLI readers."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from wardcall.client import alarms_of
from wardcall.protocol import wardproto as wp
from wardcall.storage import open_storage

pytestmark = pytest.mark.timeout(60)


def test_the_record_is_in_wal_mode(tmp_path):
    opened = open_storage(tmp_path / "ward.db")
    assert opened.renamed_corrupt is None
    assert opened.storage.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    opened.storage.close()


@pytest.mark.asyncio
async def test_a_corrupt_record_is_kept_aside_and_raises_an_alarm(make_ward, ward_server_factory):
    ward = make_ward(terminals=1)
    garbage = b"this is not an SQLite database, but somebody's data all the same\n" * 100
    ward.database.write_bytes(garbage)
    server = ward_server_factory(ward)
    kept = list(ward.dir.glob("ward.db.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == garbage
    async with await server.login() as api:
        state = await api.state()
    alarm = alarms_of(state, "database")
    assert len(alarm) == 1 and str(kept[0]) in alarm[0]["text"]
    # and the new record works
    term = ward.terminal(0)
    await term.connect()
    await term.place_call(wp.PATIENT)
    await term.close()
    conn = sqlite3.connect(ward.database)
    assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 1
    conn.close()


@pytest.mark.asyncio
async def test_log_and_status_show_the_live_ward(ward_server):
    ward = ward_server.ward
    term = ward.terminal(0)
    await term.connect()
    await term.place_call(wp.BATHROOM)

    def wardcall(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "wardcall.cli", *args, "--config", str(ward.config_path)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout

    log = wardcall("log", "-n", "20")
    assert "call_placed" in log and "bed-101-1" in log and "kind=bathroom" in log
    status = wardcall("status")
    assert "server running" in status and "open calls: 1" in status
    assert "bathroom" in status and "bed-101-1" in status
    await term.close()


@pytest.mark.parametrize("terminals", [1, 47, 48, 64, 65, 150])
def test_a_large_commit_stores_every_line_and_row_in_order(tmp_path, terminals):
    """Lines and rows go in several rows to a statement (storage.insert_rows): across its chunk
    sizes (64 rows; 47 for the calls' 21 columns) every line is there once, in order, and every
    call and terminal row as it is, also when written again; and every terminal's last_seen."""
    from wardcall.clock import ManualClock
    from wardcall.config import parse_config
    from wardcall.storage import TERMINAL_COLUMNS
    from wardcall.ward import CALL_COLUMNS, Ward

    rooms = {str(100 + r): {"beds": ["1", "2", "3"]} for r in range((terminals + 2) // 3)}
    devices = {f"t{i}": {"room": str(100 + i // 3), "bed": str(1 + i % 3)} for i in range(terminals)}
    ward = Ward(parse_config(tmp_path / "ward.toml", {"ward": {"name": "W"}, "rooms": rooms, "terminals": devices}),
                ManualClock())
    storage = open_storage(tmp_path / "ward.db").storage
    try:
        for on in (True, False):
            fx = ward.terminal_connected("t0", "fw", "sim", 0, "127.0.0.1:1") if on else ward.presence("t0", True, "")
            for i in range(1, terminals):
                fx.merge(ward.terminal_connected(f"t{i}", "fw", "sim", 0, "127.0.0.1:1") if on
                         else ward.presence(f"t{i}", True, ""))
            for i in range(terminals):
                fx.merge(ward.place_call(f"t{i}", 10 + int(on), wp.PATIENT, 0)[0])
            before = storage.conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
            storage.commit_effects(fx)
            lines = [tuple(r) for r in storage.conn.execute(
                "SELECT kind, device, call FROM events WHERE id > ? ORDER BY id", (before,))]
            assert lines == [(r.kind, r.device, r.call) for r in fx.records]
            calls = [tuple(r) for r in storage.conn.execute(f"SELECT {', '.join(CALL_COLUMNS)} FROM calls ORDER BY id")]
            assert calls == sorted(tuple(c.row()[k] for k in CALL_COLUMNS) for c in ward.calls.values())
            rows = [tuple(r) for r in storage.conn.execute(f"SELECT {', '.join(TERMINAL_COLUMNS)} FROM terminals ORDER BY device")]
            assert rows == sorted(tuple(t.row()[k] for k in TERMINAL_COLUMNS) for t in ward.terminals.values())
        assert len(calls) == 2 * terminals and len(rows) == terminals
        # last_seen, written alone for many terminals at once, also in chunks
        storage.write_last_seen([(1000.0 + i, f"t{i}") for i in range(terminals)])
        seen = dict(storage.conn.execute("SELECT device, last_seen FROM terminals").fetchall())
        assert seen == {f"t{i}": 1000.0 + i for i in range(terminals)}
    finally:
        storage.close()
