"""`wardcall demo --hospital` (`make run-hospital`): a hospital on this machine — a hub
(nats-server), two wards each with its own leaf node (nats-server, its own JetStream domain),
its host and its emulated beds, and the hospital console with a rapid response team.

At its `hospital>` prompt a ward's beds are pressed as in `wardcall demo`, with the ward first
(`a call 1`, `b code 2`); `hub stop` and `hub start` take the hub away and bring it back (the
wards go on; the hospital console catches up from the streams); `help`; `quit`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..checkout import REPO
from ..demo import HOST_EXITED, STOP_SIGNALS, Demo, DemoError, take_lock
from ..passwords import hash_password
from ..config import parse_tls_table
from ..devicekeys import write_private
from ..tls import chain_path, prepare_console
from .natsconf import HubNode, LeafNode, NatsServer, NatsTls, NatsUser, free_port

WARDS = {"a": "Ward A (surgery)", "b": "Ward B (medicine)"}
HOSPITAL_USERS = {"sup": ("House supervisor", "supervisor"), "drx": ("Dr X (rapid response)", "team"),
                  "rny": ("RN Y (rapid response)", "team")}
READY_TIMEOUT_S = 20.0
HELP = ("commands:\n"
        "  WARD COMMAND        a bed command of `wardcall demo` on ward a or b: a call 1, b code 2, a presence 1\n"
        "  hub stop|start      take the hub away and bring it back\n"
        "  help                this list\n"
        "  quit                stop the hospital (also Ctrl-C, Ctrl-D)\n")


def hospital_toml(hub_url: str, api_port: int, hub_login: tuple[str, str] | None = None) -> str:
    """The demo's hospital.toml; with hub_login (user, password file), the hub over TLS from the
    console's own CA (hospital.ca.pem beside it)."""
    lines = ["# The demo hospital written by `wardcall demo --hospital`; see docs/FEDERATION.md",
             "[hospital]", 'name = "Demo hospital"', f'hub_urls = ["{hub_url}"]', 'api_host = "127.0.0.1"',
             f"api_port = {api_port}"]
    if hub_login is not None:
        lines += ['hub_ca = "hospital.ca.pem"', f'hub_user = "{hub_login[0]}"', f'hub_password_file = "{hub_login[1]}"']
    lines.append("")
    for ward_id, name in WARDS.items():
        lines += [f"[wards.{ward_id}]", f'name = "{name}"', ""]
    for login, (name, role) in HOSPITAL_USERS.items():
        lines += [f"[users.{login}]", f'name = "{name}"', f'password = "{hash_password(login)}"', f'role = "{role}"', ""]
    lines += ["[teams.rrt]", 'name = "Rapid response"', 'kinds = ["code_blue", "staff_assist"]',
              'members = ["drx", "rny"]', ""]
    return "\n".join(lines)


class HospitalDemo:
    def __init__(self, folder: Path, beds: int, api_port: int, on_host_exit: Any = None) -> None:
        self.folder = folder
        self.beds = beds
        self.console_port = api_port + 100
        self.hub: NatsServer | None = None
        self.leaves: dict[str, NatsServer] = {}
        self.wards: dict[str, Demo] = {
            w: Demo(folder / f"ward-{w}", beds, api_port + i, on_host_exit=on_host_exit, name=name)
            for i, (w, name) in enumerate(WARDS.items())}
        self.console: subprocess.Popen | None = None
        self._lock_fd: int | None = None

    @property
    def console_url(self) -> str:
        return f"https://127.0.0.1:{self.console_port}/"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_fd = take_lock(self.folder, self.console_url)
        shutil.rmtree(self.folder / "nats", ignore_errors=True)
        nats_dir = self.folder / "nats"
        # the hub's links are TLS with logins, as on a hospital network: its certificate is the
        # console's, from the console's own CA (made here first, as the console would at start)
        config = self.folder / "hospital.toml"
        client_port = free_port()
        settings = parse_tls_table(config, "[tls]", {}, self.folder, config.stem)   # hospital.toml's default [tls]
        prepare_console(settings, "Demo hospital")
        hub_tls = NatsTls(settings.ca_cert, chain_path(settings), settings.key)
        console_user = NatsUser.new("hospital")
        write_private(self.folder / "hospital.hub-password", console_user.password + "\n")
        config.write_text(hospital_toml(f"tls://127.0.0.1:{client_port}", self.console_port,
                                        (console_user.user, "hospital.hub-password")))
        ward_users = {w: NatsUser.for_ward(w) for w in self.wards}     # each ward in its own account
        hub = HubNode("hub-1", nats_dir / "hub-1", client_port, free_port(), free_port(), tls=hub_tls,
                      clients=(console_user,), leaves=tuple(ward_users.values()))
        self.hub = NatsServer(hub, nats_dir / "hub-1.conf", nats_dir / "hub-1.log").start()
        print(f"wardcall demo: hub (nats-server) on tls://127.0.0.1:{client_port} (TLS, logins)", flush=True)
        for ward_id, demo in self.wards.items():
            leaf = LeafNode(ward_id, nats_dir / f"leaf-{ward_id}", free_port(), free_port(),
                            (f"tls://127.0.0.1:{hub.leaf_port}",), hub_tls=hub_tls, hub_user=ward_users[ward_id])
            self.leaves[ward_id] = NatsServer(leaf, nats_dir / f"leaf-{ward_id}.conf", nats_dir / f"leaf-{ward_id}.log").start()
            demo.extra_toml = f'\n[federation]\nward = "{ward_id}"\nleaf_url = "{self.leaves[ward_id].url}"\n'
            print(f"wardcall demo: ward {ward_id}: leaf node on {self.leaves[ward_id].url}; starting its host and beds …", flush=True)
            demo.start()
        ready = self.folder / "hospital-ready.json"
        ready.unlink(missing_ok=True)
        with open(self.folder / "hospital.log", "ab") as log:
            self.console = subprocess.Popen([sys.executable, "-m", "wardcall.cli", "hospital", "--config", str(config),
                                             "--ready-file", str(ready)], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (ready.exists() and ready.stat().st_size):
            if self.console.poll() is not None or time.monotonic() > deadline:
                raise DemoError(f"the hospital console did not start; its log: {self.folder / 'hospital.log'}")
            time.sleep(0.1)
        json.loads(ready.read_text())

    def stop(self) -> None:
        if self.console is not None and self.console.poll() is None:
            self.console.terminate()
            try:
                self.console.wait(10)
            except subprocess.TimeoutExpired:
                self.console.kill()
        for demo in self.wards.values():
            demo.stop()
        for server in [*self.leaves.values(), *([self.hub] if self.hub else [])]:
            server.stop()
        if self._lock_fd is not None:
            import os
            os.close(self._lock_fd)
            self._lock_fd = None

    def banner(self) -> str:
        wards = "\n".join(f"  ward {w}: {d.name}: console {d.console_url} (carla / carla), beds "
                          + ", ".join(f"{i + 1}. {b}" for i, b in enumerate(d.boards)) for w, d in self.wards.items())
        return (f"\nwardcall demo hospital is running.\n"
                f"  hospital console: {self.console_url}   login: sup / sup (house supervisor)\n"
                f"  rapid response team's pocket console: {self.console_url}pocket/   drx / drx, rny / rny\n"
                f"  HTTPS with the hospital console's own CA: import {self.folder / 'hospital.ca.pem'} into the\n"
                f"  browser as a certificate authority (each ward's console has its ward's CA)\n"
                f"{wards}\n  files: {self.folder}\n\n{HELP}")

    def command(self, line: str) -> str:
        words = line.split()
        if not words:
            return ""
        if words[0] == "help":
            return HELP
        if words[0] == "hub" and len(words) == 2 and words[1] in ("stop", "start") and self.hub is not None:
            if words[1] == "stop":
                self.hub.stop()
                return "hub stopped: the wards go on; their events wait on their leaf nodes"
            self.hub.start()
            return "hub started: the hospital console catches up"
        demo = self.wards.get(words[0])
        if demo is None or len(words) < 2:
            return f"give a ward first ({', '.join(self.wards)}), then a bed command: a call 1; or hub stop|start; help"
        return demo.command(" ".join(words[1:])) or ""


def run_hospital(args: argparse.Namespace) -> int:
    main_thread = threading.main_thread().ident
    assert main_thread is not None
    folder = Path(args.dir or REPO / "var" / "hospital-demo").resolve()
    demo = HospitalDemo(folder, args.beds, args.api_port, on_host_exit=lambda: signal.pthread_kill(main_thread, HOST_EXITED))

    def stop_signal(signum: int, frame: Any) -> None:
        raise DemoError(f"{signal.Signals(signum).name}: stopping the hospital", 128 + signum)

    def host_exited(signum: int, frame: Any) -> None:
        raise DemoError("a ward's host stopped; its log is in its folder under " + str(folder), 1)

    previous = {sig: signal.signal(sig, stop_signal) for sig in STOP_SIGNALS}
    previous[HOST_EXITED] = signal.signal(HOST_EXITED, host_exited)
    status = 0
    try:
        demo.start()
        print(demo.banner(), flush=True)
        interactive = sys.stdin is not None and sys.stdin.isatty()
        while True:
            try:
                line = input("hospital> ") if interactive else sys.stdin.readline()
            except EOFError:
                break
            if not interactive and line == "":
                while True:                     # no more input: run until a signal
                    time.sleep(3600)
            if line.strip() in ("quit", "exit"):
                break
            try:
                reply = demo.command(line)
            except Exception as exc:  # the emulator refused (a board restarting …): the hospital goes on
                reply = f"not done ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})"
            if reply:
                print(reply, flush=True)
    except DemoError as exc:
        print(f"wardcall demo: {exc}", file=sys.stderr, flush=True)
        status = exc.status
    except (KeyboardInterrupt, FileNotFoundError) as exc:
        if isinstance(exc, FileNotFoundError):
            print(f"wardcall demo: {exc}", file=sys.stderr, flush=True)
            status = 2
    finally:
        for sig in (*previous, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        print("\nwardcall demo: stopping the hospital …", flush=True)
        demo.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return status
