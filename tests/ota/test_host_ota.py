"""The host's half of the over-the-air update without a network: package building and the
per-terminal transfer logic (wardcall.ota.OtaService) against a scripted terminal model."""
import asyncio
import json
import struct
import time
from types import SimpleNamespace

import pytest

from wardcall import ota
from wardcall.bus import ConsoleBus
from wardcall.hub import WardHub
from wardcall.protocol import wardproto as P

pytestmark = pytest.mark.timeout(30)


# ----- packages -----

def test_package_from_the_repository_firmware():
    pkg = ota.build_package()
    paths = [p for p, _ in pkg.files]
    assert "lib/app.py" in paths and "lib/ota.py" in paths and "lib/version.py" in paths
    for never in ("lib/otaboot.py", "lib/maint.py", "lib/board.py", "boot.py", "main.py"):
        assert never not in paths
    assert pkg.version and len(pkg.id) == 32
    assert ota.Package.from_json(json.loads(json.dumps(pkg.to_json()))).id == pkg.id


def test_compiled_package_has_only_mpy(firmware_copy):
    pkg = ota.build_package(firmware_copy("3.0-mpy"), compile=True)
    assert pkg.version == "3.0-mpy"
    assert all(p.endswith(".mpy") for p, _ in pkg.files)
    assert not any(p.endswith(".py") for p, _ in pkg.files)


@pytest.mark.parametrize("path,ok", [("lib/a.py", True), ("lib/sub/a.mpy", True), ("lib/otaboot.py", False),
                                     ("lib/maint.mpy", False), ("boot.py", False), ("lib/../x.py", False),
                                     ("lib/a.txt", False), ("lib/ä.py", False)])
def test_valid_path(path, ok):
    assert ota.valid_path(path) is ok


def test_uploaded_package_is_checked():
    with pytest.raises(ota.OtaError):
        ota.Package.from_json({"version": "1", "files": [["boot.py", "eA=="]]})
    with pytest.raises(ota.OtaError):
        ota.Package.from_json({"version": "", "files": [["lib/a.py", "eA=="]]})
    with pytest.raises(ota.OtaError):
        ota.Package.from_json({"version": "1", "files": [["lib/a.py", "not base64!"]]})


# ----- the transfer, against a terminal model -----

class Term:
    """What firmware/lib/ota.py answers, in a few lines, plus faults to script."""

    def __init__(self, hub, device, version="0.1.0"):
        self.hub, self.device, self.version = hub, device, version
        self.files = {}
        self.decl = []
        self.cur = self.off = 0
        self.id = None
        self.bytes_received = 0
        self.commands = []
        self.inflight = 0
        self.max_inflight = 0
        self.drop_after_chunks = None      # close the session once after this many chunks
        self.corrupt_file = None           # answer "hash mismatch" for this file index
        self.busy_commits = 0
        self.after_commit = "confirmed"     # or "rolled_back"
        self.state = {"s": "idle"}
        self.link = None

    def connect(self):
        self.link = FakeLink(self)
        self.hub.links[self.device] = self.link
        self.hub.ward.terminals[self.device].firmware = self.version
        return self.link

    def receive(self, link, fields):
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        asyncio.get_running_loop().call_soon(self._answer, link, fields)

    def _answer(self, link, fields):
        self.inflight -= 1
        if link.closed:
            return
        cmd, arg = fields["cmd"], fields["arg"]
        self.commands.append(cmd)
        ok, detail, after = self.handle(cmd, arg)
        self.hub.take_result(self.device, {"cmd_id": fields["cmd_id"], "ok": ok, "detail": detail})
        if after == "drop":
            link.close("dropped")
        elif after == "reboot":
            link.close("rebooting")
            asyncio.get_running_loop().call_later(0.05, self.connect)

    def handle(self, cmd, arg):
        if cmd == P.CMD_OTA_BEGIN:
            m = json.loads(arg)
            if m["id"] != self.id:
                self.id, self.decl, self.files, self.cur, self.off = m["id"], [], {}, 0, 0
                self.target = m["v"]
            return 1, "at %d %d" % (self.cur, self.off), None
        if cmd == P.CMD_OTA_FILE:
            i, path, size, sha = json.loads(arg)
            if i < len(self.decl):
                return 1, "at %d" % self.off, None
            self.decl.append((path, size, sha))
            self.files[path] = b""
            return 1, "at 0", None
        if cmd == P.CMD_OTA_CHUNK:
            i, off = struct.unpack(">HI", arg[:6])
            if i != self.cur or off != self.off:
                return 0, "expected at %d %d" % (self.cur, self.off), None
            path, size, _ = self.decl[i]
            self.files[path] += arg[6:]
            self.off += len(arg) - 6
            self.bytes_received += len(arg) - 6
            if self.drop_after_chunks is not None:
                self.drop_after_chunks -= 1
                if self.drop_after_chunks == 0:
                    self.drop_after_chunks = None
                    return 1, "at %d" % self.off, "drop"
            if self.off == size:
                if self.corrupt_file == i:
                    return 0, "hash mismatch: %s" % path, None
                self.cur, self.off = self.cur + 1, 0
                return 1, "done %d" % i, None
            return 1, "at %d" % self.off, None
        if cmd == P.CMD_OTA_COMMIT:
            if self.busy_commits:
                self.busy_commits -= 1
                return 0, "busy: 1 call event(s) not yet delivered", None
            old = self.version
            if self.after_commit == "confirmed":
                self.version = self.target
            self.state = {"s": self.after_commit, "v": self.target, "from": old, "why": "not online within 6 s"}
            return 1, "committed", "reboot"
        if cmd == P.CMD_OTA_STATUS:
            return 1, json.dumps(dict(self.state, run=self.version)), None
        if cmd == P.CMD_OTA_ABORT:
            return 1, "aborted", None
        return 0, "unsupported", None


class FakeLink:
    def __init__(self, term):
        self.term = term
        self.closed = False
        self.closed_because = None

    def send(self, mtype, fields):
        assert mtype == P.COMMAND
        if not self.closed:
            self.term.receive(self, fields)

    def close(self, reason):
        self.closed, self.closed_because = True, reason
        if self.term.hub.links.get(self.term.device) is self:
            del self.term.hub.links[self.term.device]


class FakeHub:
    take_result = WardHub.take_result

    def __init__(self, devices):
        self.links = {}
        self.result_waiters = {}
        self._n = 0
        self.clock = SimpleNamespace(wall=time.time)
        self.bus = ConsoleBus(self.clock)
        self.ward = SimpleNamespace(terminals={d: SimpleNamespace(firmware="") for d in devices})
        self.records = []

    def next_cmd_id(self):
        self._n += 1
        return self._n

    async def record(self, kind, device=None, user=None, **data):
        self.records.append((kind, device, data))


def package(n_files=3, size=5000):
    return ota.Package("2.0", sorted(("lib/m%d.py" % i, bytes([65 + i]) * size) for i in range(n_files)))


async def run_job(hub, pkg, devices, **kw):
    svc = ota.OtaService(hub)
    job = svc.start(pkg, devices, "nurse", trial_s=5, **kw)
    while not job.done:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.02)
    return job


async def test_transfer_commit_and_confirmation():
    hub = FakeHub(["a"])
    t = Term(hub, "a")
    t.connect()
    pkg = package()
    job = await run_job(hub, pkg, ["a"])
    d = job.devices["a"]
    assert d.state == "ok" and d.version == "2.0" and d.from_version == "0.1.0", d
    assert t.files == dict(pkg.files)
    assert 1 < t.max_inflight <= ota.WINDOW
    assert not hub.result_waiters
    assert ("ota_update", "a", ) == hub.records[0][:2] and hub.records[0][2]["result"] == "ok"


async def test_session_lost_mid_transfer_resumes_where_the_terminal_stopped():
    hub = FakeHub(["a"])
    t = Term(hub, "a")
    t.connect()
    t.drop_after_chunks = 8
    orig = t._answer

    def answer(link, fields):      # reconnect a moment after the drop
        orig(link, fields)
        if link.closed and hub.links.get("a") is None and t.link is link:
            asyncio.get_running_loop().call_later(0.05, t.connect)
    t._answer = answer
    pkg = package()
    job = await run_job(hub, pkg, ["a"])
    d = job.devices["a"]
    assert d.state == "ok", d
    assert d.resumes == 1
    assert t.bytes_received == pkg.size          # nothing sent twice
    assert t.files == dict(pkg.files)


async def test_refused_chunk_fails_and_aborts():
    hub = FakeHub(["a"])
    t = Term(hub, "a")
    t.connect()
    t.corrupt_file = 1
    job = await run_job(hub, package(), ["a"])
    d = job.devices["a"]
    assert d.state == "failed" and "hash mismatch: lib/m1.py" in d.detail
    assert P.CMD_OTA_ABORT in t.commands and P.CMD_OTA_COMMIT not in t.commands


async def test_busy_commit_is_retried():
    hub = FakeHub(["a"])
    t = Term(hub, "a")
    t.connect()
    t.busy_commits = 1
    job = await run_job(hub, package(1, 100), ["a"])
    assert job.devices["a"].state == "ok"
    assert t.commands.count(P.CMD_OTA_COMMIT) == 2


async def test_rollback_is_reported_and_stops_the_rest():
    hub = FakeHub(["a", "b"])
    ta, tb = Term(hub, "a"), Term(hub, "b")
    ta.connect()
    tb.connect()
    ta.after_commit = "rolled_back"
    job = await run_job(hub, package(1, 100), ["a", "b"], parallel=1)
    a, b = job.devices["a"], job.devices["b"]
    assert a.state == "rolled_back" and a.version == "0.1.0" and "not online within 6 s" in a.detail
    assert b.state == "skipped" and "stopped after a rolled back" in b.detail
    assert P.CMD_OTA_BEGIN not in tb.commands


async def test_offline_and_up_to_date_terminals():
    hub = FakeHub(["a", "b"])
    t = Term(hub, "a", version="2.0")
    t.connect()
    job = await run_job(hub, package(1, 100), ["a", "b"], keep_going=True)
    assert job.devices["a"].state == "skipped" and "already runs 2.0" in job.devices["a"].detail
    assert job.devices["b"].state == "failed" and job.devices["b"].detail == "not connected"
    with pytest.raises(ota.OtaError):
        ota.OtaService(hub).start(package(), ["nope"], "nurse")
