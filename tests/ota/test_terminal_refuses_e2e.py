"""The terminal's own checks, with the host's bypassed: a running emulated board (real firmware, the
ward's update key installed as deploy installs it) online at a scripted host that drives the OTA
commands itself over the session. Unsigned, forged, tampered and downgraded packages, and a
corrupted transfer, are each refused with a clear result before anything is staged; the running
firmware is untouched, the board does not restart and its session goes on."""
import json
from pathlib import Path

import pytest

from tests.firmware import mprun
from tests.firmware.fakehost import FakeHost, P
from wardcall.demo import firmware_files
from wardcall.ota import Package
from wardcall.protocol import otaproto

from . import signed
from .signed import OTHER_KEY, commands, sign

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

FIRMWARE_LIB = Path(__file__).resolve().parents[2] / "firmware" / "lib"


def lib_files(board):
    """Every file in the board's lib/ (the deployed firmware is .mpy; an update ships .py)."""
    return {p.name: p.read_bytes() for p in (board.flash_dir / "lib").iterdir() if p.is_file()}


class Session:
    """The scripted host's OTA commands to one board, each answered by RESULT."""

    def __init__(self, host):
        self.host = host

    def command(self, cmd, arg=b""):
        ok, detail = self.host.command(cmd, arg)
        return ok, otaproto.parse_result(detail)

    def send(self, cmds):
        """Every command until the first refusal: [(ok, answer)]. A command answered no_memory
        is asked again (twice at most), as the host's transfer does (ota/transfer.py): the
        terminal found no block for the update's receiver on a heap the last case left
        fragmented, which says nothing about the package (seen once in a full suite run)."""
        out = []
        for cmd, arg in cmds:
            answer = self.command(cmd, arg)
            for _ in range(2):
                if answer != (0, {"c": otaproto.R_NO_MEMORY}):
                    break
                answer = self.command(cmd, arg)
            out.append(answer)
            if not answer[0]:
                break
        return out


@pytest.fixture
def online_board(fleet, tmp_path):
    """online_board(key=True, extra_files={}) -> (board, Session): a board online at a scripted host."""
    hosts = []

    def make(key=True, extra=None):
        host = FakeHost("bed-101-1", mprun.KEY, hb_ms=300).start()
        hosts.append(host)
        files = firmware_files(mprun.config(port=host.port))
        if key:
            files[otaproto.KEY_FILE] = signed.key_text()
        files.update(extra or {})
        board = fleet.add_board("bed-101-1", flash_dir=tmp_path / ("flash%d" % len(hosts)), files=files)
        host.wait_for(lambda: host.connected() and host.messages(P.HEARTBEAT), 20, "the board online")
        return board, Session(host)

    yield make
    for h in hosts:
        h.stop()


def assert_untouched(board, session, before, starts):
    assert lib_files(board) == before
    assert not (board.flash_dir / ".ota" / "new").exists()
    assert not (board.flash_dir / ".ota" / "state.json").exists()
    assert board.state()["starts"] == starts
    ok, st = session.command(P.CMD_OTA_STATUS)
    assert ok and st["c"] == "status" and st["s"] == "idle" and st["run"] == "0.1.0", st
    n = len(session.host.messages(P.HEARTBEAT))
    session.host.wait_for(lambda: len(session.host.messages(P.HEARTBEAT)) > n + 2, 5, "heartbeats go on")


def new_app():
    return (FIRMWARE_LIB / "app.py").read_bytes().replace(b"gc", b"GC", 1)


def test_packages_the_ward_key_did_not_sign_are_refused_before_anything_is_staged(online_board):
    board, session = online_board()
    starts = board.state()["starts"]
    before = lib_files(board)
    good = sign([("lib/app.py", new_app())], version="6.6.6", serial=2000)
    unsigned = Package(good.version, good.files, serial=good.serial, kid=good.kid)
    other = sign([("lib/app.py", new_app())], version="6.6.6", serial=2000, key=OTHER_KEY)
    claims_ward = Package(other.version, other.files, serial=other.serial, kid=good.kid, signature=other.signature)
    changed = bytearray(new_app())
    changed[len(changed) // 2] ^= 0x20
    tampered = signed.tampered(good, "lib/app.py", bytes(changed))
    cases = [
        ("unsigned", commands(unsigned), {"c": "unsigned"}),
        ("another key", commands(other), {"c": "wrong_key", "kid": other.kid, "have": good.kid}),
        ("another key, claiming the ward's", commands(claims_ward), {"c": "bad_signature"}),
        ("tampered, announced as it is", commands(tampered), {"c": "bad_signature"}),
        ("tampered, declared as it is", commands(tampered, signed_manifest=good.manifest()), {"c": "manifest_mismatch"}),
        ("tampered, declared as signed", commands(tampered, manifest=good.manifest()),
         {"c": "hash_mismatch", "path": "lib/app.py"}),
    ]
    for name, cmds, refusal in cases:
        got = session.send(cmds)
        assert got[-1] == (0, refusal), (name, got[-3:], board.console()[-2000:])
        if refusal["c"] != "hash_mismatch":       # refused before the first chunk was accepted
            assert all(cmds[i][0] != P.CMD_OTA_CHUNK for i in range(len(got))), name
        assert_untouched(board, session, before, starts)
    console = board.console()
    assert "refused" in console and "signature verified" in console     # the tampered ones passed BEGIN


def test_a_downgrade_is_refused_by_the_terminal(online_board):
    board, session = online_board(extra={".ota/installed.json": json.dumps({"serial": 5000, "v": "0.1.0"})})
    starts = board.state()["starts"]
    before = lib_files(board)
    got = session.send(commands(sign([("lib/app.py", new_app())], serial=4999)))
    assert got == [(0, {"c": "downgrade", "serial": 4999, "installed": 5000})]
    assert otaproto.describe(got[0][1]) == "downgrade refused: serial 4999 is not newer than the installed serial 5000"
    assert_untouched(board, session, before, starts)


def test_a_terminal_without_the_key_refuses_every_update(online_board):
    board, session = online_board(key=False)
    starts = board.state()["starts"]
    before = lib_files(board)
    got = session.send(commands(sign([("lib/app.py", new_app())])))
    assert got == [(0, {"c": "no_key"})]
    assert otaproto.describe(got[0][1]) == "no update key installed: deploy it"
    assert_untouched(board, session, before, starts)
    ok, st = session.command(P.CMD_OTA_STATUS)
    assert st["key"] == ""


def test_corrupted_chunk_is_refused_without_touching_the_running_firmware(online_board):
    board, session = online_board()
    starts = board.state()["starts"]
    before = lib_files(board)
    pkg = sign([("lib/app.py", new_app())])
    cmds = commands(pkg, commit=False)
    last = cmds[-1]
    arg = bytearray(last[1])
    arg[-1] ^= 0x01                     # a byte of the last chunk changed on the way
    got = session.send(cmds[:-1] + [(last[0], bytes(arg))])
    assert got[-1] == (0, {"c": "hash_mismatch", "path": "lib/app.py"})
    ok, answer = session.command(P.CMD_OTA_COMMIT)
    assert not ok and answer["c"] == "not_started"        # the update was discarded
    assert_untouched(board, session, before, starts)
    assert "its SHA-256 is not the signed one" in board.console()
