"""A call behind a backlog in the record's writer (a whole ward reconnecting): it is written in a
small transaction of its own, ahead of the backlog, not after it; one terminal's lines stay in
their order; every line is written once. The hub in-process over a real SQLite record, its
writer's thread held while the backlog builds up."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from wardcall.clock import ManualClock
from wardcall.config import parse_config
from wardcall.hub import WardHub
from wardcall.protocol import wardproto as wp
from wardcall.storage import AsyncWriter, Storage
from wardcall.ward import Record
from wardcall.write_order import TRANSACTION_LINES, next_transaction

from tests.support.hubrig import IdleLink

pytestmark = [pytest.mark.timeout(60)]

BACKLOG = TRANSACTION_LINES * 3 // 2       # terminals reconnecting ahead of the call
CALL_ID = 0x00020001


class CountingStorage(Storage):
    """The real record; each transaction's number of lines and call ids noted as it is written."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.transactions: list[tuple[int, list[int]]] = []

    def commit(self, records, calls, terminals, assignments=()):
        records, calls = list(records), list(calls)
        super().commit(records, calls, terminals, assignments)
        self.transactions.append((len(records), [c["call_id"] for c in calls]))


def big_ward(n: int):
    return parse_config(Path("/tmp/test-ward.toml"), {
        "ward": {"name": "W"},
        "rooms": {str(1000 + i): {"beds": ["1"]} for i in range(n)},
        "terminals": {f"t{i}": {"room": str(1000 + i), "bed": "1"} for i in range(n)},
    })


@pytest.mark.asyncio
async def test_a_call_behind_a_reconnecting_ward_is_written_first_in_a_small_transaction(tmp_path):
    devices = [f"t{i}" for i in range(BACKLOG + 1)]
    caller = devices[-1]
    storage = CountingStorage(tmp_path / "ward.db")
    writer = AsyncWriter(storage)
    hub = WardHub(big_ward(len(devices)), {}, writer, ManualClock())
    await writer.load_ceilings()
    for device in devices:
        hub.attach(device, IdleLink())
    gate = threading.Event()
    blocked = asyncio.ensure_future(writer.run(gate.wait, 30))   # the writer's thread busy meanwhile
    try:
        # the ward comes back (the caller last), then the caller's call: all queued behind the gate
        connects = [asyncio.ensure_future(hub.apply(hub.ward.terminal_connected(d, "fw", "sim", 0, "127.0.0.1:1")))
                    for d in devices]
        call = asyncio.ensure_future(hub.terminal_call(caller, CALL_ID, wp.PATIENT, 0))
        for _ in range(100):            # until the call is placed (and so queued): a few turns
            if hub.ward.is_open(caller, CALL_ID):
                break
            await asyncio.sleep(0)
        assert hub.ward.is_open(caller, CALL_ID)
        gate.set()
        await blocked
        await asyncio.wait_for(call, 30)
        written_at_ack = list(storage.transactions)
        await asyncio.wait_for(asyncio.gather(*connects), 30)
        await writer.settled()
    finally:
        gate.set()
        await writer.aclose()

    # the call's transaction came right after the one under way, with only the caller's lines
    # (its connection and its call), while the backlog still waited
    with_call = [i for i, (_, ids) in enumerate(written_at_ack) if CALL_ID in ids]
    assert with_call == [1], written_at_ack
    assert written_at_ack[1][0] < 10, written_at_ack
    assert sum(n for n, _ in written_at_ack) < BACKLOG // 2, written_at_ack
    # the backlog behind it in transactions of about TRANSACTION_LINES lines, not one of them all
    assert max(n for n, _ in storage.transactions) <= TRANSACTION_LINES + 10, storage.transactions

    check = Storage(tmp_path / "ward.db")
    try:
        rows = [dict(r) for r in check.conn.execute("SELECT id, kind, device FROM events ORDER BY id")]
    finally:
        check.close()
    connected = [r for r in rows if r["kind"] == "terminal_connected"]
    assert sorted(r["device"] for r in connected) == sorted(devices)        # each once
    caller_lines = [r for r in rows if r["device"] == caller]
    assert caller_lines[0]["kind"] == "terminal_connected"                  # its own order kept
    placed = next(r for r in caller_lines if r["kind"] == "call_placed")
    ahead_of = [r for r in connected if r["id"] > placed["id"]]
    assert len(ahead_of) > BACKLOG // 2                                     # ahead of the backlog


class Queued:
    def __init__(self, *devices: str, call: bool = False, lines: int = 1, assignment: bool = False) -> None:
        self.records = [Record("x", 0.0, 0.0, devices[0] if devices else None) for _ in range(lines)]
        self.terminals = {d: object() for d in devices}
        self.calls = {1: type("C", (), {"device": devices[0]})()} if call else {}
        self.assignments = {"day": object()} if assignment else {}


def test_what_a_transaction_takes_behind_a_backlog():
    backlog = [Queued(f"t{i}") for i in range(30)]
    # under the limit: all of it, every row
    assert next_transaction([], backlog, most_lines=100) == (backlog, [], None)
    # over it, no call: the oldest, about the limit's worth
    first, left, keys = next_transaction([], backlog, most_lines=10)
    assert first == backlog[:10] and left == backlog[10:] and keys == {f"t{i}" for i in range(10)}
    # a call: it and all its device has queued (before and after it), and the devices those
    # batches name too (a batch about t3 and t4), nothing else
    t3_first, both, call, t4_later = Queued("t3"), Queued("t3", "t4"), Queued("t3", call=True), Queued("t4")
    queue = [*backlog[:5], t3_first, *backlog[5:10], both, call, *backlog[10:], t4_later]
    first, left, keys = next_transaction([], queue, most_lines=10)
    assert first == [backlog[3], backlog[4], t3_first, both, call, t4_later] and keys == {"t3", "t4"}
    assert left == [b for b in queue if b not in first]
    # what is held goes first, with what its devices have queued
    held = [Queued("t7")]
    first, left, keys = next_transaction(held, backlog, most_lines=10)
    assert first == [held[0], backlog[7]] and keys == {"t7"}
    # assignments keep their order among themselves
    a1, a2 = Queued(assignment=True), Queued(assignment=True)
    queue = [a1, *backlog, a2, call]
    first, left, keys = next_transaction([], queue, most_lines=10)
    assert a1 not in first and a2 not in first and call in first
    first, _, keys = next_transaction([], [a1, *backlog, a2], most_lines=10)
    assert first[0] is a1 and a2 in first
