"""The terminal's half of the over-the-air update under the real MicroPython unix port (no
emulator, no host): firmware/lib/ota.py (receiver) and otaboot.py (signature check at boot, swap,
trial, rollback), on a flash folder in tmp, fed the exact command arguments the host sends for
packages signed here with the test keys (tests/ota/signed.py)."""
import json
import shutil
from pathlib import Path

import pytest

from tests.firmware import mprun
from wardcall.protocol import otaproto, wardproto as P

from . import signed
from .signed import OTHER_KEY, commands, sign

pytestmark = pytest.mark.timeout(60)

FW = Path(__file__).resolve().parents[2] / "firmware"

# MicroPython prelude: feed commands (JSON [[cmd, hex arg], ...]) to a Receiver, print each answer
PRELUDE = r"""
import json, binascii, os
import ota, otaboot as B, otacheck as C
def drive(r, cmds, tag="RES"):
    out = []
    for c, a in json.loads(cmds):
        ok, detail, after = r.handle(c, binascii.unhexlify(a))
        out.append([ok, json.loads(detail), after])
    print(tag, json.dumps(out))
    return out
def tree(top="lib"):
    return sorted(os.listdir(top))
"""


def as_json(cmds):
    return json.dumps([[c, a.hex()] for c, a in cmds])


def flash_with(tmp_path, files, key=signed.WARD_KEY):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text) if isinstance(text, str) else p.write_bytes(text)
    if key is not None:
        (tmp_path / otaproto.KEY_FILE).write_text(signed.key_text(key))
    return tmp_path


def run(code, flash):
    rc, out = mprun.run_code(PRELUDE + code, flash)
    return rc, out


def answers(out, tag="RES"):
    return json.loads(out.split(tag + " ", 1)[1].splitlines()[0])


def test_transfer_commit_swap_confirm(tmp_path):
    flash_with(tmp_path, {"lib/mod.py": "X = 'old'\n", "lib/gone.mpy": b"M\x06old"})
    pkg = sign([("lib/mod.py", b"X = 'new'\n" * 200), ("lib/gone.py", b"Y = 1\n"), ("lib/extra.py", b"")], serial=42)
    rc, out = run(r"""
r = ota.Receiver([])
res = drive(r, %r)
print("STATE", B.read()["s"], [e[0] for e in B.read()["files"]])
B.boot()
print("TRIAL", B.in_trial(), tree(), open("lib/mod.py").read()[:9])
print("CONFIRM", B.confirm(), B.read()["s"], sorted(os.listdir(".ota")), C.installed_serial())
print("STATUS", r.handle(21, b"")[1])
""" % as_json(commands(pkg, chunk=300)), tmp_path)
    assert rc == 0, out
    res = answers(out)
    assert all(ok == 1 for ok, _, _ in res), res
    assert res[-1] == [1, {"c": "committed", "v": "9.9"}, "reboot"]
    assert "signature verified" in out
    assert "STATE pending ['lib/extra.py', 'lib/gone.py', 'lib/mod.py']" in out
    assert "signature and files verified" in out
    # the .mpy twin of gone.py moved out of the way, the new module in place
    assert "TRIAL True ['extra.py', 'gone.py', 'mod.py'] X = 'new'" in out
    assert "CONFIRM True confirmed ['installed.json', 'state.json'] 42" in out
    st = json.loads(out.split("STATUS ")[1].splitlines()[0])
    assert st["c"] == "status" and st["s"] == "confirmed" and st["v"] == "9.9" and st["from"] == "0.1.0"
    assert st["serial"] == 42 and st["key"] == otaproto.key_id(signed.WARD_KEY.public_key().public_numbers().n)


def refused_before_staging(tmp_path, cmds, files=None, key=signed.WARD_KEY):
    """Feed cmds to a terminal holding lib/mod.py; returns (answers, output) after checking that
    nothing was staged or changed and that a boot installs nothing."""
    flash_with(tmp_path, files or {"lib/mod.py": "X = 'old'\n"}, key=key)
    rc, out = run(r"""
r = ota.Receiver([])
res = drive(r, %r)
print("NEW", B.exists(".ota/new"), "STATE", B.read())
B.boot()
print("BOOT", B.state, open("lib/mod.py").read().strip())
""" % as_json(cmds), tmp_path)
    assert rc == 0, out
    assert "NEW False STATE {}" in out, out
    assert "BOOT {} X = 'old'" in out, out
    return answers(out), out


def first_refusal(res):
    return next(d for ok, d, _ in res if not ok)


def test_unsigned_update_is_refused(tmp_path):
    pkg = sign([("lib/mod.py", b"X = 'evil'\n")])
    pkg.signature = b""
    res, _ = refused_before_staging(tmp_path, commands(pkg))
    assert res[0][:2] == [0, {"c": "unsigned"}]
    assert otaproto.describe(res[0][1]).startswith("the update is not signed")
    # and the BEGIN of a host that does not sign (a bare JSON manifest) too
    old = [(P.CMD_OTA_BEGIN, json.dumps({"v": "6.6.6", "n": 1, "size": 3, "id": "x"}).encode())]
    res, _ = refused_before_staging(tmp_path, old)
    assert res[0][:2] == [0, {"c": "unsigned"}]


def test_update_signed_with_another_key_is_refused(tmp_path):
    pkg = sign([("lib/mod.py", b"X = 'evil'\n")], key=OTHER_KEY)
    res, out = refused_before_staging(tmp_path, commands(pkg))
    d = first_refusal(res)
    assert d["c"] == "wrong_key" and d["kid"] == pkg.kid
    # claiming the ward's key id does not help: the signature is checked
    forged = sign([("lib/mod.py", b"X = 'evil'\n")], key=OTHER_KEY)
    forged.kid = signed.signing.key_id(signed.WARD_KEY.public_key())
    res, _ = refused_before_staging(tmp_path, commands(forged))
    assert first_refusal(res) == {"c": "bad_signature"}
    # refused while the files were being declared, before any chunk; everything after refused too
    n = next(i for i, r in enumerate(res) if not r[0])
    assert n <= 1 + signed.CHECK_ROUNDS and all(ok == 0 for ok, _, _ in res[n:])
    assert all(d.get("sig") == "checking" for _, d, _ in res[:n])


def test_file_tampered_after_signing_is_refused(tmp_path):
    good = sign([("lib/mod.py", b"X = 'new'\n" * 50)])
    bad = signed.tampered(good, "lib/mod.py", b"X = 'bad'\n" * 50)          # same size, other bytes
    # announced as it now is: the signature does not cover that manifest
    res, _ = refused_before_staging(tmp_path, commands(bad))
    assert first_refusal(res) == {"c": "bad_signature"}
    # the signed BEGIN, but the files declared as they now are: not the signed manifest
    res, _ = refused_before_staging(tmp_path, commands(bad, signed_manifest=good.manifest()))
    assert res[0][0] == 1 and res[1][:2] == [0, {"c": "manifest_mismatch"}]
    assert not any(ok for ok, _, _ in res[2:])
    # declared as signed but with the changed bytes: refused when the file is complete, discarded
    res, out = refused_before_staging(tmp_path, commands(bad, manifest=good.manifest()))
    assert first_refusal(res) == {"c": "hash_mismatch", "path": "lib/mod.py"}
    assert "discarded" in out


def test_downgrade_is_refused(tmp_path):
    files = {"lib/mod.py": "X = 'old'\n", ".ota/installed.json": json.dumps({"serial": 1000, "v": "1.0"})}
    for serial in (999, 1000):
        res, _ = refused_before_staging(tmp_path, commands(sign([("lib/mod.py", b"X = 0\n")], serial=serial)), files)
        assert res[0][:2] == [0, {"c": "downgrade", "serial": serial, "installed": 1000}]


def test_no_key_installed_refuses_every_update(tmp_path):
    res, _ = refused_before_staging(tmp_path, commands(sign([("lib/mod.py", b"X = 0\n")])), key=None)
    assert res[0][:2] == [0, {"c": "no_key"}]
    assert otaproto.describe(res[0][1]) == "no update key installed: deploy it"


def test_the_signature_is_checked_a_slice_per_command(tmp_path):
    """A call must never wait for a whole RSA verify (on an ESP32 far slower than here): the
    running terminal does one or two of its 17 modular multiplications per OTA command, and the
    event loop (inputs, link) runs in between."""
    flash_with(tmp_path, {})
    rc, out = run(r"""
import otacheck
steps = [0]
step = otacheck.SignatureCheck.step
def counted(self):
    steps[0] += 1
    step(self)
otacheck.SignatureCheck.step = counted
r = ota.Receiver([])
per = []
for c, a in json.loads(%r):
    before = steps[0]
    ok, detail, after = r.handle(c, binascii.unhexlify(a))
    per.append(steps[0] - before)
print("STEPS", json.dumps(per), json.loads(detail)["c"])
""" % as_json(commands(sign([("lib/m.py", b"M = 1\n")]))), tmp_path)
    assert rc == 0, out
    per = json.loads(out.split("STEPS ")[1].splitlines()[0].rsplit(" ", 1)[0])
    assert sum(per) == 17 and max(per) <= 2, per
    assert per.count(0) >= 2                         # the chunk and the commit: nothing left to check
    assert out.split()[-1] == "committed"


def test_chunks_only_after_the_whole_manifest(tmp_path):
    pkg = sign([("lib/a.py", b"A = 1\n"), ("lib/mod.py", b"X = 2\n")])
    cmds = commands(pkg)
    early = [cmds[0], cmds[1], (P.CMD_OTA_CHUNK, otaproto.encode_chunk(0, 0, b"A = 1\n"))]
    res, _ = refused_before_staging(tmp_path, early)
    assert res[2][:2] == [0, {"c": "undeclared", "d": 1, "n": 2}]


def test_a_staged_update_is_checked_again_at_boot(tmp_path):
    """An update that replaced ota.py could stage anything: boot() (never replaced) checks the
    signature, the serial and every staged file before it swaps."""
    pkg = sign([("lib/mod.py", b"X = 'new'\n")], serial=50)
    for change in ("the staged file", "the signature", "the serial", "a protected path"):
        shutil.rmtree(tmp_path, ignore_errors=True)
        tmp_path.mkdir()
        flash_with(tmp_path, {"lib/mod.py": "X = 'old'\n"})
        rc, out = run(r"""
r = ota.Receiver([])
drive(r, %r)
st = B.read()
change = %r
if change == "the staged file":
    open(".ota/new/lib/mod.py", "w").write("X = 'evil'\n")
elif change == "the signature":
    st["sig"] = st["sig"][:-2] + ("00" if st["sig"][-2:] != "00" else "01")
elif change == "the serial":
    open(B.INSTALLED, "w").write(json.dumps({"serial": 50}))
else:
    st["files"][0][0] = "lib/otaboot.py"
B.write(st)
B.boot()
print("BOOT", B.state["s"], B.state["why"], open("lib/mod.py").read().strip(), B.exists(".ota/new"))
""" % (as_json(commands(pkg)), change), tmp_path)
        assert rc == 0, out
        assert "BOOT refused" in out and "X = 'old' False" in out, (change, out)
        assert "NOT INSTALLED" in out


def test_size_is_bounded_by_free_flash_and_limits(tmp_path):
    flash_with(tmp_path, {})
    pkg = sign([("lib/a.py", b"a" * 10000)])
    rc, out = run(r"""
r = ota.Receiver([])
ota.free_bytes = lambda: 40000
drive(r, %r, "BIG")
""" % as_json(commands(pkg)[:1]), tmp_path)
    assert rc == 0, out
    assert answers(out, "BIG")[0][:2] == [0, {"c": "no_space", "need": 42768, "free": 40000}]
    hdr = {"v": "1", "serial": 5, "n": 1, "size": 10 ** 7, "m": "0" * 64, "kid": "0" * 16}
    huge = [(P.CMD_OTA_BEGIN, otaproto.encode_begin(hdr, b"\x01" * 384)), (P.CMD_OTA_BEGIN, b"\x00\x05\xff{")]
    rc, out = run("r = ota.Receiver([])\ndrive(r, %r)\n" % as_json(huge), tmp_path)
    res = answers(out)
    assert res[0][1]["c"] == "bad_request" and "limits" in res[0][1]["m"]
    assert res[1][1]["c"] == "bad_request"


@pytest.mark.parametrize("path", ["boot.py", "main.py", "lib/otaboot.py", "lib/otaproto.mpy", "lib/otacheck.py", "lib/otatext.py", "lib/maint.mpy",
                                  "lib/board.py", "lib/../boot.py", "config.json", "otakey.json", "lib/x.txt",
                                  "lib/ä.py", "/lib/x.py"])
def test_paths_outside_the_updatable_modules_are_refused(tmp_path, path):
    pkg = sign([("lib/a.py", b"abc")])
    manifest = [[path, 3, pkg.manifest()[0][2]]]
    res, _ = refused_before_staging(tmp_path, commands(pkg, manifest=manifest, signed_manifest=pkg.manifest())[:2])
    assert res[1][:2] == [0, {"c": "path", "path": path}]


def test_resume_duplicates_and_order(tmp_path):
    flash_with(tmp_path, {})
    d = bytes(range(256)) * 4
    pkg = sign([("lib/m.py", d)])
    begin, decl = commands(pkg)[:2]
    chunk = lambda off, data: (P.CMD_OTA_CHUNK, otaproto.encode_chunk(0, off, data))   # noqa: E731
    steps = [("early chunk", chunk(0, d[:500])), ("until checked", None), ("C0", chunk(0, d[:500])),
             ("gap", chunk(700, d[700:800])), ("duplicate", chunk(0, d[:500])), ("resume", begin),
             ("declared again", decl), ("rest", chunk(500, d[500:])),
             ("another package", (P.CMD_OTA_BEGIN, commands(sign([("lib/m.py", d)], serial=101))[0][1]))]
    cmds = [begin, decl]
    for name, c in steps:
        cmds += [decl] * signed.CHECK_ROUNDS if c is None else [c]
    rc, out = run("r = ota.Receiver([])\ndrive(r, %r)\n" % as_json(cmds), tmp_path)
    assert rc == 0, out
    res = [r[:2] for r in answers(out)]
    at = lambda f, o, sig="ok", d=1: [1, {"c": "at", "d": d, "f": f, "o": o, "sig": sig}]   # noqa: E731
    assert res[0] == at(0, 0, "checking", 0) and res[1] == at(0, 0, "checking")
    assert res[2] == [0, {"c": "checking"}]                                 # no chunk before the check is done
    assert res[2 + signed.CHECK_ROUNDS] == at(0, 0)                          # checked: chunks from 0 0
    named = dict(zip([n for n, c in steps if c is not None][1:], res[3 + signed.CHECK_ROUNDS:]))
    assert named["C0"] == at(0, 500)
    assert named["gap"] == [0, {"c": "order", "d": 1, "f": 0, "o": 500}]
    assert named["duplicate"] == at(0, 500)
    assert named["resume"] == at(0, 500)                 # BEGIN again: where it stopped
    assert named["declared again"] == at(0, 500)
    assert named["rest"] == at(1, 0)                     # complete
    assert named["another package"] == at(0, 0, "checking", 0)   # another package: from the start


def test_commit_waits_for_undelivered_calls(tmp_path):
    flash_with(tmp_path, {})
    cmds = commands(sign([("lib/m.py", b"Z = 1\n")]))
    rc, out = run(r"""
outbox = ["a call"]
r = ota.Receiver(outbox)
drive(r, %r, "BUSY")
outbox.pop()
drive(r, %r, "NOW")
""" % (as_json(cmds), as_json(cmds[-1:])), tmp_path)
    assert rc == 0, out
    assert answers(out, "BUSY")[-1][:2] == [0, {"c": "busy_calls", "n": 1}]
    assert answers(out, "NOW")[0] == [1, {"c": "committed", "v": "9.9"}, "reboot"]


def test_boot_in_trial_rolls_back_and_an_interrupted_swap_too(tmp_path):
    flash_with(tmp_path, {"lib/mod.mpy": b"OLDMPY", "lib/keep.py": "K = 1\n"})
    first = sign([("lib/mod.py", b"M = 'new'\n"), ("lib/added.py", b"A = 1\n")], serial=10)
    second = sign([("lib/mod.py", b"M = 'new'\n"), ("lib/keep.py", b"K = 2\n")], serial=11)
    rc, out = run(r"""
r = ota.Receiver([])
drive(r, %r)
B.boot()
print("TRIAL", tree())
B.state = None
B.boot()                                 # started again without confirming
print("BACK", tree(), open("lib/mod.mpy").read(), B.read()["s"], B.read()["why"], C.installed_serial())
# an interrupted swap: state "swapping", one file moved, the other not yet
drive(r, %r)
st = B.read()
st["s"] = "swapping"; st["moved"] = ["lib/mod.mpy", "lib/keep.py"]; st["added"] = ["lib/mod.py"]
B.write(st)
B.makedirs(".ota/old/lib")
os.rename("lib/mod.mpy", ".ota/old/lib/mod.mpy")
os.rename(".ota/new/lib/mod.py", "lib/mod.py")
B.boot()
print("UNDONE", tree(), open("lib/mod.mpy").read(), open("lib/keep.py").read().strip(), B.read()["why"])
""" % (as_json(commands(first)), as_json(commands(second))), tmp_path)
    assert rc == 0, out
    assert "TRIAL ['added.py', 'keep.py', 'mod.py']" in out
    assert "BACK ['keep.py', 'mod.mpy'] OLDMPY rolled_back restarted before the new firmware was confirmed 0" in out
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
drive(r, %r)
exec(open("boot.py").read())
print("AFTER", B.read()["s"], open("lib/m.py").read().strip())
""" % as_json(commands(sign([("lib/m.py", b"M = 2\n")]))), tmp_path)
    assert rc == 0, out
    assert "MAINTENANCE MODE" in out
    assert "AFTER pending M = 1" in out


def test_trial_confirms_only_after_being_online_long_enough(tmp_path):
    flash_with(tmp_path, {".ota/state.json": json.dumps({"s": "trial", "v": "2", "from": "1", "serial": 7,
                                                         "files": [], "moved": [], "added": []})})
    rc, out = run(r"""
import time
B.state = B.read()
class L:
    online = False
    hb_ms = 200
link = L()
t = B.Trial(link)
t.tick(); print("OFF", B.read()["s"])
link.online = True
t.tick(); time.sleep_ms(1000); t.tick(); print("SHORT", B.read()["s"])
link.online = False; t.tick(); link.online = True; t.tick()
time.sleep_ms(1500); t.tick(); print("BLIP", B.read()["s"])
time.sleep_ms(600); t.tick(); print("LONG", B.read()["s"], C.installed_serial())
""", tmp_path)
    assert rc == 0, out
    assert "OFF trial" in out and "SHORT trial" in out and "BLIP trial" in out
    assert "LONG confirmed 7" in out


def test_the_trial_is_confirmed_by_the_boot_chain_not_by_an_update(tmp_path):
    """The application hands its link to otaboot.Trial (protected); ota.py, which an update can
    replace, has no part in the confirmation."""
    app = (FW / "lib" / "app.py").read_text()
    assert "otaboot.Trial(self.link).tick" in app and "from ota import" not in app
    receiver = (FW / "lib" / "ota.py").read_text()
    assert "class Trial" not in receiver and ".confirm(" not in receiver
    assert {"otaboot", "otacheck", "otaproto"} <= set(otaproto.PROTECTED)


def test_the_sliced_check_agrees_with_the_signature_vectors(tmp_path):
    """otacheck.SignatureCheck (the running terminal's check) gives the verdict of every signature
    vector in tests/vectors/ota_frames.json, crafted encodings included."""
    vectors = json.loads((signed.VECTORS / "ota_frames.json").read_text(encoding="utf-8"))
    keys = {k["name"]: k for k in vectors["keys"]}
    flash_with(tmp_path, {}, key=None)
    (tmp_path / "vectors.json").write_text(json.dumps(vectors["signatures"]))
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    rc, out = run(r"""
import otacheck
keys = json.load(open("keys.json"))
for v in json.load(open("vectors.json")):
    open("otakey.json", "w").write(keys[v["key"]]["text"])
    c = otacheck.SignatureCheck(keys[v["key"]]["kid"], binascii.unhexlify(v["message"]), binascii.unhexlify(v["sig"]))
    n = 0
    while c.ok is None and n < 40:
        c.step()
        n += 1
    print("SIG", c.ok == v["ok"], n, v["name"])
""", tmp_path)
    assert rc == 0, out
    lines = [l for l in out.splitlines() if l.startswith("SIG")]
    assert len(lines) == len(vectors["signatures"]), out
    assert all(l.split()[1] == "True" for l in lines), out
    assert {l.split()[2] for l in lines if "valid" in l} == {"17"}     # 16 squarings and one multiplication


@pytest.mark.parametrize("state, kept", [(None, False), ({"s": "confirmed", "v": "2", "from": "1"}, False),
                                         ({"s": "pending", "v": "2", "from": "1", "files": [], "sig": "00"}, False)])
def test_boot_chain_unloads_its_update_step_when_nothing_is_on_trial(tmp_path, state, kept):
    # its code would hold ~6 KB of the heap for nothing (bench_firmware_memory.py --part modules);
    # a crash at start still finds it (main.py imports it again: no trial, nothing to roll back)
    flash_with(tmp_path, {".ota/state.json": json.dumps(state)} if state else {})
    for name in ("boot.py", "main.py"):
        shutil.copy(FW / name, tmp_path / name)
    rc, out = mprun.run_code(r"""
import sys, gc
exec(open("boot.py").read())
print("LOADED", "otaboot" in sys.modules, "otaboot" in globals())
""", tmp_path)
    assert rc == 0, out
    assert "LOADED %s %s" % (kept, kept) in out, out


def test_boot_chain_keeps_its_update_step_for_a_firmware_on_trial(tmp_path):
    # the pending update is checked, swapped in and put on trial: the trial's state and timer
    # live in the boot chain's otaboot, which the application's confirmation needs
    flash_with(tmp_path, {"lib/m.py": "M = 1\n"})
    shutil.copy(FW / "boot.py", tmp_path / "boot.py")
    rc, out = run(r"""
import sys
r = ota.Receiver([])
drive(r, %r)
del B, ota, C
for name in ("ota", "otaboot", "otacheck", "otaproto", "otatext"):
    sys.modules.pop(name, None)
exec(open("boot.py").read())
import otaboot
print("TRIAL", otaboot.in_trial(), open("lib/m.py").read().strip())
""" % as_json(commands(sign([("lib/m.py", b"M = 2\n")]))), tmp_path)
    assert rc == 0, out
    assert "TRIAL True M = 2" in out, out
