# Test double of the ESP32 machine module for unit tests under the unix micropython (not the
# emulator): pins are entries in a dict that the driver script reads and writes; every output
# change is recorded with its ticks_ms in `trace`.
import time

pins = {}       # pin number -> level (inputs: set by the test; outputs: set by the firmware)
trace = []      # (ticks_ms, pin, level) for output pins
resets = []
UID = b"\x24\x6f\x28\x10\x20\x30"   # unique_id(); a scenario may set another before the app starts
wdt = []        # fed ticks
PWM_LOG = []


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

    def value(self, v=None):
        if v is None:
            return pins.get(self.n, 1)
        if pins.get(self.n) != v:
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
