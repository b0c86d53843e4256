"""The permanent record: SQLite in WAL mode, one writer.

Every message and state change goes to `events` with the wall clock, the monotonic clock and the
server run the monotonic reading belongs to; `calls` holds each call's lifecycle; `terminals`
what is known about each terminal across restarts. The server writes through one thread (an
executor with one worker), so writes never block the event loop and stay in order.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .ward import CALL_COLUMNS, Call, Effects, Record, Terminal

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    wall REAL NOT NULL,          -- unix seconds
    mono REAL NOT NULL,          -- monotonic seconds within the run
    run TEXT NOT NULL,           -- server run id: mono readings compare only within one run
    kind TEXT NOT NULL,
    device TEXT,
    call INTEGER,                -- calls.id
    user TEXT,
    data TEXT NOT NULL           -- JSON
);
CREATE INDEX IF NOT EXISTS events_wall ON events (wall);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    call_id INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    room TEXT NOT NULL,
    bed TEXT NOT NULL,
    state TEXT NOT NULL,
    placed_at REAL NOT NULL,
    received_at REAL NOT NULL,
    alerted_at REAL NOT NULL,
    acknowledged_at REAL,
    acknowledged_by TEXT,
    last_acknowledged_at REAL,
    attended_at REAL,
    attended_by TEXT,
    cleared_at REAL,
    cleared_reason TEXT,
    escalation INTEGER NOT NULL DEFAULT 0,
    realerts INTEGER NOT NULL DEFAULT 0,
    UNIQUE (device, call_id)
);
CREATE INDEX IF NOT EXISTS calls_open ON calls (state) WHERE state != 'cleared';
CREATE TABLE IF NOT EXISTS terminals (
    device TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    bed TEXT NOT NULL,
    status TEXT NOT NULL,
    seen INTEGER NOT NULL DEFAULT 0,
    last_seen REAL,
    presence INTEGER NOT NULL DEFAULT 0,
    firmware TEXT,
    board TEXT,
    address TEXT
);
"""

TERMINAL_COLUMNS = ("device", "room", "bed", "status", "seen", "last_seen", "presence", "firmware", "board", "address")


class StorageError(Exception):
    pass


@dataclass
class OpenedDatabase:
    storage: "Storage"
    renamed_corrupt: Path | None     # where a corrupt file was moved aside, if it was


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


def _check(path: Path) -> str | None:
    """None if the file is a sound wardcall database (or absent), else what is wrong."""
    if not path.exists():
        return None
    try:
        conn = _connect(path)
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                return f"integrity check failed: {result}"
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None


def open_storage(path: Path, run: str | None = None) -> OpenedDatabase:
    """Open (or create) the record. A corrupt file is never overwritten: it is renamed aside
    with its -wal and -shm files and a fresh record is started; the caller raises an alarm."""
    problem = _check(path)
    renamed = None
    if problem is not None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        renamed = path.with_name(f"{path.name}.corrupt-{stamp}")
        n = 1
        while renamed.exists():
            renamed = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
            n += 1
        path.rename(renamed)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.rename(renamed.with_name(renamed.name + suffix))
        storage = Storage(path, run)
        storage.corrupt_problem = problem
        return OpenedDatabase(storage, renamed)
    return OpenedDatabase(Storage(path, run), None)


class Storage:
    """Synchronous access to the record; the server calls it through AsyncWriter."""

    def __init__(self, path: Path, run: str | None = None) -> None:
        self.path = path
        self.run = run or uuid.uuid4().hex[:12]
        self.corrupt_problem: str | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = _connect(path)
        mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StorageError(f"{path}: cannot switch the database to WAL mode (got {mode})")
        # FULL: a committed call survives a power cut, not only a crash of the process
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.executescript(SCHEMA)
        self.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self.conn.close()

    def commit(self, records: Iterable[Record], calls: Iterable[dict[str, Any]], terminals: Iterable[dict[str, Any]]) -> None:
        """Store one batch of effects in one transaction; StorageError (with SQLite's own reason,
        e.g. "database or disk is full") if it cannot be written — then nothing of it is stored."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO events (wall, mono, run, kind, device, call, user, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.wall, r.mono, self.run, r.kind, r.device, r.call, r.user, json.dumps(r.data, separators=(",", ":")))
                 for r in records])
            cols = ", ".join(CALL_COLUMNS)
            marks = ", ".join("?" for _ in CALL_COLUMNS)
            updates = ", ".join(f"{c} = excluded.{c}" for c in CALL_COLUMNS if c not in ("id", "device", "call_id"))
            conn.executemany(
                f"INSERT INTO calls ({cols}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {updates}",
                [tuple(row[c] for c in CALL_COLUMNS) for row in calls])
            tcols = ", ".join(TERMINAL_COLUMNS)
            tmarks = ", ".join("?" for _ in TERMINAL_COLUMNS)
            tupdates = ", ".join(f"{c} = excluded.{c}" for c in TERMINAL_COLUMNS if c != "device")
            conn.executemany(
                f"INSERT INTO terminals ({tcols}) VALUES ({tmarks}) ON CONFLICT (device) DO UPDATE SET {tupdates}",
                [tuple(row[c] for c in TERMINAL_COLUMNS) for row in terminals])
            conn.execute("COMMIT")
        except BaseException as exc:
            # SQLite rolls a transaction back by itself after some failures (a full disk, an I/O
            # error at COMMIT): a ROLLBACK then would only hide the real error behind "cannot
            # rollback - no transaction is active"
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as rollback_exc:
                    exc.add_note(f"and the rollback failed too: {rollback_exc}")
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise StorageError(f"{exc} ({self.path})") from exc
            raise

    def commit_effects(self, fx: Effects) -> None:
        self.commit(fx.records, [c.row() for c in fx.calls.values()], [t.row() for t in fx.terminals.values()])

    def find_call(self, device: str, call_id: int) -> dict[str, Any] | None:
        try:
            row = self.conn.execute("SELECT * FROM calls WHERE device = ? AND call_id = ?", (device, call_id)).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the record: {exc} ({self.path})") from exc
        return dict(row) if row else None

    def open_calls(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM calls WHERE state != 'cleared' ORDER BY id")]

    def terminal_rows(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM terminals")]

    def next_call_id(self) -> int:
        return (self.conn.execute("SELECT max(id) FROM calls").fetchone()[0] or 0) + 1


class AsyncWriter:
    """The one writer: every storage call runs, in order, on one worker thread.

    Commits are grouped: batches that arrive while a transaction is being written go together
    into the next one (one fsync for many calls when a whole ward reconnects at once). Each
    caller still learns only after its own batch is on disk.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wardcall-db")
        self._queue: list[tuple[list[Record], list[dict[str, Any]], list[dict[str, Any]], asyncio.Future]] = []
        self._draining = False

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def commit(self, fx: Effects) -> None:
        # rows are taken now, on the loop, so later changes to the live objects cannot leak in
        calls = [c.row() for c in fx.calls.values()]
        terminals = [t.row() for t in fx.terminals.values()]
        done = asyncio.get_running_loop().create_future()
        self._queue.append((list(fx.records), calls, terminals, done))
        if not self._draining:
            self._draining = True
            asyncio.ensure_future(self._drain())
        await done

    async def _drain(self) -> None:
        try:
            while self._queue:
                group, self._queue = self._queue, []
                try:
                    await self.run(self.storage.commit, [r for g in group for r in g[0]],
                                   [c for g in group for c in g[1]], [t for g in group for t in g[2]])
                except Exception:
                    # one bad batch must not fail the others: write them one by one
                    for records, calls, terminals, done in group:
                        try:
                            await self.run(self.storage.commit, records, calls, terminals)
                        except Exception as exc:
                            if not done.done():     # its caller may have gone (cancelled)
                                done.set_exception(exc)
                        else:
                            if not done.done():
                                done.set_result(None)
                    continue
                for *_, done in group:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._draining = False

    async def find_call(self, device: str, call_id: int) -> dict[str, Any] | None:
        return await self.run(self.storage.find_call, device, call_id)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.storage.close()


def open_readonly(path: Path) -> sqlite3.Connection:
    """For the CLI readers (report, log, status) while the server writes."""
    if not path.exists():
        raise StorageError(f"{path}: no record yet (the server has not run with this configuration)")
    try:
        return _connect(path, readonly=True)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open the record: {exc}") from None
