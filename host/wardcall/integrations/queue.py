"""The integrations' own SQLite file beside the record (`<record>.integrations.db`): the outbound
queues (so nothing is lost while a peer is down, nor across a restart), what each alert was last
reported as, and the patient on each bed.

The ward never waits on it: `SideStore.execute()` hands a statement to one writer thread, which
commits what has come in since its last commit in one transaction (synchronous=FULL, like the
record). Reads happen once, at start, before anything is queued.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import queue
import sqlite3
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("wardcall.integrations")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, channel TEXT NOT NULL, payload TEXT NOT NULL,
                                   created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (call INTEGER PRIMARY KEY, facets TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS paged (call INTEGER PRIMARY KEY, escalation INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS patients (room TEXT NOT NULL, bed TEXT NOT NULL, patient TEXT NOT NULL,
                                     shown TEXT NOT NULL, since REAL NOT NULL, PRIMARY KEY (room, bed));
"""
_STOP = object()


class SideStore:
    """One SQLite file, one writer thread; statements are run in the order they were handed over."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="integrations-store", daemon=True)
        self._thread.start()
        self.failed: str | None = None

    def rows(self, sql: str, *args: Any) -> list[tuple]:
        """A read at start (before the writer has anything to do)."""
        return self._db.execute(sql, args).fetchall()

    def execute(self, sql: str, *args: Any) -> None:
        self._jobs.put((sql, args))

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            batch = [job]
            while True:                 # what came in meanwhile goes in the same transaction
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            stop = any(j is _STOP for j in batch)
            try:
                self._db.execute("BEGIN")
                for j in batch:
                    if j is not _STOP:
                        self._db.execute(j[0], j[1])
                self._db.execute("COMMIT")
                self.failed = None
            except sqlite3.Error as exc:
                # a full disk: what is in memory still goes out; logged, not a crash
                self.failed = str(exc)
                log.error("integrations store %s cannot be written: %s", self.path, exc)
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if stop:
                return

    def close(self, timeout: float = 5.0) -> None:
        self._jobs.put(_STOP)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._db.close()


class DurableQueue:
    """Messages for one peer, in order: in memory, and on disk until the peer has taken them."""

    def __init__(self, store: SideStore, channel: str, clock_wall: Any) -> None:
        self.store = store
        self.channel = channel
        self._wall = clock_wall
        self._items: collections.deque[tuple[int, str]] = collections.deque(
            store.rows("SELECT seq, payload FROM outbox WHERE channel = ? ORDER BY seq", channel))
        last = store.rows("SELECT MAX(seq) FROM outbox")[0][0]
        self._next = max(last or 0, *(s for s, _ in self._items), 0) + 1
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def reserve(self) -> int:
        """The next message's number (it names the message: MSH-10), taken before it is built."""
        seq = self._next
        self._next += 1
        return seq

    def put(self, seq: int, payload: str) -> None:
        self._items.append((seq, payload))
        self.store.execute("INSERT INTO outbox (seq, channel, payload, created) VALUES (?, ?, ?, ?)",
                           seq, self.channel, payload, self._wall())
        self._changed.set()

    def head(self) -> tuple[int, str] | None:
        return self._items[0] if self._items else None

    def done(self, seq: int) -> None:
        """The peer has it: off the queue."""
        if self._items and self._items[0][0] == seq:
            self._items.popleft()
            self.store.execute("DELETE FROM outbox WHERE seq = ?", seq)

    async def wait(self, timeout: float) -> bool:
        """Until something is queued, or the timeout; True if there is something."""
        if self._items:
            return True
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return bool(self._items)
