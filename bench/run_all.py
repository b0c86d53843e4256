#!/usr/bin/env python3
"""`make bench`: every benchmark at sizes that finish in a few minutes on 2 cores, then one table
of the figures against the targets. Full sizes: run the scripts themselves (see docs/BENCHMARKS.md).

    python bench/run_all.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine, pct  # noqa: E402


def run(argv: list[str], timeout: float) -> tuple[int, str]:
    print(f"\n$ {' '.join(argv)}", flush=True)
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, *argv], cwd=HERE.parent, capture_output=True, text=True, timeout=timeout)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as exc:
        out, rc = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or ""), -1
        out += f"\n(timed out after {timeout:.0f} s)"
    print(out.rstrip())
    print(f"(exit {rc}, {time.monotonic() - t0:.0f} s)", flush=True)
    return rc, out


def fmt(v, unit="ms"):
    return "—" if v is None or v != v else f"{v:.1f} {unit}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    ap.add_argument("--full", action="store_true",
                    help="the issue's sizes: 200 emulated boards (needs ~20 cores: an emulated board with the real firmware idles at ~10 %% of a core)")
    args = ap.parse_args()
    q = args.quick
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
        fj, cj, sj = Path(tmp) / "fleet.json", Path(tmp) / "cap.json", Path(tmp) / "snap.json"
        # on 2 cores 50 boards is the most the emulator can keep online (see docs/BENCHMARKS.md)
        sizes, storm, pending = ("1,10", "10", "5") if q else ("1,50,200", "200", "50") if args.full else ("1,20,50", "50", "20")
        run(["bench/bench_fleet.py", "--sizes", sizes, "--samples", "10" if q else "200" if args.full else "40",
             "--storm", storm, "--pending", pending, "--json", str(fj)], 1800 if args.full else 900)
        run(["bench/bench_snapshot.py", "--terminals", "1000" if q else "5000", "--json", str(sj)], 300)
        # each step then the same load on Mosquitto (--mqtt), interleaved; 20,000 only with --full
        steps = "300" if q else "1000,5000,20000" if args.full else "1000,5000"
        run(["bench/bench_capacity.py", "--steps", steps, "--window", "8" if q else "40",
             "--probes", "40" if q else "300", "--mqtt", "--json", str(cj)], 2400)
        run(["bench/bench_firmware_memory.py"], 600)
        fed_json = Path(tmp) / "federation.json"
        run(["bench/bench_federation.py", "--events", "10" if q else "100", "--samples", "30" if q else "200",
             "--failovers", "1" if q else "3", "--json", str(fed_json)], 1200)
        fleet = json.loads(fj.read_text()) if fj.exists() else {"latency": [], "storm": None}
        cap = json.loads(cj.read_text()) if cj.exists() else []
        snap = json.loads(sj.read_text()) if sj.exists() else None
        fed = json.loads(fed_json.read_text()) if fed_json.exists() else {}
    for r in fleet["latency"]:
        lamp = r["lamp"]
        target = "≤ 20 ms p99 (200 boards)" if r["boards"] == 200 else ""
        rows.append((f"call latency, {r['boards']} emulated boards (lamp → console)", f"p50 {fmt(pct(lamp, 50))}, p99 {fmt(pct(lamp, 99))}, max {fmt(max(lamp) if lamp else None)} (n={len(lamp)}; boards' CPU {r.get('boards_cpu_pct', float('nan')):.0f} %)", target,
                     ("met" if pct(lamp, 99) <= 20 else "NOT met") if target else ""))
        pr = r["press"]
        rows.append((f"call latency, {r['boards']} emulated boards (press → console)", f"p50 {fmt(pct(pr, 50))}, p99 {fmt(pct(pr, 99))}, max {fmt(max(pr) if pr else None)}", "(includes 30 ms debounce)", ""))
    s = fleet.get("storm")
    if s:
        rows.append((f"reconnect storm, {s['boards']} boards, {s['pending']} pending calls",
                     f"all back {s['all_back_s']:.1f} s, calls {s['all_calls_s']:.1f} s, missing {len(s['missing'])}, dup {s['duplicates']}",
                     "≤ 10 s", "met" if s["all_calls_s"] <= 10 and not s["missing"] and not s["duplicates"] else "NOT met"))
    if snap:
        build = sorted(snap["build_s"])[len(snap["build_s"]) // 2] * 1000
        turn = max(snap["build_turns_s"] + snap["longest_turn_s"]) * 1000
        rows.append((f"console snapshot, {snap['terminals']} terminals", f"built in {build:.1f} ms (median), longest loop turn {turn:.1f} ms",
                     "≤ 20 ms" if snap["terminals"] == 5000 else "", ("met" if build <= 20 else "NOT met") if snap["terminals"] == 5000 else ""))
    for r in cap:
        n, p99 = r["terminals"], pct(r["sse"], 99)
        if n == 20000:
            target, ok = "all online, p99 ≤ 50 ms", p99 <= 50 and r["online_at_end"] == n
        elif n == 5000:
            target, ok = "p99 ≤ 10 ms, CPU ≤ 25 %", p99 <= 10 and r["host_cpu_pct"] <= 25 and r["online_at_end"] == n
        else:
            target, ok = "", True
        rows.append((f"host capacity, {n} simulated terminals @1 Hz",
                     f"host CPU {r['host_cpu_pct']:.0f} %, online {r['online_at_end']}, CALL→console p99 {fmt(p99)}, max {fmt(max(r['sse']) if r['sse'] else None)}",
                     target, ("met" if ok else "NOT met") if target else ""))
        if n == 5000:
            rows.append((f"loop stall, {n} terminals, console connecting + reconnect storm",
                         f"loop lag max {r['loop_lag_max_ms']:.1f} ms (steady {r['steady_lag_max_ms']:.1f} ms), longest GC {r['gc_pause_max_ms']:.1f} ms",
                         "no stall > 10 ms", "met" if r["loop_lag_max_ms"] <= 10 else "NOT met"))
        m = r.get("mqtt")
        if m and m["sub"]:
            rows.append((f"  Mosquitto, {n} MQTT clients @1 Hz", f"broker CPU {m['broker_cpu_pct']:.1f} %, call→subscriber p99 {fmt(pct(m['sub'], 99))}; "
                         f"wardcall/Mosquitto p99 {p99 / pct(m['sub'], 99):.1f}x, CPU {r['host_cpu_pct'] / max(m['broker_cpu_pct'], 0.01):.1f}x",
                         "(comparison)", ""))
    if fed.get("intake"):
        r = fed["intake"]
        rows.append((f"hub intake, {r['wards']} wards × {r['terminals']} terminals", f"{r['hub_events_per_s']:.0f} events/s "
                     f"({r['events']} events)", "", ""))
        for name, values in fed["ward_cost"].items():
            rows.append((f"CALL→CALL_ACK, {name}", f"p50 {fmt(pct(values, 50))}, p99 {fmt(pct(values, 99))}", "", ""))
        lat = fed["latency"]
        rows.append(("ward → hospital console", f"p50 {fmt(pct(lat, 50))}, p99 {fmt(pct(lat, 99))}", "", ""))
        for i, r in enumerate(fed.get("failover", [])):
            rows.append((f"failover {i + 1} ({r['calls']} open calls)", f"serving {r['serving_s']:.2f} s, calls back "
                         f"{r['back_s']:.2f} s, lost {r['lost']}, doubled {r['doubled']}", "none lost or doubled",
                         "met" if not r["lost"] and not r["doubled"] else "NOT met"))
    print("\n" + "=" * 100)
    print(f"machine: {machine()}")
    w = max(len(r[0]) for r in rows) if rows else 10
    print(f"{'benchmark':<{w}}  {'measured':<62}  {'target':<26}  result")
    for name, measured, target, res in rows:
        print(f"{name:<{w}}  {measured:<62}  {target:<26}  {res}")
    print("firmware memory: see the bench_firmware_memory.py output above (heap after gc.collect() per stage)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
