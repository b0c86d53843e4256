"""The supervisor's copy of a board's machine.WDT.

The shim checks the watchdog in-process on every shim call (precise) and forwards feeds here
(at most one datagram per 100 ms), so that a program stuck in a busy loop or a blocking call
without shim calls is still reset, 150-250 ms after the deadline.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, Optional

log = logging.getLogger("emulator")

SLACK_S = 0.15  # covers the shim's rate limit on forwarded feeds


class Watchdog:
    def __init__(self, board_name: str, on_expire: Callable[[], None]) -> None:
        self.board_name = board_name
        self.on_expire = on_expire
        self.ms = 0  # timeout; 0 = not started
        self._due = 0.0
        self._handle: Optional[asyncio.TimerHandle] = None

    def start(self, ms: int) -> None:
        self.ms = ms
        self.feed()

    def feed(self) -> None:
        if not self.ms:
            return
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self.ms / 1000 + SLACK_S
        if self._handle is None:
            self._handle = loop.call_at(self._due, self._check)

    def _check(self) -> None:
        self._handle = None
        if not self.ms:
            return
        loop = asyncio.get_running_loop()
        if loop.time() >= self._due:
            log.info("%s: watchdog expired", self.board_name)
            self.on_expire()
        else:
            self._handle = loop.call_at(self._due, self._check)

    def stop(self) -> None:
        self.ms = 0
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
