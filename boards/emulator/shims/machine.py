# Emulated ESP32 board: `machine`. Inputs are contacts to GND that the supervisor opens and
# closes (buttons, cord); their level follows the configured pull. Outputs (Pin, Signal, PWM) are
# reported to the supervisor, which keeps a timestamped history. IRQs are delivered when a shim
# call (Pin.value, time.ticks_ms, sleeps, socket ops; asyncio calls ticks_ms on every loop
# iteration) services the channel, not asynchronously.
import _emu

if _emu.ros.getenv("WC_BADGE"):  # "cs,rst": a virtual MFRC522 on the SPI bus (imported before
    import _emu_mfrc522  # the runner mounts the flash at /: the shims' folder is gone then)

    def _badge():
        cs, rst = [int(x) for x in _emu.ros.getenv("WC_BADGE").split(",")]
        chip = _emu_mfrc522.Chip()
        old = _emu.pins.get(rst)
        chip.powered = old is None or old._mode is None or bool(old._out)
        _emu.hooks[cs] = chip.cs
        _emu.hooks[rst] = chip.rst
        _emu.badge = chip
        _emu.badge_state(_emu._badge_state)

    _badge()
    del _badge
_service = _emu.service
_send = _emu.send
_rus = _emu.rtime.ticks_us

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
WLAN_WAKE = 5
PIN_WAKE = 2
EXT0_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4
TOUCHPAD_WAKE = 5
ULP_WAKE = 6
SLEEP = 2
DEEPSLEEP = 4

_freq = 160000000


def freq(hz=None):
    global _freq
    if hz is None:
        return _freq
    _freq = hz


def reset():
    _emu.reset_now("hard")


def soft_reset():
    _emu.reset_now("soft")


def deepsleep(ms=0):
    _emu.reset_now("deepsleep", ms)


def lightsleep(ms=0):
    if ms:
        import time

        time.sleep_ms(ms)


def bootloader():
    _emu.reset_now("hard")


def reset_cause():
    return _emu.CAUSE


def wake_reason():
    return DEEPSLEEP_RESET if _emu.CAUSE == DEEPSLEEP_RESET else 0


def unique_id():
    # the board's own id (6 bytes unless the test chose another), the same after every reset
    return _emu.UID_BYTES


def idle():
    _emu.rtime.sleep_ms(1)
    _service()


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


def time_pulse_us(pin, level, timeout_us=1000000):
    return -1


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    PULL_HOLD = 4
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        if not isinstance(id, int):
            raise ValueError("invalid pin")
        self._id = id
        self._mode = None
        self._pull = None
        self._out = 0
        self._handler = None
        self._trigger = 0
        old = _emu.pins.get(id)
        if old is not None:  # same GPIO configured again: keep its state
            self._mode = old._mode
            self._pull = old._pull
            self._out = old._out
            self._handler = old._handler
            self._trigger = old._trigger
        _emu.pins[id] = self
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        if pull != -1:
            self._pull = pull
        if value is not None:
            self._out = 1 if value else 0
        if mode != -1 and mode is not None:
            self._mode = mode
            if mode != Pin.IN:
                self._report()
        elif value is not None and self._mode not in (None, Pin.IN):
            self._report()

    def _report(self):
        h = _emu.hooks.get(self._id)
        if h is not None:  # an emulated chip's pin: the chip sees it, the supervisor does not
            h(self._out)
            return
        _send("O %d %d %d" % (self._id, self._out, _rus()))

    def value_now(self):
        m = self._mode
        if m == Pin.OUT:
            return self._out
        if m == Pin.OPEN_DRAIN and not self._out:
            return 0
        if _emu.closed.get(self._id):
            return 0
        if self._pull == Pin.PULL_UP or m == Pin.OPEN_DRAIN:
            return 1
        return 0  # open contact without pull-up: reads low

    def value(self, x=None):
        if x is None:
            _service()
            if self._id in _emu.watch:
                _emu.read(self._id)
            return self.value_now()
        v = 1 if x else 0
        if v != self._out or self._mode is None:
            self._out = v
            if self._mode is not None and self._mode != Pin.IN:
                self._report()
        self._out = v

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3, *, priority=1, wake=None, hard=False):
        self._handler = handler
        self._trigger = trigger
        return self

    def _edge(self, old):
        h = self._handler
        if h is None or old is None:
            return
        new = self.value_now()
        if new == old:
            return
        if (new and self._trigger & Pin.IRQ_RISING) or (
            not new and self._trigger & Pin.IRQ_FALLING
        ):
            try:
                h(self)
            except Exception as e:
                import sys

                sys.print_exception(e)

    def mode(self, m=None):
        if m is None:
            return self._mode
        self.init(m)

    def pull(self, p=None):
        if p is None:
            return self._pull
        self._pull = p

    def __repr__(self):
        return "Pin(%d)" % self._id


class SPI:
    # The board's SPI bus: bytes go to the emulated chip whose CS pin is low (the virtual
    # MFRC522 of a board with a badge reader); with none selected MISO reads 0xFF.
    MSB = 0
    LSB = 1

    def __init__(self, id=1, baudrate=1000000, *, polarity=0, phase=0, bits=8, firstbit=0,
                 sck=None, mosi=None, miso=None):
        if id not in (1, 2):
            raise ValueError("SPI(%s) doesn't exist" % (id,))
        self._id = id
        self.init(baudrate=baudrate, polarity=polarity, phase=phase, bits=bits, firstbit=firstbit)

    def init(self, baudrate=1000000, *, polarity=0, phase=0, bits=8, firstbit=0, sck=None,
             mosi=None, miso=None):
        self._baud = baudrate
        self._mode = (polarity, phase)

    def deinit(self):
        pass

    def _x(self, b):
        c = _emu.badge
        if c is not None and c.selected:
            return c.xfer(b)
        return 0xFF

    def write(self, buf):
        for b in buf:
            self._x(b)

    def read(self, n, write=0):
        return bytes(self._x(write) for _ in range(n))

    def readinto(self, buf, write=0):
        for i in range(len(buf)):
            buf[i] = self._x(write)

    def write_readinto(self, wbuf, rbuf):
        for i in range(len(wbuf)):
            rbuf[i] = self._x(wbuf[i])


class Signal:
    def __init__(self, pin, *args, invert=False, **kw):
        if not isinstance(pin, Pin):
            pin = Pin(pin, *args, **kw)
        self._pin = pin
        self._inv = 1 if invert else 0

    def value(self, x=None):
        if x is None:
            return self._pin.value() ^ self._inv
        self._pin.value((1 if x else 0) ^ self._inv)

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class PWM:
    def __init__(self, dest, *, freq=None, duty=None, duty_u16=None, duty_ns=None, invert=False):
        self._pin = dest if isinstance(dest, Pin) else Pin(dest, Pin.OUT)
        self._freq = 5000
        self._duty = 32768
        self._on = True
        self.init(freq=freq, duty=duty, duty_u16=duty_u16, duty_ns=duty_ns)

    def init(self, *, freq=None, duty=None, duty_u16=None, duty_ns=None, invert=False):
        if freq is not None:
            self._freq = int(freq)
        if duty is not None:
            self._duty = min(65535, int(duty) * 64 + (int(duty) >> 4))
        if duty_u16 is not None:
            self._duty = int(duty_u16)
        if duty_ns is not None:
            self._duty = min(65535, int(duty_ns * self._freq * 65535 // 1000000000))
        self._on = True
        self._report()

    def _report(self):
        d = self._duty if self._on else 0
        f = self._freq if self._on else 0
        _send("P %d %d %d %d" % (self._pin._id, f, d, _rus()))

    def freq(self, f=None):
        if f is None:
            return self._freq
        self._freq = int(f)
        self._report()

    def duty(self, d=None):
        if d is None:
            return self._duty >> 6
        self._duty = min(65535, int(d) * 64 + (int(d) >> 4))
        self._report()

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        self._duty = int(d)
        self._report()

    def duty_ns(self, ns=None):
        if ns is None:
            return self._duty * 1000000000 // (65535 * self._freq)
        self._duty = min(65535, int(ns * self._freq * 65535 // 1000000000))
        self._report()

    def deinit(self):
        self._on = False
        self._report()


class WDT:
    # Resets the board (machine.reset_cause() == WDT_RESET) unless fed within timeout ms.
    # Checked on every shim call; the supervisor also enforces it (busy loops, blocking calls).
    def __init__(self, id=0, timeout=5000):
        if timeout < 1:
            raise ValueError
        _emu.start_wdt(int(timeout))

    def feed(self):
        _emu.feed()


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, *args, **kw):
        self._id = id
        self._cb = None
        self._due = 0
        self._period = 0
        self._mode = 0
        if args or kw:
            self.init(*args, **kw)

    def init(self, *, mode=1, period=-1, freq=-1, callback=None, tick_hz=1000):
        if freq > 0:
            period = 1000 // freq
        self._period = max(1, int(period))
        self._mode = mode
        self._cb = callback
        self._due = _emu.rtime.ticks_ms() + self._period
        if self not in _emu.timers:
            _emu.timers.append(self)

    def deinit(self):
        if self in _emu.timers:
            _emu.timers.remove(self)

    def _check(self, now):
        if now - self._due >= 0:
            if self._mode == Timer.PERIODIC:
                self._due += self._period
                if now - self._due > 0:
                    self._due = now + self._period
            else:
                self.deinit()
            cb = self._cb
            if cb is not None:
                cb(self)

    def value(self):
        return max(0, self._due - _emu.rtime.ticks_ms())


class RTC:
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


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 3

    def __init__(self, pin, *, atten=None):
        self._pin = pin

    def read_u16(self):
        return 0

    def read(self):
        return 0

    def read_uv(self):
        return 0

    def atten(self, a):
        pass

    def width(self, w):
        pass
