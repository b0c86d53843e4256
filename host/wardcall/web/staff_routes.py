"""Staff and routing for the consoles: the shift's assignment, Accept and Decline of a routed
call, and the pocket console's heartbeat (docs/HOST.md, "HTTP API").

    GET  /api/assignment[?shift=current|previous|<id>]   any logged-in user
    POST /api/assignment        {"shift"?, "charge"?, "set": [...]}           assign
    POST /api/assignment/copy   {"from": "previous"|<id>, "to"?: <id>}        assign
    POST /api/calls/{id}/accept                                               acknowledge
    POST /api/calls/{id}/decline  {"reason"?: "busy"}                         acknowledge
    POST /api/pocket/heartbeat  {}                                            any logged-in user
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from ..ward.assignments import UNSET
from .auth import current_user, require, shown
from .errors import json_body, json_error
from .keys import HUB

REASON_SHOWN = 64           # characters of a decline's reason that are recorded


def _call_id(request: web.Request) -> int | None:
    try:
        return int(request.match_info["call_id"])
    except ValueError:
        return None


def _shift(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise web.HTTPBadRequest(text='{"error": "shift must be a shift id like 2026-12-01/early, current or previous"}',
                             content_type="application/json")


async def get_assignment(request: web.Request) -> web.Response:
    return web.json_response(request.app[HUB].assignment(request.query.get("shift")))


async def post_assignment(request: web.Request) -> web.Response:
    user = require(request, "assign")
    body = await json_body(request)
    extra = sorted(set(body) - {"shift", "charge", "set"})
    if extra:
        return json_error(400, f"unknown key {shown(extra[0], 40)!r} (keys: shift, charge, set)")
    changes = body.get("set", [])
    if not isinstance(changes, list):
        return json_error(400, "set must be a list of changes")
    assignment = await request.app[HUB].assign(user.login, _shift(body.get("shift")), body.get("charge", UNSET), changes)
    return web.json_response(assignment)


async def copy_assignment(request: web.Request) -> web.Response:
    user = require(request, "assign")
    body = await json_body(request)
    extra = sorted(set(body) - {"from", "to"})
    if extra:
        return json_error(400, f"unknown key {shown(extra[0], 40)!r} (keys: from, to)")
    assignment = await request.app[HUB].copy_assignment(user.login, _shift(body.get("from")), _shift(body.get("to")))
    return web.json_response(assignment)


async def accept(request: web.Request) -> web.Response:
    user = require(request, "acknowledge")
    call_id = _call_id(request)
    if call_id is None:
        return json_error(400, "a call id is a number")
    return web.json_response({"call": await request.app[HUB].accept(call_id, user.login)})


async def decline(request: web.Request) -> web.Response:
    user = require(request, "acknowledge")
    call_id = _call_id(request)
    if call_id is None:
        return json_error(400, "a call id is a number")
    body = await json_body(request)
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        return json_error(400, "reason must be text")
    return web.json_response({"call": await request.app[HUB].decline(call_id, user.login, shown(reason, REASON_SHOWN))})


async def pocket_heartbeat(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await hub.pocket_heartbeat(current_user(request).login)
    return web.json_response({"ok": True, "phone_silent_s": hub.config.routing.phone_silent_s})


def add_staff_routes(app: web.Application) -> None:
    app.router.add_get("/api/assignment", get_assignment)
    app.router.add_post("/api/assignment", post_assignment)
    app.router.add_post("/api/assignment/copy", copy_assignment)
    app.router.add_post("/api/calls/{call_id}/accept", accept)
    app.router.add_post("/api/calls/{call_id}/decline", decline)
    app.router.add_post("/api/pocket/heartbeat", pocket_heartbeat)
