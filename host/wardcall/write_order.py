"""Which queued batches the record's next transaction takes.

Usually all of them (one fsync for everything that came while the last transaction was being
written). Behind a backlog (a whole ward reconnecting: thousands of lines) that would make a
call wait for the backlog's transaction and then sit in the next one with everything that came
meanwhile. So when more than `most_lines` lines wait, a transaction takes, in this order:
- what is held after a failure (it is older than anything queued);
- every batch that changes a call;
- only when neither is there, the oldest of the rest, until about `most_lines` lines.
Whatever it takes of a device, it takes all that device has queued (and so on for the devices
those batches name), so one terminal's lines are never written out of their order, and the rows
written with them are never ahead of lines still waiting. Lines of different terminals may be
written in another order than they came; each line keeps its own time.
"""
from __future__ import annotations

from typing import Hashable, Protocol, Sequence

TRANSACTION_LINES = 1000     # a call behind a backlog waits for at most one transaction of about this many

ASSIGNMENTS = ("assignments",)   # the key of batches that change a shift's assignment: they keep their order


class Queued(Protocol):
    records: list
    calls: dict
    terminals: dict
    assignments: dict


def keys_of(batch: Queued) -> set[Hashable]:
    """What the batch's lines and rows are about: its devices (and ASSIGNMENTS)."""
    keys: set[Hashable] = {r.device for r in batch.records if r.device is not None}
    keys.update(batch.terminals)
    keys.update(c.device for c in batch.calls.values())
    if batch.assignments:
        keys.add(ASSIGNMENTS)
    return keys


def next_transaction(held: Sequence[Queued], queue: Sequence[Queued], most_lines: int = TRANSACTION_LINES
                     ) -> tuple[list, list, set[Hashable] | None]:
    """(the batches of the next transaction, held first, each in its order; the batches left
    queued, in their order; the keys whose rows go with it, or None: every row)."""
    if sum(len(b.records) for b in queue) <= most_lines:
        return [*held, *queue], [], None
    keyed = [keys_of(b) for b in queue]
    by_key: dict[Hashable, list[int]] = {}
    for i, keys in enumerate(keyed):
        for key in keys:
            by_key.setdefault(key, []).append(i)
    taken = [False] * len(queue)
    pulled: set[Hashable] = set()
    lines = 0

    def pull(batches: list[int], keys: list[Hashable]) -> None:
        nonlocal lines
        while batches or keys:
            while batches:
                i = batches.pop()
                if not taken[i]:
                    taken[i] = True
                    lines += len(queue[i].records)
                    keys.extend(keyed[i])
            while keys:
                key = keys.pop()
                if key not in pulled:
                    pulled.add(key)
                    batches.extend(by_key.get(key, ()))

    pull([], [key for b in held for key in keys_of(b)])
    calls = [i for i, b in enumerate(queue) if b.calls]
    pull(list(calls), [])
    # with calls (or what is held) in it, it takes no more: that transaction stays small
    for i in range(0 if held or calls else len(queue)):
        if lines >= most_lines:
            break
        if not taken[i]:
            pull([i], [])
    first = [*held, *(b for i, b in enumerate(queue) if taken[i])]
    left = [b for i, b in enumerate(queue) if not taken[i]]
    return first, left, (pulled if left else None)
