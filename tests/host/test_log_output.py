"""A log nobody reads must not stop the host: `wardcall serve 2>&1 | less` left unscrolled, a
terminal stopped with Ctrl-S, a stuck journald. Real pipes, never read until the test says so.
Before, the event loop blocked in its next log line once the pipe was full, and every terminal's
session with it."""
from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import subprocess
import sys
import time

import pytest

from wardcall.ratelog import BURST, BurstLog
from wardcall.log_output import UnblockingStreamHandler
from wardcall.protocol import wardproto as wp

pytestmark = [pytest.mark.timeout(90)]


def small_pipe() -> tuple[int, int]:
    """A pipe of one page (4 KiB), the smallest Linux makes: a little log fills it."""
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    return r, w


def read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


async def session(ward, index: int) -> None:
    """A session the host takes up (a frame after WELCOME: "connected from" in its log), then ended."""
    terminal = ward.terminal(index)
    await terminal.connect(timeout=5)
    terminal.send(wp.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 1})
    await terminal.close()


@pytest.mark.asyncio
async def test_a_full_log_pipe_does_not_stop_the_host_serving_terminals(make_ward):
    ward = make_ward(terminals=2, tls="plain", heartbeat_ms=1000)
    r, w = small_pipe()
    ready = ward.dir / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "wardcall.cli", "serve", "--config", str(ward.config_path),
                             "--ready-file", str(ready)], stdout=w, stderr=w, stdin=subprocess.DEVNULL)
    os.close(w)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "wardcall serve did not start"
            await asyncio.sleep(0.05)
        assert json.loads(ready.read_text())["terminal_port"] == ward.terminal_port
        # each session's start and end is a line or two: 60 sessions are far more than the pipe holds
        for _ in range(30):
            for index in (0, 1):
                await session(ward, index)
        bed = ward.terminal(0)
        await bed.connect(timeout=5)
        try:
            await bed.place_call(wp.PATIENT, timeout=5)          # stored and acknowledged
        finally:
            await bed.close()
        # once it is read, the log flows again: the lines that waited come out, in order, and
        # then what came after them (the storm's summary: past BURST, connections are counted)
        log = b""
        deadline = time.monotonic() + 30
        while b"more terminals connected within" not in log and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            log += read_all(r)
        connected = [line for line in log.splitlines() if b"connected from" in line]
        assert len(connected) >= BURST, log[-2000:]
        assert b"terminal bed-101-1 connected from" in connected[0]          # the first, in order
        assert b"more terminals connected within" in log, log[-2000:]
    finally:
        proc.kill()
        proc.wait(10)
        os.close(r)


def test_lines_the_stream_cannot_take_wait_in_order_and_those_past_the_limit_are_counted():
    r, w = small_pipe()
    stream = os.fdopen(w, "w")
    handler = UnblockingStreamHandler(stream, backlog_bytes=20_000)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test.log_output")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        lines = [f"line {i:04d} " + "x" * 80 for i in range(400)]      # ~37 KB, the pipe takes 4 KB
        for line in lines:
            logger.warning("%s", line)                                # returns: never blocks
        assert handler.dropped > 0
        dropped = handler.dropped
        got = b""
        for _ in range(100):
            got += read_all(r)
            logger.warning("after")
            if got.count(b"after") and b"dropped" in got and not handler.waiting_bytes:
                break
        got += read_all(r)
        text = got.decode()
        kept = [ln for ln in text.splitlines() if ln.startswith("line ")]
        assert kept == lines[:len(kept)] and len(kept) < len(lines)        # in order, the first ones
        assert f"[{dropped} log line(s) dropped: the log's output did not take them]" in text
        assert text.index("dropped") > text.index(kept[-1])                 # said where the gap is
    finally:
        logger.removeHandler(handler)
        stream.close()
        os.close(r)


@pytest.mark.asyncio
async def test_lines_that_waited_go_out_once_the_stream_has_room_without_another_line():
    """A quiet ward logs nothing for hours: what waited must not wait for the next line."""
    r, w = small_pipe()
    stream = os.fdopen(w, "w")
    handler = UnblockingStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test.log_output.room")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        lines = [f"line {i:04d} " + "y" * 80 for i in range(200)]      # ~18 KB, the pipe takes 4 KB
        for line in lines:
            logger.warning("%s", line)
        assert handler.waiting_bytes > 0 and not handler.dropped
        got = b""
        deadline = time.monotonic() + 20
        while handler.waiting_bytes and time.monotonic() < deadline:     # the reader comes back
            await asyncio.sleep(0.01)
            got += read_all(r)
        got += read_all(r)
        assert got.decode().splitlines() == lines                        # all of them, in order
    finally:
        logger.removeHandler(handler)
        stream.close()
        os.close(r)


@pytest.mark.asyncio
async def test_a_storm_of_like_lines_is_logged_one_by_one_up_to_its_burst_then_counted_by_reason():
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("wardcall.test-burst")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    loop = asyncio.get_running_loop()
    burst = BurstLog(logger, "terminals disconnected", loop, burst=3, period_s=0.5)
    start = loop.time()
    reasons = ["dead link", "reset", "dead link", "reset", "dead link", "dead link", ""]
    admitted = [burst.admit(reason) for reason in reasons]
    assert admitted == [True, True, True, False, False, False, False]
    assert lines == []                  # the count is told when the period ends, not line by line
    summary = asyncio.Event()
    logger.addHandler(type("Told", (logging.Handler,), {"emit": lambda self, record: summary.set()})())
    await asyncio.wait_for(summary.wait(), 5)
    assert loop.time() - start >= 0.5
    assert lines == ["4 more terminals disconnected within 0.5 s, not logged one by one (the record has each): "
                     "dead link (2), reset (1)"]
    assert burst.admit("reset")         # a new period: one by one again
