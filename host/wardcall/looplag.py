"""LoopProbe: how late the event loop runs, and how long the garbage collector holds it, as the
benchmarks see it (bench/bench_capacity.py reads it from /api/health).

A timer due every PERIOD_S notes how late it ran: a stall of the loop of L seconds makes the
probe late by at least L - PERIOD_S, so a maximum lateness under 5 ms means no stall over 10 ms.
Each collection's duration comes from gc.callbacks. The worst of each second is kept for
WINDOW_S. It runs only when asked for (`WARDCALL_LOOP_PROBE=1` in the host's environment): 200
wake-ups a second are for measuring, not for a ward.
"""
from __future__ import annotations

import asyncio
import gc
import os
import time
from collections import deque
from typing import Any

PERIOD_S = 0.005
WINDOW_S = 600
ENV = "WARDCALL_LOOP_PROBE"


class LoopProbe:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._seconds: deque[tuple[int, float, float]] = deque(maxlen=WINDOW_S)   # (second, lag max, gc max)
        self._gc_started = 0.0
        self._gc_pause = 0.0          # the longest collection since the probe last ran
        self._gc_worst: tuple[float, int] = (0.0, -1)   # the longest of all, and its generation
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        gc.callbacks.append(self._gc)
        self._due = self.loop.time() + PERIOD_S
        self._handle = self.loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._gc_started
            self._gc_pause = max(self._gc_pause, pause)
            if pause > self._gc_worst[0]:
                self._gc_worst = (pause, info["generation"])

    def _tick(self) -> None:
        now = self.loop.time()
        lag = max(0.0, now - self._due)
        second = int(time.time())
        if self._seconds and self._seconds[-1][0] == second:
            _, worst, gc_worst = self._seconds[-1]
            self._seconds[-1] = (second, max(worst, lag), max(gc_worst, self._gc_pause))
        else:
            self._seconds.append((second, lag, self._gc_pause))
        self._gc_pause = 0.0
        self._due = max(self._due + PERIOD_S, now)
        self._handle = self.loop.call_at(self._due, self._tick)

    def view(self, seconds: float) -> dict[str, Any]:
        """The worst lateness and collection of the last `seconds` (wall clock), in ms."""
        since = time.time() - seconds
        recent = [s for s in self._seconds if s[0] >= since]
        return {"window_s": seconds, "probe_period_ms": PERIOD_S * 1000,
                "lag_max_ms": round(max((s[1] for s in recent), default=0.0) * 1000, 2),
                "gc_pause_max_ms": round(max((s[2] for s in recent), default=0.0) * 1000, 2),
                "gc_collections": [g["collections"] for g in gc.get_stats()],
                "gc_pause_worst_ms": round(self._gc_worst[0] * 1000, 2), "gc_pause_worst_generation": self._gc_worst[1], "gc_frozen": gc.get_freeze_count()}


def start_if_asked(loop: asyncio.AbstractEventLoop) -> LoopProbe | None:
    if os.environ.get(ENV) != "1":
        return None
    probe = LoopProbe(loop)
    probe.start()
    return probe
