"""Notifier: lets control-channel ops wait in the supervisor (no polling by the client)."""
from __future__ import annotations

import asyncio
from typing import Callable


class Notifier:
    """Wake waiters whenever something changes; waiters re-check their own predicate."""

    def __init__(self) -> None:
        self._futs: set[asyncio.Future] = set()

    def notify(self) -> None:
        for f in self._futs:
            if not f.done():
                f.set_result(None)
        self._futs.clear()

    async def wait(self, pred: Callable[[], bool], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not pred():
            rem = deadline - loop.time()
            if rem <= 0:
                return False
            f = loop.create_future()
            self._futs.add(f)
            try:
                await asyncio.wait_for(f, rem)
            except asyncio.TimeoutError:
                pass
            finally:
                self._futs.discard(f)
        return True
