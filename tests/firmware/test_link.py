"""The application against a scripted CPython host (fakehost.py) over real TCP/UDP on loopback:
delivery, acknowledgement, resend, offline queueing, reconnection, garbage, dead link, discovery,
commands, reboot survival. The same behaviours against the real host and the emulator are in
test_e2e.py."""
import time

import pytest

from tests.firmware import mprun
from tests.firmware.fakehost import FakeHost, P

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def host():
    h = FakeHost("bed-101-1", mprun.KEY, hb_ms=300).start()
    yield h
    h.stop()


def flash_for(tmp_path, fake, **extra):
    mprun.write_config(tmp_path, mprun.config(port=fake.port, discovery_port=fake.udp_port, **extra))
    return tmp_path


def kinds(msgs):
    return [(m["type"], m.get("kind", m.get("reason"))) for m in msgs if m["type"] in (P.CALL, P.CANCEL)]


def test_cancel_rules_and_call_types(tmp_path, host):
    out = mprun.run_scenario(r"""
import calls as C
async def settle(app):
    await until(lambda: len(app.outbox) == 0, 3000, "outbox delivered")
async def scenario(app):
    await until(lambda: app.link.online, 5000, "online")
    await press(board.CALL); await until(lambda: app.calls.active[C.S_PATIENT], 300, "patient")
    await press(board.PRESENCE); await until(lambda: app.calls.presence, 300, "presence on")
    check(app.calls.active[C.S_PATIENT] is None, "presence clears a patient call")
    await press(board.CALL); await until(lambda: app.calls.active[C.S_ASSIST], 300, "assist")
    check(app.calls.active[C.S_PATIENT] is None, "call with presence on is staff assist (VDE 0834)")
    await press(board.PRESENCE); await until(lambda: not app.calls.presence, 300, "presence off")
    check(app.calls.active[C.S_ASSIST] is None, "presence press clears staff assist")
    set_input(board.CORD_PULL, True); await until(lambda: app.calls.active[C.S_BATH], 300, "bath")
    await press(board.PRESENCE); await until(lambda: app.calls.presence, 300, "presence on 2")
    check(app.calls.active[C.S_BATH] is not None, "bathroom call stays while the cord is pulled")
    set_input(board.CORD_PULL, False); await asyncio.sleep_ms(100)
    check(app.calls.active[C.S_BATH] is not None, "cord back at rest alone does not clear")
    await press(board.PRESENCE); await until(lambda: app.calls.active[C.S_BATH] is None, 300, "bath cleared")
    await press(board.CODE); await until(lambda: app.calls.active[C.S_CODE], 300, "code")
    await press(board.PRESENCE); await asyncio.sleep_ms(100)
    check(app.calls.active[C.S_CODE] is not None, "presence does not clear code blue")
    await press(board.CODE, 500); await asyncio.sleep_ms(100)
    check(app.calls.active[C.S_CODE] is not None, "a short press does not clear code blue")
    set_input(board.CODE, True)
    await until(lambda: app.calls.active[C.S_CODE] is None, 2600, "code cleared by a 2 s hold")
    set_input(board.CODE, False)
    set_input(board.CORD_LOOP, False)
    await until(lambda: app.calls.active[C.S_CORD], 300, "cord fault call")
    check(app.calls.cord_fault, "cord fault flagged")
    await press(board.PRESENCE); await asyncio.sleep_ms(100)
    check(app.calls.active[C.S_CORD] is not None, "cord fault call stays while unplugged")
    set_input(board.CORD_LOOP, True); await until(lambda: not app.calls.cord_fault, 300, "plugged")
    await press(board.PRESENCE); await until(lambda: app.calls.active[C.S_CORD] is None, 300, "cord call cleared")
    await press(board.ASSIST); await until(lambda: app.calls.active[C.S_ASSIST], 300, "assist button")
    await settle(app)
""", flash_for(tmp_path, host), 30000)
    mprun.assert_passed(out)
    got = kinds(host.messages())
    assert got == [
        (P.CALL, P.PATIENT), (P.CANCEL, P.CANCEL_PRESENCE),
        (P.CALL, P.STAFF_ASSIST), (P.CANCEL, P.CANCEL_PRESENCE),
        (P.CALL, P.BATHROOM), (P.CANCEL, P.CANCEL_ORIGIN),
        (P.CALL, P.CODE_BLUE), (P.CANCEL, P.CANCEL_ORIGIN),
        (P.CALL, P.TECHNICAL), (P.CANCEL, P.CANCEL_ORIGIN),
        (P.CALL, P.STAFF_ASSIST)], got
    pres = [m["on"] for m in host.messages(P.PRESENCE)]
    assert pres == [1, 0, 1, 0, 1, 0, 1], pres
    faults = [(m["code"], m["active"]) for m in host.messages(P.FAULT)]
    assert faults == [(P.FAULT_CORD, 1), (P.FAULT_CORD, 0)], faults
    ids = [m["call"] for m in host.messages(P.CALL)]
    assert len(set(ids)) == len(ids)
    for m in host.messages(P.CALL):
        assert m["priority"] == m["kind"]


def test_lamp_lights_before_network_and_changes_on_acknowledge(tmp_path, host):
    def on_msg(h, m):
        if m["type"] == P.CALL:
            h.send(P.CALL_STATE, {"call": m["call"], "state": P.ST_ACKNOWLEDGED, "by": "nurse A"})
    host.on_message = on_msg
    out = mprun.run_scenario(r"""
import lamps as L
async def scenario(app):
    await until(lambda: app.link.online, 5000, "online")
    sent = app.link.sessions
    set_input(board.CALL, True)
    await until(lambda: app.calls.active[3] is not None, 200, "call placed")
    # the lamp was switched in the same step as the call was placed (before any network I/O)
    check(machine.pins[board.LAMP_REASSURE] == 1, "reassurance lamp on at once")
    check(app.lamps.pattern(L.REASSURE) == (1000, 0), "normal call: steady")
    set_input(board.CALL, False)
    await until(lambda: app.lamps.pattern(L.REASSURE) is L.ACKNOWLEDGED, 2000, "acknowledged pattern")
    await until(lambda: len(app.outbox) == 0, 2000, "CALL_ACK")
""", flash_for(tmp_path, host))
    mprun.assert_passed(out)
    assert "call 65537 acknowledged by nurse A" in out
    assert len(host.messages(P.CALL)) == 1


def test_unacknowledged_event_is_resent_with_the_same_id(tmp_path, host):
    host.ack = False
    # the host starts acknowledging once it has seen the resend
    def on_msg(h, m):
        if m["type"] == P.CALL and len(h.messages(P.CALL)) >= 2:
            h.ack = True
    host.on_message = on_msg
    out = mprun.run_scenario(r"""
async def scenario(app):
    await until(lambda: app.link.online, 5000, "online")
    await press(board.ASSIST)
    await until(lambda: len(app.outbox) == 0, 8000, "acknowledged after resend")
""", flash_for(tmp_path, host), 30000)
    mprun.assert_passed(out)
    calls = host.messages(P.CALL)
    assert len(calls) >= 2 and len({m["call"] for m in calls}) == 1, calls
    assert "resending unacknowledged event" in out


def test_calls_while_wifi_is_down_arrive_in_order_after_reconnection(tmp_path, host):
    out = mprun.run_scenario(r"""
import network, lamps as L
async def scenario(app):
    await until(lambda: app.link.online, 5000, "online")
    n0 = app.link.sessions
    network.state["up"] = False
    await until(lambda: not app.link.online, 2000, "offline")
    await until(lambda: app.lamps.pattern(L.REASSURE) is L.OFFLINE, 200, "offline pattern")
    await press(board.CALL)
    check(app.lamps.pattern(L.REASSURE) == (1000, 0), "call shown locally while offline")
    set_input(board.CORD_PULL, True)
    await until(lambda: len(app.outbox) == 2, 500, "both calls wait in the outbox")
    placed = time.ticks_ms()
    await until(lambda: len(machine.PWM_LOG) > 0, 6000, "buzzer sounds in the room while the host is unreachable")
    print("WAITED_MS", time.ticks_diff(time.ticks_ms(), placed))
    network.state["up"] = True
    await until(lambda: app.link.online, 8000, "back online")
    await until(lambda: len(app.outbox) == 0, 3000, "delivered")
    await until(lambda: app.buzzer._alarm == 0, 1000, "local alarm stops once online")
""", flash_for(tmp_path, host), 30000)
    mprun.assert_passed(out)
    calls = host.messages(P.CALL)
    assert [m["kind"] for m in calls] == [P.BATHROOM, P.PATIENT][::-1], calls
    waited = int(out.split("WAITED_MS ")[1].split()[0])
    assert all(m["age_ms"] >= waited for m in calls), (waited, calls)     # placed before all that
    assert host.hellos == 2


def test_garbage_and_malformed_frames_from_the_host_are_survived(tmp_path, host):
    def on_msg(h, m):
        if m["type"] == P.PRESENCE and m["on"] == 1:
            h.send_malformed_state()       # authentic, in sequence, invalid body: dropped
            h.send(P.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 0})
        if m["type"] == P.PRESENCE and m["on"] == 0:
            h.send_raw(b"\x00\x05garbage-garbage-garbage")   # bad length: stream untrusted
    host.on_message = on_msg
    out = mprun.run_scenario(r"""
async def scenario(app):
    await until(lambda: app.link.online, 5000, "online")
    await press(board.PRESENCE)
    await asyncio.sleep_ms(500)
    check(app.link.sessions == 1 and app.link.online, "malformed body dropped, session kept")
    await press(board.PRESENCE)
    await until(lambda: app.link.sessions == 2 and app.link.online, 5000, "reconnected after garbage")
    await press(board.CALL)
    await until(lambda: len(app.outbox) == 0, 3000, "call still delivered")
""", flash_for(tmp_path, host), 30000)
    mprun.assert_passed(out)
    assert "malformed frame from the host dropped" in out
    assert "garbage from the host" in out
    assert len(host.messages(P.CALL)) == 1


def test_dead_link_is_detected_within_three_heartbeats(tmp_path, host):
    stamp = {}

    def on_msg(h, m):
        if m["type"] == P.PRESENCE:
            h.silent = True
            h.ack = False
            stamp["t"] = time.monotonic()
    host.on_message = on_msg
    out = mprun.run_scenario(r"""
async def scenario(app):
    await until(lambda: app.link.online, 5000, "online")
    t0 = time.ticks_ms()
    await press(board.PRESENCE, 60)
    await until(lambda: not app.link.online, 3000, "dead link detected")
    print("DETECTED_MS", time.ticks_diff(time.ticks_ms(), t0))
""", flash_for(tmp_path, host), 30000)
    mprun.assert_passed(out)
    ms = int(out.split("DETECTED_MS ")[1].split()[0])
    # 3 heartbeat intervals (900 ms) after the last frame from the host, which came at most one
    # interval before it went silent; the upper bound leaves a busy machine a second to spare
    assert 3 * 300 - 300 <= ms <= 3 * 300 + 1000, out


def test_a_host_beating_every_fifth_interval_is_not_taken_for_dead_but_an_unanswered_frame_is(tmp_path):
    """The host says in WELCOME it beats every 5 x 300 ms: an idle terminal stays in its one
    session through several of those periods; a PRESENCE the host does not answer is a dead
    link after 3 of the terminal's own intervals (900 ms), not 3 of the host's (4.5 s)."""
    h = FakeHost("bed-101-1", mprun.KEY, hb_ms=300, host_beats=5).start()
    try:
        stamp = {}

        def on_msg(host, m):
            if m["type"] == P.PRESENCE:
                host.silent = True
                stamp["t"] = time.monotonic()
        h.on_message = on_msg
        out = mprun.run_scenario(r"""
async def scenario(app):
    await until(lambda: app.link.online, 5000, "online")
    print("HOST_HB_MS", app.link.host_hb_ms)
    await asyncio.sleep_ms(6000)           # four of the host's periods, idle
    print("SESSIONS", app.link.sessions, app.link.online)
    t0 = time.ticks_ms()
    await press(board.PRESENCE, 60)
    await until(lambda: not app.link.online, 3000, "dead link detected")
    print("DETECTED_MS", time.ticks_diff(time.ticks_ms(), t0))
""", flash_for(tmp_path, h), 30000)
    finally:
        h.stop()
    mprun.assert_passed(out)
    assert "HOST_HB_MS 1500" in out and "SESSIONS 1 True" in out, out
    assert "no answer from the host for 900 ms: link dead" in out, out
    ms = int(out.split("DETECTED_MS ")[1].split()[0])
    # 900 ms after the PRESENCE went out (the press is taken within ~60 ms of t0); the upper bound
    # leaves a busy machine a second to spare, and is still far below the host's 4.5 s
    assert 3 * 300 <= ms <= 3 * 300 + 1000, out


def test_host_found_by_udp_discovery(tmp_path, host):
    out = mprun.run_scenario(r"""
async def scenario(app):
    await until(lambda: app.link.online, 8000, "online via discovery")
""", flash_for(tmp_path, host, host=None))
    mprun.assert_passed(out)
    assert host.discovers >= 1 and host.hellos == 1
    assert "discovery: host at 127.0.0.1:%d" % host.port in out


def test_host_commands(tmp_path, host):
    proc = mprun.start_scenario(r"""
import json, lamps as L
async def scenario(app):
    shown = []                  # every override, as it happens (identify lasts only until the lamp test)
    override = app.lamps.override
    def recorded(pat, ms):
        shown.append(pat)
        override(pat, ms)
    app.lamps.override = recorded
    await until(lambda: app.link.online, 5000, "online")
    await until(lambda: L.IDENTIFY in shown, 3000, "identify blinks every lamp")
    await until(lambda: app.buzzer.on == 1 and app.lamps._ovr is L.STEADY, 3000, "lamp test")
    await until(lambda: app.lamps._ovr is None, 3000, "lamp test over")
    await press(board.PRESENCE)
    await until(lambda: app.buzzer.bursts >= 1, 3000, "chime while staff present")
    await until(lambda: app.link.sessions == 2, 5000, "reconnected with the new config")
    check(json.load(open("config.json"))["room"] == "102", "config written")
    await asyncio.sleep_ms(10000)    # the reboot below ends the program
""", flash_for(tmp_path, host), 40000)
    n = [0]

    def command(cmd, arg=b"", ok=1):
        n[0] += 1
        host.send(P.COMMAND, {"cmd_id": n[0], "cmd": cmd, "arg": arg})
        res = host.wait_for(lambda: [m for m in host.messages(P.RESULT) if m["cmd_id"] == n[0]],
                            10, "RESULT %d" % n[0])
        assert res[0]["ok"] == ok, res

    host.wait_for(lambda: host.connected(), 10, "session")
    command(P.CMD_IDENTIFY)
    command(P.CMD_LAMP_TEST)
    command(P.CMD_CHIME, bytes([P.ALARM_HIGH]), ok=0)           # no staff present: refused
    host.wait_for(lambda: host.messages(P.PRESENCE), 10, "presence")
    command(P.CMD_CHIME, bytes([P.ALARM_HIGH]))
    command(99, ok=0)
    command(P.CMD_CONFIG, b'{"key": "00"}', ok=0)               # identity is not changeable
    command(P.CMD_CONFIG, b'{"room": "102"}')
    host.wait_for(lambda: host.hellos == 2 and host.connected(), 10, "new session")
    command(P.CMD_REBOOT)
    out = mprun.finish(proc)
    assert "rebooting as the host asked" in out and out.rstrip().endswith("MACHINE RESET"), out
    assert "CHECK config written" in out and "Traceback" not in out, out


def test_a_call_survives_a_reboot_before_its_acknowledgement(tmp_path, host):
    host.ack = False
    flash = flash_for(tmp_path, host)
    out1 = mprun.run_scenario(r"""
async def scenario(app):
    await until(lambda: app.link.online, 5000, "online")
    await press(board.CALL)
    await asyncio.sleep_ms(300)
    # power is cut here: the process ends without any shutdown
""", flash)
    mprun.assert_passed(out1)
    first = host.messages(P.CALL)
    assert len(first) == 1
    host.ack = True
    out2 = mprun.run_scenario(r"""
import lamps as L
async def scenario(app):
    check(app.calls.active[3] is not None, "the open call is restored from flash")
    check(app.lamps.pattern(L.REASSURE) == (1000, 0), "its lamp shows at once after the reboot")
    await until(lambda: app.link.online, 5000, "online")
    await until(lambda: len(app.outbox) == 0, 3000, "delivered and acknowledged")
""", flash)
    mprun.assert_passed(out2)
    calls = host.messages(P.CALL)
    assert len(calls) == 2 and calls[0]["call"] == calls[1]["call"], calls
    assert "1 undelivered event(s) from before the restart" in out2


def session(host, n):
    """The messages the host received in its n-th session (1-based), HELLO excluded."""
    out, k = [], 0
    for m in host.messages():
        if m["type"] == P.HELLO:
            k += 1
        elif k == n:
            out.append(m)
    return out


def test_faults_raised_while_offline_are_sent_first_after_welcome_in_order(tmp_path, host):
    # the cord unplugged and plugged in 5 times while the Wi-Fi is down: 10 FAULTs, of which the
    # terminal keeps the last 8 (a bounded queue) and sends them, in order, before anything else
    out = mprun.run_scenario(r"""
import network
async def cord(ok):
    set_input(board.CORD_LOOP, ok)
    await until(lambda: app_.calls.cord_fault != ok, 500, "cord %s" % ("plugged" if ok else "unplugged"))
app_ = None
async def scenario(app):
    global app_
    app_ = app
    await until(lambda: app.link.online, 5000, "online")
    network.state["up"] = False
    await until(lambda: not app.link.online, 2000, "offline")
    for _ in range(5):
        await cord(False)
        await cord(True)
    check(app.out.held() == 8, "8 faults held")
    network.state["up"] = True
    await until(lambda: app.link.online, 8000, "back online")
    await until(lambda: app.out.held() == 0 and len(app.outbox) == 0, 3000, "delivered")
""", flash_for(tmp_path, host), 30000)
    mprun.assert_passed(out)
    second = session(host, 2)
    faults = [(m["code"], m["active"], m["detail"]) for m in second if m["type"] == P.FAULT]
    unplugged = (P.FAULT_CORD, 1, "cord unplugged or loop broken")
    plugged = (P.FAULT_CORD, 0, "cord plugged in")
    assert faults == [unplugged, plugged] * 4, faults
    # the first messages of the new session, before any heartbeat or call
    assert [m["type"] for m in second[:8]] == [P.FAULT] * 8, second[:10]
    # the two oldest were dropped, each with a console line
    assert out.count("offline fault queue full: dropping FAULT 1 (cord unplugged or loop broken)") == 1, out
    assert out.count("offline fault queue full: dropping FAULT 1 (cord plugged in)") == 1, out
    assert "8 fault(s) raised offline" in out
    # the technical call was placed offline too, and delivered after the faults
    assert [m["kind"] for m in second if m["type"] == P.CALL] == [P.TECHNICAL], second


def test_the_host_name_is_looked_up_once_and_again_after_repeated_failures(tmp_path, host):
    dropped = set()

    def on_msg(h, m):
        # sessions 1 and 2 end (as on a host restart); after session 3 three connections are
        # refused: the terminal looks the name up again before its 4th session
        n = h.hellos
        if m["type"] == P.HEARTBEAT and n <= 3 and n not in dropped:
            dropped.add(n)
            if n == 3:
                h.refuse = 3
            h.drop()
    host.on_message = on_msg
    out = mprun.run_scenario(r"""
async def scenario(app):
    await until(lambda: app.link.sessions == 4 and app.link.online, 25000, "session 4")
""", flash_for(tmp_path, host, host="localhost"), 40000)
    mprun.assert_passed(out)
    lines = out.splitlines()
    looked_up = [i for i, l in enumerate(lines) if "discovery: localhost is 127.0.0.1" in l]
    online = [i for i, l in enumerate(lines) if "link: online" in l]
    refused = [i for i, l in enumerate(lines) if "no WELCOME from the host" in l]
    assert len(online) == 4 and len(refused) == 3, out
    # once for sessions 1-3, and once more after the three refused connections
    assert len(looked_up) == 2, out
    assert looked_up[0] < online[0] and online[2] < refused[0] and refused[2] < looked_up[1] < online[3], out
    assert out.count("link: connecting to 127.0.0.1:%d" % host.port) == 7, out


def test_a_call_placed_during_a_long_backoff_is_delivered_within_seconds(tmp_path, host):
    # after a long outage the terminal waits up to 45 s between tries; a patient who presses then
    # must not wait for it: with an event to deliver the terminal tries again within 1-2 s
    dropped = []

    def on_msg(h, m):
        # the scenario's PRESENCE says it is watching: the session is dropped then, once
        if m["type"] == P.PRESENCE and not dropped:
            dropped.append(h.hellos)
            h.refuse = 1          # the next connection is refused: a try that fails
            h.drop()
    host.on_message = on_msg
    out = mprun.run_scenario(r"""
import calls as C
async def scenario(app):
    await until(lambda: app.link.online, 5000, "online")
    await press(board.PRESENCE)
    await until(lambda: app.calls.presence, 1000, "presence on")
    await until(lambda: not app.link.online, 5000, "the host dropped the session")
    app.link._backoff.delay = 25000     # as after minutes of failed tries
    await asyncio.sleep_ms(100)         # the first press's release is taken (debounce 30 ms)
    await press(board.PRESENCE)         # presence off again: the call below is a patient call
    await until(lambda: not app.calls.presence, 1000, "presence off")
    await until(lambda: app.link._backoff.delay == 30000, 5000, "the refused try, then a 25-37 s wait")
    await press(board.CALL)
    await until(lambda: app.calls.active[C.S_PATIENT], 1000, "the call placed")
    await until(lambda: len(app.outbox) == 0, 12000, "the call delivered well before the backoff ended")
""", flash_for(tmp_path, host), 40000)
    mprun.assert_passed(out)
    assert [m["kind"] for m in host.messages(P.CALL)] == [P.PATIENT]
    assert "an event to deliver: reconnecting now" in out, out


def test_the_terminal_moves_to_the_standby_host_and_back(tmp_path, host):
    # config.json names a standby host (docs/FEDERATION.md): after three failed sessions with
    # one host the terminal tries the other, and a call placed meanwhile reaches the one serving
    standby = FakeHost("bed-101-1", mprun.KEY, hb_ms=300).start()
    try:
        died = []

        def primary_msg(h, m):
            if m["type"] == P.HEARTBEAT and not died:      # once, whichever session it is
                died.append(h.hellos)
                h.refuse = 10**6          # the primary's PC dies: every connection refused
                h.drop()

        def standby_msg(h, m):
            if m["type"] == P.CALL:
                host.refuse = 0           # the primary is back; the standby steps down
                h.refuse = 10**6
                h.drop()
        host.on_message, standby.on_message = primary_msg, standby_msg
        out = mprun.run_scenario(r"""
import calls as C
async def scenario(app):
    # counted, not watched: the primary's first session may be over before the scenario looks
    await until(lambda: app.link.sessions >= 1, 5000, "online with the primary")
    await until(lambda: app.link.sessions == 1 and not app.link.online, 5000, "the primary gone")
    await press(board.CALL)
    await until(lambda: app.link.sessions == 2 and app.link.online, 15000, "online with the standby")
    await until(lambda: app.link.sessions == 3 and app.link.online, 15000, "online with the primary again")
    await until(lambda: len(app.outbox) == 0, 5000, "the call acknowledged")
""", flash_for(tmp_path, host, standby_host="127.0.0.1", standby_port=standby.port), 40000)
        mprun.assert_passed(out)
        assert host.hellos > died[0] and standby.hellos >= 1, out       # back with the primary, after the standby
        assert [m["kind"] for m in standby.messages(P.CALL)] == [P.PATIENT]
        assert "3 sessions failed: trying the standby host 127.0.0.1" in out, out
        assert "3 sessions failed: trying the primary host 127.0.0.1" in out, out
    finally:
        standby.stop()
