"""Every read of the record that is not the server's own bookkeeping: the calls of a period (the
report, the console's history) and what `wardcall log` and `wardcall status` show. The writes,
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
