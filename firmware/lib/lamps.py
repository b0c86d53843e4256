# Lamp pattern engine. A pattern is a tuple of durations in ms, alternately on and off, starting
# with on, repeated; () is off; (x, 0) is steady on. set() switches a lamp at once (the
# reassurance lamp lights in the same call as the button event, before any network activity);
# the task then only times the edges, and sleeps between them (up to a second while nothing
# blinks; set(), notify() and override() wake it, so a new pattern's edges are on time). An
# override (identify, lamp test) drives every lamp. A notification (CMD_NOTIFY: a call routed to
# staff in this room) shows its pattern on the dome for a while, whenever the terminal's own
# calls leave the dome off: its own call wins.
# The call patterns are wardproto's (PATTERN_*, the same table the host shows); the lamps'
# own states are here. The clock (ticks_ms) is a constructor argument, so a test can drive it.
from micropython import const
import time
from machine import Pin
import board
from nap import Nap
from wardproto import PATTERN_NORMAL

# lamps, by index
REASSURE = const(0)
PRESENCE = const(1)
DOME = const(2)
_COUNT = const(3)

OFF = ()
STEADY = PATTERN_NORMAL        # steady on: presence, lamp test (a normal call's pattern too)
ACKNOWLEDGED = (1800, 200)     # call acknowledged at the console: on, with a short dip every 2 s
OFFLINE = (100, 2900)          # host unreachable, no call: a short blip every 3 s
NOT_CONFIGURED = (100, 150, 100, 650)   # double blink every second
IDENTIFY = (150, 150)          # CMD_IDENTIFY, on every lamp
_MAX_SLEEP_MS = const(1000)   # the supervisor hears from the task at least this often
_REBASE_MS = const(600000)      # keep ticks_diff arguments far from the wrap


class Lamps:
    def __init__(self, ticks_ms=time.ticks_ms):
        self._ticks = ticks_ms
        pins = (board.LAMP_REASSURE, board.LAMP_PRESENCE, board.DOME)
        self._pins = [Pin(p, Pin.OUT, value=0) if p >= 0 else None for p in pins]
        self.has_dome = pins[DOME] >= 0
        self._pat = [OFF] * _COUNT
        now = self._ticks()
        self._t0 = [now] * _COUNT
        self.level = bytearray(_COUNT)
        self._ovr = None
        self._ovr_t0 = now
        self._ovr_until = now
        self._note = None           # CMD_NOTIFY: a pattern for the dome while no call of ours shows
        self._note_t0 = now
        self._note_until = now
        self._wait = 0
        self._nap = Nap()

    def pattern(self, lamp):
        return self._pat[lamp]

    def set(self, lamp, pat):
        if self._pat[lamp] is pat:
            return
        self._pat[lamp] = pat
        self._nap.wake()
        now = self._ticks()
        self._t0[lamp] = now
        if self._ovr is None:
            if lamp == DOME and not pat and self._noting(now):
                self._write(lamp, self._eval(self._note, time.ticks_diff(now, self._note_t0)))
            else:
                self._write(lamp, self._eval(pat, 0))

    def notify(self, pat, ms):
        """Show pat on the dome for ms (CMD_NOTIFY) while the terminal's own calls leave it off;
        a newer one replaces it; pat None (or ms 0) ends it."""
        now = self._ticks()
        self._nap.wake()
        if pat is None or ms <= 0:
            self._note = None
        else:
            self._note = pat
            self._note_t0 = now
            self._note_until = time.ticks_add(now, ms)
        if self._ovr is None:
            own = self._pat[DOME]
            if not own and self._note is not None:
                self._write(DOME, self._eval(pat, 0))
            elif not own:
                self._write(DOME, 0)

    def notifying(self):
        """The notification's pattern while it lasts (shown or not), else None."""
        return self._note if self._noting(self._ticks()) else None

    def _noting(self, now):
        if self._note is not None and time.ticks_diff(self._note_until, now) <= 0:
            self._note = None
        return self._note is not None

    def override(self, pat, ms):
        """Show pat on every lamp for ms (identify, lamp test); then the normal patterns."""
        now = self._ticks()
        self._nap.wake()
        self._ovr = pat
        self._ovr_t0 = now
        self._ovr_until = time.ticks_add(now, ms)
        for i in range(_COUNT):
            self._write(i, self._eval(pat, 0))

    def _write(self, lamp, v):
        if self.level[lamp] != v:
            self.level[lamp] = v
            p = self._pins[lamp]
            if p is not None:
                p.value(v)

    def _eval(self, pat, elapsed):
        # the level of pat elapsed ms after it started; sets self._wait to the next edge
        total = 0
        for d in pat:
            total += d
        if total == 0:
            self._wait = _MAX_SLEEP_MS
            return 0
        ph = elapsed % total
        on = 1
        for d in pat:
            if ph < d:
                self._wait = d - ph
                return on
            ph -= d
            on ^= 1
        self._wait = _MAX_SLEEP_MS
        return 0

    def _period(self, pat):
        total = 0
        for d in pat:
            total += d
        return total

    def step(self):
        """Drive every lamp for now; returns ms until the next edge (at most _MAX_SLEEP_MS)."""
        now = self._ticks()
        wait = _MAX_SLEEP_MS
        if self._ovr is not None:
            if time.ticks_diff(self._ovr_until, now) <= 0:
                self._ovr = None
            else:
                el = time.ticks_diff(now, self._ovr_t0)
                for i in range(_COUNT):
                    self._write(i, self._eval(self._ovr, el))
                w = self._wait
                left = time.ticks_diff(self._ovr_until, now)
                return w if w < left else left
        for i in range(_COUNT):
            pat = self._pat[i]
            if i == DOME and not pat and self._noting(now):
                self._write(i, self._eval(self._note, time.ticks_diff(now, self._note_t0)))
                left = time.ticks_diff(self._note_until, now)
                w = self._wait if self._wait < left else left
                if w < wait:
                    wait = w
                continue
            el = time.ticks_diff(now, self._t0[i])
            if el > _REBASE_MS:
                per = self._period(pat)
                if per:
                    self._t0[i] = time.ticks_add(self._t0[i], (el // per) * per)
                    el = time.ticks_diff(now, self._t0[i])
            self._write(i, self._eval(pat, el))
            if self._wait < wait:
                wait = self._wait
        return wait

    async def run(self, alive):
        while True:
            wait = self.step()
            alive()
            await self._nap.sleep_ms(wait if wait > 0 else 1)
