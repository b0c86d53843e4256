# The supervisor: runs every task, restarts one that ends or fails (logged), and feeds the
# hardware watchdog (machine.WDT) only while every task has reported alive within its limit.
# A task that hangs, or keeps failing, stops the feeding and the watchdog resets the board.
from micropython import const
import time
import asyncio

from log import log, exc

_CHECK_MS = const(500)
_RESTART_WINDOW_MS = const(60000)
_MAX_RESTARTS = const(5)       # per task within _RESTART_WINDOW_MS; more: let the watchdog act


class Supervisor:
    def __init__(self, on_restart=None):
        self.names = []
        self._factories = []
        self._limits = []
        self._alive = []
        self._last = []
        self._dead = []
        self._tasks = []
        self._restarts = []
        self._first_restart = []
        self._ticks = []
        self.restarts = 0
        self.on_restart = on_restart    # on_restart(name): the application reports a device fault
        self.healthy = True
        self.wdt = None

    def add(self, name, factory, limit_ms):
        """factory(alive) is the coroutine; it must call alive() at least every limit_ms."""
        i = len(self.names)
        self.names.append(name)
        self._factories.append(factory)
        self._limits.append(limit_ms)
        self._alive.append(lambda: self._mark(i))
        self._last.append(time.ticks_ms())
        self._dead.append(False)
        self._tasks.append(None)
        self._restarts.append(0)
        self._first_restart.append(0)

    def every(self, fn):
        """fn() is called on every check (every _CHECK_MS)."""
        self._ticks.append(fn)

    def _mark(self, i):
        self._last[i] = time.ticks_ms()

    async def _guard(self, i):
        try:
            await self._factories[i](self._alive[i])
            log("sup", "task %s ended" % self.names[i])
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure: log it and let run() restart the task
            exc("sup", "task %s failed" % self.names[i], e)
        self._dead[i] = True

    def _start(self, i):
        self._last[i] = time.ticks_ms()
        self._dead[i] = False
        self._tasks[i] = asyncio.create_task(self._guard(i))

    def _check(self):
        now = time.ticks_ms()
        healthy = True
        for i in range(len(self.names)):
            if self._dead[i]:
                if self._restarts[i] == 0 or time.ticks_diff(now, self._first_restart[i]) > _RESTART_WINDOW_MS:
                    self._restarts[i] = 0
                    self._first_restart[i] = now
                self._restarts[i] += 1
                if self._restarts[i] > _MAX_RESTARTS:
                    log("sup", "task %s keeps failing: leaving it to the watchdog" % self.names[i])
                    healthy = False
                    continue
                log("sup", "restarting task %s" % self.names[i])
                self.restarts += 1
                self._start(i)
                if self.on_restart:
                    self.on_restart(self.names[i])
            elif time.ticks_diff(now, self._last[i]) > self._limits[i]:
                if self.healthy:
                    log("sup", "task %s silent for %d ms: watchdog not fed" % (
                        self.names[i], time.ticks_diff(now, self._last[i])))
                healthy = False
        self.healthy = healthy
        return healthy

    async def run(self, wdt_ms):
        if wdt_ms:
            from machine import WDT
            self.wdt = WDT(timeout=wdt_ms)
        for i in range(len(self.names)):
            self._start(i)
        while True:
            await asyncio.sleep_ms(_CHECK_MS)
            if self._check() and self.wdt is not None:
                self.wdt.feed()
            for fn in self._ticks:
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 - a periodic job must not stop the supervisor
                    exc("sup", "periodic job failed", e)
