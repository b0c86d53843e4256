"""TurnGate: a burst of the same work spread over turns of the event loop.

When every terminal reconnects at once (the host restarted, a switch came back), thousands of
sessions end and thousands of HELLOs arrive within one turn of the loop. asyncio runs every
task that is ready in one turn, so the turn that ran them all held the loop for as long as
the whole herd took, and a call from a terminal that stayed online waited behind it. A session
passes the gate before its handshake and before its end is recorded: about `per_turn` go on in
one turn (those let through at its start and those that found the gate free), the others wait
for the next turns in the order they came, and what arrived meanwhile (a CALL) is read in
between.
"""
from __future__ import annotations

import asyncio
from collections import deque


class TurnGate:
    PER_TURN = 32       # as SessionTimers.TURN_MAX: a turn stays a few ms where the herd took hundreds

    def __init__(self, loop: asyncio.AbstractEventLoop, per_turn: int = PER_TURN) -> None:
        self.loop = loop
        self.per_turn = per_turn
        self._passed = 0                # in this turn
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._turn_ends = False         # the callback that starts the next turn's count is scheduled

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def take(self) -> None:
        """Return in this turn if its share is not used up and nobody waits, else in a later one."""
        if self._passed < self.per_turn and not self._waiting:
            self._count()
            return
        waiter = self.loop.create_future()
        self._waiting.append(waiter)
        self._schedule()
        await waiter

    def _count(self) -> None:
        self._passed += 1
        self._schedule()

    def _schedule(self) -> None:
        if not self._turn_ends:
            self._turn_ends = True
            self.loop.call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._turn_ends = False
        self._passed = 0
        while self._waiting and self._passed < self.per_turn:
            waiter = self._waiting.popleft()
            if not waiter.done():       # (cancelled: its task has gone)
                waiter.set_result(None)
                self._count()       # (which schedules the next turn's count: the rest go then)
