# Finding the host by UDP: DISCOVER (device id, fresh nonce, device key tag) broadcast to the
# subnet's broadcast address (never 255.255.255.255), retried 1 s doubling to 8 s with jitter;
# only an ANNOUNCE whose tag verifies and that echoes the latest nonce is accepted. resolve()
# turns the host's name into the address the link connects to; every address conversion is here.
from micropython import const
import time
import errno
import socket
import asyncio
import wardproto

from backoff import Backoff
from log import log

_POLL_MS = const(50)


def _numeric(host):
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p or len(p) > 3 or not p.isdigit() or int(p) > 255:
            return False
    return True


def address_text(addr):
    """The IPv4 address in a getaddrinfo() result as text: the ESP32 port gives a tuple
    ("192.168.1.5", port), the unix port a raw sockaddr."""
    if isinstance(addr, tuple):
        return addr[0]
    family, raw, _ = socket.sockaddr(addr)
    return socket.inet_ntop(family, raw)


def resolve(host, port):
    """(numeric address, port) for the host, or None if the name does not resolve now. The
    link keeps the answer: on a board getaddrinfo blocks everything while DNS answers."""
    if _numeric(host):
        return host, port
    try:
        ip = address_text(socket.getaddrinfo(host, port, socket.AF_INET)[0][-1])
    except (OSError, IndexError) as e:
        log("discovery", "cannot look up %s: %r" % (host, e))
        return None
    log("discovery", "%s is %s" % (host, ip))
    return ip, port


def broadcast(ip, mask):
    a = [int(x) for x in ip.split(".")]
    m = [int(x) for x in mask.split(".")]
    return ".".join([str((a[i] & m[i]) | (~m[i] & 0xFF)) for i in range(4)])


async def find_host(wifi, device, mac, port, alive):
    """(host, port) from the first valid ANNOUNCE, or None if Wi-Fi drops meanwhile."""
    ip, mask = wifi.ifconfig()[:2]
    dest = socket.getaddrinfo(broadcast(ip, mask), port)[0][-1]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        except (OSError, AttributeError) as e:
            log("discovery", "SO_BROADCAST not set: %r" % (e,))
        s.setblocking(False)
        backoff = Backoff(1000, 8000)
        while wifi.connected():
            nonce = wardproto.new_nonce()
            try:
                s.sendto(wardproto.discover(mac, device, nonce), dest)
            except OSError as e:
                log("discovery", "send failed: %r" % (e,))
            deadline = time.ticks_add(time.ticks_ms(), backoff.next())
            while time.ticks_diff(deadline, time.ticks_ms()) > 0:
                await asyncio.sleep_ms(_POLL_MS)
                alive()
                try:
                    data = s.recv(wardproto.MAX_FRAME)
                except OSError as e:
                    if e.errno == errno.EAGAIN or e.errno == errno.ETIMEDOUT:
                        continue
                    log("discovery", "receive failed: %r" % (e,))
                    continue
                try:
                    host, hport = wardproto.accept_announce(mac, data, nonce)
                except wardproto.ProtocolError as e:
                    log("discovery", "ignored an ANNOUNCE: %s" % e)
                    continue
                log("discovery", "host at %s:%d" % (host, hport))
                return host, hport
            log("discovery", "no answer yet")
        return None
    finally:
        s.close()
