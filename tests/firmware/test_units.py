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
    code = r"""
import asyncio, time, machine, board
import inputs as I
events = []
inp = I.Inputs(lambda ev, i: events.append((ev, i, time.ticks_ms())))
machine.pins[board.CORD_LOOP] = 0
async def poll_for(ms):
    end = time.ticks_add(time.ticks_ms(), ms)
    while time.ticks_diff(end, time.ticks_ms()) > 0:
        inp.poll()
        await asyncio.sleep_ms(10)
async def main():
    await poll_for(100)
    print('idle', events)
    machine.pins[board.CALL] = 0; await poll_for(20); machine.pins[board.CALL] = 1
    await poll_for(100)
    print('glitch', [e[:2] for e in events])
    t0 = time.ticks_ms()
    machine.pins[board.CALL] = 0; await poll_for(80); machine.pins[board.CALL] = 1
    await poll_for(100)
    print('press', [e[:2] for e in events], time.ticks_diff(events[0][2], t0))
    del events[:]
    machine.pins[board.CODE] = 0; await poll_for(2300); machine.pins[board.CODE] = 1
    await poll_for(100)
    print('hold', [e[:2] for e in events])
asyncio.run(main())
"""
    rc, out = mprun.run_code(code, tmp_path)
    assert rc == 0, out
    assert "idle []" in out
    assert "glitch []" in out
    assert "press [(1, 0), (2, 0)]" in out
    lat = int(out.split("press [(1, 0), (2, 0)] ")[1].split()[0])
    assert 30 <= lat <= 80, out
    assert "hold [(1, 3), (3, 3), (2, 3)]" in out


def test_lamp_patterns_are_timed_and_set_at_once(tmp_path):
    code = r"""
import asyncio, time, machine, board
import lamps as L
lp = L.Lamps()
async def main():
    task = asyncio.create_task(lp.run(lambda: None))
    for name in ('EMERGENCY', 'HIGH', 'OFFLINE', 'NOT_CONFIGURED', 'ACKNOWLEDGED'):
        lp.set(L.REASSURE, L.OFF)
        await asyncio.sleep_ms(50)
        t0 = time.ticks_ms()
        lp.set(L.REASSURE, getattr(L, name))
        first = machine.pins[board.LAMP_REASSURE]
        await asyncio.sleep_ms(3200)
        edges = [(time.ticks_diff(t, t0), v) for (t, p, v) in machine.trace
                 if p == board.LAMP_REASSURE and time.ticks_diff(t, t0) >= 0]
        print(name, first, edges)
    task.cancel()
asyncio.run(main())
"""
    rc, out = mprun.run_code(code, tmp_path)
    assert rc == 0, out
    lines = {l.split()[0]: l for l in out.splitlines() if l and l.split()[0].isupper()}

    def edges(name):
        first = int(lines[name].split()[1])
        return first, eval(lines[name].split(" ", 2)[2])

    def durations(ev):
        return [(ev[i + 1][0] - ev[i][0], ev[i][1]) for i in range(len(ev) - 1)]

    for name, on, off in (("EMERGENCY", 300, 300), ("HIGH", 1000, 1000), ("OFFLINE", 100, 2900),
                          ("ACKNOWLEDGED", 1800, 200)):
        first, ev = edges(name)
        assert first == 1, (name, out)           # lit synchronously by set()
        assert ev[0] == (0, 1) or ev[0][0] <= 1, (name, ev)
        for d, v in durations(ev):
            want = on if v == 1 else off
            assert abs(d - want) <= 40, (name, ev)
    first, ev = edges("NOT_CONFIGURED")
    pattern = [d for d, _ in durations(ev)][:4]
    for d, want in zip(pattern, (100, 150, 100, 650)):
        assert abs(d - want) <= 40, ev


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
s = Supervisor()
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
restarted = []
s.add('flaky', flaky, 1000)
s.on_restart = restarted.append
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
