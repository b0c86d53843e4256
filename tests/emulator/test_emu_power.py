"""Resets: power cycle, machine.reset, EN button, watchdog, soft reset from the program."""
import pytest

CAUSE = """
import machine
print("cause", machine.reset_cause())
"""


@pytest.mark.timeout(30)
def test_power_cycle_and_resets(make_board):
    b = make_board("pwr", {"main.py": CAUSE, "boot.py": "print('boot')\n"})
    b.wait_console("cause 1", 10)
    m = b.console_mark()
    info = b.power_cycle()
    assert info["reset_cause"] == 1
    b.wait_console("cause 1", 10, since=m)
    m = b.console_mark()
    b.reset()
    b.wait_console("cause 2", 10, since=m)
    m = b.console_mark()
    b.send_repl("import machine; machine.reset()\r")
    out = b.wait_console("cause 5", 10, since=m)
    assert "SW_CPU_RESET" in out
    assert b.state()["starts"] == 4


WDT = """
import machine, time
print("cause", machine.reset_cause())
if machine.reset_cause() != machine.WDT_RESET:
    w = machine.WDT(timeout=500)
    for i in range(5):
        w.feed()
        time.sleep_ms(100)
    print("stop feeding")
    %s
"""


@pytest.mark.timeout(30)
@pytest.mark.parametrize("stall", ["time.sleep_ms(5000)", "while True: pass"])
def test_watchdog_resets_when_not_fed(make_board, stall):
    b = make_board("wdt", {"main.py": WDT % stall})
    b.wait_console("stop feeding", 10)
    m = b.console_mark()
    out = b.wait_console("cause 3", 5, since=m)
    assert "TG0WDT_SYS_RESET" in out
    assert b.state()["reset_cause"] == 3


FED = """
import machine, time
w = machine.WDT(timeout=300)
for i in range(20):
    w.feed()
    time.sleep_ms(100)
print("still alive")
"""


@pytest.mark.timeout(30)
def test_fed_watchdog_does_not_reset(make_board):
    b = make_board("fed", {"main.py": FED})
    b.wait_console("still alive", 10)
    assert b.state()["starts"] == 1


@pytest.mark.timeout(30)
def test_soft_reset_from_program_keeps_ticks_and_cause(make_board):
    main = """
import machine, time, os
n = len(os.listdir('/'))
print("run", machine.reset_cause(), time.ticks_ms())
try:
    os.stat('again')
except OSError:
    open('again', 'w').close()
    machine.soft_reset()
"""
    b = make_board("soft", {"main.py": main})
    out = b.wait_console("soft reboot", 10)
    out = b.wait_console("run 1", 10)
    runs = [int(l.split()[2]) for l in out.splitlines() if l.startswith("run")]
    b.wait_state("repl", 5)
    out = b.console()
    runs = [int(l.split()[2]) for l in out.splitlines() if l.startswith("run")]
    assert len(runs) == 2
    # ticks continue across a soft reset (both near the wrap, the second later)
    assert 0 < (runs[1] - runs[0]) % 2**30 < 5000
    assert (b.flash_dir / "again").exists()
