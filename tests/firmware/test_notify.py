"""CMD_NOTIFY at the terminal, under the real MicroPython unix port with the test doubles: the
dome's pattern on an injected clock (exact edges, its end, the terminal's own call winning, a
newer notification replacing it, CMD_SILENCE), the command's answers, and the argument's
encoding on both interpreters. On an emulated board: test_notify_e2e.py."""
import sys

import pytest

from tests.firmware import mprun
from tests.firmware.fakehost import P

pytestmark = pytest.mark.timeout(60)

DRIVER = r"""
import machine, board
import lamps as L
from wardproto import PATTERN_NORMAL, PATTERN_HIGH, PATTERN_EMERGENCY
now = [5000]
lp = L.Lamps(lambda: now[0])
def run(ms, pin=board.DOME):
    # the pin's edges (ms from now, level) over ms, the lamps stepped by the waits they ask for
    # (up to a second), ending at ms exactly
    t0 = now[0]
    level = machine.pins.get(pin, 0)
    out = []
    while now[0] - t0 < ms:
        wait = lp.step()
        if machine.pins.get(pin, 0) != level:
            level = machine.pins[pin]
            out.append((now[0] - t0, level))
        now[0] += min(max(1, wait), t0 + ms - now[0])
    return out
"""


def lamp_run(tmp_path, code):
    rc, out = mprun.run_code(DRIVER + code, tmp_path)
    assert rc == 0 and "Traceback" not in out, out
    return {l.split()[0]: l.split(" ", 1)[1] for l in out.splitlines() if l[:1].isupper()}


def test_notify_shows_the_pattern_on_the_dome_for_its_time_only(tmp_path):
    got = lamp_run(tmp_path, r"""
lp.notify(PATTERN_EMERGENCY, 2000)
print("LIT", machine.pins[board.DOME], lp.notifying() is PATTERN_EMERGENCY)
print("EDGES", run(3000))
print("AFTER", lp.notifying(), [machine.pins.get(p, 0) for p in (board.LAMP_REASSURE, board.LAMP_PRESENCE)])
lp.notify(PATTERN_NORMAL, 1500)
print("STEADY", machine.pins[board.DOME], run(2500))
""")
    assert got["LIT"] == "1 True"                          # lit by the command itself
    # 300 on / 300 off from the command, and off when the 2 s are up (an edge at 2000 exactly)
    assert eval(got["EDGES"]) == [(300, 0), (600, 1), (900, 0), (1200, 1), (1500, 0), (1800, 1), (2000, 0)]
    assert got["AFTER"] == "None [0, 0]"                   # the other lamps never touched
    assert got["STEADY"] == "1 [(1500, 0)]"


def test_the_terminals_own_call_keeps_the_dome_and_a_newer_notify_replaces_the_old(tmp_path):
    got = lamp_run(tmp_path, r"""
lp.notify(PATTERN_HIGH, 5000)
run(500)
lp.set(L.DOME, PATTERN_NORMAL)          # a call of this terminal: steady on the dome
print("OWN", run(1000))
lp.set(L.DOME, L.OFF)                   # cleared: the notification's pattern again, in its phase
print("RESUMED", machine.pins[board.DOME], run(4000))
lp.notify(PATTERN_NORMAL, 10000)
run(200)
lp.notify(PATTERN_EMERGENCY, 1000)
print("REPLACED", machine.pins[board.DOME], run(1500))
lp.notify(PATTERN_HIGH, 10000)
lp.notify(None, 0)
print("STOPPED", machine.pins[board.DOME], lp.notifying(), run(500))
lp.notify(PATTERN_HIGH, 3000)
lp.override(L.IDENTIFY, 400)
print("OVERRIDE", run(1200))
""")
    assert got["OWN"] == "[]"                             # steady through the notification
    # cleared 1.5 s into the 1 s / 1 s pattern: off until 2 s, on until 3 s ..., ended at 5 s
    assert got["RESUMED"].startswith("0 ")
    assert eval(got["RESUMED"].split(" ", 1)[1]) == [(500, 1), (1500, 0), (2500, 1), (3500, 0)]
    # the emergency pattern from its own start, ended after its 1 s: not back to the steady one
    assert got["REPLACED"] == "1 [(300, 0), (600, 1), (900, 0)]"
    assert got["STOPPED"] == "0 None []"
    # identify drives the dome 150/150 for 400 ms, then the notification's 1 s / 1 s again
    assert eval(got["OVERRIDE"]) == [(150, 0), (300, 1), (1000, 0)]


def test_the_notify_command_answers_plays_one_burst_and_leaves_the_calls_alone(tmp_path):
    code = r"""
import lamps as L
import calls as C
from commands import Commands
from outbox import Outbox
from outgoing import Outgoing
from buzzer import Buzzer
from clock import Clock
from wardproto import CMD_NOTIFY, CMD_SILENCE, CMD_CHIME, notify_arg, CODE_BLUE, BATHROOM, PATIENT, PATTERN_EMERGENCY, PATTERN_HIGH, PATTERN_NORMAL
lp = L.Lamps()
bz = Buzzer()
cs = C.Calls(1, Outbox(1), lp, bz, Clock(), Outgoing())
cs.set_online(True)
cmd = Commands(lp, bz, cs)
for arg in (b"", b"\x01\x03", b"\x09\x03\x05", b"\x01\x07\x05", b"\x01\x03\x05\x00"):
    print("BAD", arg, cmd.handle(CMD_NOTIFY, arg)[:2], lp.notifying())
print("OK", cmd.handle(CMD_NOTIFY, notify_arg(CODE_BLUE, 3, 20)), bz._chime, lp.notifying() is PATTERN_EMERGENCY)
print("CALLS", [a for a in cs.active], cs.presence, len(cs.outbox))
bz._chime = 0
print("NEWER", cmd.handle(CMD_NOTIFY, notify_arg(BATHROOM, 2, 30))[:2], bz._chime, lp.notifying() is PATTERN_HIGH)
print("STOP", cmd.handle(CMD_NOTIFY, notify_arg(BATHROOM, 2, 0)), lp.notifying())
cmd.handle(CMD_NOTIFY, notify_arg(PATIENT, 1, 30))
print("SILENCE", cmd.handle(CMD_SILENCE, b""), lp.notifying())
print("CHIME", cmd.handle(CMD_CHIME, b"\x02")[:2])
"""
    rc, out = mprun.run_code(code, tmp_path)
    assert rc == 0 and "Traceback" not in out, out
    bad = [l for l in out.splitlines() if l.startswith("BAD")]
    assert len(bad) == 5 and all("(0, 'notify" in l and l.endswith("None") for l in bad), bad
    assert "(0, 'notify needs 3 bytes (kind, priority, seconds), not 0')" in bad[0]
    assert "unknown call kind 9" in bad[2] and "alarm priority must be 1-3, not 7" in bad[3]
    assert "OK (1, 'notify code_blue 20 s', None) 3 True" in out
    assert "CALLS [None, None, None, None, None, None] False 0" in out     # no call placed or changed
    assert "NEWER (1, 'notify bathroom 30 s') 2 True" in out
    assert "STOP (1, 'notify stopped', None) None" in out
    assert "SILENCE (1, 'silenced', None) None" in out
    assert "CHIME (0, 'no staff present')" in out                          # CHIME unchanged


def test_notify_arg_is_the_same_on_both_interpreters(tmp_path):
    sys.path.insert(0, str(mprun.LIB))
    try:
        import wardproto as W
    finally:
        sys.path.remove(str(mprun.LIB))
    assert W.CMD_NOTIFY == 7
    assert W.notify_arg(W.CODE_BLUE, W.ALARM_HIGH, 30) == b"\x01\x03\x1e"
    assert W.parse_notify(b"\x04\x01\x00") == (W.PATIENT, W.ALARM_LOW, 0)
    for args in ((9, 3, 5), (1, 0, 5), (1, 3, 256), (1, 3, -1), ("1", 3, 5), (1, 3, 1.5)):
        with pytest.raises(W.ProtocolError) as e:
            W.notify_arg(*args)
        assert e.value.code == W.E_MALFORMED
    for arg in (b"", b"\x01\x03", b"\x01\x03\x05\x00", b"\x00\x03\x05", b"\x01\x04\x05"):
        with pytest.raises(W.ProtocolError):
            W.parse_notify(arg)
    rc, out = mprun.run_code("import wardproto as W\nprint('MP', W.notify_arg(1, 3, 30), W.parse_notify(b'\\x04\\x01\\x00'))\n"
                             "try:\n    W.notify_arg(1, 3, 256)\nexcept W.ProtocolError as e:\n    print('ERR', e.code)", tmp_path)
    assert rc == 0, out
    assert "MP b'\\x01\\x03\\x1e' (4, 1, 0)" in out and "ERR 1" in out
    assert P.CMD_NOTIFY == 7
