"""The console interface: JSON state, a Server-Sent Events stream of changes, and commands.

The web console (and anything else) is a client of this and nothing more; every action needs a
logged-in console user and is recorded with that user's name. See docs/HOST.md for the contract.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets as stdlib_secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from .hub import WardHub
from .passwords import verify_password
from .protocol import wardproto
from .storage import StorageError
from .ward import WardError

log = logging.getLogger("wardcall.api")

COOKIE = "wardcall_session"
SESSION_HOURS = 12
KEEPALIVE_S = 15.0
MAX_SILENCE_S = 600.0
OPEN_PATHS = {"/api/login", "/api/health"}
COMMANDS = {"identify": wardproto.CMD_IDENTIFY, "lamp_test": wardproto.CMD_LAMP_TEST,
            "reboot": wardproto.CMD_REBOOT, "silence": wardproto.CMD_SILENCE}
CONSOLE_DIR = Path(__file__).parent / "console"

HUB = web.AppKey("hub", WardHub)
SESSIONS = web.AppKey("sessions", dict)


@dataclass
class ConsoleSession:
    user: str
    name: str
    expires: float


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _user(request: web.Request) -> str:
    return request["session"].user


@web.middleware
async def auth_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    if request.path.startswith("/api/") and request.path not in OPEN_PATHS:
        token = request.cookies.get(COOKIE, "")
        session = request.app[SESSIONS].get(token)
        if session is None or session.expires < time.time():
            request.app[SESSIONS].pop(token, None)
            return _error(401, "log in first (POST /api/login)")
        request["session"] = session
    try:
        return await handler(request)
    except WardError as exc:
        return _error(exc.status, exc.message)
    except StorageError as exc:
        # not stored, so not done (logged and alarmed by the hub): the user may try again
        return _error(503, str(exc))


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise WardError(400, "the request body is not JSON")
    if not isinstance(body, dict):
        raise WardError(400, "the request body must be a JSON object")
    return body


async def health(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    # run and pid let `wardcall status` tell this server from any other program on the port
    return web.json_response({"ok": True, "ward": hub.config.ward, "run": hub.writer.storage.run, "pid": os.getpid()})


async def login(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    body = await _json_body(request)
    user, password = body.get("user"), body.get("password")
    if not isinstance(user, str) or not isinstance(password, str):
        return _error(400, 'send {"user": ..., "password": ...}')
    account = hub.config.users.get(user)
    # scrypt is slow on purpose; it runs off the event loop so terminals are not kept waiting
    ok = account is not None and await asyncio.get_running_loop().run_in_executor(None, verify_password, password, account.password_hash)
    if not ok:
        log.warning("console login failed for %r from %s", user, request.remote)
        await hub.record("console_login_failed", user=user[:64], address=request.remote)
        return _error(401, "unknown user or wrong password")
    token = stdlib_secrets.token_urlsafe(32)
    request.app[SESSIONS][token] = ConsoleSession(user, account.name, time.time() + SESSION_HOURS * 3600)
    await hub.record("console_login", user=user, address=request.remote)
    response = web.json_response({"user": user, "name": account.name})
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", max_age=SESSION_HOURS * 3600)
    return response


async def logout(request: web.Request) -> web.Response:
    request.app[SESSIONS].pop(request.cookies.get(COOKIE, ""), None)
    await request.app[HUB].record("console_logout", user=_user(request))
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE)
    return response


async def state(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return web.json_response({"seq": hub.seq, **hub.ward.snapshot()})


def _sse(event: str, payload: dict[str, Any]) -> bytes:
    return f"id: {payload.get('seq', '')}\nevent: {event}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    """SSE: a full snapshot first, then every change, in order, each with its seq number."""
    hub = request.app[HUB]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    try:
        await response.prepare(request)
    except (ConnectionError, asyncio.CancelledError):
        return response          # the client left before the stream began: nothing to end
    sub, snapshot = await hub.subscribe(_user(request))
    try:
        await response.write(b"retry: 2000\n\n" + _sse("snapshot", snapshot))
        while True:
            if sub.dropped and sub.queue.empty():
                break        # fell too far behind: reconnecting gives a fresh snapshot
            try:
                item = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if item is None:
                break
            await response.write(_sse(*item))
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        await asyncio.shield(hub.unsubscribe(sub))
    return response


async def acknowledge(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    try:
        call_id = int(request.match_info["call_id"])
    except ValueError:
        return _error(400, "a call id is a number")
    call = await hub.acknowledge(call_id, _user(request))
    return web.json_response({"call": call})


async def silence(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    body = await _json_body(request)
    seconds = body.get("seconds", 60)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_SILENCE_S:
        return _error(400, f"seconds must be a number between 0 and {MAX_SILENCE_S:g}")
    sound = await hub.silence(float(seconds), _user(request))
    return web.json_response({"sound": sound})


async def terminal_command(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    device = request.match_info["device"]
    body = await _json_body(request)
    name = body.get("command")
    if name not in COMMANDS:
        return _error(400, f"command must be one of {', '.join(COMMANDS)}")
    if device not in hub.config.terminals:
        return _error(404, f"no terminal {device}")
    cmd_id = await hub.command(device, COMMANDS[name], b"", _user(request))
    return web.json_response({"cmd_id": cmd_id})


async def index(request: web.Request) -> web.StreamResponse:
    page = CONSOLE_DIR / "index.html"
    if page.is_file():
        return web.FileResponse(page)
    return web.Response(text="wardcall host: the web console is not installed; the API is under /api/\n")


def make_app(hub: WardHub) -> web.Application:
    app = web.Application(middlewares=[auth_middleware], client_max_size=64 * 1024)
    app[HUB] = hub
    app[SESSIONS] = {}
    app.router.add_get("/api/health", health)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/events", events)
    app.router.add_post("/api/calls/{call_id}/acknowledge", acknowledge)
    app.router.add_post("/api/silence", silence)
    app.router.add_post("/api/terminals/{device}/command", terminal_command)
    app.router.add_get("/", index)
    if CONSOLE_DIR.is_dir():
        app.router.add_static("/console/", CONSOLE_DIR)
    from .console_routes import add_console_routes
    add_console_routes(app)     # history, reports, layout, sessions kept across host restarts
    from .ota.routes import add_ota_routes
    add_ota_routes(app)         # /api/ota/updates: over-the-air firmware updates
    return app
