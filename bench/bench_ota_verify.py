"""What checking a signed over-the-air update costs a terminal: RSA verification with otaproto
(RSASSA-PKCS1-v1_5 / SHA-256, e = 65537, pure MicroPython big integers) at RSA-2048, -3072 (the
ward key) and -4096, under the MicroPython unix port at the ESP32-sized heap (-X heapsize=112wK,
as bench/bench_firmware_memory.py), and what the update costs the running application.

Prints, per key size: the time of one verify (median and max of 20) and the bytes it allocates
(gc disabled while it runs: everything it needs, garbage included).
Then, in the real application online at a scripted host: the free heap before the first OTA
command and once the signature is verified (receiver, otacheck and otaproto loaded), how long the
signed BEGIN took and the longest of the commands during which the terminal checks the signature
(a slice each, ota.py); and the boot step's check of a staged update of the whole firmware (every
file hashed, the signature verified in one go, before the application starts).

These are times of this machine's CPU running the unix port (64-bit), not of an ESP32: an ESP32
runs the same bytecode many times slower; see docs/PROTOCOL.md section 12.1.

    .venv/bin/python bench/bench_ota_verify.py
"""
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "host"))

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402

from tests.firmware import mprun  # noqa: E402
from tests.firmware.fakehost import FakeHost, P  # noqa: E402
from wardcall.ota import build_package, signing  # noqa: E402
from wardcall.protocol import otaproto  # noqa: E402

HEAP = "112wK"
MESSAGE = otaproto.statement("0.2.0", 1767225600, 19, 91659, "ab" * 32)

VERIFY = r"""
import json, time, gc
import otaproto as O
from binascii import unhexlify
for e in json.load(open("keys.json")):
    n = int(e["n"], 16); k = e["k"]; m = unhexlify(e["m"]); s = unhexlify(e["s"])
    ts = []
    for i in range(20):
        t0 = time.ticks_us()
        ok = O.verify(n, k, m, s)
        ts.append(time.ticks_diff(time.ticks_us(), t0))
    ts.sort()
    gc.collect(); gc.disable(); a = gc.mem_alloc()
    O.verify(n, k, m, s)
    used = gc.mem_alloc() - a
    gc.enable()
    print("VERIFY", e["bits"], ok, ts[len(ts) // 2], ts[-1], used)
"""

APP = r"""
import gc, time, json
from binascii import unhexlify
def mem():
    gc.collect()
    return gc.mem_alloc(), gc.mem_free()
async def scenario(app):
    await until(lambda: app.link.online, 5000, "online")
    a0, f0 = mem()
    times = []
    detail = ""
    for line in open("declare.txt"):
        c, a = line.split()
        t0 = time.ticks_us()
        ok, detail, _ = app.link.commands.handle(int(c), unhexlify(a))
        times.append(time.ticks_diff(time.ticks_us(), t0))
        if not ok or json.loads(detail).get("sig") == "ok":
            break
        await asyncio.sleep_ms(0)
    a1, f1 = mem()
    print("APP", a0, f0, a1, f1, times[0], max(times[1:]), sum(times[1:]), len(times) - 1, detail.replace(" ", ""))
    app.link.commands.handle(20, b"")
"""

BOOT = r"""
import json, time, gc, binascii
import ota, otaboot, otacheck
r = ota.Receiver([])
for line in open("cmds.txt"):
    c, a = line.split()
    ok, detail, after = r.handle(int(c), b"" if a == "-" else binascii.unhexlify(a))
    if not ok:
        print("REFUSED", detail)
st = otaboot.read()
gc.collect()
t0 = time.ticks_us()
why = otacheck.check_staged(st)
print("BOOTCHECK", time.ticks_diff(time.ticks_us(), t0), why, st["size"], len(st["files"]))
"""


def keys():
    out = []
    test_key = serialization.load_pem_private_key((ROOT / "tests" / "vectors" / "ota_test_key_a.pem").read_bytes(), None)
    for bits in (2048, 3072, 4096):
        key = test_key if bits == 3072 else rsa.generate_private_key(public_exponent=65537, key_size=bits)
        sig = key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())
        out.append({"bits": bits, "n": "%x" % key.public_key().public_numbers().n, "k": bits // 8,
                    "m": MESSAGE.hex(), "s": sig.hex()})
    return out, test_key


def main():
    ks, ward_key = keys()
    print("heap %s (ESP32-sized: ~112 KiB on a 32-bit ESP32); MicroPython unix port, this machine's CPU" % HEAP)
    with tempfile.TemporaryDirectory() as flash:
        Path(flash, "keys.json").write_text(json.dumps(ks))
        rc, out = mprun.run_code(VERIFY, flash, heap=HEAP)
        rows = [line.split() for line in out.splitlines() if line.startswith("VERIFY")]
        if len(rows) != len(ks) or rc != 0:
            print(out)
            return 1
        for _, bits, ok, med, mx, used in rows:
            print("  RSA-%s verify: %s, median %.2f ms, max %.2f ms (20 runs), %s bytes allocated by one"
                  % (bits, "ok" if ok == "True" else "FAILED", int(med) / 1000, int(mx) / 1000, used))

    # the running application: a signed BEGIN of the repository's firmware
    pkg = signing.sign(build_package(), ward_key, 1767225600)
    hdr = {"v": pkg.version, "serial": pkg.serial, "n": len(pkg.files), "size": pkg.size, "m": pkg.digest(),
           "kid": pkg.kid, "trial_s": 60}
    host = FakeHost("bed-101-1", mprun.KEY, hb_ms=300).start()
    try:
        with tempfile.TemporaryDirectory() as flash:
            mprun.write_config(flash, mprun.config(port=host.port))
            Path(flash, otaproto.KEY_FILE).write_text(signing.board_key_text(ward_key.public_key()))
            manifest = pkg.manifest()
            declare = [(P.CMD_OTA_BEGIN, otaproto.encode_begin(hdr, pkg.signature))]
            declare += [(P.CMD_OTA_FILE, otaproto.encode_file(i, *e)) for i, e in enumerate(manifest)]
            declare += [(P.CMD_OTA_FILE, otaproto.encode_file(len(manifest) - 1, *manifest[-1]))] * 20
            Path(flash, "declare.txt").write_text("".join("%d %s\n" % (c, a.hex()) for c, a in declare))
            out = mprun.run_scenario(APP, flash, 20000, heap=HEAP)
    finally:
        host.stop()
    line = next((l.split() for l in out.splitlines() if l.startswith("APP")), None)
    if line is None or "SCENARIO PASSED" not in out:
        print(out)
        return 1
    _, a0, f0, a1, f1, begin, worst, total, n, detail = line
    print("  application online: heap used %s, free %s; signed BEGIN (receiver loaded, key read, first slices of "
          "the check) %.1f ms; declarations until the signature was verified: %s commands, %.1f ms in all, the "
          "longest %.1f ms; then heap used %s, free %s (%+d bytes)"
          % (a0, f0, int(begin) / 1000, n, int(total) / 1000, int(worst) / 1000, a1, f1, int(a1) - int(a0)))
    if '"sig":"ok"' not in detail:
        print("  the signature was not verified: " + detail)
        return 1

    # the boot step's check of a staged update of the whole firmware
    with tempfile.TemporaryDirectory() as flash:
        Path(flash, otaproto.KEY_FILE).write_text(signing.board_key_text(ward_key.public_key()))
        manifest = pkg.manifest()
        cmds = [(P.CMD_OTA_BEGIN, otaproto.encode_begin(hdr, pkg.signature))]
        cmds += [(P.CMD_OTA_FILE, otaproto.encode_file(i, *e)) for i, e in enumerate(manifest)]
        for i, (_, data) in enumerate(pkg.files):
            cmds += [(P.CMD_OTA_CHUNK, otaproto.encode_chunk(i, off, data[off:off + 960]))
                     for off in range(0, len(data), 960)]
        cmds.append((P.CMD_OTA_COMMIT, b""))
        Path(flash, "cmds.txt").write_text("".join("%d %s\n" % (c, a.hex() or "-") for c, a in cmds))
        rc, out = mprun.run_code(BOOT, flash, heap=HEAP, timeout=120)
    line = next((l.split(None, 5) for l in out.splitlines() if l.startswith("BOOTCHECK")), None)
    if line is None or line[2] != "None":
        print(out)
        return 1
    print("  boot check of a staged update (%s files, %s bytes hashed, signature verified): %.1f ms"
          % (line[4], line[3], int(line[1]) / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
