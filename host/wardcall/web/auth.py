"""Who may do what: the login, the session check on every API request, same-origin actions and
roles (docs/CONSOLE.md, "Security").

Every request that changes something must
- come from the console's own origin: an `Origin` header, when the browser sends one, equal to
  this host's origin, and `Sec-Fetch-Site`, when sent, "same-origin";
- have a JSON content type (a page of another origin cannot send one without a CORS preflight,
  which this host never grants);
- once logged in, carry the session's request token in `X-Wardcall-Token`.
SameSite cookies alone do not separate two ports of one host; these checks do.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from ..config import User
from ..passwords import dummy_hash, verify_password
from ..ratelog import RateLimitedLog
from .errors import Handler, http_error, json_body, json_error
from .keys import HUB, SESSION, SESSIONS, USER
from .login_guard import LoginGuard
from .sessions import ConsoleSession, Sessions

log = logging.getLogger("wardcall.web")
limited = RateLimitedLog(log)

COOKIE = "wardcall_session"
TOKEN_HEADER = "X-Wardcall-Token"
OPEN_PATHS = {"/api/login", "/api/health"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
NAME_SHOWN = 64              # characters of a claimed user name that are logged or recorded

GUARD = web.AppKey("login_guard", LoginGuard)
HASHING = web.AppKey("password_hashing", asyncio.Semaphore)


def shown(text: str, limit: int = NAME_SHOWN) -> str:
    """Untrusted text as it may be logged or stored: cut short, and anything that is not a
    printable character (a lone surrogate, a control character) escaped."""
    cut = text[:limit]
    safe = cut.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in safe) + ("…" if len(text) > limit else "")


def live_users(sessions: Sessions) -> set[str]:
    """The users with a live console session now (routing skips the others as logged out)."""
    return {s.user for s in list(sessions.by_id.values()) if sessions.get_by_id(s.id) is not None}


def current_session(request: web.Request) -> ConsoleSession:
    return request[SESSION]


def current_user(request: web.Request) -> User:
    """The logged-in user, with the role the ward config gives them now."""
    return request[USER]


def require(request: web.Request, action: str) -> User:
    """The current user, if their role may do `action`; otherwise the request fails with 403."""
    user = current_user(request)
    if not user.may(action):
        raise http_error(web.HTTPForbidden, f"a {user.role.replace('_', ' ')} may not {action.replace('_', ' ')}")
    return user


def _own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _cross_site(request: web.Request) -> str | None:
    """Why a state-changing request is refused as not coming from the console, or None."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != _own_origin(request):
        return f"a request from {shown(origin, 100)} may not act on this console"
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        return f"a {shown(site, 20)} request may not act on this console"
    if request.content_type != "application/json":
        return "actions must be sent as application/json"
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    changing = request.method not in SAFE_METHODS
    if changing:
        why = _cross_site(request)
        if why is not None:
            limited.warning(("cross-site", request.remote), "refused %s %s from %s: %s", request.method,
                            shown(request.path, 100), request.remote, why)
            return json_error(403, why)
    if request.path in OPEN_PATHS:
        return await handler(request)
    sessions = request.app[SESSIONS]
    session = sessions.get(request.cookies.get(COOKIE, ""))
    user = request.app[HUB].config.users.get(session.user) if session is not None else None
    if session is None or user is None:
        return json_error(401, "log in first (POST /api/login)")
    if changing and request.headers.get(TOKEN_HEADER) != session.csrf:
        return json_error(403, f"this action needs the session's request token in {TOKEN_HEADER}")
    sessions.touch(session)
    request[SESSION] = session
    request[USER] = user
    return await handler(request)


async def check_password(request: web.Request, account: User | None, password: str) -> bool:
    """scrypt, off the event loop, a few at a time; an unknown user costs the same as a known one."""
    hashed = account.password_hash if account is not None else dummy_hash()
    async with request.app[HASHING]:
        ok = await asyncio.get_running_loop().run_in_executor(None, verify_password, password, hashed)
    return ok and account is not None


def _me(session: ConsoleSession, user: User) -> dict[str, Any]:
    from ..config import PERMISSIONS
    return {"user": user.login, "name": user.name, "role": user.role, "may": sorted(PERMISSIONS[user.role]),
            "token": session.csrf}


async def login(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    body = await json_body(request)
    name, password = body.get("user"), body.get("password")
    if not isinstance(name, str) or not isinstance(password, str):
        return json_error(400, 'send {"user": ..., "password": ...}')
    address = request.remote or "?"
    guard = request.app[GUARD]
    who = shown(name)
    wait = guard.wait_s(who, address)
    if wait > 0:
        limited.warning(("throttled", address), "console login of %r from %s refused: too many failures, %.0f s to wait",
                        who, address, wait)
        return web.json_response({"error": f"too many failed logins from here: try again in {wait:.0f} s"},
                                 status=429, headers={"Retry-After": str(int(wait) + 1)})
    account = hub.config.users.get(name)
    if not await check_password(request, account, password):
        failures = guard.failed(who, address)
        limited.warning(("failed", address), "console login failed for %r from %s (%d for this name in 15 min)",
                        who, address, failures)
        await hub.apply(hub.ward.login_failed(who, address, failures, hub.config.console.login_alarm_failures))
        return json_error(401, "unknown user or wrong password")
    assert account is not None
    guard.succeeded(who, address)
    token, session = request.app[SESSIONS].create(account.login, account.name)
    await hub.record("console_login", user=account.login, address=address)
    await hub.sessions_changed()
    response = web.json_response(_me(session, account))
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=request.secure,
                        max_age=int(hub.config.console.session_hours * 3600), path="/")
    return response


async def logout(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    session = current_session(request)
    request.app[SESSIONS].end_id(session.id)
    hub.bus.end_all(session=session.id)
    await hub.record("console_logout", user=session.user)
    await hub.sessions_changed()
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.Response:
    return web.json_response(_me(current_session(request), current_user(request)))


async def end_user_sessions(request: web.Request) -> web.Response:
    """An administrator logs a user out everywhere (a lost phone, a colleague who left)."""
    admin = require(request, "users")
    hub = request.app[HUB]
    login_name = request.match_info["user"]
    if login_name not in hub.config.users:
        return json_error(404, f"no user {shown(login_name)}")
    ended = request.app[SESSIONS].end_user(login_name)
    for session in ended:
        hub.bus.end_all(session=session.id)
    await hub.record("console_sessions_ended", user=admin.login, of_user=login_name, sessions=len(ended))
    await hub.sessions_changed()
    return web.json_response({"ended": len(ended)})


async def sessions_list(request: web.Request) -> web.Response:
    require(request, "users")
    return web.json_response({"sessions": [
        {"user": s.user, "name": s.name, "created": s.created, "last": s.last, "expires": s.expires}
        for s in sorted(request.app[SESSIONS].by_id.values(), key=lambda s: (s.user, s.created))]})


async def confirm_password(request: web.Request, body: dict[str, Any]) -> None:
    """Dangerous actions (reboot, update) ask for the password again."""
    user = current_user(request)
    password = body.get("password")
    if not isinstance(password, str) or not await check_password(request, user, password):
        hub = request.app[HUB]
        await hub.record("password_confirmation_failed", user=user.login, path=request.path)
        raise http_error(web.HTTPForbidden, "this action needs your password again, and it did not match")


def add_auth(app: web.Application) -> None:
    hub = app[HUB]
    app[GUARD] = LoginGuard(hub.config.console.login_alarm_failures)
    app[HASHING] = asyncio.Semaphore(2)
    hub.use_sessions(lambda: live_users(app[SESSIONS]))
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/me", me)
    app.router.add_get("/api/sessions", sessions_list)
    app.router.add_post("/api/users/{user}/sessions/end", end_user_sessions)
