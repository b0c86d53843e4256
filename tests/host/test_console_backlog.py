"""A call published while a console has a backlog of changes (a reconnect storm's terminal
changes) reaches it ahead of that backlog, and again in its place; the console's resume point
and its view of the call never go back. The real application (wardcall.web.make_app) and hub
on a real loopback socket, the stream read as a console reads it."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.fixtures.host import NURSE, _NURSE_HASH
from wardcall.bus import AHEAD_AFTER
from wardcall.client import CallViews, WardApi, sse_events
from wardcall.clock import SystemClock
from wardcall.config import parse_config
from wardcall.hub import WardHub
from wardcall.protocol import wardproto as wp
from wardcall.storage import AsyncWriter, Storage
from wardcall.web import make_app

pytestmark = [pytest.mark.timeout(60)]

TERMINALS = 5 * AHEAD_AFTER        # the console may fall 4 per terminal behind before it is cut off


async def serve(tmp: Path):
    rooms = {str(100 + r): {"beds": ["1", "2", "3"]} for r in range((TERMINALS + 2) // 3)}
    devices = {f"t{i}": {"room": str(100 + i // 3), "bed": str(1 + i % 3)} for i in range(TERMINALS)}
    config = parse_config(tmp / "ward.toml", {
        "ward": {"name": "W", "database": "ward.db"}, "rooms": rooms, "terminals": devices,
        "users": {NURSE[0]: {"password": _NURSE_HASH}},
    })
    writer = AsyncWriter(Storage(config.database))
    hub = WardHub(config, {}, writer, SystemClock())
    runner = web.AppRunner(make_app(hub))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, writer, hub, f"http://127.0.0.1:{runner.addresses[0][1]}"


class BacklogAtCalls:
    """A hub observer (told of each change just before the consoles are): how many changes were
    queued for the console when a call changed, and the number of the first of them."""

    def __init__(self, sub, bus) -> None:
        self.sub, self.bus = sub, bus
        self.backlogs: list[tuple[int, int]] = []

    def observe(self, fx) -> None:
        if fx.calls:
            queued = self.sub.queue.qsize()
            self.backlogs.append((queued, self.bus.seq - queued + 1))

    def state(self) -> dict:
        return {}


async def read_until(events, done, timeout: float = 20.0) -> list[tuple[str | None, str, dict]]:
    got: list[tuple[str | None, str, dict]] = []

    async def read():
        async for event_id, name, data in events:
            got.append((event_id, name, json.loads(data)))
            if done(got):
                return
    await asyncio.wait_for(read(), timeout)
    return got


async def test_a_call_goes_ahead_of_a_consoles_backlog_and_its_view_never_goes_back(tmp_path):
    runner, writer, hub, url = await serve(tmp_path)
    api = WardApi(url)
    try:
        await api.login(*NURSE)
        response = await api.http.get(url + "/api/events", timeout=aiohttp.ClientTimeout(total=None, sock_read=None))
        events = sse_events(response.content).__aiter__()
        [(snap_id, name, snapshot)] = await read_until(events, lambda got: True)
        assert name == "snapshot"
        ward = hub.ward
        sub = next(iter(hub.bus.subscribers))
        fx = ward.terminal_connected("t0", "fw", "sim", 0, "127.0.0.1:1")
        for i in range(1, TERMINALS):
            fx.merge(ward.terminal_connected(f"t{i}", "fw", "sim", 0, "127.0.0.1:1"))
        await hub.apply(fx)
        # the console does not read: staff come and go in every room until the host's writes to
        # it wait (the socket's buffers are full) and changes queue for it, as in a storm
        on = True
        for _ in range(500):
            taken = hub.bus.seq - sub.queue.qsize()     # changes the stream has taken to write
            fx = ward.presence("t0", on, "")
            for i in range(1, TERMINALS):
                fx.merge(ward.presence(f"t{i}", on, ""))
            await hub.apply(fx)
            on = not on
            if hub.bus.seq - sub.queue.qsize() == taken and sub.queue.qsize() >= 2 * AHEAD_AFTER:
                break       # it took nothing through a whole write to the record: it waits
        else:
            pytest.fail("the stream never stopped taking changes")
        # what was queued for the console when each call change was published
        seen = BacklogAtCalls(sub, hub.bus)
        hub.observers.append(seen)
        await hub.terminal_call("t0", 7, wp.PATIENT, 0)
        [call] = ward.open_calls_of("t0")
        await hub.acknowledge(call.id, NURSE[0])
        assert seen.backlogs and min(b for b, _ in seen.backlogs) >= AHEAD_AFTER, f"no backlog formed: {seen.backlogs}"
        first_queued = seen.backlogs[0][1]
        last_seq = hub.bus.seq

        got = await read_until(events, lambda got: got[-1][2]["seq"] == last_seq and not got[-1][2].get("ahead"))
    finally:
        hub.bus.end_all()         # as the server does when it stops: the streams end
        await api.close()
        await runner.cleanup()
        await writer.aclose()

    calls = [(i, e) for i, e in enumerate(got) if e[1] == "call"]
    ahead = [(i, e) for i, e in calls if e[2].get("ahead")]
    assert ahead, "no call came ahead of the backlog"
    ahead_states = [e[2]["call"]["state"] for _, e in ahead]
    assert ahead_states[0] == "placed" and ahead_states[-1] == "acknowledged", ahead_states
    first_of_backlog = next(i for i, e in enumerate(got) if e[2]["seq"] >= first_queued and not e[2].get("ahead"))
    # the call came before the changes that were queued for the console when it was placed
    assert ahead[0][0] < first_of_backlog, (ahead[0][0], first_of_backlog, first_queued)
    # each ahead copy is the change that follows in its place, under the same number
    in_place = {e[2]["seq"]: e[2] for _, e in calls if not e[2].get("ahead")}
    for _, (_, _, payload) in ahead:
        assert {**payload, "ahead": False} == {**in_place[payload["seq"]], "ahead": False}
    # every change in order exactly once, each with its id; the ahead copies carry none, so the
    # console's last id (where it resumes) is never moved past a change it has not had
    in_order = [e for e in got if not e[2].get("ahead")]
    assert [e[2]["seq"] for e in in_order] == list(range(snapshot["seq"] + 1, last_seq + 1))
    assert all(e[0] == hub.bus.event_id(e[2]["seq"]) for e in in_order)
    previous = snap_id
    for event_id, _, payload in got:
        if payload.get("ahead"):
            assert event_id == previous, "an ahead copy must not set the stream's id"
        previous = event_id
    # a console taking the calls as the consoles do shows the placed call, then the acknowledged
    # one, and never the placed one again when its in-order copy comes after
    views = CallViews()
    shown = [(e[2]["seq"], e[2].get("ahead")) for _, e in calls if views.take(e[2])]
    assert shown == [(e[2]["seq"], True) for _, e in ahead], shown
    assert views.ahead_seq == {}, "every ahead copy's place came"
