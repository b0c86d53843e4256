"""The permanent record: SQLite in WAL mode, one writer.

Every message and state change goes to `events` with the wall clock, the monotonic clock and the
server run the monotonic reading belongs to; `calls` holds each call's lifecycle; `terminals`
what is known about each terminal across restarts. The server writes through one thread, so writes
never block the event loop and stay in order.

What could not be written (a full disk, an I/O error, a record that does not answer) is held by
the writer and goes with the next transaction: the lines of the record in order, and the calls and
terminals that changed, written with their state at that time (docs/HOST.md, "The record").
The record's files are watched while the host runs (a deleted WAL, a removed folder): what is
open is written back, so nothing the host holds is lost.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

from .ward import CALL_COLUMNS, Assignment, Call, Effects, Record, Terminal
from .write_order import ASSIGNMENTS, next_transaction

log = logging.getLogger("wardcall.storage")

SCHEMA_VERSION = 3     # 2: calls.hwid, a call's identity is (device, hwid, call id); 3: calls.route, assignments

# What a flood can multiply (unauthenticated or repeated input): kept to a row budget and an age.
# Lines of a call (events.call set) are never pruned, whatever their kind.
NOISE_KINDS = ("auth_refused", "frame_rejected", "console_login_failed", "password_confirmation_failed",
               "message_repeated", "cancel_unknown_call")
NOISE_ROWS_MAX = 200_000            # noise lines kept; the oldest go first
NOISE_MAX_AGE_S = 90 * 86400        # and none older than this
OTHER_ROWS_MAX = 2_000_000          # every line that is not a call's, noise included
# the SQL of "a noise line" (the kinds are constants of this module, not input)
NOISE = "call IS NULL AND kind IN (" + ", ".join(f"'{kind}'" for kind in NOISE_KINDS) + ")"
NOISE_INDEX = "events_noise_1"      # a new name whenever NOISE_KINDS changes

CALLS_TABLE = """CREATE TABLE IF NOT EXISTS {name} (
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
    hwid TEXT NOT NULL DEFAULT '',       -- the calling board's hardware id (hex): call ids are unique per board
    route TEXT,                          -- JSON: where the call is in its routing chain (ward/model.py Route)
    UNIQUE (device, hwid, call_id)
);"""

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
-- the lines that are not a call's, oldest first: what pruning counts and deletes (partial
-- indexes, so that no other query's order changes)
CREATE INDEX IF NOT EXISTS events_uncalled ON events (id) WHERE call IS NULL;
CREATE INDEX IF NOT EXISTS {noise_index} ON events (id) WHERE {noise};
{calls_table}
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
-- the staff assignment of each shift instance ("2026-12-01/early"): its charge nurse, and per bed
-- ("101/1") the primary and secondary nurse
CREATE TABLE IF NOT EXISTS shift_assignments (
    shift TEXT PRIMARY KEY,
    charge TEXT
);
CREATE TABLE IF NOT EXISTS bed_assignments (
    shift TEXT NOT NULL,
    bed TEXT NOT NULL,
    primary_user TEXT,
    secondary_user TEXT,
    PRIMARY KEY (shift, bed)
);
""".format(noise_index=NOISE_INDEX, noise=NOISE, calls_table=CALLS_TABLE.format(name="calls"))


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring an older record to SCHEMA_VERSION, in one transaction (nothing is lost or changed).
    The tables new in a version are made by SCHEMA itself (CREATE TABLE IF NOT EXISTS)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
    if "hwid" in columns and "route" in columns:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if "hwid" not in columns:
            # version 1: calls were unique by (device, call id); that constraint needs a new table
            old = ", ".join(sorted(columns))
            conn.execute(CALLS_TABLE.format(name="calls_v2"))
            conn.execute(f"INSERT INTO calls_v2 ({old}) SELECT {old} FROM calls")
            conn.execute("DROP TABLE calls")
            conn.execute("ALTER TABLE calls_v2 RENAME TO calls")
            conn.execute("CREATE INDEX IF NOT EXISTS calls_open ON calls (state) WHERE state != 'cleared'")
        else:
            # version 2: calls had no route (calls open then are routed again when restored)
            conn.execute("ALTER TABLE calls ADD COLUMN route TEXT")
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise

TERMINAL_COLUMNS = ("device", "room", "bed", "status", "seen", "last_seen", "presence", "firmware", "board", "address")

ROWS_PER_STATEMENT = 64             # rows one INSERT carries at most (insert_rows) …
MAX_VARIABLES = 999                 # … within SQLite's oldest limit on ? in one statement
PRUNE_CHUNK = 5000                  # rows deleted per transaction (the writer stays responsive)
HELD_RECORDS_MAX = 20_000           # lines that are not a call's held while the record cannot be written
REPEAT_KINDS = ("call_repeated",)   # a call's lines that only say a message came again (held: may go)


def statement_parts(rows: list[Any], variables_per_row: int, most: int = ROWS_PER_STATEMENT) -> Iterator[list[Any]]:
    """The rows in order, as many to a statement as SQLite's limit on variables allows (at most
    `most`). One statement for many rows, not executemany's one step a row: each step gives the
    GIL up and waits to get it back, and while the event loop is busy (a reconnect storm) that
    wait is up to the interpreter's switch interval a row. Measured in a storm: 64 rows in
    286 ms, a transaction of 6,685 lines in 1.06 s, with calls waiting behind it."""
    per = max(1, min(most, MAX_VARIABLES // variables_per_row))
    for start in range(0, len(rows), per):
        yield rows[start:start + per]


def insert_rows(conn: sqlite3.Connection, head: str, columns: int, rows: list[tuple[Any, ...]], tail: str = "") -> None:
    """`head VALUES (…), (…), … tail` for the rows, several to a statement (statement_parts)."""
    one = "(" + ", ".join(["?"] * columns) + ")"
    for part in statement_parts(rows, columns):
        conn.execute(f"{head} VALUES {', '.join([one] * len(part))} {tail}", [v for row in part for v in row])


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


def _is_corrupt(exc: sqlite3.Error) -> bool:
    """A damaged file ("file is not a database", "malformed"), not one we may not open or write."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)


def _check(path: Path) -> str | None:
    """None if the file is a sound wardcall database (or absent), else what is wrong. A file that
    cannot be opened (permissions, a read-only folder) is not corrupt: that is StorageError."""
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
    except sqlite3.Error as exc:
        if _is_corrupt(exc):
            return str(exc)
        raise StorageError(f"{path}: the record cannot be written: {_why_not_writable(path, exc)}") from None
    return None


def _why_not_writable(path: Path, exc: BaseException) -> str:
    """SQLite's reason, with what the file system says when that is clearer."""
    folder = path.parent
    if folder.exists() and not os.access(folder, os.W_OK):
        return f"its folder {folder} is read-only ({exc})"
    if path.exists() and not os.access(path, os.W_OK):
        return f"the file is read-only ({exc})"
    return str(exc)


def open_storage(path: Path, run: str | None = None) -> OpenedDatabase:
    """Open (or create) the record. A corrupt file is never overwritten: it is renamed aside
    with its -wal and -shm files and a fresh record is started; the caller raises an alarm.
    StorageError if the record cannot be written (a read-only file or folder): a host that
    cannot write cannot acknowledge any call."""
    problem = _check(path)
    renamed = None
    if problem is not None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        renamed = path.with_name(f"{path.name}.corrupt-{stamp}")
        n = 1
        while renamed.exists():
            renamed = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            path.rename(renamed)
            for suffix in ("-wal", "-shm"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    side.rename(renamed.with_name(renamed.name + suffix))
        except OSError as exc:
            raise StorageError(f"{path}: the record is unreadable ({problem}) and cannot be moved aside: {exc}") from None
    try:
        storage = Storage(path, run)
    except (sqlite3.Error, OSError) as exc:
        raise StorageError(f"{path}: the record cannot be written: {_why_not_writable(path, exc)}") from None
    storage.corrupt_problem = problem
    return OpenedDatabase(storage, renamed)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_dev, st.st_ino)


class Storage:
    """Synchronous access to the record; the server calls it through AsyncWriter (one thread)."""

    def __init__(self, path: Path, run: str | None = None) -> None:
        self.path = path
        self.wal = path.with_name(path.name + "-wal")
        self.run = run or uuid.uuid4().hex[:12]
        self.corrupt_problem: str | None = None
        self.detached: str | None = None        # the record's file is gone and not yet written back
        self._reports: deque[str] = deque()     # what happened to the record's files (for the alarm)
        self._closed = False                    # the connection was closed to write the record back
        self.noise_rows_max, self.noise_max_age_s, self.other_rows_max = NOISE_ROWS_MAX, NOISE_MAX_AGE_S, OTHER_ROWS_MAX
        self._rows: dict[str, int] | None = None  # noise lines and lines that are not a call's (for pruning)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = self._open(path)
        self.conn.executescript(SCHEMA)
        _migrate(self.conn)
        self.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        had_id = self.conn.execute("SELECT value FROM meta WHERE key = 'record_id'").fetchone()
        self.had_history = bool(self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM events) OR EXISTS (SELECT 1 FROM calls)").fetchone()[0])
        self.new_record = had_id is None and not self.had_history
        # the record's identity, also kept beside the ward TOML: a record replaced while the host
        # was down is noticed at the next start (record_guard.py)
        self.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('record_id', ?)", (uuid.uuid4().hex,))
        self.record_id: str = self.conn.execute("SELECT value FROM meta WHERE key = 'record_id'").fetchone()[0]
        # a real write at start: a record that cannot be written is found now, not at the first call
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('opened', ?)", (repr(time.time()),))
        self._ids = (_identity(path), _identity(self.wal))

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        conn = _connect(path)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            conn.close()
            raise StorageError(f"{path}: cannot switch the database to WAL mode (got {mode})")
        # FULL: a committed call survives a power cut, not only a crash of the process
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def close(self) -> None:
        self.conn.close()

    # ----- writing -----

    def commit(self, records: Iterable[Record], calls: Iterable[dict[str, Any]], terminals: Iterable[dict[str, Any]],
               assignments: Iterable[dict[str, Any]] = ()) -> None:
        """Store one batch of effects in one transaction; StorageError (with SQLite's own reason,
        e.g. "database or disk is full") if it cannot be written — then nothing of it is stored.
        The record's files are checked first: nothing is written into a file no longer there."""
        records = list(records)
        with self._transaction() as conn:
            insert_rows(conn, "INSERT INTO events (wall, mono, run, kind, device, call, user, data)", 8,
                        [(r.wall, r.mono, self.run, r.kind, r.device, r.call, r.user,
                          json.dumps(r.data, separators=(",", ":"))) for r in records])
            updates = ", ".join(f"{c} = excluded.{c}" for c in CALL_COLUMNS if c not in ("id", "device", "call_id"))
            insert_rows(conn, f"INSERT INTO calls ({', '.join(CALL_COLUMNS)})", len(CALL_COLUMNS),
                        [tuple(row[c] for c in CALL_COLUMNS) for row in calls],
                        f"ON CONFLICT (id) DO UPDATE SET {updates}")
            tupdates = ", ".join(f"{c} = excluded.{c}" for c in TERMINAL_COLUMNS if c != "device")
            insert_rows(conn, f"INSERT INTO terminals ({', '.join(TERMINAL_COLUMNS)})", len(TERMINAL_COLUMNS),
                        [tuple(row[c] for c in TERMINAL_COLUMNS) for row in terminals],
                        f"ON CONFLICT (device) DO UPDATE SET {tupdates}")
            for assignment in assignments:
                # a shift's whole assignment as it is now
                conn.execute("INSERT INTO shift_assignments (shift, charge) VALUES (?, ?) "
                             "ON CONFLICT (shift) DO UPDATE SET charge = excluded.charge",
                             (assignment["shift"], assignment["charge"]))
                conn.execute("DELETE FROM bed_assignments WHERE shift = ?", (assignment["shift"],))
                insert_rows(conn, "INSERT INTO bed_assignments (shift, bed, primary_user, secondary_user)", 4,
                            [(assignment["shift"], *bed) for bed in assignment["beds"]])
        if self._rows is not None:
            uncalled = [r.kind for r in records if r.call is None]
            self._rows["uncalled"] += len(uncalled)
            self._rows["noise"] += sum(1 for kind in uncalled if kind in NOISE_KINDS)

    def write_last_seen(self, seen: list[tuple[float, str]]) -> None:
        """(last_seen, device) of terminals whose rows are in the record, in one transaction. A
        row written whole later carries a newer value: the writer runs its jobs in order."""
        with self._transaction() as conn:
            # several rows a statement (statement_parts); CASE, not UPDATE … FROM, which SQLite
            # has only since 3.33
            for pairs in statement_parts(seen, 3):
                part = dict((device, value) for value, device in pairs)   # the last per device
                conn.execute("UPDATE terminals SET last_seen = CASE device " + "WHEN ? THEN ? " * len(part)
                             + "END WHERE device IN (" + ", ".join(["?"] * len(part)) + ")",
                             [v for pair in part.items() for v in pair] + list(part))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed at the end; the record's files checked first. Any
        failure rolls it back: StorageError with SQLite's own reason."""
        self.check_files()
        if self.detached is not None:
            raise StorageError(self.detached)
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
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
        self.commit(fx.records, [c.row() for c in fx.calls.values()], [t.row() for t in fx.terminals.values()],
                    [a.row() for a in fx.assignments.values()])

    # ----- the record's files while the host runs -----

    def take_reports(self) -> list[str]:
        """What happened to the record's files since the last call (deleted, written back …)."""
        out = []
        while self._reports:
            out.append(self._reports.popleft())
        return out

    def check_files(self) -> None:
        """Compare the open record with what its path holds. A deleted WAL: its frames are
        checkpointed into the database and a new WAL started. A deleted or replaced database, or
        a removed folder: the open database (still whole in its unlinked file) is written back to
        the path as soon as the folder is there or can be made; until then nothing is written
        (`detached`), so nothing is acknowledged that a restart would not find."""
        db_id, wal_id = self._ids
        now_db = _identity(self.path)
        if self.detached is None and now_db == db_id:
            now_wal = _identity(self.wal)
            if wal_id is None:
                self._ids = (db_id, now_wal)    # SQLite makes the WAL at the first write after opening
            elif now_wal != wal_id:
                self._new_wal()
            return
        if self.detached is None:
            if not self.path.parent.is_dir():
                what = f"the record's folder {self.path.parent} was removed while the host runs"
            elif now_db is None:
                what = f"the record's file {self.path} was deleted while the host runs"
            else:
                what = f"the record's file {self.path} was replaced by another file while the host runs"
            self.detached = what
            log.critical("%s", what)
            self._reports.append(f"{what}: nothing is recorded until the open record is written back there")
        self._write_back()

    def _new_wal(self) -> None:
        """The WAL file was deleted: what it holds is only in the open (unlinked) file. Copy it into
        the database (checkpoint), then reopen, so that SQLite writes a WAL that is on disk."""
        what = f"the record's WAL file {self.wal} was deleted while the host runs"
        log.critical("%s", what)
        try:
            busy = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            self.conn.close()
            self.conn = self._open(self.path)
        except (sqlite3.Error, OSError) as exc:
            self._reports.append(f"{what}; copying it into the database failed: {exc}")
            return
        self._ids = (_identity(self.path), _identity(self.wal))
        done = "its content was copied into the database and a new WAL started"
        if busy:
            done += " (a reader held part of it back: check the record)"
        self._reports.append(f"{what}: {done}")

    def _write_back(self) -> None:
        """Write the open database back to its path (sqlite3's backup API), then use that file.
        Whatever else is found at the path is kept aside, never overwritten."""
        assert self.detached is not None
        if self._closed:
            self._reopen_written_back()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return          # not yet: tried again at the next check
        stamp = time.strftime("%Y%m%dT%H%M%S")
        restoring = self.path.with_name(self.path.name + ".restoring")
        shm = self.path.with_name(self.path.name + "-shm")
        try:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            restoring.unlink(missing_ok=True)
            target = sqlite3.connect(restoring)
            try:
                self.conn.backup(target)
            finally:
                target.close()
            if self.path.exists():
                self.path.rename(self.path.with_name(f"{self.path.name}.replaced-{stamp}"))
            # a WAL at the path was ours (checkpointed, so empty) or came with another file
            if self.wal.exists():
                if self.wal.stat().st_size:
                    self.wal.rename(self.wal.with_name(f"{self.wal.name}.stale-{stamp}"))
                else:
                    self.wal.unlink()
            shm.unlink(missing_ok=True)       # an index, rebuilt from the WAL
        except (sqlite3.Error, OSError) as exc:
            self._reports.append(f"{self.detached}; writing it back failed: {exc}")
            log.error("writing the record back to %s failed: %s", self.path, exc)
            return
        # SQLite does not delete the WAL of a database file that has moved (the old one here)
        self.conn.close()
        self._closed = True
        os.replace(restoring, self.path)
        self._reopen_written_back()

    def _reopen_written_back(self) -> None:
        try:
            self.conn = self._open(self.path)
        except (sqlite3.Error, OSError) as exc:
            self._reports.append(f"{self.detached}; it was written back to {self.path} but cannot be opened: {exc}")
            return
        self._closed = False
        self._ids = (_identity(self.path), _identity(self.wal))
        self._reports.append(f"{self.detached}: it was written back from the open record, nothing was lost")
        log.warning("the record was written back to %s", self.path)
        self.detached = None

    # ----- upkeep (on the writer's thread, from the server's timers) -----

    def checkpoint(self) -> None:
        """Copy the WAL into the database (without waiting for readers): a lost WAL loses little."""
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def prune_step(self, now: float) -> Counter:
        """One step of pruning (one transaction of at most PRUNE_CHUNK rows, so that the writer
        stays responsive): the oldest lines that are not a call's beyond their budgets — noise
        older than `noise_max_age_s` or beyond `noise_rows_max` rows, then any such line beyond
        `other_rows_max` rows. What it deleted, by kind; nothing once every budget holds. A line
        of a call is never deleted. The row counts are kept as lines are written (counted once)."""
        if self.detached is not None:
            return Counter()
        if self._rows is None:
            self._rows = {"noise": self.conn.execute(f"SELECT count(*) FROM events WHERE {NOISE}").fetchone()[0],
                          "uncalled": self.conn.execute("SELECT count(*) FROM events WHERE call IS NULL").fetchone()[0]}
        oldest = self.conn.execute(f"SELECT id, kind, wall FROM events WHERE {NOISE} ORDER BY id LIMIT ?",
                                   (PRUNE_CHUNK,)).fetchall()
        doomed = [r for r in oldest if r["wall"] < now - self.noise_max_age_s]
        if not doomed and self._rows["noise"] > self.noise_rows_max:
            doomed = oldest[:self._rows["noise"] - self.noise_rows_max]
        if not doomed and self._rows["uncalled"] > self.other_rows_max:
            doomed = self.conn.execute("SELECT id, kind FROM events WHERE call IS NULL ORDER BY id LIMIT ?",
                                       (min(PRUNE_CHUNK, self._rows["uncalled"] - self.other_rows_max),)).fetchall()
        deleted: Counter = Counter(r["kind"] for r in doomed)
        if not doomed:
            return deleted
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            # up to MAX_VARIABLES ids a statement, not a step a row (statement_parts)
            for ids in statement_parts([r["id"] for r in doomed], 1, MAX_VARIABLES):
                self.conn.execute(f"DELETE FROM events WHERE id IN ({', '.join(['?'] * len(ids))})", ids)
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self._rows["noise"] -= sum(n for kind, n in deleted.items() if kind in NOISE_KINDS)
        self._rows["uncalled"] -= len(doomed)
        return deleted

    # ----- reading -----

    def find_call(self, device: str, call_id: int, hwid: str = "") -> dict[str, Any] | None:
        return self._find_call(self.conn, device, call_id, hwid)

    def find_call_beside(self, device: str, call_id: int, hwid: str = "") -> dict[str, Any] | None:
        """find_call on a read-only connection of its own (opened for this one look-up): it
        answers while the writer's connection waits for a lock or the disk (WAL readers do not
        wait for a writer), and from the file as it is now."""
        try:
            conn = _connect(self.path, readonly=True)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the record: {exc} ({self.path})") from exc
        try:
            return self._find_call(conn, device, call_id, hwid)
        finally:
            conn.close()

    def _find_call(self, conn: sqlite3.Connection, device: str, call_id: int, hwid: str) -> dict[str, Any] | None:
        try:
            row = conn.execute("SELECT * FROM calls WHERE device = ? AND hwid = ? AND call_id = ?",
                               (device, hwid, call_id)).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the record: {exc} ({self.path})") from exc
        return dict(row) if row else None

    def call_ceilings(self) -> dict[tuple[str, str], int]:
        """Per board (device, hwid): the highest call id the record holds (one pass over the
        calls' (device, hwid, call_id) index)."""
        try:
            rows = self.conn.execute("SELECT device, hwid, max(call_id) FROM calls GROUP BY device, hwid").fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the record: {exc} ({self.path})") from exc
        return {(device, hwid): ceiling for device, hwid, ceiling in rows}

    def open_calls(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM calls WHERE state != 'cleared' ORDER BY id")]

    def terminal_rows(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM terminals")]

    def next_call_id(self) -> int:
        return (self.conn.execute("SELECT max(id) FROM calls").fetchone()[0] or 0) + 1

    def assignment_rows(self) -> list[dict[str, Any]]:
        """Every shift's assignment as Assignment.row() gives it (for the restart)."""
        shifts: dict[str, dict[str, Any]] = {}
        for r in self.conn.execute("SELECT shift, charge FROM shift_assignments ORDER BY shift"):
            shifts[r["shift"]] = {"shift": r["shift"], "charge": r["charge"], "beds": []}
        for r in self.conn.execute("SELECT * FROM bed_assignments ORDER BY shift, bed"):
            entry = shifts.setdefault(r["shift"], {"shift": r["shift"], "charge": None, "beds": []})
            entry["beds"].append((r["bed"], r["primary_user"], r["secondary_user"]))
        return list(shifts.values())


# ----- the one writer ---------------------------------------------------------------------------


class _Worker:
    """One daemon thread running jobs in order. A daemon, so that a disk that never answers
    cannot keep the process from ending; `busy_since` tells how long the current job has run."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.busy_since: float | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any,
               then: Callable[[Any], None] | None = None) -> asyncio.Future:
        """`then`, if given, runs on the loop with the result of a job that succeeded, in the
        same turn as the result arrives and before the future's awaiters wake."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((loop, future, fn, args, then))
        return future

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, fn, args, then = job
            self.busy_since = time.monotonic()
            try:
                result, error = fn(*args), None
            except BaseException as exc:    # handed to the awaiting coroutine
                result, error = None, exc
            finally:
                self.busy_since = None
            with contextlib.suppress(RuntimeError):     # the loop is gone (the server stopped)
                loop.call_soon_threadsafe(_settle, future, result, error, then)

    def stop(self, timeout: float) -> bool:
        """True if the thread ended within the timeout."""
        self._jobs.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()


def _settle(future: asyncio.Future, result: Any, error: BaseException | None,
            then: Callable[[Any], None] | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
        return
    if then is not None:
        try:
            then(result)
        except Exception:
            log.exception("after a job of the record")
    future.set_result(result)


QUEUED, WRITING, WRITTEN, HELD, WITHDRAWN = "queued", "writing", "written", "held", "withdrawn"


@dataclass(eq=False)
class Batch:
    """One input's effects on their way to the record. `future` settles with the first outcome
    of its transaction; a batch that failed is HELD and goes with the next transaction."""
    records: list[Record]
    calls: dict[int, Call]
    terminals: dict[str, Terminal]
    future: asyncio.Future
    assignments: dict[str, Assignment] = field(default_factory=dict)
    state: str = QUEUED
    problem: str | None = None
    waiters: list[asyncio.Future] = field(default_factory=list)   # AsyncWriter.wait

    def settle(self, error: BaseException | None = None) -> None:
        """The first outcome: the future, and whoever waits for it woken in this same turn."""
        if not self.future.done():
            if error is None:
                self.future.set_result(None)
            else:
                self.future.set_exception(error)
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)


class WriterListener(Protocol):
    """What the writer tells the hub, on the event loop."""

    def record_written(self, calls: list[tuple[Call, str]]) -> None: ...

    def record_failed(self, problem: str) -> None: ...

    def record_files_changed(self, reports: list[str]) -> None: ...


def _content_error(exc: BaseException) -> bool:
    """An error in what was to be written (a bug), not in the disk: retrying cannot help."""
    cause = exc.__cause__ if isinstance(exc, StorageError) else exc
    return isinstance(cause, (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
                              TypeError, ValueError, OverflowError))


@dataclass
class _Group:
    batches: list[Batch]
    calls: dict[int, Call] = field(default_factory=dict)
    terminals: dict[str, Terminal] = field(default_factory=dict)
    assignments: dict[str, Assignment] = field(default_factory=dict)


class AsyncWriter:
    """The one writer: every storage call runs, in order, on one worker thread.

    Commits are grouped: batches that arrive while a transaction is being written go together
    into the next one (one fsync for many calls when a whole ward reconnects at once); behind a
    backlog of more than write_order.TRANSACTION_LINES lines the next one takes the calls first
    (write_order.py), so a call never waits for a ward's worth of other lines. What could
    not be written is held and goes first into the next transaction, with the calls and terminals
    that changed written as they are then (a newer state is never overwritten by an older one).
    Held lines that are not a call's are capped (HELD_RECORDS_MAX; what is dropped is counted in
    `dropped`); a call and its lines are never dropped.
    """

    def __init__(self, storage: Storage, held_records_max: int = HELD_RECORDS_MAX) -> None:
        self.storage = storage
        self.held_records_max = held_records_max
        self.listener: WriterListener | None = None
        self.dropped: Counter = Counter()       # kind -> lines dropped while held
        self._worker = _Worker("wardcall-db")
        self._queue: list[Batch] = []
        self._held: list[Batch] = []
        self._dirty_calls: dict[int, Call] = {}
        self._dirty_terminals: dict[str, Terminal] = {}
        self._dirty_assignments: dict[str, Assignment] = {}
        self._drain_task: asyncio.Task | None = None
        self._writing: list[Batch] = []         # the batches of the transaction under way
        self._writing_calls: dict[int, Call] = {}   # and its calls
        self._reader: _Worker | None = None     # look-ups beside a writer that hangs (find_call_beside)
        self._retry = False
        # per board (device, hwid): the highest call id the record may hold, every board's read
        # at once (load_ceilings), and the highest this process has queued for writing at all
        self._ceilings: dict[tuple[str, str], int] | None = None
        self._queued_ceilings: dict[tuple[str, str], int] = {}

    # ----- what the hub asks -----

    def submit(self, fx: Effects) -> Batch:
        """Queue the effects for the next transaction; the batch's future tells the outcome."""
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)
        batch = Batch(list(fx.records), dict(fx.calls), dict(fx.terminals), future, dict(fx.assignments))
        self._queue.append(batch)
        self._mark(fx)
        self._start()
        return batch

    def hold(self, fx: Effects) -> Batch:
        """Keep the effects for the next transaction without starting one (the record alarm's
        own line, raised because a write failed)."""
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)
        batch = Batch(list(fx.records), dict(fx.calls), dict(fx.terminals), future, dict(fx.assignments), HELD,
                      "not yet written")
        self._held.append(batch)
        self._mark(fx)
        return batch

    def _mark(self, fx: Effects) -> None:
        """The calls, terminals and assignments to write (as they are at the transaction)."""
        self._dirty_calls.update(fx.calls)
        for call in fx.calls.values():
            board = (call.device, call.hwid)
            if call.call_id > self._queued_ceilings.get(board, -1):
                self._queued_ceilings[board] = call.call_id
                if self._ceilings is not None and call.call_id > self._ceilings.get(board, -1):
                    self._ceilings[board] = call.call_id
        self._dirty_terminals.update(fx.terminals)
        self._dirty_assignments.update(fx.assignments)

    async def commit(self, fx: Effects) -> None:
        """Submit and wait for the outcome (StorageError if it could not be written)."""
        await self.submit(fx).future

    def withdraw(self, batch: Batch) -> bool:
        """Take a batch back that is not in a transaction (queued, or held after a failure):
        True if it will not be written. Its calls and terminals stay marked: what is written of
        them is always their state at that time."""
        for pending in (self._queue, self._held):
            if batch in pending:
                pending.remove(batch)
                batch.state = WITHDRAWN
                return True
        return False

    def flush(self) -> None:
        """Try again to write what is held (from the timers); after the write under way, if any."""
        if self.held:
            self._retry = True
            self._start()

    @property
    def held(self) -> bool:
        """Something could not be written yet: it waits for the next transaction (or is in the
        one under way, tried again)."""
        return bool(self._held) or any(b.problem is not None for b in self._writing)

    @property
    def writing(self) -> bool:
        return self._drain_task is not None and not self._drain_task.done()

    def held_counts(self) -> tuple[int, int]:
        """(lines held, calls held)."""
        return sum(len(b.records) for b in self._held), len(self._dirty_calls)

    def busy_for(self) -> float:
        """Seconds the worker has spent on its current job (0 when idle): a record that does not
        answer shows here."""
        since = self._worker.busy_since
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    def current_job(self) -> float | None:
        """When the worker's current job began (it names the job), None when idle."""
        return self._worker.busy_since

    async def settled(self) -> None:
        """Wait until nothing is being written (what is queued meanwhile is written too)."""
        while self.writing:
            assert self._drain_task is not None
            await asyncio.shield(self._drain_task)

    async def run(self, fn, *args):
        return await self._worker.submit(fn, *args)

    async def wait(self, batch: Batch, timeout: float) -> None:
        """Until the batch has an outcome (its future done) or `timeout` has passed; woken in the
        turn after the outcome (asyncio.wait on the future took three turns more, at 5,000
        terminals each turn a chance to wait behind a burst of others)."""
        if batch.future.done():
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        batch.waiters.append(waiter)
        timer = loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            batch.waiters.remove(waiter)

    def holds_no_call(self, device: str, call_id: int, hwid: str = "") -> bool:
        """True when the record certainly has no such call, known without reading it: the id is
        above every call id of this board in the record and queued since. A board's call ids
        grow with its boot counter (PROTOCOL.md, CALL), so a new call needs no look-up before
        it is stored (nor waits for one while the record hangs); a board that counts again from
        the start (a reflash) is looked up. False until the ceilings are loaded."""
        return self._ceilings is not None and call_id > self._ceilings.get((device, hwid), -1)

    async def load_ceilings(self) -> None:
        """Read every board's highest call id (`wardcall serve` at its start, before a terminal
        is heard; else with the first look-up)."""
        if self._ceilings is not None:
            return
        read = await self.run(self.storage.call_ceilings)
        if self._ceilings is None:
            # calls queued meanwhile may not be in what was read: the higher of both
            for board, ceiling in self._queued_ceilings.items():
                read[board] = max(ceiling, read.get(board, -1))
            self._ceilings = read

    async def find_call(self, device: str, call_id: int, hwid: str = "") -> dict[str, Any] | None:
        await self.load_ceilings()
        return await self.run(self.storage.find_call, device, call_id, hwid)

    async def find_call_beside(self, device: str, call_id: int, hwid: str = "") -> dict[str, Any] | None:
        """find_call without waiting for the writer (its job hangs): a call with changes not yet
        written is as this process holds it; any other is read from the record beside the
        writer, on a thread of its own. Written or not, every change of a call is in one of the
        two (the look-up is on the loop, where changes are queued)."""
        key = (device, hwid, call_id)
        for pending in (self._dirty_calls, self._writing_calls):
            for call in pending.values():
                if call.key == key:
                    return call.row()
        if self._reader is None:
            self._reader = _Worker("wardcall-db-read")
        return await self._reader.submit(self.storage.find_call_beside, device, call_id, hwid)

    # ----- the transactions -----

    def _start(self) -> None:
        if self._drain_task is None or self._drain_task.done():
            # the first transaction goes to the worker now, not a turn later from the task
            first = self._begin() if self._due() else None
            self._drain_task = asyncio.get_running_loop().create_task(self._drain(first), name="record writer")

    def _due(self) -> bool:
        return bool(self._queue or (self._retry and self._held))

    def _begin(self) -> tuple[_Group, asyncio.Future]:
        """What is queued (and held) as one transaction, handed to the worker; once it is
        written, the batches are settled in the turn the worker's answer arrives."""
        self._retry = False
        batches, self._queue, keys = next_transaction(self._held, self._queue)
        self._held = []
        if keys is None:
            group = _Group(batches, self._dirty_calls, self._dirty_terminals, self._dirty_assignments)
            self._dirty_terminals, self._dirty_assignments = {}, {}
        else:
            # behind a backlog: the rows of what it takes; every call's row all the same (every
            # batch that changes a call is in it)
            terminals = {d: t for d, t in self._dirty_terminals.items() if d in keys}
            for device in terminals:
                del self._dirty_terminals[device]
            assignments, self._dirty_assignments = ((self._dirty_assignments, {}) if ASSIGNMENTS in keys
                                                    else ({}, self._dirty_assignments))
            group = _Group(batches, self._dirty_calls, terminals, assignments)
        self._dirty_calls = {}
        for batch in group.batches:
            batch.state = WRITING
        self._writing, self._writing_calls = group.batches, group.calls
        # rows are taken now, on the loop: each call and terminal as it is at this moment,
        # which every line up to now is in this transaction or an earlier one to match
        call_rows = [(c, c.row()) for c in group.calls.values()]
        records = [r for b in group.batches for r in b.records]

        def written(_: Any) -> None:
            self._writing, self._writing_calls = [], {}
            self._written(group.batches, call_rows)

        future = self._worker.submit(
            self.storage.commit, records, [row for _, row in call_rows], [t.row() for t in group.terminals.values()],
            [a.row() for a in group.assignments.values()], then=written)
        return group, future

    async def _drain(self, pending: tuple[_Group, asyncio.Future] | None) -> None:
        while pending is not None:
            group, future = pending
            try:
                await future            # written: settled already (`written` in _begin)
            except Exception as exc:
                self._writing = []
                if _content_error(exc):
                    log.exception("the record refused a write (a bug, not the disk): writing the batches one by one")
                    await self._one_by_one(group)
                else:
                    self._failed(group, exc)
                self._writing_calls = {}    # written by now, or marked again (_failed)
            self._report_files()
            pending = self._begin() if self._due() else None

    async def _one_by_one(self, group: _Group) -> None:
        """After an error in the content of a write: each batch alone, so that one bad batch (a
        bug) costs only itself, never the calls around it. The rows no batch names go last."""
        left_calls, left_terminals = dict(group.calls), dict(group.terminals)
        left_assignments = dict(group.assignments)
        batches: list[Batch | None] = [*group.batches, None]
        for i, batch in enumerate(batches):
            calls = batch.calls if batch is not None else dict(left_calls)
            terminals = batch.terminals if batch is not None else dict(left_terminals)
            assignments = batch.assignments if batch is not None else dict(left_assignments)
            records = batch.records if batch is not None else []
            call_rows = [(c, c.row()) for c in calls.values()]
            try:
                await self.run(self.storage.commit, records, [row for _, row in call_rows],
                               [t.row() for t in terminals.values()], [a.row() for a in assignments.values()])
            except Exception as exc:
                if not _content_error(exc):
                    self._failed(_Group([b for b in batches[i:] if b is not None], left_calls, left_terminals,
                                        left_assignments), exc)
                    return
                log.error("not written, a bug: %s; dropped: %s", exc,
                          ", ".join(r.kind for r in records) or f"the rows of calls {sorted(calls)}, terminals {sorted(terminals)}")
                if batch is not None:
                    batch.state = WITHDRAWN
                    batch.settle(StorageError(f"not written: {exc}"))
                continue
            for call, _ in call_rows:
                left_calls.pop(call.id, None)
            for device in terminals:
                left_terminals.pop(device, None)
            for shift in assignments:
                left_assignments.pop(shift, None)
            self._written([batch] if batch is not None else [], call_rows)

    def _written(self, batches: list[Batch], call_rows: list[tuple[Call, dict[str, Any]]]) -> None:
        if self._held:
            self._retry = True      # held meanwhile (the alarm's line): the record answers, so now
        for batch in batches:
            batch.state = WRITTEN
            batch.settle()
        if self.listener is not None:
            try:
                self.listener.record_written([(c, row["state"]) for c, row in call_rows])
            except Exception:
                log.exception("after a write")

    def _failed(self, group: _Group, exc: BaseException) -> None:
        problem = str(exc) or type(exc).__name__
        # held in order, before anything that arrived meanwhile; marked rows stay marked
        self._held = group.batches + self._held
        for batch in group.batches:
            batch.state = HELD
            batch.problem = problem
        for key, call in group.calls.items():
            self._dirty_calls.setdefault(key, call)
        for key, terminal in group.terminals.items():
            self._dirty_terminals.setdefault(key, terminal)
        for shift, assignment in group.assignments.items():
            self._dirty_assignments.setdefault(shift, assignment)
        self._cap_held()
        if self.listener is not None:
            try:
                self.listener.record_failed(problem)
            except Exception:
                log.exception("after a failed write")
        for batch in group.batches:
            batch.settle(StorageError(problem))

    def _cap_held(self) -> None:
        """A flood while the record cannot be written must not eat the memory: beyond the cap the
        newest lines that are not a call's go (noise and a call's repeats first); every other line
        of a call is always kept, and so is every call's row."""
        def countable(record: Record) -> bool:
            return record.call is None or record.kind in REPEAT_KINDS

        lines = sum(1 for b in self._held for r in b.records if countable(r))
        for first_pass in (True, False):
            for batch in reversed(self._held):
                if lines <= self.held_records_max:
                    return
                kept = []
                for record in reversed(batch.records):
                    droppable = record.kind in NOISE_KINDS or record.kind in REPEAT_KINDS if first_pass else countable(record)
                    if lines > self.held_records_max and droppable and countable(record):
                        self.dropped[record.kind] += 1
                        lines -= 1
                    else:
                        kept.append(record)
                batch.records = kept[::-1]

    def _report_files(self) -> None:
        reports = self.storage.take_reports()
        if reports and self.listener is not None:
            try:
                self.listener.record_files_changed(reports)
            except Exception:
                log.exception("after a change to the record's files")

    async def check_files(self) -> None:
        """The record's files compared with the open record (from the timers)."""
        try:
            await self.run(self.storage.check_files)
        finally:
            self._report_files()

    # ----- the end -----

    async def aclose(self, timeout: float = 5.0) -> bool:
        """Write what is queued or held (within the timeout), then close. False, logged, if
        something could not be written."""
        ok = True
        try:
            if self._queue or self._held or self._dirty_calls or self._dirty_terminals or self._dirty_assignments:
                self._retry = True
                self._start()
            if self._drain_task is not None:
                await asyncio.wait_for(asyncio.shield(self._drain_task), timeout)
            ok = not self._held
            await asyncio.wait_for(self.run(self.storage.close), timeout)
        except (asyncio.TimeoutError, sqlite3.Error, StorageError) as exc:
            log.critical("the record could not be closed cleanly: %s", exc or "it did not answer")
            ok = False
        if self._held:
            lines, calls = self.held_counts()
            log.critical("%d line(s) and %d call(s) of the record could not be written before the end", lines, calls)
        self._worker.stop(1.0)
        if self._reader is not None:
            self._reader.stop(1.0)
        return ok

    def close(self) -> None:
        """Close without an event loop (tests, tools): waits for the worker."""
        self._worker.stop(30.0)
        if self._reader is not None:
            self._reader.stop(30.0)
        self.storage.close()


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _retrieved(future: asyncio.Future) -> None:
    """A batch's outcome may be read by nobody (a caller that stopped waiting): no warning."""
    if not future.cancelled():
        future.exception()


def open_readonly(path: Path) -> sqlite3.Connection:
    """For the CLI readers (report, log, status) while the server writes."""
    if not path.exists():
        raise StorageError(f"{path}: no record yet (the server has not run with this configuration)")
    try:
        return _connect(path, readonly=True)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open the record: {exc}") from None
