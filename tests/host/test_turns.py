"""TurnGate (turns.py) on a real event loop: a herd that arrives in one turn goes on a share per
turn, in the order it came, none left behind; a waiter cancelled in the queue neither takes a
share nor holds up the rest. Turns are counted by a callback that runs once a turn, no sleeps.
And the terminal server: every session of a herd that ends at once is recorded as ended."""
from __future__ import annotations

import asyncio

import pytest

from wardcall.client import find_call, find_terminal
from wardcall.protocol import wardproto as wp
from wardcall.turns import TurnGate

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


class TurnCounter:
    """The number of the loop's turn (a callback rescheduled with call_soon runs once a turn)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.turn, self._on = loop, 0, True
        loop.call_soon(self._tick)

    def _tick(self) -> None:
        if self._on:
            self.turn += 1
            self.loop.call_soon(self._tick)

    def stop(self) -> None:
        self._on = False


async def test_a_herd_goes_on_a_share_per_turn_in_the_order_it_came() -> None:
    loop = asyncio.get_running_loop()
    gate = TurnGate(loop, per_turn=8)
    turns = TurnCounter(loop)
    passed: list[tuple[int, int]] = []      # (taker, turn)

    async def taker(n: int) -> None:
        await gate.take()
        passed.append((n, turns.turn))

    await asyncio.gather(*(taker(n) for n in range(50)))
    turns.stop()
    assert [n for n, _ in passed] == list(range(50))            # in order, every one
    per_turn: dict[int, int] = {}
    for _, turn in passed:
        per_turn[turn] = per_turn.get(turn, 0) + 1
    assert max(per_turn.values()) == 8                          # never more than a share in a turn
    assert len(per_turn) == 7                                   # 50 = 6 shares of 8 and 2
    assert gate.waiting == 0


async def test_a_waiter_cancelled_in_the_queue_takes_no_share() -> None:
    loop = asyncio.get_running_loop()
    gate = TurnGate(loop, per_turn=2)
    passed: list[int] = []

    async def taker(n: int) -> None:
        await gate.take()
        passed.append(n)

    tasks = [asyncio.ensure_future(taker(n)) for n in range(7)]
    await asyncio.sleep(0)                  # the takers' first turn: 2 through, 5 queued
    assert passed == [0, 1] and gate.waiting == 5
    tasks[2].cancel()
    tasks[3].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert passed == [0, 1, 4, 5, 6]
    assert gate.waiting == 0


async def test_a_free_gate_lets_a_taker_through_in_its_own_turn() -> None:
    loop = asyncio.get_running_loop()
    gate = TurnGate(loop, per_turn=4)
    turns = TurnCounter(loop)
    before = turns.turn
    await gate.take()
    assert turns.turn == before             # no turn waited
    turns.stop()


HERD = 100      # ends and HELLOs of a herd pass TurnGate.PER_TURN (32) a turn: 4 turns and more


async def test_a_herd_that_drops_and_returns_at_once_is_all_recorded_and_a_call_goes_through(make_ward, ward_server_factory):
    """The real `wardcall serve`: 100 terminals cut off in one go and back in one go, while one
    that stayed online calls. Every end is recorded (all offline), every HELLO is answered (all
    online again), and the call is acknowledged and on the console."""
    ward = make_ward(terminals=HERD + 1, heartbeat_ms=1000)
    server = ward_server_factory(ward)
    stays = ward.terminal(HERD)
    await stays.connect()
    herd = [ward.terminal(i) for i in range(HERD)]
    await asyncio.gather(*(t.connect(timeout=20) for t in herd))
    async with await server.login() as api, api.events() as console:
        await console.wait_for(lambda s: all(find_terminal(s, t.device)["status"] == "online" for t in herd),
                               timeout=20)
        await asyncio.gather(*(t.close() for t in herd))
        await console.wait_for(lambda s: all(find_terminal(s, t.device)["status"] != "online" for t in herd),
                               timeout=20)
        back = [ward.terminal(i) for i in range(HERD)]
        returning = asyncio.gather(*(t.connect(timeout=20) for t in back))
        call_id = await stays.place_call(wp.PATIENT)            # answered with CALL_ACK, or it raises
        await returning
        state = await console.wait_for(lambda s: find_call(s, stays.device, call_id) is not None
                                       and all(find_terminal(s, t.device)["status"] == "online" for t in back),
                                       timeout=20)
        assert find_call(state, stays.device, call_id)["state"] == "placed"
    await asyncio.gather(*(t.close() for t in back), stays.close())
