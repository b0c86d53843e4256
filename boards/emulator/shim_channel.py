"""The shim channel: one UDP socket on loopback that talks to the shims of every board.

Shim -> supervisor: short text datagrams (cheap to build on the board):
  H board gen    hello from a new interpreter (answered with the full state)
  O pin value t_us / P pin freq duty t_us    an output changed (the board's monotonic time)
  F / W ms       watchdog feed / start      R kind arg   reset request
  N {json}       Wi-Fi station command      r 0/1        runner started/stopped running a program
  M free alloc   heap report
Fleet server -> shim: JSON objects (input edges, Wi-Fi/net state, requests, acks).
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .emulated_board import Board

log = logging.getLogger("emulator")

Addr = tuple[str, int]


class ShimChannel(asyncio.DatagramProtocol):
    def __init__(self, boards: dict[str, Board]) -> None:
        self.boards = boards
        self.transport: Optional[asyncio.DatagramTransport] = None
        self.by_addr: dict[Addr, Board] = {}

    async def start(self) -> int:
        """Bind on 127.0.0.1, any free port; returns the port."""
        loop = asyncio.get_running_loop()
        t, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        s = t.get_extra_info("socket")
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
            except OSError:
                pass
        return s.getsockname()[1]

    def connection_made(self, t: asyncio.DatagramTransport) -> None:
        self.transport = t

    def send(self, board: Board, msg: dict[str, Any]) -> None:
        if board.shim_addr is not None and self.transport is not None:
            # one message a line: the board's shim reads its datagrams back to back (shims/_emu.py)
            self.transport.sendto(json.dumps(msg, separators=(",", ":")).encode() + b"\n", board.shim_addr)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        try:
            self._handle(data, addr)
        except Exception:
            log.exception("bad shim datagram %r from %r", data[:100], addr)

    def _handle(self, data: bytes, addr: Addr) -> None:
        k = data[:1]
        if k == b"H":
            _, name, gen = data.decode().split()
            b = self.boards.get(name)
            if b is None or gen != str(b.process.gen):
                return
            if b.shim_addr is not None:
                self.by_addr.pop(b.shim_addr, None)
            b.shim_addr = addr
            self.by_addr[addr] = b
            self.send(b, b.full_state())
            return
        b = self.by_addr.get(addr)
        if b is None or b.shim_addr != addr:
            return
        f = data.decode().split(" ", 1)
        arg = f[1] if len(f) > 1 else ""
        if k == b"O":
            p, v, tus = arg.split()
            b.gpio.record_output(int(p), int(v), None, int(tus) / 1e6)
        elif k == b"P":
            p, fr, d, tus = arg.split()
            fr, d = int(fr), int(d)
            b.gpio.record_output(int(p), d if fr else 0, fr, int(tus) / 1e6)
        elif k == b"I":
            p, n = arg.split()
            b.gpio.input_seen(int(p), int(n))
        elif k == b"F":
            b.wdt.feed()
        elif k == b"W":
            b.wdt.start(int(arg))
        elif k == b"R":
            kind, a = arg.split()
            b.process.request_reset(kind, int(a))
        elif k == b"N":
            b.wifi.command(json.loads(arg))
        elif k == b"r":
            b.process.read_pty_now()  # the console holds everything printed before this message
            b.runner_running = arg.strip() == "1"
            b.phase = "running" if b.runner_running else "repl"
            self.send(b, {"k": "ack"})
            b.changed.notify()
        elif k == b"M":
            free, alloc = arg.split()
            b.mem = {"free": int(free), "alloc": int(alloc), "t": time.monotonic()}
            b.changed.notify()
