#!/usr/bin/env python3
"""Lean simulated terminals for the capacity benchmark: one asyncio process holding N sessions
with the real protocol (wardproto.Session, each device's real key), a HEARTBEAT every hb_ms per
terminal (start times spread over one interval). Frames from the host are read and framed
(read_frame) but only a terminal's first frame (WELCOME) is verified: verifying every host
heartbeat would double this process's CPU, which shares the machine with the host being measured.
Over TLS when the devices' config carries a "tls" entry (a ward with [tls] terminals = "tls", the
default), verifying the host's certificate against the ward's CA as a terminal does.

SIGUSR1 is a reconnect storm: every session is closed at once and connects again (at --ramp a
second); "storm N S" is printed when all N are back, S seconds later.

    python bench/loadgen.py DEVICES.json PORT [--ramp 2000]   (prints "ready N" then runs until killed)
"""
import argparse
import asyncio
import json
import random
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from wardcall.protocol import wardproto as wp  # noqa: E402
from tests.support.simterm import tls_context  # noqa: E402  # a config.json "tls" entry as a terminal reads it


class Fleet:
    def __init__(self, devices, port, hb_ms, ramp):
        self.devices, self.port, self.hb_ms, self.ramp = devices, port, hb_ms, ramp
        self.stats = {"tx": 0, "rx": 0, "lost": 0, "failed": 0, "reconnects": 0}
        self.writers = {}
        self.up = set()     # devices that have come up (since the start or the storm)
        self.first = asyncio.Event()
        self.storm_started = None
        self.gate = asyncio.Semaphore(200)      # connections being set up at once
        self.tls, self.tls_name = tls_context(devices[0].get("tls", "plain"))

    async def connect(self, dev):
        key = wp.key_from_hex(dev["key"])
        for _ in range(40):
            try:
                async with self.gate:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port, ssl=self.tls,
                                                                   server_hostname=self.tls_name)
                    s = wp.Session(key, False)
                    # CAP_HOST_BEAT as the firmware: the host then beats every host_heartbeat_every periods
                    writer.write(s.hello(dev["device_id"], "loadgen-1", "loadgen", wp.CAP_HOST_BEAT,
                                         dev["device_id"].encode()[-32:]))
                    s.accept_welcome(await asyncio.wait_for(wp.read_frame(reader), 30))
                return reader, writer, s
            except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.TimeoutError, wp.ProtocolError):
                await asyncio.sleep(0.5 + random.random())
        return None

    def came_up(self, device):
        # each device once: one that lost its session and came back is not counted twice
        if device in self.up:
            return
        self.up.add(device)
        if len(self.up) == len(self.devices):
            if self.storm_started is None:
                print(f"ready {len(self.devices) - self.stats['failed']}", flush=True)
            else:
                print(f"storm {len(self.up)} {time.monotonic() - self.storm_started:.2f}", flush=True)
                self.storm_started = None

    async def terminal(self, dev):
        started = time.monotonic()
        while True:
            link = await self.connect(dev)
            if link is None:
                self.stats["failed"] += 1
                self.came_up(dev["device_id"])
                return
            reader, writer, s = link
            self.writers[dev["device_id"]] = writer
            self.came_up(dev["device_id"])
            drain = asyncio.ensure_future(self.drain(reader))
            await asyncio.sleep(random.random() * self.hb_ms / 1000)
            try:
                while not drain.done():
                    writer.write(s.encode(wp.HEARTBEAT, {"status": 0, "pending": 0, "uptime": int(time.monotonic() - started)}))
                    self.stats["tx"] += 1
                    await asyncio.sleep(self.hb_ms / 1000)
            except ConnectionError:
                pass
            drain.cancel()
            self.stats["lost"] += 1
            writer.close()
            self.stats["reconnects"] += 1

    async def drain(self, reader):
        """What the host sends (its heartbeats): framed, not verified."""
        try:
            while True:
                await wp.read_frame(reader)
                self.stats["rx"] += 1
        except (EOFError, asyncio.IncompleteReadError, ConnectionError, wp.ProtocolError):
            pass

    def storm(self):
        """Every connection closed at once; each terminal connects again."""
        self.storm_started = time.monotonic()
        self.up = set()
        for writer in list(self.writers.values()):
            writer.transport.abort()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("devices")
    ap.add_argument("port", type=int)
    ap.add_argument("--hb-ms", type=int, default=1000)
    ap.add_argument("--ramp", type=float, default=2000, help="new connections per second")
    args = ap.parse_args()
    devices = json.loads(Path(args.devices).read_text())
    fleet = Fleet(devices, args.port, args.hb_ms, args.ramp)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, fleet.storm)
    tasks = []
    for i, dev in enumerate(devices):
        tasks.append(asyncio.ensure_future(fleet.terminal(dev)))
        if i % 50 == 49:
            await asyncio.sleep(50 / args.ramp)
    while True:
        await asyncio.sleep(5)
        print(f"stats {json.dumps(fleet.stats)}", flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
