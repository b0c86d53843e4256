"""UDP discovery: a terminal without a host address broadcasts DISCOVER; the host answers known
devices whose tag verifies with ANNOUNCE (its address and TCP port), tagged with that device's key.
"""
from __future__ import annotations

import asyncio
import logging
import socket

from .hub import WardHub
from .protocol import ProtocolError, wardproto

log = logging.getLogger("wardcall.discovery")


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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            self._answer(data, addr)
        except Exception:   # nothing a datagram contains may stop discovery
            log.exception("discovery datagram from %s failed", addr)

    def _refuse(self, device: str, address: str, reason: str) -> None:
        log.warning("discovery: refused %r from %s: %s", device, address, reason)
        asyncio.ensure_future(self.hub.apply(self.hub.ward.auth_refused(device, address, f"discovery: {reason}")))

    def _answer(self, data: bytes, addr: tuple) -> None:
        address = f"{addr[0]}:{addr[1]}"
        try:
            device = wardproto.peek_device(data)
            mtype, _, _ = wardproto.peek_header(data)
        except ProtocolError as exc:
            log.info("discovery: dropped a datagram from %s: %s", address, exc.message)
            return
        if mtype != wardproto.DISCOVER:
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
        network = self.hub.config.network
        host = network.announce_host
        if not host:
            host = network.terminal_host if network.terminal_host not in ("", "0.0.0.0", "::") else local_address_towards(addr[0])
        assert self.transport is not None
        self.transport.sendto(wardproto.announce(mac, msg["nonce"], host, self.tcp_port), addr)
        log.info("discovery: told %s (%s) the host is %s:%d", device, address, host, self.tcp_port)


async def start_discovery(hub: WardHub, host: str, port: int, tcp_port: int) -> tuple[asyncio.DatagramTransport, int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: DiscoveryProtocol(hub, tcp_port), local_addr=(host, port), allow_broadcast=True)
    return transport, transport.get_extra_info("sockname")[1]
