#!/usr/bin/env python3
"""Host capacity: N lean simulated terminals (bench/loadgen.py, separate CPython processes of
5,000 each, real protocol and keys, a heartbeat a second each) against `wardcall serve`. Each step has a
window of `--window` seconds in two halves:

- steady: probe calls only. A simulated terminal in this process sends CALL; measured to its
  CALL_ACK (stored, acknowledged) and to the call's event on a console's SSE stream. The host's
  CPU (utime+stime of the whole process, /proc/<pid>/stat, in % of one core) is this half's.
- disturbed: the probes go on while a second console connects (its snapshot timed), the whole
  state is fetched (GET /api/state), and every terminal is cut off at once and reconnects (a
  reconnect storm, loadgen's SIGUSR1).

The host runs its loop probe (WARDCALL_LOOP_PROBE=1, wardcall/looplag.py): the worst lateness
of a 5 ms timer and the longest garbage collection over the whole window are printed beside the
latencies. With --mqtt each step is followed by the same load on Mosquitto (bench/bench_mqtt.py),
and both p99s and CPUs are printed with their ratios.

Plain TCP and HTTP unless --tls (terminals over TLS, the console over HTTPS: a ward's default).

    python bench/bench_capacity.py [--steps 1000,5000] [--window 40] [--probes 300] [--mqtt] [--tls]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Console, NURSE, console_http, console_tls, Server, cpu_seconds, machine, pct, raise_nofile, resident_mb, runqueue_wait_s, summary, write_ward  # noqa: E402

from wardcall.protocol import wardproto as wp  # noqa: E402
from tests.support.simterm import SimTerminal  # noqa: E402


PER_LOADGEN = 5000    # terminals one loadgen process holds at 1 Hz (~20 % of a core; 20,000 saturate one)


class LoadGens:
    """bench/loadgen.py processes, PER_LOADGEN terminals each, as one load: their "ready" lines
    summed, their CPU summed, a storm signalled to all and reported when all are back."""

    def __init__(self, work: Path, devices: list[dict], port: int, ramp: float = 2000) -> None:
        parts = [devices[i:i + PER_LOADGEN] for i in range(0, len(devices), PER_LOADGEN)]
        self.procs = []
        for k, part in enumerate(parts):
            path = work / f"load{k}.json"
            path.write_text(json.dumps(part))
            self.procs.append(subprocess.Popen(
                [sys.executable, str(Path(__file__).parent / "loadgen.py"), str(path), str(port), "--ramp", str(ramp / len(parts))],
                stdout=subprocess.PIPE, text=True, preexec_fn=lambda n=len(part): raise_nofile(n + 1000)))
        self.lines: list[list[str]] = [[] for _ in self.procs]

    def wait_ready(self) -> int:
        connected = 0
        for proc in self.procs:
            line = proc.stdout.readline()
            while line.startswith("stats"):         # still connecting
                line = proc.stdout.readline()
            if not line.startswith("ready"):
                raise RuntimeError(f"loadgen: {line!r}")
            connected += int(line.split()[1])
        for proc, sink in zip(self.procs, self.lines):
            threading.Thread(target=read_lines, args=(proc.stdout, sink), daemon=True).start()
        return connected

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def storm(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGUSR1)

    def storm_result(self, timeout: float) -> tuple[int, float] | None:
        """(terminals back, seconds until the last loadgen had all its own back), or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [next((x.split() for x in sink if x.startswith("storm")), None) for sink in self.lines]
            if all(got):
                return sum(int(g[1]) for g in got), max(float(g[2]) for g in got)
            time.sleep(0.2)
        return None

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(10)


class Probe:
    def __init__(self) -> None:
        self.ack: list[float] = []
        self.sse: list[float] = []
        self.failures = 0


async def probe_calls(term: SimTerminal, console: Console, n: int, gap: float, phase: Probe) -> None:
    """n probe calls from one terminal (kept across phases: call ids must not repeat)."""
    if not term.connected:
        await term.connect()
    for _ in range(n):
        cid = term.next_call_id()
        t0 = time.monotonic()
        try:
            await term.place_call(wp.PATIENT, call_id=cid, timeout=10)
        except (TimeoutError, ConnectionError) as exc:
            phase.failures += 1
            print(f"      probe call failed: {exc}", flush=True)
            try:       # cancelled all the same: open calls left behind would reach the cap of a terminal's calls
                if not term.connected:
                    await term.connect(timeout=30)
                await term.cancel(cid, timeout=10)
            except (TimeoutError, ConnectionError):
                pass
            continue
        t1 = time.monotonic()
        t2 = await asyncio.to_thread(console.wait, (term.device, cid), 5)
        phase.ack.append((t1 - t0) * 1000)
        if t2 is not None:
            phase.sse.append((t2 - t0) * 1000)
        try:
            await term.cancel(cid, timeout=10)
        except (TimeoutError, ConnectionError):
            if not term.connected:
                await term.connect(timeout=30)
        await asyncio.sleep(gap)


async def second_console(api_url: str) -> dict:
    """A console connecting: login, then the event stream until its snapshot has arrived (bytes
    only: parsing 1.6 MB here would hold this process's GIL while it times the probes); then
    GET /api/state. Times in ms."""
    out = {}
    async with console_http(api_url) as http:
        async with http.post(api_url + "/api/login", json={"user": NURSE[0], "password": NURSE[1]}) as r:
            r.raise_for_status()
        t0 = time.monotonic()
        async with http.get(api_url + "/api/events") as r:
            tail, started = b"", False
            async for chunk in r.content.iter_any():
                buf = tail + chunk
                if not started and (at := buf.find(b"event: snapshot")) >= 0:
                    started, buf = True, buf[at:]
                if started and b"\n\n" in buf:
                    break           # the snapshot's data line has ended
                tail = buf[-64:]
        out["snapshot_ms"] = (time.monotonic() - t0) * 1000
        t0 = time.monotonic()
        async with http.get(api_url + "/api/state") as r:
            body = await r.read()
        out["state_ms"] = (time.monotonic() - t0) * 1000
        out["state_bytes"] = len(body)
    return out


def health(api_url: str, lag_s: float) -> dict:
    with urllib.request.urlopen(f"{api_url}/api/health?lag_s={lag_s:.0f}", timeout=10, context=console_tls(api_url)) as r:
        return json.loads(r.read())


def read_lines(stream, sink: list[str]) -> None:
    for line in stream:
        sink.append(line.strip())


def step(work: Path, n: int, window: float, probes: int, tls: bool = False, host_beat_every: int | None = None) -> dict:
    # plain TCP and HTTP unless --tls: the terminals' TLS (the default of a ward) and HTTPS
    cfg, devices = write_ward(work / f"cap{n}", n + 1, tls="tls" if tls else "plain",
                              host_heartbeat_every=host_beat_every)
    load, probe_dev = devices[:n], devices[n]
    os.environ["WARDCALL_LOOP_PROBE"] = "1"        # inherited by `wardcall serve`
    server = Server(cfg)
    server.start()
    console = Console(server.api_url)
    gens = LoadGens(work / f"cap{n}", load, devices[0]["port"])
    try:
        t0 = time.monotonic()
        connected = gens.wait_ready()
        t_conn = time.monotonic() - t0
        time.sleep(3)                  # heartbeats settle (spread over a second)
        half, gap = probes // 2, max(0.0, window / probes - 0.01)
        steady, disturbed = Probe(), Probe()
        c0, g0, w0 = cpu_seconds(server.proc.pid), gens.cpu_seconds(), time.monotonic()
        q0 = runqueue_wait_s(server.proc.pid)
        loop = asyncio.new_event_loop()
        term = SimTerminal(probe_dev["device_id"], probe_dev["key"], "127.0.0.1", devices[0]["port"],
                           tls=probe_dev.get("tls", "plain"))
        loop.run_until_complete(probe_calls(term, console, half, gap, steady))
        w = time.monotonic() - w0
        host_cpu = (cpu_seconds(server.proc.pid) - c0) / w * 100
        gen_cpu = (gens.cpu_seconds() - g0) / w * 100
        steady_loop = health(server.api_url, w + 1)["loop"]
        steady_wait = (runqueue_wait_s(server.proc.pid) - q0) / w * 100
        steady_rss = resident_mb(server.proc.pid)[0]

        async def disturb() -> dict:
            calls = asyncio.ensure_future(probe_calls(term, console, probes - half, gap, disturbed))
            await asyncio.sleep(window / 8)
            seen = await asyncio.wait_for(second_console(server.api_url), 60)
            await asyncio.sleep(window / 8)
            seen["storm_at"] = time.monotonic()
            gens.storm()
            await calls
            return seen
        c1, w1 = cpu_seconds(server.proc.pid), time.monotonic()
        seen = loop.run_until_complete(disturb())
        loop.run_until_complete(term.close())
        loop.close()
        w_dist = time.monotonic() - w1
        disturbed_cpu = (cpu_seconds(server.proc.pid) - c1) / w_dist * 100
        storm = gens.storm_result(30)
        peak_rss = resident_mb(server.proc.pid)[1]
        time.sleep(2)                  # the last to reconnect send their first heartbeat (adopted then)
        loop = health(server.api_url, time.monotonic() - w0 + 1)["loop"]
        st = console.state()
        names = {d["device_id"] for d in load}
        online = sum(1 for t in st["terminals"] if t.get("connected") and t["device"] in names)
        return {"terminals": n, "connected": connected, "online_at_end": online, "connect_s": t_conn,
                "host_cpu_pct": host_cpu, "disturbed_cpu_pct": disturbed_cpu, "loadgen_cpu_pct": gen_cpu,
                "host_rss_mb": steady_rss, "host_rss_peak_mb": peak_rss, "window_s": w + w_dist, "ack": steady.ack, "sse": steady.sse, "ack_disturbed": disturbed.ack,
                "sse_disturbed": disturbed.sse, "loop_lag_max_ms": loop["lag_max_ms"],
                "steady_lag_max_ms": steady_loop["lag_max_ms"], "steady_cpu_wait_pct": steady_wait, "steady_gc_pause_max_ms": steady_loop["gc_pause_max_ms"],
                "gc_pause_max_ms": loop["gc_pause_max_ms"], "gc_collections": loop["gc_collections"], "gc_worst": (loop.get("gc_pause_worst_ms"), loop.get("gc_pause_worst_generation")),
                "second_console": seen, "storm_back": storm[0] if storm else None,
                "storm_s": storm[1] if storm else None,
                "threads": server.threads(), "probe_failures": steady.failures + disturbed.failures,
                "console_reconnects": console.reconnects,
                "console_error": repr(console.error) if console.error else None}
    finally:
        gens.stop()
        console.close()
        server.stop()


def report(r: dict) -> None:
    n = r["terminals"]
    print(f"{n:5d} terminals at 1 Hz{' over TLS' if r.get('tls') else ''}: connected {r['connected']} in {r['connect_s']:.1f} s, online at the end {r['online_at_end']}; "
          f"host CPU {r['host_cpu_pct']:.0f} % of one core steady, {r['disturbed_cpu_pct']:.0f} % disturbed "
          f"({r['threads']} threads), loadgen CPU {r['loadgen_cpu_pct']:.0f} %; the host's loop waited for a CPU "
          f"{r['steady_cpu_wait_pct']:.0f} % of the steady half (the machine is shared); host memory (resident) "
          f"{r['host_rss_mb']:.0f} MB steady, peak {r['host_rss_peak_mb']:.0f} MB")
    print(f"      steady    CALL -> CALL_ACK  {summary(r['ack'])}")
    print(f"      steady    CALL -> console   {summary(r['sse'])}")
    print(f"      disturbed CALL -> CALL_ACK  {summary(r['ack_disturbed'])}")
    print(f"      disturbed CALL -> console   {summary(r['sse_disturbed'])}")
    sc = r["second_console"]
    print(f"      a console connecting: snapshot in {sc['snapshot_ms']:.0f} ms; GET /api/state {sc['state_ms']:.0f} ms "
          f"({sc['state_bytes'] / 1e6:.1f} MB); reconnect storm: {r['storm_back']} back in {r['storm_s']} s")
    print(f"      loop lag max {r['steady_lag_max_ms']:.1f} ms steady, {r['loop_lag_max_ms']:.1f} ms over the whole {r['window_s']:.0f} s; "
          f"longest GC {r['steady_gc_pause_max_ms']:.1f} ms steady, {r['gc_pause_max_ms']:.1f} ms in all "
          f"(collections per generation {r['gc_collections']}; the longest since start {r['gc_worst'][0]} ms, generation {r['gc_worst'][1]}); {r['probe_failures']} probe call(s) without CALL_ACK in 10 s; "
          f"console stream reconnected {r['console_reconnects']}x{', error ' + r['console_error'] if r['console_error'] else ''}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="1000,5000")
    ap.add_argument("--window", type=float, default=40.0, help="seconds of probing per step (steady half, disturbed half)")
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--mqtt", action="store_true", help="each step also on Mosquitto (bench/bench_mqtt.py), interleaved")
    ap.add_argument("--runs", type=int, default=1, help="repeat the steps (interleaved with Mosquitto's)")
    ap.add_argument("--tls", action="store_true", help="terminals over TLS and the console over HTTPS (a ward's default)")
    ap.add_argument("--host-beat-every", default="",
                    help="[timing] host_heartbeat_every, comma-separated to run each in turn (default: the ward's)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    raise_nofile(50000)
    print(f"machine: {machine()}; load average before: {os.getloadavg()[0]:.2f}")
    print("host: `wardcall serve` is one process: one asyncio event loop (terminals, discovery, API, timers)"
          " plus one SQLite writer thread (and a thread pool for password hashing)")
    if args.mqtt:
        import bench_mqtt
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-cap-") as tmp:
        for run in range(args.runs):
            steps = [(int(x), int(e) if e else None) for x in args.steps.split(",") if x
                     for e in args.host_beat_every.split(",")]
            for i, (n, every) in enumerate(steps):
                if every is not None:
                    print(f"host_heartbeat_every = {every}", flush=True)
                r = step(Path(tmp) / f"run{run}-{i}", n, args.window, args.probes, args.tls, every)
                r["tls"] = args.tls
                r["host_heartbeat_every"] = every
                r["load_average"] = os.getloadavg()[0]
                results.append(r)
                report(r)
                if args.mqtt:
                    m = bench_mqtt.step(Path(tmp) / f"mqtt{run}-{n}", n, args.window / 2, args.probes // 2)
                    r["mqtt"] = m
                    bench_mqtt.report(m)
                    ratio_p99 = pct(r["sse"], 99) / pct(m["sub"], 99) if m["sub"] else float("nan")
                    ratio_cpu = r["host_cpu_pct"] / m["broker_cpu_pct"] if m["broker_cpu_pct"] else float("nan")
                    print(f"      wardcall / Mosquitto at {n}: call -> console p99 {pct(r['sse'], 99):.1f} / {pct(m['sub'], 99):.1f} ms "
                          f"= {ratio_p99:.1f}x; CPU {r['host_cpu_pct']:.1f} / {m['broker_cpu_pct']:.1f} % = {ratio_cpu:.1f}x", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
