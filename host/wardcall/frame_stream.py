"""A terminal connection's bytes as whole frames (wardproto's length prefix), in an asyncio
Protocol rather than a StreamReader.

With streams every frame woke the session's task in a later turn of the loop (a future, a
handle, a task step through the read coroutines): at 5,000 terminals sending a heartbeat a
second that was a large part of the host's time. Here the frames are split as the bytes
arrive, and each is offered first to `take_now`, which may handle it on the spot (a HEARTBEAT
with nothing to store) and returns None, or returns what the session's task is to have in its
place (the frame itself, or what it made of it). The task reads those in order with `next()`.
`take_now` is offered a frame only while nothing is queued and the task is waiting for one, so
frames are handled in the order they came either way.

What the task has not read is bounded: past QUEUE_BYTES the transport stops reading (the
kernel's buffers and TCP push back on the terminal) until the task catches up.
"""
from __future__ import annotations

import asyncio
import collections
from typing import Any, Callable

from .protocol import ProtocolError, wardproto

QUEUE_BYTES = wardproto.MAX_FRAME * 8     # unread frames held before the socket is no longer read


class FrameStream(asyncio.Protocol):
    def __init__(self, on_connect: Callable[["FrameStream", asyncio.BaseTransport], None] | None = None) -> None:
        self._on_connect = on_connect       # at connection_made (the plain socket)
        self.transport: asyncio.Transport | None = None
        self.take_now: Callable[[bytes], Any] | None = None
        self._buffer = bytearray()
        self._items: collections.deque[Any] = collections.deque()   # for the task; an exception ends them
        self._queued = 0                    # bytes of the frames behind _items
        self._tls = False
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False                 # EOF, connection lost or a bad length: no more frames
        self._paused = False

    # ----- asyncio.Protocol -----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport      # type: ignore[assignment]
        if self._on_connect is not None:
            self._on_connect(self, transport)

    def upgraded(self, transport: asyncio.BaseTransport) -> None:
        """The TLS transport that tls_layer.start_tls returned: the one to pause, and one that
        cannot be kept half open. (connection_made is not called again.) Paused, it reads no
        more of the socket and delivers nothing of what it has read."""
        self.transport = transport      # type: ignore[assignment]
        self._tls = True

    def data_received(self, data: bytes) -> None:
        if self._ended:
            return
        buffer = self._buffer
        buffer += data
        items = self._items
        start, size = 0, len(buffer)
        while size - start >= 2:
            try:
                end = start + 2 + wardproto.frame_length(buffer[start:start + 2])
            except ProtocolError as exc:
                self._end(exc)      # nothing after an impossible length can be framed
                break
            if end > size:
                break
            frame = bytes(buffer[start:end])
            start = end
            take_now = self.take_now
            item = frame if items or self._waiter is None or take_now is None else take_now(frame)
            if item is not None:
                items.append((item, len(frame)))
                self._queued += len(frame)
        if self._ended:
            buffer.clear()
        elif start:
            del buffer[:start]
        if items:
            self._wake()
            if self._queued > QUEUE_BYTES and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._end(EOFError("connection closed by the terminal"))
        # plain TCP: kept open for the answers to what came before the EOF (TLS cannot be)
        return not self._tls

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(EOFError("connection closed") if exc is None else ConnectionResetError(str(exc)))

    # ----- the session's task -----

    async def next(self) -> Any:
        """The next frame (or what take_now made of it); raises ProtocolError for an impossible
        length, EOFError or ConnectionError once the connection has ended and everything before
        that was read."""
        while not self._items:
            if self.transport is None:
                raise EOFError("not connected")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if isinstance(item, BaseException):
            self._items.appendleft(item)    # it stays the answer to every later read
            raise item
        item, size = item
        self._queued -= size
        if self._paused and self._queued <= QUEUE_BYTES // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return item

    def _end(self, exc: BaseException) -> None:
        if not self._ended:
            self._ended = True
            self._items.append(exc)
            self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
