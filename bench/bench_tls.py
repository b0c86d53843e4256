#!/usr/bin/env python3
"""TLS on the bed terminal: what it costs and how a ward comes back with it.

1. Handshakes in the MicroPython unix port (mbedTLS 3.6, the firmware's heap -X heapsize=112wK),
   against a CPython TLS server on loopback, for each host key type (ECDSA P-256, RSA-2048,
   RSA-3072) and for mutual TLS (a P-256 client certificate): the time of one handshake
   (median and max of --handshakes), the MicroPython heap a live TLS session holds (the context
   and socket objects: gc.mem_alloc() before and after), and with `heaptrack` installed, the C
   heap mbedTLS takes for one session (its peak, above the same script without TLS): on an
   ESP32 that part comes from the ESP-IDF heap, next to the MicroPython heap.
2. The application on the emulated board (real firmware, real host, TLS): the heap after boot
   and online, and the smallest heap (-X heapsize) with which a full call cycle (online, call
   stored, acknowledged at the console, cancelled by presence) still completes, TLS and plain.
3. A reconnect storm with TLS (bench/bench_fleet.py's): --storm boards online, the host
   SIGKILLed, --pending calls placed meanwhile, the host started again: until every board is
   back and every call is on the console; the host's CPU over those seconds. --plain-storm runs
   the same without TLS, for comparison.

    .venv/bin/python bench/bench_tls.py [--handshakes 20] [--storm 200] [--pending 50] [--plain-storm]
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Console, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MICROPYTHON = Path(sys.executable).parent / "micropython"
HEAP = "112wK"

CLIENT = r"""
import sys, socket, tls, time, gc
port = int(sys.argv[1]); n = int(sys.argv[2]); mode = sys.argv[3]
ca = open("ca.der", "rb").read()
cert = open("client.der", "rb").read() if mode == "mtls" else None
key = open("client.key.der", "rb").read() if mode == "mtls" else None
times = []
held = 0
def cpu():
    f = open("/proc/self/stat")
    parts = f.read().split(")")[-1].split()
    f.close()
    return int(parts[11]) + int(parts[12])      # utime + stime, clock ticks
cpu0 = cpu()
for i in range(n):
    gc.collect()
    before = gc.mem_alloc()
    t0 = time.ticks_us()
    s = socket.socket()
    s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    if mode != "plain":
        ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = tls.CERT_REQUIRED
        ctx.load_verify_locations(ca)
        if cert:
            ctx.load_cert_chain(cert, key)
        s = ctx.wrap_socket(s, server_hostname="wardcall.internal")
    s.write(b"x")
    s.read(1)
    times.append(time.ticks_diff(time.ticks_us(), t0))
    gc.collect()
    held = gc.mem_alloc() - before
    s.close()
    s = ctx = None
print("RESULT", " ".join(str(t) for t in times), "HELD", held, "CPU", cpu() - cpu0)
"""


# ----- part 1: handshakes -----

def make_pki(folder: Path, kind: str) -> None:
    """ca.der, server.pem/.key and a client certificate (client.der/.key.der) of one key type."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    def key():
        return ec.generate_private_key(ec.SECP256R1()) if kind == "p256" else rsa.generate_private_key(
            65537, int(kind[3:]))
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench CA {kind}")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))

    def leaf(name: str, eku):
        k = key()
        c = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
             .issuer_name(ca_name).public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
             .add_extension(x509.ExtendedKeyUsage([eku]), critical=False).sign(ca_key, hashes.SHA256()))
        return k, c
    skey, scert = leaf("wardcall.internal", x509.oid.ExtendedKeyUsageOID.SERVER_AUTH)
    ckey, ccert = leaf("bed-101-1", x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)
    pem = serialization.Encoding.PEM
    (folder / "ca.der").write_bytes(ca.public_bytes(serialization.Encoding.DER))
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(scert.public_bytes(pem))
    (folder / "server.key").write_bytes(skey.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
    (folder / "client.der").write_bytes(ccert.public_bytes(serialization.Encoding.DER))
    (folder / "client.key.der").write_bytes(ckey.private_bytes(serialization.Encoding.DER,
                                                                serialization.PrivateFormat.TraditionalOpenSSL,
                                                                serialization.NoEncryption()))


class EchoServer:
    """A CPython TLS (or plain) server on loopback answering one byte per connection."""

    def __init__(self, folder: Path | None, mutual: bool = False) -> None:
        self.ctx = None
        if folder is not None:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self.ctx.load_cert_chain(folder / "server.pem", folder / "server.key")
            if mutual:
                self.ctx.verify_mode = ssl.CERT_REQUIRED
                self.ctx.load_verify_locations(folder / "ca.pem")
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def handle(reader, writer):
            try:
                await reader.readexactly(1)
                writer.write(b"y")
                await writer.drain()
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
                pass
            writer.close()

        async def start():
            self.server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=self.ctx)
            self.port = self.server.sockets[0].getsockname()[1]
            self.ready.set()
        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def run_client(folder: Path, port: int, n: int, mode: str, heaptrack: bool = False) -> tuple[list[float], int, int | None, float]:
    """(handshake ms each, MicroPython heap held by a live session, C heap peak bytes or None,
    the client's CPU ms per handshake)."""
    (folder / "client.py").write_text(CLIENT)
    cmd = [str(MICROPYTHON), "-X", f"heapsize={HEAP}", "client.py", str(port), str(n), mode]
    peak = None
    if heaptrack:
        out_prefix = folder / f"ht-{mode}"
        cmd = ["heaptrack", "-o", str(out_prefix)] + cmd
    done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=300)
    m = re.search(r"RESULT ([\d ]+) HELD (-?\d+) CPU (\d+)", done.stdout)
    if not m:
        raise RuntimeError(f"client failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    times = [int(t) / 1000 for t in m.group(1).split()]
    cpu_ms = int(m.group(3)) * 1000 / os.sysconf("SC_CLK_TCK") / n
    if heaptrack:
        files = sorted(folder.glob(f"ht-{mode}*"))
        printed = subprocess.run(["heaptrack_print", "-f", str(files[-1]), "--print-massif", str(folder / f"m-{mode}"),
                                  "--print-peaks", "0", "--print-allocators", "0", "--print-temporary", "0",
                                  "--print-leaks", "0"], capture_output=True, text=True, timeout=300)
        massif = (folder / f"m-{mode}").read_text() if (folder / f"m-{mode}").exists() else ""
        sizes = [int(x) for x in re.findall(r"mem_heap_B=(\d+)", massif)]
        peak = max(sizes) if sizes else None
        if peak is None:
            sys.stderr.write(printed.stderr[-500:])
    return times, int(m.group(2)), peak, cpu_ms


VARIANTS = (("p256", "tls"), ("rsa2048", "tls"), ("rsa3072", "tls"), ("p256", "mtls"))


def handshakes(n: int, rounds: int = 4) -> dict:
    """Each variant in turn, `rounds` times (this machine is shared: interleaving spreads its
    load over all of them)."""
    have_heaptrack = shutil.which("heaptrack") is not None and shutil.which("heaptrack_print") is not None
    per = max(1, n // rounds)
    samples: dict[str, dict[str, list]] = {f"{k} {m}": {"wall": [], "cpu": [], "host": []} for k, m in VARIANTS}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        base = Path(tmp)
        plain_dir = base / "plain"
        plain_dir.mkdir()
        make_pki(plain_dir, "p256")
        server = EchoServer(None)
        plain_peak = run_client(plain_dir, server.port, 1, "plain", heaptrack=have_heaptrack)[2]
        server.stop()
        for kind, mode in VARIANTS:
            (base / f"{kind}-{mode}").mkdir()
            make_pki(base / f"{kind}-{mode}", kind)
        for _ in range(rounds):
            for kind, mode in VARIANTS:
                folder, name = base / f"{kind}-{mode}", f"{kind} {mode}"
                server = EchoServer(folder, mutual=mode == "mtls")
                try:
                    host0 = time.process_time()
                    times, held, _, cpu_ms = run_client(folder, server.port, per, mode)
                    samples[name]["host"].append((time.process_time() - host0) * 1000 / per)
                finally:
                    server.stop()
                samples[name]["wall"] += times
                samples[name]["cpu"].append(cpu_ms)
                results.setdefault(name, {})["mp_heap_held"] = held
        for kind, mode in VARIANTS:
            folder, name = base / f"{kind}-{mode}", f"{kind} {mode}"
            server = EchoServer(folder, mutual=mode == "mtls")
            try:
                peak = run_client(folder, server.port, 1, mode, heaptrack=have_heaptrack)[2]
            finally:
                server.stop()
            wall = sorted(samples[name]["wall"])
            results[name].update(
                median_ms=wall[len(wall) // 2], max_ms=wall[-1], handshakes=len(wall),
                client_cpu_ms=sum(samples[name]["cpu"]) / len(samples[name]["cpu"]),
                host_cpu_ms=sum(samples[name]["host"]) / len(samples[name]["host"]),
                c_heap_peak_above_plain=(peak - plain_peak) if peak and plain_peak else None)
    return results


# ----- part 2 and 3: the firmware on the emulated board, the real host -----

def smallest_heap(work: Path, tls: str) -> dict:
    """The smallest -X heapsize (in wK) with which one board completes a call cycle."""
    from _common import Server, write_ward
    from boards.emulator.fleet import Fleet
    from tests.fixtures.ward import firmware_files
    cfg, devices = write_ward(work / f"heap-{tls}", 1, tls=tls)
    server = Server(cfg)
    server.start()
    console = Console(server.api_url)
    fleet = Fleet.start(work / f"heap-fleet-{tls}")
    dev = devices[0]
    result = {}

    def cycle(heapsize: str, k: int) -> dict | None:
        name = dev["device_id"]
        b = fleet.add_board(name, flash_dir=work / f"heap-flash-{tls}-{k}", files=firmware_files(dev), heapsize=heapsize)
        try:
            b.wait_console("link: online", 30)
            online = b.heap(2)
            mark = b.console_mark()
            b.tap("call", ms=150)
            b.wait_console("host stored CALL", 15, since=mark)
            st = console.state()
            call = next(c for c in st["calls"] if c["device"] == name and c["state"] == "placed")
            asyncio.run_coroutine_threadsafe(console.http.post(console.api_url + f"/api/calls/{call['id']}/acknowledge",
                                                               json={}), console.loop)
            b.wait_console("acknowledged", 15, since=mark)
            b.tap("presence", ms=150)
            b.wait_console("host stored CANCEL", 15, since=mark)
            return online
        except Exception:  # noqa: BLE001 - too small: any failure on the way
            return None
        finally:
            fleet.remove_board(name)
    try:
        first = cycle("124wK", 0)
        result["online_heap_at_default"] = first
        lo, hi, k = 40, 120, 1
        while hi - lo > 4:
            mid = (lo + hi) // 2
            k += 1
            if cycle(f"{mid}wK", k) is not None:
                hi = mid
            else:
                lo = mid
        result["smallest_wK"] = hi
        result["between"] = (lo, hi)
    finally:
        fleet.stop()
        console.close()
        server.stop()
    return result


def storm_run(work: Path, boards: int, pending: int, tls: str) -> dict:
    import bench_fleet
    r = bench_fleet.latency_run(boards, 1, work / tls, keep=True, tls=tls)
    result = {"online_first_s": r["online_s"]}
    result.update(bench_fleet.storm(r.pop("_rig"), pending))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--handshakes", type=int, default=20)
    ap.add_argument("--storm", type=int, default=200, help="boards in the reconnect storm (0: skip)")
    ap.add_argument("--pending", type=int, default=50)
    ap.add_argument("--plain-storm", action="store_true", help="the same storm without TLS, for comparison")
    ap.add_argument("--skip-heap", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    print(f"machine: {machine()}")
    out: dict = {}
    hs = handshakes(args.handshakes)
    out["handshakes"] = hs
    print(f"handshakes in the unix port (heap {HEAP}, loopback, {args.handshakes} each):")
    for name, r in hs.items():
        c = r["c_heap_peak_above_plain"]
        print(f"    {name:13s} wall median {r['median_ms']:6.1f} ms (max {r['max_ms']:6.1f}); CPU per handshake: "
              f"terminal {r['client_cpu_ms']:5.1f} ms, host {r['host_cpu_ms']:5.1f} ms; MicroPython heap held by a "
              f"session {r['mp_heap_held']:5d} B; mbedTLS C heap peak {'%d B' % c if c else 'not measured (no heaptrack)'}")
    with tempfile.TemporaryDirectory(prefix="bench-tls-fw-") as tmp:
        work = Path(tmp)
        if not args.skip_heap:
            for mode in ("tls", "plain"):
                h = smallest_heap(work, mode)
                out[f"heap_{mode}"] = h
                print(f"firmware on the emulated board, {mode}: heap online at 124wK (the default) {h['online_heap_at_default']}; "
                      f"smallest heap for a call cycle {h['smallest_wK']}wK (fails at {h['between'][0]}wK)")
        if args.storm:
            for mode in (("tls", "plain") if args.plain_storm else ("tls",)):
                s = storm_run(work, args.storm, args.pending, mode)
                out[f"storm_{mode}"] = s
                print(f"reconnect storm, {mode}, {s['boards']} boards, {s['pending']} calls pending: host ready "
                      f"{s['ready_s']:.2f} s; all boards back {s['all_back_s']:.2f} s, all pending calls on the console "
                      f"{s['all_calls_s']:.2f} s after the restart began; host CPU {s['host_cpu_s']:.2f} s "
                      f"until then; missing {len(s['missing'])}, duplicates {s['duplicates']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
