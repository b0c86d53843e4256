"""A minimal stand-in for an emulated board, for the deploy tests alone: the MicroPython unix port
on a pty, its REPL served on socket://127.0.0.1:PORT, a flash folder mounted at "/" (VfsPosix), and
the two resets that mpremote needs (see shared notes "mpremote against an emulated board"):

- Ctrl-D in the raw REPL ends the unix interpreter (exit 0): restart it, print "soft reboot", run
  boot.py, and enter the raw REPL again, as an ESP32 does.
- machine.reset() exits with code 99: restart, print a banner, run boot.py and main.py.

The real fleet emulator lives in boards/emulator/ (its fixtures in tests/fixtures/boards.py); the
deploy tests prefer it when it is there.
"""
import os
import pty
import select
import socket
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

MICROPYTHON = str(Path(sys.executable).with_name("micropython"))
RESET_CODE = 99

START = r"""
import sys, os, vfs
sys.path.insert(0, {shims!r})
import machine
sys.path.pop(0)
vfs.umount('/')
vfs.mount(vfs.VfsPosix({flash!r}), '/')
os.chdir('/')
sys.path[:] = ['', '/lib']
def _run(name):
    try:
        os.stat(name)
    except OSError:
        return
    try:
        exec(open(name).read(), {{'__name__': '__main__'}})
    except KeyboardInterrupt:
        pass
    except Exception as e:
        sys.print_exception(e)
if {hard!r}:
    print('MicroPython emulated board (minibridge)')
_run('boot.py')
if {hard!r}:
    _run('main.py')
del _run
"""

MACHINE = """
import sys
def reset():
    sys.exit(%d)
def soft_reset():
    sys.exit(0)
def unique_id():
    return b'\\x0a\\x0b\\x0c\\x0d\\x0e\\x0f'
""" % RESET_CODE


class MiniBoard:
    def __init__(self, workdir, mpy=None):
        self.dir = Path(workdir)
        self.flash = self.dir / "flash"
        self.flash.mkdir(parents=True, exist_ok=True)
        self.shims = self.dir / "shims"
        self.shims.mkdir(exist_ok=True)
        (self.shims / "machine.py").write_text(MACHINE)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = "socket://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.proc = None
        self.master = None
        self.client = None
        self.stop_flag = False
        self.resets = {"soft": 0, "hard": 0}
        self._start(hard=True)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _start(self, hard, raw=False):
        if self.master is not None:
            os.close(self.master)
        script = self.dir / "start.py"
        script.write_text(START.format(shims=str(self.shims), flash=str(self.flash), hard=hard))
        master, slave = pty.openpty()
        tty.setraw(slave)
        self.proc = subprocess.Popen([MICROPYTHON, "-i", str(script)], stdin=slave, stdout=slave,
                                     stderr=slave, close_fds=True, cwd=str(self.dir))
        os.close(slave)
        self.master = master
        if raw:
            os.write(master, b"\r\x01")

    def _send(self, data):
        if self.client is not None:
            try:
                self.client.sendall(data)
            except OSError:
                self.client = None

    def _loop(self):
        while not self.stop_flag:
            fds = [self.listener, self.master] + ([self.client] if self.client else [])
            try:
                ready, _, _ = select.select(fds, [], [], 0.05)
            except (OSError, ValueError):
                ready = []
            if self.listener in ready:
                conn, _ = self.listener.accept()
                if self.client is not None:
                    conn.close()  # one program at a time, like a serial port
                else:
                    self.client = conn
            if self.client is not None and self.client in ready:
                try:
                    data = self.client.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    self.client.close()
                    self.client = None
                else:
                    try:
                        os.write(self.master, data)
                    except OSError:
                        pass
            if self.master in ready:
                try:
                    out = os.read(self.master, 4096)
                except OSError:
                    out = b""
                if out:
                    self._send(out)
            code = self.proc.poll()
            if code is not None:
                try:  # drain what it printed last
                    while select.select([self.master], [], [], 0.02)[0]:
                        out = os.read(self.master, 4096)
                        if not out:
                            break
                        self._send(out)
                except OSError:
                    pass
                if self.stop_flag:
                    break
                if code == RESET_CODE:
                    self.resets["hard"] += 1
                    self._start(hard=True)
                else:
                    self.resets["soft"] += 1
                    self._send(b"soft reboot\r\n")
                    self._start(hard=False, raw=True)

    def close(self):
        self.stop_flag = True
        self.thread.join(timeout=5)
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for s in (self.client, self.listener):
            if s is not None:
                s.close()
        if self.master is not None:
            os.close(self.master)
