"""What the web console needs beyond the core API (api.py): history and reports, the ward
layout, and console sessions that survive a host restart.

Wire it with one call at the end of `api.make_app` (before the app is returned):

    from .console_routes import add_console_routes
    add_console_routes(app)

Routes (all behind the login of api.py's auth middleware):

    GET /api/me                      {"user", "name"} of this session
    GET /api/layout                  {"ward", "rooms": [{"id", "name", "beds": [...]}]}
    GET /api/report?since=24h[&until=…]   calls in the period, the summary rows of `wardcall report`
    GET /api/report.csv?since=…      the same summary as `wardcall report --csv` (a download)

Sessions: api.py keeps sessions in memory, so a host restart would log every console out and
the console could not bring itself up to date on its own. Here the SHA-256 of each session
token (never the token) is kept in `<database stem>.sessions.json` (mode 0600) next to the
record; a request whose cookie matches a stored, unexpired hash gets its session back.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from .api import COOKIE, HUB, SESSIONS, ConsoleSession
from .protocol import KIND_NAMES
from .report import as_csv, parse_since, summarise
from .storage import StorageError, open_readonly

log = logging.getLogger("wardcall.console")

MAX_CALLS = 5000          # calls listed by /api/report (the summary always covers the whole period)
CALL_COLUMNS = ("id", "device", "call_id", "kind", "room", "bed", "state", "placed_at", "acknowledged_at",
                "acknowledged_by", "attended_at", "attended_by", "cleared_at", "cleared_reason",
                "escalation", "realerts")
SESSION_STORE = web.AppKey("console_session_store", object)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    """Hashes of live session tokens on disk, so a restarted host still knows its consoles."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        try:
            data = json.loads(path.read_text())
            now = time.time()
            self.entries = {k: v for k, v in data.get("sessions", {}).items()
                            if isinstance(v, dict) and v.get("expires", 0) > now}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("%s: unreadable (%s); consoles will log in again", path, exc)

    def _save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"sessions": self.entries}, f)
        os.replace(tmp, self.path)

    def add(self, token: str, session: ConsoleSession) -> None:
        now = time.time()
        self.entries = {k: v for k, v in self.entries.items() if v["expires"] > now}
        self.entries[_digest(token)] = {"user": session.user, "name": session.name, "expires": session.expires}
        self._save()

    def remove(self, token: str) -> None:
        if self.entries.pop(_digest(token), None) is not None:
            self._save()

    def restore(self, token: str) -> ConsoleSession | None:
        entry = self.entries.get(_digest(token))
        if entry is None or entry["expires"] < time.time():
            return None
        return ConsoleSession(entry["user"], entry["name"], entry["expires"])


@web.middleware
async def session_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Runs before api.py's auth: brings back a session known from before a restart, and keeps
    the store in step with logins and logouts."""
    store: SessionStore = request.app[SESSION_STORE]
    token = request.cookies.get(COOKIE, "")
    sessions = request.app[SESSIONS]
    if token and token not in sessions:
        restored = store.restore(token)
        # the user must still be in the ward config
        if restored is not None and restored.user in request.app[HUB].config.users:
            sessions[token] = restored
    response = await handler(request)
    try:
        if request.path == "/api/login" and response.status == 200 and COOKIE in response.cookies:
            new = response.cookies[COOKIE].value
            if new in sessions:
                store.add(new, sessions[new])
        elif request.path == "/api/logout" and token:
            store.remove(token)
    except OSError as exc:
        log.warning("cannot keep console sessions in %s: %s", store.path, exc)
    return response


def _period(request: web.Request) -> tuple[float, float | None]:
    since_text = request.query.get("since", "24h")
    until_text = request.query.get("until")
    try:
        since = parse_since(since_text)
        until = parse_since(until_text) if until_text else None
    except ValueError as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": str(exc).replace("--since ", "since ")}),
                                 content_type="application/json")
    return since, until


def _query_calls(database: Path, since: float, until: float | None) -> list[sqlite3.Row]:
    conn = open_readonly(database)
    try:
        query, args = "SELECT * FROM calls WHERE placed_at >= ?", [since]
        if until is not None:
            query += " AND placed_at < ?"
            args.append(until)
        return list(conn.execute(query + " ORDER BY placed_at, id", args))
    finally:
        conn.close()


async def _calls(request: web.Request) -> tuple[list[sqlite3.Row], float, float | None]:
    since, until = _period(request)
    hub = request.app[HUB]
    try:
        rows = await asyncio.get_running_loop().run_in_executor(None, _query_calls, hub.config.database, since, until)
    except (StorageError, sqlite3.Error) as exc:
        raise web.HTTPServiceUnavailable(text=json.dumps({"error": str(exc)}), content_type="application/json")
    return rows, since, until


async def report(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    rows, since, until = await _calls(request)
    summary = summarise(hub.config, rows)
    calls = [{**{c: row[c] for c in CALL_COLUMNS}, "kind_name": KIND_NAMES.get(row["kind"], str(row["kind"]))}
             for row in rows[-MAX_CALLS:]]
    return web.json_response({
        "ward": hub.config.ward, "since": since, "until": until if until is not None else time.time(),
        "total": len(rows), "calls": calls,
        "summary": [{"group_by": r.group_by, "group": r.group, "calls": r.calls,
                     "times": {m: {"n": s.n, "mean": s.mean, "median": s.median, "max": s.max} for m, s in r.times.items()}}
                    for r in summary],
    })


async def report_csv(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    rows, since, _ = await _calls(request)
    stamp = time.strftime("%Y%m%d-%H%M", time.localtime(since))
    return web.Response(text=as_csv(summarise(hub.config, rows)), content_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="wardcall-report-since-{stamp}.csv"'})


async def me(request: web.Request) -> web.Response:
    session = request["session"]
    return web.json_response({"user": session.user, "name": session.name})


async def layout(request: web.Request) -> web.Response:
    config = request.app[HUB].config
    return web.json_response({"ward": config.ward,
                              "rooms": [{"id": rid, "name": room.name, "beds": list(room.beds)} for rid, room in config.rooms.items()]})


def add_console_routes(app: web.Application) -> None:
    """Add the console's routes and session persistence to the app made by api.make_app."""
    database: Path = app[HUB].config.database
    app[SESSION_STORE] = SessionStore(database.with_name(database.stem + ".sessions.json"))
    app.middlewares.insert(0, session_middleware)     # outermost: before api.py's auth check
    app.router.add_get("/api/me", me)
    app.router.add_get("/api/layout", layout)
    app.router.add_get("/api/report", report)
    app.router.add_get("/api/report.csv", report_csv)
