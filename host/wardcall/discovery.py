"""UDP discovery: a terminal without a host address broadcasts DISCOVER; the host answers known
devices whose tag verifies with ANNOUNCE (its address and TCP port), tagged with that device's key.

A terminal that refused the host's TLS certificate says so here too, in a REPORT tagged with
its device key (it has no session to say it in): the ward raises an alarm naming it.

A datagram's source address can be forged, so nothing here is unbounded: refusals go to the
ward, which aggregates them per source; ANNOUNCE replies are rate-limited per source address
(a token bucket: `[network] announce_burst`, `announce_per_s`), and so are REPORTs (a bucket of
their own, REPORT_BURST then REPORT_PER_S); a REPORT whose nonce was seen already (a replay) is
dropped; log lines are rate-limited.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Callable

from .hub import WardHub
from .protocol import ProtocolError, wardproto
from .ratelog import RateLimitedLog

log = logging.getLogger("wardcall.discovery")
flood_log = RateLimitedLog(log)
BUCKETS = 4096          # source addresses with a bucket of their own; the oldest are forgotten
REPORT_BURST = 10       # REPORTs per source address at once (a terminal sends one per 30 s)
REPORT_PER_S = 0.5
SEEN_NONCES = 4096      # REPORT nonces remembered against replays


class TokenBuckets:
    """One token bucket per key: `burst` at most, refilled at `rate` a second."""

    def __init__(self, burst: int, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.rate = rate
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}     # key -> (tokens, when)

    def take(self, key: str) -> bool:
        now = self.clock()
        tokens, then = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > BUCKETS:
            del self._buckets[next(iter(self._buckets))]
        return allowed


def local_address_towards(peer_ip: str) -> str:
    """The address of this host on the route to peer_ip (what the terminal can reach us on).
    A connected UDP socket sends nothing but makes the kernel choose the source address."""
    family = socket.AF_INET6 if ":" in peer_ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((peer_ip, 9))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


class DiscoveryProtocol(asyncio.DatagramProtocol):
    def __init__(self, hub: WardHub, tcp_port: int) -> None:
        self.hub = hub
        self.tcp_port = tcp_port
        self.transport: asyncio.DatagramTransport | None = None
        network = hub.config.network
        self.replies = TokenBuckets(network.announce_burst, network.announce_per_s)
        self.reports = TokenBuckets(REPORT_BURST, REPORT_PER_S)
        self._seen: dict[bytes, None] = {}
        self._pending: set[asyncio.Future] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            self._answer(data, addr)
        except Exception as exc:   # nothing a datagram contains may stop discovery
            if flood_log.log(logging.ERROR, ("failed", type(exc).__name__), "discovery datagram from %s failed: %r", addr, exc):
                log.error("the traceback of that failure", exc_info=True)

    def _refuse(self, device: str, address: str, reason: str) -> None:
        flood_log.warning(("refused", reason if reason in ("unknown device", "wrong key") else "other"), "discovery: refused %r from %s: %s", device[:64], address, reason)
        fx = self.hub.ward.auth_refused(device, address, f"discovery: {reason}")
        if fx:      # mostly nothing: the ward counts the attempt and records a row a minute
            task = asyncio.ensure_future(self.hub.apply(fx))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def _answer(self, data: bytes, addr: tuple) -> None:
        address = f"{addr[0]}:{addr[1]}"
        try:
            device = wardproto.peek_device(data)
            mtype, _, _ = wardproto.peek_header(data)
        except ProtocolError as exc:
            flood_log.info(("dropped",), "discovery: dropped a datagram from %s: %s", address, exc.message)
            return
        if mtype not in (wardproto.DISCOVER, wardproto.REPORT):
            return
        key = self.hub.keys.get(device)
        if device not in self.hub.config.terminals or key is None:
            self._refuse(device, address, "unknown device")
            return
        mac = wardproto.Hmac(key)
        try:
            msg = wardproto.decode_frame(mac, data, False)
        except ProtocolError as exc:
            self._refuse(device, address, "wrong key" if exc.code == wardproto.E_AUTH else exc.message)
            return
        if mtype == wardproto.REPORT:
            self._report(device, address, addr[0], msg)
            return
        if not self.replies.take(addr[0]):
            flood_log.warning(("limited",), "discovery: %s (%s) asks too often: not answered (at most %d at once, "
                              "then %g a second per address)", device, address, self.replies.burst, self.replies.rate)
            return
        network = self.hub.config.network
        host = network.announce_host
        if not host:
            host = network.terminal_host if network.terminal_host not in ("", "0.0.0.0", "::") else local_address_towards(addr[0])
        assert self.transport is not None
        self.transport.sendto(wardproto.announce(mac, msg["nonce"], host, self.tcp_port), addr)
        flood_log.info(("told", device), "discovery: told %s (%s) the host is %s:%d", device, address, host, self.tcp_port)


    def _report(self, device: str, address: str, source: str, msg: dict) -> None:
        """An authentic REPORT: at most a few per source, never the same one twice."""
        if msg["nonce"] in self._seen:
            flood_log.info(("replayed",), "discovery: a REPORT of %s from %s seen before (replayed): dropped", device, address)
            return
        self._seen[msg["nonce"]] = None
        if len(self._seen) > SEEN_NONCES:
            del self._seen[next(iter(self._seen))]
        if not self.reports.take(source):
            flood_log.warning(("reports",), "discovery: %s (%s) reports too often: dropped", device, address)
            return
        if msg["code"] != wardproto.REPORT_TLS_REFUSED:
            flood_log.info(("report code",), "discovery: %s reports unknown problem %d: %s", device, msg["code"], msg["detail"][:80])
            return
        flood_log.warning(("tls refused", device), "terminal %s (%s) refuses the host's TLS certificate: %s",
                          device, address, msg["detail"][:200])
        fx = self.hub.ward.tls_refused(device, address, msg["detail"][:200])
        if fx:
            task = asyncio.ensure_future(self.hub.apply(fx))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)


async def start_discovery(hub: WardHub, host: str, port: int, tcp_port: int) -> tuple[asyncio.DatagramTransport, int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: DiscoveryProtocol(hub, tcp_port), local_addr=(host, port), allow_broadcast=True)
    return transport, transport.get_extra_info("sockname")[1]
