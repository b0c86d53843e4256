"""`wardcall hospital --config hospital.toml`: the hospital console (docs/FEDERATION.md).

It reads the hub's hospital stream (every ward's events, sourced by the hub's JetStream from each
ward's leaf node) from its start, builds the hospital's view (board.py) and serves it: the house
supervisor's console at / (every ward's board, a filter per ward, the hospital-wide emergencies,
response times across wards) and the cross-ward teams' pocket console at /pocket/ (the
emergencies of their kinds from every ward, with Accept). An accept is a request to the ward's
host (wardcall.<ward>.rpc.accept, served on its leaf node link) and is answered with the ward's
answer once the ward has stored it. A hub that is down shows as such; the view catches up when
it is back, from the stream.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import signal
import ssl
import time
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
from aiohttp import web
from nats.js.api import ConsumerConfig, DeliverPolicy

from ..config import ConfigError
from ..passwords import dummy_hash, verify_password
from ..ratelog import RateLimitedLog, setup_logging
from ..tls import CERT_ALARM, CertificateWatch, TlsError, prepare_console
from ..web.login_guard import LoginGuard
from .board import HospitalBoard
from .hospital_config import HospitalConfig, load_hospital
from .hubstream import ensure_hospital_stream
from .subjects import HOSPITAL_STREAM, PREFIX, rpc_subject

CERT_CHECK_S = 3600.0           # how often the console certificate is checked (renewal, a new file)
log = logging.getLogger("wardcall.hospital")

WEB_DIR = Path(__file__).parent / "hospital_web"
CONSOLE_CSS = Path(__file__).parent.parent / "web" / "console" / "console.css"
COOKIE = "wardcall_hospital"
SESSION_HOURS = 12.0
ACCEPT_TIMEOUT_S = 5.0          # the ward host answers an accept within this, or it is 504
RETRY_S = 1.0
SUBSCRIBER_QUEUE = 2000
HEARTBEAT_S = 1.0               # the hub's consumer says it is alive this often (a stall is seen soon)
NATS_ERRORS = (nats.errors.Error, nats.js.errors.Error, asyncio.TimeoutError, OSError)


_web_log = RateLimitedLog(log)


class ConsoleStream:
    """One console's event stream; ended (it reconnects to a fresh snapshot) if it falls behind."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.ended = asyncio.Event()

    def end(self) -> None:
        self.ended.set()


PLAIN_HUB_ALARM = "hub:plain"


def plain_hub_urls(urls: tuple[str, ...]) -> list[str]:
    """The nats:// (unencrypted) hub addresses that leave this machine."""
    out = []
    for url in urls:
        host = url.partition("://")[2].rpartition("@")[2].rpartition(":")[0].strip("[]")
        if url.startswith("nats://") and host not in ("127.0.0.1", "::1", "localhost"):
            out.append(url)
    return out


def hub_login(config: HospitalConfig) -> dict[str, Any]:
    """nats.connect's TLS and login arguments for the hub, from hospital.toml."""
    kw: dict[str, Any] = {}
    if config.hub_ca is not None:
        ctx = ssl.create_default_context(cafile=str(config.hub_ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        kw["tls"] = ctx
    if config.hub_user:
        kw["user"], kw["password"] = config.hub_user, config.hub_password
    return kw


class HospitalService:
    def __init__(self, config: HospitalConfig) -> None:
        self.config = config
        self.board = HospitalBoard(config.wards)
        self.hub_connected = False
        self.applied = 0                           # stream messages taken
        self.last_seq = 0                          # the hospital stream's sequence of the last one
        self._resubscribe = asyncio.Event()
        self.consoles: set[ConsoleStream] = set()
        self.sessions: dict[str, tuple[str, float]] = {}      # token -> (login, expires: monotonic)
        self.login_guard = LoginGuard()                      # guessing slowed down as on the ward's console
        self._nc: Any = None
        self._task: asyncio.Task | None = None
        self._ratelog = RateLimitedLog(log)
        self.console_alarms: dict[str, str] = {}             # the console's own settings (plain HTTP)

    # ----- the hub -----

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="hospital-stream")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._nc is not None:
            await self._nc.close()
        for console in list(self.consoles):
            console.end()

    def _hub(self, connected: bool) -> None:
        if connected != self.hub_connected:
            self.hub_connected = connected
            (log.info if connected else log.warning)("hub %s", "connected" if connected else "lost: the view waits for it")
            self._tell("hub", {"connected": connected})

    async def _follow(self) -> None:
        async def disconnected() -> None:
            self._hub(False)

        async def reconnected() -> None:
            self._hub(True)
            self._resubscribe.set()     # go on from the last event taken, not after the heartbeats

        async def error(exc: Exception) -> None:
            self._ratelog.warning(("hub error",), "hub: %s", exc)

        while self._nc is None:
            try:
                self._nc = await nats.connect(servers=list(self.config.hub_urls), name="wardcall hospital",
                                              connect_timeout=2, reconnect_time_wait=0.5, max_reconnect_attempts=-1,
                                              disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error,
                                              **hub_login(self.config))
            except NATS_ERRORS as exc:
                self._ratelog.warning(("hub connect",), "cannot reach the hub %s: %s", ", ".join(self.config.hub_urls), exc)
                await asyncio.sleep(RETRY_S)
        js = self._nc.jetstream()
        sub = None
        while True:
            try:
                await ensure_hospital_stream(js, self.config.wards, self.config.standby, self.config.replicas)
                if sub is not None:
                    await sub.unsubscribe()
                # from the event after the last one taken (the first time: from the start)
                policy = {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": self.last_seq + 1} \
                    if self.last_seq else {"deliver_policy": DeliverPolicy.ALL}
                sub = await js.subscribe(f"{PREFIX}.>", stream=HOSPITAL_STREAM, ordered_consumer=True, cb=self._on_message,
                                         idle_heartbeat=HEARTBEAT_S, config=ConsumerConfig(**policy))
                self._hub(True)
                log.info("following %s on %s from event %d (wards %s)", HOSPITAL_STREAM, ", ".join(self.config.hub_urls),
                         self.last_seq + 1, ", ".join(self.config.wards))
                self._resubscribe.clear()
                await self._resubscribe.wait()
            except NATS_ERRORS as exc:
                self._ratelog.warning(("hub stream",), "the hub's stream %s: %s", HOSPITAL_STREAM, exc)
                await asyncio.sleep(RETRY_S)

    async def _on_message(self, msg: Any) -> None:
        seq = msg.metadata.sequence.stream
        if seq <= self.last_seq:
            return              # a consumer made again delivers from where it was told: nothing twice
        self.last_seq = seq
        self.applied += 1
        try:
            event = json.loads(msg.data)
            changes = self.board.apply(event) if isinstance(event, dict) else []
        except (ValueError, KeyError, TypeError) as exc:
            self._ratelog.warning(("bad event",), "an event on %s that is not a ward's: %s", msg.subject[:80], exc)
            return
        for name, payload in changes:
            self._tell(name, payload)

    def _tell(self, name: str, payload: dict[str, Any]) -> None:
        for console in list(self.consoles):
            try:
                console.queue.put_nowait((name, payload))
            except asyncio.QueueFull:      # a console that cannot keep up starts again from a snapshot
                self.consoles.discard(console)
                console.end()

    async def accept(self, ward: str, call_id: int, login: str, team: str) -> tuple[int, dict[str, Any]]:
        """A team member's accept, asked of the ward's host: (HTTP status, its answer)."""
        if self._nc is None or not self.hub_connected:
            return 503, {"error": "the hub is not connected: accept at the ward or by phone"}
        request = json.dumps({"call_id": call_id, "user": login, "team": team}).encode()
        try:
            reply = await self._nc.request(rpc_subject(ward, "accept"), request, timeout=ACCEPT_TIMEOUT_S)
        except nats.errors.NoRespondersError:
            return 503, {"error": f"ward {ward}'s host does not answer (down, or its leaf node is cut off)"}
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            return 504, {"error": f"ward {ward}'s host did not answer within {ACCEPT_TIMEOUT_S:g} s"}
        answer = json.loads(reply.data)
        if answer.get("ok"):
            return 200, answer["call"]
        status = {"not_found": 404, "conflict": 409, "invalid": 400, "bad_request": 400}.get(answer.get("status"), 503)
        return status, {"error": answer.get("error", "refused")}

    # ----- console sessions -----

    def login(self, login: str, password: str) -> str | None:
        user = self.config.users.get(login)
        if not verify_password(password, user.password_hash if user else dummy_hash()) or user is None:
            return None
        token = secrets.token_urlsafe(24)
        self.sessions[token] = (login, time.monotonic() + SESSION_HOURS * 3600)
        return token

    def user_of(self, request: web.Request) -> str | None:
        entry = self.sessions.get(request.cookies.get(COOKIE, ""))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def me(self, login: str) -> dict[str, Any]:
        user = self.config.users[login]
        return {"login": login, "name": user.name, "role": user.role,
                "teams": [{"id": t.id, "name": t.name, "kinds": sorted(t.kinds)} for t in self.config.teams_of(login)]}

    def state(self) -> dict[str, Any]:
        return {"hospital": self.config.name, "hub": {"connected": self.hub_connected},
                "console_alarms": sorted(self.console_alarms.values()), **self.board.snapshot()}


# ----- the web console -----

def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or origin in (f"http://{request.host}", f"https://{request.host}")


def make_app(service: HospitalService) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)

    def user(request: web.Request) -> str:
        login = service.user_of(request)
        if login is None:
            raise web.HTTPUnauthorized(text=json.dumps({"error": "log in first"}), content_type="application/json")
        return login

    def posted(request: web.Request) -> None:
        if not _same_origin(request):
            raise web.HTTPForbidden(text=json.dumps({"error": "not from this console"}), content_type="application/json")

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_DIR / "index.html")

    async def pocket(request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_DIR / "pocket.html")

    async def console_css(request: web.Request) -> web.FileResponse:
        return web.FileResponse(CONSOLE_CSS)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"pid": os.getpid(), "hub_connected": service.hub_connected, "events": service.applied})

    async def login(request: web.Request) -> web.Response:
        posted(request)
        try:
            body = await request.json()
            name, password = str(body["user"]), str(body["password"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "give user and password"}, status=400)
        address = request.remote or ""
        wait = service.login_guard.wait_s(name, address)
        if wait > 0:
            return web.json_response({"error": f"too many failed logins: try again in {wait:.0f} s"}, status=429,
                                     headers={"Retry-After": str(int(wait) + 1)})
        token = service.login(name, password)
        if token is None:
            service.login_guard.failed(name, address)
            _web_log.warning(("login", address), "hospital console: failed login for %r from %s", name[:64], address)
            return web.json_response({"error": "wrong user name or password"}, status=401)
        service.login_guard.succeeded(name, address)
        reply = web.json_response(service.me(name))
        reply.set_cookie(COOKIE, token, httponly=True, samesite="Strict", max_age=int(SESSION_HOURS * 3600))
        return reply

    async def logout(request: web.Request) -> web.Response:
        posted(request)
        service.sessions.pop(request.cookies.get(COOKIE, ""), None)
        reply = web.json_response({"ok": True})
        reply.del_cookie(COOKIE)
        return reply

    async def me(request: web.Request) -> web.Response:
        return web.json_response(service.me(user(request)))

    async def state(request: web.Request) -> web.Response:
        user(request)
        return web.json_response(service.state())

    async def events(request: web.Request) -> web.StreamResponse:
        user(request)
        console = ConsoleStream()
        service.consoles.add(console)
        reply = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await reply.prepare(request)
        try:
            await reply.write(f"event: state\ndata: {json.dumps(service.state())}\n\n".encode())
            while not console.ended.is_set():
                try:
                    name, payload = await asyncio.wait_for(console.queue.get(), 15)
                except asyncio.TimeoutError:
                    await reply.write(b": keep-alive\n\n")
                    continue
                await reply.write(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode())
        except ConnectionResetError:
            pass
        finally:
            service.consoles.discard(console)
        return reply

    async def accept(request: web.Request) -> web.Response:
        posted(request)
        login = user(request)
        ward, number = request.match_info["ward"], request.match_info["call"]
        board = service.board.wards.get(ward)
        if board is None or not number.isdigit():
            return web.json_response({"error": "no such ward or call"}, status=404)
        call = board.calls.get(int(number))
        if call is None:
            return web.json_response({"error": f"no open call {number} on ward {ward}"}, status=404)
        teams = [t for t in service.config.teams_of(login) if call["kind"] in t.kinds]
        if not teams:
            return web.json_response({"error": "your team is not alerted for this call"}, status=403)
        status, answer = await service.accept(ward, int(number), login, teams[0].name)
        return web.json_response(answer, status=status)

    async def report(request: web.Request) -> web.Response:
        user(request)
        return web.json_response({"report": service.board.report()})

    app.router.add_get("/", index)
    app.router.add_get("/pocket/", pocket)
    app.router.add_get("/console/console.css", console_css)
    app.router.add_static("/hospital/", WEB_DIR)
    app.router.add_get("/api/health", health)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/me", me)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/report", report)
    app.router.add_post("/api/calls/{ward}/{call}/accept", accept)
    return app


async def _watch_certificate(watch: CertificateWatch, service: HospitalService) -> None:
    async def report(alarm: str | None) -> None:
        if alarm:
            service.console_alarms[CERT_ALARM] = alarm
        else:
            service.console_alarms.pop(CERT_ALARM, None)
    await watch.run(CERT_CHECK_S, report, log)


async def serve_hospital(config: HospitalConfig, ready_file: Path | None = None) -> None:
    assert config.tls is not None
    try:
        console_tls = prepare_console(config.tls, config.name)
    except TlsError as exc:
        raise ConfigError(config.path, "[tls]", str(exc)) from None
    for line in console_tls.notes:
        log.warning("%s", line)
    for text in console_tls.alarms.values():
        log.warning("%s", text)
    service = HospitalService(config)
    service.console_alarms.update(console_tls.alarms)
    clear = plain_hub_urls(config.hub_urls)
    if clear:
        service.console_alarms[PLAIN_HUB_ALARM] = (
            f"the hub is reached in clear ({', '.join(clear)}): every ward's calls cross the network unencrypted; "
            "give the hub TLS (tls:// with hub_ca) and logins (docs/FEDERATION.md, \"Securing the links\")")
        log.warning("%s", service.console_alarms[PLAIN_HUB_ALARM])
    await service.start()
    runner = web.AppRunner(make_app(service), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, config.api_host, config.api_port, ssl_context=console_tls.console)
    try:
        await site.start()
    except OSError as exc:
        await service.aclose()
        raise ConfigError(config.path, "[hospital] api_port", f"{config.api_host}:{config.api_port}: {exc.strerror or exc}") from None
    port = runner.addresses[0][1]
    scheme = "https" if console_tls.console is not None else "http"
    log.info("hospital %s: console on %s://%s:%d/ (teams' pocket console /pocket/)", config.name, scheme,
             config.api_host, port)
    watch = None
    if console_tls.console is not None:
        watch = asyncio.create_task(_watch_certificate(CertificateWatch(config.tls, config.name, console_tls), service),
                                    name="certificate")
    if ready_file is not None:
        ready_file.write_text(json.dumps({"pid": os.getpid(), "api_port": port, "scheme": scheme}))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        if watch is not None:
            watch.cancel()
        await service.aclose()
        await runner.cleanup()


def cmd_hospital(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    config = load_hospital(Path(args.config))
    asyncio.run(serve_hospital(config, Path(args.ready_file) if args.ready_file else None))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("hospital", help="the hospital console: every ward's board over NATS (docs/FEDERATION.md)")
    p.add_argument("--config", required=True, help="the hospital TOML file")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--ready-file", help="write the console's port here as JSON once ready")
    p.set_defaults(func=cmd_hospital)
