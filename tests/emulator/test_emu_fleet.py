"""Many boards in one supervisor, all running and answering."""
import time

import pytest

APP = """
import asyncio, board, machine
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


@pytest.mark.timeout(120)
def test_fifty_boards(fleet, tmp_path):
    t0 = time.monotonic()
    boards = [fleet.add_board(f"bed-{i:02d}", flash_dir=tmp_path / f"b{i}",
                              files={"main.py": APP}) for i in range(50)]
    for b in boards:
        b.wait_console("up", 20)
    started = time.monotonic() - t0
    for b in boards:
        b.press("call")
    for b in boards:
        b.wait_output("lamp_reassure", 1, 10)
    for b in boards:
        b.release("call")
    for b in boards:
        b.wait_output("lamp_reassure", 0, 10)
    assert all(b.state()["phase"] == "running" for b in boards)
    assert len({b.repl_port for b in boards}) == 50
    assert started < 30
