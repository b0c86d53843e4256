# MicroPython driver for the firmware's own tests: runs the real application (firmware/lib)
# with the test doubles in shims/, and a scenario (a MicroPython file defining
# `async def scenario(app)`) beside it in the same event loop. The scenario drives inputs
# through machine.pins and prints what it observes; pytest asserts on that output and on what
# the fake host received. Usage: micropython mp_drive.py SCENARIO.py [TIMEOUT_MS]
import sys
import time
import asyncio
import machine
import board
import app as A


class Failed(Exception):
    pass


async def until(pred, ms, what):
    deadline = time.ticks_add(time.ticks_ms(), ms)
    while not pred():
        if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
            raise Failed("timed out after %d ms waiting for %s" % (ms, what))
        await asyncio.sleep_ms(5)


def set_input(pin, active):
    machine.pins[pin] = 0 if active else 1


async def press(pin, ms=100):
    set_input(pin, True)
    await asyncio.sleep_ms(ms)
    set_input(pin, False)


def lamp_edges(pin, since):
    return [(t, v) for (t, p, v) in machine.trace if p == pin and time.ticks_diff(t, since) >= 0]


def check(cond, what):
    if not cond:
        raise Failed(what)
    print("CHECK", what)


g = {"until": until, "press": press, "set_input": set_input, "lamp_edges": lamp_edges,
     "check": check, "machine": machine, "board": board, "asyncio": asyncio, "time": time,
     "Failed": Failed}
with open(sys.argv[1]) as f:
    exec(f.read(), g)
TIMEOUT = int(sys.argv[2]) if len(sys.argv) > 2 else 20000


async def main():
    set_input(board.CORD_LOOP, True)     # the cord is plugged in unless a scenario says not
    a = A.App()
    A.app = a
    t = asyncio.create_task(a.main())
    try:
        await asyncio.wait_for_ms(g["scenario"](a), TIMEOUT)
        print("SCENARIO PASSED")
    except Failed as e:
        print("SCENARIO FAILED:", e)
    except asyncio.TimeoutError:
        print("SCENARIO FAILED: scenario timeout")
    t.cancel()


asyncio.run(main())
