# The badge reader at the bedside (an MFRC522, mfrc522.py), polled in its own task. A card
# presented calls on_card(its UID in lower-case hex): presence toggles as with the button. The
# same card held on the reader does not toggle again until it has been away for _AWAY_MS; a
# card already on the reader when the reader starts (at boot, or back after an outage) is taken
# as held, so a reboot never toggles presence. A reader that stops answering is a device fault
# (on_fault, once per outage) and is set up again every _RETRY_MS until it answers.
# The idle poll (no card) allocates nothing.
from micropython import const
import time
import asyncio
from binascii import hexlify

from log import log
from mfrc522 import Mfrc522

_POLL_MS = const(100)
_AWAY_MS = const(1000)
_RETRY_MS = const(5000)
_BAUD = const(4000000)


def reader(spec, on_card, on_fault):
    """The board's reader; spec = board.BADGE: (SPI bus, SCK, MOSI, MISO, CS, RST or -1)."""
    from machine import Pin, SPI
    bus, sck, mosi, miso, cs, rst = spec
    cs = Pin(cs, Pin.OUT, value=1)          # deselected before the bus clocks anything
    rst = Pin(rst, Pin.OUT, value=1) if rst >= 0 else None
    spi = SPI(bus, baudrate=_BAUD, polarity=0, phase=0, sck=Pin(sck), mosi=Pin(mosi), miso=Pin(miso))
    return Badge(Mfrc522(spi, cs, rst), on_card, on_fault)


class Badge:
    def __init__(self, chip, on_card, on_fault, ticks_ms=time.ticks_ms):
        self.chip = chip
        self.on_card = on_card
        self.on_fault = on_fault
        self._ticks = ticks_ms
        self.ok = False             # the reader answers and is set up
        self._faulted = False       # this outage was reported
        self._retry = ticks_ms()
        self._uid = bytearray(10)
        self._last = bytearray(10)  # the card on the reader (seen within _AWAY_MS)
        self._last_n = 0
        self._seen = self._retry
        self._first = True          # the reader's first look: a card there is held, not presented
        self.cards = 0              # cards presented (diagnostics, tests)

    async def start(self):
        version = await self.chip.init()
        self._retry = time.ticks_add(self._ticks(), _RETRY_MS)
        if not version:
            self._lost("no answer from the MFRC522")
            return False
        log("badge", "reader ready (MFRC522 version 0x%02x)%s" % (version, " again" if self._faulted else ""))
        self.ok = True
        self._faulted = False
        self._first = True
        self._last_n = 0
        return True

    def _lost(self, why):
        self.ok = False
        if not self._faulted:
            self._faulted = True
            log("badge", "reader not answering (%s): retrying every %d s" % (why, _RETRY_MS // 1000))
            self.on_fault("badge reader not answering")

    async def poll(self):
        """One look at the reader (what the task does every _POLL_MS)."""
        r = self.chip.wake()
        if r:
            await self._answered(r)
        else:
            self._saw(0)

    async def _answered(self, r):
        # a card answered WUPA (r 1), or the chip did not answer at all (r -1)
        n = await self.chip.select(self._uid) if r > 0 else -1
        if n < 0:
            # a chip that lost its set-up (a brown-out) answers again at once; a dead one does not
            if not await self.start():
                return
            n = 0
        self._saw(n)

    def _saw(self, n):
        now = self._ticks()
        first = self._first
        self._first = False
        if not n:
            if self._last_n and time.ticks_diff(now, self._seen) >= _AWAY_MS:
                self._last_n = 0                # away long enough: presented again, it counts
            return
        uid = self._uid
        last = self._last
        same = n == self._last_n
        if same:
            for i in range(n):
                if uid[i] != last[i]:
                    same = False
                    break
        self._seen = now
        if same:
            return
        for i in range(n):
            last[i] = uid[i]
        self._last_n = n
        if first:
            log("badge", "card %s on the reader at start: taken as held" % hexlify(bytes(uid[:n])).decode())
            return
        self.cards += 1
        self.on_card(hexlify(bytes(uid[:n])).decode())

    async def run(self, alive):
        if not self.ok:
            await self.start()
        chip = self.chip
        while True:
            if self.ok:
                r = chip.wake()             # the idle look, inlined: no coroutine allocated
                if r:
                    await self._answered(r)
                else:
                    self._saw(0)
            elif time.ticks_diff(self._ticks(), self._retry) >= 0:
                await self.start()
            alive()
            await asyncio.sleep_ms(_POLL_MS)
