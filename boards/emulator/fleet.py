"""CPython API for the emulated ESP32 fleet.

    from boards.emulator.fleet import Fleet      # repo root on sys.path
    fleet = Fleet.start(workdir)                  # starts the supervisor subprocess
    b = fleet.add_board("bed-1", flash_dir=workdir / "bed-1")
    b.wait_console("ready", timeout=5)
    b.tap("call", ms=150)
    b.wait_output("lamp_reassure", 1, timeout=2)
    fleet.stop()

Everything is synchronous and thread-safe (one control connection per thread). Inside an
asyncio test, use `await b.aio.wait_output(...)` (any Board/Fleet method, run in a thread) so
the event loop keeps serving.
"""
import asyncio
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUPERVISOR = HERE / "fleet_server.py"


class EmulatorError(RuntimeError):
    pass


def make_flash(flash_dir, files=None, board_lib=True):
    """Create (or update) a board's flash folder.

    files: {"main.py": b"..." | "text" | Path, "lib/x.py": ...}; a Path may be a folder (copied).
    board_lib: also install boards/emulator/board.py as lib/board.py (the firmware imports it).
    """
    d = Path(flash_dir)
    d.mkdir(parents=True, exist_ok=True)
    if board_lib:
        (d / "lib").mkdir(exist_ok=True)
        shutil.copyfile(HERE / "board.py", d / "lib" / "board.py")
    for rel, content in (files or {}).items():
        dst = d / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            if content.is_dir():
                shutil.copytree(content, dst, dirs_exist_ok=True)
            else:
                shutil.copyfile(content, dst)
        elif isinstance(content, str):
            dst.write_text(content)
        else:
            dst.write_bytes(bytes(content))
    return d


def _hwid(hwid):
    """add_board's hwid as the control op's uid argument (hex text), or nothing."""
    if hwid is None:
        return {}
    return {"uid": bytes(hwid).hex() if isinstance(hwid, (bytes, bytearray)) else str(hwid)}


class _Aio:
    """`await obj.aio.method(...)`: run a blocking method in a thread."""

    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name):
        fn = getattr(self._obj, name)

        async def call(*a, **kw):
            return await asyncio.to_thread(fn, *a, **kw)

        return call


class Fleet:
    def __init__(self, proc, port, workdir, log_path):
        self.proc = proc
        self.port = port
        self.workdir = Path(workdir)
        self.log_path = log_path
        self._local = threading.local()
        self._socks = []
        self._lock = threading.Lock()
        self._ids = 0
        self._boards = {}
        self.aio = _Aio(self)

    # -- lifecycle
    @classmethod
    def start(cls, workdir, *, micropython=None, timeout=20.0, python=None):
        """Start a supervisor for a fleet; its log goes to workdir/supervisor.log."""
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        log_path = workdir / "supervisor.log"
        cmd = [python or sys.executable, str(SUPERVISOR), "--workdir", str(workdir),
               "--watch-stdin", "--log", str(log_path)]
        if micropython:
            cmd += ["--micropython", micropython]
        errf = open(workdir / "supervisor.stderr", "wb")
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf,
                                cwd=str(workdir), close_fds=True)
        errf.close()
        line = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in line:
            rem = deadline - time.monotonic()
            if rem <= 0 or proc.poll() is not None:
                proc.kill()
                raise EmulatorError(
                    "supervisor did not start: "
                    + (workdir / "supervisor.stderr").read_text(errors="replace")[-2000:]
                )
            r, _, _ = select.select([proc.stdout], [], [], rem)
            if r:
                chunk = os.read(proc.stdout.fileno(), 256)
                if not chunk:
                    continue
                line += chunk
        first = line.split(b"\n", 1)[0].decode()
        if not first.startswith("READY "):
            proc.kill()
            raise EmulatorError(f"unexpected supervisor output {first!r}")
        return cls(proc, int(first.split()[1]), workdir, log_path)

    def stop(self, timeout=10.0):
        """Stop every board and the supervisor (bounded; kills after timeout)."""
        if self.proc is None:
            return
        try:
            self.request("shutdown", _timeout=timeout)
        except Exception:
            pass
        try:
            self.proc.stdin.close()
        except Exception:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        try:
            self.proc.stdout.close()
        except Exception:
            pass
        with self._lock:
            for s in self._socks:
                try:
                    s.close()
                except OSError:
                    pass
            self._socks.clear()
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- control channel
    def _conn(self):
        c = getattr(self._local, "conn", None)
        if c is None:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = self._local.conn = (s, s.makefile("rb"))
            with self._lock:
                self._socks.append(s)
        return c

    def request(self, op, _timeout=30.0, **args):
        """Send one control request and return its result (raises EmulatorError)."""
        if self.proc is None:
            raise EmulatorError("fleet stopped")
        with self._lock:
            self._ids += 1
            rid = self._ids
        s, f = self._conn()
        s.settimeout(_timeout)
        s.sendall(json.dumps(dict(args, op=op, id=rid)).encode() + b"\n")
        for _ in range(1000):
            line = f.readline()
            if not line:
                raise EmulatorError("supervisor closed the control channel")
            resp = json.loads(line)
            if resp.get("id") == rid:
                break
        else:
            raise EmulatorError("no response")
        if not resp.get("ok"):
            raise EmulatorError(f"{op}: {resp.get('error')}")
        return resp.get("result")

    # -- boards
    def add_board(self, name, flash_dir=None, *, files=None, heapsize=None,
                  wrap_s=20, wifi=True, cord="ok", connect_ms=100, ssid=None, key=None,
                  boot=True, hwid=None):
        """Add a board and power it on.

        flash_dir: the board's flash folder (default workdir/<name>); files: written into it
        first with make_flash (lib/board.py is always installed). heapsize: MicroPython -X
        heapsize (e.g. "80wK"; None: the supervisor's ESP32-like default, docs/EMULATOR.md).
        wrap_s: ticks_ms()/ticks_us() start this many seconds before their 2**30 wrap.
        wifi: radio link initially up. cord: "ok" | "pulled" | "unplugged".
        connect_ms: time a WLAN.connect() takes. ssid/key: if given, only these are accepted.
        hwid: what machine.unique_id() returns (bytes or hex text, 1 to 32 bytes); default: 6
        random bytes of this board's own, kept across its resets and power cycles, so every
        board added is a different physical board. Give two boards one hwid for a cloned board.
        """
        flash_dir = Path(flash_dir) if flash_dir else self.workdir / name
        make_flash(flash_dir, files)
        sized = {} if heapsize is None else {"heapsize": heapsize}
        info = self.request("add_board", name=name, flash=str(flash_dir), **sized,
                            wrap_s=wrap_s, wifi=wifi, cord=cord, connect_ms=connect_ms,
                            ssid=ssid, key=key, boot=boot, **_hwid(hwid))
        b = Board(self, name, flash_dir, info)
        self._boards[name] = b
        return b

    def board(self, name):
        return self._boards[name]

    def boards(self):
        return list(self._boards.values())

    def remove_board(self, name):
        self.request("remove_board", name=name)
        self._boards.pop(name, None)

    def stats(self):
        return self.request("stats")


class Board:
    def __init__(self, fleet, name, flash_dir, info):
        self.fleet = fleet
        self.name = name
        self.flash_dir = Path(flash_dir)
        self.repl_port = info["repl_port"]
        self.repl_url = f"socket://127.0.0.1:{self.repl_port}"
        self.pty = info.get("pty")
        self.hwid = bytes.fromhex(info["hwid"])      # what its machine.unique_id() returns
        self.aio = _Aio(self)

    def __repr__(self):
        return f"<Board {self.name} {self.repl_url}>"

    def _r(self, op, **kw):
        return self.fleet.request(op, name=self.name, **kw)

    # -- inputs
    def press(self, pin, settle_ms=0, timeout=10.0):
        """Close the contact of an input ("call", "presence", ..., or "gpio5"): reads 0. With
        settle_ms, return once the board's code has read it closed at two reads settle_ms apart
        (EmulatorError if not within timeout s): a debounced input loop has then taken it."""
        self._r("input", pin=pin, closed=True, settle_ms=settle_ms, timeout=timeout,
                _timeout=timeout + 30)

    def release(self, pin, settle_ms=0, timeout=10.0):
        """Open the contact again; settle_ms as for press."""
        self._r("input", pin=pin, closed=False, settle_ms=settle_ms, timeout=timeout,
                _timeout=timeout + 30)

    def tap(self, pin, ms=150, settle_ms=60, timeout=10.0):
        """Press for ms milliseconds (timed by the supervisor), then release, as a person does:
        the press lasts until the board's code has read it closed at two reads settle_ms apart,
        and tap returns once it has read the release so (the firmware debounces 30 ms), so two
        taps are two presses however much the board lags. settle_ms=0: timed only."""
        self._r("tap", pin=pin, ms=ms, settle_ms=settle_ms, timeout=timeout,
                _timeout=ms / 1000 + 2 * timeout + 30)

    def cord(self, state):
        """"ok" (plugged, not pulled), "pulled" or "unplugged"."""
        self._r("cord", state=state)

    def inputs(self):
        return self._r("inputs")

    # -- the badge reader (a virtual MFRC522 on the board's SPI bus)
    def present_badge(self, uid_hex, *more):
        """Put a card (its UID in hex: 4, 7 or 10 bytes) on the reader, in place of any there;
        more UIDs: several cards at once (the reader resolves the collision)."""
        return self._r("badge", uids=[uid_hex, *more])

    def remove_badge(self):
        """Take every card off the reader."""
        return self._r("badge", uids=[])

    def badge_reader(self, state):
        """The reader's chip: "ok", "dead" (MISO reads 0x00) or "floating" (0xFF)."""
        return self._r("badge", reader=state)

    # -- outputs
    def output(self, pin):
        """Current value: 0/1 for a Pin, duty_u16 for a PWM (0 when off), None if undriven."""
        return self._r("output", pin=pin)["value"]

    def pwm(self, pin):
        """{"value": duty_u16, "freq": Hz or None, "t": monotonic s}."""
        return self._r("output", pin=pin)

    def outputs(self):
        return self._r("outputs")

    def history(self, pin, since=None, detail=False):
        """[(t, value), ...] with t in time.monotonic() seconds (the board's own clock).
        detail=True: [(t, value, freq), ...]. since: only entries at or after this time."""
        h = self._r("history", pin=pin, since=since)
        rows = next(iter(h.values())) if h else []
        return [tuple(e) if detail else (e[0], e[1]) for e in rows]

    def histories(self):
        return {k: [(e[0], e[1]) for e in v] for k, v in self._r("history").items()}

    def wait_output(self, pin, value, timeout=5.0):
        """Wait until the output equals value (True/False: truthy/falsy; None: undriven)."""
        r = self._r("wait_output", pin=pin, value=value, timeout=timeout, _timeout=timeout + 30)
        if not r["ok"]:
            raise TimeoutError(
                f"{self.name}: {pin} stayed {r['value']!r}, wanted {value!r} "
                f"within {timeout}s\n--- console tail ---\n{self.console()[-1500:]}"
            )
        return True

    # -- radio, power
    def wifi(self, up):
        """Cut (False) or restore (True) the radio link."""
        self._r("wifi", up=bool(up))

    def fault(self, delay_ms=None, udp_loss=None):
        """Fault injection: TCP delay per chunk (ms) through the proxy, UDP loss rate 0..1."""
        return self._r("fault", delay_ms=delay_ms, udp_loss=udp_loss)

    def capture(self, on=True):
        """Keep (afresh) or stop keeping the bytes of this board's TCP connections, as the radio
        proxy relays them: what crosses the air."""
        return self._r("capture", on=bool(on))

    def captured(self):
        """[{"b2r": bytes board -> host, "r2b": bytes host -> board}], one per connection."""
        import base64
        return [{d: base64.b64decode(c[d]) for d in c} for c in self._r("captured")]

    def power_cycle(self, off_ms=0):
        """Kill the interpreter and cold-start it (reset_cause() == PWRON_RESET)."""
        return self._r("power_cycle", off_ms=off_ms, _timeout=off_ms / 1000 + 30)

    def power(self, on):
        return self._r("power", on=bool(on))

    def reset(self):
        """Press the EN button (reset_cause() == HARD_RESET)."""
        self._r("reset")

    # -- console, state
    def console(self, since=0):
        """Everything the board printed (bounded ring buffer), from offset `since`."""
        return self._r("console", since=since)["text"]

    def console_mark(self):
        """Offset of the console's end now: pass as since= to look only at newer output."""
        return self._r("console")["end"]

    def wait_console(self, text, timeout=5.0, since=0, whole_line=True):
        """Wait until `text` appears in the console after offset `since` and the line holding it
        is complete (whole_line=False: as soon as it appears, for a prompt); returns the console."""
        r = self._r("wait_console", text=text, timeout=timeout, since=since,
                    whole_line=bool(whole_line), _timeout=timeout + 30)
        if not r["ok"]:
            raise TimeoutError(
                f"{self.name}: {text!r} not printed within {timeout}s\n"
                f"--- console tail ---\n{r['text'][-1500:]}"
            )
        return r["text"]

    def state(self):
        """{"alive", "phase" (off|booting|running|repl|resetting), "raw_repl", "reset_cause",
        "starts", "link", "sta", "net_up", "pid", ...}"""
        return self._r("state")

    def wait_state(self, phase, timeout=5.0):
        r = self._r("wait_state", phase=phase, timeout=timeout, _timeout=timeout + 30)
        if not r["ok"]:
            raise TimeoutError(f"{self.name}: phase {r['phase']!r}, wanted {phase!r}")
        return r

    def heap(self, timeout=1.0):
        """{"free", "alloc", "heapsize"} from gc, or None if the board did not answer."""
        return self._r("heap", timeout=timeout, _timeout=timeout + 30)

    def send_repl(self, data):
        """Type into the board's REPL (str, latin-1)."""
        self._r("send_repl", data=data)
