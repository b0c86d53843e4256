"""End to end, supervision and maintenance: the real firmware on emulated ESP32 boards
(boards/emulator) against the real host (`wardcall serve`).

- a task that hangs stops the watchdog feeding: a WDT reset, the terminal is back online and a
  call placed before the hang (stored by the host, its CALL_ACK lost) arrives exactly once;
- a task that raises an unexpected error is logged and restarted; the terminal stays online;
- maintenance mode by holding the presence button at start: no application, no watchdog,
  the real mpremote lists the flash; released + reset: normal operation.

Faults are injected by tests/firmware/mp_faulthook.py, a TEST-ONLY MicroPython module copied to
the board's flash with two lines put in front of the real main.py (see that file). The firmware
in firmware/ has no test hook: a hang or an error is caused inside one real supervised task (its
alive() callback is gated), triggered at the moment the test chooses by grounding a spare GPIO.
"""
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.fixtures.ward as ward_fixtures
from tests.faults.ledger import db_rows
from tests.support.waiting import wait_until
from wardcall.demo import firmware_files

HOOK = Path(__file__).resolve().parent / "mp_faulthook.py"
TRIGGER = 4                      # spare GPIO of the emulated board (not in boards/emulator/board.py)
WDT_RESET, HARD_RESET = 3, 2     # machine.reset_cause() values (ESP32 port)
WDT_MS = 10000                   # firmware/lib/app.py


def call_id_from(console, kind):
    m = re.findall(r"%s call (\d+) placed" % kind, console)
    assert m, console
    return int(m[-1])


def host_calls(rig, device, call_id=None):
    return [c for c in rig.calls(device) if call_id is None or c["call_id"] == call_id]


@pytest.fixture
def faulty_terminals(make_terminals, monkeypatch):
    """make_terminals, with the test-only fault hook on every board's flash (armed for one task
    and mode; it does nothing until gpio TRIGGER is grounded). The rest of the flash is the
    firmware as the fixtures stage it; main.py is the staged one with two lines in front."""
    def make(task, mode, n=1, **kw):
        def files(cfg):
            f = firmware_files(cfg)
            main = f["main.py"]
            main = main.read_text() if isinstance(main, Path) else \
                main.decode() if isinstance(main, bytes) else main
            f["faulthook.py"] = HOOK
            f["main.py"] = ("import faulthook  # TEST ONLY: tests/firmware/mp_faulthook.py\n"
                            "faulthook.install(%r, %r, %d)\n" % (task, mode, TRIGGER) + main)
            return f
        monkeypatch.setattr(ward_fixtures, "firmware_files", files)
        rig = make_terminals(n, **kw)
        for b in rig.boards:
            assert "faulthook: armed: task %s, %s" % (task, mode) in b.console()
        return rig
    return make


def recorded_faults(rig, device):
    """The FAULTs in the host's record (events of kind fault), oldest first."""
    return [json.loads(r["data"]) for r in db_rows(rig.ward.database,
            "SELECT data FROM events WHERE kind = 'fault' AND device = ? ORDER BY id", device)]


def wait_start(board, starts, timeout):
    """Wait until the board's interpreter has been cold-started `starts` times and is running
    again; returns that state."""
    def started():
        st = board.state()
        return st if st["starts"] >= starts and st["phase"] == "running" else None
    return wait_until(started, timeout, f"{board.name} started {starts} times and running")


@pytest.mark.timeout(120)
def test_hung_task_leads_to_a_watchdog_reset_and_the_unacknowledged_call_arrives_once(faulty_terminals):
    rig = faulty_terminals("inputs", "hang", heartbeat_ms=2000)
    b, dev = rig.board(0), rig.devices[0]
    st0 = b.state()
    assert st0["wdt_ms"] == WDT_MS and st0["starts"] == 1
    # a call the host stores but whose CALL_ACK never reaches the terminal: the network holds the
    # acknowledgement back (3 s a chunk, within 3 heartbeats) and then the radio link is cut
    b.fault(delay_ms=3000)
    b.tap("assist", 150)
    b.wait_output("lamp_reassure", 1, 2)
    cid = call_id_from(b.console(), "staff_assist")
    wait_until(lambda: host_calls(rig, dev, cid), 10, "call stored at the host")
    b.wifi(False)
    assert "host stored CALL" not in b.console(), "precondition: the CALL_ACK arrived before the cut"
    # the inputs task hangs; the others go on, so only the supervisor can notice
    mark = b.console_mark()
    b.press("gpio%d" % TRIGGER)
    b.wait_console("faulthook: task inputs hangs", 5, since=mark)
    b.release("gpio%d" % TRIGGER)        # the hung task stays hung; the hook stays idle after the reset
    text = b.wait_console("task inputs silent for", 5, since=mark)
    t_silent = time.monotonic()
    assert "watchdog not fed" in text
    assert b.state()["starts"] == 1, "no reset before the watchdog's timeout"
    b.wait_output("lamp_reassure", 1, 1)  # the lamps task still runs the staff-assist pattern
    # the hardware watchdog (10 s without a feed) resets the board
    text = b.wait_console("rst:0x7 (TG0WDT_SYS_RESET)", WDT_MS / 1000 + 10, since=mark)
    assert time.monotonic() - t_silent >= WDT_MS / 1000 - 2.5 - 0.5, "reset before the 10 s timeout"
    st = wait_start(b, 2, 15)
    assert st["reset_cause"] == WDT_RESET, st
    assert "Traceback" not in text
    # after the reset: the call is restored from the flash (lamp at once) and resent
    b.wait_console("restored open staff_assist call %d" % cid, 10, since=mark)
    b.wait_output("lamp_reassure", 1, 3)
    b.fault(delay_ms=0)
    b.wifi(True)
    b.wait_console("host stored CALL %d" % cid, 20, since=mark)
    rig.wait_online([dev])
    calls = host_calls(rig, dev)
    assert [c["call_id"] for c in calls] == [cid], calls       # exactly once, same id
    assert calls[0]["kind_name"] == "staff_assist" and calls[0]["state"] != "cleared"
    st = b.state()
    assert st["wdt_ms"] == WDT_MS and st["starts"] == 2, st  # the watchdog runs again, no reset loop
    # and the terminal works: the new inputs task sees a button
    mark = b.console_mark()
    b.tap("call", 150)
    pid = call_id_from(b.wait_console("patient call", 3, since=mark), "patient")
    wait_until(lambda: host_calls(rig, dev, pid), 5, "a patient call after the reset")
    assert len(host_calls(rig, dev)) == 2


@pytest.mark.timeout(90)
@pytest.mark.parametrize("task", ["inputs", "link"])
def test_failing_task_is_logged_and_restarted_and_the_terminal_keeps_working(faulty_terminals, task):
    rig = faulty_terminals(task, "fail")
    b, dev = rig.board(0), rig.devices[0]
    mark = b.console_mark()
    b.press("gpio%d" % TRIGGER)
    b.wait_console("faulthook: task %s raises an injected error" % task, 5, since=mark)
    b.release("gpio%d" % TRIGGER)
    text = b.wait_console("restarting task %s" % task, 5, since=mark)
    # logged with its traceback, then restarted by the supervisor
    assert "wardcall: sup: task %s failed: ValueError('injected fault in task %s',)" % (task, task) in text \
        or "wardcall: sup: task %s failed: ValueError('injected fault in task %s')" % (task, task) in text, text
    assert "Traceback" in text[text.index("task %s failed" % task):]
    b.wait_console("device fault: task %s restarted" % task, 5, since=mark)
    # reported to the host as a device fault with a technical call
    tech = wait_until(lambda: [c for c in host_calls(rig, dev) if c["kind_name"] == "technical"], 10,
                    "technical call at the host")
    assert len(tech) == 1
    # the FAULT itself reaches the host's record with its detail - for the link task it was
    # raised while the link was down, kept, and sent right after the next WELCOME
    fault = wait_until(lambda: recorded_faults(rig, dev), 15, "the FAULT in the host's record")
    assert fault == [{"fault": "device", "active": True, "detail": "task %s restarted" % task}], fault
    wait_until(lambda: (rig.terminal(dev) or {}).get("status") == "fault", 10, "device fault at the host")
    if task == "link":
        b.wait_console("link: online", 10, since=mark)      # the new link task has a new session
    else:
        assert "link: connecting" not in b.console(since=mark), "the session was kept"
    rig.wait_online([dev])
    # a call still works afterwards
    mark2 = b.console_mark()
    b.tap("call", 150)
    pid = call_id_from(b.wait_console("patient call", 3, since=mark2), "patient")
    wait_until(lambda: host_calls(rig, dev, pid), 5, "a patient call after the restart")
    b.wait_console("host stored CALL %d" % pid, 5, since=mark2)
    st = b.state()
    assert st["starts"] == 1 and st["phase"] == "running", st     # no reset, no watchdog
    assert b.console(since=mark).count("restarting task") == 1
    assert "watchdog not fed" not in b.console(since=mark)


def mpremote():
    exe = Path(sys.executable).parent / "mpremote"
    return str(exe) if exe.exists() else shutil.which("mpremote")


@pytest.mark.timeout(120)
def test_presence_held_at_start_enters_maintenance_mode_and_release_returns_to_normal(make_terminals):
    rig = make_terminals(1)
    b, dev = rig.board(0), rig.devices[0]
    assert b.state()["wdt_ms"] == WDT_MS
    # presence held while the board starts (EN button)
    b.press("presence")
    mark = b.console_mark()
    b.reset()
    text = b.wait_console("MAINTENANCE MODE (presence button held at start)", 10, since=mark)
    assert "application and watchdog not started" in text
    b.wait_state("repl", 10)                         # main.py returned: the interpreter's REPL
    st = b.state()
    assert st["reset_cause"] == HARD_RESET and st["wdt_ms"] == 0, st
    rig.wait_online([dev], online=False, timeout=10)
    assert "wardcall: boot:" not in b.console(since=mark)
    # the real mpremote works (raw REPL, soft reset, filesystem)
    listed = {}
    for folder in ("", "lib"):
        r = subprocess.run([mpremote(), "connect", b.repl_url, "fs", "ls", ":" + folder],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (r.stdout, r.stderr, b.console()[-1500:])
        listed[folder] = {line.split()[-1] for line in r.stdout.splitlines()[1:] if line.strip()}
        on_flash = {p.name + ("/" if p.is_dir() else "") for p in (b.flash_dir / folder).iterdir()}
        assert listed[folder] == on_flash, r.stdout       # exactly what is on the flash
    assert {"boot.py", "main.py", "config.json", "lib/"} <= listed[""], listed
    assert {"maint", "supervisor", "app"} <= {n.rsplit(".", 1)[0] for n in listed["lib"]}, listed
    # mpremote soft-rebooted the interpreter (boot.py again: still maintenance); no cold start
    st = b.state()
    assert st["wdt_ms"] == 0 and st["reset_cause"] == HARD_RESET, st
    text = b.console(since=mark)
    assert "MPY: soft reboot" in text and text.count("rst:0x") == 1, text[-1500:]
    assert "wardcall: boot:" not in text
    # released and reset: normal operation
    b.release("presence")
    mark = b.console_mark()
    b.reset()
    b.wait_console("wardcall: boot: ready", 10, since=mark)
    rig.wait_online([dev])
    b.wait_console("link: online", 5, since=mark)
    st = b.state()
    assert st["phase"] == "running" and st["wdt_ms"] == WDT_MS and st["reset_cause"] == HARD_RESET, st
    assert "MAINTENANCE" not in b.console(since=mark)
    b.tap("call", 150)
    wait_until(lambda: host_calls(rig, dev), 5, "a call after maintenance")
