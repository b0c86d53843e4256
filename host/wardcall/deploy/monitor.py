"""`wardcall monitor`: the board's serial console through pyserial.

Opens the port with an exclusive lock (so a deploy started meanwhile reports the board busy rather
than fighting over it), prints everything the board writes, and sends what you type. Ctrl-] quits;
Ctrl-T then R resets an ESP32 through the DTR/RTS lines (real boards only).
"""
from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty
from typing import BinaryIO

import serial

from .errors import DeployError

EXIT_KEY = b"\x1d"    # Ctrl-]
MENU_KEY = b"\x14"    # Ctrl-T


def open_port(port: str, baud: int = 115200) -> serial.SerialBase:
    kwargs = {"baudrate": baud, "timeout": 0}
    if "://" not in port:
        kwargs["exclusive"] = True
    try:
        return serial.serial_for_url(port, **kwargs)
    except (serial.SerialException, OSError, ValueError) as e:
        text = str(e)
        low = text.lower()
        if "no such file" in low or "connection refused" in low or "errno 111" in low or "errno 2]" in low:
            raise DeployError("no board on %s (%s)" % (port, text), code="no-board", port=port,
                              fix="check the cable and the port name (`wardcall monitor --list`), "
                              "or start the emulated board")
        if "busy" in low or "lock" in low or "permission" in low:
            raise DeployError("%s is busy: %s" % (port, text), code="busy", port=port,
                              fix="close the other program using it (a deploy, mpremote, screen)")
        raise DeployError("cannot open %s: %s" % (port, text), code="no-board", port=port)


def hard_reset(ser: serial.SerialBase) -> None:
    """EN low for 100 ms through RTS, with IO0 (DTR) high: the usual ESP32 auto-reset circuit."""
    ser.dtr = False
    ser.rts = True
    time.sleep(0.1)
    ser.rts = False


def monitor(port: str, baud: int = 115200, out: BinaryIO | None = None, inp: BinaryIO | None = None,
            duration: float | None = None, raw: bool = False, reset: bool = False) -> None:
    """Copy the port to `out` and `inp` to the port until Ctrl-], EOF or `duration` seconds."""
    out = out or sys.stdout.buffer
    ser = open_port(port, baud)
    fd_in = None
    if inp is None and sys.stdin.isatty():
        inp = sys.stdin.buffer
    if inp is not None:
        try:
            fd_in = inp.fileno()
        except (OSError, AttributeError, ValueError):
            fd_in = None
    old = None
    tty_fd = fd_in if fd_in is not None and os.isatty(fd_in) else None   # stays set if input ends
    if tty_fd is not None:
        old = termios.tcgetattr(tty_fd)
        tty.setraw(tty_fd)
    if reset and "://" not in port:
        hard_reset(ser)
    deadline = time.monotonic() + duration if duration else None
    menu = False
    try:
        if old is None:
            sys.stderr.write("--- wardcall monitor on %s at %d baud ---\n" % (port, baud))
        else:
            sys.stderr.write("--- wardcall monitor on %s at %d baud; Ctrl-] quits, Ctrl-T R resets ---\r\n" % (port, baud))
        sys.stderr.flush()
        while deadline is None or time.monotonic() < deadline:
            fds = [ser.fileno()] if hasattr(ser, "fileno") else []
            if fd_in is not None:
                fds.append(fd_in)
            try:
                ready, _, _ = select.select(fds, [], [], 0.1)
            except (ValueError, OSError):
                ready = []
                time.sleep(0.05)
            data = ser.read(4096)
            if data:
                if not raw:
                    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") if old else data.replace(b"\r\n", b"\n")
                out.write(data)
                out.flush()
            elif "://" in port and not fds:
                time.sleep(0.05)
            if fd_in is not None and fd_in in ready:
                keys = os.read(fd_in, 64)
                if not keys:
                    fd_in = None
                    continue
                if EXIT_KEY in keys:
                    break
                if menu:
                    menu = False
                    if keys[:1] in (b"r", b"R"):
                        hard_reset(ser)
                    continue
                if MENU_KEY in keys:
                    menu = True
                    continue
                ser.write(keys)
    except serial.SerialException as e:
        raise DeployError("lost %s: %s" % (port, e), code="no-board", port=port,
                          fix="the board was unplugged or reset; run the monitor again")
    finally:
        if tty_fd is not None and old is not None:
            termios.tcsetattr(tty_fd, termios.TCSADRAIN, old)
        ser.close()
        sys.stderr.write("\n--- monitor closed ---\n")


def list_ports() -> list[tuple[str, str, str]]:
    from serial.tools import list_ports as lp
    return [(p.device, p.description or "", p.hwid or "") for p in sorted(lp.comports())]
