"""Firmware modules under the real MicroPython unix port, with test doubles for machine and
network (tests/firmware/shims). No host, no emulator: these run anywhere."""
import json

import pytest

from tests.firmware import mprun

pytestmark = pytest.mark.timeout(60)


def test_all_modules_compile_under_micropython(tmp_path):
    mods = sorted(p.stem for p in mprun.LIB.glob("*.py"))
    rc, out = mprun.run_code("for m in %r:\n    __import__(m)\nprint('IMPORTED', len(%r))" % (mods, mods),
                             tmp_path)
    assert rc == 0 and "IMPORTED" in out, out


def test_debounce_ignores_glitches_and_reports_press_release_hold(tmp_path):
    # an injected clock: poll() every 10 ms as the task does, in exact time
    code = r"""
import machine, board
import inputs as I
now = [1000]
events = []
inp = I.Inputs(lambda ev, i: events.append((ev, i, now[0])), lambda: now[0])
machine.pins[board.CORD_LOOP] = 0
def hold(pin, level, ms):
    if pin is not None:
        machine.pins[pin] = level
    end = now[0] + ms
    while now[0] < end:
        inp.poll()
        now[0] += 10
hold(None, 0, 100)
print('idle', events)
hold(board.CALL, 0, 20); hold(board.CALL, 1, 100)
print('glitch', events)
t0 = now[0]
hold(board.CALL, 0, 50); t1 = now[0]; hold(board.CALL, 1, 100)
print('press', [(e[0], e[1], e[2] - t0) for e in events], t1 - t0)
del events[:]
t0 = now[0]
hold(board.CODE, 0, 2300); t1 = now[0]; hold(board.CODE, 1, 100)
print('hold', [(e[0], e[1], e[2] - t0) for e in events], t1 - t0)
"""
    rc, out = mprun.run_code(code, tmp_path)
    assert rc == 0, out
    assert "idle []" in out
    assert "glitch []" in out                              # 20 ms: shorter than the 30 ms debounce
    # pressed at 0, seen 30 ms later (stable for the debounce time); released at 50, seen at 80
    assert "press [(1, 0, 30), (2, 0, 80)] 50" in out
    # HOLD 2 s after the press was seen, once
    assert "hold [(1, 3, 30), (3, 3, 2030), (2, 3, 2330)] 2300" in out



def test_inputs_at_rest_are_read_half_as_often_and_a_press_is_seen_within_50_ms(tmp_path):
    # the task's own steps (the wait poll() returns): 20 ms at rest, 10 ms while a new level is
    # debounced; a press that begins anywhere between two looks is accepted within 20 + 30 ms
    code = r"""
import machine, board
import inputs as I
now = [1000]
events = []
inp = I.Inputs(lambda ev, i: events.append((ev, i, now[0])), lambda: now[0])
machine.pins[board.CORD_LOOP] = 0
looks = [0]
def run(pin, level, ms):
    # the level from now on for ms, stepped as the task steps; the next look may be later
    if pin is not None:
        machine.pins[pin] = level
    end = now[0] + ms
    while now[0] < end:
        looks[0] += 1
        wait = inp.poll()
        now[0] += wait
run(None, 0, 1000)
print('rest looks', looks[0])
worst = 0
for early in range(20):
    del events[:]
    run(None, 0, 100)            # at rest: now is the task's next look
    t0 = now[0] - early          # the press began `early` ms before that look
    run(board.CALL, 0, 200)
    seen = [e for e in events if e[0] == I.PRESS]
    worst = max(worst, seen[0][2] - t0)
    run(board.CALL, 1, 200)
print('press within', worst, 'ms; events', [e[0] for e in events])
short = 0
for early in range(20):          # a 60 ms press, beginning anywhere before a look
    del events[:]
    run(None, 0, 100)
    run(board.CALL, 0, 60 - early); run(board.CALL, 1, 200)
    short += [e[0] for e in events] == [I.PRESS, I.RELEASE]
print('60 ms presses seen', short)
del events[:]
run(board.ASSIST, 0, 20); run(board.ASSIST, 1, 200)
print('glitch', events)
"""
    rc, out = mprun.run_code(code, tmp_path)
    assert rc == 0, out
    assert "rest looks 50" in out, out                   # 50 looks a second at rest, not 100
    worst = int(out.split("press within ")[1].split(" ms")[0])
    assert 30 <= worst <= 50, out
    assert "events [1, 2]" in out, out                   # the last press: PRESS then RELEASE
    assert "60 ms presses seen 20" in out, out
    assert "glitch []" in out, out


LAMP_DRIVER = r"""
import machine, board
import lamps as L
from wardproto import PATTERN_NORMAL, PATTERN_HIGH, PATTERN_EMERGENCY
now = [5000]
lp = L.Lamps(lambda: now[0])
def edges(lamp, pin, ms, by_wait):
    # the lamp's edges (ms after start, level) over ms; stepped every 1 ms (the level is right at
    # every instant) or, as the task does, by the wait step() returns
    t0 = now[0]
    level = machine.pins.get(pin, 0)
    out = []
    while now[0] - t0 < ms:
        wait = lp.step()
        if machine.pins.get(pin, 0) != level:
            level = machine.pins[pin]
            out.append((now[0] - t0, level))
        now[0] += 1 if not by_wait else max(1, wait)
    return out
def show(name, pat, ms=4100):
    runs = []
    for by_wait in (False, True):
        lp.set(L.REASSURE, L.OFF)
        lp.step()
        lp.set(L.REASSURE, pat)
        first = machine.pins[board.LAMP_REASSURE]          # switched by set() itself
        runs.append(edges(L.REASSURE, board.LAMP_REASSURE, ms, by_wait))
    print(name, first, runs[0] == runs[1], runs[0])
"""


def lamp_run(tmp_path, code):
    rc, out = mprun.run_code(LAMP_DRIVER + code, tmp_path)
    assert rc == 0, out
    return {l.split()[0]: l.split(" ", 1)[1] for l in out.splitlines() if l and l.split()[0].isupper()}


def expected_edges(pat, ms):
    """(ms, level) of every edge of a pattern (on, off, on, off ...) started lit at 0."""
    out, t, level, i = [], 0, 1, 0
    while True:
        t += pat[i % len(pat)]
        level ^= 1
        i += 1
        if t >= ms:
            return out
        out.append((t, level))


def test_lamp_patterns_are_timed_exactly_and_set_at_once(tmp_path):
    got = lamp_run(tmp_path, r"""
for name, pat in (("EMERGENCY", PATTERN_EMERGENCY), ("HIGH", PATTERN_HIGH), ("OFFLINE", L.OFFLINE),
                  ("NOT_CONFIGURED", L.NOT_CONFIGURED), ("ACKNOWLEDGED", L.ACKNOWLEDGED), ("IDENTIFY", L.IDENTIFY)):
    show(name, pat)
show("STEADY", PATTERN_NORMAL)
print("SAME", L.STEADY is PATTERN_NORMAL)
""")
    for name, pat in (("EMERGENCY", (300, 300)), ("HIGH", (1000, 1000)), ("OFFLINE", (100, 2900)),
                      ("NOT_CONFIGURED", (100, 150, 100, 650)), ("ACKNOWLEDGED", (1800, 200)),
                      ("IDENTIFY", (150, 150))):
        first, same, edges = got[name].split(" ", 2)
        assert first == "1", (name, got[name])             # lit in the same step as set()
        assert same == "True", (name, got[name])           # the task's waits land on every edge
        assert eval(edges) == expected_edges(pat, 4100), (name, edges)
    assert got["STEADY"] == "1 True []"                    # a normal call: lit, no edge
    assert got["SAME"] == "True"                         # steady is wardproto's normal pattern


def test_lamp_phase_survives_long_runs_and_overrides_end(tmp_path):
    got = lamp_run(tmp_path, r"""
lp.set(L.REASSURE, PATTERN_HIGH)
t0 = now[0]
levels = []
for at in (700500, 701500, 3600250, 3601250):    # 700 s and an hour on: rebased on the way
    now[0] = t0 + at
    lp.step()
    levels.append(machine.pins[board.LAMP_REASSURE])
print("LONG", levels)
lp.set(L.PRESENCE, L.OFF)
lp.step()
lp.override(L.IDENTIFY, 1000)
print("OVERRIDE", edges(L.PRESENCE, board.LAMP_PRESENCE, 1400, True))
""")
    # HIGH is 1 s on / 1 s off: 700.5 s on, 701.5 s off, 3600.25 s on, 3601.25 s off
    assert got["LONG"] == "[1, 0, 1, 0]"
    # identify drives every lamp 150/150 for 1 s, then the lamp's own pattern (off) again
    assert eval(got["OVERRIDE"]) == [(150, 0), (300, 1), (450, 0), (600, 1), (750, 0), (900, 1), (1000, 0)]


def test_outbox_is_atomic_persistent_and_bounded(tmp_path):
    code = r"""
import os
from outbox import Outbox, MAX_EVENTS
from wardproto import CALL, CANCEL
class C:
    def synced(self): return False
    def unix(self): return 0
ob = Outbox(7)
ob.add(CALL, 0x70001, 4, 3, 0)
ob.add(CANCEL, 0x70001, 1, 3, 0)
ob.add(CALL, 0x70002, 1, 0, 0)
print('files', sorted(os.listdir('.')))
ob2 = Outbox(8)
print('reloaded', [e[:3] for e in ob2.items])
print('age0', ob2.age_ms(ob2.items[0], C()))
print('ack', ob2.ack(0x70001, CALL), ob2.ack(0x70001, CALL), [e[:3] for e in Outbox(9).items])
for n in range(3, 3 + MAX_EVENTS):
    ob2.add(CALL, 0x70000 + n, 4, 3, 0)
print('bounded', len(ob2), len(Outbox(9)), MAX_EVENTS)
open('outbox.json', 'w').write('[[4, 1, ')
print('corrupt', len(Outbox(10)))
"""
    rc, out = mprun.run_code(code, tmp_path)
    assert rc == 0, out
    assert "files ['outbox.json']" in out          # no temporary file left behind
    assert "reloaded [[4, 458753, 4], [8, 458753, 1], [4, 458754, 1]]" in out
    assert "age0 0" in out                         # from another boot, no clock: 0
    assert "ack True False [[8, 458753, 1], [4, 458754, 1]]" in out
    assert "bounded 32 32 32" in out
    assert "corrupt 0" in out and "corrupt" in out


def test_supervisor_restarts_a_failed_task_and_feeds_the_watchdog_only_while_all_are_alive(tmp_path):
    code = r"""
import asyncio, time, machine
from supervisor import Supervisor
restarted = []
s = Supervisor(restarted.append)
runs = [0]
stuck = [False]
async def flaky(alive):
    runs[0] += 1
    for _ in range(5):
        alive(); await asyncio.sleep_ms(50)
    if runs[0] < 3:
        raise ValueError('boom %d' % runs[0])
    while True:
        if not stuck[0]:
            alive()
        await asyncio.sleep_ms(50)
s.add('flaky', flaky, 1000)
async def main():
    t = asyncio.create_task(s.run(5000))
    await asyncio.sleep_ms(2500)
    print('runs', runs[0], 'restarted', restarted, 'fed', len(machine.wdt) > 0)
    stuck[0] = True
    await asyncio.sleep_ms(1200)
    n = len(machine.wdt)
    await asyncio.sleep_ms(1500)
    print('stuck fed', len(machine.wdt) - n, 'healthy', s.healthy)
    stuck[0] = False
    await asyncio.sleep_ms(1200)
    print('recovered', s.healthy, len(machine.wdt) - n > 0)
    t.cancel()
asyncio.run(main())
"""
    rc, out = mprun.run_code(code, tmp_path)
    assert rc == 0, out
    assert "runs 3 restarted ['flaky', 'flaky'] fed True" in out
    assert "ValueError" in out and "boom 1" in out          # logged with its traceback
    assert "stuck fed 0 healthy False" in out
    assert "recovered True True" in out


def test_config_validation_messages(tmp_path):
    code = r"""
import json, config
print('missing', config.load())
good = {"device_id": "bed-1", "key": "ab" * 32, "ward": "W", "room": "1", "bed": "1",
        "wifi": {"ssid": "s", "password": "p"}, "host": None, "port": 7300, "discovery_port": 7301}
json.dump(good, open('config.json', 'w'))
cfg, err = config.load()
print('good', err, cfg['host'], cfg['debug'])
for k, v in (("key", "xyz"), ("port", 0), ("wifi", "x"), ("device_id", "")):
    bad = dict(good); bad[k] = v
    json.dump(bad, open('config.json', 'w'))
    print('bad', k, config.load())
open('config.json', 'w').write('{not json')
print('garbled', config.load())
json.dump(good, open('config.json', 'w'))
print('update', config.update({"room": "2"})[1], config.load()[0]['room'])
print('update key', config.update({"key": "00" * 32}))
print('update bad', config.update({"port": 70000}))
print('standby without host', config.update({"standby_host": "10.0.0.6"}))
print('standby port', config.update({"host": "10.0.0.5", "standby_host": "10.0.0.6", "standby_port": 0}))
print('standby', config.update({"host": "10.0.0.5", "standby_host": "10.0.0.6"})[1], config.load()[0]['standby_host'])
"""
    rc, out = mprun.run_code(code, tmp_path)
    assert rc == 0, out
    assert "missing (None, 'config.json is missing or not valid JSON')" in out
    assert "good None None False" in out
    assert "bad key (None, 'config.json: key must be 64 hexadecimal digits')" in out
    assert "bad port (None, 'config.json: port must be a port number (1-65535)')" in out
    assert "bad wifi (None" in out and "bad device_id (None" in out
    assert "garbled (None" in out
    assert "update None 2" in out
    assert "update key (None, 'config key key cannot be changed remotely')" in out
    assert "update bad (None, 'port must be a port number (1-65535)')" in out
    assert ("standby without host (None, 'standby_host needs host: with discovery the terminal finds "
            "whichever host answers')") in out
    assert "standby port (None, 'standby_port must be a port number (1-65535)')" in out
    assert "standby None 10.0.0.6" in out


def test_not_configured_shows_its_pattern_and_keeps_running(tmp_path):
    out = mprun.run_scenario(r"""
async def scenario(app):
    t0 = time.ticks_ms()
    await asyncio.sleep_ms(2100)
    ev = lamp_edges(board.LAMP_REASSURE, t0)
    ons = [e for e in ev if e[1] == 1]
    check(len(ons) >= 3, "double blink repeats: %r" % (ev,))
    check(app.lamps.pattern(0) is app.lamps.pattern(0) and app.link is None, "no link without config")
    # local calls still work: the lamp changes to the call's pattern at once
    set_input(board.CODE, True)
    await until(lambda: app.calls.active[0] is not None, 200, "code call")
    import lamps
    check(app.lamps.pattern(lamps.REASSURE) == (300, 300), "emergency pattern")
    set_input(board.CODE, False)
""", tmp_path)
    mprun.assert_passed(out)
    assert "NOT CONFIGURED: config.json is missing" in out


def test_call_state_placed_from_the_host_brings_back_the_calls_own_lamp_pattern(tmp_path):
    # the host sends CALL_STATE placed for a call it takes as new (it lost its record): the
    # reassurance lamp must leave "acknowledged" for the call's own pattern, and keep it after a
    # restart
    code = r"""
import json
import lamps as L
import calls as C
from wardproto import PATTERN_NORMAL, PATTERN_HIGH, ST_PLACED, ST_ACKNOWLEDGED, ST_ATTENDED, ST_ESCALATED
from outbox import Outbox
from outgoing import Outgoing
from buzzer import Buzzer
from clock import Clock
def make():
    lp = L.Lamps()
    cs = C.Calls(1, Outbox(1), lp, Buzzer(), Clock(), Outgoing())
    cs.set_online(True)
    return cs, lp
def lamp(lp):
    p = lp.pattern(L.REASSURE)
    return {id(PATTERN_NORMAL): "normal", id(PATTERN_HIGH): "high", id(L.ACKNOWLEDGED): "acknowledged"}.get(id(p), repr(p))
cs, lp = make()
patient = cs.place(C.S_PATIENT)
print("placed", lamp(lp))
cs.on_state(patient, ST_ACKNOWLEDGED, "nurse A")
print("acknowledged", lamp(lp))
cs.on_state(patient, ST_PLACED, "")
print("placed again", lamp(lp), [c[2] for c in json.load(open("calls.json"))["c"]])
cs.on_state(patient, ST_ATTENDED, "")
cs2, lp2 = make()
print("restarted attended", lamp(lp2))
cs2.on_state(patient, ST_PLACED, "")
cs3, lp3 = make()
print("restarted placed", lamp(lp3))
bath = cs3.place(C.S_BATH)
cs3.on_state(bath, ST_ACKNOWLEDGED, "")
print("bath acknowledged", lamp(lp3))
cs3.on_state(bath, ST_PLACED, "")
print("bath placed again", lamp(lp3), lp3.pattern(L.DOME) is PATTERN_HIGH)
"""
    rc, out = mprun.run_code(code, tmp_path)
    assert rc == 0, out
    assert "placed normal" in out
    assert "acknowledged acknowledged" in out
    assert "placed again normal [0]" in out                # and stored as placed
    assert "restarted attended acknowledged" in out
    assert "restarted placed normal" in out
    assert "bath acknowledged acknowledged" in out
    assert "bath placed again high True" in out


BUZZER_IDLE = """
import asyncio, time
from buzzer import Buzzer
from wardproto import ALARM_MEDIUM
b = Buzzer()
fed = [0]
def alive():
    fed[0] += 1
async def main():
    task = asyncio.create_task(b.run(alive))
    await asyncio.sleep_ms(2100)                  # silent for 2.1 s: every turn of its loop says alive
    idle = fed[0]
    t0 = time.ticks_ms()
    b.chime(ALARM_MEDIUM)                         # the host asks for a chime: it starts at once
    while not b.on and time.ticks_diff(time.ticks_ms(), t0) < 1000:
        await asyncio.sleep_ms(1)
    started = time.ticks_diff(time.ticks_ms(), t0)
    await asyncio.sleep_ms(1200)
    task.cancel()                                 # the supervisor stops it: it stops
    await asyncio.sleep_ms(50)
    print("IDLE", idle, "CHIME_MS", started, "BURSTS", b.bursts, "ON", b.on, "STOPPED", task.done())
asyncio.run(main())
"""


def test_a_silent_buzzer_sleeps_until_asked_and_a_chime_starts_at_once(tmp_path):
    # the buzzer's idle task used to poll every 50 ms (42 turns in 2.1 s): now it sleeps until
    # chime()/alarm()/test(), and still tells the supervisor it is alive once a second
    rc, out = mprun.run_code(BUZZER_IDLE, tmp_path)
    assert rc == 0, out
    words = out.split("IDLE", 1)[1].split()
    idle, chime_ms, bursts, on, stopped = int(words[0]), int(words[2]), int(words[4]), words[6], words[8]
    assert 1 <= idle <= 4, out
    assert chime_ms < 50 and bursts == 1 and on == "0", out
    assert stopped == "True", out


LAMPS_IDLE = """
import asyncio, time, machine, board
import lamps as L
from wardproto import PATTERN_EMERGENCY
lp = L.Lamps()
fed = [0]
def alive():
    fed[0] += 1
async def main():
    task = asyncio.create_task(lp.run(alive))
    await asyncio.sleep_ms(2100)                  # nothing lit for 2.1 s: it sleeps a second at a time
    idle = fed[0]
    t0 = time.ticks_ms()
    lp.set(L.REASSURE, PATTERN_EMERGENCY)         # 300 on / 300 off, mid-sleep: lit at once, edges on time
    lit = machine.pins[board.LAMP_REASSURE]
    while machine.pins[board.LAMP_REASSURE] and time.ticks_diff(time.ticks_ms(), t0) < 2000:
        await asyncio.sleep_ms(1)
    off_ms = time.ticks_diff(time.ticks_ms(), t0)
    task.cancel()                                 # the supervisor stops it: it stops
    await asyncio.sleep_ms(50)
    print("IDLE", idle, "LIT", lit, "OFF_MS", off_ms, "STOPPED", task.done())
asyncio.run(main())
"""


def test_lamps_with_nothing_blinking_sleep_and_a_new_pattern_keeps_its_edges(tmp_path):
    # the lamp task woke every 100 ms (22 turns in 2.1 s) with nothing to time: now up to a
    # second, and set() wakes it, so a pattern set mid-sleep has its first edge at 300 ms, not
    # at the end of the sleep (900 ms later)
    rc, out = mprun.run_code(LAMPS_IDLE, tmp_path)
    assert rc == 0, out
    words = out.split("IDLE", 1)[1].split()
    idle, lit, off_ms, stopped = int(words[0]), words[2], int(words[4]), words[6]
    assert 2 <= idle <= 4, out
    assert lit == "1", out
    assert 295 <= off_ms < 600, out
    assert stopped == "True", out


KEY_READ = r"""
import json, otaproto as O, otacheck as C
n = 0xc2 * (1 << 3060) + 12345677          # 767 hex digits; n * 16 + 5 has 768
for m in (n, n * 16 + 5):
    for text in (O.key_text(m), json.dumps({"n": "%x" % m, "e": 65537}) + "\n", '{"e": 65537, "n": "000%X"}' % m):
        open(O.KEY_FILE, "w").write(text)
        print("same", C.load_key() == O.parse_key(text), C.key_state() == O.key_id(m))
for bad in ('{"n": "%x", "e": 3}' % n, '{"n": "%x"}' % n, '{"n": "%x", "e": 65537}' % (n * 2),
            '{"n": "ff", "e": 65537}', 'garbage', '{"n": "%x", "e": 65537, "x": 1}' % n, ''):
    open(O.KEY_FILE, "w").write(bad)
    try:
        C.load_key()
        print("accepted", bad[:12])
    except O.Refused:
        print("refused", C.key_state())
import os
os.remove(O.KEY_FILE)
print("none", C.load_key(), repr(C.key_state()))
"""


def test_the_update_key_is_read_in_small_pieces_and_as_strictly(tmp_path):
    # STATUS (twice a second in a trial) and BEGIN read the ward key from the file 32 digits at
    # a time: the same key as otaproto.parse_key, the same id, and a malformed file refused
    rc, out = mprun.run_code(KEY_READ, tmp_path)
    assert rc == 0, out
    assert out.count("same True True") == 6, out
    assert "accepted" not in out and out.count("refused") == 7, out
    assert "none None ''" in out, out
