# Test double of the ESP32 machine module for unit tests under the unix micropython (not the
# emulator): pins are entries in a dict that the driver script reads and writes; every output
# change is recorded with its ticks_ms in `trace`. The SPI bus carries the emulator's virtual
# MFRC522 (boards/emulator/shims/_emu_mfrc522.py) on the pins of board.BADGE: `chip()` is it.
import os
import sys
import time

pins = {}       # pin number -> level (inputs: set by the test; outputs: set by the firmware)
trace = []      # (ticks_ms, pin, level) for output pins
resets = []
UID = b"\x24\x6f\x28\x10\x20\x30"   # unique_id(); a scenario may set another before the app starts
wdt = []        # fed ticks
PWM_LOG = []
hooks = {}      # pin number -> fn(level): the virtual chip's CS and RST
_chip = None


def chip():
    """The virtual MFRC522 on the SPI bus (made with the first SPI, or now)."""
    global _chip
    if _chip is None:
        path = sys.path
        sys.path = [os.getenv("WC_EMU_SHIMS")]
        try:
            import _emu_mfrc522
        finally:
            sys.path = path
        import board
        _chip = _emu_mfrc522.Chip()
        spec = getattr(board, "BADGE", None)
        if spec:
            hooks[spec[4]] = _chip.cs
            hooks[spec[5]] = _chip.rst
    return _chip


class Pin:
    IN = 1
    OUT = 2
    PULL_UP = 1

    def __init__(self, n, mode=IN, pull=None, value=None):
        self.n = n
        self.mode = mode
        if mode == Pin.IN:
            pins.setdefault(n, 1)
        else:
            pins[n] = value if value is not None else 0
            h = hooks.get(n)
            if h is not None:
                h(pins[n])

    def value(self, v=None):
        if v is None:
            return pins.get(self.n, 1)
        h = hooks.get(self.n)
        if h is not None:
            h(v)
        elif pins.get(self.n) != v:
            trace.append((time.ticks_ms(), self.n, v))
        pins[self.n] = v


class PWM:
    def __init__(self, pin, freq=0, duty_u16=0):
        self.pin = pin
        self._f = freq
        self._d = duty_u16

    def freq(self, f=None):
        if f is None:
            return self._f
        self._f = f

    def duty_u16(self, d=None):
        if d is None:
            return self._d
        if d != self._d:
            PWM_LOG.append((time.ticks_ms(), self._f, d))
        self._d = d


class SPI:
    def __init__(self, id, baudrate=1000000, polarity=0, phase=0, sck=None, mosi=None, miso=None):
        self.chip = chip()
        self.bytes = 0

    def _x(self, b):
        self.bytes += 1
        c = self.chip
        return c.xfer(b) if c.selected else 0xFF

    def write(self, buf):
        for b in buf:
            self._x(b)

    def write_readinto(self, wbuf, rbuf):
        for i in range(len(wbuf)):
            rbuf[i] = self._x(wbuf[i])


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout

    def feed(self):
        wdt.append(time.ticks_ms())


def reset():
    # a reset ends the program, as on the board; the test sees this line
    resets.append(time.ticks_ms())
    print("MACHINE RESET")
    raise SystemExit(0)


def unique_id():
    return UID


def idle():
    pass


class RTC:
    """The clock mbedTLS checks certificates against: the host machine's here, as on the
    emulator (its unix port reads the system clock; setting it is a no-op)."""

    def __init__(self, id=0):
        pass

    def datetime(self, dt=None):
        import time

        if dt is not None:
            return
        t = time.localtime()
        return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)

    def init(self, dt=None):
        pass
