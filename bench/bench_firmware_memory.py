"""Peak and free heap of the bed terminal firmware: a call cycle, an over-the-air update, and the
smallest heap that takes an update with a call pressed during it.

1. The call cycle: the real application (firmware/lib, .py sources compiled on the board) under
   the MicroPython unix port with the firmware test doubles (tests/firmware/shims) against a
   scripted host (tests/firmware/fakehost.py), at an ESP32-sized heap (-X heapsize=112wK: 112 KiB
   scaled to the 64-bit word size; the emulator's boards get 124wK, which includes its shims):
   gc.mem_alloc()/gc.mem_free() after a gc.collect() at each stage (boot, online, call placed,
   CALL_ACK, acknowledged at the console, cancelled by presence) plus micropython.mem_peak() (the
   unix build's high-water mark of allocated bytes, garbage included); then the smallest heap that
   still completes the cycle. The badge reader's task runs as on every board with a reader;
   the test double's virtual MFRC522 costs heap an ESP32 does not spend, so its share is printed
   on its own, and the same cycle on a board without a reader (board.BADGE = None) for comparison.
2. The update, stage by stage: the same application, but with lib/ as `wardcall deploy` stages it
   (.mpy from mpy-cross), fed a signed update of the whole firmware through its command handler,
   the call button pressed halfway through the chunks: the heap after gc.collect() and the largest
   free block at each stage, down to the receiver released after it.
3. The margin: an emulated board (boards/emulator, the firmware as deploy stages it) online at the
   real `wardcall serve`, updated through the server's API while its radio is slowed so that a call
   pressed during the transfer comes while the chunks flow; bisected over the board's heap (4wK
   steps, the result passed three times in a row): the smallest heap with which the update is
   installed and confirmed at the first try, the call reaches the host during the transfer and is
   still open after the reboot, and the board never runs out of memory. The update ships .mpy
   (`wardcall update`'s default), or with --package sources the sources as `wardcall update
   --sources` sends them (the board then compiles the new firmware at its first boot). --part floor: the
   same with a call only, no update (the application's own need).
4. --part modules: what the heap holds online, module by module.
5. --part romfs: the call cycle with lib/ (.mpy) imported from files and from a ROMFS image of the
   same files (bytecode executed in place), the image's own size taken off.

    .venv/bin/python bench/bench_firmware_memory.py                    # every part (.mpy)
    .venv/bin/python bench/bench_firmware_memory.py --part margin --package sources
    .venv/bin/python bench/bench_firmware_memory.py --part trial --heap 104wK   # one try, its console
    .venv/bin/python bench/bench_firmware_memory.py --part romfs
"""
import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "host"))
sys.path.insert(0, str(ROOT / "bench"))

from tests.firmware import mprun  # noqa: E402
from tests.firmware.fakehost import FakeHost, P  # noqa: E402

SCENARIO = r"""
import gc, micropython
if NO_READER:
    board.BADGE = None             # a board without a reader: no badge task
gc.collect()
_before = gc.mem_alloc()
machine.chip()                     # the test double's virtual MFRC522, made now to weigh it
gc.collect()
print("CHIP virtual MFRC522 %d bytes (the test double's, not the firmware's)" % (gc.mem_alloc() - _before))
def mem(stage):
    gc.collect()
    peak = micropython.mem_peak() if hasattr(micropython, "mem_peak") else -1
    print("MEM %-14s alloc %7d free %7d peak %7d" % (stage, gc.mem_alloc(), gc.mem_free(), peak))
async def scenario(app):
    mem("boot")
    await until(lambda: app.link.online, 5000, "online")
    mem("online")
    await press(board.CALL)
    mem("call placed")
    await until(lambda: len(app.outbox) == 0, 3000, "CALL_ACK")
    mem("call stored")
    await until(lambda: app.calls.active[3] and app.calls.active[3][1] == 1, 3000, "acknowledged")
    mem("acknowledged")
    if app.badge:
        await until(lambda: app.badge.ok, 3000, "reader ready")
        machine.chip().set_cards([bytes.fromhex("04a1b2c3")])
    else:
        await press(board.PRESENCE)
    await until(lambda: len(app.outbox) == 0 and app.calls.active[3] is None, 3000, "cancelled")
    check(app.calls.presence and app.calls.staff == ("04a1b2c3" if app.badge else ""), "presence")
    mem("cancelled")
    await asyncio.sleep_ms(2000)
    mem("idle")
"""


def acknowledge_calls(h, m):
    """The scripted host's answer: a nurse acknowledges every call at once."""
    if m["type"] == P.CALL:
        h.send(P.CALL_STATE, {"call": m["call"], "state": P.ST_ACKNOWLEDGED, "by": "bench"})


def run(heap, badge=True):
    host = FakeHost("bed-101-1", mprun.KEY, hb_ms=300)
    host.on_message = acknowledge_calls
    host.start()
    try:
        with tempfile.TemporaryDirectory() as flash:
            mprun.write_config(flash, mprun.config(port=host.port))
            return mprun.run_scenario(SCENARIO.replace("NO_READER", "False" if badge else "True", 1), flash, 20000, heap=heap)
    finally:
        host.stop()


# ----- part 2: the heap through an over-the-air update, in the application -----

UPDATE = r"""
import gc, micropython, binascii
def mem(stage):
    gc.collect()
    print("MEM %-26s alloc %7d free %7d" % (stage, gc.mem_alloc(), gc.mem_free()))
    micropython.mem_info()
async def scenario(app):
    await until(lambda: app.link.online, 5000, "online")
    mem("online")
    cmds = app.link.commands
    n = 0
    sig = False
    chunks = 0
    for line in open("cmds.txt"):
        c, a = line.split()
        c = int(c)
        n += 1
        ok, detail, after = cmds.handle(c, b"" if a == "-" else binascii.unhexlify(a))
        line = a = None
        if not ok:
            raise Failed("refused: %s" % detail)
        if c == 16:
            mem("BEGIN (receiver loaded)")
        if c == 17 and not sig and '"sig": "ok"' in detail:
            sig = True
            mem("signature verified")
        if c == 18:
            chunks += 1
            if chunks == CHUNKS // 2:
                mem("half the chunks")
                await press(board.CALL)
                await until(lambda: len(app.outbox) == 0, 3000, "CALL_ACK")
                mem("call placed and stored")
        if c == 19:
            mem("committed (state written)")
        await asyncio.sleep_ms(0)
    cmds.handle(21, b"")
    mem("status after: released")
"""


def staged_lib(dst):
    """firmware/lib as `wardcall deploy` stages it (lib/*.mpy from mpy-cross), without board.mpy
    (the test doubles' board.py stands in)."""
    import shutil
    from wardcall.deploy.build import stage
    for remote, local in stage("emulator", compile=True).items():
        if remote.startswith("/lib/") and remote != "/lib/board.mpy":
            shutil.copy(local, dst / remote[len("/lib/"):])


@contextlib.contextmanager
def staged_board(on_message=None):
    """A scripted host (on_message: its answer to each message) and a board's flash for the
    application as deploy stages it (flash/_lib, config.json for that host): (flash, the
    environment MicroPython runs with)."""
    import os
    host = FakeHost("bed-101-1", mprun.KEY, hb_ms=300)
    host.on_message = on_message
    host.start()
    try:
        with tempfile.TemporaryDirectory() as flash:
            flash = Path(flash)
            lib = flash / "_lib"
            lib.mkdir()
            staged_lib(lib)
            mprun.write_config(flash, mprun.config(port=host.port))
            yield flash, dict(os.environ, MICROPYPATH=".frozen:%s:%s:%s" % (mprun.SHIMS, lib, mprun.BOARD))
    finally:
        host.stop()


def update_stages(heap="112wK"):
    """The real application (the staged .mpy lib) online at a scripted host, fed a signed update
    of the whole firmware through its command handler, the call button pressed halfway through
    the chunks; the heap after gc.collect() per stage and the largest free block."""
    import subprocess
    from wardcall.ota import build_package
    from wardcall.protocol import otaproto
    from tests.ota import signed
    pkg = signed.sign(build_package(ROOT / "firmware").files, "0.2.0", 1767225600)
    cmds = signed.commands(pkg)
    with staged_board() as (flash, env):
        (flash / otaproto.KEY_FILE).write_text(signed.key_text())
        (flash / "cmds.txt").write_text("".join("%d %s\n" % (c, a.hex() or "-") for c, a in cmds))
        chunks = sum(1 for c, _ in cmds if c == P.CMD_OTA_CHUNK)
        (flash / "_scenario.py").write_text("CHUNKS = %d\n" % chunks + UPDATE)
        p = subprocess.run([str(mprun.MICROPYTHON), "-X", "heapsize=" + heap, str(mprun.DRIVE), "_scenario.py",
                            "60000"], cwd=flash, env=env, capture_output=True, text=True, timeout=90)
        out = p.stdout + p.stderr
    rows = []
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("MEM"):
            big = next((l.split("max free sz:")[1].strip() for l in lines[i:i + 8] if "max free sz:" in l), "?")
            rows.append((line[4:30].strip(), int(line.split("alloc")[1].split()[0]),
                         int(line.split("free")[1].split()[0]), int(big) * 32 if big.isdigit() else None))
    return "SCENARIO PASSED" in out, rows, out, pkg


# ----- part 3: the margin of an over-the-air update, with a call pressed during the transfer -----

TECH = ("tech", "bench tech password")
MARGIN_LO, MARGIN_HI = 80, 124          # wK: the bisection's range (124wK: the emulator's default)
TRIAL_WAIT_S = 90.0                     # a trial that is not done by then has failed
_TRIALS = [0]
_LAST_CONSOLE = [""]


def _ota_ward(work):
    """A one-bed ward (bench/_common.write_ward) with a technician login and the ward's update
    key pair (as `wardcall update keygen` makes it)."""
    from _common import write_ward
    from wardcall.config import load_config
    from wardcall.ota import signing
    from wardcall.passwords import hash_password
    cfg, devices = write_ward(work, 1, heartbeat_ms=200)
    with cfg.open("a") as f:
        f.write('[users.%s]\nname = "Bench technician"\npassword = "%s"\nrole = "technician"\n'
                % (TECH[0], hash_password(TECH[1])))
    ward = load_config(cfg)
    signing.generate_keys(ward.ota.private_key, ward.ota.public_key)
    return cfg, ward, devices[0]


def ota_trial(heap, work, ward_cache, mpy=False, update=True):
    """One emulated board (the firmware as deploy stages it, .mpy) with `heap`, online at the real
    `wardcall serve`; an update of the whole firmware with the call button pressed while the
    chunks flow (update=False: only the call). It works if the update is installed and confirmed
    at the first try, the call reaches the host while the chunks flow and is still open after the
    reboot, and the board never ran out of memory (not even a MemoryError it handled).
    (ok, why, figures)."""
    from _common import Console, Server
    from boards.emulator.fleet import Fleet
    from tests.fixtures.ward import firmware_files
    from wardcall.ota import UpdateClient, build_package, signing
    from wardcall.ota.cli import sign_for_update
    from wardcall.protocol import otaproto
    cfg, ward, dev = ward_cache
    name = dev["device_id"]
    _TRIALS[0] += 1
    tag = "%s-%d" % (heap, _TRIALS[0])
    for stale in ("ward.db", "ward.db-wal", "ward.db-shm"):    # a fresh record: no call of an earlier try
        (cfg.parent / stale).unlink(missing_ok=True)
    server = Server(cfg)
    server.start()
    fleet = Fleet.start(work / ("fleet-" + tag))
    console = board = None
    try:
        files = firmware_files(dev)
        files[otaproto.KEY_FILE] = signing.board_key_text(signing.load_public_key(ward.ota.public_key))
        board = fleet.add_board(name, flash_dir=work / ("flash-" + tag), files=files, heapsize=heap)
        console = Console(server.api_url)
        if not _until(lambda: _connected(console, name), 30):
            return False, "not online: " + _tail(board), {}
        if not update:
            t0 = time.monotonic()
            board.tap("call", ms=120)
            got = _until(lambda: _calls(console, name), 5)
            latency = time.monotonic() - t0
            time.sleep(5)
            text = board.console()
            if not got or _memory_error(text):
                return False, _memory_error(text) or "the call did not reach the host: " + _tail(board), {}
            return True, "the call at the host %.2f s after the press began" % latency, {}
        version = "0.2.0-heap" + tag
        fw = work / ("fw-" + tag)
        _firmware_copy(fw, version)
        pkg = sign_for_update(ward, build_package(fw, compile=mpy))
        board.fault(delay_ms=15)        # a slower radio: the transfer takes a few seconds
        client = UpdateClient(server.api_url, *TECH)
        client.login()
        job = client.start(pkg, [name], 20, 1, False, False)["job"]
        if not _until(lambda: client.job(job)["devices"][0]["sent"] > 0 or client.job(job)["done"], 30):
            return False, "the transfer did not start", {}
        during = client.job(job)["devices"][0]
        low = board.heap() or {}
        t0 = time.monotonic()
        board.tap("call", ms=120)
        got = _until(lambda: _calls(console, name), 5)
        latency = time.monotonic() - t0
        state = client.job(job)["devices"][0]
        board.fault(delay_ms=0)
        if not got:
            return False, "the call pressed during the transfer did not reach the host: " + _tail(board), {}
        if during["state"] != "sending" or state["state"] != "sending" or state["sent"] >= state["total"]:
            return False, "the call was not pressed during the transfer (%s %s; %s)" % (
                state["state"], state["detail"], _memory_error(board.console()) or _tail(board)), {}

        def finished():
            return _memory_error(board.console()) or client.job(job)["done"]
        _until(finished, TRIAL_WAIT_S)
        text = board.console()
        final = client.job(job)["devices"][0]
        figures = {"call_s": latency, "free_during": low.get("free"),
                   "ready": [l.split("ready ")[1] for l in text.splitlines() if "boot: ready" in l]}
        if _memory_error(text):
            return False, _memory_error(text), figures
        if final["state"] != "ok":
            return False, "update %s: %s" % (final["state"], final["detail"]), figures
        if not _calls(console, name):
            return False, "the call did not survive the update's reboot", figures
        return True, "update ok; the call at the host %.2f s after the press began" % latency, figures
    finally:
        _LAST_CONSOLE[0] = board.console() if board is not None else ""
        if console is not None:
            console.close()
        fleet.stop()
        server.stop()


def _firmware_copy(dst, version):
    import shutil
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(ROOT / "firmware", dst, ignore=shutil.ignore_patterns("__pycache__"))
    (dst / "lib" / "version.py").write_text('VERSION = "%s"\n' % version)


def _until(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def _connected(console, device):
    return any(t["device"] == device and t.get("connected") for t in console.state().get("terminals", []))


def _calls(console, device):
    return [c for c in console.state().get("calls", []) if c["device"] == device]


def _memory_error(text):
    """The first MemoryError on the console (or "out of memory" line of one the firmware handled)
    and where it was raised (the traceback's last line); "" if none."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "MemoryError" in line or "out of memory" in line:
            where = [l.strip() for l in lines[max(0, i - 3):i + 3] if l.strip().startswith("File ")]
            return "MemoryError on the board: %s%s" % (line.strip(), (" at " + where[-1]) if where else "")
    return ""


def _tail(board):
    return " | ".join(board.console().strip().splitlines()[-3:])


def ota_margin(work, mpy=False, update=True, lo=MARGIN_LO, hi=MARGIN_HI, step=4, confirm=2):
    """The smallest emulator heap (wK) with which the update and the call during it work."""
    ward_cache = _ota_ward(work / "ward")
    results = {}

    def trial(k):
        ok, why, fig = ota_trial("%dwK" % k, work, ward_cache, mpy, update)
        results[k] = (ok, why)
        print("  %3dwK: %s  %s" % (k, "ok    " if ok else "FAILED", why), flush=True)
        return ok
    if not trial(hi):
        return None, results
    while hi - lo > step:
        mid = (lo + hi) // 2
        if trial(mid):
            hi = mid
        else:
            lo = mid
    # a heap that passed once may still fail (the heap's fragmentation depends on timing): the
    # margin is the smallest heap that passes `confirm` more times in a row
    while hi < MARGIN_HI and not all(trial(hi) for _ in range(confirm)):
        hi += step
    return hi, results


def call_cycle():
    out = run("112wK")
    print("heap 112wK (ESP32-sized: ~112 KiB on a 32-bit ESP32), badge reader on:")
    for line in out.splitlines():
        if line.startswith(("MEM", "CHIP")) or "SCENARIO" in line:
            print("  " + line)
    if "SCENARIO PASSED" not in out:
        print(out)
        return 1
    lo, hi = 16, 112
    while hi - lo > 4:
        mid = (lo + hi) // 2
        if "SCENARIO PASSED" in run("%dwK" % mid):
            hi = mid
        else:
            lo = mid
    print("smallest heap that completes the call cycle: %dwK (between %dwK and %dwK)" % (hi, lo, hi))
    out = run("112wK", badge=False)
    print("heap 112wK, a board without a reader (BADGE = None):")
    for line in out.splitlines():
        if line.startswith("MEM") or "SCENARIO" in line:
            print("  " + line)
    return 0 if "SCENARIO PASSED" in out else 1


def update_stages_report():
    ok, rows, out, pkg = update_stages()
    print("update of the whole firmware (%d files, %d bytes) in the application, lib/*.mpy as deploy stages it, "
          "heap 112wK (64-bit bytes; the largest free block of the heap):" % (len(pkg.files), pkg.size))
    base = rows[0][1] if rows else 0
    for stage, alloc, free, big in rows:
        print("  MEM %-26s alloc %7d (%+6d) free %7d largest free %7s" % (stage, alloc, alloc - base, free, big))
    if not ok:
        print(out[-3000:])
        return 1
    return 0


# ----- part 4: what the heap holds online, module by module -----

ONLINE_MODULES = r"""
import gc, sys, micropython
async def scenario(app):
    await until(lambda: app.link.online, 5000, "online")
    await asyncio.sleep_ms(500)
    gc.collect()
    print("ONLINE alloc %d" % gc.mem_alloc())
    micropython.qstr_info()
    print("MODULES " + " ".join(sorted(sys.modules)))
"""

IMPORT_EACH = r"""
import gc, sys, micropython
import asyncio
gc.collect()
print("BASE alloc %d" % gc.mem_alloc())
micropython.qstr_info()
for name in NAMES:
    __import__(name)
    gc.collect()
    print("MOD %s alloc %d" % (name, gc.mem_alloc()))
    micropython.qstr_info()
"""


def _import_order(names, lib):
    """names ordered so that a module comes after the modules it imports at its top level (its
    own heap, not its imports', is then what its import adds)."""
    import ast
    deps = {}
    for name in names:
        path = lib / (name + ".py")
        if not path.exists():
            deps[name] = set()
            continue
        found = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
        deps[name] = found & set(names)
    order, seen = [], set()

    def visit(n):
        if n in seen:
            return
        seen.add(n)
        for d in sorted(deps[n]):
            visit(d)
        order.append(n)
    for n in sorted(names):
        visit(n)
    return order


def _qstr_bytes(line):
    fields = dict(f.split("=") for f in line.split(":", 1)[1].replace(",", " ").split())
    return int(fields["n_total_bytes"]), int(fields["n_str_data_bytes"])


def modules_report(heap="112wK"):
    """The application as deploy stages it (.mpy), online at a scripted host, no badge reader:
    which modules it has loaded; then those modules imported one by one in a fresh interpreter
    (each after what it imports): the heap each one's code, names and module-level objects
    take, apart from MicroPython's pool of interned names (which grows in doubling blocks: the
    pool is shown as a whole, as it is online). The rest of "online" is what the application
    builds and runs."""
    import subprocess
    with staged_board() as (flash, env):
        (flash / "_scenario.py").write_text("board.BADGE = None\n" + ONLINE_MODULES)
        p = subprocess.run([str(mprun.MICROPYTHON), "-X", "heapsize=" + heap, str(mprun.DRIVE), "_scenario.py",
                            "20000"], cwd=flash, env=env, capture_output=True, text=True, timeout=60)
        out = p.stdout + p.stderr
        if "SCENARIO PASSED" not in out:
            print(out[-3000:])
            return 1
        at = next(i for i, l in enumerate(out.splitlines()) if l.startswith("ONLINE"))
        online = int(out.splitlines()[at].split()[2])
        online_pool = _qstr_bytes(out.splitlines()[at + 1])
        loaded = next(l for l in out.splitlines() if l.startswith("MODULES")).split()[1:]
        ours = {p.stem for p in (ROOT / "firmware" / "lib").glob("*.py")}
        shims = {p.stem for p in mprun.SHIMS.glob("*.py")}
        ours.add("board")       # the pin map (the emulator's here; a real board's is its own)
        names = [n for n in loaded if n in ours | shims and n not in ("mp_drive", "_scenario")]
        order = _import_order(names, ROOT / "firmware" / "lib")
        (flash / "_each.py").write_text("NAMES = %r\n" % order + IMPORT_EACH)
        p = subprocess.run([str(mprun.MICROPYTHON), "-X", "heapsize=" + heap, "_each.py"], cwd=flash, env=env,
                           capture_output=True, text=True, timeout=60)

    lines = p.stdout.splitlines()
    rows = []
    prev = pool = None
    for i, line in enumerate(lines):
        if line.startswith(("BASE", "MOD")):
            alloc = int(line.split("alloc")[1])
            q_total, q_str = _qstr_bytes(lines[i + 1])
            if prev is not None:
                rows.append((line.split()[1], alloc - prev - (q_total - pool[0]), q_str - pool[1]))
            prev, pool = alloc, (q_total, q_str)
    if len(rows) != len(order):
        print(p.stdout[-2000:] + p.stderr[-2000:])
        return 1
    print("the application online (lib/*.mpy as deploy stages it, no badge reader, heap %s): %d bytes allocated "
          "after gc.collect(), 64-bit" % (heap, online))
    print("  %-12s %8s %8s" % ("module", "code etc", "names"))
    for name, own, names_b in sorted(rows, key=lambda r: -r[1]):
        print("  %-12s %8d %8d%s" % (name, own, names_b, "  (a test double)" if name in shims else ""))
    code = sum(r[1] for r in rows if r[0] not in shims)
    doubles = sum(r[1] for r in rows if r[0] in shims)
    print("  firmware modules' code etc %d bytes, the test doubles' %d; online the pool of interned names holds %d "
          "bytes (%d of them the names' text; the firmware's modules brought %d); the rest, %d bytes, is what the "
          "application builds and runs (tasks, sessions, buffers), the frozen asyncio's objects and the bench's "
          "driver" % (code, doubles, online_pool[0], online_pool[1], sum(r[2] for r in rows if r[0] not in shims),
                      online - code - doubles - online_pool[0]))
    return 0


# ----- part 5: the same cycle with lib/ in a ROMFS image (bytecode executed in place) -----

ROMFS_WRAP = r"""
import gc, sys, vfs
f = open("lib.romfs", "rb")
IMG = f.read()
f.close()
f = None
gc.collect()
print("IMAGE %d bytes, heap allocated with it loaded %d" % (len(IMG), gc.mem_alloc()))
vfs.mount(vfs.VfsRom(IMG), "/rom")
sys.path[sys.path.index(LIBDIR)] = "/rom"
sys.argv[:] = ["mp_drive", "_scenario.py", "20000"]
exec(open(DRIVE).read())
"""


def _cycle_rows(out, less=0):
    """(stage, alloc, peak) of each MEM line of the call cycle, `less` taken off both."""
    rows = []
    for line in out.splitlines():
        if line.startswith("MEM"):
            alloc, peak = int(line.split("alloc")[1].split()[0]), int(line.split("peak")[1].split()[0])
            rows.append((line[4:18].strip(), alloc - less, peak - less))
    return rows


def romfs_report(heap="300wK"):
    """The call cycle (part 1's scenario, badge reader on) with lib/ as deploy stages it (.mpy),
    once imported from files as today and once from a ROMFS image of the same files (built by
    mpremote's romfs builder, mounted with vfs.VfsRom): the .mpy loader then references the
    bytecode and the constant strings in the image instead of copying them to the heap. The unix
    port has no ROM segment, so the image is read into a bytes object on the heap at start and
    its size is taken off every figure: what is left is what an ESP32 with the image in a flash
    partition would spend. The heap is large (300wK) so that neither run is squeezed."""
    import subprocess
    from mpremote.romfs import make_romfs
    results = {}
    for mode in ("files", "romfs"):
        with staged_board(acknowledge_calls) as (flash, env):
            (flash / "_scenario.py").write_text(SCENARIO.replace("NO_READER", "False", 1))
            args = [str(mprun.DRIVE), "_scenario.py", "20000"]
            if mode == "romfs":
                with contextlib.redirect_stdout(None):          # the builder lists the files it adds
                    image = make_romfs(str(flash / "_lib"), mpy_cross=False)
                (flash / "lib.romfs").write_bytes(image)
                (flash / "_wrap.py").write_text("LIBDIR = %r\nDRIVE = %r\n" % (str(flash / "_lib"), str(mprun.DRIVE))
                                                + ROMFS_WRAP)
                args = ["_wrap.py"]
            p = subprocess.run([str(mprun.MICROPYTHON), "-X", "heapsize=" + heap] + args, cwd=flash,
                               env=dict(env, WC_EMU_SHIMS=str(mprun.EMU_SHIMS)), capture_output=True, text=True,
                               timeout=60)
            out = p.stdout + p.stderr
        if "SCENARIO PASSED" not in out:
            print(out[-3000:])
            return 1
        less = 0
        if mode == "romfs":
            less = int(next(l for l in out.splitlines() if l.startswith("IMAGE")).split()[1])
            results["image"] = less
        results[mode] = _cycle_rows(out, less)
    print("the call cycle, badge reader on, lib/*.mpy as deploy stages it, heap %s; alloc after gc.collect() "
          "and mem_peak (64-bit bytes), from files and from a ROMFS image of %d bytes (its size taken off):"
          % (heap, results["image"]))
    print("  %-14s %9s %9s %9s %9s %8s" % ("stage", "files", "romfs", "peak f.", "peak r.", "saved"))
    for (stage, a_f, p_f), (_, a_r, p_r) in zip(results["files"], results["romfs"]):
        print("  %-14s %9d %9d %9d %9d %7d%%" % (stage, a_f, a_r, p_f, p_r, 100 * (a_f - a_r) // a_f))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("all", "calls", "update", "margin", "floor", "trial", "modules", "romfs"), default="all")
    ap.add_argument("--package", choices=("mpy", "sources"), default="mpy",
                    help="the update ships lib/*.mpy (`wardcall update`, its default) or the sources (`--sources`)")
    ap.add_argument("--heap", default="124wK", help="--part trial: the board's heap")
    args = ap.parse_args()
    mpy = args.package == "mpy"
    rc = 0
    if args.part == "trial":
        with tempfile.TemporaryDirectory(prefix="bench-otaheap-") as work:
            ok, why, fig = ota_trial(args.heap, Path(work), _ota_ward(Path(work) / "ward"), mpy)
        print("%s: %s %s %s" % (args.heap, "ok" if ok else "FAILED", why, fig))
        if not ok:
            print("--- the board's console, last 60 lines ---\n" + "\n".join(_LAST_CONSOLE[0].splitlines()[-60:]))
        return 0 if ok else 1
    if args.part == "floor":
        print("a call only, no update: an emulated board at the real wardcall serve")
        with tempfile.TemporaryDirectory(prefix="bench-otaheap-") as work:
            k, _ = ota_margin(Path(work), update=False)
        print("smallest emulator heap with which the call works: %swK" % k)
        return 0 if k else 1
    if args.part in ("all", "calls"):
        rc |= call_cycle()
    if args.part in ("all", "modules"):
        rc |= modules_report()
    if args.part in ("all", "romfs"):
        rc |= romfs_report()
    if args.part in ("all", "update"):
        rc |= update_stages_report()
    if args.part in ("all", "margin"):
        print("over-the-air update of the whole firmware (shipped as %s) with a call pressed during the transfer, "
              "an emulated board (the firmware as deploy stages it, .mpy) against the real wardcall serve:"
              % ("lib/*.mpy, as `wardcall update` sends it" if mpy else "sources, `wardcall update --sources`"))
        with tempfile.TemporaryDirectory(prefix="bench-otaheap-") as work:
            k, _ = ota_margin(Path(work), mpy)
        if k is None:
            print("  it fails with the emulator's default heap (%dwK)" % MARGIN_HI)
            return 1
        print("smallest emulator heap with which the update and the call work: %dwK (default %dwK: %d%% to spare; "
              "about 17wK of it are the emulator's shims)" % (k, MARGIN_HI, 100 * (MARGIN_HI - k) // MARGIN_HI))
    return rc


if __name__ == "__main__":
    sys.exit(main())
