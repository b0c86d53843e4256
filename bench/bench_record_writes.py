#!/usr/bin/env python3
"""The record's writes while the event loop is busy: the host writes SQLite on its own thread
(storage.AsyncWriter), and every SQLite step lets the GIL go. While another thread computes
(the event loop in a reconnect storm) getting it back waits up to the switch interval (5 ms),
so a write of many rows one step a row (executemany) stalls. Timed here: one transaction of
--rows event lines written by a second thread with executemany and with storage.insert_rows
(several rows a statement), the main thread idle and then busy with pure-Python work.

    python bench/bench_record_writes.py [--rows 1000] [--repeats 5] [--switch-ms 5]
"""
from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from wardcall.storage import insert_rows  # noqa: E402

HEAD = "INSERT INTO events (wall, mono, run, kind, device, call, user, data)"


def timed_on_a_thread(write, repeats: int) -> list[float]:
    times: list[float] = []

    def run() -> None:
        for _ in range(repeats):
            t0 = time.perf_counter()
            write()
            times.append((time.perf_counter() - t0) * 1000)
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--switch-ms", type=float, default=None, help="sys.setswitchinterval, in ms (default: as it is)")
    args = ap.parse_args()
    if args.switch_ms is not None:
        sys.setswitchinterval(args.switch_ms / 1000)
    print(machine())
    print(f"switch interval {sys.getswitchinterval() * 1000:g} ms; SQLite {sqlite3.sqlite_version}, WAL, synchronous=FULL")
    with tempfile.TemporaryDirectory(prefix="bench-record-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "t.db", isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, wall, mono, run, kind, device, call, user, data)")
        rows = [(time.time(), float(i), "run", "terminal_connected", f"t{i}", None, None, '{"firmware":"0.1.0"}')
                for i in range(args.rows)]

        def one_step_a_row() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(HEAD + " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")

        def rows_a_statement() -> None:
            conn.execute("BEGIN IMMEDIATE")
            insert_rows(conn, HEAD, 8, rows)
            conn.execute("COMMIT")

        busy = threading.Event()

        def compute() -> None:
            x = 0
            while busy.is_set():
                x += 1
        for load in ("idle", "busy"):
            spinner = None
            if load == "busy":
                busy.set()
                spinner = threading.Thread(target=compute)
                spinner.start()
            for name, write in (("executemany", one_step_a_row), ("insert_rows", rows_a_statement)):
                times = timed_on_a_thread(write, args.repeats)
                print(f"  main thread {load}: {args.rows} lines, {name:12} median {statistics.median(times):8.1f} ms, "
                      f"max {max(times):8.1f} ms (n={len(times)})", flush=True)
            if spinner is not None:
                busy.clear()
                spinner.join()
        conn.close()


if __name__ == "__main__":
    main()
