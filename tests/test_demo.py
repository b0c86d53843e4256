"""`make run` starts `wardcall demo`: the real host plus emulated beds running the real firmware.
These drive the demo as a user would: the beds come online, a call typed at the demo's prompt
shows on the console's state and acknowledging it there changes the bed's lamp; `wardcall
update --all` with the demo's technician login updates every bed over the air; a second
`make run` leaves the running one alone; bad commands get one usage line; SIGTERM, SIGHUP and
the host's death stop everything the demo started."""
from __future__ import annotations

import asyncio
import json
import os
import pty
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from tests.fixtures.host import free_port
from tests.support.waiting import wait_until
from wardcall.client import WardApi, find_terminal
from wardcall.demo import ALIASES, BUTTONS, DEMO_USER, DEMO_USERS, LOCK_NAME, VERBS, Demo, UsageError, parse_command

pytestmark = pytest.mark.timeout(120)
START_S = 60.0          # one bed: the host, the fleet, and the board online (2 busy cores)


async def test_demo_ward_takes_a_call_end_to_end(tmp_path):
    demo = Demo(tmp_path / "demo", beds=2, api_port=free_port())
    try:
        await asyncio.to_thread(demo.start)
        banner = demo.banner()
        assert f"https://127.0.0.1:{demo.api_port}/" in banner and "bed-101-2" in banner
        async with WardApi(f"https://127.0.0.1:{demo.api_port}") as api:
            await api.login(*DEMO_USER)
            async with api.events() as console:
                state = await console.wait_for(lambda s: all(
                    (find_terminal(s, d) or {}).get("status") == "online" for d in ("bed-101-1", "bed-101-2")), timeout=30)
                assert await asyncio.to_thread(demo.command, "call 2") == "bed-101-2: call pressed"
                state = await console.wait_for(lambda s: any(c["device"] == "bed-101-2" for c in s["calls"]), timeout=10)
                call = next(c for c in state["calls"] if c["device"] == "bed-101-2")
                assert (call["kind_name"], call["room"], call["bed"]) == ("patient", "101", "2")
                # a patient call not yet acknowledged: the reassurance lamp is steady on
                assert "lamp_reassure on" in await asyncio.to_thread(demo.command, "lamps 2")
                before = await asyncio.to_thread(demo.boards["bed-101-2"].history, "lamp_reassure")
                await api.acknowledge(call["id"])
                await console.wait_for(lambda s: next(c for c in s["calls"] if c["id"] == call["id"])["state"] == "acknowledged")
                # acknowledged: the steady lamp starts blinking the "acknowledged" pattern (goes off briefly)
                board = demo.boards["bed-101-2"]
                await board.aio.wait_output("lamp_reassure", 0, timeout=5)
                assert len(await asyncio.to_thread(board.history, "lamp_reassure")) > len(before)
        assert demo.command("dance 1") == "unknown command 'dance'; type help"
        assert demo.command("call bed-999-1").startswith("no bed 'bed-999-1' (beds: 1-2")
    finally:
        await asyncio.to_thread(demo.stop)
    assert demo.server is None and demo.fleet is None


FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"
UPDATE_S = 150.0        # two beds, one after the other on a busy machine: transfer, reboot, trial


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_the_demo_ward_is_updated_over_the_air(tmp_path):
    demo = Demo(tmp_path / "demo", beds=2, api_port=free_port())
    new = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, new, ignore=shutil.ignore_patterns("__pycache__"))
    (new / "lib" / "version.py").write_text('VERSION = "0.2.0-demo"\n')
    tech = next(login for login, (_, role) in DEMO_USERS.items() if role == "technician")
    try:
        await asyncio.to_thread(demo.start)
        assert f"wardcall update --config {demo.config_path} --all" in demo.banner()
        # `wardcall update` as the banner says, with the technician's demo login (login = password)
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "wardcall.cli", "update", "--config", str(demo.config_path), "--all",
                             "--host-user", tech, "--firmware", str(new), "--trial-s", "30", "--parallel", "1"],
            env=dict(os.environ, WARDCALL_HOST_PASSWORD=tech), capture_output=True, text=True, timeout=UPDATE_S)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out + "\n".join(b.console()[-3000:] for b in demo.boards.values())
        table = {line.split()[0]: line.split()[1:4] for line in out.splitlines() if line.startswith("bed-")}
        assert table == {"bed-101-1": ["ok", "0.1.0", "0.2.0-demo"], "bed-101-2": ["ok", "0.1.0", "0.2.0-demo"]}, out
        async with WardApi(f"https://127.0.0.1:{demo.api_port}") as api:
            await api.login(*DEMO_USER)
            async with api.events() as console:
                await console.wait_for(lambda s: all(
                    (find_terminal(s, d) or {}).get("firmware") == "0.2.0-demo"
                    and (find_terminal(s, d) or {}).get("status") == "online" for d in ("bed-101-1", "bed-101-2")),
                    timeout=30)
                # the updated bed still takes a call
                assert await asyncio.to_thread(demo.command, "call 1") == "bed-101-1: call pressed"
                await console.wait_for(lambda s: any(c["device"] == "bed-101-1" for c in s["calls"]), timeout=10)
        for board in demo.boards.values():
            assert "firmware 0.2.0-demo confirmed" in board.console()
    finally:
        await asyncio.to_thread(demo.stop)


# ----------------------------------------------------------------------------------------------
# the prompt's parser: whatever is typed, a command or one usage line


BEDS = ["bed-101-1", "bed-101-2", "bed-102-1"]
WORDS = [*VERBS, *ALIASES, *BUTTONS, "on", "off", "pulled", "ok", "unplugged", "0", "1", "3", "4", "-1",
         "1" * 5000, "bed-101-1", "BED-101-1", "CALL", "\x00", "\u2028"]


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=12)), max_size=4).map(" ".join)))
def test_no_line_typed_at_the_prompt_breaks_it(line):
    try:
        command = parse_command(line, BEDS)
    except UsageError as exc:
        text = str(exc)
        assert text and len(text.splitlines()) == 1 and len(text) < 200, text
        return
    if command is None:
        assert not line.split()
        return
    assert command.verb in VERBS
    assert (command.bed in BEDS) if VERBS[command.verb].needs_bed else command.bed is None
    assert (command.arg in VERBS[command.verb].choices) if VERBS[command.verb].choices else command.arg is None


@pytest.mark.parametrize("line, reply", [
    ("call", "usage: call BED"),
    ("call 1 2", "usage: call BED"),
    ("hold 1 nonsense", "usage: hold BED call|presence|assist|code   ('nonsense' is not one of call, presence, assist, code)"),
    ("hold 1", "usage: hold BED call|presence|assist|code"),
    ("cord 2 cut", "usage: cord BED pulled|ok|unplugged   ('cut' is not one of pulled, ok, unplugged)"),
    ("wifi", "usage: wifi BED off|on"),
    ("power 4", "no bed '4' (beds: 1-3, or by name: bed-101-1 … bed-102-1)"),
    ("lamps 99999999999999999999", "no bed '99999999999999999999' (beds: 1-3, or by name: bed-101-1 … bed-102-1)"),
    ("dance", "unknown command 'dance'; type help"),
])
def test_a_bad_command_gets_one_usage_line(line, reply):
    with pytest.raises(UsageError) as err:
        parse_command(line, BEDS)
    assert str(err.value) == reply


# ----------------------------------------------------------------------------------------------
# `wardcall demo` as a user runs it


class DemoProcess:
    """`wardcall demo` in a subprocess whose standard input is a terminal (a pty, as `make run`
    in a shell), its output collected as it comes."""

    def __init__(self, folder: Path, api_port: int, beds: int = 1) -> None:
        self.folder = folder
        self.api_port = api_port
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wardcall.cli", "demo", "--beds", str(beds), "--dir", str(folder),
             "--api-port", str(api_port)],
            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        os.close(slave)
        self.terminal = master
        self.out = ""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while chunk := os.read(self.proc.stdout.fileno(), 4096):
            with self._lock:
                self.out += chunk.decode(errors="replace")

    def output(self, since: int = 0) -> str:
        with self._lock:
            return self.out[since:]

    def wait_output(self, text: str, timeout: float, since: int = 0) -> str:
        return wait_until(lambda: text in self.output(since) and self.output(since), timeout,
                          f"{text!r} from wardcall demo (output so far: {self.output()[-2000:]!r})")

    def started(self) -> dict:
        """Waits for the prompt; the host's ready file (its pid and ports)."""
        self.wait_output("wardcall> ", START_S)
        return json.loads((self.folder / "ready.json").read_text())

    def ask(self, line: str) -> str:
        """Type a line at the prompt; the demo's reply (what it printed before the next prompt)."""
        mark = len(self.output())
        os.write(self.terminal, line.encode() + b"\n")
        text = self.wait_output("wardcall> ", 20, since=mark)
        return text.split("wardcall> ", 1)[0].strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid, _ in processes_using(self.folder):     # a failed test leaves nothing running
            os.kill(pid, signal.SIGKILL)
        os.close(self.terminal)
        self._reader.join(5)


def processes_using(folder: Path) -> list[tuple[int, str]]:
    """Processes whose command line names the folder or that run in it: the demo's host, its
    fleet supervisor and its boards (each board runs in its flash folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if str(folder) in cmdline or cwd == str(folder) or cwd.startswith(str(folder) + "/"):
            found.append((int(entry.name), cmdline.strip()))
    return found


def health(port: int, folder: Path) -> dict:
    """The demo host's health, over HTTPS trusting the demo ward's own CA (as a ward PC that
    installed it)."""
    ca = ssl.create_default_context(cafile=str(folder / "ward.ca.pem"))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/api/health", timeout=5, context=ca) as reply:
        return json.loads(reply.read())


def port_is_free(port: int) -> bool:
    """Nothing listens on it, and a server could bind it again (as aiohttp does, SO_REUSEADDR:
    our own closed requests leave TIME_WAIT entries on it)."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def second_demo(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wardcall.cli", "demo", "--beds", "1", "--dir", str(folder),
                           "--api-port", str(free_port())], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)


def a_dead_pid() -> int:
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_demo_run_twice_typed_at_and_stopped_by_a_signal(tmp_path, sig):
    folder = tmp_path / "demo"
    folder.mkdir()
    # a demo that crashed left its lock file behind, held by nobody: it must not block this one
    (folder / LOCK_NAME).write_text(json.dumps({"pid": a_dead_pid(), "console": "http://127.0.0.1:1/"}))
    port = free_port()
    demo = DemoProcess(folder, port)
    try:
        host = demo.started()
        assert health(port, folder)["pid"] == host["pid"]
        record = [folder / "ward.db", folder / "ward.secrets.json", folder / "ward.toml", folder / "fleet"]
        assert all(p.exists() for p in record)

        # a second `make run` on the same folder: one line naming the running demo, exit 2,
        # and the running demo's record, keys and boards untouched
        second = second_demo(folder)
        assert second.returncode == 2, second.stdout + second.stderr
        line = second.stderr.strip()
        assert len(line.splitlines()) == 1 and "Traceback" not in line, second.stderr
        assert f"pid {demo.proc.pid}" in line and f"console https://127.0.0.1:{port}/" in line, line
        assert all(p.exists() for p in record), "the second demo deleted the running demo's files"
        assert health(port, folder)["pid"] == host["pid"], "the running demo's host was disturbed"

        # bad commands: one usage line each, never a traceback; a good one still works
        assert demo.ask("call") == "usage: call BED"
        assert demo.ask("hold 1 nonsense") == ("usage: hold BED call|presence|assist|code   "
                                               "('nonsense' is not one of call, presence, assist, code)")
        assert demo.ask("lamps 7") == "no bed '7' (beds: 1, or by name: bed-101-1)"
        assert demo.ask("call 1") == "bed-101-1: call pressed"
        assert "Traceback" not in demo.output() and "Error" not in demo.output()

        # the signal stops the host and the boards, as quit does
        demo.proc.send_signal(sig)
        assert demo.proc.wait(40) == 128 + sig, demo.output()[-2000:]
        assert f"wardcall demo: {sig.name}: stopping the ward" in demo.output()
        assert processes_using(folder) == [], "left running after the demo stopped"
        assert port_is_free(port), "the console port is still held after the demo stopped"
    finally:
        demo.close()


def test_demo_notices_that_the_host_died(tmp_path):
    folder = tmp_path / "demo"
    demo = DemoProcess(folder, free_port())
    try:
        host = demo.started()
        os.kill(host["pid"], signal.SIGKILL)
        # nobody types anything: the demo says so by itself, and stops the boards
        assert demo.proc.wait(30) == 1, demo.output()[-2000:]
        assert (f"wardcall demo: the host stopped (killed by SIGKILL); its log: {folder / 'server.log'}\n"
                in demo.output()), demo.output()[-2000:]
        assert processes_using(folder) == []
    finally:
        demo.close()


def test_a_host_left_by_a_killed_demo_keeps_the_folder(tmp_path):
    """A demo killed with SIGKILL cannot stop its host; that host still writes the record, so
    the next demo refuses (naming the host) instead of deleting the record under it."""
    folder = tmp_path / "demo"
    demo = DemoProcess(folder, free_port())
    try:
        host = demo.started()
        demo.proc.kill()
        demo.proc.wait(10)
        second = second_demo(folder)
        assert second.returncode == 2, second.stdout + second.stderr
        line = second.stderr.strip()
        assert f"the host of a demo that was killed still runs in {folder} (pid {host['pid']}" in line, line
        assert f"kill {host['pid']}" in line and (folder / "ward.db").exists()
    finally:
        demo.close()
