"""LoginGuard: slows down password guessing without locking the ward out.

After a few failures an address must wait before it may try again, and the wait doubles with each
further failure (to a cap); the same for one user name tried from one address. A user whose name
is being guessed from one place can still log in from another: failures of a user across all
addresses only raise an alarm (past `alarm_failures` within the window), they never block.
A refused attempt costs no password hash, so a flood of guesses cannot load the host either.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

FREE_FAILURES = 3          # failures before waiting starts
FIRST_WAIT_S = 1.0
MAX_WAIT_S = 300.0
WINDOW_S = 900.0           # failures older than this are forgotten
MAX_TRACKED = 10_000       # addresses and (user, address) pairs remembered at most


@dataclass
class _Failures:
    times: list[float] = field(default_factory=list)
    blocked_until: float = 0.0


class LoginGuard:
    def __init__(self, alarm_failures: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self.alarm_failures = alarm_failures
        self.clock = clock
        self._by_address: dict[str, _Failures] = {}
        self._by_pair: dict[tuple[str, str], _Failures] = {}
        self._by_user: dict[str, list[float]] = {}

    def wait_s(self, user: str, address: str) -> float:
        """Seconds this attempt must still wait (0: it may try now)."""
        now = self.clock()
        waits = [f.blocked_until - now for f in (self._by_address.get(address), self._by_pair.get((user, address))) if f]
        return max([0.0, *waits])

    def failed(self, user: str, address: str) -> int:
        """Count a failure; returns the user's failures within the window (for the alarm)."""
        now = self.clock()
        self._count(self._by_address, address, now)
        self._count(self._by_pair, (user, address), now)
        recent = [t for t in self._by_user.get(user, []) if now - t < WINDOW_S] + [now]
        self._by_user[user] = recent[-1000:]
        self._forget(now)
        return len(recent)

    def succeeded(self, user: str, address: str) -> None:
        self._by_pair.pop((user, address), None)
        self._by_address.pop(address, None)

    def _count(self, table: dict, key: object, now: float) -> None:
        entry = table.setdefault(key, _Failures())
        entry.times = [t for t in entry.times if now - t < WINDOW_S] + [now]
        extra = len(entry.times) - FREE_FAILURES
        if extra >= 0:
            entry.blocked_until = now + min(MAX_WAIT_S, FIRST_WAIT_S * 2 ** min(extra, 20))

    def _forget(self, now: float) -> None:
        # bounded memory under a flood from many addresses: the oldest entries go first
        for table in (self._by_address, self._by_pair, self._by_user):
            if len(table) > MAX_TRACKED:
                for key in list(table)[: len(table) - MAX_TRACKED]:
                    del table[key]
