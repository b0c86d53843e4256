"""Every read of the record that is not the server's own bookkeeping: the calls of a period (the
report, the console's history) and what `wardcall log` and `wardcall status` show
(record_text.py turns those into text). The writes,
and the reads the server needs to start, are in storage.py."""
from __future__ import annotations

import sqlite3


def calls_placed(conn: sqlite3.Connection, since: float | None = None, until: float | None = None) -> list[sqlite3.Row]:
    """Calls placed in [since, until), oldest first."""
    query = "SELECT * FROM calls WHERE 1=1"
    args: list[float] = []
    if since is not None:
        query += " AND placed_at >= ?"
        args.append(since)
    if until is not None:
        query += " AND placed_at < ?"
        args.append(until)
    return list(conn.execute(query + " ORDER BY placed_at, id", args))


def recent_events(conn: sqlite3.Connection, after_id: int = 0, last: int | None = None) -> list[sqlite3.Row]:
    """The `last` newest events (oldest first), or every event after `after_id` (`wardcall log -f`)."""
    if last is not None:
        rows = list(conn.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (last,)))
        return rows[::-1]
    return list(conn.execute("SELECT * FROM events WHERE id > ? ORDER BY id", (after_id,)))


def latest_server_start(conn: sqlite3.Connection) -> sqlite3.Row | None:
    return conn.execute("SELECT run, data FROM events WHERE kind = 'server_started' ORDER BY id DESC LIMIT 1").fetchone()


def open_calls(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """Calls not cleared, in board order (kind, then placed)."""
    return list(conn.execute("SELECT * FROM calls WHERE state != 'cleared' ORDER BY kind, placed_at, id"))


def terminal_rows(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return list(conn.execute("SELECT * FROM terminals"))
