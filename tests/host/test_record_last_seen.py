"""`wardcall status` reads the record, not the live host: a terminal that keeps heartbeating must
show a recent "last seen" there. The real `wardcall serve`, a simulated terminal, and the real
`wardcall status` command."""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time

import pytest

from tests.faults.ledger import db_rows
from wardcall.hub import LAST_SEEN_WRITE_S

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


async def until(pred, timeout: float, what: str):
    """Poll the record (another process writes it) with a deadline, letting the terminal run."""
    deadline = time.monotonic() + timeout
    while not (found := pred()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.1)
    return found


def status_last_seen(config, device: str) -> float:
    done = subprocess.run([sys.executable, "-m", "wardcall.cli", "status", "--config", str(config)],
                          capture_output=True, text=True, timeout=20, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    line = next(l for l in done.stdout.splitlines() if l.strip().startswith(device))
    found = re.search(r"last seen (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3})", line)
    assert found, line
    return time.mktime(time.strptime(found.group(1), "%Y-%m-%d %H:%M:%S")) + int(found.group(2)) / 1000


async def test_status_shows_a_recent_last_seen_for_a_terminal_that_heartbeats(make_ward, ward_server_factory):
    ward = make_ward(terminals=2, heartbeat_ms=200)
    ward_server_factory(ward)
    term = ward.terminal(0)
    await term.connect()
    try:
        connected_at = time.time()
        await until(lambda: db_rows(ward.database, "SELECT last_seen FROM terminals WHERE device = ?", term.device),
                    10, "the terminal in the record")
        first = db_rows(ward.database, "SELECT last_seen FROM terminals WHERE device = ?", term.device)[0]["last_seen"]
        assert first <= connected_at + 2
        # nothing changes at the terminal but its heartbeats: within one write period (and a
        # margin for a busy machine) the record has a newer last_seen
        await until(lambda: db_rows(ward.database, "SELECT last_seen FROM terminals WHERE device = ?",
                                    term.device)[0]["last_seen"] >= first + LAST_SEEN_WRITE_S / 2,
                    LAST_SEEN_WRITE_S + 8, "a newer last_seen in the record")
        shown = status_last_seen(ward.config_path, term.device)
        assert shown >= first + LAST_SEEN_WRITE_S / 2 and shown <= time.time() + 1, (shown, first)
        # and no line per heartbeat: the record's events did not grow with them
        assert not db_rows(ward.database, "SELECT id FROM events WHERE kind LIKE '%heartbeat%'")
    finally:
        await term.close()
