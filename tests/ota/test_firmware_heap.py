"""The terminal's half of an update must leave the heap to the calls (docs/FIRMWARE.md, Memory):
the real receiver (firmware/lib/ota.py) and the real command handler (commands.py) under the real
MicroPython unix port, on a flash folder in tmp, fed what the host sends for packages signed with
the test keys. A fragmented heap, a full one, many files, an update that is given up: each must
cost the application nothing it needs. (The whole update with a call during it, on an emulated
board with less heap than an ESP32 has, is in test_ota_e2e.py.)"""
import json
from pathlib import Path

import pytest

from tests.firmware import mprun
from wardcall.ota import build_package
from wardcall.protocol import otaproto, wardproto as P

from . import signed
from .signed import commands, sign

pytestmark = pytest.mark.timeout(90)

FW = Path(__file__).resolve().parents[2] / "firmware"

PRELUDE = r"""
import gc, json, binascii
HOLD = [None] * 1000        # for cut_heap(), taken while the heap is whole
def feed(handler, name, first=0, last=None):
    # the commands of file `name` (one "cmd hex-arg" a line), from index first up to last.
    # The results' list is made whole before the first command: grown as they come, it asked
    # for ever longer blocks of a heap the chunks had cut up (a MemoryError of this harness,
    # not of the firmware, in some layouts of the heap; the firmware keeps no such list)
    with open(name) as f:
        n = sum(1 for i, _ in enumerate(f) if i >= first and (last is None or i < last))
    out = [None] * n
    k = 0
    with open(name) as f:
        for i, line in enumerate(f):
            if i < first or (last is not None and i >= last):
                continue
            c, a = line.split()
            ok, detail, after = handler(int(c), b"" if a == "-" else binascii.unhexlify(a))
            line = a = None
            out[k] = [ok, detail, after]
            k += 1
    return out
def used():
    gc.collect()
    return gc.mem_alloc()
def cut_heap(size):
    # every free byte taken by blocks of `size` (then by smaller ones), then every other block of
    # `size` freed: after this no free stretch of the heap is much longer than `size`
    gc.collect()
    hold = HOLD
    n = 0
    for piece in (size, 64, 16):
        try:
            while n < len(hold):
                hold[n] = bytearray(piece)
                n += 1
        except MemoryError:
            pass
    for i in range(0, n, 2):
        if len(hold[i]) == size:
            hold[i] = None
    gc.collect()
    try:
        bytearray(2 * size)
        print("HEAP NOT CUT")
    except MemoryError:
        pass
    return hold
class Calls:
    outbox = []
"""


def write_commands(folder, name, cmds):
    """The commands as feed() reads them, in the flash folder."""
    (folder / name).write_text("".join("%d %s\n" % (c, a.hex() or "-") for c, a in cmds))
    return name


def flash(tmp_path):
    (tmp_path / otaproto.KEY_FILE).write_text(signed.key_text())
    return tmp_path


def run(code, tmp_path, heap="96wK"):
    rc, out = mprun.run_code(PRELUDE + code, flash(tmp_path), heap=heap, timeout=60)
    assert rc == 0 and "Traceback" not in out, out
    return out


def line(out, tag):
    return out.split(tag + " ", 1)[1].splitlines()[0]


def whole_firmware():
    """The repository's firmware as `wardcall update` sends it: 20-odd files, a pending state of
    about 3 KB."""
    return sign(build_package(FW).files, "0.2.0", 1000)


def test_commit_needs_no_big_block_of_heap(tmp_path):
    """The MemoryError seen under load ("allocating 2600 bytes" while handling COMMIT): the pending
    state of a whole-firmware update was built as one string. With no free stretch of heap longer
    than 1 KB the commit must still write it, and the boot step must find it complete."""
    pkg = whole_firmware()
    write_commands(tmp_path, "cmds.txt", commands(pkg, commit=False))
    out = run(r"""
import ota, otaboot as B
r = ota.Receiver([])
res = feed(r.handle, "cmds.txt")
assert all(ok for ok, _, _ in res), res
res = None
hold = cut_heap(1024)
try:
    ok, detail, after = r.handle(19, b"")
except MemoryError as e:
    ok, detail, after = 0, "MemoryError " + str(e), None
hold.clear()
print("COMMIT", ok, after, detail)
st = B.read()
print("STATE", st["s"], st["n"], len(st["files"]), st["sig"] == %r)
""" % pkg.signature.hex(), tmp_path)
    assert "HEAP NOT CUT" not in out, out
    assert line(out, "COMMIT").startswith("1 reboot "), out
    assert line(out, "STATE") == "pending %d %d True" % (len(pkg.files), len(pkg.files))
    st = json.loads((tmp_path / ".ota" / "state.json").read_text())
    assert st["files"] == [list(e) for e in pkg.manifest()]
    assert not (tmp_path / ".ota" / "manifest").exists()


def test_the_heap_a_transfer_holds_does_not_grow_with_its_files(tmp_path):
    """64 files (otaproto.MAX_FILES) declared and received hold no more heap than one."""
    def heap_held(files):
        pkg = sign(files, "0.2.0", 1000)
        folder = tmp_path / str(len(files))
        folder.mkdir()
        write_commands(folder, "cmds.txt", commands(pkg, commit=False))
        out = run(r"""
import ota
r = ota.Receiver([])
feed(r.handle, "cmds.txt", 0, 1)
begun = used()
res = feed(r.handle, "cmds.txt", 1)
assert all(ok for ok, _, _ in res), res[-1]
res = None
print("HELD", used() - begun, r.cur)
""", folder)
        held, received = map(int, line(out, "HELD").split())
        assert received == len(files)
        return held

    one = heap_held([("lib/m0.py", b"M = 0\n" * 40)])
    many = heap_held([("lib/m%d.py" % i, b"M = %d\n" % i * 40) for i in range(otaproto.MAX_FILES)])
    assert many - one < 512, (one, many)


def test_an_update_given_up_gives_its_heap_back(tmp_path):
    """Once no update is in progress (aborted here, or refused, or never begun: a status question)
    the receiver and its modules go; the heap is what it was before the first OTA command (the
    interned names of those modules aside, which the first status question pays once)."""
    pkg = sign([("lib/a.py", b"A = 1\n" * 300), ("lib/b.py", b"B = 2\n" * 300)], "0.2.0", 1000)
    write_commands(tmp_path, "cmds.txt", commands(pkg, commit=False))
    write_commands(tmp_path, "status.txt", [(P.CMD_OTA_STATUS, b"")])
    write_commands(tmp_path, "abort.txt", [(P.CMD_OTA_ABORT, b"")])
    out = run(r"""
import sys
from commands import Commands
c = Commands(None, None, Calls())
feed(c.handle, "status.txt")
feed(c.handle, "cmds.txt")                    # once before measuring: the modules' names interned
feed(c.handle, "abort.txt")
before = used()
res = feed(c.handle, "cmds.txt")
loaded = sorted(m for m in ("ota", "otacmd", "otacheck", "otaproto", "otatext") if m in sys.modules)
print("DURING", json.loads(res[-1][1])["c"], c.ota is not None, loaded)
res = feed(c.handle, "abort.txt")
loaded = sorted(m for m in ("ota", "otacmd", "otacheck", "otaproto", "otatext") if m in sys.modules)
print("AFTER", json.loads(res[0][1])["c"], c.ota is None, loaded, used() - before)
""", tmp_path)
    assert line(out, "DURING") == "at True ['ota', 'otacheck', 'otacmd', 'otaproto']", out
    after = line(out, "AFTER").split(" ", 3)
    assert after[:3] == ["aborted", "True", "[]"], out
    assert int(after[3]) < 1024, out            # a module left loaded would be several KB


def test_out_of_memory_on_the_update_path_is_answered_and_gives_the_heap_back(tmp_path):
    """A BEGIN that finds no heap for the receiver: the command is answered no_memory (the host
    then tries again later), not left unanswered, and the next one, with room again, is taken."""
    pkg = sign([("lib/a.py", b"A = 1\n")], "0.2.0", 1000)
    begin = commands(pkg)[0]
    out = run(r"""
import sys
from commands import Commands
c = Commands(None, None, Calls())
cmd, arg = %d, binascii.unhexlify(%r)
gc.collect()
hold = []
try:
    while True:
        hold.append(bytearray(256))
except MemoryError:
    pass
for i in range(12):
    hold.pop()
ok, detail, after = c.handle(cmd, arg)
full = (ok, detail, c.ota is None, "ota" in sys.modules)
hold.clear()
print("FULL", *full)
ok, detail, after = c.handle(cmd, arg)
print("ROOM", ok, json.loads(detail)["c"])
""" % (begin[0], begin[1].hex()), tmp_path)
    assert line(out, "FULL") == '0 {"c": "no_memory"} True False', out
    assert line(out, "ROOM") == "1 at", out
    assert otaproto.describe({"c": otaproto.R_NO_MEMORY}).startswith("the terminal ran out of memory")
