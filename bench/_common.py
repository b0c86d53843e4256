"""Shared pieces of the benchmarks: a ward of any size written straight to disk (wardcall
provision re-parses the TOML per device, too slow for 5,000), `wardcall serve` as a subprocess,
CPU time from /proc, a console that timestamps every call event it receives, and percentiles."""
from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from wardcall.client import sse_messages  # noqa: E402
from wardcall.passwords import hash_password  # noqa: E402

NURSE = ("nurse", "bench password")
TICK = os.sysconf("SC_CLK_TCK")


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_ward(wdir: Path, n: int, heartbeat_ms: int = 1000, tls: str = "tls",
               host_heartbeat_every: int | None = None) -> tuple[Path, list[dict]]:
    """A ward with n terminals (two beds a room) on free loopback ports; returns the TOML path and
    each terminal's config.json dict. TLS (its own CA, trusted by this process) unless
    tls="plain" (plain TCP and HTTP, alarmed)."""
    wdir.mkdir(parents=True, exist_ok=True)
    tport, dport, aport = free_port(), free_port(socket.SOCK_DGRAM), free_port()
    lines = ["[ward]", 'name = "Bench ward"', 'database = "ward.db"', 'secrets = "ward.secrets.json"', "",
             "[network]", 'terminal_host = "127.0.0.1"', f"terminal_port = {tport}",
             'discovery_host = "127.0.0.1"', f"discovery_port = {dport}",
             'api_host = "127.0.0.1"', f"api_port = {aport}", "",
             "[timing]", f"heartbeat_ms = {heartbeat_ms}", "no_console_grace_s = 600",
             *([f"host_heartbeat_every = {host_heartbeat_every}"] if host_heartbeat_every else []), "",
             "[escalation]", "attend_timeout_s = 3600", "",
             "[escalation.ack_timeout_s]", "code_blue = 3600", "staff_assist = 3600", "bathroom = 3600",
             "patient = 3600", "technical = 3600", ""]
    if tls == "plain":
        lines += ["[tls]", 'terminals = "plain"', 'console = "http"', ""]
    rooms = (n + 1) // 2
    for r in range(rooms):
        lines += [f'[rooms."{1000 + r}"]', f'name = "Room {1000 + r}"', 'beds = ["1", "2"]', ""]
    lines += [f"[users.{NURSE[0]}]", 'name = "Bench nurse"', f'password = "{hash_password(NURSE[1])}"', ""]
    keys, devices = {}, []
    for i in range(n):
        room, bed = str(1000 + i // 2), str(1 + i % 2)
        dev = f"bed-{room}-{bed}"
        key = os.urandom(32).hex()
        keys[dev] = key
        lines += [f"[terminals.{dev}]", f'room = "{room}"', f'bed = "{bed}"', ""]
        devices.append({"device_id": dev, "key": key, "ward": "Bench ward", "room": room, "bed": bed,
                        "wifi": {"ssid": "ward-bench", "password": "x"}, "host": "127.0.0.1", "port": tport,
                        "discovery_port": dport})
    cfg = wdir / "ward.toml"
    cfg.write_text("\n".join(lines) + "\n")
    from wardcall.config import load_config
    from wardcall.tls import init_ca, terminal_settings
    from wardcall.trust import trust_ward
    config = load_config(cfg)
    if tls != "plain":
        init_ca(config)
        trust_ward(config)
    settings = terminal_settings(config)
    for dev in devices:
        dev["tls"] = settings
    sec = wdir / "ward.secrets.json"
    fd = os.open(sec, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"devices": keys}, f)
    return cfg, devices


def raise_nofile(n: int = 20000) -> None:
    """The soft limit to n, and the hard one when it is lower and we may (root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, n))
            hard = n
        except (ValueError, OSError):
            pass
    target = min(max(soft, n), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class Server:
    """`wardcall serve` in a subprocess (log level info: debug logging would cost CPU)."""

    def __init__(self, config: Path, log_level: str = "info") -> None:
        self.config = config
        self.log_level = log_level
        self.ready = config.parent / "ready.json"
        self.log = config.parent / "server.log"
        self.proc: subprocess.Popen | None = None
        self.api_url = None

    def start(self, timeout: float = 60.0) -> float:
        """Start; returns the seconds until the API answered."""
        import urllib.request
        self.ready.unlink(missing_ok=True)
        t0 = time.monotonic()
        log = open(self.log, "a")
        self.proc = subprocess.Popen([sys.executable, "-m", "wardcall.cli", "serve", "--config", str(self.config),
                                      "--ready-file", str(self.ready), "--log-level", self.log_level],
                                     stdout=log, stderr=subprocess.STDOUT, preexec_fn=lambda: raise_nofile(20000))
        log.close()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError("wardcall serve exited:\n" + self.log.read_text()[-3000:])
            if self.ready.exists():
                try:
                    info = json.loads(self.ready.read_text())
                    self.api_url = f"{info.get('console', 'http')}://127.0.0.1:{info['api_port']}"
                    with urllib.request.urlopen(self.api_url + "/api/health", timeout=1, context=console_tls(self.api_url)):
                        return time.monotonic() - t0
                except (OSError, ValueError, KeyError):
                    pass
            time.sleep(0.02)
        raise RuntimeError("wardcall serve not ready")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def resident_mb(pid: int) -> tuple[float, float]:
    """(resident memory now, its peak) of a process in MB, from /proc/<pid>/status."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def wakeups(pid: int) -> int:
    """Times the process's threads went to sleep and were woken (voluntary context switches,
    /proc/<pid>/task/*/status): an idle asyncio loop does one per turn that waits."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def descendants_cpu_seconds(root: int, exclude: set[int] = frozenset()) -> float:
    """utime + stime of every living process below `root` (the emulated boards and their
    supervisor under the bench), leaving out the `exclude` pids and what is below them."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0.0, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in exclude:
            continue
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
        todo += children.get(pid, [])
    return total


def runqueue_wait_s(pid: int) -> float:
    """Seconds the process's main thread (the host's event loop) was ready to run but waited
    for a CPU (/proc/<pid>/schedstat): on a shared machine, loop lag that is not the host's."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def console_tls(url: str):
    """The client SSL context for a console's URL (the trusted ward CAs), None for http."""
    from wardcall.trust import client_context
    return client_context() if url.startswith("https") else None


def console_http(url: str):
    """An aiohttp session for a console's API: its cookies kept (the login), its TLS trusted."""
    import aiohttp
    tls = console_tls(url)
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                 connector=aiohttp.TCPConnector(ssl=tls) if tls else None)


class Console:
    """A logged-in console following /api/events in a thread; `arrivals[(device, call_id)]` is
    the time.monotonic() at which the call's first event arrived."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.arrivals: dict[tuple[str, int], float] = {}
        self.cond = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError(f"console did not connect: {self.error!r}")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._follow())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            self.error = exc
            self.ready.set()

    async def _follow(self) -> None:
        """Follow the stream; like the web console, reconnect when the host drops it (a console
        that falls 1000 events behind is cut off, e.g. while thousands of terminals connect)."""
        import aiohttp
        self.reconnects = -1
        async with console_http(self.api_url) as http:
            self.http = http
            async with http.post(self.api_url + "/api/login", json={"user": NURSE[0], "password": NURSE[1]}) as r:
                r.raise_for_status()
            while True:
                self.reconnects += 1
                try:
                    async with http.get(self.api_url + "/api/events", timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as r:
                        self.ready.set()
                        # the client's reader: a large ward's snapshot is one data line over
                        # aiohttp's readline limit (512 KiB)
                        async for name, data in sse_messages(r.content):
                            if name in ("call", "snapshot"):
                                self._record(name, json.loads(data))
                except (aiohttp.ClientError, ConnectionError):
                    pass
                await asyncio.sleep(0.2)

    def _record(self, name: str, data: dict) -> None:
        now = time.monotonic()
        calls = [data["call"]] if name == "call" else data.get("calls", [])
        with self.cond:
            for call in calls:
                self.arrivals.setdefault((call["device"], call["call_id"]), now)
            self.cond.notify_all()

    def wait(self, key, timeout: float = 10.0) -> float | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while key not in self.arrivals:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.arrivals[key]

    def state(self) -> dict:
        async def get():
            async with self.http.get(self.api_url + "/api/state") as r:
                return await r.json()
        return asyncio.run_coroutine_threadsafe(get(), self.loop).result(30)

    def close(self) -> None:
        async def stop():
            for task in asyncio.all_tasks(self.loop):
                if task is not asyncio.current_task():
                    task.cancel()
        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        except Exception:  # noqa: BLE001
            pass
        self.thread.join(5)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))
    return v[k]


def summary(values_ms: list[float]) -> str:
    if not values_ms:
        return "no samples"
    return f"p50 {pct(values_ms, 50):6.1f}  p99 {pct(values_ms, 99):6.1f}  max {max(values_ms):6.1f} ms  (n={len(values_ms)})"


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return f"{os.cpu_count()} cores, {model}, {mem_kb / 1024 / 1024:.1f} GiB RAM, Python {sys.version.split()[0]}"
