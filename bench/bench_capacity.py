#!/usr/bin/env python3
"""Host capacity: N lean simulated terminals (bench/loadgen.py, a separate CPython process,
real protocol and keys, a heartbeat a second each) against `wardcall serve`; at each step the
host's CPU (utime+stime of the whole process from /proc/<pid>/stat, in % of one core) over a
window, and the latency of probe calls: a simulated terminal in this process sends CALL;
measured to its CALL_ACK (stored, acknowledged) and to the call's event on a console's SSE stream.

    python bench/bench_capacity.py [--steps 500,1000,2000,5000] [--window 10] [--probes 40]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Console, Server, cpu_seconds, machine, raise_nofile, summary, write_ward  # noqa: E402

from wardcall.protocol import wardproto as wp  # noqa: E402
from tests.support.simterm import SimTerminal  # noqa: E402


async def probe(dev: dict, port: int, console: Console, n: int, gap: float) -> tuple[list[float], list[float]]:
    term = SimTerminal(dev["device_id"], dev["key"], "127.0.0.1", port)
    await term.connect()
    ack_ms, sse_ms = [], []
    probe.failures = 0
    try:
        for _ in range(n):
            t0 = time.monotonic()
            try:
                cid = await term.place_call(wp.PATIENT, timeout=10)
            except (TimeoutError, ConnectionError) as exc:
                probe.failures += 1
                print(f"      probe call failed: {exc}", flush=True)
                if not term.connected:
                    await term.connect(timeout=30)
                continue
            t1 = time.monotonic()
            t2 = await asyncio.to_thread(console.wait, (dev["device_id"], cid), 3)
            ack_ms.append((t1 - t0) * 1000)
            if t2 is not None:
                sse_ms.append((t2 - t0) * 1000)
            await term.cancel(cid, timeout=10)
            await asyncio.sleep(gap)
    finally:
        await term.close()
    return ack_ms, sse_ms


def step(work: Path, n: int, window: float, probes: int) -> dict:
    cfg, devices = write_ward(work / f"cap{n}", n + 1)
    load, probe_dev = devices[:n], devices[n]
    (work / f"cap{n}" / "load.json").write_text(json.dumps(load))
    server = Server(cfg)
    server.start()
    console = Console(server.api_url)
    gen = subprocess.Popen([sys.executable, str(Path(__file__).parent / "loadgen.py"), str(work / f"cap{n}" / "load.json"),
                            str(devices[0]["port"]), "--ramp", "1500"], stdout=subprocess.PIPE, text=True,
                           preexec_fn=lambda: raise_nofile(20000))
    try:
        t0 = time.monotonic()
        line = gen.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"loadgen: {line!r}")
        connected = int(line.split()[1])
        t_conn = time.monotonic() - t0
        time.sleep(3)                  # heartbeats settle (spread over a second)
        c0, g0, w0 = cpu_seconds(server.proc.pid), cpu_seconds(gen.pid), time.monotonic()
        ack, sse = asyncio.run(probe(probe_dev, devices[0]["port"], console, probes, max(0.0, window / probes - 0.01)))
        w = time.monotonic() - w0
        host_cpu = (cpu_seconds(server.proc.pid) - c0) / w * 100
        gen_cpu = (cpu_seconds(gen.pid) - g0) / w * 100
        st = console.state()
        names = {d["device_id"] for d in load}
        online = sum(1 for t in st["terminals"] if t.get("connected") and t["device"] in names)
        return {"terminals": n, "connected": connected, "online_at_end": online, "connect_s": t_conn,
                "host_cpu_pct": host_cpu, "loadgen_cpu_pct": gen_cpu, "window_s": w, "ack": ack, "sse": sse,
                "threads": server.threads(), "probe_failures": probe.failures, "console_reconnects": console.reconnects,
                "console_error": repr(console.error) if console.error else None}
    finally:
        gen.kill()
        gen.wait(10)
        console.close()
        server.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="500,1000,2000,5000")
    ap.add_argument("--window", type=float, default=10.0, help="seconds of CPU measurement (while probing)")
    ap.add_argument("--probes", type=int, default=40)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    raise_nofile(20000)
    print(f"machine: {machine()}")
    print("host: `wardcall serve` is one process: one asyncio event loop (terminals, discovery, API, timers)"
          " plus one SQLite writer thread (and a thread pool for password hashing)")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-cap-") as tmp:
        for n in [int(x) for x in args.steps.split(",") if x]:
            r = step(Path(tmp), n, args.window, args.probes)
            results.append(r)
            print(f"{n:5d} terminals at 1 Hz: connected {r['connected']} in {r['connect_s']:.1f} s, online at the end {r['online_at_end']}; "
                  f"host CPU {r['host_cpu_pct']:.0f} % of one core ({r['threads']} threads), loadgen CPU {r['loadgen_cpu_pct']:.0f} %")
            print(f"      CALL -> CALL_ACK  {summary(r['ack'])}, {r['probe_failures']} probe call(s) without CALL_ACK in 10 s")
            print(f"      CALL -> console   {summary(r['sse'])}  (console stream reconnected {r['console_reconnects']}x"
                  f"{', error ' + r['console_error'] if r['console_error'] else ''})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
