"""The host's log on standard error, written so that it never holds the host up.

The event loop writes its log lines itself. A blocking write to a pipe nobody reads
(`wardcall serve 2>&1 | less` left unscrolled), a terminal stopped with Ctrl-S or a journald
that is stuck would stop the loop at the next line, and with it every terminal's session: the
ward goes dark. So a line is written only as far as the stream can take it now; what it cannot
take waits in memory (at most BACKLOG_BYTES) and goes out, in order, before the next line once it
can. What does not fit there is dropped, counted, and said in the log when it flows again.
"""
from __future__ import annotations

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
                return          # the stream is full: the rest waits for the next line
            # lines together up to CHUNK: a pipe with room for one write takes as much as it can
            data = waiting.popleft()
            while waiting and len(data) + len(waiting[0]) <= CHUNK:
                data += waiting.popleft()
            written = os.write(self._fd, data)
            self._waiting_bytes -= written
            if written < len(data):
                waiting.appendleft(data[written:])
