#!/usr/bin/env python3
"""The Mosquitto comparison: the same number of clients heartbeating at 1 Hz against Debian's
Mosquitto (installed with apt-get when missing), and probe calls: a probe client publishes a
call (QoS 1, like a CALL that waits for its CALL_ACK) to ward/<device>/call; measured to its
PUBACK and to its arrival at a subscriber of ward/+/call (the broker's "console"). The broker's
CPU is read from /proc like the host's.

Not like for like, and said so in docs/BENCHMARKS.md: the broker only routes. It checks no MAC,
commits nothing to disk before the PUBACK, runs no ward state (escalation, supervision, alarms),
sends the clients nothing back (the host sends every terminal a heartbeat a second), and is C.

    python bench/bench_mqtt.py [--clients 5000] [--window 20] [--probes 150]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_seconds, free_port, machine, raise_nofile, summary  # noqa: E402

HERE = Path(__file__).resolve().parent


def ensure_mosquitto() -> str:
    path = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if path:
        return path
    print("installing Debian's mosquitto for the comparison", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "mosquitto"], check=True, env=env, stdout=subprocess.DEVNULL)
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def mosquitto_version(binary: str) -> str:
    out = subprocess.run([binary, "-h"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "?"


async def probe(port: int, n: int, gap: float) -> tuple[list[float], list[float], int]:
    import aiomqtt
    puback, sub_ms, failures = [], [], 0
    arrived: dict[int, float] = {}
    waiters: dict[int, asyncio.Future] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier="console", timeout=30) as console, \
            aiomqtt.Client("127.0.0.1", port, identifier="probe-terminal", timeout=30) as term:
        await console.subscribe("ward/+/call", qos=1)

        async def listen():
            async for message in console.messages:
                seq = json.loads(message.payload)["seq"]
                arrived[seq] = time.monotonic()
                fut = waiters.pop(seq, None)
                if fut is not None and not fut.done():
                    fut.set_result(None)
        listener = asyncio.ensure_future(listen())
        try:
            for seq in range(n):
                fut = asyncio.get_running_loop().create_future()
                waiters[seq] = fut
                t0 = time.monotonic()
                try:
                    await term.publish("ward/probe/call", json.dumps({"seq": seq, "kind": "patient"}), qos=1, timeout=10)
                except aiomqtt.MqttError:
                    failures += 1
                    continue
                puback.append((time.monotonic() - t0) * 1000)
                try:
                    await asyncio.wait_for(fut, 5)
                    sub_ms.append((arrived[seq] - t0) * 1000)
                except asyncio.TimeoutError:
                    failures += 1
                await asyncio.sleep(gap)
        finally:
            listener.cancel()
    return puback, sub_ms, failures


def step(work: Path, n: int, window: float, probes: int) -> dict:
    binary = ensure_mosquitto()
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\n"
                    "log_dest none\nmax_queued_messages 10000\n")
    broker = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              preexec_fn=lambda: raise_nofile(n + 1000))
    gen = None
    try:
        time.sleep(0.5)
        if broker.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {broker.stderr.read().decode()[-500:]}")
        t0 = time.monotonic()
        gen = subprocess.Popen([sys.executable, str(HERE / "mqtt_loadgen.py"), str(n), str(port)], stdout=subprocess.PIPE,
                               text=True, preexec_fn=lambda: raise_nofile(n + 1000))
        line = gen.stdout.readline()
        while line.startswith("stats"):         # still connecting
            line = gen.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"mqtt loadgen: {line!r}")
        connected, t_conn = int(line.split()[1]), time.monotonic() - t0
        time.sleep(3)
        c0, g0, w0 = cpu_seconds(broker.pid), cpu_seconds(gen.pid), time.monotonic()
        puback, sub, failures = asyncio.run(probe(port, probes, max(0.0, window / probes - 0.005)))
        w = time.monotonic() - w0
        return {"clients": n, "connected": connected, "connect_s": t_conn, "version": mosquitto_version(binary),
                "broker_cpu_pct": (cpu_seconds(broker.pid) - c0) / w * 100,
                "loadgen_cpu_pct": (cpu_seconds(gen.pid) - g0) / w * 100, "window_s": w,
                "puback": puback, "sub": sub, "failures": failures, "load_average": os.getloadavg()[0]}
    finally:
        if gen is not None:
            gen.kill()
            gen.wait(10)
        broker.terminate()
        try:
            broker.wait(10)
        except subprocess.TimeoutExpired:
            broker.kill()


def report(m: dict) -> None:
    print(f"{m['clients']:5d} MQTT clients at 1 Hz on {m['version']}: connected {m['connected']} in {m['connect_s']:.1f} s; "
          f"broker CPU {m['broker_cpu_pct']:.1f} % of one core, client load CPU {m['loadgen_cpu_pct']:.0f} %")
    print(f"      call (QoS 1) -> PUBACK      {summary(m['puback'])}")
    print(f"      call (QoS 1) -> subscriber  {summary(m['sub'])}; {m['failures']} failure(s)", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="5000")
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--probes", type=int, default=150)
    args = ap.parse_args(argv)
    raise_nofile(50000)
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        for n in [int(x) for x in args.clients.split(",") if x]:
            report(step(Path(tmp) / str(n), n, args.window, args.probes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
