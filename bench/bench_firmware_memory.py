"""Peak and free heap of the bed terminal firmware through a full call cycle.

Runs the real application (firmware/lib) under the MicroPython unix port with the firmware
test doubles (tests/firmware/shims) against a scripted host (tests/firmware/fakehost.py), at
an ESP32-sized heap (-X heapsize=112wK: 112 KiB scaled to the 64-bit word size; the emulator's
boards get 120wK, which includes its shims), and prints gc.mem_alloc()/gc.mem_free() after a gc.collect() at each stage: boot,
online, call placed, CALL_ACK, acknowledged at the console, cancelled by presence (a badge on
the reader, the badge task running as on every board with a reader), plus
micropython.mem_peak() (the unix build's high-water mark of allocated bytes, garbage included).
The test double's virtual MFRC522 (the emulator's, on the test SPI bus) is counted in those
figures and costs heap an ESP32 does not spend: its share is printed on its own. Then it finds
the smallest heap that still completes the cycle, and prints the same cycle on a board without
a reader (board.BADGE = None: presence by the button) for comparison.

    .venv/bin/python bench/bench_firmware_memory.py
"""
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.firmware import mprun  # noqa: E402
from tests.firmware.fakehost import FakeHost, P  # noqa: E402

SCENARIO = r"""
import gc, micropython
if NO_READER:
    board.BADGE = None             # a board without a reader: no badge task
gc.collect()
_before = gc.mem_alloc()
machine.chip()                     # the test double's virtual MFRC522, made now to weigh it
gc.collect()
print("CHIP virtual MFRC522 %d bytes (the test double's, not the firmware's)" % (gc.mem_alloc() - _before))
def mem(stage):
    gc.collect()
    peak = micropython.mem_peak() if hasattr(micropython, "mem_peak") else -1
    print("MEM %-14s alloc %7d free %7d peak %7d" % (stage, gc.mem_alloc(), gc.mem_free(), peak))
async def scenario(app):
    mem("boot")
    await until(lambda: app.link.online, 5000, "online")
    mem("online")
    await press(board.CALL)
    mem("call placed")
    await until(lambda: len(app.outbox) == 0, 3000, "CALL_ACK")
    mem("call stored")
    await until(lambda: app.calls.active[3] and app.calls.active[3][1] == 1, 3000, "acknowledged")
    mem("acknowledged")
    if app.badge:
        await until(lambda: app.badge.ok, 3000, "reader ready")
        machine.chip().set_cards([bytes.fromhex("04a1b2c3")])
    else:
        await press(board.PRESENCE)
    await until(lambda: len(app.outbox) == 0 and app.calls.active[3] is None, 3000, "cancelled")
    check(app.calls.presence and app.calls.staff == ("04a1b2c3" if app.badge else ""), "presence")
    mem("cancelled")
    await asyncio.sleep_ms(2000)
    mem("idle")
"""


def run(heap, badge=True):
    host = FakeHost("bed-101-1", mprun.KEY, hb_ms=300)

    def on_msg(h, m):
        if m["type"] == P.CALL:
            h.send(P.CALL_STATE, {"call": m["call"], "state": P.ST_ACKNOWLEDGED, "by": "bench"})
    host.on_message = on_msg
    host.start()
    try:
        with tempfile.TemporaryDirectory() as flash:
            mprun.write_config(flash, mprun.config(port=host.port))
            return mprun.run_scenario(SCENARIO.replace("NO_READER", "False" if badge else "True", 1), flash, 20000, heap=heap)
    finally:
        host.stop()


def main():
    out = run("112wK")
    print("heap 112wK (ESP32-sized: ~112 KiB on a 32-bit ESP32), badge reader on:")
    for line in out.splitlines():
        if line.startswith(("MEM", "CHIP")) or "SCENARIO" in line:
            print("  " + line)
    if "SCENARIO PASSED" not in out:
        print(out)
        return 1
    lo, hi = 16, 112
    while hi - lo > 4:
        mid = (lo + hi) // 2
        if "SCENARIO PASSED" in run("%dwK" % mid):
            hi = mid
        else:
            lo = mid
    print("smallest heap that completes the call cycle: %dwK (between %dwK and %dwK)" % (hi, lo, hi))
    out = run("112wK", badge=False)
    print("heap 112wK, a board without a reader (BADGE = None):")
    for line in out.splitlines():
        if line.startswith("MEM") or "SCENARIO" in line:
            print("  " + line)
    return 0 if "SCENARIO PASSED" in out else 1


if __name__ == "__main__":
    sys.exit(main())
