#!/usr/bin/env python3
"""The hospital over NATS JetStream (docs/FEDERATION.md), on real nats-server processes:

  intake     events per second the hub takes from W wards of T terminals each: every ward's
             stream on its own leaf node is filled first (E events per terminal, call events of
             the real size), then the hub's hospital stream is given the W sources and timed
             until it holds them all (the hub's JetStream fetching across the leaf links)
  ward cost  a terminal's CALL → CALL_ACK on a real `wardcall serve`: without [federation], with
             it, and with its leaf node stopped (publishing must never slow the ward)
  latency    a CALL on a ward → the call on the hospital console's event stream (a real
             `wardcall hospital`), p50 and p99
  failover   a primary `wardcall serve` with open calls on T terminals is killed (SIGKILL); a
             `wardcall standby` takes over; the terminals connect to it and announce their
             calls again: the time from the kill to the standby serving and to every call
             back on its board, and how many calls were lost or doubled

    python bench/bench_federation.py [--wards 20 --terminals 50 --events 100] [--samples 100] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import ROOT, NURSE, Server, machine, pct, write_ward  # noqa: E402

import aiohttp  # noqa: E402
import nats  # noqa: E402
from nats.js.api import StorageType, StreamConfig  # noqa: E402

from tests.support.simterm import SimTerminal  # noqa: E402
from wardcall.client import WardApi, sse_messages  # noqa: E402
from wardcall.federation.hubstream import hospital_stream_config  # noqa: E402
from wardcall.federation.natsconf import HubNode, LeafNode, NatsServer, free_port  # noqa: E402
from wardcall.federation.subjects import HOSPITAL_STREAM, events_subject, ward_stream  # noqa: E402
from wardcall.passwords import hash_password  # noqa: E402
from wardcall.protocol import wardproto  # noqa: E402

assert ROOT


def start_hub(root: Path) -> NatsServer:
    node = HubNode("hub-1", root / "hub-1", free_port(), free_port(), free_port())
    return NatsServer(node, root / "hub-1.conf", root / "hub-1.log").start()


def start_leaf(root: Path, hub: NatsServer, ward: str) -> NatsServer:
    node = LeafNode(ward, root / f"leaf-{ward}", free_port(), free_port(), (f"nats://127.0.0.1:{hub.node.leaf_port}",))
    return NatsServer(node, root / f"leaf-{ward}.conf", root / f"leaf-{ward}.log").start()


def call_event(ward: str, seq: int, device: str, call_id: int) -> bytes:
    """An event as the ward's publisher writes it (the same keys, the same size)."""
    view = {"id": seq, "device": device, "call_id": call_id, "kind": 4, "kind_name": "patient", "priority": 4,
            "alarm_priority": "low", "room": device.split("-")[1], "bed": "1", "state": "placed",
            "placed_at": time.time(), "received_at": time.time(), "alerted_at": time.time(), "acknowledged_at": None,
            "acknowledged_by": None, "attended_at": None, "attended_by": None, "cleared_at": None, "cleared_reason": None,
            "escalation": 0, "realerts": 0, "hwid": "a1b2c3d4e5f6", "terminal_status": "online", "recorded": True,
            "route": {"step": 0, "step_name": "primary", "to": ["anna"], "notified": [], "ended": None}}
    return json.dumps({"ward": ward, "ward_name": f"Ward {ward}", "run": "bench", "seq": seq, "kind": "call_placed",
                       "wall": time.time(), "user": None, "call": view}, separators=(",", ":")).encode()


async def fill_ward(url: str, ward: str, terminals: int, per_terminal: int) -> int:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=ward_stream(ward), subjects=[events_subject(ward)], storage=StorageType.FILE))
    seq = 0
    batch = []
    for n in range(per_terminal):
        for t in range(terminals):
            seq += 1
            batch.append(js.publish(events_subject(ward, "call.call_placed"), call_event(ward, seq, f"bed-{1000 + t}-1", n + 1)))
            if len(batch) >= 500:
                await asyncio.gather(*batch)
                batch = []
    await asyncio.gather(*batch)
    await nc.close()
    return seq


async def intake(root: Path, wards: int, terminals: int, per_terminal: int) -> dict:
    hub = start_hub(root)
    leaves = {}
    try:
        ids = [f"w{i:02d}" for i in range(wards)]
        for w in ids:
            leaves[w] = start_leaf(root, hub, w)
        t0 = time.monotonic()
        counts = await asyncio.gather(*(fill_ward(leaves[w].url, w, terminals, per_terminal) for w in ids))
        fill_s = time.monotonic() - t0
        total = sum(counts)
        nc = await nats.connect(hub.url)
        js = nc.jetstream()
        t0 = time.monotonic()
        await js.add_stream(hospital_stream_config(ids))
        while (await js.stream_info(HOSPITAL_STREAM)).state.messages < total:
            await asyncio.sleep(0.05)
            if time.monotonic() - t0 > 600:
                raise RuntimeError("the hub did not take every event within 600 s")
        took_s = time.monotonic() - t0
        await nc.close()
        return {"wards": wards, "terminals": terminals, "events": total, "fill_s": fill_s, "hub_s": took_s,
                "hub_events_per_s": total / took_s}
    finally:
        for leaf in leaves.values():
            leaf.stop()
        hub.stop()


async def ack_times(config: Path, devices: list[dict], samples: int, gap_s: float) -> list[float]:
    """CALL → CALL_ACK, each call cleared again; gap_s between one call's clearing and the next
    (0: back to back, the publisher's work for one call overlapping the next)."""
    term = SimTerminal.from_config(devices[0])
    await term.connect()
    out = []
    try:
        for _ in range(samples):
            t0 = time.perf_counter()
            call = await term.place_call(wardproto.PATIENT)
            out.append((time.perf_counter() - t0) * 1000)
            await term.cancel(call)
            await asyncio.sleep(gap_s)
    finally:
        await term.close()
    return out


def federated(wdir: Path, leaf_url: str, ward: str, terminals: int = 2) -> tuple[Path, list[dict]]:
    config, devices = write_ward(wdir, terminals)
    config.write_text(config.read_text() + f'\n[federation]\nward = "{ward}"\nleaf_url = "{leaf_url}"\n')
    return config, devices


async def ward_cost(root: Path, samples: int, gap_s: float) -> dict:
    hub = start_hub(root / "cost")
    leaf = start_leaf(root / "cost", hub, "c")
    out = {}
    try:
        for name in ("without federation", "with federation", "leaf node stopped"):
            wdir = root / "cost" / name.replace(" ", "-")
            if name == "without federation":
                config, devices = write_ward(wdir, 2)
            else:
                config, devices = federated(wdir, leaf.url, "c")
            if name == "leaf node stopped":
                leaf.stop()
            server = Server(config)
            server.start()
            try:
                out[name] = await ack_times(config, devices, samples, gap_s)
            finally:
                server.stop()
    finally:
        leaf.stop()
        hub.stop()
    return out


async def view_latency(root: Path, samples: int) -> list[float]:
    root = root / "latency"
    hub = start_hub(root)
    leaf = start_leaf(root, hub, "l")
    config, devices = federated(root / "ward", leaf.url, "l")
    server = Server(config)
    server.start()
    port = free_port()
    hospital_toml = root / "hospital.toml"
    hospital_toml.write_text("\n".join([
        "[hospital]", 'name = "Bench"', f'hub_urls = ["{hub.url}"]', f"api_port = {port}", "",
        "[wards.l]", 'name = "Ward L"', "", "[users.sup]", 'name = "S"', f'password = "{hash_password(NURSE[1])}"', ""]))
    import subprocess
    console = subprocess.Popen([sys.executable, "-m", "wardcall.cli", "hospital", "--config", str(hospital_toml)],
                               stdout=open(root / "hospital.log", "w"), stderr=subprocess.STDOUT)
    arrivals: dict[int, float] = {}
    got = asyncio.Event()
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            for _ in range(200):
                try:
                    async with http.post(url + "/api/login", json={"user": "sup", "password": NURSE[1]}) as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)

            async def follow() -> None:
                async with http.get(url + "/api/events", timeout=aiohttp.ClientTimeout(total=None)) as r:
                    async for name, data in sse_messages(r.content):
                        if name == "call":
                            change = json.loads(data)
                            if change["event"] == "call_placed":
                                arrivals.setdefault(change["call"]["call_id"], time.perf_counter())
                                got.set()
            follower = asyncio.create_task(follow())
            term = SimTerminal.from_config(devices[0])
            await term.connect()
            out = []
            try:
                for _ in range(samples):
                    got.clear()
                    t0 = time.perf_counter()
                    call = term.next_call_id()
                    await term.place_call(wardproto.PATIENT, call_id=call, wait_ack=False)
                    while call not in arrivals:
                        await asyncio.wait_for(got.wait(), 10)
                        got.clear()
                    out.append((arrivals[call] - t0) * 1000)
                    await term.cancel(call)
            finally:
                await term.close()
                follower.cancel()
        return out
    finally:
        console.terminate()
        console.wait(10)
        server.stop()
        leaf.stop()
        hub.stop()


def _standby_toml(primary: Path, primary_leaf: str, standby_leaf: str, takeover_s: float) -> Path:
    import re
    import socket
    text = primary.read_text().replace('database = "ward.db"', 'database = "standby.db"')
    for key in ("terminal_port", "api_port"):
        text = re.sub(rf"^{key} = \d+$", f"{key} = {free_port()}", text, flags=re.M)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        text = re.sub(r"^discovery_port = \d+$", f"discovery_port = {u.getsockname()[1]}", text, flags=re.M)
    text = text.replace(f'leaf_url = "{primary_leaf}"', f'leaf_url = "{standby_leaf}"\nstandby_of = "{primary_leaf}"\n'
                        f"takeover_after_s = {takeover_s}")
    path = primary.parent / "standby.toml"
    path.write_text(text)
    return path


async def failover_once(root: Path, terminals: int, takeover_s: float) -> dict:
    import subprocess
    import urllib.request
    hub = start_hub(root)
    leaf = start_leaf(root, hub, "f")
    standby_node = LeafNode("f", root / "leaf-f-standby", free_port(), free_port(),
                            (f"nats://127.0.0.1:{hub.node.leaf_port}",), standby=True)
    standby_leaf = NatsServer(standby_node, root / "leaf-standby.conf", root / "leaf-standby.log").start()
    config, devices = federated(root / "ward", leaf.url, "f", terminals)
    config.write_text(config.read_text() + "host_beat_s = 0.2\n")
    standby_cfg = _standby_toml(config, leaf.url, standby_leaf.url, takeover_s)
    primary = Server(config)
    primary.start()
    status = root / "standby-ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "wardcall.cli", "standby", "--config", str(standby_cfg),
                             "--ready-file", str(status)], stdout=open(root / "standby.log", "w"), stderr=subprocess.STDOUT)
    terms = [SimTerminal.from_config(d) for d in devices]
    placed: list[tuple[str, int]] = []
    try:
        for t in terms:
            await t.connect()
            placed.append((t.device, await t.place_call(wardproto.PATIENT)))
        while True:                 # the standby has followed every open call
            try:
                if len(json.loads(status.read_text())["open_calls"]) == len(placed):
                    break
            except (OSError, ValueError, KeyError):
                pass
            await asyncio.sleep(0.05)
        for t in terms:
            await t.close()
        killed = time.monotonic()
        primary.kill()
        while True:
            try:
                ready = json.loads(status.read_text())
                with urllib.request.urlopen(f"http://127.0.0.1:{ready['api_port']}/api/health", timeout=1):
                    break
            except (OSError, ValueError, KeyError):
                await asyncio.sleep(0.02)
        serving_s = time.monotonic() - killed
        terms = [SimTerminal.from_config(d, host="127.0.0.1", port=ready["terminal_port"]) for d in devices]
        for t, (_, call_id) in zip(terms, placed):
            await t.connect()
            await t.place_call(wardproto.PATIENT, call_id=call_id)      # the announcement after WELCOME
        back_s = time.monotonic() - killed
        api = WardApi(f"http://127.0.0.1:{ready['api_port']}")
        await api.login(*NURSE)
        calls = [(c["device"], c["call_id"]) for c in (await api.state())["calls"]]
        await api.close()
        return {"serving_s": serving_s, "back_s": back_s, "calls": len(placed),
                "lost": len(set(placed) - set(calls)), "doubled": len(calls) - len(set(calls))}
    finally:
        for t in terms:
            await t.close()
        proc.terminate()
        proc.wait(10)
        primary.stop()
        for server in (standby_leaf, leaf, hub):
            server.stop()


def line(name: str, values: list[float]) -> str:
    return f"{name:<34} p50 {pct(values, 50):7.2f}  p99 {pct(values, 99):7.2f}  max {max(values):7.2f} ms  (n={len(values)})"


async def main_async(args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="bench-fed-"))
    result: dict = {"machine": machine()}
    try:
        r = await intake(root / "intake", args.wards, args.terminals, args.events)
        result["intake"] = r
        print(f"hub intake: {r['wards']} wards × {r['terminals']} terminals, {r['events']} events: the hub took them in "
              f"{r['hub_s']:.2f} s = {r['hub_events_per_s']:.0f} events/s  (filling the wards' streams took {r['fill_s']:.1f} s)",
              flush=True)
        cost = await ward_cost(root, args.samples, args.gap_ms / 1000)
        print(f"(calls {args.gap_ms:g} ms apart)", flush=True)
        result["ward_cost"] = cost
        for name, values in cost.items():
            print(line(f"CALL→CALL_ACK, {name}", values), flush=True)
        lat = await view_latency(root, args.samples)
        result["latency"] = lat
        print(line("ward → hospital console", lat), flush=True)
        runs = []
        for i in range(args.failovers):
            r = await failover_once(root / f"failover-{i}", args.failover_terminals, args.takeover_s)
            runs.append(r)
            print(f"failover {i + 1}: takeover_after_s {args.takeover_s:g}: standby serving {r['serving_s']:.2f} s after the "
                  f"kill, all {r['calls']} calls back {r['back_s']:.2f} s; lost {r['lost']}, doubled {r['doubled']}", flush=True)
        result["failover"] = runs
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wards", type=int, default=20)
    ap.add_argument("--terminals", type=int, default=50)
    ap.add_argument("--events", type=int, default=100, help="events per terminal in the intake run")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--gap-ms", type=float, default=50.0, help="between the ward-cost samples (0: back to back)")
    ap.add_argument("--failovers", type=int, default=3)
    ap.add_argument("--failover-terminals", type=int, default=20)
    ap.add_argument("--takeover-s", type=float, default=2.0, help="the standby's takeover_after_s")
    ap.add_argument("--json")
    args = ap.parse_args()
    result = asyncio.run(main_async(args))
    if args.json:
        Path(args.json).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
