"""The tests' one way to wait for another process: poll a condition until it holds or a deadline
passes, then fail naming what was awaited and the last value seen.

    wait_until(lambda: board.output("dome"), 5, "the dome light on")            # sync code
    await async_wait_until(lambda: api.state(), 5, "the state")                 # async code

The predicate's first truthy result is returned. In async code the predicate may be a plain
function or return an awaitable (a coroutine function, or a lambda calling one).
"""
from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Awaitable, Callable, TypeVar

T = TypeVar("T")
INTERVAL_S = 0.05


class WaitTimeout(AssertionError):
    """A wait that ran out: an assertion failure of the test, naming what it waited for."""


def _timed_out(what: str, timeout: float, last: Any) -> WaitTimeout:
    shown = repr(last)
    if len(shown) > 500:
        shown = shown[:500] + "…"
    return WaitTimeout(f"timed out after {timeout:g} s waiting for {what} (last: {shown})")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = INTERVAL_S) -> T:
    """Call `predicate` every `interval` seconds until it returns something truthy (returned);
    after `timeout` seconds raise WaitTimeout naming `what`. The predicate is always called at
    least once, and once more at the deadline, so a slow poll still gets its last look."""
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timed_out(what, timeout, last)
        time.sleep(min(interval, remaining))


async def async_wait_until(predicate: Callable[[], T | Awaitable[T]], timeout: float, what: str,
                           interval: float = INTERVAL_S) -> T:
    """wait_until for asyncio code: the event loop keeps running between polls."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        last = predicate()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise _timed_out(what, timeout, last)
        await asyncio.sleep(min(interval, remaining))
