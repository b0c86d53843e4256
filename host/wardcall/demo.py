"""`wardcall demo`: a whole ward on this machine — the real host plus emulated bed terminals that
run the real firmware in the real MicroPython interpreter — for trying wardcall out (`make run`).

Everything lives in one folder (default var/demo/, made afresh each run). The demo reads simple
commands on its standard input so you can press buttons on the emulated beds while you watch
the console in a browser.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .deploy.build import stage
from .checkout import REPO
from .passwords import hash_password
from .provision import provision

DEMO_USER = ("nurse", "nurse")   # demo only: a real ward sets its own users with `wardcall passwd`
READY_TIMEOUT_S = 20.0
ONLINE_TIMEOUT_S = 30.0
HELP = """\
commands (type at this prompt; DEVICE is e.g. bed-101-1, or its number in the list above):
  call DEVICE        tap the patient call button        assist DEVICE   staff assist button
  presence DEVICE    tap the green presence button      code DEVICE     code blue button
  hold DEVICE BUTTON hold a button 2.5 s (code blue is cleared by holding `code`)
  cord DEVICE pulled|ok|unplugged                       the bathroom pull-cord
  wifi DEVICE off|on cut or restore the bed's Wi-Fi     power DEVICE    power-cycle the bed
  lamps DEVICE       show the bed's lamps and buzzer    help, quit
"""


def firmware_files(cfg: dict[str, Any] | None, compiled: bool = True) -> dict[str, Any]:
    """A terminal's flash image for the emulator, staged exactly as `wardcall deploy` stages it
    for a real board (lib/*.mpy from mpy-cross, boot.py and main.py as source) plus its
    config.json. The emulator installs its own lib/board.py, so the staged board module is left
    out. compiled=False gives the sources instead (as `wardcall deploy --no-compile`)."""
    staged = stage("emulator", compile=compiled)
    files: dict[str, Any] = {remote.lstrip("/"): local for remote, local in staged.items()
                             if remote not in ("/lib/board.mpy", "/lib/board.py")}
    if cfg is not None:
        files["config.json"] = json.dumps(cfg)
    return files


def _rooms(beds: int) -> list[tuple[str, str]]:
    """(room, bed) for each terminal: two beds a room, rooms 101, 102, …"""
    return [(str(101 + i // 2), str(1 + i % 2)) for i in range(beds)]


def write_ward(folder: Path, beds: int, api_port: int) -> Path:
    places = _rooms(beds)
    rooms = sorted({room for room, _ in places})
    lines = [
        "# The demo ward written by `wardcall demo`; a real ward: see docs/HOST.md",
        "[ward]", 'name = "Demo ward"', 'database = "ward.db"', 'secrets = "ward.secrets.json"', "",
        "[network]", 'terminal_host = "127.0.0.1"', "terminal_port = 0",
        'discovery_host = "127.0.0.1"', "discovery_port = 0",
        'api_host = "127.0.0.1"', f"api_port = {api_port}", "",
        "[users.nurse]", 'name = "Demo Nurse"', f'password = "{hash_password(DEMO_USER[1])}"', "",
    ]
    for room in rooms:
        room_beds = ", ".join(f'"{bed}"' for r, bed in places if r == room)
        lines += [f"[rooms.{room}]", f'name = "Room {room}"', f"beds = [{room_beds}]", ""]
    path = folder / "ward.toml"
    path.write_text("\n".join(lines))
    return path


def start_server(config: Path, folder: Path) -> tuple[subprocess.Popen, dict[str, Any]]:
    ready = folder / "ready.json"
    log = open(folder / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "wardcall.cli", "serve", "--config", str(config),
                             "--ready-file", str(ready)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"wardcall demo: the host did not start; see {folder / 'server.log'}")
        if ready.exists() and ready.stat().st_size:
            return proc, json.loads(ready.read_text())
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"wardcall demo: the host did not start within {READY_TIMEOUT_S:.0f} s; see {folder / 'server.log'}")


class Demo:
    def __init__(self, folder: Path, beds: int, api_port: int) -> None:
        self.folder = folder
        self.beds = beds
        self.api_port = api_port
        self.server: subprocess.Popen | None = None
        self.fleet = None
        self.boards: dict[str, Any] = {}

    def start(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        config = write_ward(self.folder, self.beds, self.api_port)
        devices = []
        for room, bed in _rooms(self.beds):
            device = f"bed-{room}-{bed}"
            cfg = provision(config, device, room, bed, self.folder / "provisioned" / device,
                            wifi_ssid="demo-ward", wifi_password="demo-ward", host="127.0.0.1")
            devices.append(cfg)
        print(f"wardcall demo: ward written to {config}; starting the host …", flush=True)
        self.server, ports = start_server(config, self.folder)
        sys.path.insert(0, str(REPO))          # the emulator lives in boards/emulator
        from boards.emulator.fleet import Fleet
        self.fleet = Fleet.start(self.folder / "fleet")
        for cfg in devices:
            # the host chose free ports at start
            cfg["port"], cfg["discovery_port"] = ports["terminal_port"], ports["discovery_port"]
            name = cfg["device_id"]
            self.boards[name] = self.fleet.add_board(name, files=firmware_files(cfg))
        print(f"wardcall demo: {len(devices)} emulated bed terminals started; waiting for them to come online …", flush=True)
        self._wait_online()

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
        if self.fleet is not None:
            self.fleet.stop()
            self.fleet = None
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()
        self.server = None

    def banner(self) -> str:
        names = "\n".join(f"  {i + 1}. {name}" for i, name in enumerate(self.boards))
        return (f"\nwardcall demo ward is running.\n"
                f"  console:  http://127.0.0.1:{self.api_port}/   login: {DEMO_USER[0]} / {DEMO_USER[1]}\n"
                f"  beds:\n{names}\n  files:    {self.folder}\n\n{HELP}")

    def _board(self, ref: str):
        if ref.isdigit() and 1 <= int(ref) <= len(self.boards):
            return list(self.boards.values())[int(ref) - 1]
        if ref in self.boards:
            return self.boards[ref]
        raise ValueError(f"no bed {ref!r} (beds: {', '.join(self.boards)})")

    def command(self, line: str) -> str:
        words = line.split()
        if not words:
            return ""
        verb, args = words[0].lower(), words[1:]
        if verb == "help":
            return HELP
        if not args:
            return f"{verb}: which bed? ({HELP.splitlines()[0]})"
        board = self._board(args[0])
        if verb in ("call", "presence", "assist", "code"):
            board.tap(verb, ms=200)
            return f"{board.name}: {verb} pressed"
        if verb == "hold" and len(args) == 2:
            board.tap(args[1], ms=2500)
            return f"{board.name}: {args[1]} held"
        if verb == "cord" and len(args) == 2 and args[1] in ("pulled", "ok", "unplugged"):
            board.cord(args[1])
            return f"{board.name}: cord {args[1]}"
        if verb == "wifi" and len(args) == 2 and args[1] in ("on", "off"):
            board.wifi(args[1] == "on")
            return f"{board.name}: Wi-Fi {args[1]}"
        if verb == "power":
            board.power_cycle()
            return f"{board.name}: power-cycled"
        if verb == "lamps":
            return f"{board.name}: " + ", ".join(f"{name} {_level(out)}" for name, out in sorted(board.outputs().items()))
        return f"unknown command {line!r}; type help"


def _level(output: Any) -> str:
    """An output as a person reads it: on/off (a PWM buzzer sounds when its duty is not 0)."""
    value = output.get("value") if isinstance(output, dict) else output
    return "on" if value else "off"


def run(args: argparse.Namespace) -> int:
    folder = Path(args.dir).resolve()
    demo = Demo(folder, args.beds, args.api_port)
    try:
        demo.start()
        print(demo.banner(), flush=True)
        interactive = sys.stdin is not None and sys.stdin.isatty()
        while True:
            if interactive:
                try:
                    line = input("wardcall> ")
                except EOFError:
                    break
                if line.strip() in ("quit", "exit"):
                    break
                try:
                    reply = demo.command(line)
                except Exception as exc:  # a bad demo command must not stop the ward
                    reply = f"error: {exc}"
                if reply:
                    print(reply, flush=True)
            else:
                if demo.server is None or demo.server.poll() is not None:
                    print("wardcall demo: the host stopped", flush=True)
                    return 1
                time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        print("\nwardcall demo: stopping …", flush=True)
        demo.stop()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run a demo ward: the host plus emulated bed terminals",
                              description=__doc__)
    p.add_argument("--beds", type=int, default=6, help="number of emulated bed terminals (default 6)")
    p.add_argument("--api-port", type=int, default=7380, help="the console's port (default 7380)")
    p.add_argument("--dir", default=str(REPO / "var" / "demo"), help="working folder (made afresh)")
    p.set_defaults(func=run)
