"""A corrupted update on a running emulated board (real firmware) against a scripted host that
sends bytes not matching the declared SHA-256: refused, and the running firmware untouched."""
import hashlib
import json
import struct
from pathlib import Path

import pytest

from tests.firmware import mprun
from tests.firmware.fakehost import FakeHost, P
from wardcall.demo import firmware_files

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

FIRMWARE_LIB = Path(__file__).resolve().parents[2] / "firmware" / "lib"


def lib_files(board):
    """Every file in the board's lib/ (the deployed firmware is .mpy; an update ships .py)."""
    return {p.name: p.read_bytes() for p in (board.flash_dir / "lib").iterdir() if p.is_file()}


def test_corrupted_chunk_is_refused_without_touching_the_running_firmware(fleet, tmp_path):
    host = FakeHost("bed-101-1", mprun.KEY, hb_ms=300).start()
    try:
        cfg = mprun.config(port=host.port)
        board = fleet.add_board("bed-101-1", flash_dir=tmp_path / "flash", files=firmware_files(cfg))
        host.wait_for(lambda: host.connected() and host.messages(P.HEARTBEAT), 20, "the board online")
        starts = board.state()["starts"]
        before = lib_files(board)
        data = (FIRMWARE_LIB / "app.py").read_bytes().replace(b"gc", b"GC", 1)
        sha = hashlib.sha256(data).hexdigest()
        corrupt = bytearray(data)
        corrupt[len(data) // 2] ^= 0x20
        cmd_id = [100]

        def command(cmd, arg):
            cmd_id[0] += 1
            n = cmd_id[0]
            host.send(P.COMMAND, {"cmd_id": n, "cmd": cmd, "arg": arg})
            return host.wait_for(lambda: next((m for m in host.messages(P.RESULT) if m["cmd_id"] == n), None),
                                 10, "RESULT %d" % n)

        try:
            r = command(P.CMD_OTA_BEGIN, json.dumps({"v": "6.6.6", "n": 1, "size": len(data), "id": "bad"}).encode())
        except AssertionError:
            raise AssertionError(board.console()[-3000:] + repr(host.messages()[-5:]))
        assert r["ok"] and r["detail"] == "at 0 0"
        assert command(P.CMD_OTA_FILE, json.dumps([0, "lib/app.py", len(data), sha]).encode())["ok"]
        off = 0
        while off < len(data):
            r = command(P.CMD_OTA_CHUNK, struct.pack(">HI", 0, off) + bytes(corrupt[off:off + 960]))
            off += 960
        assert not r["ok"] and r["detail"] == "hash mismatch: lib/app.py"
        r = command(P.CMD_OTA_COMMIT, b"")
        assert not r["ok"] and r["detail"].startswith("incomplete")
        status = json.loads(command(P.CMD_OTA_STATUS, b"")["detail"])
        assert status["s"] == "idle" and status["run"] == "0.1.0"
        # nothing changed, no reboot, still online
        assert lib_files(board) == before
        assert not (board.flash_dir / ".ota" / "state.json").exists()
        assert board.state()["starts"] == starts
        n = len(host.messages(P.HEARTBEAT))
        host.wait_for(lambda: len(host.messages(P.HEARTBEAT)) > n + 2, 5, "heartbeats go on")
        assert "refused: SHA-256" in board.console()
    finally:
        host.stop()
