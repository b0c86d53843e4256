"""ConsoleBus: the one channel from the host to its consoles. Every change a console must see
(ward changes from the hub, update progress from the OTA service) is published here with the
next sequence number; each console's event stream (SSE) is a Subscriber reading its own queue.

A console that falls too far behind is cut off rather than slowing the others down; it
reconnects and starts again from a fresh snapshot.
"""
from __future__ import annotations

import asyncio
from typing import Any

from .clock import Clock

SUBSCRIBER_QUEUE = 1000     # changes a slow console may fall behind before it is dropped

Event = tuple[str, dict[str, Any]]


class Subscriber:
    """One console's event stream: a queue of (event name, payload); None ends the stream."""

    def __init__(self, user: str, session: str = "") -> None:
        self.user = user
        self.session = session          # the console session it belongs to (to end it with the session)
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.dropped = False

    def end(self) -> None:
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            self.dropped = True


class ConsoleBus:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.seq = 0                                  # the number of the latest change
        self.subscribers: set[Subscriber] = set()

    def add(self, sub: Subscriber) -> None:
        self.subscribers.add(sub)

    def remove(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def __len__(self) -> int:
        return len(self.subscribers)

    def publish(self, name: str, payload: dict[str, Any]) -> int:
        """Give the change the next number and the time, and queue it for every console."""
        self.seq += 1
        event = (name, {"seq": self.seq, "time": self.clock.wall(), **payload})
        for sub in list(self.subscribers):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                # a console that cannot keep up is cut off; it reconnects to a fresh snapshot
                sub.dropped = True
                self.subscribers.discard(sub)
        return self.seq

    def end_all(self, session: str | None = None) -> None:
        """Finish every stream (server stopping), or those of one console session (logged out)."""
        for sub in list(self.subscribers):
            if session is None or sub.session == session:
                sub.end()
