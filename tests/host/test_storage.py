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
