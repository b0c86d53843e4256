#!/usr/bin/env python3
"""Bench the board emulator: start N emulated boards (a trivial main.py idling in asyncio, polling
an input every 10 ms as the firmware does), then report start-up time, memory and CPU.

    python bench/bench_boards.py [--boards 200] [--idle 5]
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from boards.emulator.fleet import Fleet  # noqa: E402

APP = """
import asyncio, board
from machine import Pin
call = Pin(board.CALL, Pin.IN, Pin.PULL_UP)
lamp = Pin(board.LAMP_REASSURE, Pin.OUT, value=0)
async def main():
    print("up")
    while True:
        lamp.value(0 if call.value() else 1)
        await asyncio.sleep_ms(10)
asyncio.run(main())
"""

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def mem_kib(pid):
    rss = pss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pss = rss
    return rss, pss


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", type=int, default=200)
    ap.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU measurement")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    n = args.boards

    tmp = tempfile.TemporaryDirectory(prefix="bench-boards-") if not args.workdir else None
    work = Path(args.workdir or tmp.name)
    t0 = time.monotonic()
    fleet = Fleet.start(work / "fleet")
    t_sup = time.monotonic() - t0
    try:
        t1 = time.monotonic()
        boards = [fleet.add_board(f"b{i:03d}", flash_dir=work / f"b{i:03d}",
                                  files={"main.py": APP}) for i in range(n)]
        t_added = time.monotonic() - t1
        for b in boards:
            b.wait_console("up", 60)
        t_up = time.monotonic() - t1

        sup_pid = fleet.proc.pid
        pids = fleet.stats()["board_pids"]
        # response: press on every board, wait for every lamp
        t2 = time.monotonic()
        for b in boards:
            b.press("call")
        for b in boards:
            b.wait_output("lamp_reassure", 1, 10)
        t_resp = time.monotonic() - t2
        for b in boards:
            b.release("call")

        c0_sup = cpu_s(sup_pid)
        c0_b = sum(cpu_s(p) for p in pids)
        w0 = time.monotonic()
        time.sleep(args.idle)  # the measurement window itself
        w = time.monotonic() - w0
        c_sup = (cpu_s(sup_pid) - c0_sup) / w
        c_b = (sum(cpu_s(p) for p in pids) - c0_b) / w
        rss_sup, pss_sup = mem_kib(sup_pid)
        mems = [mem_kib(p) for p in pids]
        rss_b = sum(m[0] for m in mems)
        pss_b = sum(m[1] for m in mems)
        alive = sum(1 for b in boards if b.state()["alive"])

        print(f"boards:                {n} ({alive} alive)")
        print(f"supervisor start:      {t_sup:.2f} s")
        print(f"add_board x{n}:        {t_added:.2f} s")
        print(f"all printed 'up':      {t_up:.2f} s after the first add_board")
        print(f"press -> lamp, all:    {t_resp * 1000:.0f} ms for {n} boards")
        print(f"supervisor RSS/PSS:    {rss_sup / 1024:.1f} / {pss_sup / 1024:.1f} MiB")
        print(f"boards RSS/PSS total:  {rss_b / 1024:.0f} / {pss_b / 1024:.0f} MiB "
              f"({pss_b / 1024 / max(1, len(pids)):.1f} MiB PSS each)")
        print(f"idle CPU supervisor:   {c_sup * 100:.1f} % of one core")
        print(f"idle CPU boards total: {c_b * 100:.1f} % of one core "
              f"({os.cpu_count()} cores)")
    finally:
        t3 = time.monotonic()
        fleet.stop()
        print(f"stop:                  {time.monotonic() - t3:.2f} s")
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
