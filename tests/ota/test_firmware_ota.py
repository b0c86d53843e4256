"""The terminal's half of the over-the-air update under the real MicroPython unix port (no
emulator, no host): firmware/lib/ota.py (receiver, trial) and firmware/lib/otaboot.py (swap,
rollback), on a flash folder in tmp."""
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.firmware import mprun

pytestmark = pytest.mark.timeout(60)

FW = Path(__file__).resolve().parents[2] / "firmware"

# MicroPython prelude: an OTA driver written the way the host talks (the same commands and args)
PRELUDE = r"""
import json, struct, hashlib, binascii, os
import ota, otaboot as B
from wardproto import *
def sha(b):
    return binascii.hexlify(hashlib.sha256(b).digest()).decode()
def send(r, files, version="9.9", pid="p1", chunk=300, corrupt=None):
    size = sum([len(d) for p, d in files])
    res = [r.handle(CMD_OTA_BEGIN, json.dumps({"v": version, "n": len(files), "size": size, "id": pid, "trial_s": 30}).encode())]
    for i, (p, d) in enumerate(files):
        res.append(r.handle(CMD_OTA_FILE, json.dumps([i, p, len(d), sha(d)]).encode()))
        off = 0
        while off < len(d):
            piece = d[off:off + chunk]
            if corrupt == (i, off):
                piece = bytes([piece[0] ^ 1]) + piece[1:]
            res.append(r.handle(CMD_OTA_CHUNK, struct.pack(">HI", i, off) + piece))
            off += len(piece)
    return res
def tree(top="lib"):
    return sorted(os.listdir(top))
"""


def flash_with(tmp_path, files):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text) if isinstance(text, str) else p.write_bytes(text)
    return tmp_path


def run(code, flash):
    rc, out = mprun.run_code(PRELUDE + code, flash)
    return rc, out


def test_transfer_commit_swap_confirm(tmp_path):
    flash_with(tmp_path, {"lib/mod.py": "X = 'old'\n", "lib/gone.mpy": b"M\x06old"})
    rc, out = run(r"""
r = ota.Receiver([])
new = b"X = 'new'\n" * 200
res = send(r, [("lib/mod.py", new), ("lib/gone.py", b"Y = 1\n"), ("lib/extra.py", b"")])
print("RES", res[-1], [x[0] for x in res].count(0))
print("COMMIT", r.handle(CMD_OTA_COMMIT, b""))
print("STATE", B.read()["s"], B.read()["files"])
B.boot()
print("TRIAL", B.in_trial(), tree(), open("lib/mod.py").read()[:9])
print("CONFIRM", B.confirm(), B.read()["s"], ".ota" in os.listdir(), os.listdir(".ota"))
print("STATUS", r.handle(CMD_OTA_STATUS, b"")[1])
""", tmp_path)
    assert rc == 0, out
    assert "RES (1, 'done 2', None) 0" in out
    assert "COMMIT (1, 'committed 9.9: rebooting', 'reboot')" in out
    assert "STATE pending ['lib/mod.py', 'lib/gone.py', 'lib/extra.py']" in out
    # the .mpy twin of gone.py moved out of the way, the new module in place
    assert "TRIAL True ['extra.py', 'gone.py', 'mod.py'] X = 'new'" in out
    assert "CONFIRM True confirmed True ['state.json']" in out
    st = json.loads(out.split("STATUS ")[1].splitlines()[0])
    assert st["s"] == "confirmed" and st["v"] == "9.9" and st["from"] == "0.1.0"


def test_corrupted_chunk_is_refused_and_nothing_changes(tmp_path):
    flash_with(tmp_path, {"lib/mod.py": "X = 'old'\n"})
    rc, out = run(r"""
r = ota.Receiver([])
res = send(r, [("lib/mod.py", b"X = 'new'\n" * 100)], corrupt=(0, 300))
print("LAST", res[-1])
print("COMMIT", r.handle(CMD_OTA_COMMIT, b""))
print("STATE", B.read(), open("lib/mod.py").read(), os.listdir(".ota/new/lib"))
B.boot()
print("AFTER BOOT", B.state, open("lib/mod.py").read())
""", tmp_path)
    assert rc == 0, out
    assert "LAST (0, 'hash mismatch: lib/mod.py', None)" in out
    assert "COMMIT (0, 'incomplete: 0 of 1 file(s)', None)" in out
    assert "STATE {} X = 'old'\n []" in out
    assert "AFTER BOOT {} X = 'old'" in out


@pytest.mark.parametrize("path", ["boot.py", "main.py", "lib/otaboot.py", "lib/maint.mpy", "lib/board.py",
                                  "lib/../boot.py", "config.json", "lib/x.txt", "lib/ä.py", "/lib/x.py"])
def test_paths_outside_the_updatable_modules_are_refused(tmp_path, path):
    rc, out = run(r"""
r = ota.Receiver([])
print(r.handle(CMD_OTA_BEGIN, json.dumps({"v": "1", "n": 1, "size": 3, "id": "a"}).encode()))
print("FILE", r.handle(CMD_OTA_FILE, json.dumps([0, %r, 3, sha(b"abc")]).encode()))
""" % path, tmp_path)
    assert rc == 0, out
    assert "FILE (0, 'path " in out and "may not be updated over the air" in out


def test_size_is_bounded_by_free_flash_and_limits(tmp_path):
    rc, out = run(r"""
r = ota.Receiver([])
ota.free_bytes = lambda: 40000
print("BIG", r.handle(CMD_OTA_BEGIN, json.dumps({"v": "1", "n": 1, "size": 10000, "id": "a"}).encode()))
print("HUGE", r.handle(CMD_OTA_BEGIN, json.dumps({"v": "1", "n": 1, "size": 10**7, "id": "a"}).encode()))
print("OK", r.handle(CMD_OTA_BEGIN, json.dumps({"v": "1", "n": 1, "size": 4000, "id": "a"}).encode()))
print("OVER", r.handle(CMD_OTA_FILE, json.dumps([0, "lib/a.py", 5000, sha(b"")]).encode()))
print("JUNK", r.handle(CMD_OTA_BEGIN, b"\xff{"))
""", tmp_path)
    assert rc == 0, out
    assert "BIG (0, 'not enough flash: 42768 bytes needed, 40000 free', None)" in out
    assert "HUGE (0, 'bad OTA manifest" in out
    assert "OK (1, 'at 0 0', None)" in out
    assert "OVER (0, 'files exceed the declared size', None)" in out
    assert "JUNK (0, 'bad OTA manifest', None)" in out


def test_resume_duplicates_and_order(tmp_path):
    rc, out = run(r"""
r = ota.Receiver([])
d = bytes(range(256)) * 4
begin = json.dumps({"v": "2", "n": 1, "size": len(d), "id": "same"}).encode()
print(r.handle(CMD_OTA_BEGIN, begin))
decl = json.dumps([0, "lib/m.py", len(d), sha(d)]).encode()
print(r.handle(CMD_OTA_FILE, decl))
print("C0", r.handle(CMD_OTA_CHUNK, struct.pack(">HI", 0, 0) + d[:500]))
print("GAP", r.handle(CMD_OTA_CHUNK, struct.pack(">HI", 0, 700) + d[700:800]))
print("DUP", r.handle(CMD_OTA_CHUNK, struct.pack(">HI", 0, 0) + d[:500]))
print("RESUME", r.handle(CMD_OTA_BEGIN, begin))
print("REDECL", r.handle(CMD_OTA_FILE, decl))
print("C1", r.handle(CMD_OTA_CHUNK, struct.pack(">HI", 0, 500) + d[500:]))
print("OTHER", r.handle(CMD_OTA_BEGIN, begin.replace(b"same", b"new")))
""", tmp_path)
    assert rc == 0, out
    assert "C0 (1, 'at 500', None)" in out
    assert "GAP (0, 'expected at 0 500', None)" in out
    assert "DUP (1, 'at 0 500', None)" in out
    assert "RESUME (1, 'at 0 500', None)" in out
    assert "REDECL (1, 'at 500', None)" in out
    assert "C1 (1, 'done 0', None)" in out
    assert "OTHER (1, 'at 0 0', None)" in out      # another package: starts again


def test_commit_waits_for_undelivered_calls(tmp_path):
    rc, out = run(r"""
outbox = ["a call"]
r = ota.Receiver(outbox)
send(r, [("lib/m.py", b"Z = 1\n")])
print("BUSY", r.handle(CMD_OTA_COMMIT, b""))
outbox.pop()
print("NOW", r.handle(CMD_OTA_COMMIT, b""))
""", tmp_path)
    assert rc == 0, out
    assert "BUSY (0, 'busy: 1 call event(s) not yet delivered', None)" in out
    assert "NOW (1, 'committed 9.9: rebooting', 'reboot')" in out


def test_boot_in_trial_rolls_back_and_an_interrupted_swap_too(tmp_path):
    flash_with(tmp_path, {"lib/mod.mpy": b"OLDMPY", "lib/keep.py": "K = 1\n"})
    rc, out = run(r"""
r = ota.Receiver([])
send(r, [("lib/mod.py", b"M = 'new'\n"), ("lib/added.py", b"A = 1\n")])
r.handle(CMD_OTA_COMMIT, b"")
B.boot()
print("TRIAL", tree())
B.state = None
B.boot()                                 # started again without confirming
print("BACK", tree(), open("lib/mod.mpy").read(), B.read()["s"], B.read()["why"])
# an interrupted swap: state "swapping", one file moved, the other not yet
send(r, [("lib/mod.py", b"M = 'new'\n"), ("lib/keep.py", b"K = 2\n")], pid="p2")
r.handle(CMD_OTA_COMMIT, b"")
st = B.read()
st["s"] = "swapping"; st["moved"] = ["lib/mod.mpy", "lib/keep.py"]; st["added"] = ["lib/mod.py"]
B.write(st)
B.makedirs(".ota/old/lib")
os.rename("lib/mod.mpy", ".ota/old/lib/mod.mpy")
os.rename(".ota/new/lib/mod.py", "lib/mod.py")
B.boot()
print("UNDONE", tree(), open("lib/mod.mpy").read(), open("lib/keep.py").read().strip(), B.read()["why"])
""", tmp_path)
    assert rc == 0, out
    assert "TRIAL ['added.py', 'keep.py', 'mod.py']" in out
    assert "BACK ['keep.py', 'mod.mpy'] OLDMPY rolled_back restarted before the new firmware was confirmed" in out
    assert "UNDONE ['keep.py', 'mod.mpy'] OLDMPY K = 1 the swap was interrupted" in out


def test_crash_at_start_in_trial_resets_and_records_why(tmp_path):
    flash_with(tmp_path, {"lib/app.py": "raise RuntimeError('bad app')\n",
                          ".ota/state.json": json.dumps({"s": "trial", "v": "2", "from": "1", "files": [],
                                                         "moved": [], "added": []})})
    shutil.copy(FW / "main.py", tmp_path / "main.py")
    rc, out = mprun.run_code(r"""
import sys
sys.path.insert(0, "lib")              # this flash's lib/app.py, not the repository's
import maint, otaboot
maint.active = ""
otaboot.state = otaboot.read()
exec(open("main.py").read())
""", tmp_path)
    assert "MACHINE RESET" in out, out
    st = json.loads((tmp_path / ".ota" / "state.json").read_text())
    assert st["s"] == "trial" and "crashed at start" in st["why"] and "bad app" in st["why"]


def test_maintenance_mode_wins_over_a_pending_update(tmp_path):
    flash_with(tmp_path, {"maintenance": "", "lib/m.py": "M = 1\n"})
    shutil.copy(FW / "boot.py", tmp_path / "boot.py")
    rc, out = run(r"""
r = ota.Receiver([])
send(r, [("lib/m.py", b"M = 2\n")])
r.handle(CMD_OTA_COMMIT, b"")
exec(open("boot.py").read())
print("AFTER", B.read()["s"], open("lib/m.py").read().strip())
""", tmp_path)
    assert rc == 0, out
    assert "MAINTENANCE MODE" in out
    assert "AFTER pending M = 1" in out


def test_trial_confirms_only_after_being_online_long_enough(tmp_path):
    flash_with(tmp_path, {".ota/state.json": json.dumps({"s": "trial", "v": "2", "from": "1", "files": [],
                                                         "moved": [], "added": []})})
    rc, out = run(r"""
import time
B.state = B.read()
class L:
    online = False
    hb_ms = 200
link = L()
t = ota.Trial(link)
t.tick(); print("OFF", B.read()["s"])
link.online = True
t.tick(); time.sleep_ms(1000); t.tick(); print("SHORT", B.read()["s"])
link.online = False; t.tick(); link.online = True; t.tick()
time.sleep_ms(1500); t.tick(); print("BLIP", B.read()["s"])
time.sleep_ms(600); t.tick(); print("LONG", B.read()["s"])
""", tmp_path)
    assert rc == 0, out
    assert "OFF trial" in out and "SHORT trial" in out and "BLIP trial" in out
    assert "LONG confirmed" in out
