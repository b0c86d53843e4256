"""Fixtures for the federation tests: real nats-server processes (Debian's package, installed by
`make nats-server` like Chromium for the console tests) on free loopback ports.

  nats_hospital   a Hospital: hub(), leaf(ward_id) start real servers; stopped at the end
  fed_ward        factory: fed_ward(hospital, ward_id, terminals=2) -> a Ward whose TOML has
                  [federation] pointing at that ward's leaf node (the host is not started)
"""
from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import nats
import pytest

from wardcall.federation.natsconf import HubNode, LeafNode, NatsServer, NatsTls, NatsUser
from wardcall.federation.subjects import HOSPITAL_STREAM
from tests.fixtures.host import LOOPBACK, free_port

if shutil.which("nats-server") is None and not Path("/usr/sbin/nats-server").exists():
    raise pytest.UsageError("nats-server is not installed: `make nats-server` (Debian's package) before the federation tests")


class Hospital:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: list[NatsServer] = []
        self.hub_server: NatsServer | None = None
        self.leaves: dict[str, NatsServer] = {}

    def hub(self, tls: NatsTls | None = None, clients: tuple[NatsUser, ...] = (),
            leaves: tuple[NatsUser, ...] = ()) -> NatsServer:
        node = HubNode("hub-1", self.root / "hub-1", free_port(), free_port(), free_port(), LOOPBACK,
                       tls=tls, clients=clients, leaves=leaves)
        self.hub_server = self._start(node, "hub-1")
        return self.hub_server

    @property
    def hub_url(self) -> str:
        assert self.hub_server is not None
        return self.hub_server.url

    def leaf(self, ward_id: str, standby: bool = False, hub_tls: NatsTls | None = None,
             hub_user: NatsUser | None = None, client_tls: NatsTls | None = None) -> NatsServer:
        assert self.hub_server is not None
        hub = self.hub_server.node
        name = f"leaf-{ward_id}" + ("-standby" if standby else "")
        node = LeafNode(ward_id, self.root / name, free_port(), free_port(),
                        (f"nats://{LOOPBACK}:{hub.leaf_port}",), LOOPBACK, standby=standby,
                        hub_tls=hub_tls, hub_user=hub_user, client_tls=client_tls)
        server = self._start(node, name)
        self.leaves[ward_id + ("-standby" if standby else "")] = server
        return server

    def _start(self, node: HubNode | LeafNode, name: str) -> NatsServer:
        server = NatsServer(node, self.root / f"{name}.conf", self.root / f"{name}.log")
        self.servers.append(server)
        return server.start()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def nats_hospital(tmp_path: Path) -> Iterator[Hospital]:
    hospital = Hospital(tmp_path / "nats")
    try:
        yield hospital
    finally:
        hospital.stop()
        for server in hospital.servers:
            print(f"--- {server.log_path} (last 20 lines) ---")
            print("\n".join(server.log_path.read_text(errors="replace").splitlines()[-20:]) if server.log_path.exists() else "")


@pytest.fixture
def fed_ward(make_ward):
    def make(hospital: Hospital, ward_id: str, terminals: int = 2, **kw: Any):
        leaf = hospital.leaves.get(ward_id) or hospital.leaf(ward_id)
        extra = f'\n[federation]\nward = "{ward_id}"\nleaf_url = "{leaf.url}"\nhost_beat_s = 0.2\n'
        return make_ward(terminals=terminals, extra_toml=extra, **kw)
    return make


async def hospital_events(hub_url: str, expected: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Every event in the hub's hospital stream, once it holds `expected` (or the timeout)."""
    nc = await nats.connect(hub_url)
    try:
        js = nc.jetstream()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        count = 0
        while loop.time() < deadline:
            try:
                count = (await js.stream_info(HOSPITAL_STREAM)).state.messages
            except (nats.errors.Error, nats.js.errors.Error):
                count = 0
            if count >= expected:
                break
            await asyncio.sleep(0.1)
        sub = await js.subscribe("wardcall.>", stream=HOSPITAL_STREAM, ordered_consumer=True)
        out = []
        for _ in range(count):
            try:
                msg = await sub.next_msg(5)
            except nats.errors.TimeoutError:
                break       # what came (a cluster that just lost a node answers late): the caller looks again
            out.append(json.loads(msg.data))
        return out
    finally:
        await nc.close()


TEAM_USER = ("drx", "correct horse battery")
SUPERVISOR = ("sup", "correct horse battery")


def hospital_toml(hub_url: str, wards: dict[str, str], api_port: int, hospital_keys: str = "") -> str:
    from tests.fixtures.host import _NURSE_HASH     # the test password's hash, made once per session
    lines = ["[hospital]", 'name = "Test hospital"', f'hub_urls = ["{hub_url}"]', f'api_host = "{LOOPBACK}"',
             f"api_port = {api_port}", hospital_keys, ""]
    for ward_id, name in wards.items():
        lines += [f"[wards.{ward_id}]", f'name = "{name}"', ""]
    lines += ["[users.sup]", 'name = "House supervisor"', f'password = "{_NURSE_HASH}"', 'role = "supervisor"', "",
              "[users.drx]", 'name = "Dr X"', f'password = "{_NURSE_HASH}"', 'role = "team"', "",
              "[teams.rrt]", 'name = "Rapid response"', 'kinds = ["code_blue", "staff_assist"]', 'members = ["drx"]', ""]
    return "\n".join(lines)


class HospitalConsole:
    """`wardcall hospital` in a subprocess on a free loopback port."""

    def __init__(self, root: Path, hub_url: str, wards: dict[str, str], extra_toml: str = "",
                 hospital_keys: str = "") -> None:
        self.root = root
        self.port = free_port()
        self.config_path = root / "hospital.toml"
        self.config_path.write_text(hospital_toml(hub_url, wards, self.port, hospital_keys) + extra_toml)
        # HTTPS from the test process's shared CA (an RSA-3072 key per console would take a while)
        from tests.support.testca import copy_shared
        from wardcall.federation.hospital_config import load_hospital
        settings = load_hospital(self.config_path).tls
        self.scheme = "http" if settings.console == "http" else "https"
        if self.scheme == "https":
            copy_shared(settings)
        self.log_path = root / "hospital.log"
        self.ready_path = root / "hospital-ready.json"
        self.proc: Any = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}"

    def start(self) -> "HospitalConsole":
        import os
        import subprocess
        import sys
        import urllib.request
        from tests.support.waiting import wait_until
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([sys.executable, "-m", "wardcall.cli", "hospital", "--config", str(self.config_path),
                                      "--ready-file", str(self.ready_path), "--log-level", "debug"],
                                     stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        log.close()

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wardcall hospital exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/api/health", timeout=1) as reply:
                    health = json.loads(reply.read())
            except (OSError, ValueError):
                return False
            return health.get("pid") == self.proc.pid and health.get("hub_connected")
        wait_until(ready, 20, "wardcall hospital ready and following the hub")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def hospital_console(tmp_path: Path):
    consoles: list[HospitalConsole] = []

    def start(hub_url: str, wards: dict[str, str], extra_toml: str = "", hospital_keys: str = "") -> HospitalConsole:
        console = HospitalConsole(tmp_path, hub_url, wards, extra_toml, hospital_keys)
        consoles.append(console)
        return console.start()
    yield start
    for console in consoles:
        console.stop()
        print(f"--- {console.log_path} (last 40 lines) ---")
        print("\n".join(console.log_path.read_text(errors="replace").splitlines()[-40:]))
