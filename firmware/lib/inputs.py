# Debounced polling of every input in one task (after Peter Hinch's Pushbutton/Switch): at rest
# every input is read every _REST_MS; once one reads a new level they are read every _POLL_MS,
# and the level is accepted once it has been stable for _DEBOUNCE_MS, so a glitch shorter than
# that is ignored. A press is thus seen at most _REST_MS + _DEBOUNCE_MS after it began, and an
# idle terminal wakes for its inputs half as often as at a steady _POLL_MS. Inputs are active
# low with the internal pull-up.
# The handler gets (event, input) synchronously from the poll loop: PRESS, RELEASE, and HOLD
# once after _HOLD_MS of continuous press (buttons only). No allocation in the loop. The clock
# (ticks_ms) is a constructor argument, so a test can drive poll() in exact time.
from micropython import const
import time
import asyncio
from machine import Pin
import board

from log import exc

_POLL_MS = const(10)    # while a new level is being debounced
_REST_MS = const(20)    # while every input is at its accepted level
_DEBOUNCE_MS = const(30)
_HOLD_MS = const(2000)

# inputs, by index
CALL = const(0)
PRESENCE = const(1)
ASSIST = const(2)
CODE = const(3)
CORD_PULL = const(4)   # active = cord pulled
CORD_LOOP = const(5)   # active = cord plugged in and its loop intact
_COUNT = const(6)
NAMES = ("call", "presence", "assist", "code", "cord_pull", "cord_loop")

# events
PRESS = const(1)
RELEASE = const(2)
HOLD = const(3)


class Inputs:
    def __init__(self, handler, ticks_ms=time.ticks_ms):
        self.handler = handler
        self._ticks = ticks_ms
        self._pins = [Pin(p, Pin.IN, Pin.PULL_UP) for p in (
            board.CALL, board.PRESENCE, board.ASSIST, board.CODE, board.CORD_PULL, board.CORD_LOOP)]
        # the rest state: buttons released, cord plugged in and not pulled; a cord that is
        # unplugged at start-up is therefore reported like one unplugged later
        self.state = bytearray(_COUNT)
        self.state[CORD_LOOP] = 1
        self._raw = bytearray(self.state)
        self._held = bytearray(_COUNT)
        now = self._ticks()
        self._since = [now] * _COUNT
        self._down = [now] * _COUNT

    def active(self, i):
        return self.state[i]

    def _emit(self, ev, i):
        try:
            self.handler(ev, i)
        except Exception as e:  # noqa: BLE001 - one bad event must not stop the inputs
            exc("inputs", "handler failed for %s" % NAMES[i], e)

    def poll(self):
        """One look at every input; returns the ms to wait before the next (the task's step)."""
        now = self._ticks()
        wait = _REST_MS
        pins = self._pins
        raw = self._raw
        state = self.state
        for i in range(_COUNT):
            v = 1 - pins[i].value()
            if v != raw[i]:
                raw[i] = v
                self._since[i] = now
                if v != state[i]:
                    wait = _POLL_MS
            elif v != state[i]:
                if time.ticks_diff(now, self._since[i]) >= _DEBOUNCE_MS:
                    state[i] = v
                    if v:
                        self._down[i] = now
                        self._held[i] = 0
                        self._emit(PRESS, i)
                    else:
                        self._emit(RELEASE, i)
                else:
                    wait = _POLL_MS
            elif v and i < CORD_PULL and not self._held[i] and time.ticks_diff(now, self._down[i]) >= _HOLD_MS:
                self._held[i] = 1
                self._emit(HOLD, i)
        return wait

    async def run(self, alive):
        while True:
            wait = self.poll()
            alive()
            await asyncio.sleep_ms(wait)
