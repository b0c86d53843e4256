"""What the web console needs beyond the ward API: its page and static files, the ward layout,
and the history (calls of a period and the summary rows of `wardcall report`).

    GET /                            the console page (web/console/index.html)
    GET /console/…                   its scripts and styles
    GET /pocket/                     the pocket console for phones (web/pocket/), its manifest,
                                     service worker (scope /pocket/), scripts, style and icons
    GET /api/layout                  {"ward", "rooms": [{"id", "name", "beds": [...]}]}
    GET /api/report?since=24h[&until=…]   calls in the period, the summary rows of `wardcall report`
    GET /api/report.csv?since=…      the same summary as `wardcall report --csv` (a download)
"""
from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from aiohttp import web

from ..protocol import KIND_NAMES
from ..record_queries import calls_placed
from ..report import as_csv, parse_since, summarise
from ..storage import StorageError, open_readonly
from .errors import http_error
from .keys import HUB

CONSOLE_DIR = Path(__file__).parent / "console"
POCKET_DIR = Path(__file__).parent / "pocket"
# the pocket console's files, each with the content type a phone needs (a service worker must be
# JavaScript; an installable app's manifest application/manifest+json); nothing else is served
POCKET_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png",
                ".svg": "image/svg+xml", ".webmanifest": "application/manifest+json"}
POCKET_FILES = {p.name: POCKET_TYPES[p.suffix] for p in POCKET_DIR.iterdir() if p.suffix in POCKET_TYPES}
MAX_CALLS = 5000          # calls listed by /api/report (the summary always covers the whole period)
CALL_COLUMNS = ("id", "device", "call_id", "kind", "room", "bed", "state", "placed_at", "acknowledged_at",
                "acknowledged_by", "attended_at", "attended_by", "cleared_at", "cleared_reason",
                "escalation", "realerts")


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(CONSOLE_DIR / "index.html")


async def pocket_redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/pocket/")


async def pocket_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("name") or "index.html"
    content_type = POCKET_FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    # revalidated on every load (a phone gets a new version at once); the service worker keeps
    # its own copy for when the ward's network does not reach
    response = web.FileResponse(POCKET_DIR / name, headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
    if name == "sw.js":
        response.headers["Service-Worker-Allowed"] = "/pocket/"
    return response


def _period(request: web.Request) -> tuple[float, float | None]:
    since_text = request.query.get("since", "24h")
    until_text = request.query.get("until")
    try:
        since = parse_since(since_text)
        until = parse_since(until_text) if until_text else None
    except ValueError as exc:
        raise http_error(web.HTTPBadRequest, str(exc).replace("--since ", "since "))
    return since, until


def _read_calls(database: Path, since: float, until: float | None) -> list[sqlite3.Row]:
    conn = open_readonly(database)
    try:
        return calls_placed(conn, since, until)
    finally:
        conn.close()


async def _calls(request: web.Request) -> tuple[list[sqlite3.Row], float, float | None]:
    since, until = _period(request)
    hub = request.app[HUB]
    try:
        rows = await asyncio.get_running_loop().run_in_executor(None, _read_calls, hub.config.database, since, until)
    except (StorageError, sqlite3.Error) as exc:
        raise http_error(web.HTTPServiceUnavailable, str(exc))
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


async def layout(request: web.Request) -> web.Response:
    config = request.app[HUB].config
    return web.json_response({"ward": config.ward,
                              "rooms": [{"id": rid, "name": room.name, "beds": list(room.beds)} for rid, room in config.rooms.items()]})


def add_console_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_static("/console/", CONSOLE_DIR)
    app.router.add_get("/pocket", pocket_redirect)
    app.router.add_get("/pocket/", pocket_file)
    app.router.add_get("/pocket/{name}", pocket_file)
    app.router.add_get("/api/layout", layout)
    app.router.add_get("/api/report", report)
    app.router.add_get("/api/report.csv", report_csv)
