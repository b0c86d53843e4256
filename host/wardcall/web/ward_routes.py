"""The ward for its consoles: health, the whole state, the event stream (SSE) and the actions on
calls and terminals. Every action needs a logged-in user whose role allows it and is recorded
with that user's name (docs/HOST.md, "HTTP API")."""
from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from aiohttp import web

from ..protocol import wardproto
from .auth import confirm_password, current_session, require
from .errors import json_body, json_error
from .keys import HUB, SESSIONS

KEEPALIVE_S = 15.0
WRITE_TIMEOUT_S = 10.0       # a console that takes longer to take an event is cut off
MAX_SILENCE_S = 600.0
WRITE_BATCH = 200            # queued changes sent to a console in one write
ENCODE_CHUNK = 250           # items of a long list JSON-encoded per turn of the event loop
# console command -> (protocol command, permission, needs the password again)
COMMANDS = {"identify": (wardproto.CMD_IDENTIFY, "identify", False),
            "lamp_test": (wardproto.CMD_LAMP_TEST, "lamp_test", False),
            "reboot": (wardproto.CMD_REBOOT, "reboot", True),
            "silence": (wardproto.CMD_SILENCE, "silence", False)}


async def health(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    # run and pid let `wardcall status` tell this server from any other program on the port
    body: dict[str, Any] = {"ok": True, "ward": hub.config.ward, "run": hub.writer.storage.run, "pid": os.getpid()}
    if hub.loop_probe is not None:      # the benchmarks': the worst loop lag of the last lag_s seconds
        try:
            seconds = min(600.0, max(1.0, float(request.query.get("lag_s", "60"))))
        except ValueError:
            return json_error(400, "lag_s is a number of seconds")
        body["loop"] = hub.loop_probe.view(seconds)
    return web.json_response(body)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


async def json_in_turns(payload: dict[str, Any]) -> str:
    """The JSON of a snapshot, its long lists (a ward's terminals and rooms) encoded a chunk per
    turn of the event loop: in one go a 5,000-terminal ward's 1.6 MB stalled the loop for ~40 ms,
    delaying every call. The payload is a fresh view (hub.state()), so nothing changes under it."""
    parts = []
    for key, value in payload.items():
        if isinstance(value, list) and len(value) > ENCODE_CHUNK:
            chunks = []
            for start in range(0, len(value), ENCODE_CHUNK):
                chunks.append(_json(value[start:start + ENCODE_CHUNK])[1:-1])
                await asyncio.sleep(0)
            parts.append(f"{_json(key)}:[{','.join(chunks)}]")
        else:
            parts.append(f"{_json(key)}:{_json(value)}")
    return "{" + ",".join(parts) + "}"


async def state(request: web.Request) -> web.Response:
    body = await json_in_turns(await request.app[HUB].state_in_turns())
    return web.Response(text=body, content_type="application/json")


def _sse_text(event_id: str, event: str, data: str) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()


def _sse(event_id: str, event: str, payload: dict[str, Any]) -> bytes:
    return _sse_text(event_id, event, _json(payload))


def _sse_ahead(event: str, payload: dict[str, Any]) -> bytes:
    """A change sent ahead of a backlog (bus.Subscriber.ahead): no id, and marked `ahead`."""
    return f"event: {event}\ndata: {_json({**payload, 'ahead': True})}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    """SSE: a full snapshot first, then every change, in order, each with its id. A console
    that reconnects with `Last-Event-ID` and whose missed changes are all still kept gets
    `resumed` and those changes instead of the snapshot."""
    hub = request.app[HUB]
    bus = hub.bus
    session = current_session(request)
    sessions = request.app[SESSIONS]
    last_id = request.headers.get("Last-Event-ID", "")[:64] or None
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    try:
        await response.prepare(request)
    except (ConnectionError, asyncio.CancelledError):
        return response          # the client left before the stream began: nothing to end
    sub, snapshot, missed = await hub.subscribe_from(session.user, session.id, last_id)

    async def write(data: bytes) -> None:
        await asyncio.wait_for(response.write(data), WRITE_TIMEOUT_S)

    try:
        if missed is None:
            assert snapshot is not None
            data = await json_in_turns(snapshot)
            await write(b"retry: 2000\n\n" + _sse_text(bus.event_id(snapshot["seq"]), "snapshot", data))
        else:
            assert last_id is not None
            start = int(last_id.strip().rpartition("-")[2])     # the change it has (bus.since checked the id)
            resumed = {"from": start, "seq": start, "time": hub.clock.wall(), "missed": len(missed)}
            await write(b"retry: 2000\n\n" + _sse(bus.event_id(start), "resumed", resumed)
                        + b"".join(_sse(bus.event_id(p["seq"]), name, p) for name, p in missed))
        while True:
            if sub.dropped and sub.queue.empty():
                break        # fell too far behind: reconnecting gives a fresh snapshot
            try:
                item = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                if sessions.get_by_id(session.id) is None:
                    break    # the session ended (expired, or ended by an administrator)
                sessions.touch(session)     # an open console is in use
                await write(b": keepalive\n\n")
                continue
            # whatever else is queued goes in the same write: a console behind in a storm of
            # changes catches up in a few writes, not one per change
            batch, ended, last_seq = [], item is None, 0
            while item is not None:
                last_seq = item[1]["seq"]
                batch.append(_sse(bus.event_id(last_seq), *item))
                if len(batch) >= WRITE_BATCH or sub.queue.empty():
                    break
                item = sub.queue.get_nowait()
                ended = item is None
            # calls still behind the backlog go first, without an id: the console's resume
            # point (its last id) stays the last change it has in order
            ahead = [_sse_ahead(name, payload) for name, payload in sub.take_ahead(last_seq)]
            if batch or ahead:
                await write(b"".join(ahead + batch))
            if ended:
                break
    except (ConnectionError, asyncio.CancelledError, asyncio.TimeoutError):
        pass
    finally:
        await asyncio.shield(hub.unsubscribe(sub))
    return response


async def acknowledge(request: web.Request) -> web.Response:
    user = require(request, "acknowledge")
    try:
        call_id = int(request.match_info["call_id"])
    except ValueError:
        return json_error(400, "a call id is a number")
    call = await request.app[HUB].acknowledge(call_id, user.login)
    return web.json_response({"call": call})


async def silence(request: web.Request) -> web.Response:
    user = require(request, "silence")
    body = await json_body(request)
    seconds = body.get("seconds", 60)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_SILENCE_S:
        return json_error(400, f"seconds must be a number between 0 and {MAX_SILENCE_S:g}")
    sound = await request.app[HUB].silence(float(seconds), user.login)
    return web.json_response({"sound": sound})


async def terminal_command(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    device = request.match_info["device"]
    body = await json_body(request)
    name = body.get("command")
    if name not in COMMANDS:
        return json_error(400, f"command must be one of {', '.join(COMMANDS)}")
    cmd, permission, dangerous = COMMANDS[name]
    user = require(request, permission)
    if device not in hub.config.terminals:
        return json_error(404, "no such terminal")
    if dangerous:
        await confirm_password(request, body)
    cmd_id = await hub.command(device, cmd, b"", user.login, name)
    return web.json_response({"cmd_id": cmd_id})


def add_ward_routes(app: web.Application) -> None:
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/events", events)
    app.router.add_post("/api/calls/{call_id}/acknowledge", acknowledge)
    app.router.add_post("/api/silence", silence)
    app.router.add_post("/api/terminals/{device}/command", terminal_command)
