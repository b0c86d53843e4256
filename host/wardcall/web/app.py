"""make_app: the host's one web application (console API, update API, static console)."""
from __future__ import annotations

from aiohttp import web

from ..hub import WardHub
from ..ota.service import OtaService
from .auth import add_auth, auth_middleware
from .console_routes import add_console_routes
from .errors import error_middleware
from .keys import HUB, OTA, SESSIONS
from .ota_routes import add_ota_routes
from .sessions import Sessions
from .staff_routes import add_staff_routes
from .ward_routes import add_ward_routes

MAX_BODY = 64 * 1024                      # JSON actions; package uploads stream past this (ota_routes)
# a page of the console may not be framed, sniffed or cached by anyone
PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"
    if request.secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")


async def _stop_updates(app: web.Application) -> None:
    await app[OTA].stop()


def make_app(hub: WardHub, ota: OtaService | None = None, sessions: Sessions | None = None) -> web.Application:
    """The application over one hub. Sessions are kept next to the record unless given."""
    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=MAX_BODY)
    app[HUB] = hub
    app[OTA] = ota if ota is not None else OtaService(hub)
    if sessions is None:
        database = hub.config.database
        sessions = Sessions(database.with_name(database.stem + ".sessions.json"),
                            idle_s=hub.config.console.idle_timeout_s,
                            lifetime_s=hub.config.console.session_hours * 3600)
    app[SESSIONS] = sessions
    app.on_response_prepare.append(_headers)
    app.on_cleanup.append(_stop_updates)
    add_auth(app)
    add_ward_routes(app)
    add_staff_routes(app)
    add_console_routes(app)
    add_ota_routes(app)
    return app
