"""A board's serial side, as mpremote sees an ESP32's UART.

Output: everything the interpreter prints is kept as the console (the last CONSOLE_MAX bytes),
watched for raw-REPL mode, and forwarded to the REPL TCP client and the user pty.
Input: bytes from the REPL TCP port (one client at a time), the user pty and the control
channel's send_repl go to the interpreter in order. A Ctrl-C byte becomes SIGINT while a
program runs (at the REPL the unix port would die from SIGINT); a soft reset from the raw REPL
comes back in the raw REPL (Ctrl-A at the first prompt).
"""
from __future__ import annotations

import asyncio
import logging
import os
import pty
import tty
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .emulated_board import Board

log = logging.getLogger("emulator")

CONSOLE_MAX = 1 << 20  # bytes of console kept per board
RAW_BANNER = b"raw REPL; CTRL-B to exit"
PROMPT = b">>> "
CLIENT_BUFFER_MAX = 4 << 20  # a REPL client that reads nothing loses output beyond this
CTRL_C_BUSY_S = 0.25  # code run from the raw REPL: busy this long means a program runs


class Repl:
    def __init__(self, board: Board) -> None:
        self.board = board
        self.console = bytearray()
        self.console_base = 0  # console offset of console[0]
        self.raw = False  # in the raw REPL, tracked from the output
        self.raw_on_prompt = False  # soft reset from the raw REPL: Ctrl-A at the first prompt
        self._tail = b""  # the end of the output so far, to match across chunks
        self.client: Optional[asyncio.Transport] = None  # REPL TCP client
        self.server: Optional[asyncio.Server] = None
        self.port: Optional[int] = None
        self.upty_master: Optional[int] = None
        self.upty_slave: Optional[int] = None
        self.pty_path: Optional[str] = None
        self._input: Optional[asyncio.Queue[Optional[bytes]]] = None

    # -- output
    def interpreter_starting(self, soft: bool) -> None:
        self._tail = b""
        self.raw_on_prompt = soft and self.raw

    def on_output(self, data: bytes) -> None:
        if not data:
            return
        self.console += data
        if len(self.console) > CONSOLE_MAX:
            cut = len(self.console) - CONSOLE_MAX * 3 // 4
            del self.console[:cut]
            self.console_base += cut
        # REPL mode tracking (raw vs friendly), across chunk boundaries
        comb = self._tail + data
        tl = len(self._tail)
        ir = comb.rfind(RAW_BANNER)
        ip = comb.rfind(PROMPT)
        if ir >= 0 and ir + len(RAW_BANNER) > tl and ir > ip:
            self.raw = True
        elif ip >= 0 and ip + len(PROMPT) > tl and ip > ir:
            self.raw = False
        if self.raw_on_prompt and comb.endswith(PROMPT):
            self.raw_on_prompt = False
            self.board.sup.loop.create_task(self.board.process.write(b"\x01"))
        self._tail = comb[-64:]
        if self.client is not None and not self.client.is_closing():
            if self.client.get_write_buffer_size() < CLIENT_BUFFER_MAX:
                self.client.write(data)
        if self.upty_master is not None:
            try:
                os.write(self.upty_master, data)
            except OSError:
                pass  # nobody reading the user pty: drop, as a UART does
        self.board.changed.notify()

    def note(self, text: bytes | str) -> None:
        """A line of the emulator's own (ROM banner, soft reboot) on the console."""
        self.on_output(text if isinstance(text, bytes) else text.encode())

    # -- input
    def send(self, data: bytes) -> None:
        """Type into the board's REPL (as a client would)."""
        self._input.put_nowait(data)

    async def _ctrl_c(self) -> None:
        """A Ctrl-C byte from the REPL client: SIGINT if a program runs, else the byte."""
        proc = self.board.process
        if proc.proc is None:
            return
        if self.board.runner_running:
            proc.interrupt()
            return
        loop = self.board.sup.loop
        deadline = loop.time() + CTRL_C_BUSY_S
        for _ in range(200):
            st = proc.syscall_state()
            if st is None:
                return
            if st == "read0":
                await proc.write(b"\x03")
                return
            if st == "blocked" or loop.time() > deadline:
                proc.interrupt()
                return
            await asyncio.sleep(0.002)  # re-sample the interpreter's state (bounded poll)
        proc.interrupt()

    async def _client_input(self, data: bytes) -> None:
        parts = data.split(b"\x03")
        for i, part in enumerate(parts):
            if i:
                await self._ctrl_c()
            if part:
                await self.board.process.write(part)

    async def _input_worker(self) -> None:
        # serialises input from the REPL client and the user pty, in order
        q = self._input
        while True:
            data = await q.get()
            if data is None:
                return
            try:
                await self._client_input(data)
            except Exception:
                log.exception("%s: REPL input", self.board.name)

    # -- the REPL port and the user pty
    async def open(self) -> None:
        loop = self.board.sup.loop
        self._input = asyncio.Queue()
        loop.create_task(self._input_worker())
        self.server = await asyncio.start_server(self._client_conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        try:
            m, s = pty.openpty()
            tty.setraw(s)
            os.set_blocking(m, False)
            self.upty_master, self.upty_slave = m, s
            self.pty_path = os.ttyname(s)
            loop.add_reader(m, self._on_upty)
        except OSError:
            self.pty_path = None

    def _on_upty(self) -> None:
        try:
            data = os.read(self.upty_master, 4096)
        except OSError:
            return
        if data:
            self._input.put_nowait(data)

    async def _client_conn(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        if self.client is not None:
            self.client.close()
        t = writer.transport
        self.client = t
        try:
            for _ in range(1 << 30):
                data = await reader.read(65536)
                if not data:
                    break
                self._input.put_nowait(data)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            if self.client is t:
                self.client = None
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.client is not None:
            self.client.close()
        if self._input is not None:
            self._input.put_nowait(None)
        if self.upty_master is not None:
            self.board.sup.loop.remove_reader(self.upty_master)
            os.close(self.upty_master)
            os.close(self.upty_slave)
            self.upty_master = None
