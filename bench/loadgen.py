#!/usr/bin/env python3
"""Lean simulated terminals for the capacity benchmark: one asyncio process holding N sessions
with the real protocol (wardproto.Session, each device's real key), a HEARTBEAT every hb_ms per
terminal (start times spread over one interval). Frames from the host are read and framed
(read_frame) but only a terminal's first frame (WELCOME) is verified: verifying every host
heartbeat would double this process's CPU, which shares the machine with the host being measured.

    python bench/loadgen.py DEVICES.json PORT [--ramp 2000]   (prints "ready N" then runs until killed)
"""
import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))
from wardcall.protocol import wardproto as wp  # noqa: E402


async def terminal(dev, port, hb_ms, ready, stats):
    key = wp.key_from_hex(dev["key"])
    for attempt in range(20):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            s = wp.Session(key, False)
            writer.write(s.hello(dev["device_id"], "loadgen-1", "loadgen", 0, dev["device_id"].encode()[-32:]))
            s.accept_welcome(await asyncio.wait_for(wp.read_frame(reader), 30))
            break
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.TimeoutError, wp.ProtocolError):
            await asyncio.sleep(0.5 + random.random())
    else:
        stats["failed"] += 1
        ready()
        return
    ready()

    async def drain():
        try:
            while True:
                await wp.read_frame(reader)
                stats["rx"] += 1
        except (EOFError, asyncio.IncompleteReadError, ConnectionError, wp.ProtocolError):
            stats["lost"] += 1
    task = asyncio.ensure_future(drain())
    await asyncio.sleep(random.random() * hb_ms / 1000)
    started = time.monotonic()
    try:
        while not task.done():
            writer.write(s.encode(wp.HEARTBEAT, {"status": 0, "pending": 0, "uptime": int(time.monotonic() - started)}))
            stats["tx"] += 1
            await asyncio.sleep(hb_ms / 1000)
    except ConnectionError:
        stats["lost"] += 1


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("devices")
    ap.add_argument("port", type=int)
    ap.add_argument("--hb-ms", type=int, default=1000)
    ap.add_argument("--ramp", type=float, default=2000, help="new connections per second")
    args = ap.parse_args()
    devices = json.loads(Path(args.devices).read_text())
    stats = {"tx": 0, "rx": 0, "lost": 0, "failed": 0}
    done = 0

    def ready():
        nonlocal done
        done += 1
        if done == len(devices):
            print(f"ready {len(devices) - stats['failed']}", flush=True)
    tasks = []
    for i, dev in enumerate(devices):
        tasks.append(asyncio.ensure_future(terminal(dev, args.port, args.hb_ms, ready, stats)))
        if i % 50 == 49:
            await asyncio.sleep(50 / args.ramp)
    while True:
        await asyncio.sleep(5)
        print(f"stats {json.dumps(stats)}", flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
