"""The radio proxy: every TCP connect of every board goes through one TCP listener here.

The socket shim connects to the proxy and writes a header line `WCPX <board> <gen> <ip> <port>`;
the proxy connects to the real destination (loopback only) and relays both ways, on asyncio
Protocols with flow control (no per-connection tasks). This is where the radio is emulated:

- Wi-Fi cut (link down, or station not connected): the proxy stops reading both sides of the
  board's connections and holds what it already read: a silent stall, no FIN, no RST.
- Board reset (a kill by the supervisor): the connections become orphans, no FIN is sent; the
  first data the remote sends gets an RST, as from the rebooted board's new TCP stack.
- Capture: while Board.capture is a list, each connection appends the bytes it relays (after
  the header line: what crosses the air) to its own entry, both ways, up to CAPTURE_MAX each.
- Fault injection: Board.fault["delay_ms"] delays every chunk (in order) both ways. More faults
  (bandwidth, jitter, loss bursts) go in ProxyConn.deliver/pump (one queue per direction,
  released by time). UDP is not relayed: the socket shim gates it (see Board.net_state()).
"""
from __future__ import annotations

import asyncio
import collections
import socket
import struct
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .emulated_board import Board

CAPTURE_MAX = 1 << 20       # bytes kept per connection and direction


async def start_radio_proxy(boards: dict[str, Board]) -> asyncio.Server:
    """The proxy's listener on 127.0.0.1, any free port; boards are looked up by name."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _BoardSide(boards), "127.0.0.1", 0, backlog=1024)


class ProxyConn:
    """One board TCP connection relayed to its real (loopback) destination.

    While the board's network is down (radio link cut, or station not connected) the proxy
    stops reading both sides and holds any data it already read: a silent stall, no FIN/RST.
    Fault injection: Board.fault (delay_ms applied per chunk, in order).
    """

    def __init__(self, boards: dict[str, Board]) -> None:
        self.boards = boards
        self.board: Optional[Board] = None  # known once the header line is read
        self.bt: Optional[asyncio.Transport] = None  # board-side transport
        self.rt: Optional[asyncio.Transport] = None  # remote-side transport
        self.hdr = b""
        self.orphan = False  # board process gone: RST the remote when it sends
        self.closed = False
        self.q = {"b2r": collections.deque(), "r2b": collections.deque()}
        self.flow = {"b": False, "r": False}  # write side full: stop reading the other side
        self.timer = {"b2r": None, "r2b": None}
        self.captured: Optional[dict[str, bytearray]] = None

    def tap(self, d: str, data: bytes) -> None:
        if self.board is None or self.board.capture is None:
            return
        if self.captured is None:
            self.captured = {"b2r": bytearray(), "r2b": bytearray()}
            self.board.capture.append(self.captured)
        buf = self.captured[d]
        buf += data[: max(0, CAPTURE_MAX - len(buf))]

    # -- helpers
    def net_up(self) -> bool:
        return self.board is not None and self.board.net_up()

    def update_reading(self) -> None:
        if self.closed:
            return
        up = self.net_up()
        if self.bt is not None and not self.bt.is_closing():
            if self.board is None:
                want = True  # reading the header
            else:
                want = up and self.rt is not None and not self.flow["r"] and not self.orphan
            (self.bt.resume_reading if want else self.bt.pause_reading)()
        if self.rt is not None and not self.rt.is_closing():
            want = up and (self.orphan or not self.flow["b"])
            (self.rt.resume_reading if want else self.rt.pause_reading)()

    def net_changed(self) -> None:
        self.update_reading()
        for d in ("b2r", "r2b"):
            self.pump(d)

    def deliver(self, d: str, data: Optional[bytes]) -> None:
        # data None = EOF
        delay = (self.board.fault.get("delay_ms", 0) / 1000.0) if self.board else 0.0
        q = self.q[d]
        if not q and not delay and self.net_up():
            self._write(d, data)
            return
        q.append((asyncio.get_running_loop().time() + delay, data))
        self.pump(d)

    def pump(self, d: str) -> None:
        q = self.q[d]
        loop = asyncio.get_running_loop()
        if self.timer[d] is not None:
            self.timer[d].cancel()
            self.timer[d] = None
        while q and self.net_up() and not self.closed:
            t, data = q[0]
            now = loop.time()
            if t > now:
                self.timer[d] = loop.call_later(t - now, self.pump, d)
                return
            q.popleft()
            self._write(d, data)

    def _write(self, d: str, data: Optional[bytes]) -> None:
        t = self.rt if d == "b2r" else self.bt
        if t is None or t.is_closing():
            return
        if data is None:
            if t.can_write_eof():
                t.write_eof()
        else:
            t.write(data)

    def rst(self, t: Optional[asyncio.Transport]) -> None:
        if t is None or t.is_closing():
            return
        s = t.get_extra_info("socket")
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        t.abort()

    def close(self, rst_board: bool = False, rst_remote: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        for d in ("b2r", "r2b"):
            if self.timer[d] is not None:
                self.timer[d].cancel()
        if rst_board:
            self.rst(self.bt)
        elif self.bt is not None:
            self.bt.close()
        if rst_remote:
            self.rst(self.rt)
        elif self.rt is not None:
            self.rt.close()
        if self.board is not None:
            self.board.conns.discard(self)

    # -- board side events
    def from_board(self, data: bytes) -> None:
        if self.orphan or self.closed:
            return
        if self.board is None:
            self.hdr += data
            if b"\n" not in self.hdr:
                if len(self.hdr) > 512:
                    self.close(rst_board=True)
                return
            line, rest = self.hdr.split(b"\n", 1)
            self.hdr = b""
            try:
                magic, name, _gen, ip, port = line.decode().split()
                assert magic == "WCPX"
                port = int(port)
            except Exception:
                self.close(rst_board=True)
                return
            board = self.boards.get(name)
            if board is None or not ip.startswith("127."):
                # unknown board, or a destination outside loopback: refuse
                self.close(rst_board=True)
                return
            self.board = board
            board.conns.add(self)
            self.bt.pause_reading()
            if rest:
                self.tap("b2r", rest)
                self.q["b2r"].append((0.0, rest))
            asyncio.get_running_loop().create_task(self._connect(ip, port))
            return
        self.tap("b2r", data)
        self.deliver("b2r", data)

    async def _connect(self, ip: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: _RemoteSide(self), ip, port), 10
            )
        except (OSError, asyncio.TimeoutError):
            # as an ESP32 sees a refused connect: the connection is reset
            self.close(rst_board=True)
            return
        if self.closed or self.orphan:
            self.close(rst_remote=True)
            return
        self.update_reading()
        self.pump("b2r")

    def board_eof(self) -> None:
        if not self.orphan:
            self.deliver("b2r", None)

    def board_lost(self, exc: Optional[Exception]) -> None:
        self.bt = None
        if self.orphan or self.closed:
            return
        if exc is not None:
            self.close(rst_remote=True)
        elif self.rt is None:
            self.close()

    # -- remote side events
    def from_remote(self, data: bytes) -> None:
        if self.orphan:
            # the board was reset: its new TCP stack answers with RST
            self.close(rst_remote=True)
            return
        self.tap("r2b", data)
        self.deliver("r2b", data)

    def remote_eof(self) -> None:
        if self.orphan:
            self.close()
            return
        self.deliver("r2b", None)

    def remote_lost(self, exc: Optional[Exception]) -> None:
        self.rt = None
        if self.closed:
            return
        if exc is not None:
            self.close(rst_board=True)
        elif self.bt is None or self.orphan:
            self.close()

    def make_orphan(self) -> None:
        self.orphan = True
        self.q["r2b"].clear()
        self.update_reading()


class _BoardSide(asyncio.Protocol):
    def __init__(self, boards: dict[str, Board]) -> None:
        self.c = ProxyConn(boards)

    def connection_made(self, t):
        self.c.bt = t

    def data_received(self, data):
        self.c.from_board(data)

    def eof_received(self):
        self.c.board_eof()
        return True

    def connection_lost(self, exc):
        self.c.board_lost(exc)

    def pause_writing(self):
        self.c.flow["b"] = True
        self.c.update_reading()

    def resume_writing(self):
        self.c.flow["b"] = False
        self.c.update_reading()


class _RemoteSide(asyncio.Protocol):
    def __init__(self, conn: ProxyConn) -> None:
        self.c = conn

    def connection_made(self, t):
        self.c.rt = t

    def data_received(self, data):
        self.c.from_remote(data)

    def eof_received(self):
        self.c.remote_eof()
        return True

    def connection_lost(self, exc):
        self.c.remote_lost(exc)

    def pause_writing(self):
        self.c.flow["r"] = True
        self.c.update_reading()

    def resume_writing(self):
        self.c.flow["r"] = False
        self.c.update_reading()
