"""One board's interpreter: a MicroPython unix-port process on a pty, started, killed and
restarted as an ESP32 resets (cold start with a ROM line and a reset cause, or soft reboot).

The process runs `<micropython> -X heapsize=... -i shims/_emu_runner.py` with cwd = the flash
folder and the shims on MICROPYPATH; it dies with the supervisor (PR_SET_PDEATHSIG). What it
prints goes to the board's REPL side (repl.Repl), which also writes to it.
"""
from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import os
import pty
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .emulated_board import Board

SHIMS = Path(__file__).resolve().parent / "shims"
RUNNER = SHIMS / "_emu_runner.py"
DEFAULT_HEAPSIZE = "124wK"  # see docs/EMULATOR.md, "Heap calibration"

# machine.reset_cause() values (ESP32 port)
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
ROM_BANNER = {
    PWRON_RESET: b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    HARD_RESET: b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    SOFT_RESET: b"rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    WDT_RESET: b"rst:0x7 (TG0WDT_SYS_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    DEEPSLEEP_RESET: b"rst:0x5 (DEEPSLEEP_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
}
# reset kinds (asked by the shims or the control channel) that cold-start the board
COLD_CAUSE = {
    "hard": SOFT_RESET,  # machine.reset(): esp_restart(), ESP_RST_SW
    "panic": SOFT_RESET,  # ESP_RST_PANIC
    "wdt": WDT_RESET,
    "deepsleep": DEEPSLEEP_RESET,
    "button": HARD_RESET,
    "power": PWRON_RESET,
}
# an exit nobody asked for: 0 = the unix port's own (Ctrl-D in the raw REPL), 101-103 = the
# shims' reserved codes (shims/_emu.py); anything else is a crash
EXIT_KIND = {0: "soft", 102: "soft", 101: "hard", 103: "wdt"}
STAY_OFF = ("off", 0)

_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup() -> None:
    # in the forked child: die with the supervisor
    try:
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def find_micropython(explicit: str | None) -> list[str]:
    """The command that starts the MicroPython unix port."""
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


def _mono_ms() -> int:
    return int(time.monotonic() * 1000)


class BoardProcess:
    def __init__(self, board: Board) -> None:
        self.board = board
        self.proc: Optional[subprocess.Popen] = None
        self.master: Optional[int] = None  # our end of the interpreter's pty
        self.pidfd: Optional[int] = None
        self.gen = 0  # interpreter generation: the shims say which one they belong to
        self.cause = PWRON_RESET
        self.boot_ms = _mono_ms()  # ticks restart at a cold start, continue across soft resets
        self.pending: Optional[tuple[str, int]] = None  # what a kill by us leads to
        self.removing = False
        self.powered = False
        self.starts = 0
        self.last_start = 0.0
        self.crashes = 0
        self.exit_status: Optional[int] = None
        self._start_task: Optional[asyncio.Task] = None

    # -- start
    def spawn(self, cause: int, run_main: bool, soft: bool) -> None:
        b = self.board
        sup = b.sup
        self.gen += 1
        self.cause = cause
        b.shim_addr = None
        b.runner_running = False
        b.phase = "booting"
        b.mem = None
        b.repl.interpreter_starting(soft)
        m, s = pty.openpty()
        try:
            tty.setraw(s)
            os.set_blocking(m, False)
            path = ":".join(["", ".frozen", str(SHIMS)])
            env = dict(sup.base_env)
            env.update(
                WC_BOARD=b.name,
                WC_GEN=str(self.gen),
                WC_CAUSE=str(cause),
                WC_SUP=str(sup.udp_port),
                WC_PROXY=str(sup.proxy_port),
                WC_BOOT_MS=str(self.boot_ms),
                WC_WRAP_S=str(b.wrap_s),
                WC_UID=b.uid,
                WC_MAIN="1" if run_main else "0",
                WC_BADGE=b.badge_pins(),
                MICROPYPATH=path,
            )
            self.proc = subprocess.Popen(
                sup.mp_cmd + ["-X", f"heapsize={b.heapsize}", "-i", str(RUNNER)],
                stdin=s,
                stdout=s,
                stderr=s,
                cwd=str(b.flash),
                env=env,
                close_fds=True,
                preexec_fn=_child_setup,
            )
        except Exception:
            os.close(m)
            b.phase = "off"
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
        b.changed.notify()

    def cold_boot(self, cause: int) -> None:
        b = self.board
        self.boot_ms = _mono_ms()
        b.wdt.stop()
        b.wifi.reset()
        b.repl.raw = False
        b.repl.note(b"ets Jun  8 2016 00:22:57\r\n\r\n" + ROM_BANNER[cause] + b"\r\n")
        self.spawn(cause, True, False)

    # -- output
    def _on_pty(self) -> None:
        m = self.master
        try:
            data = os.read(m, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.board.sup.loop.remove_reader(m)
            return
        self.board.repl.on_output(data)

    def read_pty_now(self) -> None:
        """Take in what the interpreter printed so far (before a message that follows it)."""
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
            self.board.repl.on_output(data)

    def _drain_pty(self) -> None:
        m = self.master
        if m is None:
            return
        self.board.sup.loop.remove_reader(m)
        for _ in range(1000):
            try:
                data = os.read(m, 65536)
            except OSError:
                break
            if not data:
                break
            self.board.repl.on_output(data)
        os.close(m)
        self.master = None

    # -- input
    async def write(self, data: bytes) -> None:
        """Write to the interpreter's stdin (dropped if it exits meanwhile)."""
        m = self.master
        if m is None:
            return
        loop = self.board.sup.loop
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

    def syscall_state(self) -> Optional[str]:
        """What the interpreter is doing, from /proc/PID/syscall: "read0" (waiting for stdin),
        "blocked" (poll, sleep, recv...), "running", "other"; None if it is gone."""
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

    def interrupt(self) -> None:
        """SIGINT: KeyboardInterrupt in the running program."""
        if self.proc is not None:
            try:
                os.kill(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    # -- stop and restart
    def kill(self, pending: tuple[str, int]) -> bool:
        """Kill the interpreter; pending says what happens next (STAY_OFF = stay off)."""
        if self.proc is None:
            return False
        self.pending = pending
        for c in list(self.board.conns):
            c.make_orphan()
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        return True

    def request_reset(self, kind: str, arg: int = 0) -> None:
        """A reset asked by the shims (machine.reset, deepsleep...), the watchdog or EN."""
        if kind not in ("hard", "soft", "wdt", "deepsleep", "button", "power"):
            kind = "hard"
        if kind == "wdt":
            self.board.wdt.stop()
        self.board.phase = "resetting"
        if not self.kill((kind, arg)):
            if kind != "soft":
                self.cold_boot({"wdt": WDT_RESET, "button": HARD_RESET}.get(kind, SOFT_RESET))

    def power_on(self) -> None:
        if self.proc is None:
            if self._start_task is not None:
                self._start_task.cancel()
            self.cold_boot(PWRON_RESET)

    async def power_off(self) -> None:
        b = self.board
        if self._start_task is not None:
            self._start_task.cancel()
        self.kill(STAY_OFF)
        await b.changed.wait(lambda: self.proc is None, 5)
        self.powered = False
        b.wdt.stop()

    def remove(self) -> None:
        """The board is being removed: kill the interpreter for good."""
        self.removing = True
        self.kill(STAY_OFF)

    def _on_exit(self) -> None:
        b = self.board
        loop = b.sup.loop
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
        b.shim_addr = None
        b.runner_running = False
        b.gpio.outputs_undriven()
        b.phase = "off"
        pending, self.pending = self.pending, None
        for c in list(b.conns):
            if pending is not None:
                c.make_orphan()
        if self.removing or pending == STAY_OFF:
            self.powered = False
            b.wdt.stop()
            b.changed.notify()
            return
        delay = 0.0
        if pending is None:
            kind = EXIT_KIND.get(code, "panic")
        else:
            kind, arg = pending
            if kind == "deepsleep":
                delay = arg / 1000.0
        if kind == "panic":
            b.repl.note(f"\r\n[emulator] interpreter died (exit status {code}): rebooting\r\n")
            if time.monotonic() - self.last_start < 1.0:
                self.crashes += 1
                delay = min(2.0, 0.1 * self.crashes)
        else:
            self.crashes = 0
        if kind == "soft":
            run_main = not b.repl.raw  # from the raw REPL (mpremote): boot.py only
            self._start_task = loop.create_task(self._restart(delay, None, run_main, True))
        else:
            cause = COLD_CAUSE.get(kind, SOFT_RESET)
            self._start_task = loop.create_task(self._restart(delay, cause, True, False))
        b.changed.notify()

    async def _restart(self, delay: float, cause: Optional[int], run_main: bool,
                       soft: bool) -> None:
        if delay:
            await asyncio.sleep(delay)  # models boot/deep-sleep time, not a synchronisation
        if self.removing or self.proc is not None:
            return
        if soft:
            self.board.repl.note(b"MPY: soft reboot\r\n")
            self.spawn(self.cause, run_main, True)
        else:
            self.cold_boot(cause)
