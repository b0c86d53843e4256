"""The host's log on standard error, written so that it never holds the host up.

The event loop writes its log lines itself. A blocking write to a pipe nobody reads
(`wardcall serve 2>&1 | less` left unscrolled), a terminal stopped with Ctrl-S or a journald
that is stuck would stop the loop at the next line, and with it every terminal's session: the
ward goes dark. So a line is written only as far as the stream can take it now; what it cannot
take waits in memory (at most BACKLOG_BYTES) and goes out, in order, as soon as the stream takes
it again: the event loop watches the stream for room (or, off the loop, the next line tries). What
does not fit there is dropped, counted, and said in the log when it flows again.
"""
from __future__ import annotations

import asyncio
import logging
import os
import select
from collections import deque
from typing import TextIO

BACKLOG_BYTES = 1 << 20     # log waiting for a stream that does not take it
CHUNK = 4096                # written at once: no more than a pipe takes atomically (PIPE_BUF)


class UnblockingStreamHandler(logging.StreamHandler):
    def __init__(self, stream: TextIO, backlog_bytes: int = BACKLOG_BYTES) -> None:
        super().__init__(stream)
        self.backlog_bytes = backlog_bytes
        self._waiting: deque[bytes] = deque()
        self._waiting_bytes = 0
        self.dropped = 0
        self._watching: asyncio.AbstractEventLoop | None = None   # the loop told to write the rest
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):     # no descriptor (a test's StringIO): as usual
            self._fd = None

    @property
    def waiting_bytes(self) -> int:
        """Log the stream has not taken yet."""
        return self._waiting_bytes

    def emit(self, record: logging.LogRecord) -> None:
        if self._fd is None:
            super().emit(record)
            return
        try:
            data = (self.format(record) + self.terminator).encode("utf-8", "replace")
            self.stream.flush()         # what was printed to the stream before goes first
            if self._waiting_bytes + len(data) > self.backlog_bytes:
                self.dropped += 1
            else:
                if self.dropped:        # said where the gap is, before the first line after it
                    self._queue(f"[{self.dropped} log line(s) dropped: the log's output did not take them]\n".encode())
                    self.dropped = 0
                self._queue(data)
            self._write_waiting()
        except Exception:
            self.handleError(record)

    def _queue(self, data: bytes) -> None:
        for at in range(0, len(data), CHUNK):
            self._waiting.append(data[at:at + CHUNK])
        self._waiting_bytes += len(data)

    def _write_waiting(self) -> None:
        assert self._fd is not None
        waiting = self._waiting
        while waiting:
            _, writable, _ = select.select([], [self._fd], [], 0)
            if not writable:
                self._watch()   # the stream is full: the rest goes when it has room
                return
            # lines together up to CHUNK: a pipe with room for one write takes as much as it can
            data = waiting.popleft()
            while waiting and len(data) + len(waiting[0]) <= CHUNK:
                data += waiting.popleft()
            written = os.write(self._fd, data)
            self._waiting_bytes -= written
            if written < len(data):
                waiting.appendleft(data[written:])

    def _watch(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return              # a line logged off the loop: the next line tries again
        if self._watching is loop:
            return
        try:
            loop.add_writer(self._fd, self._on_room)
        except (NotImplementedError, OSError, ValueError):    # a loop or a stream that cannot watch it
            return
        self._watching = loop

    def _on_room(self) -> None:
        with self.lock:         # lines may be logged from other threads meanwhile
            try:
                self._write_waiting()
            except OSError:
                self._waiting.clear()       # the stream is gone (closed): nothing more will go
                self._waiting_bytes = 0
            if not self._waiting and self._watching is not None:
                self._watching.remove_writer(self._fd)
                self._watching = None
