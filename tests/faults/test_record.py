"""The host's record under faults: the disk fills up under the event log; the database is
corrupt when the host starts."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import resource
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.faults.helpers import press, wait_all_delivered
from tests.faults.ledger import Ledger, db_rows, recorded_calls
from tests.support.waiting import wait_until
from wardcall.client import alarms_of, find_call
from wardcall.protocol import wardproto as wp


# ----------------------------------------------------------------------------------------------
# disk full


class TmpfsDisk:
    """A real full disk: a 4 MiB tmpfs (needs root and mount), filled with a file."""

    name = "tmpfs"

    def __init__(self, base: Path) -> None:
        self.dir = base / f"disk-{uuid.uuid4().hex[:6]}"
        self.dir.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(self.dir)], capture_output=True, text=True)
        if r.returncode != 0:
            raise OSError(r.stderr.strip() or "mount failed")
        self.filler = self.dir / "filler"

    def fill(self, server) -> None:
        chunk = b"\0" * 4096
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(fd)

    def free(self, server) -> None:
        self.filler.unlink()

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.dir)], capture_output=True)


class FileSizeLimit:
    """The fallback without root: the server process may not grow any file (RLIMIT_FSIZE set
    on it with prlimit; CPython ignores SIGXFSZ, so writes fail with EFBIG as on a full disk)."""

    name = "fsize-limit"

    def __init__(self, base: Path) -> None:
        self.dir = base / f"disk-{uuid.uuid4().hex[:6]}"
        self.dir.mkdir()
        self.saved = None

    def fill(self, server) -> None:
        pid = server.proc.pid
        self.saved = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        sizes = [p.stat().st_size for p in self.dir.glob("ward.db*")]
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (max(sizes), self.saved[1]))

    def free(self, server) -> None:
        resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, self.saved)

    def close(self) -> None:
        pass


def _tmpfs_available() -> str | None:
    if os.geteuid() != 0:
        return "not root: cannot mount a small filesystem"
    return None


@pytest.fixture(params=["tmpfs", "fsize-limit"])
def small_disk(request, tmp_path):
    if request.param == "tmpfs":
        why = _tmpfs_available()
        if why:
            pytest.skip(f"{why} (the fsize-limit variant covers a full disk)")
        try:
            disk = TmpfsDisk(tmp_path)
        except OSError as exc:
            pytest.skip(f"tmpfs mount failed: {exc} (the fsize-limit variant covers a full disk)")
    else:
        disk = FileSizeLimit(tmp_path)
    yield disk
    disk.close()


def on_disk(ward, disk) -> None:
    """Put the ward's record on the small disk."""
    text = ward.config_path.read_text()
    ward.config_path.write_text(text.replace('database = "ward.db"', f'database = "{disk.dir}/ward.db"'))
    ward.__dict__["dir_db"] = disk.dir / "ward.db"


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_disk_full_under_the_event_log_raises_an_alarm_and_drops_nothing(small_disk, make_ward, ward_server_factory):
    ward = make_ward(terminals=2, heartbeat_ms=500)
    on_disk(ward, small_disk)
    database = small_disk.dir / "ward.db"
    server = ward_server_factory(ward)
    term = ward.terminal(0)
    await term.connect()
    api = await server.login()
    try:
        async with api.events() as console:
            first = await term.place_call(wp.PATIENT)
            small_disk.fill(server)

            # a call arrives while nothing can be written: no CALL_ACK may come back (the
            # terminal keeps it in its outbox), whatever else the host does
            second = term.next_call_id()
            mark = len(term.inbox)
            term.send(wp.CALL, {"call": second, "kind": wp.STAFF_ASSIST, "priority": wp.STAFF_ASSIST, "age_ms": 0})
            acked = asyncio.ensure_future(term.wait_for(
                lambda m: m["type"] == wp.CALL_ACK and m["call"] == second, timeout=3, start=mark))
            with contextlib.suppress(TimeoutError, ConnectionError):
                await acked
                pytest.fail("the host acknowledged a call it could not store")
            # did the console hear about the full disk? (checked at the end, after recovery)
            with contextlib.suppress(TimeoutError, ConnectionError):
                await console.wait_for(lambda s: alarms_of(s, "database"), timeout=5)
            alarm_seen = bool(alarms_of(console.state, "database")) or any(
                name == "alarm" and p["alarm"]["kind"] == "database" for name, p in console.events)
            state_alarms = alarms_of(await api.state(), "database")

            small_disk.free(server)
            # the terminal resends until acknowledged (as the firmware does every 3 s)
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                try:
                    if not term.connected:
                        await term.connect()
                    await term.place_call(wp.STAFF_ASSIST, call_id=second, timeout=3)
                    break
                except (TimeoutError, ConnectionError, OSError):
                    if asyncio.get_running_loop().time() > deadline:
                        raise
            await console.wait_for(lambda s: find_call(s, term.device, second), timeout=5)
        assert recorded_calls(database) == {term.device: [first, second]}, (
            "the host acknowledged the resent call (CALL_ACK), so the terminal let it go, but it is "
            "not in the record: a restart of the host would lose it")
        events = db_rows(database, "SELECT call FROM events WHERE kind = 'call_placed'")
        assert sorted(e["call"] for e in events) == [1, 2]
        assert alarm_seen or state_alarms, (
            "the disk filled up under the event log and the host wrote nothing, but no `database` "
            "alarm reached the console (GET /api/state alarms: %r); server log tail:\n%s"
            % (state_alarms, "\n".join(server.log_text().splitlines()[-15:])))
    finally:
        await term.close()
        await api.close()


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_a_code_blue_on_a_full_disk_is_shown_at_once_and_recorded_once(small_disk, make_ward, ward_server_factory):
    """The disk is full when a code blue arrives: every console shows and sounds it at once,
    marked not recorded; its terminal gets no CALL_ACK (so it keeps it and resends it); once
    there is room it is recorded once, as it stands then, and acknowledged."""
    ward = make_ward(terminals=2, heartbeat_ms=500, ack_timeout_s={"code_blue": 2.0})
    on_disk(ward, small_disk)
    database = small_disk.dir / "ward.db"
    server = ward_server_factory(ward)
    term = ward.terminal(0)
    await term.connect()
    api, other = await server.login(), await server.login()
    try:
        async with api.events() as console, other.events() as second:
            await term.place_call(wp.PATIENT)
            small_disk.fill(server)
            code = term.next_call_id()
            mark = len(term.inbox)
            term.send(wp.CALL, {"call": code, "kind": wp.CODE_BLUE, "priority": wp.CODE_BLUE, "age_ms": 0})
            for stream in (console, second):
                state = await stream.wait_for(lambda s: find_call(s, term.device, code) is not None, timeout=3)
                shown = find_call(state, term.device, code)
                assert shown["kind_name"] == "code_blue" and shown["recorded"] is False, shown
                assert state["sound"]["audible"] is True
                assert alarms_of(state, "database"), state["alarms"]
            with contextlib.suppress(TimeoutError, ConnectionError):
                await term.wait_for(lambda m: m["type"] == wp.CALL_ACK and m["call"] == code, timeout=3.5, start=mark)
                pytest.fail("the host acknowledged a call it could not store")
            # its escalation runs while it is not recorded
            await console.wait_for(lambda s: find_call(s, term.device, code)["escalation"] >= 2, timeout=5)
            assert db_rows(database, "SELECT id FROM calls WHERE call_id = ?", code) == []

            small_disk.free(server)
            await term.resend_until_acknowledged(wp.CODE_BLUE, code)
            state = await console.wait_for(lambda s: find_call(s, term.device, code)["recorded"] is True
                                           and not alarms_of(s, "database"), timeout=5)
            shown = find_call(state, term.device, code)
        rows = db_rows(database, "SELECT id, state, escalation FROM calls WHERE device = ? AND call_id = ?", term.device, code)
        assert len(rows) == 1, rows
        assert rows[0]["state"] == "placed" and rows[0]["escalation"] >= shown["escalation"] - 1 >= 1, (rows, shown)
        placed = db_rows(database, "SELECT id FROM events WHERE kind = 'call_placed' AND call = ?", rows[0]["id"])
        assert len(placed) == 1
        assert db_rows(database, "SELECT id FROM events WHERE kind = 'call_escalated' AND call = ?", rows[0]["id"])
    finally:
        await term.close()
        await api.close()
        await other.close()


# ----------------------------------------------------------------------------------------------
# corrupt record at start


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    assert len(data) >= 3 * 4096, len(data)
    # the second page onward: b-tree pages of the schema's tables
    data[4096:4096 + 512] = os.urandom(512)
    data[2 * 4096 + 100:2 * 4096 + 400] = os.urandom(300)
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("damage", ["pages", "garbage", "truncated"])
def test_corrupt_record_at_start_is_kept_and_reported(make_terminals, damage):
    rig = make_terminals(2, heartbeat_ms=500)
    ledger = Ledger()
    press(rig, ledger, 0, "call")
    placed = wait_all_delivered(rig, ledger, 15)
    rig.server.stop()
    db = rig.ward.database
    assert not Path(str(db) + "-wal").exists() or Path(str(db) + "-wal").stat().st_size == 0
    if damage == "pages":
        _corrupt(db)
    elif damage == "garbage":
        db.write_bytes(os.urandom(20000))
    else:
        db.write_bytes(db.read_bytes()[:3000])
    before = hashlib.sha256(db.read_bytes()).hexdigest()

    rig.server.start()                       # starts: a ward is never left without its host
    from tests.faults.helpers import relogin
    relogin(rig)
    kept = sorted(db.parent.glob("ward.db.corrupt-*"))
    assert len(kept) == 1, kept
    assert hashlib.sha256(kept[0].read_bytes()).hexdigest() == before, "the old file is kept as it was"
    alarms = alarms_of(rig.api.state(), "database")
    assert len(alarms) == 1 and kept[0].name in alarms[0]["text"], alarms      # a clear error
    assert "database" in rig.server.log_text().split("===== start 2")[-1]

    # the new record works
    rig.wait_online(timeout=20)
    press(rig, ledger, 1, "call")
    wait_until(lambda: recorded_calls(db).get(rig.devices[1]), 15, "a call stored in the new record")
    # the call that was open at bed 0 when the record was lost is still open there (its lamp is
    # lit): it must be on the console again, once
    rig.board(0).wait_output("lamp_reassure", 1, 2)
    open_calls = {(c["device"], c["call_id"]) for c in rig.api.state()["calls"]}
    lost = {(rig.devices[0], cid) for cid in placed[rig.devices[0]]} - open_calls
    assert not lost, (f"open at the terminal but gone from the console after the record was replaced: {lost} "
                      "(the terminal had its CALL_ACK, and nothing re-announces open calls after WELCOME)")
