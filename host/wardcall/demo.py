"""`wardcall demo`: a whole ward on this machine — the real host plus emulated bed terminals that
run the real firmware in the real MicroPython interpreter — for trying wardcall out (`make run`).

Everything lives in one folder (default var/demo/, made afresh each run). The demo reads simple
commands on its standard input so you can press buttons on the emulated beds while you watch
the console in a browser, and present a nurse's badge at a bed. The ward has a shift with three
nurses (one the charge nurse), each with a badge, assigned to its beds, so calls are routed to
their pocket consoles (`/pocket/`). One demo at a time per folder: a second one refuses (exit status 2).
It stops the host and the boards on quit, Ctrl-C, SIGTERM and SIGHUP, and when the host exits.
"""
from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import aiohttp

from .checkout import REPO
from .client import ApiError, WardApi
from .config import load_config
from .deploy.build import stage
from .deploy.ward_bridge import ota_key
from .ota import signing
from .passwords import hash_password
from .protocol import otaproto
from .provision import provision
from .trust import trust_ward

DEMO_USER = ("anna", "anna")     # demo only: a real ward sets its own users with `wardcall passwd`
# the shift's care staff, each with a badge (login = password): two nurses and the charge nurse
DEMO_STAFF = {"anna": ("Anna Berg", "nurse", "04a1b2c3"), "ben": ("Ben Okafor", "nurse", "04b2c3d4"),
              "carla": ("Carla Diaz", "charge_nurse", "04c3d4e5")}
CHARGE_NURSE = "carla"
# and one login for each other role, so every part of the console can be tried
DEMO_USERS = {**{login: (name, role) for login, (name, role, _) in DEMO_STAFF.items()},
              "tech": ("Demo Technician", "technician"), "admin": ("Demo Administrator", "admin")}
# the demo's routing: shorter waits than a ward's defaults, so passing a call on is seen soon
DEMO_WAIT_S = {"code_blue": 0, "staff_assist": 0, "bathroom": 20, "patient": 30, "technical": 60}
READY_TIMEOUT_S = 20.0
ONLINE_TIMEOUT_S = 30.0
LOCK_NAME = "demo.lock"          # in the demo folder: who runs there (flock, so a crash frees it)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
HOST_EXITED = signal.SIGUSR1     # the host watcher wakes the main thread (blocked in input()) with it
BUTTONS = ("call", "presence", "assist", "code")
SHOWN_CHARS = 40                 # of a word the user typed, in an error line
BADGE_HOLD_S = 0.5               # a badge held to a bed's reader (it looks every 0.1 s)


class DemoError(Exception):
    """The demo cannot start or cannot go on: one line for the user, and the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------------------------
# the prompt's commands


@dataclass(frozen=True)
class Verb:
    usage: str                       # as the usage line shows it
    what: str                        # for help
    choices: tuple[str, ...] = ()    # the values of its second word, if it takes one
    needs_bed: bool = True


VERBS: dict[str, Verb] = {
    "call": Verb("call BED", "tap the patient call button"),
    "assist": Verb("assist BED", "tap the staff assist button"),
    "presence": Verb("presence BED", "tap the green presence button"),
    "code": Verb("code BED", "tap the code blue button"),
    "hold": Verb("hold BED " + "|".join(BUTTONS), "hold a button 2.5 s (code blue is cleared by holding code)", BUTTONS),
    "cord": Verb("cord BED pulled|ok|unplugged", "the bathroom pull-cord", ("pulled", "ok", "unplugged")),
    "wifi": Verb("wifi BED off|on", "cut or restore the bed's Wi-Fi", ("off", "on")),
    "power": Verb("power BED", "power-cycle the bed"),
    "lamps": Verb("lamps BED", "show the bed's lamps and buzzer"),
    "badge": Verb("badge BED " + "|".join(DEMO_STAFF), "a nurse's badge at the bed: she is in that room (again: out)", tuple(DEMO_STAFF)),
    "help": Verb("help", "this list", needs_bed=False),
    "quit": Verb("quit", "stop the demo ward (also: exit, Ctrl-C, Ctrl-D)", needs_bed=False),
}
ALIASES = {"exit": "quit", "?": "help"}
HELP = ("commands (BED is a bed's number in the list above, or its name such as bed-101-1):\n"
        + "".join(f"  {verb.usage:<36} {verb.what}\n" for verb in VERBS.values()))


@dataclass(frozen=True)
class Command:
    verb: str
    bed: str | None = None           # the device id
    arg: str | None = None           # one of its Verb's choices


class UsageError(ValueError):
    """A prompt line that is not a command: its one-line message says what is wrong."""


def _shown(word: str) -> str:
    return repr(word if len(word) <= SHOWN_CHARS else word[:SHOWN_CHARS] + "…")


def _bed(ref: str, beds: Sequence[str]) -> str:
    if ref.isdecimal() and len(ref) <= 6 and 1 <= int(ref) <= len(beds):
        return beds[int(ref) - 1]
    if ref in beds:
        return ref
    if not beds:
        raise UsageError("there are no beds")
    numbers, names = ("1", beds[0]) if len(beds) == 1 else (f"1-{len(beds)}", f"{beds[0]} … {beds[-1]}")
    raise UsageError(f"no bed {_shown(ref)} (beds: {numbers}, or by name: {names})")


def parse_command(line: str, beds: Sequence[str]) -> Command | None:
    """One prompt line as a Command (None for an empty line); UsageError with one line of text
    for anything else. Pure: it presses nothing."""
    words = line.split()
    if not words:
        return None
    name = ALIASES.get(words[0].lower(), words[0].lower())
    verb = VERBS.get(name)
    if verb is None:
        raise UsageError(f"unknown command {_shown(words[0])}; type help")
    args = words[1:]
    if len(args) != int(verb.needs_bed) + int(bool(verb.choices)):
        raise UsageError(f"usage: {verb.usage}")
    bed = _bed(args[0], beds) if verb.needs_bed else None
    arg = None
    if verb.choices:
        arg = args[1].lower()
        if arg not in verb.choices:
            raise UsageError(f"usage: {verb.usage}   ({_shown(args[1])} is not one of {', '.join(verb.choices)})")
    return Command(name, bed, arg)


# ----------------------------------------------------------------------------------------------
# the demo folder and its lock


def firmware_files(cfg: dict[str, Any] | None, compiled: bool = True, update_key: str | None = None) -> dict[str, Any]:
    """A terminal's flash image for the emulator, staged exactly as `wardcall deploy` stages it
    for a real board (lib/*.mpy from mpy-cross, boot.py and main.py as source) plus its
    config.json and, given its text, the ward's update key (otakey.json). The emulator installs
    its own lib/board.py, so the staged board module is left out. compiled=False gives the
    sources instead (as `wardcall deploy --no-compile`)."""
    staged = stage("emulator", compile=compiled)
    files: dict[str, Any] = {remote.lstrip("/"): local for remote, local in staged.items()
                             if remote not in ("/lib/board.mpy", "/lib/board.py")}
    if cfg is not None:
        files["config.json"] = json.dumps(cfg)
    if update_key is not None:
        files[otaproto.KEY_FILE] = update_key
    return files


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _write_holder(fd: int, holder: dict[str, Any]) -> None:
    data = json.dumps(holder).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def take_lock(folder: Path, console: str) -> int:
    """Lock the demo folder for this process: fcntl.flock on FOLDER/demo.lock, which the kernel
    releases when the process ends however it ends (a crashed demo never blocks the next). The
    host inherits the lock's file, so a host left running by a killed demo still holds it.
    Raises DemoError (status 2) naming who holds it; returns the lock's file descriptor."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        console_url = holder.get("console", "?")
        if not _alive(holder.get("pid")) and _alive(holder.get("host_pid")):
            raise DemoError(f"the host of a demo that was killed still runs in {folder} (pid {holder['host_pid']}, "
                            f"console {console_url}); stop it (kill {holder['host_pid']}) and start again", 2) from None
        raise DemoError(f"a demo is already running in {folder} (pid {holder.get('pid', '?')}, console {console_url}); "
                        "quit it first, or start this one with another --dir and --api-port", 2) from None
    _write_holder(fd, {"pid": os.getpid(), "console": console})
    return fd


def _clear(folder: Path) -> None:
    """Empty the folder for a fresh demo, keeping only the lock this process holds."""
    for entry in folder.iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _rooms(beds: int) -> list[tuple[str, str]]:
    """(room, bed) for each terminal: two beds a room, rooms 101, 102, …"""
    return [(str(101 + i // 2), str(1 + i % 2)) for i in range(beds)]


def write_ward(folder: Path, beds: int, api_port: int, name: str = "Demo ward", extra_toml: str = "") -> Path:
    places = _rooms(beds)
    rooms = sorted({room for room, _ in places})
    lines = [
        "# The demo ward written by `wardcall demo`; a real ward: see docs/HOST.md",
        "[ward]", f'name = "{name}"', 'database = "ward.db"', 'secrets = "ward.secrets.json"', "",
        "[network]", 'terminal_host = "127.0.0.1"', "terminal_port = 0",
        'discovery_host = "127.0.0.1"', "discovery_port = 0",
        'api_host = "127.0.0.1"', f"api_port = {api_port}", "",
    ]
    for login, (name, role) in DEMO_USERS.items():
        lines += [f"[users.{login}]", f'name = "{name}"', f'password = "{hash_password(login)}"', f'role = "{role}"']
        if login in DEMO_STAFF:
            lines.append(f'badge = "{DEMO_STAFF[login][2]}"')
        lines.append("")
    lines += ["[routing.wait_s]", *(f"{kind} = {seconds}" for kind, seconds in DEMO_WAIT_S.items()), ""]
    for room in rooms:
        room_beds = ", ".join(f'"{bed}"' for r, bed in places if r == room)
        lines += [f"[rooms.{room}]", f'name = "Room {room}"', f"beds = [{room_beds}]", ""]
    path = folder / "ward.toml"
    path.write_text("\n".join(lines) + extra_toml)
    return path


def demo_assignment(rooms: Sequence[str]) -> dict[str, Any]:
    """This shift's assignment: the rooms alternate between the two nurses as primary, each the
    other's buddy; the charge nurse has the shift (POST /api/assignment, docs/HOST.md)."""
    nurses = [login for login, (_, role, _) in DEMO_STAFF.items() if role == "nurse"]
    sets = []
    for i, room in enumerate(rooms):
        primary, buddy = nurses[i % 2], nurses[(i + 1) % 2]
        sets.append({"rooms": [room], "primary": primary, "secondary": buddy})
    return {"charge": CHARGE_NURSE, "set": sets}


async def assign_shift(api_url: str, rooms: Sequence[str]) -> dict[str, Any]:
    """Log in as the charge nurse and assign this shift (as she would on the console)."""
    async with WardApi(api_url) as api:
        await api.login(CHARGE_NURSE, CHARGE_NURSE)
        return await api.post("/api/assignment", demo_assignment(rooms))


def start_server(config: Path, folder: Path, lock_fd: int | None = None) -> tuple[subprocess.Popen, dict[str, Any]]:
    """`wardcall serve` for the demo, in its own session (Ctrl-C and a closed terminal reach the
    demo, which stops the host in order), holding the demo's lock file."""
    ready = folder / "ready.json"
    log_path = folder / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "wardcall.cli", "serve", "--config", str(config),
                                 "--ready-file", str(ready)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                pass_fds=() if lock_fd is None else (lock_fd,))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"the host did not start (exit status {proc.returncode}); its log: {log_path}")
        if ready.exists() and ready.stat().st_size:
            return proc, json.loads(ready.read_text())
        time.sleep(0.1)
    proc.kill()
    proc.wait(5)
    raise DemoError(f"the host did not start within {READY_TIMEOUT_S:.0f} s; its log: {log_path}")


def _exit_text(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


# ----------------------------------------------------------------------------------------------
# the demo ward


class Demo:
    """The demo ward. on_host_exit is called (from a watcher thread) if the host exits while the
    demo runs; host_status then holds its exit status."""

    def __init__(self, folder: Path, beds: int, api_port: int, on_host_exit: Callable[[], None] | None = None,
                 name: str = "Demo ward", extra_toml: str = "") -> None:
        self.folder = folder
        self.name = name
        self.extra_toml = extra_toml          # the hospital demo's [federation] (federation/demo.py)
        self.beds = beds
        self.api_port = api_port
        self.on_host_exit = on_host_exit
        self.server: subprocess.Popen | None = None
        self.fleet = None
        self.boards: dict[str, Any] = {}
        self.host_status: int | None = None
        self.assignment: dict[str, Any] | None = None
        self._lock_fd: int | None = None
        self._stopping = False
        self.ca_path: Path | None = None          # the demo ward's CA certificate, once made

    @property
    def console_url(self) -> str:
        # HTTPS, as on a ward: the demo ward has its own CA, made at its first provisioning
        return f"https://127.0.0.1:{self.api_port}/"

    @property
    def pocket_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}/pocket/"

    @property
    def started(self) -> bool:
        return self._lock_fd is not None

    @property
    def config_path(self) -> Path:
        return self.folder / "ward.toml"

    def start(self) -> None:
        self._lock_fd = take_lock(self.folder, self.console_url)
        _clear(self.folder)
        config = write_ward(self.folder, self.beds, self.api_port, self.name, self.extra_toml)
        # the ward's update key pair, as `wardcall update keygen` makes it; its public half goes
        # on every bed as deploy puts it there, so `wardcall update` works on the demo
        ward = load_config(config)
        signing.generate_keys(ward.ota.private_key, ward.ota.public_key)
        update_key = ota_key(ward)
        devices = []
        for room, bed in _rooms(self.beds):
            device = f"bed-{room}-{bed}"
            cfg = provision(config, device, room, bed, self.folder / "provisioned" / device,
                            wifi_ssid="demo-ward", wifi_password="demo-ward", host="127.0.0.1")
            devices.append(cfg)
        trust_ward(ward)            # this process's own console clients (the shift assignment)
        self.ca_path = ward.tls.ca_cert
        print(f"wardcall demo: ward written to {config}; starting the host …", flush=True)
        self.server, ports = start_server(config, self.folder, self._lock_fd)
        _write_holder(self._lock_fd, {"pid": os.getpid(), "host_pid": self.server.pid, "console": self.console_url})
        self._watch_host(self.server)
        sys.path.insert(0, str(REPO))          # the emulator lives in boards/emulator
        from boards.emulator.fleet import Fleet
        self.fleet = Fleet.start(self.folder / "fleet")
        for cfg in devices:
            # the host chose free ports at start
            cfg["port"], cfg["discovery_port"] = ports["terminal_port"], ports["discovery_port"]
            name = cfg["device_id"]
            self.boards[name] = self.fleet.add_board(name, files=firmware_files(cfg, update_key=update_key))
        print(f"wardcall demo: {len(devices)} emulated bed terminals started; waiting for them to come online …", flush=True)
        self.assignment = self._assign(sorted({room for room, _ in _rooms(self.beds)}))
        self._wait_online()

    def _assign(self, rooms: list[str]) -> dict[str, Any] | None:
        try:
            return asyncio.run(assign_shift(self.console_url.rstrip("/"), rooms))
        except (ApiError, OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:     # the ward runs on; the grid on the console is still there
            print(f"wardcall demo: this shift is not assigned ({exc}); assign it on the console", flush=True)
            return None

    def _watch_host(self, server: subprocess.Popen) -> None:
        def watch() -> None:
            status = server.wait()
            if not self._stopping:
                self.host_status = status
                if self.on_host_exit is not None:
                    self.on_host_exit()
        threading.Thread(target=watch, name="demo-host-watch", daemon=True).start()

    def host_exit_text(self) -> str:
        how = _exit_text(self.host_status) if self.host_status is not None else "still running"
        return f"the host stopped ({how}); its log: {self.folder / 'server.log'}"

    def _wait_online(self) -> None:
        deadline = time.monotonic() + ONLINE_TIMEOUT_S
        pending = set(self.boards)
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                if "link: online" in self.boards[name].console():
                    pending.discard(name)
            time.sleep(0.2)
        if pending:
            print(f"wardcall demo: not yet online: {', '.join(sorted(pending))} (see {self.folder / 'fleet'})", flush=True)

    def stop(self) -> None:
        self._stopping = True
        if self.fleet is not None:
            self.fleet.stop()
            self.fleet = None
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(5)
        self.server = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def banner(self) -> str:
        names = "\n".join(f"  {i + 1}. {name}{self._assigned(name)}" for i, name in enumerate(self.boards))
        staff = "\n".join(f"    {login + ' / ' + login:<15} {name} ({role.replace('_', ' ')}), badge {badge}"
                           for login, (name, role, badge) in DEMO_STAFF.items())
        return (f"\nwardcall demo ward is running.\n"
                f"  console:  {self.console_url}   login: carla / carla (charge nurse: the assignment grid)"
                f"  (also tech / tech, admin / admin)\n"
                f"  phones:   {self.pocket_url}   the pocket console, one browser window (or phone) per nurse:\n"
                f"{staff}\n"
                f"  HTTPS with the demo ward's own CA: import {self.ca_path} into the browser as a\n"
                f"            certificate authority (`wardcall ca export` for a ward), or accept its warning once\n"
                f"  beds:\n{names}\n  files:    {self.folder}\n"
                f"  update the beds over the air (from another shell; --force: they already run this firmware):\n"
                f"            WARDCALL_HOST_PASSWORD=tech .venv/bin/wardcall update --config {self.config_path} "
                f"--all --host-user tech --force\n\n{HELP}")

    def _assigned(self, device: str) -> str:
        """ "   Anna Berg, buddy Ben Okafor" for a bed of the demo's assignment."""
        bed = next((b for b in (self.assignment or {}).get("beds", []) if f"bed-{b['room']}-{b['bed']}" == device), None)
        if bed is None:
            return ""
        name = {login: entry[0] for login, entry in DEMO_STAFF.items()}
        primary, buddy = name.get(bed.get("primary") or "", "nobody"), name.get(bed.get("secondary") or "", "")
        return f"   {primary}" + (f", buddy {buddy}" if buddy else "")

    def command(self, line: str) -> str:
        """Parse and carry out one prompt line; the reply to show (a usage line if it is not a
        command; "" for an empty line or quit, which the prompt handles)."""
        try:
            command = parse_command(line, list(self.boards))
        except UsageError as exc:
            return str(exc)
        if command is None or command.verb == "quit":
            return ""
        return self.execute(command)

    def execute(self, command: Command) -> str:
        if command.verb == "help":
            return HELP
        board = self.boards[command.bed]
        if command.verb in BUTTONS:
            board.tap(command.verb, ms=200)
            return f"{board.name}: {command.verb} pressed"
        if command.verb == "hold":
            board.tap(command.arg, ms=2500)
            return f"{board.name}: {command.arg} held"
        if command.verb == "cord":
            board.cord(command.arg)
            return f"{board.name}: cord {command.arg}"
        if command.verb == "wifi":
            board.wifi(command.arg == "on")
            return f"{board.name}: Wi-Fi {command.arg}"
        if command.verb == "power":
            board.power_cycle()
            return f"{board.name}: power-cycled"
        if command.verb == "badge":
            name, _, badge = DEMO_STAFF[command.arg]
            # a tap of the card: on the reader long enough for its polls, then away (the reader
            # counts the same card again once it has been away a second)
            board.present_badge(badge)
            time.sleep(BADGE_HOLD_S)
            board.remove_badge()
            return f"{board.name}: {name}'s badge presented"
        assert command.verb == "lamps", command
        return f"{board.name}: " + ", ".join(f"{name} {_level(out)}" for name, out in sorted(board.outputs().items()))


def _level(output: Any) -> str:
    """An output as a person reads it: on/off (a PWM buzzer sounds when its duty is not 0)."""
    value = output.get("value") if isinstance(output, dict) else output
    return "on" if value else "off"


# ----------------------------------------------------------------------------------------------
# `wardcall demo`


def _say(text: str, err: bool = False) -> None:
    """Print, unless the terminal is gone (after SIGHUP): stopping the ward matters more."""
    try:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)
    except OSError:
        pass


def _prompt(demo: Demo) -> None:
    """Read commands until quit, end of input, or (raised from a signal handler) a stop."""
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="replace")       # a stray byte is a bad command, not a crash
    while True:
        try:
            line = input("wardcall> ")
        except (EOFError, OSError):                    # Ctrl-D, or the terminal went away
            return
        try:
            command = parse_command(line, list(demo.boards))
        except UsageError as exc:
            _say(str(exc))
            continue
        if command is None:
            continue
        if command.verb == "quit":
            return
        try:
            reply = demo.execute(command)
        except Exception as exc:  # the emulator refused (a board restarting …): the ward goes on
            first = (str(exc).splitlines() or [""])[0]
            reply = f"{command.bed or command.verb}: not done ({type(exc).__name__}: {first})"
        _say(reply)


def run(args: argparse.Namespace) -> int:
    main_thread = threading.main_thread().ident
    demo = Demo(Path(args.dir).resolve(), args.beds, args.api_port,
                on_host_exit=lambda: signal.pthread_kill(main_thread, HOST_EXITED))

    def stop_signal(signum: int, frame: Any) -> None:
        raise DemoError(f"{signal.Signals(signum).name}: stopping the ward", 128 + signum)

    def host_exited(signum: int, frame: Any) -> None:
        raise DemoError(demo.host_exit_text(), 1)

    handlers = {sig: stop_signal for sig in STOP_SIGNALS}
    handlers[HOST_EXITED] = host_exited
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    status = 0
    try:
        demo.start()
        _say(demo.banner())
        if sys.stdin is not None and sys.stdin.isatty():
            _prompt(demo)
        else:
            while True:                                # no terminal: run until a signal or the host's exit
                time.sleep(3600)
    except DemoError as exc:
        _say(f"wardcall demo: {exc}", err=True)
        status = exc.status
    except KeyboardInterrupt:
        pass
    finally:
        for sig in (*handlers, signal.SIGINT):         # stopping is not to be interrupted
            signal.signal(sig, signal.SIG_IGN)
        if demo.started:
            _say("\nwardcall demo: stopping …")
        demo.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return status


def register(subparsers: argparse._SubParsersAction,
             hospital: Callable[[argparse.Namespace], int] | None = None) -> None:
    """`hospital`: what `--hospital` runs (federation/demo.py's run_hospital, given by cli.py)."""
    p = subparsers.add_parser("demo", help="run a demo ward: the host plus emulated bed terminals",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--beds", type=int, default=6, help="number of emulated bed terminals (default 6)")
    p.add_argument("--api-port", type=int, default=7380, help="the console's port (default 7380)")
    p.add_argument("--dir", default=None, help="working folder (made afresh; one demo at a time; default var/demo, "
                   "var/hospital-demo with --hospital)")
    p.add_argument("--hospital", action="store_true",
                   help="two wards federated over NATS and the hospital console (docs/FEDERATION.md; needs nats-server)")
    def run_demo(args: argparse.Namespace) -> int:
        if args.hospital:
            if hospital is None:
                raise DemoError("this wardcall has no hospital demo", 2)
            return hospital(args)
        args.dir = args.dir or str(REPO / "var" / "demo")
        return run(args)
    p.set_defaults(func=run_demo)
