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
        # once it is read, the log flows again: the lines that waited come out before the next ones
        log = b""
        for _ in range(50):
            log += read_all(r)
            if log.count(b"connected from") >= 61:
                break
            await session(ward, 1)
        connected = [line for line in log.splitlines() if b"connected from" in line]
        assert len(connected) >= 61, log[-2000:]
        assert b"terminal bed-101-1 connected from" in connected[0]          # the first, in order
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
