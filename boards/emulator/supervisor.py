#!/usr/bin/env python3
"""Emulated ESP32 fleet supervisor: one CPython asyncio process for a whole fleet of boards.

Each board is a real MicroPython unix-port interpreter (`micropython -X heapsize=... -i
shims/_emu_runner.py`) on its own pty, with cwd = the board's flash folder and the shims
(machine, network, socket, time) on its module path. The supervisor multiplexes, on loopback:

- a control channel (TCP, JSON lines): add/remove boards, inputs, outputs with history,
  Wi-Fi link, power, console, state; see `Supervisor.op_*` and boards/emulator/fleet.py;
- one UDP socket that talks to the shims of every board (inputs pushed, outputs reported,
  watchdog feeds, reset requests, Wi-Fi station commands);
- one TCP radio proxy through which every TCP connect of every board goes, so that a Wi-Fi cut
  stalls connections (the proxy stops reading both sides) and faults can be injected;
- one REPL TCP port per board (mpremote connect socket://127.0.0.1:PORT) and a pty per board,
  with ESP32-like soft reset (Ctrl-D), hard reset (machine.reset) and Ctrl-C (SIGINT while a
  program runs).

Run: python boards/emulator/supervisor.py --workdir DIR [--port 0]; prints "READY <port>".
Normally started by boards.emulator.fleet.Fleet.start().
"""
import argparse
import asyncio
import collections
import ctypes
import hashlib
import importlib.util
import json
import logging
import os
import pty
import runpy
import signal
import socket
import struct
import subprocess
import sys
import time
import tty
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHIMS = HERE / "shims"
RUNNER = SHIMS / "_emu_runner.py"

log = logging.getLogger("emulator")

# machine.reset_cause() values (ESP32 port)
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
# network.STAT_* (ESP32 port)
STAT_IDLE, STAT_CONNECTING, STAT_GOT_IP = 1000, 1001, 1010
STAT_NO_AP_FOUND, STAT_WRONG_PASSWORD = 201, 202

DEFAULT_HEAPSIZE = "120wK"  # see docs/EMULATOR.md, "Heap calibration"
HISTORY_MAX = 20000  # entries kept per output
CONSOLE_MAX = 1 << 20  # bytes of console kept per board
ROM_BANNER = {
    PWRON_RESET: b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    HARD_RESET: b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    SOFT_RESET: b"rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    WDT_RESET: b"rst:0x7 (TG0WDT_SYS_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    DEEPSLEEP_RESET: b"rst:0x5 (DEEPSLEEP_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
}


def load_pinmap():
    ns = runpy.run_path(str(HERE / "board.py"))
    return {k.lower(): v for k, v in ns.items() if k.isupper() and isinstance(v, int)}


PINS = load_pinmap()
PIN_NAMES = {v: k for k, v in PINS.items()}
INPUTS = ("call", "presence", "assist", "code", "cord_pull", "cord_loop")


def pin_number(name):
    if isinstance(name, int):
        return name
    n = str(name).lower()
    if n in PINS:
        return PINS[n]
    if n.startswith("gpio") and n[4:].isdigit():
        return int(n[4:])
    if n.isdigit():
        return int(n)
    raise KeyError(f"unknown pin {name!r}")


def pin_name(num):
    return PIN_NAMES.get(num, f"gpio{num}")


def _mono_ms():
    return int(time.monotonic() * 1000)


_libc = None


def _child_setup():
    # in the forked child: die with the supervisor
    try:
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Notifier:
    """Wake waiters whenever something changes; waiters re-check their own predicate."""

    def __init__(self):
        self._futs = set()

    def notify(self):
        for f in self._futs:
            if not f.done():
                f.set_result(None)
        self._futs.clear()

    async def wait(self, pred, timeout):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not pred():
            rem = deadline - loop.time()
            if rem <= 0:
                return False
            f = loop.create_future()
            self._futs.add(f)
            try:
                await asyncio.wait_for(f, rem)
            except asyncio.TimeoutError:
                pass
            finally:
                self._futs.discard(f)
        return True


# --------------------------------------------------------------------------------------------
# Radio proxy


class ProxyConn:
    """One board TCP connection relayed to its real (loopback) destination.

    While the board's network is down (radio link cut, or station not connected) the proxy
    stops reading both sides and holds any data it already read: a silent stall, no FIN/RST.
    Hook for fault injection: Board.fault (delay_ms applied per chunk, in order).
    """

    def __init__(self, sup):
        self.sup = sup
        self.board = None
        self.bt = None  # board-side transport
        self.rt = None  # remote-side transport
        self.hdr = b""
        self.orphan = False  # board process gone: RST the remote when it sends
        self.closed = False
        self.q = {"b2r": collections.deque(), "r2b": collections.deque()}
        self.flow = {"b": False, "r": False}  # write side full: stop reading the other side
        self.timer = {"b2r": None, "r2b": None}
        self.dest = None

    # -- helpers
    def net_up(self):
        return self.board is not None and self.board.net_up()

    def update_reading(self):
        if self.closed:
            return
        up = self.net_up()
        if self.bt is not None and not self.bt.is_closing():
            if self.board is None:
                want = True  # reading the header
            else:
                want = up and self.rt is not None and not self.flow["r"] and not self.orphan
            (self.bt.resume_reading if want else self.bt.pause_reading)()
        if self.rt is not None and not self.rt.is_closing():
            want = up and (self.orphan or not self.flow["b"])
            (self.rt.resume_reading if want else self.rt.pause_reading)()

    def net_changed(self):
        self.update_reading()
        for d in ("b2r", "r2b"):
            self.pump(d)

    def deliver(self, d, data):
        # data None = EOF
        delay = (self.board.fault.get("delay_ms", 0) / 1000.0) if self.board else 0.0
        q = self.q[d]
        if not q and not delay and self.net_up():
            self._write(d, data)
            return
        q.append((asyncio.get_running_loop().time() + delay, data))
        self.pump(d)

    def pump(self, d):
        q = self.q[d]
        loop = asyncio.get_running_loop()
        if self.timer[d] is not None:
            self.timer[d].cancel()
            self.timer[d] = None
        while q and self.net_up() and not self.closed:
            t, data = q[0]
            now = loop.time()
            if t > now:
                self.timer[d] = loop.call_later(t - now, self.pump, d)
                return
            q.popleft()
            self._write(d, data)

    def _write(self, d, data):
        t = self.rt if d == "b2r" else self.bt
        if t is None or t.is_closing():
            return
        if data is None:
            if t.can_write_eof():
                t.write_eof()
        else:
            t.write(data)

    def rst(self, t):
        if t is None or t.is_closing():
            return
        s = t.get_extra_info("socket")
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        t.abort()

    def close(self, rst_board=False, rst_remote=False):
        if self.closed:
            return
        self.closed = True
        for d in ("b2r", "r2b"):
            if self.timer[d] is not None:
                self.timer[d].cancel()
        if rst_board:
            self.rst(self.bt)
        elif self.bt is not None:
            self.bt.close()
        if rst_remote:
            self.rst(self.rt)
        elif self.rt is not None:
            self.rt.close()
        if self.board is not None:
            self.board.conns.discard(self)

    # -- board side events
    def from_board(self, data):
        if self.orphan or self.closed:
            return
        if self.board is None:
            self.hdr += data
            if b"\n" not in self.hdr:
                if len(self.hdr) > 512:
                    self.close(rst_board=True)
                return
            line, rest = self.hdr.split(b"\n", 1)
            self.hdr = b""
            try:
                magic, name, gen, ip, port = line.decode().split()
                assert magic == "WCPX"
                port = int(port)
            except Exception:
                self.close(rst_board=True)
                return
            board = self.sup.boards.get(name)
            if board is None or not ip.startswith("127."):
                # unknown board, or a destination outside loopback: refuse
                self.close(rst_board=True)
                return
            self.board = board
            self.dest = (ip, port)
            board.conns.add(self)
            self.bt.pause_reading()
            if rest:
                self.q["b2r"].append((0.0, rest))
            asyncio.get_running_loop().create_task(self._connect(ip, port))
            return
        self.deliver("b2r", data)

    async def _connect(self, ip, port):
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: _RemoteSide(self), ip, port), 10
            )
        except (OSError, asyncio.TimeoutError):
            # as an ESP32 sees a refused connect: the connection is reset
            self.close(rst_board=True)
            return
        if self.closed or self.orphan:
            self.close(rst_remote=True)
            return
        self.update_reading()
        self.pump("b2r")

    def board_eof(self):
        if not self.orphan:
            self.deliver("b2r", None)

    def board_lost(self, exc):
        self.bt = None
        if self.orphan or self.closed:
            return
        if exc is not None:
            self.close(rst_remote=True)
        elif self.rt is None:
            self.close()

    # -- remote side events
    def from_remote(self, data):
        if self.orphan:
            # the board was reset: its new TCP stack answers with RST
            self.close(rst_remote=True)
            return
        self.deliver("r2b", data)

    def remote_eof(self):
        if self.orphan:
            self.close()
            return
        self.deliver("r2b", None)

    def remote_lost(self, exc):
        self.rt = None
        if self.closed:
            return
        if exc is not None:
            self.close(rst_board=True)
        elif self.bt is None or self.orphan:
            self.close()

    def make_orphan(self):
        self.orphan = True
        self.q["r2b"].clear()
        self.update_reading()


class _BoardSide(asyncio.Protocol):
    def __init__(self, sup):
        self.c = ProxyConn(sup)

    def connection_made(self, t):
        self.c.bt = t

    def data_received(self, data):
        self.c.from_board(data)

    def eof_received(self):
        self.c.board_eof()
        return True

    def connection_lost(self, exc):
        self.c.board_lost(exc)

    def pause_writing(self):
        self.c.flow["b"] = True
        self.c.update_reading()

    def resume_writing(self):
        self.c.flow["b"] = False
        self.c.update_reading()


class _RemoteSide(asyncio.Protocol):
    def __init__(self, conn):
        self.c = conn

    def connection_made(self, t):
        self.c.rt = t

    def data_received(self, data):
        self.c.from_remote(data)

    def eof_received(self):
        self.c.remote_eof()
        return True

    def connection_lost(self, exc):
        self.c.remote_lost(exc)

    def pause_writing(self):
        self.c.flow["r"] = True
        self.c.update_reading()

    def resume_writing(self):
        self.c.flow["r"] = False
        self.c.update_reading()


# --------------------------------------------------------------------------------------------
# Shim channel (UDP)


class ShimChannel(asyncio.DatagramProtocol):
    def __init__(self, sup):
        self.sup = sup
        self.transport = None
        self.by_addr = {}

    def connection_made(self, t):
        self.transport = t

    def send(self, board, msg):
        if board.shim_addr is not None and self.transport is not None:
            self.transport.sendto(json.dumps(msg, separators=(",", ":")).encode(), board.shim_addr)

    def datagram_received(self, data, addr):
        try:
            self._handle(data, addr)
        except Exception:
            log.exception("bad shim datagram %r from %r", data[:100], addr)

    def _handle(self, data, addr):
        k = data[:1]
        if k == b"H":
            _, name, gen = data.decode().split()
            b = self.sup.boards.get(name)
            if b is None or gen != str(b.gen):
                return
            if b.shim_addr is not None:
                self.by_addr.pop(b.shim_addr, None)
            b.shim_addr = addr
            self.by_addr[addr] = b
            self.send(b, b.full_state())
            return
        b = self.by_addr.get(addr)
        if b is None or b.shim_addr != addr:
            return
        f = data.decode().split(" ", 1)
        arg = f[1] if len(f) > 1 else ""
        if k == b"O":
            p, v, tus = arg.split()
            b.record_output(int(p), int(v), None, int(tus) / 1e6)
        elif k == b"P":
            p, fr, d, tus = arg.split()
            fr, d = int(fr), int(d)
            b.record_output(int(p), d if fr else 0, fr, int(tus) / 1e6)
        elif k == b"F":
            b.wdt_feed()
        elif k == b"W":
            b.wdt_start(int(arg))
        elif k == b"R":
            kind, a = arg.split()
            b.request_reset(kind, int(a))
        elif k == b"N":
            b.net_cmd(json.loads(arg))
        elif k == b"r":
            b.read_pty_now()  # the console holds everything printed before this message
            b.runner_running = arg.strip() == "1"
            b.phase = "running" if b.runner_running else "repl"
            self.send(b, {"k": "ack"})
            b.changed.notify()
        elif k == b"M":
            free, alloc = arg.split()
            b.mem = {"free": int(free), "alloc": int(alloc), "t": time.monotonic()}
            b.changed.notify()


# --------------------------------------------------------------------------------------------
# A board


class Board:
    def __init__(self, sup, name, flash, heapsize, wrap_s, wifi, cord, connect_ms, ssid, key,
                 uid=None):
        self.sup = sup
        self.name = name
        self.flash = Path(flash).resolve()
        self.heapsize = heapsize
        self.wrap_s = int(wrap_s)
        self.connect_ms = int(connect_ms)
        self.ssid = ssid  # None: any SSID/key is accepted
        self.key = key
        self.uid = uid or hashlib.sha256(name.encode()).hexdigest()[:12]
        self.closed = {PINS[n]: False for n in INPUTS}
        self.set_cord(cord, push=False)
        self.outputs = {}  # pin -> (value, freq, t)
        self.history = {}  # pin -> deque[(t, value, freq)]
        self.console = bytearray()
        self.console_base = 0
        self.changed = Notifier()
        self.fault = {"delay_ms": 0, "udp_loss": 0.0}
        self.link = bool(wifi)
        self.sta_active = False
        self.sta_want = None
        self.sta = STAT_IDLE
        self._sta_timer = None
        self.conns = set()
        self.proc = None
        self.master = None
        self.pidfd = None
        self.gen = 0
        self.phase = "off"
        self.raw = False
        self.raw_on_prompt = False
        self.runner_running = False
        self.shim_addr = None
        self.wdt_ms = 0
        self.wdt_due = 0.0
        self.wdt_handle = None
        self.boot_ms = _mono_ms()
        self.cause = PWRON_RESET
        self.pending = None
        self.removing = False
        self.powered = False
        self.starts = 0
        self.last_start = 0.0
        self.crashes = 0
        self.mem = None
        self.exit_status = None
        self._tail = b""
        self.client = None  # REPL TCP client (transport)
        self.repl_server = None
        self.repl_port = None
        self.upty_master = None
        self.upty_slave = None
        self.pty_path = None
        self._client_q = None
        self._start_task = None

    # -- state pushed to the shim
    def net_up(self):
        return self.link and self.sta == STAT_GOT_IP

    def net_state(self):
        return {
            "k": "net",
            "sta": self.sta,
            "active": self.sta_active,
            "net": self.net_up(),
            "loss": self.fault.get("udp_loss", 0.0),
            "ssid": self.sta_want[0] if self.sta_want else (self.ssid or ""),
        }

    def full_state(self):
        m = self.net_state()
        m["k"] = "st"
        m["in"] = {str(p): c for p, c in self.closed.items()}
        return m

    def push(self, msg):
        self.sup.shim.send(self, msg)

    def push_net(self):
        self.push(self.net_state())
        for c in list(self.conns):
            c.net_changed()
        self.changed.notify()

    # -- inputs
    def set_input(self, pin, closed):
        self.closed[pin] = bool(closed)
        self.push({"k": "in", "p": pin, "c": bool(closed)})
        self.changed.notify()

    def set_cord(self, state, push=True):
        pull, loop_ = {
            "ok": (False, True),
            "pulled": (True, True),
            "unplugged": (False, False),
        }[state]
        if push:
            self.set_input(PINS["cord_pull"], pull)
            self.set_input(PINS["cord_loop"], loop_)
        else:
            self.closed[PINS["cord_pull"]] = pull
            self.closed[PINS["cord_loop"]] = loop_

    # -- outputs
    def record_output(self, pin, value, freq, t):
        cur = self.outputs.get(pin)
        if cur is not None and cur[0] == value and cur[1] == freq:
            return
        self.outputs[pin] = (value, freq, t)
        h = self.history.get(pin)
        if h is None:
            h = self.history[pin] = collections.deque(maxlen=HISTORY_MAX)
        h.append((t, value, freq))
        self.changed.notify()

    def outputs_undriven(self):
        t = time.monotonic()
        for pin, (v, f, _) in list(self.outputs.items()):
            if v is not None:
                self.record_output(pin, None, None, t)

    # -- Wi-Fi
    def net_cmd(self, m):
        c = m.get("c")
        if c == "active":
            self.sta_active = bool(m.get("v"))
            if not self.sta_active:
                self.sta_want = None
                self.sta = STAT_IDLE
            self.sta_update()
        elif c == "connect":
            ssid, key = m.get("ssid"), m.get("key")
            if self.ssid is not None and ssid != self.ssid:
                self.sta_want = None
                self.sta = STAT_CONNECTING
                self._sta_later(STAT_NO_AP_FOUND)
            elif self.key is not None and key != self.key:
                self.sta_want = None
                self.sta = STAT_CONNECTING
                self._sta_later(STAT_WRONG_PASSWORD)
            else:
                self.sta_want = (ssid or "", key)
                self.sta = STAT_CONNECTING
                self.sta_update()
        elif c == "disconnect":
            self.sta_want = None
            self.sta = STAT_IDLE
            self.sta_update()
        self.push_net()

    def _sta_later(self, status):
        if self._sta_timer is not None:
            self._sta_timer.cancel()

        def done():
            self._sta_timer = None
            self.sta = status
            self.push_net()

        self._sta_timer = asyncio.get_running_loop().call_later(self.connect_ms / 1000, done)

    def sta_update(self):
        if self._sta_timer is not None:
            self._sta_timer.cancel()
            self._sta_timer = None
        if not (self.sta_want and self.sta_active):
            return
        if not self.link:
            self.sta = STAT_CONNECTING  # the ESP32 keeps retrying
            return
        if self.sta != STAT_GOT_IP:
            self.sta = STAT_CONNECTING

            def done():
                self._sta_timer = None
                if self.sta_want and self.sta_active and self.link:
                    self.sta = STAT_GOT_IP
                    self.push_net()

            self._sta_timer = asyncio.get_running_loop().call_later(
                self.connect_ms / 1000, done
            )

    def set_link(self, up):
        self.link = bool(up)
        if not self.link and self.sta == STAT_GOT_IP:
            self.sta = STAT_CONNECTING
        self.sta_update()
        self.push_net()

    def sta_reset(self):
        if self._sta_timer is not None:
            self._sta_timer.cancel()
            self._sta_timer = None
        self.sta_active = False
        self.sta_want = None
        self.sta = STAT_IDLE

    # -- watchdog
    def wdt_start(self, ms):
        self.wdt_ms = ms
        self.wdt_feed()

    def wdt_feed(self):
        if not self.wdt_ms:
            return
        loop = asyncio.get_running_loop()
        self.wdt_due = loop.time() + self.wdt_ms / 1000 + 0.15
        if self.wdt_handle is None:
            self.wdt_handle = loop.call_at(self.wdt_due, self._wdt_check)

    def _wdt_check(self):
        self.wdt_handle = None
        if not self.wdt_ms:
            return
        loop = asyncio.get_running_loop()
        if loop.time() >= self.wdt_due:
            log.info("%s: watchdog expired", self.name)
            self.request_reset("wdt", 0)
        else:
            self.wdt_handle = loop.call_at(self.wdt_due, self._wdt_check)

    def wdt_stop(self):
        self.wdt_ms = 0
        if self.wdt_handle is not None:
            self.wdt_handle.cancel()
            self.wdt_handle = None

    # -- console
    def on_output(self, data):
        if not data:
            return
        self.console += data
        if len(self.console) > CONSOLE_MAX:
            cut = len(self.console) - CONSOLE_MAX * 3 // 4
            del self.console[:cut]
            self.console_base += cut
        # REPL mode tracking (raw vs friendly), across chunk boundaries
        comb = self._tail + data
        tl = len(self._tail)
        ir = comb.rfind(b"raw REPL; CTRL-B to exit")
        ip = comb.rfind(b">>> ")
        if ir >= 0 and ir + 24 > tl and ir > ip:
            self.raw = True
        elif ip >= 0 and ip + 4 > tl and ip > ir:
            self.raw = False
        if self.raw_on_prompt and comb.endswith(b">>> "):
            self.raw_on_prompt = False
            self.sup.loop.create_task(self.pty_write(b"\x01"))
        self._tail = comb[-64:]
        if self.client is not None and not self.client.is_closing():
            if self.client.get_write_buffer_size() < (4 << 20):
                self.client.write(data)
        if self.upty_master is not None:
            try:
                os.write(self.upty_master, data)
            except OSError:
                pass  # nobody reading the user pty: drop, as a UART does
        self.changed.notify()

    def console_note(self, text):
        self.on_output(text if isinstance(text, bytes) else text.encode())

    # -- processes
    def spawn(self, cause, run_main, soft):
        sup = self.sup
        self.gen += 1
        self.cause = cause
        self.shim_addr = None
        self.runner_running = False
        self.phase = "booting"
        self.mem = None
        self._tail = b""
        self.raw_on_prompt = soft and self.raw
        m, s = pty.openpty()
        try:
            tty.setraw(s)
            os.set_blocking(m, False)
            path = ":".join(["", ".frozen", str(SHIMS)])
            env = dict(sup.base_env)
            env.update(
                WC_BOARD=self.name,
                WC_GEN=str(self.gen),
                WC_CAUSE=str(cause),
                WC_SUP=str(sup.udp_port),
                WC_PROXY=str(sup.proxy_port),
                WC_BOOT_MS=str(self.boot_ms),
                WC_WRAP_S=str(self.wrap_s),
                WC_UID=self.uid,
                WC_MAIN="1" if run_main else "0",
                MICROPYPATH=path,
            )
            self.proc = subprocess.Popen(
                sup.mp_cmd + ["-X", f"heapsize={self.heapsize}", "-i", str(RUNNER)],
                stdin=s,
                stdout=s,
                stderr=s,
                cwd=str(self.flash),
                env=env,
                close_fds=True,
                preexec_fn=_child_setup,
            )
        except Exception:
            os.close(m)
            self.phase = "off"
            raise
        finally:
            os.close(s)
        self.master = m
        self.starts += 1
        self.last_start = time.monotonic()
        self.powered = True
        self.pidfd = os.pidfd_open(self.proc.pid)
        sup.loop.add_reader(self.pidfd, self._on_exit)
        sup.loop.add_reader(m, self._on_pty)
        self.changed.notify()

    def _on_pty(self):
        m = self.master
        try:
            data = os.read(m, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.sup.loop.remove_reader(m)
            return
        self.on_output(data)

    def read_pty_now(self):
        m = self.master
        for _ in range(100):
            if m is None or self.master is not m:
                return
            try:
                data = os.read(m, 65536)
            except OSError:
                return
            if not data:
                return
            self.on_output(data)

    def _drain_pty(self):
        m = self.master
        if m is None:
            return
        self.sup.loop.remove_reader(m)
        for _ in range(1000):
            try:
                data = os.read(m, 65536)
            except OSError:
                break
            if not data:
                break
            self.on_output(data)
        os.close(m)
        self.master = None

    def _on_exit(self):
        loop = self.sup.loop
        loop.remove_reader(self.pidfd)
        os.close(self.pidfd)
        self.pidfd = None
        try:
            _, status = os.waitpid(self.proc.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = -1
        self.exit_status = code
        self.proc = None
        self._drain_pty()
        self.shim_addr = None
        self.runner_running = False
        self.outputs_undriven()
        self.phase = "off"
        pending, self.pending = self.pending, None
        for c in list(self.conns):
            if pending is not None:
                c.make_orphan()
        if self.removing or pending == ("off", 0):
            self.powered = False
            self.wdt_stop()
            self.changed.notify()
            return
        delay = 0.0
        if pending is None:
            if code in (0, 102):
                kind = "soft"
            elif code == 101:
                kind = "hard"
            elif code == 103:
                kind = "wdt"
            else:
                kind = "panic"
        else:
            kind, arg = pending
            if kind == "deepsleep":
                delay = arg / 1000.0
        if kind == "panic":
            self.console_note(
                f"\r\n[emulator] interpreter died (exit status {code}): rebooting\r\n"
            )
            if time.monotonic() - self.last_start < 1.0:
                self.crashes += 1
                delay = min(2.0, 0.1 * self.crashes)
        else:
            self.crashes = 0
        if kind == "soft":
            run_main = not self.raw
            self._start_task = loop.create_task(self._restart(delay, None, run_main, True))
        else:
            cause = {
                "hard": SOFT_RESET,  # machine.reset(): esp_restart(), ESP_RST_SW
                "panic": SOFT_RESET,  # ESP_RST_PANIC
                "wdt": WDT_RESET,
                "deepsleep": DEEPSLEEP_RESET,
                "button": HARD_RESET,
                "power": PWRON_RESET,
            }.get(kind, SOFT_RESET)
            self._start_task = loop.create_task(self._restart(delay, cause, True, False))
        self.changed.notify()

    async def _restart(self, delay, cause, run_main, soft):
        if delay:
            await asyncio.sleep(delay)  # models boot/deep-sleep time, not a synchronisation
        if self.removing or self.proc is not None:
            return
        if soft:
            self.console_note(b"MPY: soft reboot\r\n")
            self.spawn(self.cause, run_main, True)
        else:
            self.cold_boot(cause)

    def cold_boot(self, cause):
        self.boot_ms = _mono_ms()
        self.wdt_stop()
        self.sta_reset()
        self.raw = False
        self.console_note(b"ets Jun  8 2016 00:22:57\r\n\r\n" + ROM_BANNER[cause] + b"\r\n")
        self.spawn(cause, True, False)

    def kill(self, pending):
        """Kill the interpreter; pending says what happens next (("off",0) = stay off)."""
        if self.proc is None:
            return False
        self.pending = pending
        for c in list(self.conns):
            c.make_orphan()
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        return True

    def request_reset(self, kind, arg=0):
        if kind not in ("hard", "soft", "wdt", "deepsleep", "button", "power"):
            kind = "hard"
        if kind == "wdt":
            self.wdt_stop()
        self.phase = "resetting"
        if not self.kill((kind, arg)):
            if kind != "soft":
                self.cold_boot({"wdt": WDT_RESET, "button": HARD_RESET}.get(kind, SOFT_RESET))

    # -- REPL byte path
    async def pty_write(self, data):
        m = self.master
        if m is None:
            return
        loop = self.sup.loop
        mv = memoryview(data)
        for _ in range(10000):
            if not mv or self.master is not m:
                return
            try:
                n = os.write(m, mv)
                mv = mv[n:]
            except BlockingIOError:
                fut = loop.create_future()
                loop.add_writer(m, lambda: fut.done() or fut.set_result(None))
                try:
                    await asyncio.wait_for(fut, 5)
                except asyncio.TimeoutError:
                    return
                finally:
                    if self.master is m:
                        loop.remove_writer(m)
            except OSError:
                return

    def _syscall(self):
        p = self.proc
        if p is None:
            return None
        try:
            with open(f"/proc/{p.pid}/syscall") as f:
                s = f.read().split()
        except OSError:
            return None
        if not s or s[0] == "running":
            return "running"
        nr = int(s[0]) if s[0].lstrip("-").isdigit() else -1
        if nr == 0 and len(s) > 1 and int(s[1], 16) == 0:
            return "read0"
        # poll, select, pselect6, ppoll, nanosleep, clock_nanosleep, epoll_wait/pwait,
        # recvfrom, accept, accept4, connect, futex, read on another fd
        if nr in (7, 23, 270, 271, 35, 230, 232, 281, 45, 43, 288, 42, 202, 0):
            return "blocked"
        return "other"

    async def ctrl_c(self):
        """A Ctrl-C byte from the REPL client: SIGINT if a program runs, else the byte."""
        if self.proc is None:
            return
        if self.runner_running:
            self._sigint()
            return
        loop = self.sup.loop
        deadline = loop.time() + 0.25
        for _ in range(200):
            st = self._syscall()
            if st is None:
                return
            if st == "read0":
                await self.pty_write(b"\x03")
                return
            if st == "blocked" or loop.time() > deadline:
                self._sigint()
                return
            await asyncio.sleep(0.002)  # re-sample the interpreter's state (bounded poll)
        self._sigint()

    def _sigint(self):
        if self.proc is not None:
            try:
                os.kill(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    async def client_input(self, data):
        parts = data.split(b"\x03")
        for i, part in enumerate(parts):
            if i:
                await self.ctrl_c()
            if part:
                await self.pty_write(part)

    async def _client_worker(self):
        # serialises input from the REPL client and the user pty, in order
        q = self._client_q
        while True:
            data = await q.get()
            if data is None:
                return
            try:
                await self.client_input(data)
            except Exception:
                log.exception("%s: REPL input", self.name)

    async def open_repl(self):
        self._client_q = asyncio.Queue()
        self.sup.loop.create_task(self._client_worker())
        self.repl_server = await asyncio.start_server(self._repl_conn, "127.0.0.1", 0)
        self.repl_port = self.repl_server.sockets[0].getsockname()[1]
        try:
            m, s = pty.openpty()
            tty.setraw(s)
            os.set_blocking(m, False)
            self.upty_master, self.upty_slave = m, s
            self.pty_path = os.ttyname(s)
            self.sup.loop.add_reader(m, self._on_upty)
        except OSError:
            self.pty_path = None

    def _on_upty(self):
        try:
            data = os.read(self.upty_master, 4096)
        except OSError:
            return
        if data:
            self._client_q.put_nowait(data)

    async def _repl_conn(self, reader, writer):
        if self.client is not None:
            self.client.close()
        t = writer.transport
        self.client = t
        try:
            for _ in range(1 << 30):
                data = await reader.read(65536)
                if not data:
                    break
                self._client_q.put_nowait(data)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            if self.client is t:
                self.client = None
            writer.close()

    def close_repl(self):
        if self.repl_server is not None:
            self.repl_server.close()
        if self.client is not None:
            self.client.close()
        if self._client_q is not None:
            self._client_q.put_nowait(None)
        if self.upty_master is not None:
            self.sup.loop.remove_reader(self.upty_master)
            os.close(self.upty_master)
            os.close(self.upty_slave)
            self.upty_master = None

    # -- reporting
    def info(self):
        return {
            "name": self.name,
            "flash": str(self.flash),
            "repl_port": self.repl_port,
            "pty": self.pty_path,
            "pid": self.proc.pid if self.proc else None,
            "alive": self.proc is not None,
            "powered": self.powered,
            "phase": self.phase,
            "raw_repl": self.raw,
            "reset_cause": self.cause,
            "starts": self.starts,
            "exit_status": self.exit_status,
            "link": self.link,
            "sta": self.sta,
            "net_up": self.net_up(),
            "wdt_ms": self.wdt_ms,
            "heapsize": self.heapsize,
            "connections": len(self.conns),
            "console_end": self.console_base + len(self.console),
        }


# --------------------------------------------------------------------------------------------
# The supervisor and its control channel


class Supervisor:
    def __init__(self, workdir, micropython=None):
        self.workdir = Path(workdir)
        self.boards = {}
        self.loop = None
        self.shim = ShimChannel(self)
        self.udp_port = None
        self.proxy_port = None
        self.ctrl_port = None
        self.stopping = asyncio.Event()
        self.mp_cmd = self._find_micropython(micropython)
        self.base_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("WC_", "MICROPY"))
        }

    @staticmethod
    def _find_micropython(explicit):
        if explicit:
            return [explicit]
        spec = importlib.util.find_spec("micropython_run")
        if spec is not None and spec.origin:
            # the PyPI launcher without its console script and without site: faster start
            d = os.path.dirname(spec.origin)
            code = (
                f"import sys; sys.path.insert(0, {d!r}); from micropython_run import run_main; "
                "sys.exit(run_main(['micropython'] + sys.argv[1:]))"
            )
            return [sys.executable, "-S", "-c", code]
        exe = Path(sys.executable).parent / "micropython"
        return [str(exe if exe.exists() else "micropython")]

    async def start(self, port=0):
        global _libc
        _libc = ctypes.CDLL(None, use_errno=True)
        self.loop = asyncio.get_running_loop()
        t, _ = await self.loop.create_datagram_endpoint(
            lambda: self.shim, local_addr=("127.0.0.1", 0)
        )
        s = t.get_extra_info("socket")
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
            except OSError:
                pass
        self.udp_port = s.getsockname()[1]
        self.proxy = await self.loop.create_server(
            lambda: _BoardSide(self), "127.0.0.1", 0, backlog=1024
        )
        self.proxy_port = self.proxy.sockets[0].getsockname()[1]
        self.ctrl = await asyncio.start_server(self._ctrl_conn, "127.0.0.1", port, backlog=256)
        self.ctrl_port = self.ctrl.sockets[0].getsockname()[1]

    async def shutdown(self):
        for b in list(self.boards.values()):
            b.removing = True
            b.kill(("off", 0))
            b.close_repl()
        # wait (bounded) for the interpreters to be reaped
        deadline = self.loop.time() + 5
        while any(b.proc is not None for b in self.boards.values()):
            if self.loop.time() > deadline:
                break
            await asyncio.sleep(0.02)  # bounded poll for process exits
        self.stopping.set()

    # -- control channel
    async def _ctrl_conn(self, reader, writer):
        lock = asyncio.Lock()
        tasks = set()

        async def handle(line):
            try:
                req = json.loads(line)
            except ValueError:
                return
            rid = req.pop("id", None)
            op = req.pop("op", "")
            try:
                fn = getattr(self, "op_" + op)
            except AttributeError:
                resp = {"id": rid, "ok": False, "error": f"unknown op {op!r}"}
            else:
                try:
                    resp = {"id": rid, "ok": True, "result": await fn(**req)}
                except Exception as e:
                    resp = {"id": rid, "ok": False, "error": f"{type(e).__name__}: {e}"}
            async with lock:
                writer.write(json.dumps(resp).encode() + b"\n")
                try:
                    await writer.drain()
                except (ConnectionError, OSError):
                    pass

        try:
            for _ in range(1 << 40):
                line = await reader.readline()
                if not line:
                    break
                t = self.loop.create_task(handle(line))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        except (ConnectionError, OSError, asyncio.LimitOverrunError, ValueError,
                asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _board(self, name):
        b = self.boards.get(name)
        if b is None:
            raise KeyError(f"no board {name!r}")
        return b

    async def op_ping(self):
        return {"boards": len(self.boards), "pid": os.getpid()}

    async def op_add_board(self, name, flash, heapsize=DEFAULT_HEAPSIZE, wrap_s=20, wifi=True,
                           cord="ok", connect_ms=100, ssid=None, key=None, boot=True, uid=None):
        if name in self.boards:
            raise ValueError(f"board {name!r} exists")
        if not (0 < int(wrap_s) < 1070):
            raise ValueError("wrap_s must be in 1..1069")
        Path(flash).mkdir(parents=True, exist_ok=True)
        b = Board(self, name, flash, heapsize, wrap_s, wifi, cord, connect_ms, ssid, key, uid)
        self.boards[name] = b
        await b.open_repl()
        if boot:
            b.cold_boot(PWRON_RESET)
        return b.info()

    async def op_remove_board(self, name):
        b = self._board(name)
        b.removing = True
        b.kill(("off", 0))
        await b.changed.wait(lambda: b.proc is None, 5)
        b.close_repl()
        for c in list(b.conns):
            c.close(rst_remote=True)
        del self.boards[name]
        return True

    async def op_boards(self):
        return [b.info() for b in self.boards.values()]

    async def op_info(self, name):
        return self._board(name).info()

    async def op_input(self, name, pin, closed):
        b = self._board(name)
        b.set_input(pin_number(pin), closed)
        return True

    async def op_tap(self, name, pin, ms=150):
        b = self._board(name)
        p = pin_number(pin)
        b.set_input(p, True)
        await asyncio.sleep(ms / 1000)  # the press duration itself
        b.set_input(p, False)
        return True

    async def op_cord(self, name, state):
        self._board(name).set_cord(state)
        return True

    async def op_inputs(self, name):
        b = self._board(name)
        return {pin_name(p): c for p, c in b.closed.items()}

    async def op_output(self, name, pin):
        b = self._board(name)
        v = b.outputs.get(pin_number(pin))
        if v is None:
            return {"value": None, "freq": None, "t": None}
        return {"value": v[0], "freq": v[1], "t": v[2]}

    async def op_outputs(self, name):
        b = self._board(name)
        return {pin_name(p): {"value": v[0], "freq": v[1], "t": v[2]} for p, v in b.outputs.items()}

    async def op_history(self, name, pin=None, since=None):
        b = self._board(name)
        pins = [pin_number(pin)] if pin is not None else list(b.history)
        out = {}
        for p in pins:
            h = b.history.get(p, ())
            out[pin_name(p)] = [list(e) for e in h if since is None or e[0] >= since]
        return out

    @staticmethod
    def _match(cur, value):
        v = cur[0] if cur is not None else None
        if value is True:
            return bool(v)
        if value is False:
            return v is not None and not v
        return v == value

    async def op_wait_output(self, name, pin, value, timeout=5.0):
        b = self._board(name)
        p = pin_number(pin)
        ok = await b.changed.wait(lambda: self._match(b.outputs.get(p), value), timeout)
        cur = b.outputs.get(p)
        return {"ok": ok, "value": cur[0] if cur else None}

    async def op_wifi(self, name, up):
        self._board(name).set_link(up)
        return True

    async def op_fault(self, name, delay_ms=None, udp_loss=None):
        b = self._board(name)
        if delay_ms is not None:
            b.fault["delay_ms"] = max(0, float(delay_ms))
        if udp_loss is not None:
            b.fault["udp_loss"] = min(1.0, max(0.0, float(udp_loss)))
        b.push_net()
        return dict(b.fault)

    async def op_power(self, name, on):
        b = self._board(name)
        if on:
            if b.proc is None:
                if b._start_task is not None:
                    b._start_task.cancel()
                b.cold_boot(PWRON_RESET)
        else:
            if b._start_task is not None:
                b._start_task.cancel()
            b.kill(("off", 0))
            await b.changed.wait(lambda: b.proc is None, 5)
            b.powered = False
            b.wdt_stop()
        return b.info()

    async def op_power_cycle(self, name, off_ms=0):
        await self.op_power(name, False)
        if off_ms:
            await asyncio.sleep(off_ms / 1000)  # the requested power-off time
        return await self.op_power(name, True)

    async def op_reset(self, name):
        """The EN (reset) button: reset_cause() == HARD_RESET."""
        b = self._board(name)
        b.request_reset("button", 0)
        return True

    async def op_console(self, name, since=0):
        b = self._board(name)
        start = max(int(since) - b.console_base, 0)
        data = bytes(b.console[start:])
        return {
            "text": data.decode("utf-8", "replace"),
            "start": b.console_base + start,
            "end": b.console_base + len(b.console),
        }

    async def op_wait_console(self, name, text, timeout=5.0, since=0):
        b = self._board(name)
        needle = text.encode()

        def pred():
            return b.console.find(needle, max(int(since) - b.console_base, 0)) >= 0

        ok = await b.changed.wait(pred, timeout)
        res = await self.op_console(name, since)
        res["ok"] = ok
        return res

    async def op_state(self, name):
        return self._board(name).info()

    async def op_wait_state(self, name, phase, timeout=5.0):
        b = self._board(name)
        phases = phase if isinstance(phase, list) else [phase]
        ok = await b.changed.wait(lambda: b.phase in phases, timeout)
        r = b.info()
        r["ok"] = ok
        return r

    async def op_heap(self, name, timeout=1.0):
        b = self._board(name)
        if b.shim_addr is None:
            return None
        t0 = time.monotonic()
        b.push({"k": "mem"})
        ok = await b.changed.wait(lambda: b.mem is not None and b.mem["t"] >= t0, timeout)
        return dict(b.mem, heapsize=b.heapsize) if ok else None

    async def op_send_repl(self, name, data):
        """Type into the board's REPL (as a client would)."""
        b = self._board(name)
        b._client_q.put_nowait(data.encode("latin-1"))
        return True

    async def op_stats(self):
        pids = [b.proc.pid for b in self.boards.values() if b.proc is not None]
        return {"pid": os.getpid(), "board_pids": pids}

    async def op_shutdown(self):
        self.loop.create_task(self.shutdown())
        return True


async def amain(args):
    sup = Supervisor(args.workdir, args.micropython)
    await sup.start(args.port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: loop.create_task(sup.shutdown()))
    if args.watch_stdin:
        # die with the process that started us: it holds our stdin open
        def on_stdin():
            try:
                d = os.read(0, 4096)
            except OSError:
                d = b""
            if not d:
                loop.remove_reader(0)
                loop.create_task(sup.shutdown())

        loop.add_reader(0, on_stdin)
    sys.stdout.write(f"READY {sup.ctrl_port}\n")
    sys.stdout.flush()
    await sup.stopping.wait()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=".")
    ap.add_argument("--port", type=int, default=0, help="control port (0: any free port)")
    ap.add_argument("--micropython", default=None, help="interpreter command")
    ap.add_argument("--watch-stdin", action="store_true", help="shut down on stdin EOF")
    ap.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(
        filename=args.log,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
