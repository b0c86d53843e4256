# Emulated ESP32 board: the channel between the shims (machine, network, socket, time) and the
# supervisor. MicroPython only. Not part of the board's flash: it lives on the module path.
#
# One non-blocking UDP socket on loopback talks to the supervisor:
#   shim -> supervisor: short text datagrams "<kind> <args>" (cheap to build, no JSON on the hot path)
#   supervisor -> shim: JSON objects (input edges, Wi-Fi status, requests), drained by service()
# service() is called from every shim entry point (Pin.value, time.ticks_ms, sleeps, sockets, ...),
# at most once per millisecond: it drains the socket, delivers pin IRQs, runs machine.Timer
# callbacks and checks the watchdog.
import sys

_p = sys.path
sys.path = []
import time as rtime  # the builtin modules, whatever shims are on the path
import socket as rsocket
import select as rselect
import os as ros
import tls as rtls
sys.path = _p
del _p
import json

tls_type = None  # shims/_emu_tls.py TlsSocket, once imported (shims/select.py waits for it)

MASK = 0x3FFFFFFF  # ESP32 ticks period 2**30
HALF = 0x20000000


def _env(name, default):
    v = ros.getenv(name)
    return default if v is None or v == "" else v


NAME = _env("WC_BOARD", "standalone")
GEN = _env("WC_GEN", "0")
CAUSE = int(_env("WC_CAUSE", "1"))  # machine.PWRON_RESET
UID = _env("WC_UID", "0a0b0c0d0e0f")  # machine.unique_id() as hex, 1 to 32 bytes
UID_BYTES = bytes(int(UID[i : i + 2], 16) for i in range(0, len(UID) - 1, 2))
_sup_port = int(_env("WC_SUP", "0"))
PROXY_PORT = int(_env("WC_PROXY", "0"))
_boot_ms = int(_env("WC_BOOT_MS", str(rtime.ticks_ms())))
_wrap_s = int(_env("WC_WRAP_S", "20"))
# ticks = (native monotonic + offset) & MASK, so ticks_ms() starts _wrap_s seconds before the wrap
OFF_MS = (MASK + 1 - _wrap_s * 1000 - _boot_ms) & MASK
OFF_US = (MASK + 1 - _wrap_s * 1000000 - _boot_ms * 1000) & MASK

# state pushed by the supervisor
closed = {}  # pin number -> True while the contact to GND is closed (button pressed, ...)
watch = {}  # pin number -> [change number, settle ms, first read's ticks]: reported once read
sta = 1000  # network.STAT_IDLE
net_seq = 0  # the number of the last WLAN call sent to the supervisor
sta_active = False
ap_active = False
net = True  # radio link up and station connected: UDP passes
udp_loss = 0
ssid = ""

pins = {}  # pin number -> machine.Pin (the shim registers configured pins here)
hooks = {}  # pin number -> fn(level): a pin of an emulated chip (its CS, RST), not reported
badge = None  # the virtual MFRC522 (machine.py makes it if the board has a reader)
_badge_state = None  # the supervisor's last {"uids": [hex], "dead": None|0|255} for it
timers = []  # active machine.Timer objects
wdt_ms = 0
_wdt_due = 0
_wdt_sent = 0
_last = -1
_busy = False
_sock = None
_poller = None
drops = 0

_rms = rtime.ticks_ms
_rus = rtime.ticks_us


def send(s):
    global drops
    if _sock is None:
        return
    try:
        _sock.send(s)
    except OSError:
        drops += 1


def _apply(m):
    global sta, sta_active, ap_active, net, udp_loss, ssid
    k = m.get("k")
    if k == "in":
        p = m["p"]
        pin = pins.get(p)
        old = pin.value_now() if pin is not None else None
        closed[p] = bool(m["c"])
        if "n" in m:
            watch[p] = [m["n"], m["w"], None]
        else:
            watch.pop(p, None)
        if pin is not None:
            pin._edge(old)
    elif k == "st":
        for p in m["in"]:
            closed[int(p)] = bool(m["in"][p])
        badge_state(m.get("badge"))
        _net(m)
    elif k == "net":
        _net(m)
    elif k == "badge":
        badge_state(m)
    elif k == "mem":
        import gc
        send("M %d %d" % (gc.mem_free(), gc.mem_alloc()))
    elif k == "ack":
        return 1


def read(p):
    """The board's code read input p: once it has read a watched change at two reads the
    change's settle time apart, tell the supervisor (a test then knows a debounced loop took it)."""
    w = watch.get(p)
    if w is None:
        return
    now = _rms()
    if w[2] is None:
        w[2] = now
    elif rtime.ticks_diff(now, w[2]) >= w[1]:
        del watch[p]
        send("I %d %d" % (p, w[0]))


def badge_state(m):
    global _badge_state
    if m is None:
        return
    _badge_state = m
    if badge is not None:
        badge.set_cards([bytes(int(u[i : i + 2], 16) for i in range(0, len(u), 2)) for u in m["uids"]])
        badge.dead = m.get("dead")


def _net(m):
    global sta, sta_active, ap_active, net, udp_loss, ssid
    if m.get("q", net_seq) < net_seq:
        return  # sent before the newest WLAN call; the push that answers that call follows
    sta = m.get("sta", sta)
    sta_active = m.get("active", sta_active)
    ap_active = m.get("ap", ap_active)
    net = m.get("net", net)
    udp_loss = m.get("loss", udp_loss)
    ssid = m.get("ssid", ssid)


_rx = bytearray(4096)   # the supervisor's datagrams, read without allocating (each ends in "\n")
_rxv = memoryview(_rx)


def _messages():
    # every message the supervisor has sent: a socket's readinto here reads the queued
    # datagrams back to back (recv would allocate a 1500-byte buffer for each, and for the
    # empty read after them: a churn of the board's heap that a real ESP32 never has)
    try:
        n = _sock.readinto(_rx)
    except OSError:
        return
    if not n:
        return
    start = 0
    while start < n:
        end = _rx.find(b"\n", start, n)
        if end < 0:
            end = n         # a datagram cut by a full buffer: its JSON fails and it is dropped
        if end > start:
            try:
                yield json.loads(bytes(_rxv[start:end]))
            except ValueError:
                pass
        start = end + 1


def drain():
    # read everything the supervisor sent; returns 1 if an ack was among it
    r = 0
    if _sock is None:
        return r
    for m in _messages():
        if _apply(m):
            r = 1
    return r


def reset_now(kind, arg=0):
    # Ask the supervisor to kill and restart this interpreter. Never returns.
    send("R %s %d" % (kind, arg))
    for _ in range(300):  # the supervisor kills us well within 3 s
        rtime.sleep_ms(10)
    # no supervisor: exit with a reserved code instead
    sys.exit(
        {"hard": 101, "soft": 102, "wdt": 103, "deepsleep": 104}.get(kind, 101)
    )


def service():
    # called by every shim entry point; cheap unless a millisecond has passed
    global _last, _busy, _wdt_sent
    now = _rms()
    if now == _last or _busy:
        return
    _last = now
    _busy = True
    try:
        if _poller is not None:
            for _ in _poller.ipoll(0):
                drain()
                break
        if wdt_ms and now - _wdt_due > 0:
            reset_now("wdt")
        if timers:
            for t in timers:
                t._check(now)
    finally:
        _busy = False


def feed():
    global _wdt_due, _wdt_sent
    now = _rms()
    _wdt_due = now + wdt_ms
    if now - _wdt_sent >= 100:  # the supervisor's copy of the watchdog, rate limited
        _wdt_sent = now
        send("F")


def start_wdt(ms):
    global wdt_ms, _wdt_sent
    wdt_ms = ms
    _wdt_sent = _rms()
    send("W %d" % ms)
    feed()


def ticks_ms():
    return (_rms() + OFF_MS) & MASK


def ticks_us():
    return (_rus() + OFF_US) & MASK


def wait_ack(ms):
    # bounded wait for the supervisor's ack (used by the runner's "run" flag)
    if _sock is None:
        return
    t0 = _rms()
    while _rms() - t0 < ms:
        for _ in _poller.ipoll(20):
            break
        if drain():
            return


def _connect():
    global _sock, _poller
    if not _sup_port:
        return
    s = rsocket.socket(rsocket.AF_INET, rsocket.SOCK_DGRAM)
    s.connect(rsocket.getaddrinfo("127.0.0.1", _sup_port)[0][-1])
    s.setblocking(False)
    _sock = s
    _poller = rselect.poll()
    _poller.register(s, rselect.POLLIN)
    # hello; the supervisor answers with the full state ("st")
    for _ in range(20):
        send("H %s %s" % (NAME, GEN))
        for _ in _poller.ipoll(100):
            break
        got = 0
        for m in _messages():
            _apply(m)
            if m.get("k") == "st":
                got = 1
        if got:
            return


_connect()


# ---------------------------------------------------------------------------------------------
# asyncio: MicroPython's C _asyncio orders tasks with the native tick period (2**62 here). Make
# asyncio fall back to a pure-Python task queue that uses time.ticks_diff (our 2**30 period).
class _NoCAsyncio:
    pass


def use_python_asyncio():
    if "asyncio" in sys.modules:
        return
    import _emu_task

    sys.modules["_asyncio"] = _NoCAsyncio()
    sys.modules["asyncio.task"] = _emu_task
