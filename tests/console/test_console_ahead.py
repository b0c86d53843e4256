"""Calls the host sends ahead of a console's backlog (bus.Subscriber.ahead) come twice: ahead,
without an id, and again in their place. The consoles' `takeEvent` (web/console/hostlink.js,
shared by the station and pocket consoles) must never show an older view of a call after a newer
one, and must end on the call's latest view; wardcall.client.CallViews must take exactly the
same events. Streams shaped as the host sends them, run in the real page's module in Chromium."""
from __future__ import annotations

import random

import pytest

from wardcall.client import CallViews

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

STATES = ["placed", "escalated", "acknowledged", "attended", "cleared"]


def stream_with_ahead_copies(rng: random.Random) -> list[dict]:
    """Call changes in order (seq 1, 2, …) for a few calls, some also sent ahead: an ahead copy
    comes before its own place, ahead copies in their own order, as the host writes them."""
    in_order: list[dict] = []
    progress = {call_id: 0 for call_id in range(1, rng.randint(1, 4) + 1)}
    for seq in range(1, rng.randint(2, 30)):
        call_id = rng.choice(list(progress))
        step = progress[call_id] = min(progress[call_id] + rng.randint(0, 1), len(STATES) - 1)
        in_order.append({"seq": seq, "call": {"id": call_id, "state": STATES[step], "mark": seq}})
    out: list[dict] = list(in_order)
    floor = 0                           # ahead copies keep their order among themselves
    for event in in_order:
        if rng.random() < 0.4:
            place = out.index(event)
            if place < floor:
                continue
            at = rng.randint(floor, place)
            out.insert(at, {**event, "ahead": True})
            floor = at + 1
    return out


def python_trace(events: list[dict]) -> list[int | None]:
    """What a console shows of each event's call after it: the view's mark, None if not shown."""
    views, shown, trace = CallViews(), {}, []
    for event in events:
        call = event["call"]
        if views.take(event):
            if call["state"] == "cleared":
                shown.pop(call["id"], None)
            else:
                shown[call["id"]] = call
        trace.append(shown[call["id"]]["mark"] if call["id"] in shown else None)
    return trace


JS_TRACE = """async (streams) => {
  const { takeEvent } = await import("/console/hostlink.js");
  return streams.map((events) => {
    const state = { seq: 0, offset: 0, calls: new Map(), rooms: new Map(), terminals: new Map(), staff: new Map() };
    return events.map((event) => {
      takeEvent(state, "call", event);
      const shown = state.calls.get(event.call.id);
      return shown === undefined ? null : shown.mark;
    });
  });
}"""


def test_a_call_sent_ahead_is_never_shown_older_again_and_ends_on_its_latest_view(page, ward_server_factory, make_ward):
    server = ward_server_factory(make_ward(terminals=1))
    page.goto(server.api_url + "/")
    rng = random.Random(20261203)
    streams = [stream_with_ahead_copies(rng) for _ in range(300)]
    assert sum(1 for s in streams for e in s if e.get("ahead")) > 300, "the streams must have ahead copies"
    js = page.evaluate(JS_TRACE, streams)
    for events, js_trace in zip(streams, js):
        trace = python_trace(events)
        assert js_trace == trace, (events, js_trace, trace)
        # never an older view after a newer one, per call; and each call ends on its last change
        last: dict[int, int] = {}
        for event, mark in zip(events, trace):
            call_id = event["call"]["id"]
            if mark is not None:
                assert mark >= last.get(call_id, 0), (events, trace)
                last[call_id] = mark
        for call_id in {e["call"]["id"] for e in events}:
            final = max((e for e in events if e["call"]["id"] == call_id), key=lambda e: e["seq"])
            shown = trace[max(i for i, e in enumerate(events) if e["call"]["id"] == call_id)]
            assert shown == (None if final["call"]["state"] == "cleared" else final["seq"]), (events, trace)
