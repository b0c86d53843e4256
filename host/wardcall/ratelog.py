"""Log lines that a flood cannot multiply: at most one line per key and period, and the next
line says how many were held back. Bad input from the network (forged ids, wrong keys,
malformed frames, guessed passwords) is logged through this. Also the one log format of the
host's commands (`setup_logging`)."""
from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter
from typing import Any, Callable

from .log_output import UnblockingStreamHandler

PERIOD_S = 10.0
MAX_KEYS = 4096          # keys remembered; the oldest are forgotten first


def setup_logging(level: str) -> None:
    """A command's log on stderr, one format for serve, standby and hospital; a stderr that
    does not take it does not hold the command up (log_output.py)."""
    handler = UnblockingStreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
    logging.captureWarnings(True)       # a library's warning goes the same way, not straight to stderr


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, period_s: float = PERIOD_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.period_s = period_s
        self.clock = clock
        self._last: dict[Any, list[float | int]] = {}     # key -> [time of the last line, held back since]

    def log(self, level: int, key: Any, msg: str, *args: Any) -> bool:
        """Log unless a line with this key was logged within the period; True if it was logged."""
        now = self.clock()
        entry = self._last.get(key)
        if entry is not None and now - entry[0] < self.period_s:
            entry[1] += 1
            return False
        held = int(entry[1]) if entry is not None else 0
        self._last.pop(key, None)
        self._last[key] = [now, 0]
        if len(self._last) > MAX_KEYS:
            del self._last[next(iter(self._last))]
        if held:
            msg += " (and %d more like it in the last %.0f s)"
            args = (*args, held, now - float(entry[0]))    # type: ignore[index]
        self.logger.log(level, msg, *args)
        return True

    def warning(self, key: Any, msg: str, *args: Any) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def info(self, key: Any, msg: str, *args: Any) -> bool:
        return self.log(logging.INFO, key, msg, *args)


BURST = 50      # lines of one kind logged one by one in a period before the rest are counted


class BurstLog:
    """Lines of one kind that a whole ward causes at once (every terminal connecting after a
    restart or a switch coming back): each is logged as it comes, up to `burst` in a period; the
    rest are counted, by reason, and said in one line when the period ends. 5,000 lines in a
    few seconds would cost the event loop a second and bury what else the log says; each of
    those events is in the record all the same."""

    def __init__(self, logger: logging.Logger, what: str, loop: asyncio.AbstractEventLoop, burst: int = BURST,
                 period_s: float = PERIOD_S) -> None:
        self.logger = logger
        self.loop = loop                # its clock, and the timer of the period's summary
        self.what = what                # "terminals connected": the summary line's subject
        self.burst = burst
        self.period_s = period_s
        self._since = -float("inf")     # the period's start
        self._logged = 0
        self._held: Counter[str] = Counter()
        self._summary: asyncio.TimerHandle | None = None

    def admit(self, reason: str = "") -> bool:
        """True: log this line now. False: it is counted and told in the period's summary."""
        now = self.loop.time()
        if now - self._since >= self.period_s:
            self._say_held()
            self._since, self._logged = now, 0
        if self._logged < self.burst:
            self._logged += 1
            return True
        self._held[reason] += 1
        if self._summary is None:
            self._summary = self.loop.call_later(max(0.0, self._since + self.period_s - now), self._say_held)
        return False

    def _say_held(self) -> None:
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None
        if not self._held:
            return
        count = sum(self._held.values())
        reasons = [f"{reason} ({n})" for reason, n in self._held.most_common(5) if reason]
        self._held.clear()
        self.logger.info("%d more %s within %g s, not logged one by one (the record has each)%s", count,
                         self.what, self.period_s, ": " + ", ".join(reasons) if reasons else "")
