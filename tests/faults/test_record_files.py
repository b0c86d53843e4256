"""The record's files under the real `wardcall serve`: its WAL deleted, its folder removed while
the host runs; the record missing or emptied while the host was down. Each is an alarm naming what
happened, and what the host holds reaches the disk: after a SIGKILL (nothing flushed or closed by
the server) the record still has every acknowledged call."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.faults.ledger import db_rows, recorded_calls
from wardcall.client import alarms_of
from wardcall.protocol import wardproto as wp

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]


def record_in_subfolder(ward) -> Path:
    """Put the ward's record in its own folder (so the folder can be removed)."""
    text = ward.config_path.read_text()
    ward.config_path.write_text(text.replace('database = "ward.db"', 'database = "record/ward.db"'))
    return ward.dir / "record" / "ward.db"


async def database_alarms(console, words: str, timeout: float = 5.0) -> list[dict]:
    state = await console.wait_for(lambda s: any(words in a["text"] for a in alarms_of(s, "database")), timeout=timeout)
    return alarms_of(state, "database")


async def test_a_deleted_wal_is_an_alarm_and_loses_nothing(make_ward, ward_server_factory):
    ward = make_ward(terminals=2, heartbeat_ms=500)
    server = ward_server_factory(ward)
    term = ward.terminal(0)
    await term.connect()
    api = await server.login()
    try:
        async with api.events() as console:
            first = await term.place_call(wp.PATIENT)
            wal = Path(str(ward.database) + "-wal")
            assert wal.stat().st_size > 0          # the call is in the WAL, not yet in ward.db
            wal.unlink()
            alarms = await database_alarms(console, "WAL")
            assert any(str(wal) in a["text"] and "deleted" in a["text"] for a in alarms), alarms
            second = await term.place_call(wp.BATHROOM)
    finally:
        await term.close()
        await api.close()
    server.kill()           # SIGKILL: what was only in the deleted WAL would be gone now
    assert recorded_calls(ward.database) == {term.device: [first, second]}
    assert db_rows(ward.database, "PRAGMA integrity_check") == [{"integrity_check": "ok"}]


async def test_a_removed_folder_is_written_back_and_loses_nothing(make_ward, ward_server_factory):
    ward = make_ward(terminals=2, heartbeat_ms=500)
    database = record_in_subfolder(ward)
    server = ward_server_factory(ward)
    term = ward.terminal(0)
    await term.connect()
    api = await server.login()
    try:
        async with api.events() as console:
            first = await term.place_call(wp.PATIENT)
            shutil.rmtree(database.parent)
            alarms = await database_alarms(console, "folder")
            assert any(str(database.parent) in a["text"] and "removed" in a["text"] for a in alarms), alarms
            assert database.exists(), "the host writes the open record back where it belongs"
            second = await term.place_call(wp.BATHROOM)
    finally:
        await term.close()
        await api.close()
    server.kill()
    assert recorded_calls(database) == {term.device: [first, second]}
    kinds = [r["kind"] for r in db_rows(database, "SELECT kind FROM events ORDER BY id")]
    assert kinds[0] == "server_started" and kinds.count("call_placed") == 2    # the whole record, from its start
    assert db_rows(database, "PRAGMA integrity_check") == [{"integrity_check": "ok"}]


@pytest.mark.parametrize("loss", ["deleted", "emptied"])
async def test_a_record_missing_at_start_is_an_alarm_not_silence(make_ward, ward_server_factory, loss):
    ward = make_ward(terminals=2, heartbeat_ms=500)
    server = ward_server_factory(ward)
    term = ward.terminal(0)
    await term.connect()
    await term.place_call(wp.PATIENT)
    await term.close()
    server.stop()
    known = db_rows(ward.database, "SELECT value FROM meta WHERE key = 'record_id'")
    for side in ("", "-wal", "-shm"):
        path = Path(str(ward.database) + side)
        if loss == "deleted":
            path.unlink(missing_ok=True)
        elif path.exists():
            path.write_bytes(b"")
    server.start()
    async with await server.login() as api:
        alarms = alarms_of(await api.state(), "database")
    assert len(alarms) == 1, alarms
    assert f"the record {ward.database} is missing: a new one was started" in alarms[0]["text"], alarms
    # the record's identity, kept in the record and beside the ward TOML
    marker = json.loads((ward.dir / "ward.record.json").read_text())
    assert known[0]["value"] in alarms[0]["text"]
    # remembered as the ward's record from now on: the next start is quiet
    assert marker["record_id"] != known[0]["value"]
    assert db_rows(ward.database, "SELECT value FROM meta WHERE key = 'record_id'") == [{"value": marker["record_id"]}]
    server.restart()
    async with await server.login() as api:
        assert alarms_of(await api.state(), "database") == []
