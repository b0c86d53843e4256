#!/usr/bin/env python3
"""A console snapshot of a large ward, in process: Ward.snapshot() (the view a console gets
first, built in one turn of the loop) and its JSON as the host sends it (web/ward_routes.py
json_in_turns: the long lists a chunk per turn), timed over repeats, with the longest single
turn of the encoding. Every terminal online, presence on in a tenth of the rooms, 50 open calls.

    python bench/bench_snapshot.py [--terminals 5000] [--repeats 30]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from wardcall.clock import ManualClock  # noqa: E402
from wardcall.config import parse_config  # noqa: E402
from wardcall.protocol import wardproto as wp  # noqa: E402
from wardcall.ward import Ward  # noqa: E402
from wardcall.hub import STATE_CHUNK  # noqa: E402
from wardcall.web import ward_routes  # noqa: E402


def big_ward(n: int) -> Ward:
    rooms = {str(1000 + r): {"beds": ["1", "2"]} for r in range((n + 1) // 2)}
    terms = {f"bed-{1000 + i // 2}-{1 + i % 2}": {"room": str(1000 + i // 2), "bed": str(1 + i % 2)} for i in range(n)}
    config = parse_config(ROOT / "bench-ward.toml", {"ward": {"name": "Bench"}, "timing": {"heartbeat_ms": 1000},
                                                    "rooms": rooms, "terminals": terms})
    ward = Ward(config, ManualClock())
    for i, device in enumerate(ward.terminals):
        ward.terminal_connected(device, "fw", "bench", 0, "127.0.0.1:1")
        if i % 20 == 0:
            ward.presence(device, True, "")
        if i % 100 == 50:
            ward.place_call(device, i, wp.PATIENT, age_ms=0)
    return ward


async def encode_timed(snapshot: dict) -> tuple[float, float, int]:
    """(total s, longest turn s, bytes) of json_in_turns."""
    loop = asyncio.get_running_loop()
    longest, last = 0.0, time.perf_counter()
    stop = False

    def turn():
        nonlocal longest, last
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
        if not stop:
            loop.call_soon(turn)
    loop.call_soon(turn)
    t0 = time.perf_counter()
    text = await ward_routes.json_in_turns(snapshot)
    total = time.perf_counter() - t0
    stop = True
    return total, longest, len(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--terminals", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    ward = big_ward(args.terminals)
    gc.collect()
    gc.freeze()         # as the host does once started (server.py settle_collector)
    builds, encodes, turns = [], [], []
    size = 0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        snapshot = {"seq": 1, **ward.snapshot()}
        builds.append(time.perf_counter() - t0)
        total, longest, size = asyncio.run(encode_timed(snapshot))
        encodes.append(total)
        turns.append(longest)
    # the host builds the terminals and rooms STATE_CHUNK per loop turn (hub.state_in_turns)
    chunk_turns = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ward.snapshot(large=False)
        chunk_turns.append(time.perf_counter() - t0)
        order = ward.terminal_order
        for start in range(0, len(order), STATE_CHUNK):
            t0 = time.perf_counter()
            [ward.terminal_view(t) for t in order[start:start + STATE_CHUNK]]
            chunk_turns.append(time.perf_counter() - t0)
        rooms = list(ward.config.rooms)
        for start in range(0, len(rooms), STATE_CHUNK):
            t0 = time.perf_counter()
            [ward.room_view(r) for r in rooms[start:start + STATE_CHUNK]]
            chunk_turns.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    json.dumps(snapshot, separators=(",", ":"))
    one_go = time.perf_counter() - t0
    ms = lambda v: f"{v * 1000:.1f} ms"  # noqa: E731
    print(f"snapshot of {args.terminals} terminals, {len(ward.config.rooms)} rooms, {len(ward.calls)} calls ({size / 1e6:.2f} MB of JSON):")
    print(f"  built in    median {ms(statistics.median(builds))}, min {ms(min(builds))}, max {ms(max(builds))}  (target ≤ 20 ms)")
    print(f"  in turns    {STATE_CHUNK} terminals or rooms a turn: longest turn median "
          f"{ms(statistics.median(sorted(chunk_turns)[-args.repeats:]))}, max {ms(max(chunk_turns))}")
    print(f"  JSON        median {ms(statistics.median(encodes))} in turns, longest turn median {ms(statistics.median(turns))}, "
          f"max {ms(max(turns))}; in one go {ms(one_go)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"terminals": args.terminals, "build_s": builds, "encode_s": encodes,
                                               "longest_turn_s": turns, "build_turns_s": chunk_turns, "one_go_s": one_go, "bytes": size}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
