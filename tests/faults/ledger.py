"""Zero calls lost, zero counted twice: what was pressed against what the host recorded.

Three independent counts must agree for every device:
  presses    what the test did (kept by the test in a Ledger);
  placed     the call ids the terminal itself announced ("<kind> call <id> placed" on its console,
             or the ids a simulated terminal sent);
  record     the host's SQLite record, opened read-only: one `calls` row per (device, call id),
             and exactly one `call_placed` event per row.
"""
from __future__ import annotations

import re
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path

PLACED = re.compile(r"wardcall: calls: (\w+) call (\d+) placed")


def db_rows(database: Path, query: str, *args) -> list[dict]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(query, args)]
    finally:
        conn.close()


def recorded_calls(database: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for r in db_rows(database, "SELECT device, call_id FROM calls ORDER BY id"):
        out[r["device"]].append(r["call_id"])
    return dict(out)


def placed_events(database: Path) -> Counter:
    """call_placed events per calls.id (each must be exactly 1)."""
    return Counter(r["call"] for r in db_rows(database, "SELECT call FROM events WHERE kind = 'call_placed'"))


def console_placed(console: str) -> list[tuple[str, int]]:
    return [(m.group(1), int(m.group(2))) for m in PLACED.finditer(console)]


class Ledger:
    """What the test pressed, per device."""

    def __init__(self) -> None:
        self.presses: Counter = Counter()

    def press(self, device: str, n: int = 1) -> None:
        self.presses[device] += n

    def check(self, database: Path, placed: dict[str, list[int]]) -> None:
        """Assert: for every device, presses == ids the terminal placed == ids the host recorded,
        each recorded once, and one call_placed event per recorded call."""
        record = recorded_calls(database)
        problems = []
        for device in sorted(set(self.presses) | set(placed) | set(record)):
            pressed = self.presses.get(device, 0)
            ids = placed.get(device, [])
            rec = record.get(device, [])
            if len(ids) != pressed:
                problems.append(f"{device}: pressed {pressed}, the terminal placed {len(ids)} call(s) {ids}")
            if len(set(ids)) != len(ids):
                problems.append(f"{device}: the terminal reused a call id: {ids}")
            if sorted(rec) != sorted(ids):
                lost = sorted(set(ids) - set(rec))
                extra = sorted(set(rec) - set(ids))
                problems.append(f"{device}: lost {lost}, unexpected {extra} (recorded {rec}, placed {ids})")
            if len(set(rec)) != len(rec):
                problems.append(f"{device}: recorded twice: {rec}")
        rows = db_rows(database, "SELECT id, device, call_id FROM calls")
        events = placed_events(database)
        for r in rows:
            if events.get(r["id"], 0) != 1:
                problems.append(f"{r['device']} call {r['call_id']}: {events.get(r['id'], 0)} call_placed events")
        assert not problems, "\n".join(problems)

