"""Floods for the hostile-input tests, all on loopback: other 127.0.0.x addresses stand for other
machines (each client socket binds its local address), every loop bounded in count and time."""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import socket
import ssl
import time
from pathlib import Path
from typing import NamedTuple

from tests.faults.ledger import db_rows
from tests.support.simterm import discover
from wardcall.protocol import wardproto as wp

# "other machines": loopback addresses other than the real terminals' 127.0.0.1
OTHER_MACHINES = [f"127.0.0.{i}" for i in range(2, 10)]


def forged_hello(device: str, key: bytes | None = None) -> bytes:
    """A HELLO for `device` tagged with a key that is not its own (or `key`)."""
    session = wp.Session(key or os.urandom(32), False)
    args: list = [device, "forged-1", "forged", 0]
    if len(inspect.signature(session.hello).parameters) > 4:
        args.append(os.urandom(6))          # protocol 2: the board's hardware id
    return session.hello(*args)


def flood_discovers(port: int, count: int, real_device: str, sources: list[str] = OTHER_MACHINES) -> int:
    """`count` forged DISCOVERs (unknown ids, and the real device's id with a wrong key) from the
    given sources, as fast as the socket takes them. Returns how many answers came back."""
    socks = []
    for source in sources:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((source, 0))
        s.setblocking(False)
        socks.append(s)
    try:
        for n in range(count):
            device = real_device if n % 5 == 0 else f"ghost-{n:06d}"
            data = wp.discover(wp.Hmac(os.urandom(32)), device, os.urandom(wp.NONCE_LEN))
            with contextlib.suppress(BlockingIOError):
                socks[n % len(socks)].sendto(data, ("127.0.0.1", port))
            if n % 200 == 199:
                time.sleep(0.002)           # let the host's receive buffer drain a little
        answers = 0
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            for s in socks:
                with contextlib.suppress(BlockingIOError):
                    while s.recv(2048):
                        answers += 1
            time.sleep(0.05)
        return answers
    finally:
        for s in socks:
            s.close()


def attacker_tls(plain: bool) -> ssl.SSLContext | None:
    """What an attacker on the ward network speaks to a TLS port: TLS, trusting any certificate."""
    if plain:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class HelloFlood(NamedTuple):
    answered: int           # connections that got any answer (a forged HELLO must get none)
    closed: int             # connections the host closed after reading their HELLO (so refused)


async def flood_hellos(port: int, count: int, real_device: str, tls: ssl.SSLContext | None = None,
                       sources: list[str] = OTHER_MACHINES, at_once: int = 64, timeout: float = 60.0) -> HelloFlood:
    """`count` TCP connections (TLS with `tls`, as the ward speaks: an attacker has no need to
    trust the host's certificate), each sending one forged HELLO (unknown ids, and the real
    device's id with a wrong key) and waiting for the host to close it."""
    answered = closed = 0
    gate = asyncio.Semaphore(at_once)

    async def one(n: int) -> None:
        nonlocal answered, closed
        async with gate:
            device = real_device if n % 5 == 0 else f"ghost-{n:06d}"
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls,
                                                              local_addr=(sources[n % len(sources)], 0))
            except OSError:
                return
            try:
                writer.write(forged_hello(device))
                if await asyncio.wait_for(reader.read(64), 10):
                    answered += 1
                else:
                    closed += 1
            except (OSError, asyncio.TimeoutError):
                pass
            finally:
                writer.close()

    await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(count))), timeout)
    return HelloFlood(answered, closed)


async def discover_retrying(device: str, key: str, port: int, tries: int = 4) -> tuple[str, int]:
    """Discovery as a terminal does it, trying again: one DISCOVER may be dropped while the
    host's receive buffer is full of a flood."""
    for attempt in range(tries):
        try:
            return await discover(device, key, port, timeout=2)
        except (asyncio.TimeoutError, TimeoutError):
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def refusal_rows(database: Path) -> list[dict]:
    return db_rows(database, "SELECT * FROM events WHERE kind LIKE 'auth_refused%'")


def rows_of(database: Path, kind: str) -> list[dict]:
    return db_rows(database, "SELECT * FROM events WHERE kind = ?", kind)
