#!/usr/bin/env python3
"""Emulated ESP32 fleet supervisor: one CPython asyncio process for a whole fleet of boards.

Each board is a real MicroPython unix-port interpreter on its own pty, with its flash folder as
cwd and the shims (machine, network, socket, time) on its module path. This module starts the
supervisor's three listeners on loopback and wires them to the boards:

  control.py        control channel (TCP, JSON lines): the ops behind fleet.py
  shim_channel.py   one UDP socket to the shims of every board
  radio.py          radio proxy (TCP) for every board connection: Wi-Fi cut, fault injection
  emulated_board.py one board, made of:
    board_process.py  its interpreter on a pty: start, kill, resets, power
    repl.py           console, REPL TCP port and user pty (mpremote), Ctrl-C, raw REPL
    gpio.py           input contacts and outputs with history (pin names from board.py)
    wifi.py           radio link and ESP32 station
    watchdog.py       the supervisor's copy of machine.WDT
  notifier.py       lets ops wait for a change without polling

Run: python boards/emulator/fleet_server.py --workdir DIR [--port 0]; prints "READY <port>".
Normally started by boards.emulator.fleet.Fleet.start().
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Optional

if not __package__:
    # run as a script (as fleet.py does): import the sibling modules as the package they are
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from boards.emulator.board_process import find_micropython  # noqa: E402
from boards.emulator.control import ControlChannel  # noqa: E402
from boards.emulator.emulated_board import Board  # noqa: E402
from boards.emulator.radio import start_radio_proxy  # noqa: E402
from boards.emulator.shim_channel import ShimChannel  # noqa: E402


class FleetServer:
    def __init__(self, micropython: Optional[str] = None) -> None:
        self.boards: dict[str, Board] = {}
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.shim = ShimChannel(self.boards)
        self.control = ControlChannel(self)
        self.udp_port: Optional[int] = None
        self.proxy: Optional[asyncio.Server] = None
        self.proxy_port: Optional[int] = None
        self.ctrl: Optional[asyncio.Server] = None
        self.ctrl_port: Optional[int] = None
        self.stopping = asyncio.Event()
        self.mp_cmd = find_micropython(micropython)
        # the boards' environment: ours without the variables the supervisor sets for them
        self.base_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("WC_", "MICROPY"))
        }

    async def start(self, port: int = 0) -> None:
        self.loop = asyncio.get_running_loop()
        self.udp_port = await self.shim.start()
        self.proxy = await start_radio_proxy(self.boards)
        self.proxy_port = self.proxy.sockets[0].getsockname()[1]
        self.ctrl = await self.control.start(port)
        self.ctrl_port = self.ctrl.sockets[0].getsockname()[1]

    async def shutdown(self) -> None:
        for b in list(self.boards.values()):
            b.process.remove()
            b.repl.close()
        # wait (bounded) for the interpreters to be reaped
        deadline = self.loop.time() + 5
        while any(b.process.proc is not None for b in self.boards.values()):
            if self.loop.time() > deadline:
                break
            await asyncio.sleep(0.02)  # bounded poll for process exits
        self.stopping.set()


async def amain(args: argparse.Namespace) -> None:
    sup = FleetServer(args.micropython)
    await sup.start(args.port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: loop.create_task(sup.shutdown()))
    if args.watch_stdin:
        # die with the process that started us: it holds our stdin open
        def on_stdin() -> None:
            try:
                d = os.read(0, 4096)
            except OSError:
                d = b""
            if not d:
                loop.remove_reader(0)
                loop.create_task(sup.shutdown())

        loop.add_reader(0, on_stdin)
    sys.stdout.write(f"READY {sup.ctrl_port}\n")
    sys.stdout.flush()
    await sup.stopping.wait()


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # --workdir: kept for the command line; fleet.py also runs us with it as cwd
    ap.add_argument("--workdir", default=".")
    ap.add_argument("--port", type=int, default=0, help="control port (0: any free port)")
    ap.add_argument("--micropython", default=None, help="interpreter command")
    ap.add_argument("--watch-stdin", action="store_true", help="shut down on stdin EOF")
    ap.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(
        filename=args.log,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
