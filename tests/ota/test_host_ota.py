"""The host's half of the over-the-air update (wardcall.ota.OtaService, TerminalUpdate) against the
real terminal code: each terminal is a MicroPython process running firmware/lib/ota.py and
otaboot.py from its own flash folder (tests/ota/mp_terminal.py), its session a pipe instead of TCP.
Package building and the server's refusals (unsigned, forged, tampered, downgrade) are here too."""
import asyncio
import binascii
import json
import os
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from wardcall import ota
from wardcall.bus import ConsoleBus
from wardcall.hub import WardHub
from wardcall.protocol import otaproto, wardproto as P

from . import signed
from .signed import OTHER_KEY, WARD_KEY, sign

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
MICROPYTHON = Path(sys.executable).with_name("micropython")
SHIMS = ROOT / "tests" / "firmware" / "shims"
BRIDGE = Path(__file__).resolve().parent / "mp_terminal.py"


# ----- packages -----

def test_package_from_the_repository_firmware():
    pkg = ota.build_package()
    paths = [p for p, _ in pkg.files]
    assert "lib/app.py" in paths and "lib/ota.py" in paths and "lib/version.py" in paths
    for never in ("lib/otaboot.py", "lib/otacheck.py", "lib/otaproto.py", "lib/maint.py", "lib/board.py", "boot.py", "main.py"):
        assert never not in paths
    assert pkg.version and len(pkg.id) == 32
    with pytest.raises(ota.OtaError, match="not signed"):        # what build_package makes is unsigned
        ota.Package.from_json(json.loads(json.dumps(pkg.to_json())))
    good = ota.signing.sign(pkg, WARD_KEY, 7)
    back = ota.Package.from_json(json.loads(json.dumps(good.to_json())))
    assert back.id == good.id and back.signature == good.signature and back.serial == 7


def test_compiled_package_has_only_mpy(firmware_copy):
    pkg = ota.build_package(firmware_copy("3.0-mpy"), compile=True)
    assert pkg.version == "3.0-mpy"
    assert all(p.endswith(".mpy") for p, _ in pkg.files)
    assert not any(p.endswith(".py") for p, _ in pkg.files)


@pytest.mark.parametrize("path,ok", [("lib/a.py", True), ("lib/sub/a.mpy", True), ("lib/otaboot.py", False),
                                     ("lib/otaproto.py", False), ("lib/otacheck.mpy", False), ("lib/maint.mpy", False), ("boot.py", False),
                                     ("lib/../x.py", False), ("lib/a.txt", False), ("lib/ä.py", False),
                                     ("otakey.json", False)])
def test_valid_path(path, ok):
    assert ota.valid_path(path) is ok


def test_uploaded_package_is_checked():
    good = sign([("lib/a.py", b"x")]).to_json()
    for bad, why in ((dict(good, files=[["boot.py", "eA=="]]), "may not be updated"),
                     (dict(good, version=""), "version"),
                     (dict(good, files=[["lib/a.py", "not base64!"]]), "bad package"),
                     (dict(good, signature=""), "not signed"),
                     (dict(good, files=[["lib/a.py", "eQ=="]]), "lib/a.py was changed after the package was signed"),
                     (dict(good, files=[["lib/a.py", "eA=="], ["lib/b.py", "eA=="]]), "lib/b.py was added")):
        with pytest.raises(ota.OtaError, match=why):
            ota.Package.from_json(bad)


# ----- the transfer, against the real firmware in MicroPython -----

class PipeLink:
    """The terminal's session as the hub sees it (send, close, closed_because)."""

    def __init__(self, term):
        self.term = term
        self.closed_because = None

    def send(self, mtype, fields):
        assert mtype == P.COMMAND
        if self.closed_because is None:
            self.term.command(self, fields)

    def close(self, reason):
        if self.closed_because is None:
            self.closed_because = reason
            if self.term.hub.links.get(self.term.device) is self:
                del self.term.hub.links[self.term.device]


class MpTerminal:
    """One terminal: a flash folder with the real firmware (plus the ward's key) and a MicroPython
    process for each start of it (a reset ends the process, the next start is a new one). Faults to
    script: drop the session after some chunks (the board keeps running, so it resumes from RAM),
    flip a byte of one chunk, undelivered call events at commit, a broken firmware after the next
    reboot."""

    def __init__(self, hub, device, flash, key=WARD_KEY):
        self.hub, self.device, self.flash = hub, device, flash
        shutil.copytree(ROOT / "firmware" / "lib", flash / "lib", ignore=shutil.ignore_patterns("__pycache__"))
        if key is not None:
            (flash / otaproto.KEY_FILE).write_text(signed.key_text(key))
        self.proc = None
        self.link = None
        self.commands = []              # (cmd, arg) in the order the terminal got them
        self.results = []               # parsed RESULT details
        self.inflight = self.max_inflight = 0
        self.drop_after_chunks = None
        self.corrupt = None             # (file index, offset) of a chunk to flip a byte of
        self.busy_commits = 0           # call events pending at the first commits
        self.broken_next_boot = False
        self.boots = []                 # the boot step's state at each start
        self.closing = False
        self.life = None

    async def start(self):
        """Power on; returns once the first start has finished its boot step."""
        first = asyncio.get_running_loop().create_future()
        self.life = asyncio.get_running_loop().create_task(self._life(first))
        await asyncio.wait_for(first, 20)

    async def _life(self, first):
        env = dict(os.environ, MICROPYPATH="lib:%s" % SHIMS)
        while not self.closing:
            broken, self.broken_next_boot = self.broken_next_boot, False
            self.proc = proc = await asyncio.create_subprocess_exec(
                str(MICROPYTHON), str(BRIDGE), *(["broken"] if broken else []), cwd=self.flash, env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    break
                parts = line.split()
                if parts[:1] == ["BOOT"]:
                    self.boots.append(json.loads(line.split(" ", 2)[2]))
                    self._connect(parts[1])
                    if not first.done():
                        first.set_result(None)
                elif parts[:1] == ["R"]:
                    self._result(int(parts[1]), int(parts[2]), parts[3], binascii.unhexlify(parts[4]).decode())
            await proc.wait()
            if self.link is not None:
                self.link.close("reset")
            if proc.returncode != 0:
                if not first.done():
                    first.set_exception(RuntimeError("terminal exited with %d" % proc.returncode))
                return

    def _connect(self, version):
        self.link = PipeLink(self)
        self.hub.links[self.device] = self.link
        self.hub.ward.terminals[self.device].firmware = version

    def _result(self, cmd_id, ok, after, detail):
        self.inflight -= 1
        answer = otaproto.parse_result(detail)
        self.results.append(answer)
        if answer.get("c") == otaproto.R_BUSY_CALLS:
            self.busy_commits -= 1
            self._send_line("O %d" % max(self.busy_commits, 0))
        self.hub.take_result(self.device, {"cmd_id": cmd_id, "ok": ok, "detail": detail})

    def _send_line(self, line):
        self.proc.stdin.write((line + "\n").encode())

    def command(self, link, fields):
        cmd, arg = fields["cmd"], bytes(fields["arg"])
        if cmd == P.CMD_OTA_CHUNK and self.corrupt is not None and tuple(otaproto.decode_chunk(arg)[:2]) == self.corrupt:
            arg = arg[:-1] + bytes([arg[-1] ^ 1])
        if cmd == P.CMD_OTA_COMMIT and self.busy_commits:
            self._send_line("O %d" % self.busy_commits)
        self.commands.append((cmd, arg))
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        self._send_line("C %d %d %s" % (fields["cmd_id"], cmd, arg.hex()))
        if cmd == P.CMD_OTA_CHUNK and self.drop_after_chunks is not None:
            self.drop_after_chunks -= 1
            if self.drop_after_chunks == 0:
                self.drop_after_chunks = None
                link.close("dropped")                  # the session, not the board: back in a moment
                asyncio.get_running_loop().call_later(0.05, self._connect, self.hub.ward.terminals[self.device].firmware)

    def sent(self, cmd):
        return [a for c, a in self.commands if c == cmd]

    def lib(self):
        return {p.name: p.read_bytes() for p in (self.flash / "lib").iterdir() if p.is_file()}

    async def stop(self):
        self.closing = True
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
        if self.life is not None:
            await asyncio.wait_for(self.life, 10)


class FakeHub:
    """The hub's interface that OtaService uses (the terminals are real, the server is not)."""
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


@pytest.fixture
async def ward(tmp_path):
    """make(devices, keys={device: key or None}) -> (hub, service, {device: MpTerminal}); the
    server holds the ward's public key only. Every terminal is stopped at the end."""
    terms = []

    async def make(devices=("a",), keys=None):
        public = tmp_path / "ward.ota-public.pem"
        signed.write_key_files(tmp_path / "ward.ota-private.pem", public)
        hub = FakeHub(list(devices))
        svc = ota.OtaService(hub, public_key=public)
        out = {}
        for d in devices:
            (tmp_path / ("flash-" + d)).mkdir()
            t = MpTerminal(hub, d, tmp_path / ("flash-" + d), key=(keys or {}).get(d, WARD_KEY))
            terms.append(t)
            await t.start()
            out[d] = t
        return hub, svc, out

    yield make
    for t in terms:
        await t.stop()


def package(n_files=3, size=5000, version="2.0", serial=200, key=WARD_KEY):
    """n_files modules of about `size` bytes, and lib/version.py saying `version`."""
    files = [("lib/m%d.py" % i, (b"M%d = 1\n" % i) * (size // 7)) for i in range(n_files)]
    return sign(files + [("lib/version.py", b'VERSION = "%s"\n' % version.encode())],
                version=version, serial=serial, key=key)


async def run_job(svc, pkg, devices, **kw):
    job = svc.start(pkg, devices, "nurse", trial_s=5, **kw)
    await asyncio.wait_for(svc.wait(job), 40)
    return job


async def test_transfer_commit_and_confirmation(ward):
    hub, svc, terms = await ward()
    t = terms["a"]
    pkg = package()
    job = await run_job(svc, pkg, ["a"])
    d = job.devices["a"]
    assert d.state == "ok" and d.version == "2.0" and d.from_version == "0.1.0", (d, t.results[-5:])
    for path, data in pkg.files:
        assert (t.flash / path).read_bytes() == data
    assert 1 < t.max_inflight <= ota.WINDOW
    assert not hub.result_waiters
    # the terminal's installed serial is now the package's, and the server remembers it
    assert json.loads((t.flash / ".ota" / "installed.json").read_text())["serial"] == 200
    assert svc.serials["a"] == 200
    assert [r[0] for r in hub.records] == ["ota_update", "ota_job_done"] and hub.records[0][2]["result"] == "ok"
    # the whole manifest was declared before the first chunk
    kinds = [c for c, _ in t.commands]
    assert kinds.index(P.CMD_OTA_CHUNK) > max(i for i, c in enumerate(kinds) if c == P.CMD_OTA_FILE)


async def test_session_lost_mid_transfer_resumes_where_the_terminal_stopped(ward):
    hub, svc, terms = await ward()
    t = terms["a"]
    t.drop_after_chunks = 8
    pkg = package()
    job = await run_job(svc, pkg, ["a"])
    d = job.devices["a"]
    assert d.state == "ok", (d, t.results[-5:])
    assert d.resumes == 1
    assert len(t.sent(P.CMD_OTA_BEGIN)) == 2
    # nothing sent twice but what was in flight when the session dropped (at most the window)
    data = sum(len(a) - otaproto.CHUNK_HEADER for a in t.sent(P.CMD_OTA_CHUNK))
    assert pkg.size <= data <= pkg.size + ota.WINDOW * ota.CHUNK


async def test_refused_chunk_fails_and_aborts(ward):
    hub, svc, terms = await ward()
    t = terms["a"]
    before = t.lib()
    t.corrupt = (1, 0)
    job = await run_job(svc, package(), ["a"])
    d = job.devices["a"]
    assert d.state == "failed" and "hash mismatch: lib/m1.py" in d.detail
    assert t.sent(P.CMD_OTA_ABORT) and not t.sent(P.CMD_OTA_COMMIT)
    assert t.lib() == before and not (t.flash / ".ota" / "new").exists()


async def test_busy_commit_is_retried(ward):
    hub, svc, terms = await ward()
    t = terms["a"]
    t.busy_commits = 1
    job = await run_job(svc, package(1, 100), ["a"])
    assert job.devices["a"].state == "ok"
    assert len(t.sent(P.CMD_OTA_COMMIT)) == 2
    assert {"c": "busy_calls", "n": 1} in t.results


async def test_rollback_is_reported_and_stops_the_rest(ward):
    hub, svc, terms = await ward(["a", "b"])
    ta, tb = terms["a"], terms["b"]
    ta.broken_next_boot = True
    before = ta.lib()
    job = await run_job(svc, package(1, 100), ["a", "b"], parallel=1)
    a, b = job.devices["a"], job.devices["b"]
    assert a.state == "rolled_back" and a.version == "0.1.0", (a, ta.boots)
    assert "crashed at start" in a.detail and "broken on purpose" in a.detail
    assert ta.lib() == before
    assert b.state == "skipped" and "stopped after a rolled back" in b.detail
    assert not tb.sent(P.CMD_OTA_BEGIN)


async def test_offline_and_up_to_date_terminals(ward):
    hub, svc, terms = await ward(["a", "b"])
    await terms["b"].stop()
    hub.links.pop("b", None)
    hub.ward.terminals["a"].firmware = "2.0"
    job = await run_job(svc, package(1, 100), ["a", "b"], keep_going=True)
    with pytest.raises(ota.OtaError):
        svc.start(package(), ["nope"], "nurse")
    assert job.devices["a"].state == "skipped" and "already runs 2.0" in job.devices["a"].detail
    assert job.devices["b"].state == "failed" and job.devices["b"].detail == "not connected"


# ----- what the server refuses before anything is sent -----

async def test_server_refuses_unsigned_forged_and_tampered_packages(ward):
    hub, svc, terms = await ward()
    good = package(1, 100)
    forged = package(1, 100, key=OTHER_KEY)
    tampered = signed.tampered(good, "lib/m0.py", b"import os\n")
    unsigned = ota.Package(good.version, good.files, serial=good.serial, kid=good.kid)
    refusals = {}
    for name, pkg in (("unsigned", unsigned), ("forged", forged), ("tampered", tampered)):
        with pytest.raises(ota.OtaError) as exc:
            svc.start(pkg, ["a"], "nurse")
        refusals[name] = exc.value
    assert "not signed" in str(refusals["unsigned"])
    assert "signed with another key" in str(refusals["forged"]) and signed.signing.key_id(WARD_KEY.public_key()) in str(refusals["forged"])
    assert "signature does not verify" in str(refusals["tampered"])
    assert all(e.status == 400 for e in refusals.values())
    assert terms["a"].commands == [] and not svc.jobs


async def test_downgrade_is_refused_at_the_server_and_at_the_terminal(ward):
    hub, svc, terms = await ward()
    t = terms["a"]
    first = await run_job(svc, package(1, 100, version="2.0", serial=300), ["a"])
    assert first.devices["a"].state == "ok"
    older = package(1, 100, version="2.1", serial=250)
    with pytest.raises(ota.OtaConflict, match="downgrade refused: package serial 250 is not newer than the serial 300 installed on a"):
        svc.start(older, ["a"], "nurse")
    sent = len(t.commands)
    # an explicit override at the server is recorded, and the terminal still refuses
    job = await run_job(svc, older, ["a"], allow_downgrade=True)
    assert "downgrade check overridden by nurse" in job.view()["override"]
    overrides = [r for r in hub.records if r[0] == "ota_downgrade_override"]
    assert len(overrides) == 1 and overrides[0][2]["serial"] == 250 and overrides[0][2]["devices"] == "a"
    d = job.devices["a"]
    assert d.state == "failed" and "downgrade: serial 250 is not newer than the installed serial 300" in d.detail
    assert [c for c, _ in t.commands[sent:]] == [P.CMD_OTA_STATUS]      # asked, and sent nothing


async def test_server_that_does_not_know_the_serial_asks_the_terminal_first(ward):
    hub, svc, terms = await ward(["a", "b"], keys={"b": None})
    t = terms["a"]
    (t.flash / ".ota").mkdir(exist_ok=True)
    (t.flash / ".ota" / "installed.json").write_text(json.dumps({"serial": 500, "v": "1.9"}))
    job = await run_job(svc, package(1, 100, serial=400), ["a", "b"], keep_going=True)
    a, b = job.devices["a"], job.devices["b"]
    assert a.state == "failed" and "downgrade: serial 400 is not newer than the installed serial 500" in a.detail
    assert b.state == "failed" and "no update key installed: deploy it" in b.detail
    for term in terms.values():
        assert [c for c, _ in term.commands] == [P.CMD_OTA_STATUS]
