#!/usr/bin/env python3
"""Call latency and reconnect storm with emulated boards running the real firmware against the
real host (`wardcall serve`), heartbeat 1 s.

Call latency: a call button is pressed (the emulator's control channel closes the contact) on
one board at a time while the others heartbeat; measured until that call's first event arrives
on a logged-in console's SSE stream (/api/events). Two figures per sample:
  press -> console   from just before the press request to the SSE event (an upper bound: it
                     includes the control request and the firmware's 30 ms debounce);
  lamp -> console    from the reassurance lamp lighting (the firmware has taken the press; the
                     emulator timestamps outputs with the same monotonic clock) to the SSE event:
                     the firmware's flash write, the radio, the host's commit and the console.
Reconnect storm: with every board online, the host is SIGKILLed; while it is down `--pending`
boards get a call (kept in their outbox); the host is started again; measured until every
board is connected again and every pending call is on the console.

    python bench/bench_fleet.py [--sizes 1,50,200] [--samples 60] [--storm 200] [--pending 50]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Console, Server, cpu_seconds, descendants_cpu_seconds, machine, summary, wakeups, write_ward  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
from boards.emulator.fleet import Fleet  # noqa: E402
from tests.fixtures.ward import firmware_files  # noqa: E402

RELEASE_GAP_S = 0.15    # a person's gap between presses (the firmware debounces 30 ms)


def start_fleet(work: Path, devices: list[dict]):
    fleet = Fleet.start(work / "fleet")
    boards = []
    for dev in devices:
        boards.append(fleet.add_board(dev["device_id"], flash_dir=work / "flash" / dev["device_id"],
                                      files=firmware_files(dev)))
    return fleet, boards


def wait_connected(console: Console, devices: list[str], timeout: float) -> float:
    t0 = time.monotonic()
    want = set(devices)
    while time.monotonic() - t0 < timeout:
        st = console.state()
        up = {t["device"] for t in st.get("terminals", []) if t.get("connected")}
        if want <= up:
            return time.monotonic() - t0
        time.sleep(0.1)
    raise RuntimeError(f"{len(want - up)} of {len(want)} terminals not connected after {timeout} s")


def placed_id(board, mark: int, timeout: float = 5.0) -> int:
    import re
    text = board.wait_console("call ", timeout, since=mark)
    m = re.search(r"(\w+) call (\d+) placed", board.console(since=mark))
    if not m:
        text = board.wait_console("placed", timeout, since=mark)
        m = re.search(r"(\w+) call (\d+) placed", text)
    return int(m.group(2))


def human(board, pin: str, taken: str) -> None:
    from tests.faults.helpers import human_press
    human_press(board, pin, taken)


def idle_boards(boards, seconds: float) -> tuple[float, float]:
    """Per cent of a core each emulated board's interpreter takes while online and idle, and
    its wake-ups a second, means over the boards (their own processes: the supervisor is not
    in it)."""
    pids = [b.state()["pid"] for b in boards]
    cpu0, woken0, t0 = [cpu_seconds(p) for p in pids], [wakeups(p) for p in pids], time.monotonic()
    time.sleep(seconds)           # the measurement window itself, not a wait for something
    cpu1, woken1, t1 = [cpu_seconds(p) for p in pids], [wakeups(p) for p in pids], time.monotonic()
    n, span = len(pids), t1 - t0
    return (sum(a - b for a, b in zip(cpu1, cpu0)) / n / span * 100,
            sum(a - b for a, b in zip(woken1, woken0)) / n / span)


def latency_run(n: int, samples: int, work: Path, heap_cycle: bool = False, keep: bool = False, tls: str = "tls",
                idle_s: float = 0.0):
    cfg, devices = write_ward(work / f"ward{n}", n, tls=tls)
    server = Server(cfg)
    server.start()
    fleet, boards = start_fleet(work / f"f{n}", devices)
    console = Console(server.api_url)
    result = {"boards": n}
    try:
        t_online = wait_connected(console, [d["device_id"] for d in devices], 60 + n)
        result["online_s"] = t_online
        time.sleep(3)           # let the boards finish booting (compiling lib/ costs CPU)
        if idle_s:
            result["idle_board_cpu_pct"], result["idle_board_wakeups"] = idle_boards(boards, idle_s)
        heap = []
        if heap_cycle:
            heap.append(("online", boards[0].heap(2)))
        press_ms, lamp_ms = [], []
        cpu0, w0 = cpu_seconds(server.proc.pid), time.monotonic()
        boards0 = descendants_cpu_seconds(os.getpid(), {server.proc.pid})
        for k in range(samples):
            i = (k * 7) % n
            b, dev = boards[i], devices[i]["device_id"]
            mark = b.console_mark()
            t0 = time.monotonic()
            b.press("call")
            cid = placed_id(b, mark)
            b.release("call")
            t1 = console.wait((dev, cid), 10)
            if t1 is None:
                raise RuntimeError(f"{dev} call {cid} never reached the console")
            lit = [t for t, v in b.history("lamp_reassure", since=t0) if v]
            press_ms.append((t1 - t0) * 1000)
            if lit:
                lamp_ms.append((t1 - lit[0]) * 1000)
            if heap_cycle and k == 0:
                heap.append(("call on the console", b.heap(2)))
            time.sleep(RELEASE_GAP_S)
            # one presence press clears it (the firmware clears patient and staff-assist calls
            # whether the press turns presence on or off; with presence on, the next press of
            # the call button places a staff-assist call, which is as good a sample)
            human(b, "presence", "presence o")
            if heap_cycle and k == 0:
                heap.append(("cancelled", b.heap(2)))
        result["host_cpu_pct"] = (cpu_seconds(server.proc.pid) - cpu0) / (time.monotonic() - w0) * 100
        # the emulated boards (and their supervisor) share the machine with the host
        result["boards_cpu_pct"] = (descendants_cpu_seconds(os.getpid(), {server.proc.pid}) - boards0) / (time.monotonic() - w0) * 100
        result["press"] = press_ms
        result["lamp"] = lamp_ms
        result["heap"] = heap
        if keep:
            result["_rig"] = (server, fleet, boards, console, devices)
            return result
    except BaseException:
        keep = False
        raise
    finally:
        if not keep:
            console.close()
            fleet.stop()
            server.stop()
    return result


def storm(rig, pending: int) -> dict:
    server, fleet, boards, console, devices = rig
    names = [d["device_id"] for d in devices]
    server.kill()
    console.close()
    calls = []
    for i in range(0, len(boards), max(1, len(boards) // pending))[:pending]:
        b = boards[i]
        mark = b.console_mark()
        b.press("assist")
        calls.append((names[i], placed_id(b, mark)))
        b.release("assist")
    t0 = time.monotonic()
    ready = server.start()
    console = Console(server.api_url)
    try:
        wait_connected(console, names, 120)
        t_back = time.monotonic() - t0
        cpu_back = cpu_seconds(server.proc.pid)     # the new host's CPU: its start and the storm
        # the console connected after the restart: a call may be in its snapshot, not an event
        deadline = time.monotonic() + 120
        while True:
            st = console.state()
            have = {(c["device"], c["call_id"]) for c in st["calls"]}
            missing = [k for k in calls if k not in have]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        t_calls = time.monotonic() - t0
        dup = len(st["calls"]) - len(have)
        return {"boards": len(boards), "pending": len(calls), "ready_s": ready, "all_back_s": t_back,
                "all_calls_s": t_calls, "missing": missing, "duplicates": dup, "host_cpu_s": cpu_back}
    finally:
        console.close()
        fleet.stop()
        server.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,50,200")
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--storm", type=int, default=200, help="boards in the reconnect storm (0: skip)")
    ap.add_argument("--pending", type=int, default=50)
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--idle", type=float, default=0.0, help="seconds of idle CPU measurement per size (0: skip)")
    ap.add_argument("--plain", action="store_true", help="the terminals' link in plain TCP instead of TLS")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x]
    print(f"machine: {machine()}")
    results = {"latency": [], "storm": None}
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        work = Path(tmp)
        for n in sizes:
            keep = args.storm and n == args.storm
            r = latency_run(n, max(args.samples, 1), work, heap_cycle=False, keep=keep,
                            tls="plain" if args.plain else "tls", idle_s=args.idle)
            rig = r.pop("_rig", None)
            print(f"call latency, {n:4d} boards (online after {r['online_s']:.1f} s, host CPU {r['host_cpu_pct']:.1f} % of a core, "
                  f"the boards' {r.get('boards_cpu_pct', float('nan')):.0f} %):")
            print(f"    press -> console  {summary(r['press'])}")
            print(f"    lamp  -> console  {summary(r['lamp'])}")
            if "idle_board_cpu_pct" in r:
                print(f"    idle, online: {r['idle_board_cpu_pct']:.2f} % of a core and {r['idle_board_wakeups']:.0f} wake-ups a second "
                      f"per board ({args.idle:g} s)")
            for stage, h in r["heap"]:
                if h:
                    print(f"    heap on the emulated board, {stage}: alloc {h['alloc']} free {h['free']} (heap {h.get('heapsize')})")
            results["latency"].append(r)
            if rig is not None:
                s = storm(rig, args.pending)
                results["storm"] = s
                print(f"reconnect storm, {s['boards']} boards, {s['pending']} calls pending: host ready {s['ready_s']:.2f} s; "
                      f"all boards back {s['all_back_s']:.2f} s and all pending calls on the console {s['all_calls_s']:.2f} s "
                      f"after the restart began; missing {len(s['missing'])}, duplicates {s['duplicates']}")
        if args.storm and args.storm not in sizes:
            r = latency_run(args.storm, 1, work, keep=True)
            s = storm(r.pop("_rig"), args.pending)
            results["storm"] = s
            print(f"reconnect storm, {s['boards']} boards: all back {s['all_back_s']:.2f} s, calls {s['all_calls_s']:.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
