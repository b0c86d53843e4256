#!/usr/bin/env python3
"""MQTT clients for the Mosquitto comparison (bench/bench_mqtt.py): N aiomqtt clients in one
asyncio process, each connected to the broker with its own id and publishing a heartbeat
(QoS 0, ~40 bytes, like a terminal's HEARTBEAT) to ward/<device>/heartbeat every hb_ms, start
times spread over one interval.

    python bench/mqtt_loadgen.py N PORT [--hb-ms 1000] [--ramp 2000]   (prints "ready N", runs until killed)
"""
import argparse
import asyncio
import json
import random
import time

import aiomqtt


async def client(i: int, port: int, hb_ms: int, ready, stats) -> None:
    device = f"bed-{i}"
    for _ in range(40):
        try:
            async with aiomqtt.Client("127.0.0.1", port, identifier=device, keepalive=60, timeout=30) as c:
                ready()
                await asyncio.sleep(random.random() * hb_ms / 1000)
                started = time.monotonic()
                while True:
                    await c.publish(f"ward/{device}/heartbeat", json.dumps({"uptime": int(time.monotonic() - started)}), qos=0)
                    stats["tx"] += 1
                    await asyncio.sleep(hb_ms / 1000)
        except aiomqtt.MqttError:
            stats["lost"] += 1
            await asyncio.sleep(0.5 + random.random())
    stats["failed"] += 1
    ready()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("port", type=int)
    ap.add_argument("--hb-ms", type=int, default=1000)
    ap.add_argument("--ramp", type=float, default=2000)
    args = ap.parse_args()
    stats = {"tx": 0, "lost": 0, "failed": 0}
    done = 0
    announced = False

    def ready():
        nonlocal done, announced
        done += 1
        if done >= args.n and not announced:
            announced = True
            print(f"ready {args.n - stats['failed']}", flush=True)
    tasks = []
    for i in range(args.n):
        tasks.append(asyncio.ensure_future(client(i, args.port, args.hb_ms, ready, stats)))
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
