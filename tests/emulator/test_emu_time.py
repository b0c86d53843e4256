"""time shim: ESP32 tick period 2**30, starting near the wrap; asyncio across the wrap."""
import pytest

WRAP = """
import time, asyncio
print("start", time.ticks_ms(), time.ticks_us())
async def main():
    t0 = time.ticks_ms()
    prev = t0
    for i in range(8):
        await asyncio.sleep_ms(250)
        now = time.ticks_ms()
        print("step", i, now, time.ticks_diff(now, prev))
        prev = now
    print("total", time.ticks_diff(time.ticks_ms(), t0))
    # tasks ordered across the wrap: the shorter sleep finishes first
    order = []
    async def s(ms, tag):
        await asyncio.sleep_ms(ms)
        order.append(tag)
    await asyncio.gather(s(300, "b"), s(100, "a"))
    print("order", order)
    print("add", time.ticks_add(2**30 - 1, 1), time.ticks_diff(5, 2**30 - 5))
asyncio.run(main())
"""


@pytest.mark.timeout(30)
def test_ticks_wrap_and_asyncio_sleep(make_board):
    b = make_board("wrap", {"main.py": WRAP}, wrap_s=1)
    out = b.wait_console("add", 15)
    start = [l for l in out.splitlines() if l.startswith("start")][0].split()
    assert 2**30 - 1200 < int(start[1]) < 2**30
    assert 2**30 - 1_200_000 < int(start[2]) < 2**30
    steps = [l.split() for l in out.splitlines() if l.startswith("step")]
    assert len(steps) == 8
    ticks = [int(s[2]) for s in steps]
    assert min(ticks) < 2000 and max(ticks) > 2**30 - 1000  # it wrapped during the run
    for s in steps:
        assert 240 <= int(s[3]) < 400, steps
    assert "order ['a', 'b']" in out
    assert "add 0 10" in out
