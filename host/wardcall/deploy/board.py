"""Talk to one board through the real `mpremote` command.

PORT is a serial device (/dev/ttyUSB0, /dev/ttyACM0, /dev/pts/N) or a pyserial URL
(socket://127.0.0.1:PORT for an emulated board, rfc2217://...). Every call is one
`mpremote connect PORT ...` process with a timeout; its failures become DeployErrors that name the
port and the fix.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import urlsplit

from .errors import DeployError

MARK = "@@WARDCALL@@"

# Runs on the board (MicroPython): identity, .mpy version, free flash and the sha256 of the files
# we may write. PATHS is substituted with a JSON list of absolute board paths.
PROBE_SCRIPT = """
import sys, os
try:
    import hashlib, binascii
except ImportError:
    hashlib = None
def _wc_hash(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    if hashlib is None:
        f.close()
        return '?'
    h = hashlib.sha256()
    b = bytearray(512)
    try:
        while True:
            n = f.readinto(b)
            if not n:
                break
            h.update(b[:n] if n < 512 else b)
    except OSError:
        return 'dir'
    finally:
        f.close()
    return binascii.hexlify(h.digest()).decode()
def _wc_probe(paths, flag):
    i = sys.implementation
    r = {'name': i.name, 'version': list(i.version[:3]), 'mpy': getattr(i, '_mpy', None),
         'machine': getattr(i, '_machine', ''), 'platform': sys.platform}
    try:
        s = os.statvfs('/')
        r['block'] = s[1] or s[0]
        r['total'] = r['block'] * s[2]
        r['free'] = r['block'] * s[4]
    except Exception as e:
        r['free'] = None
    h = {}
    for p in paths:
        h[p] = _wc_hash(p)
    r['hashes'] = h
    try:
        os.stat(flag)
        r['maintenance'] = True
    except OSError:
        r['maintenance'] = False
    import json
    print(MARK + ' ' + json.dumps(r))
_wc_probe(PATHS, FLAG)
"""


def probe_script(paths: Iterable[str], flag: str) -> str:
    return (
        PROBE_SCRIPT.replace("MARK", json.dumps(MARK))
        .replace("PATHS", json.dumps(list(paths))).replace("FLAG", json.dumps(flag))
    )


def prepare_script(mkdirs: Iterable[str], removes: Iterable[str]) -> str:
    """Create folders and remove files (missing ones are fine) before copying."""
    return (
        "import os\n"
        "for d in %s:\n"
        "    try:\n        os.mkdir(d)\n    except OSError:\n        pass\n"
        "for p in %s:\n"
        "    try:\n        os.remove(p)\n    except OSError:\n        pass\n"
        % (json.dumps(list(mkdirs)), json.dumps(list(removes)))
    )


# Files are written with our own `exec`s rather than `mpremote fs cp`: fs cp sends 256 bytes per
# round trip as a Python bytes repr (2-4x the size for .mpy), which made the copy ~75% of a deploy.
# Here each exec carries up to WRITE_CHUNK bytes as base64 (1.33x), and small files share one
# exec; the script the board compiles stays under ~5 KB, well within an ESP32's heap in
# maintenance mode. Deploy re-hashes every file afterwards, so a bad write cannot go unnoticed.
WRITE_CHUNK = 3072
MAX_ARGV = 96 * 1024   # bytes of exec scripts per mpremote run (argv limits; macOS has 256 KiB)


def write_scripts(files: Iterable[tuple[str, str | Path]], max_argv: int = MAX_ARGV) -> list[list[str]]:
    """[(remote path, local path)] -> batches [[script, ...], ...]: run each batch as one
    mpremote run (its scripts as chained `exec`s, in one REPL session: globals persist between
    them) to write the files. A batch ends only between files and holds at most ~max_argv bytes
    of script (a file bigger than that gets a batch of its own)."""
    import binascii
    batches: list[list[str]] = []
    batch: list[str] = []
    cur: list[str] = []
    state = {"size": 0, "batch": 0, "open": False}

    def flush() -> None:
        if cur:
            script = "\n".join(cur)
            batch.append(script)
            state["batch"] += len(script)
            cur.clear()
        state["size"] = 0
        if batch and not state["open"] and state["batch"] >= max_argv:
            batches.append(list(batch))
            batch.clear()
            state["batch"] = 0

    def add(stmt: str, n: int) -> None:
        if cur and state["size"] + n > WRITE_CHUNK:
            flush()
        cur.append(stmt)
        state["size"] += n

    for remote, local in files:
        with open(local, "rb") as f:
            data = f.read()
        add("from binascii import a2b_base64 as _wc_a\n_wc_f = open(%r, 'wb')" % remote, 0)
        state["open"] = True
        for i in range(0, len(data), WRITE_CHUNK):
            piece = data[i:i + WRITE_CHUNK]
            add("_wc_f.write(_wc_a(%r))" % binascii.b2a_base64(piece, newline=False).decode(),
                len(piece))
        add("_wc_f.close()", 0)
        state["open"] = False
        if state["batch"] + sum(map(len, cur)) >= max_argv:
            flush()
    flush()
    if batch:
        batches.append(batch)
    return batches


def parse_probe(out: str) -> dict[str, Any] | None:
    """The probe's answer in an mpremote run's output, or None."""
    for line in out.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):].strip())
    return None


def mpremote_cmd() -> list[str]:
    return [sys.executable, "-m", "mpremote"]


def chain(*commands: Sequence[str]) -> list[str]:
    """Join mpremote commands with '+': chain(["exec", "x"], ["reset"]) -> [..., "+", "reset"]."""
    out: list[str] = []
    for c in commands:
        if out:
            out.append("+")
        out.extend(c)
    return out


def is_url(port: str) -> bool:
    return "://" in port


def port_state(port: str) -> str | None:
    """Why a port cannot be used: 'missing', 'refused', 'busy', or None if it looks usable.

    Socket URLs are checked with a TCP connect; device paths with exists() and an advisory lock
    (`wardcall monitor` holds an exclusive lock, as pyserial's exclusive=True does).
    """
    if is_url(port):
        u = urlsplit(port)
        if u.scheme not in ("socket", "rfc2217"):
            return None
        try:
            s = socket.create_connection((u.hostname, u.port), timeout=2)
        except ConnectionRefusedError:
            return "refused"
        except (OSError, ValueError):
            return "missing"
        s.close()
        return None
    if not os.path.exists(port):
        return "missing"
    try:
        fd = os.open(port, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        return "busy" if e.errno in (errno.EBUSY, errno.EACCES, errno.EPERM) else "missing"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        return "busy"
    finally:
        os.close(fd)
    return None


def no_board(port: str, why: str) -> DeployError:
    if is_url(port):
        fix = ("start the emulated board (boards/emulator) or check the port number in %s" % port)
    else:
        fix = ("plug the board in with a data USB cable, check the port name "
               "(`wardcall monitor --list`), and on Linux check you are in the 'dialout' group")
    return DeployError("no board on %s: %s" % (port, why), code="no-board", port=port, fix=fix)


def busy(port: str, why: str) -> DeployError:
    return DeployError(
        "board on %s is busy: %s" % (port, why),
        code="busy",
        port=port,
        fix="close other programs using it (wardcall monitor, mpremote, screen, Thonny); if the "
        "terminal app is running and does not stop, hold the presence button while pressing reset "
        "(maintenance mode, see docs/DEPLOY.md) and retry",
    )


class Board:
    """One board on one port, driven by mpremote subprocesses."""

    def __init__(self, port: str, timeout: float = 60, log: Callable[[str], None] | None = None) -> None:
        self.port = port
        self.timeout = timeout
        self.log = log or (lambda msg: None)
        self.calls: list[list[str]] = []  # every mpremote argv run, for tests and --verbose

    def run(self, args: Sequence[str], timeout: float | None = None, retries: int = 0, retry_delay: float = 1.0,
            retry_on: Sequence[str] = ("no-board", "busy", "no-repl")) -> str:
        """Run `mpremote connect PORT <args>`; return stdout or raise a DeployError.

        Failures whose code is in retry_on are retried `retries` times, retry_delay s apart."""
        argv = mpremote_cmd() + ["connect", self.port] + list(args)
        attempt = 0
        while True:
            self.calls.append(argv)
            self.log("mpremote " + " ".join(a if len(a) < 60 else a[:57] + "..." for a in argv[3:]))
            try:
                proc = subprocess.run(
                    argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    timeout=timeout or self.timeout, stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                err = busy(self.port, "mpremote did not finish within %ss" % (timeout or self.timeout))
            else:
                if proc.returncode == 0:
                    return proc.stdout
                err = self._explain(proc.stdout, proc.stderr)
            if attempt >= retries or err.code not in retry_on:
                raise err
            attempt += 1
            time.sleep(retry_delay)

    def _explain(self, out: str, err: str) -> DeployError:
        text = (err or "").strip()
        low = text.lower()
        if "failed to access" in low or "could not open port" in low:
            state = port_state(self.port)
            if state == "busy":
                return busy(self.port, "another program holds the port")
            if state in ("missing", "refused"):
                return no_board(self.port, "nothing answers" if state == "refused"
                                else "the port does not exist")
            return busy(self.port, "mpremote could not open the port (%s)" % text.splitlines()[-1])
        if is_url(self.port) and ("socket disconnected" in low or "connection reset" in low):
            return busy(self.port, "the board closed the connection (another program is "
                        "probably connected to it)")
        if "could not enter raw repl" in low or "timeout waiting" in low:
            return DeployError(
                "board on %s does not answer at the MicroPython REPL" % self.port,
                code="no-repl",
                port=self.port,
                fix="is MicroPython flashed (`wardcall flash`)? If the terminal app holds the "
                "board, start it in maintenance mode (docs/DEPLOY.md) and retry",
            )
        if "traceback" in (out + err).lower() or "error" in low:
            tail = [l for l in (out + "\n" + err).strip().splitlines() if l.strip()]
            return DeployError(
                "command failed on the board on %s: %s" % (self.port, tail[-1] if tail else text),
                code="board-error",
                port=self.port,
                fix="run `wardcall monitor --port %s` to see the console" % self.port,
            )
        return DeployError("mpremote failed on %s: %s" % (self.port, text or "no output"),
                           code="mpremote", port=self.port)

    def probe(self, paths: Iterable[str], flag: str, retries: int = 0) -> dict[str, Any]:
        out = self.run(["exec", probe_script(paths, flag)], retries=retries)
        info = parse_probe(out)
        if info is not None:
            return info
        raise DeployError(
            "board on %s did not answer the probe (got %r)" % (self.port, out[-200:]),
            code="not-micropython",
            port=self.port,
            fix="is MicroPython running on it? Flash it with `wardcall flash`",
        )
