"""Whether the other ward host of a primary and standby pair serves: its terminal port takes a
connection (a standby that has not taken over listens on nothing; docs/FEDERATION.md)."""
from __future__ import annotations

import asyncio

PROBE_TIMEOUT_S = 1.0


async def terminal_port_answers(address: str) -> bool:
    """True if host:port takes a TCP connection within PROBE_TIMEOUT_S."""
    host, _, port = address.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), PROBE_TIMEOUT_S)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True
