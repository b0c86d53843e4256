"""MLLP (HL7's minimal lower layer protocol) through the `hl7` package's asyncio streams: a
client that keeps one connection to a peer, and a listener for inbound messages.

Each message is answered or awaited in order on one connection (HL7 original mode: the next
message goes after the ACK of the one before)."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import hl7
from hl7.mllp import InvalidBlockError, open_hl7_connection, start_hl7_server

from ..ratelog import RateLimitedLog
from .hl7msg import Hl7Error, parse

log = logging.getLogger("wardcall.integrations")
MESSAGE_LIMIT = 1 << 20          # an inbound block larger than this is refused (a runaway peer)
ENCODING = "utf-8"


class PeerUnreachable(Exception):
    """The peer could not be reached, did not answer in time, or hung up."""


class MllpClient:
    def __init__(self, host: str, port: int, connect_timeout_s: float) -> None:
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self._reader = None
        self._writer = None

    async def request(self, text: str, timeout_s: float) -> hl7.Message:
        """Send one message and return the peer's answer (PeerUnreachable if there is none)."""
        try:
            if self._writer is None:
                self._reader, self._writer = await asyncio.wait_for(
                    open_hl7_connection(self.host, self.port, encoding=ENCODING, limit=MESSAGE_LIMIT),
                    self.connect_timeout_s)
            self._writer.writeblock(text.encode(ENCODING))
            await asyncio.wait_for(self._writer.drain(), timeout_s)
            block = await asyncio.wait_for(self._reader.readblock(), timeout_s)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, InvalidBlockError, ValueError) as exc:
            self.close()
            what = "no answer in time" if isinstance(exc, asyncio.TimeoutError) else str(exc) or type(exc).__name__
            raise PeerUnreachable(f"{self.host}:{self.port}: {what}") from None
        try:
            return parse(block.decode(ENCODING, "replace"))
        except Hl7Error as exc:
            self.close()
            raise PeerUnreachable(f"{self.host}:{self.port}: its answer {exc}") from None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


Handler = Callable[[str], Awaitable[str]]


async def start_listener(host: str, port: int, handler: Handler, name: str) -> asyncio.AbstractServer:
    """Every inbound message goes to `handler`, whose text is the answer; a block that is not
    MLLP, or too large, closes that connection (logged), never the listener."""
    ratelog = RateLimitedLog(log)

    async def connected(reader, writer) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while True:
                try:
                    block = await reader.readblock()
                except asyncio.IncompleteReadError:
                    return                  # the peer hung up
                except (InvalidBlockError, ValueError) as exc:
                    ratelog.warning((name, "block"), "%s: from %s: not an MLLP block (%s): connection closed", name, peer, exc)
                    return
                reply = await handler(block.decode(ENCODING, "replace"))
                writer.writeblock(reply.encode(ENCODING))
                await writer.drain()
        except (OSError, ConnectionError) as exc:
            ratelog.warning((name, "io"), "%s: connection from %s: %s", name, peer, exc)
        finally:
            writer.close()

    return await start_hl7_server(connected, host, port, encoding=ENCODING, limit=MESSAGE_LIMIT)
