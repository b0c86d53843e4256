# Debounced polling of every input in one task (after Peter Hinch's Pushbutton/Switch): each
# input is read every _POLL_MS; a new level is accepted once it has been stable for _DEBOUNCE_MS,
# so a glitch shorter than that is ignored. Inputs are active low with the internal pull-up.
# The handler gets (event, input) synchronously from the poll loop: PRESS, RELEASE, and HOLD
# once after _HOLD_MS of continuous press (buttons only). No allocation in the loop. The clock
# (ticks_ms) is a constructor argument, so a test can drive poll() in exact time.
from micropython import const
import time
import asyncio
from machine import Pin
import board

from log import exc

_POLL_MS = const(10)
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
        now = self._ticks()
        pins = self._pins
        raw = self._raw
        state = self.state
        for i in range(_COUNT):
            v = 1 - pins[i].value()
            if v != raw[i]:
                raw[i] = v
                self._since[i] = now
            elif v != state[i]:
                if time.ticks_diff(now, self._since[i]) >= _DEBOUNCE_MS:
                    state[i] = v
                    if v:
                        self._down[i] = now
                        self._held[i] = 0
                        self._emit(PRESS, i)
                    else:
                        self._emit(RELEASE, i)
            elif v and i < CORD_PULL and not self._held[i] and time.ticks_diff(now, self._down[i]) >= _HOLD_MS:
                self._held[i] = 1
                self._emit(HOLD, i)

    async def run(self, alive):
        while True:
            self.poll()
            alive()
            await asyncio.sleep_ms(_POLL_MS)
