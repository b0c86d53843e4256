"""ConsoleBus: the one channel from the host to its consoles. Every change a console must see
(ward changes from the hub, update progress from the OTA service) is published here with the
next sequence number; each console's event stream (SSE) is a Subscriber reading its own queue.

A console that falls too far behind is cut off rather than slowing the others down; it
reconnects and starts again from a fresh snapshot. A console that reconnects after a short gap
(a phone moving between access points) names the last change it has (SSE `Last-Event-ID`): the
bus keeps the latest RECENT_EVENTS changes, so it gets what it missed instead of a snapshot.
Event ids name the bus's run (`<epoch>-<seq>`): sequence numbers start again with each host run,
and an id of another run never replays the wrong changes.

A call published while a console has a backlog (a reconnect storm's thousands of terminal
changes) is also sent to it ahead of that backlog, once without an id and then again in its
place; a console takes a call's view only if it is newer than the one it has (`seq`).
"""
from __future__ import annotations

import asyncio
import secrets
from collections import deque
from typing import Any

from .clock import Clock

SUBSCRIBER_QUEUE = 1000     # changes a slow console may fall behind before it is dropped (at least)
EVENTS_PER_TERMINAL = 4     # … and this many per terminal: a whole ward reconnecting at once (an outage
                            # over) is a few changes per terminal, and must not cut every console off
RECENT_EVENTS = 4096        # changes kept for consoles that resume (Last-Event-ID)
AHEAD = frozenset({"call"})  # changes a console also gets ahead of its backlog …
AHEAD_AFTER = 100           # … when at least this many are queued before them (a reconnect storm)
AHEAD_MAX = 1000            # ahead copies kept per console (the oldest go; their in-order copy stays)

Event = tuple[str, dict[str, Any]]


class Subscriber:
    """One console's event stream: a queue of (event name, payload); None ends the stream."""

    def __init__(self, user: str, session: str = "", queue: int = SUBSCRIBER_QUEUE) -> None:
        self.user = user
        self.session = session          # the console session it belongs to (to end it with the session)
        # a queued change is a reference to the one published tuple: a long queue costs 8 bytes an entry
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(queue)
        # copies of calls published behind a backlog, to send before it: a call must not wait
        # behind thousands of terminal changes. They are sent without an SSE id, and the call
        # follows again in order, so a console that resumes still resumes at the right change.
        self.ahead: deque[Event] = deque(maxlen=AHEAD_MAX)
        self.dropped = False

    def take_ahead(self, written_up_to: int) -> list[Event]:
        """The ahead copies not yet written in order (seq above `written_up_to`), oldest first."""
        ahead = [e for e in self.ahead if e[1]["seq"] > written_up_to]
        self.ahead.clear()
        return ahead

    def end(self) -> None:
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            self.dropped = True


def subscriber_queue(terminals: int) -> int:
    """How far a console may fall behind in a ward of this many terminals."""
    return max(SUBSCRIBER_QUEUE, EVENTS_PER_TERMINAL * terminals)


class ConsoleBus:
    def __init__(self, clock: Clock, recent: int = RECENT_EVENTS, queue: int = SUBSCRIBER_QUEUE) -> None:
        self.clock = clock
        self.queue = queue                            # each console's queue (subscriber_queue)
        self.seq = 0                                  # the number of the latest change
        self.epoch = secrets.token_hex(4)             # this run's bus (event ids)
        self.subscribers: set[Subscriber] = set()
        self._recent: deque[Event] = deque(maxlen=recent)

    def event_id(self, seq: int) -> str:
        """The SSE id of a change."""
        return f"{self.epoch}-{seq}"

    def since(self, event_id: str) -> list[Event] | None:
        """The changes after the one an SSE id names, or None if they are not all kept (an id
        of another run, unknown, or older than the kept changes): then a snapshot it is."""
        epoch, _, number = event_id.strip().partition("-")
        if epoch != self.epoch or not number.isdigit() or len(number) > 18:
            return None
        seq = int(number)
        if seq > self.seq:
            return None
        if seq == self.seq:
            return []
        first = self._recent[0][1]["seq"] if self._recent else self.seq + 1
        if seq + 1 < first:
            return None         # some are gone
        return [e for e in self._recent if e[1]["seq"] > seq]

    def subscriber(self, user: str, session: str = "") -> Subscriber:
        return Subscriber(user, session, self.queue)

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
        self._recent.append(event)
        ahead = name in AHEAD
        for sub in list(self.subscribers):
            try:
                backlog = sub.queue.qsize()
                sub.queue.put_nowait(event)
                if ahead and backlog >= AHEAD_AFTER:
                    sub.ahead.append(event)
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
