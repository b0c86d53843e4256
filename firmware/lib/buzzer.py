# Buzzer: IEC 60601-1-8 style bursts on a PWM output. High priority: 10 pulses (3 + 2, pause,
# 3 + 2) repeated every few seconds; medium: 3 pulses; low: 1 pulse. Three uses, most important
# first: the lamp test (steady tone), a chime asked for by the host (one burst), and the local
# alarm while the host is unreachable (bursts repeated until cleared).
from micropython import const
import time
import asyncio
from machine import Pin, PWM
import board
from nap import Nap
from wardproto import ALARM_HIGH, ALARM_MEDIUM, ALARM_LOW

_DUTY_ON = const(32768)
_STEP_MS = const(50)
_IDLE_MS = const(1000)    # silent: wake for chime(), alarm() or test(), else once a second

# per priority (index = ALARM_*): burst as on/off durations, tone in Hz, burst repeat in ms
_BURSTS = (
    (),
    (200, 0),                                                  # low: 1 pulse
    (150, 150, 150, 150, 150, 0),                              # medium: 3 pulses
    (100, 100, 100, 100, 100, 300, 100, 100, 100, 600,          # high: 3 + 2, pause,
     100, 100, 100, 100, 100, 300, 100, 100, 100, 0),          # 3 + 2
)
_FREQ = (0, 440, 660, 880)
_REPEAT_MS = (0, 15000, 3000, 3000)
_TEST_FREQ = const(1000)


class Buzzer:
    def __init__(self):
        self._pwm = PWM(Pin(board.BUZZER), freq=_FREQ[ALARM_LOW], duty_u16=0)
        self.on = 0
        self._alarm = 0          # priority of the repeating local alarm, 0 = none
        self._chime = 0          # priority of one pending chime burst
        self._test_until = None  # ticks when the lamp-test tone ends
        self._gen = 0            # bumped by silence(): stops a burst in progress
        self._next_alarm = time.ticks_ms()
        self.bursts = 0          # bursts played (diagnostics, tests)
        self._nap = Nap()        # the idle sleep: chime(), alarm(), test() end it

    def alarm(self, prio):
        if prio != self._alarm:
            if prio > self._alarm:
                self._next_alarm = time.ticks_ms()    # a more urgent call sounds at once
            self._alarm = prio
            self._nap.wake()

    def chime(self, prio):
        if ALARM_LOW <= prio <= ALARM_HIGH:
            self._chime = prio
            self._nap.wake()

    def silence(self):
        self._chime = 0
        self._gen += 1

    def test(self, ms):
        self._test_until = time.ticks_add(time.ticks_ms(), ms)
        self._nap.wake()

    def _tone(self, freq):
        if freq:
            self._pwm.freq(freq)
            self._pwm.duty_u16(_DUTY_ON)
            self.on = 1
        else:
            self._pwm.duty_u16(0)
            self.on = 0

    async def _sleep(self, ms, alive):
        # in short steps, so that silence() and a lamp test are not kept waiting
        while ms > 0:
            d = ms if ms < _STEP_MS else _STEP_MS
            await asyncio.sleep_ms(d)
            alive()
            ms -= d

    async def _burst(self, prio, alive, gen):
        self.bursts += 1
        on = True
        for d in _BURSTS[prio]:
            if gen != self._gen or self._test_until is not None:
                break
            self._tone(_FREQ[prio] if on else 0)
            await self._sleep(d, alive)
            on = not on
        self._tone(0)

    async def run(self, alive):
        while True:
            alive()
            now = time.ticks_ms()
            if self._test_until is not None:
                if time.ticks_diff(self._test_until, now) > 0:
                    if not self.on:
                        self._tone(_TEST_FREQ)
                    await asyncio.sleep_ms(_STEP_MS)
                    continue
                self._test_until = None
                self._tone(0)
            if self._chime:
                prio = self._chime
                self._chime = 0
                await self._burst(prio, alive, self._gen)
                continue
            if self._alarm and time.ticks_diff(now, self._next_alarm) >= 0:
                prio = self._alarm
                self._next_alarm = time.ticks_add(now, _REPEAT_MS[prio])
                await self._burst(prio, alive, self._gen)
                continue
            await self._idle(now)

    async def _idle(self, now):
        # nothing to play: sleep until chime(), alarm() or test(), or the repeating alarm's next
        # burst, at most _IDLE_MS (the supervisor hears from this task every turn). It was a
        # 50 ms poll: the most frequent wake-up of an idle terminal.
        ms = _IDLE_MS
        if self._alarm:
            due = time.ticks_diff(self._next_alarm, now)
            if due < ms:
                ms = due if due > 0 else 0
        if not ms:
            return
        await self._nap.sleep_ms(ms)
