"""The ward's publisher against real nats-server processes: the ward's events reach the hub's
hospital stream in order, and a hub that is stopped for a while only delays them; the ward's
terminals are acknowledged as fast while it is away; the ward's bucket holds its open calls."""
from __future__ import annotations

import json
import time

import nats

from wardcall.federation.hubstream import ensure_hospital_stream
from wardcall.federation.subjects import kv_key, ward_bucket, ward_stream
from wardcall.protocol import wardproto
from tests.federation.conftest import hospital_events
from tests.support.waiting import async_wait_until

PATIENT, CODE_BLUE = wardproto.PATIENT, wardproto.CODE_BLUE


def call_events(events: list[dict]) -> list[tuple[str, str, int]]:
    return [(e["kind"], e["call"]["device"], e["call"]["call_id"]) for e in events if "call" in e]


async def _ward_stream_count(leaf_url: str) -> int:
    nc = await nats.connect(leaf_url)
    try:
        return (await nc.jetstream().stream_info(ward_stream("a"))).state.messages
    finally:
        await nc.close()


async def test_a_hub_that_is_down_only_delays_the_wards_events(nats_hospital, fed_ward, ward_server_factory):
    hospital = nats_hospital
    hospital.hub()
    ward = fed_ward(hospital, "a", terminals=2)
    nc = await nats.connect(hospital.hub_url)
    await ensure_hospital_stream(nc.jetstream(), ["a"])
    await nc.close()
    ward_server_factory(ward)
    bed = ward.terminal(0)
    await bed.connect()
    try:
        first = await bed.place_call(PATIENT)
        before = await hospital_events(hospital.hub_url, 1)
        assert ("call_placed", "bed-101-1", first) in call_events(before)

        hospital.hub_server.stop()
        # the hub is away: the ward works as before, each call acknowledged at once
        placed, ack_s = [], []
        for kind in (PATIENT, CODE_BLUE, PATIENT, PATIENT):
            started = time.monotonic()
            placed.append(await bed.place_call(kind, timeout=2.0))
            ack_s.append(time.monotonic() - started)
        await bed.cancel(placed[0])
        assert max(ack_s) < 1.0, f"CALL_ACK took {max(ack_s):.3f} s with the hub away"
        # the ward's own stream, on its leaf node, keeps them meanwhile
        leaf_count = await async_wait_until(lambda: _ward_stream_count(hospital.leaves["a"].url), 10,
                                            "the ward's stream to hold the calls placed while the hub is away")
        held = await _ward_stream_count(hospital.leaves["a"].url)
        assert held >= leaf_count

        hospital.hub_server.start()
        events = await hospital_events(hospital.hub_url, held, timeout=30)
    finally:
        await bed.close()
    seen = call_events(events)
    placed_seen = [c for kind, _, c in seen if kind == "call_placed"]
    assert placed_seen == [first, *placed], "every call placed arrives once, in the ward's order"
    cleared = [c for kind, _, c in seen if kind == "call_cleared"]
    assert cleared == [placed[0]]
    # the ward's own order and no event twice
    seqs = [(e["run"], e["seq"]) for e in events]
    assert len(set(seqs)) == len(seqs)
    assert [s for _, s in seqs] == sorted(s for _, s in seqs)
    assert seen.index(("call_placed", "bed-101-1", placed[0])) < seen.index(("call_cleared", "bed-101-1", placed[0]))


async def test_the_bucket_holds_the_open_calls_and_the_host(nats_hospital, fed_ward, ward_server_factory):
    hospital = nats_hospital
    hospital.hub()
    ward = fed_ward(hospital, "b", terminals=2)
    ward_server_factory(ward)
    bed = ward.terminal(1)
    await bed.connect()
    nc = await nats.connect(hospital.leaves["b"].url)
    try:
        one = await bed.place_call(PATIENT)
        two = await bed.place_call(CODE_BLUE)
        await bed.cancel(one)
        kv = await async_wait_until(lambda: _bucket(nc), 10, "the ward's bucket")

        async def open_calls() -> set[int] | None:
            calls = {call["call_id"] for call in await _values(kv, "call.")}
            return calls if calls == {two} else None
        await async_wait_until(open_calls, 10, "the bucket to hold the one open call")
        async def host() -> dict | None:
            beat = json.loads((await kv.get("host")).value)
            return beat if beat["open_calls"] == 1 else None
        assert (await async_wait_until(host, 5, "the host's beat with one open call"))["ward"] == "b"
        terminal = json.loads((await kv.get(kv_key("terminal", "bed-101-2"))).value)
        assert terminal["status"] == "online"

        # a silent terminal: its alarm in the bucket and as an event; gone again when it speaks
        bed.pause_heartbeats()

        async def offline_alarm() -> dict | None:
            for alarm in await _values(kv, "alarm."):
                if alarm["kind"] == "terminal_offline" and alarm["device"] == "bed-101-2":
                    return alarm
            return None
        alarm = await async_wait_until(offline_alarm, 10, "the terminal's offline alarm in the bucket")
        await bed.close()           # the host has closed its silent session: the terminal comes back
        bed = ward.terminal(1)
        await bed.connect()
        offline_key = kv_key("alarm", alarm["id"])
        assert offline_key == "alarm.offline=3Abed-101-2"      # ':' may not be in a key
        await async_wait_until(lambda: _no_key(kv, offline_key), 10, "the offline alarm gone from the bucket")
        sub = await nc.jetstream().subscribe("wardcall.b.ev.>", stream=ward_stream("b"), ordered_consumer=True)
        events = []
        while len(events) < 2:
            event = json.loads((await sub.next_msg(5)).data)
            if event["kind"] == "alarm":
                events.append(event)
        assert [(e["ward"], e["alarm"]["id"], e["active"]) for e in events] == [("b", alarm["id"], True), ("b", alarm["id"], False)]
    finally:
        await bed.close()
        await nc.close()


async def _bucket(nc):
    try:
        return await nc.jetstream().key_value(ward_bucket("b"))
    except nats.js.errors.BucketNotFoundError:
        return None


async def _no_key(kv, key: str) -> bool:
    return key not in await _keys(kv)


async def _values(kv, prefix: str) -> list[dict]:
    """The bucket's values under a prefix. A key listed may be deleted before it is read (the
    cancelled call's): it is not there, not an error."""
    values = []
    for key in await _keys(kv):
        if key.startswith(prefix):
            try:
                values.append(json.loads((await kv.get(key)).value))
            except nats.js.errors.KeyNotFoundError:
                continue
    return values


async def _keys(kv) -> list[str]:
    try:
        return await kv.keys()
    except nats.js.errors.NoKeysError:
        return []


async def test_a_leaf_node_that_is_down_holds_nothing_up(nats_hospital, fed_ward, ward_server_factory):
    """The ward's own leaf node stopped: calls are acknowledged as fast; the publisher holds the
    events in memory and sends them, in order, once the leaf node is back."""
    hospital = nats_hospital
    hospital.hub()
    ward = fed_ward(hospital, "a", terminals=1)
    ward_server_factory(ward)
    bed = ward.terminal(0)
    await bed.connect()
    leaf = hospital.leaves["a"]
    try:
        first = await bed.place_call(PATIENT)
        await async_wait_until(lambda: _ward_stream_count(leaf.url), 10, "the first call in the ward's stream")
        leaf.stop()
        placed, ack_s = [], []
        await bed.cancel(first)
        for _ in range(5):      # one open call at a time: a terminal may hold only so many of a kind
            started = time.monotonic()
            placed.append(await bed.place_call(PATIENT, timeout=2.0))
            await bed.cancel(placed[-1], timeout=2.0)
            ack_s.append(time.monotonic() - started)
        assert max(ack_s) < 1.0, f"CALL_ACK of CALL and CANCEL took {max(ack_s):.3f} s with the leaf node away"
        leaf.start()

        async def all_placed() -> list[int] | None:
            nc = await nats.connect(leaf.url)
            try:
                sub = await nc.jetstream().subscribe("wardcall.a.ev.call.call_placed", stream=ward_stream("a"),
                                                     ordered_consumer=True)
                got = []
                while True:
                    try:
                        got.append(json.loads((await sub.next_msg(0.5)).data)["call"]["call_id"])
                    except nats.errors.TimeoutError:
                        break
                return got if len(got) >= 6 else None
            finally:
                await nc.close()
        assert await async_wait_until(all_placed, 20, "the calls placed while the leaf node was down") == [first, *placed]
    finally:
        await bed.close()


async def test_a_hub_cluster_of_three_goes_on_with_a_node_down(tmp_path, make_ward, ward_server_factory):
    """The hub as a nats-server cluster of three (natsconf.hub_cluster), the hospital stream kept
    on all three: one node killed, the ward's events still reach it, in order."""
    from wardcall.federation.natsconf import LeafNode, NatsServer, hub_cluster
    from tests.fixtures.host import LOOPBACK, free_port
    root = tmp_path / "cluster"
    nodes = hub_cluster(root, [(LOOPBACK, free_port(), free_port(), free_port(), free_port()) for _ in range(3)])
    servers = [NatsServer(n, root / f"{n.name}.conf", root / f"{n.name}.log").launch() for n in nodes]
    leaf = None
    try:
        for server in servers:
            server.wait_ready()
        leaf = NatsServer(LeafNode("a", root / "leaf-a", free_port(), free_port(),
                                   tuple(f"nats://{LOOPBACK}:{n.leaf_port}" for n in nodes), LOOPBACK),
                          root / "leaf-a.conf", root / "leaf-a.log").start()
        hub_urls = [s.url for s in servers]

        async def stream_made() -> bool:
            nc = await nats.connect(servers=hub_urls)
            try:
                await ensure_hospital_stream(nc.jetstream(), ["a"], replicas=3)
                return True
            except (nats.errors.Error, nats.js.errors.Error):
                return False     # the cluster's JetStream has no leader yet
            finally:
                await nc.close()
        await async_wait_until(stream_made, 30, "the hospital stream on the hub cluster, three copies")
        ward = make_ward(terminals=1, extra_toml=f'\n[federation]\nward = "a"\nleaf_url = "{leaf.url}"\n')
        ward_server_factory(ward)
        bed = ward.terminal(0)
        await bed.connect()
        try:
            first = await bed.place_call(PATIENT)
            await hospital_events(servers[1].url, 2)
            servers[0].kill()
            await bed.cancel(first)
            second = await bed.place_call(PATIENT)

            async def both_placed() -> list | None:
                try:
                    events = await hospital_events(servers[2].url, 1, timeout=1)
                except nats.errors.Error:
                    return None     # the cluster is choosing a new leader after the node's death: again
                placed = [e["call"]["call_id"] for e in events if e["kind"] == "call_placed"]
                return events if len(placed) >= 2 else None
            events = await async_wait_until(both_placed, 30, "the second call on the cluster with a node down")
        finally:
            await bed.close()
        placed = [e["call"]["call_id"] for e in events if e["kind"] == "call_placed"]
        assert placed == [first, second]
        assert [e["call"]["call_id"] for e in events if e["kind"] == "call_cleared"] == [first]
    finally:
        if leaf is not None:
            leaf.stop()
        for server in servers:
            server.stop()
