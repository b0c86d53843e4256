# Emulated ESP32 board: `time` with the ESP32 tick period (2**30) for ticks_ms/ticks_us/ticks_cpu,
# ticks starting a configurable number of seconds before the wrap (WC_WRAP_S, default 20), and an
# integer time() as on the ESP32. Every call services the supervisor channel (IRQs, WDT, Timer).
import _emu

_rt = _emu.rtime
_service = _emu.service
_MASK = _emu.MASK
_HALF = _emu.HALF
_rms = _rt.ticks_ms
_rus = _rt.ticks_us
_OFF_MS = _emu.OFF_MS
_OFF_US = _emu.OFF_US

gmtime = _rt.gmtime
localtime = _rt.localtime
mktime = _rt.mktime
time_ns = _rt.time_ns


def time():
    _service()
    return int(_rt.time())


def ticks_ms():
    _service()
    return (_rms() + _OFF_MS) & _MASK


def ticks_us():
    _service()
    return (_rus() + _OFF_US) & _MASK


ticks_cpu = ticks_us


def ticks_add(ticks, delta):
    return (ticks + delta) & _MASK


def ticks_diff(end, start):
    return ((end - start + _HALF) & _MASK) - _HALF


def sleep_ms(ms):
    # sliced, so that IRQs, Timers and the WDT are serviced during long blocking sleeps
    ms = int(ms)
    t0 = _rms()
    for _ in range(ms // 5 + 2):
        left = ms - (_rms() - t0)
        if left <= 0:
            break
        _rt.sleep_ms(left if left < 5 else 5)
        _service()
    _service()


def sleep(s):
    sleep_ms(int(s * 1000))


def sleep_us(us):
    us = int(us)
    if us >= 10000:
        sleep_ms(us // 1000)
        us = us % 1000
    _rt.sleep_us(us)
    _service()
