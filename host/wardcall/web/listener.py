"""The console API's own listener, in front of aiohttp's protocol: aiohttp waits for a request
head for as long as a client cares to dribble it and takes any number of connections, so a few
hundred slow clients would hold the console's port and the process's file descriptors.

Each connection is wrapped (GuardedConnection) around aiohttp's protocol from `runner.server`:
- its request head must arrive within `http_header_timeout_s`, and a small body (≤ 1 MiB) within
  `http_body_timeout_s` of its head; otherwise it is closed;
- connections are capped per source address and in total (`[network] http_connections_*`):
  past a cap the oldest connection that has not finished sending its request goes first (from
  the address holding the most), then the oldest idle one; an event stream (`/api/events`) is
  never dropped for a newcomer — with nothing left to drop, the newcomer is closed.
Every line about it is rate-limited. With an ssl context the console is served over HTTPS; a
TLS handshake must end within `http_header_timeout_s` (connections are counted from then on).

    listener = await start_api_listener(runner, host, port, config.network, ssl_context)
    listener.port ... await listener.close()
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import OrderedDict
from typing import Any, Callable

from aiohttp import web

from ..by_source import BySource
from ..config import Network
from ..ratelog import RateLimitedLog
from ..terminal_server import ACCEPT_BATCH, descriptor_limit
from ..ward.terminals import source_of

log = logging.getLogger("wardcall.web")
flood_log = RateLimitedLog(log)

HTTP_SHARE = 8                  # by default an eighth of the descriptor limit for HTTP connections
HTTP_MIN, HTTP_MAX = 32, 1024
MAX_HEAD = 64 * 1024            # a request head longer than this is not a console's
TIMED_BODY = 1024 * 1024        # bodies up to this must arrive in time; larger ones (firmware packages) are not timed

# where a connection is in its current request
HEAD, BODY, IDLE, STREAM, UNTRACKED = "head", "body", "idle", "stream", "untracked"


class RateLimitFilter(logging.Filter):
    """aiohttp logs each malformed request (with a traceback at debug level): at most one record
    per logger, level and message per period."""

    def __init__(self, period_s: float = 10.0, max_keys: int = 1024) -> None:
        super().__init__()
        self.period_s = period_s
        self.max_keys = max_keys
        self._last: dict[tuple[str, int, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.period_s:
            return False
        self._last.pop(key, None)
        self._last[key] = now
        if len(self._last) > self.max_keys:
            del self._last[next(iter(self._last))]
        return True


def limit_aiohttp_logs() -> None:
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimitFilter) for f in logger.filters):
            logger.addFilter(RateLimitFilter())


def http_limits(network: Network) -> tuple[int, int]:
    """(in total, per source address) for HTTP connections."""
    total = network.http_connections_max or min(HTTP_MAX, max(HTTP_MIN, descriptor_limit() // HTTP_SHARE))
    return total, min(network.http_connections_per_address or total, total)


class GuardedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, with a deadline for each request head and the
    connection counted in its listener's caps."""

    def __init__(self, listener: "ApiListener", inner: asyncio.Protocol) -> None:
        self.listener = listener
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.source = "?"
        self.state = HEAD
        self._head = bytearray()        # the current head so far (until its blank line)
        self._body_left = 0
        self._timer: asyncio.TimerHandle | None = None

    # ----- asyncio.Protocol, passed on to aiohttp -----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport      # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.source = source_of(f"{peer[0]}:{peer[1]}") if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
        self.inner.connection_made(transport)
        self._arm(self.listener.header_timeout_s, "no request head in time")
        self.listener.admit(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._track(data)
        except ValueError as exc:
            self.drop(str(exc))
            return
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.listener.forget(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # ----- the request framing, as far as the deadlines need it -----

    def _track(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self.state not in (STREAM, UNTRACKED):
            if self.state == IDLE:
                self.state = HEAD       # the next request begins: its head has a deadline of its own
                self._arm(self.listener.header_timeout_s, "no request head in time")
            if self.state == HEAD:
                start = max(0, len(self._head) - 3)
                self._head += view
                end = self._head.find(b"\r\n\r\n", start)
                if end < 0:
                    if len(self._head) > MAX_HEAD:
                        raise ValueError(f"a request head of more than {MAX_HEAD} bytes")
                    return
                used = end + 4 - (len(self._head) - len(view))
                self._head_done(bytes(self._head[:end]))
                self._head.clear()
                view = view[used:]
            elif self.state == BODY:
                used = min(len(view), self._body_left)
                self._body_left -= used
                view = view[used:]
                if self._body_left == 0:
                    self._disarm()
                    self.state = IDLE

    def _head_done(self, head: bytes) -> None:
        self._disarm()
        lines = head.split(b"\r\n")
        target = lines[0].split(b" ")[1] if len(lines[0].split(b" ")) > 1 else b""
        fields: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip().lower()
        if b"chunked" in fields.get(b"transfer-encoding", b"") or b"upgrade" in fields.get(b"connection", b""):
            self.state = UNTRACKED          # framing this listener does not follow: aiohttp's own limits apply
            return
        try:
            length = int(fields.get(b"content-length", b"0"))
        except ValueError:
            length = 0                      # aiohttp answers 400 for it
        if target.split(b"?")[0] == b"/api/events":
            self.state = STREAM             # a console's event stream: it stays
        elif length > TIMED_BODY:
            self.state = UNTRACKED
        elif length > 0:
            self.state = BODY
            self._body_left = length
            self._arm(self.listener.body_timeout_s, "request body not sent in time")
        else:
            self.state = IDLE

    # ----- deadlines and dropping -----

    def _arm(self, seconds: float, why: str) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expired, why)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, why: str) -> None:
        self._timer = None
        flood_log.warning(("expired", why), "console API: %s from %s (within %g s): connection closed",
                          why, self.source, self.listener.header_timeout_s if "head" in why else self.listener.body_timeout_s)
        self.drop(why)

    def drop(self, why: str) -> None:
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    @property
    def unfinished(self) -> bool:
        """Still sending its request (head or small body)."""
        return self.state in (HEAD, BODY)


class ApiListener:
    def __init__(self, protocol_factory: Callable[[], asyncio.Protocol], network: Network,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.protocol_factory = protocol_factory
        self.ssl_context = ssl_context
        self.header_timeout_s = network.http_header_timeout_s
        self.body_timeout_s = network.http_body_timeout_s
        self.total, self.per_address = http_limits(network)
        self.dropped = 0
        self._conns: BySource[GuardedConnection] = BySource()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        # asyncio accepts `backlog` connections per wake-up: a small batch keeps the caps exact
        self.server = await loop.create_server(lambda: GuardedConnection(self, self.protocol_factory()), host, port,
                                               backlog=ACCEPT_BATCH, ssl=self.ssl_context,
                                               ssl_handshake_timeout=self.header_timeout_s if self.ssl_context else None)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("console API connections: at most %d, %d per address; request heads within %g s",
                 self.total, self.per_address, self.header_timeout_s)
        return self.port

    @property
    def count(self) -> int:
        return self._conns.count

    def admit(self, conn: GuardedConnection) -> None:
        mine = self._conns.add(conn.source, conn)
        if len(mine) > self.per_address:
            self._make_room(mine, conn, f"more than {self.per_address} connections from {conn.source}")
        elif self.count > self.total:
            candidates = [c for c in self._conns.groups() if any(x.state != STREAM for x in c)]
            busiest = max(candidates, key=len) if candidates else mine
            self._make_room(busiest, conn, f"more than {self.total} connections")

    def _make_room(self, conns: OrderedDict[GuardedConnection, None], newcomer: GuardedConnection, why: str) -> None:
        """Drop the oldest unfinished connection, else the oldest idle one, else the newcomer."""
        victim = next((c for c in conns if c.unfinished and c is not newcomer), None) or \
            next((c for c in conns if c.state in (IDLE, UNTRACKED) and c is not newcomer), None) or newcomer
        self.dropped += 1
        flood_log.warning(("full", why.split(" from ")[0]), "console API: %s: closed %s from %s (%d so far)", why,
                          "the newcomer" if victim is newcomer else "the oldest unfinished" if victim.unfinished else "an idle one",
                          victim.source, self.dropped)
        self.forget(victim)
        victim.drop(why)

    def forget(self, conn: GuardedConnection) -> None:
        self._conns.remove(conn.source, conn)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            # connections still open are aiohttp's: runner.cleanup() shuts them down


async def start_api_listener(runner: web.BaseRunner, host: str, port: int, network: Network,
                             ssl_context: ssl.SSLContext | None = None) -> ApiListener:
    """Serve the set-up runner's application on host:port through an ApiListener (HTTPS with
    an ssl context)."""
    server: Any = runner.server
    if server is None:
        raise RuntimeError("the runner is not set up (await runner.setup() first)")
    limit_aiohttp_logs()
    listener = ApiListener(server, network, ssl_context)
    await listener.start(host, port)
    return listener
