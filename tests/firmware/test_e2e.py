"""End to end: the real firmware on emulated ESP32 boards (boards/emulator) against the real host
(`wardcall serve`), observed through the emulator's control channel and the host's API."""
import asyncio
import re
import threading
import time

import pytest

from tests.firmware.fakehost import stop_loop

pytestmark = pytest.mark.timeout(120)


def segments(board, pin, since, until=None):
    """[(level, ms)] of the complete on/off segments of an output after `since` (monotonic s)."""
    h = [(t, 1 if v else 0) for t, v in board.history(pin, since=since)]
    if until is not None:
        h = [e for e in h if e[0] <= until]
    # collapse repeated values
    edges = []
    for t, v in h:
        if not edges or edges[-1][1] != v:
            edges.append((t, v))
    return [(edges[i][1], round((edges[i + 1][0] - edges[i][0]) * 1000)) for i in range(len(edges) - 1)]


def assert_pattern(segs, on, off, tol=80, min_cycles=2):
    """Every complete segment (skipping the first, which may be cut) matches on/off ms."""
    segs = segs[1:]
    assert len(segs) >= 2 * min_cycles, segs
    # one late edge is allowed (the test host's scheduler under load), none far out
    errs = sorted(abs(ms - (on if level else off)) for level, ms in segs)
    assert errs[-1] <= 3 * tol and (len(errs) < 2 or errs[-2] <= tol), (segs, on, off)


def call_id_from(console, kind):
    m = re.findall(r"%s call (\d+) placed" % kind, console)
    assert m, console
    return int(m[-1])


def host_calls(rig, device, call_id=None):
    return [c for c in rig.calls(device) if call_id is None or c["call_id"] == call_id]


def test_patient_call_lamp_acknowledge_presence_and_cancel(make_terminals):
    rig = make_terminals(2)
    b, dev = rig.board(0), rig.devices[0]
    t0 = time.monotonic()
    b.tap("call", 150)
    b.wait_output("lamp_reassure", 1, 2)
    call = rig.wait(lambda: host_calls(rig, dev), 5, "call at the host")[0]
    assert call["kind_name"] == "patient" and call["call_id"] == call_id_from(b.console(), "patient")
    # the lamp lit before the host stored the call (the firmware logs in that order)
    con = b.wait_console("host stored CALL", 5)
    assert con.index("patient call") < con.index("host stored CALL")
    time.sleep(1.2)
    assert segments(b, "lamp_reassure", t0) == [], "normal call: steady, no edge after lighting"
    assert b.output("lamp_reassure") == 1
    rig.api.acknowledge(call["id"])
    b.wait_console("acknowledged", 5)
    t1 = time.monotonic()
    time.sleep(4.5)
    assert_pattern(segments(b, "lamp_reassure", t1), 1800, 200, min_cycles=1)
    # presence at the bedside: reported to the host, clears the normal call
    b.tap("presence", 150)
    b.wait_output("lamp_presence", 1, 2)
    rig.wait(lambda: (rig.terminal(dev) or {}).get("presence") is True, 5, "presence at the host")
    rig.wait(lambda: host_calls(rig, dev, call["call_id"])[0]["state"] == "cleared"
             if host_calls(rig, dev, call["call_id"]) else True, 5, "call cleared")
    b.wait_output("lamp_reassure", 0, 2)
    time.sleep(0.3)                 # tap() returns at once: let the first one end
    b.tap("presence", 150)
    b.wait_console("presence off", 3)
    rig.wait(lambda: (rig.terminal(dev) or {}).get("presence") is False, 5,
             "presence off at the host\n" + b.console()[-800:])
    assert b.output("lamp_presence") == 0
    assert rig.board(1).output("lamp_reassure") == 0       # the other terminal saw nothing
    assert "Traceback" not in b.console()


def test_priority_patterns_code_blue_and_bathroom(make_terminals):
    rig = make_terminals(1)
    b, dev = rig.board(0), rig.devices[0]
    b.tap("code", 150)
    b.wait_output("lamp_reassure", 1, 2)
    t0 = time.monotonic()
    rig.wait(lambda: host_calls(rig, dev), 5, "code blue at the host")
    time.sleep(2.2)
    assert_pattern(segments(b, "lamp_reassure", t0), 300, 300)
    assert_pattern(segments(b, "dome", t0), 300, 300)
    # the cord is pulled meanwhile: code blue keeps the lamps (highest priority)
    b.cord("pulled")
    rig.wait(lambda: len(host_calls(rig, dev)) == 2, 5, "bathroom call at the host")
    time.sleep(1)
    assert_pattern(segments(b, "lamp_reassure", t0), 300, 300)
    # code blue clears only by holding the code button 2 s at this terminal
    b.tap("code", 2500)
    rig.wait(lambda: [c for c in host_calls(rig, dev) if c["kind_name"] == "code_blue"
                      and c["state"] == "cleared"] or not [c for c in host_calls(rig, dev)
                                                            if c["kind_name"] == "code_blue"],
             5, "code blue cleared")
    t1 = time.monotonic()
    time.sleep(4.5)
    assert_pattern(segments(b, "lamp_reassure", t1 + 0.2), 1000, 1000, min_cycles=1)  # bathroom: high
    # bathroom clears when the cord is back at rest and presence is pressed there
    b.cord("ok")
    b.tap("presence", 150)
    b.wait_output("lamp_reassure", 0, 3)
    b.wait_console("bathroom call", 1)
    assert "cancelled (reason 2)" in b.console()


def test_call_survives_a_power_cut_before_its_acknowledgement(make_terminals):
    rig = make_terminals(1, heartbeat_ms=1000)
    b, dev = rig.board(0), rig.devices[0]
    # the acknowledgement is held back by the network (1.5 s per chunk, within 3 heartbeats) ...
    b.fault(delay_ms=1500)
    b.tap("assist", 150)
    b.wait_output("lamp_reassure", 1, 2)
    cid = call_id_from(b.console(), "staff_assist")
    rig.wait(lambda: host_calls(rig, dev, cid), 10, "call stored at the host")
    # ... and the power fails before it arrives
    assert "host stored CALL" not in b.console()
    b.power_cycle()
    b.fault(delay_ms=0)
    b.wait_console("restored open staff_assist call %d" % cid, 10)
    b.wait_output("lamp_reassure", 1, 3)          # shown again at once after the restart
    b.wait_console("host stored CALL %d" % cid, 15)
    assert len(host_calls(rig, dev)) == 1, rig.calls(dev)


def test_call_written_while_offline_survives_a_reboot(make_terminals):
    rig = make_terminals(1)
    b, dev = rig.board(0), rig.devices[0]
    b.wifi(False)
    rig.wait_online([dev], online=False, timeout=10)
    b.tap("call", 150)
    b.wait_output("lamp_reassure", 1, 2)
    cid = call_id_from(b.console(), "patient")
    b.power_cycle()
    b.wait_console("1 undelivered event(s) from before the restart", 10)
    b.wifi(True)
    rig.wait(lambda: host_calls(rig, dev, cid), 20, "call delivered after the reboot")
    time.sleep(1)
    assert len(host_calls(rig, dev)) == 1


def test_call_while_wifi_is_down_arrives_once_after_reconnection(make_terminals):
    rig = make_terminals(2)
    b, dev = rig.board(0), rig.devices[0]
    b.wifi(False)
    t0 = time.monotonic()
    b.wait_console("Wi-Fi lost", 5)
    rig.wait_online([dev], online=False, timeout=10)
    time.sleep(6.5)
    assert_pattern(segments(b, "lamp_reassure", t0 + 0.5), 100, 2900, min_cycles=1)   # offline
    t1 = time.monotonic()
    b.tap("call", 150)
    b.cord("pulled")
    b.wait_output("lamp_reassure", 1, 2)
    time.sleep(4)
    assert any(v for _, v in b.history("buzzer", since=t1)), "buzzer sounds while the host is unreachable"
    assert host_calls(rig, dev) == []
    b.wifi(True)
    calls = rig.wait(lambda: len(host_calls(rig, dev)) == 2 and host_calls(rig, dev), 20, "both calls")
    time.sleep(1.5)
    calls = sorted(host_calls(rig, dev), key=lambda c: c["id"])
    assert [c["kind_name"] for c in calls] == ["patient", "bathroom"]      # in order, once each
    assert calls[0]["call_id"] == call_id_from(b.console(), "patient")
    assert len(host_calls(rig, rig.devices[1])) == 0


def test_runs_across_the_ticks_ms_wrap(make_terminals):
    # ticks_ms() starts 4 s before its 2**30 wrap on this board
    rig = make_terminals(1, board_kw={"wrap_s": 4})
    b, dev = rig.board(0), rig.devices[0]
    b.tap("code", 150)
    t0 = time.monotonic()
    time.sleep(5)                                   # the wrap happens in here
    assert_pattern(segments(b, "lamp_reassure", t0), 300, 300, min_cycles=5)
    rig.wait_online([dev])                          # heartbeats kept flowing across the wrap
    state = rig.terminal(dev)
    assert time.time() - state["last_heartbeat"] < 1.0, state
    b.tap("call", 150)
    rig.wait(lambda: len(host_calls(rig, dev)) == 2, 5, "a call after the wrap")
    assert "Traceback" not in b.console() and "link dead" not in b.console()


class GarbageProxy:
    """A TCP relay between a terminal and the host that can push raw bytes to the terminal as if
    the host had sent them."""

    def __init__(self, port):
        self.dest = port
        self.port = None
        self.writers = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        assert ready.wait(5)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def start():
            srv = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = srv.sockets[0].getsockname()[1]
        self.loop.run_until_complete(start())
        ready.set()
        self.loop.run_forever()

    async def _client(self, br, bw):
        hr, hw = await asyncio.open_connection("127.0.0.1", self.dest)
        self.writers.append(bw)

        async def pump(r, w):
            try:
                while data := await r.read(4096):
                    w.write(data)
                    await w.drain()
            except OSError:
                pass
            finally:
                w.close()
        await asyncio.gather(pump(br, hw), pump(hr, bw))

    def inject(self, data):
        self.loop.call_soon_threadsafe(lambda: self.writers[-1].write(data))

    def stop(self):
        stop_loop(self.loop)


@pytest.mark.parametrize("garbage", [b"\x00\x05short", b"\x00\x30" + bytes(range(48))])
def test_garbage_from_the_host_is_survived(make_terminals, make_ward, garbage):
    rig = make_terminals(1, wait=False)
    proxy = GarbageProxy(rig.ward.terminal_port)
    try:
        b, dev = rig.board(0), rig.devices[0]
        # point the terminal at the relay (a config change on its flash) and restart it
        cfg_path = b.flash_dir / "config.json"
        import json
        cfg = json.loads(cfg_path.read_text())
        cfg["port"] = proxy.port
        cfg_path.write_text(json.dumps(cfg))
        mark = b.console_mark()
        b.power_cycle()
        b.wait_console("link: online", 15, since=mark)
        mark = b.console_mark()
        proxy.inject(garbage)
        text = b.wait_console("from the host", 5, since=mark)
        # a frame that cannot be trusted ends the session (then a reconnection); a well-framed
        # one that does not parse is dropped and the session goes on
        assert ("closing" in text and "reconnecting" in b.wait_console("online", 10, since=mark)) \
            or "dropped" in text, text
        time.sleep(0.7)
        rig.wait_online([dev])
        b.tap("call", 150)
        rig.wait(lambda: host_calls(rig, dev), 5, "a call after the garbage")
        assert b.state()["starts"] == 1 + 1 and "Traceback" not in b.console()
    finally:
        proxy.stop()


def test_not_configured_shows_its_pattern_without_a_crash_loop(fleet, tmp_path):
    from wardcall.demo import firmware_files
    b = fleet.add_board("blank", flash_dir=tmp_path / "blank", files=firmware_files(None))
    b.wait_console("NOT CONFIGURED", 10)
    t0 = time.monotonic()
    time.sleep(3.2)
    segs = segments(b, "lamp_reassure", t0)[1:]
    assert len(segs) >= 8, segs
    ons = [ms for level, ms in segs if level]
    offs = sorted(ms for level, ms in segs if not level)
    assert all(abs(ms - 100) <= 80 for ms in ons), segs          # double blink: 100 on,
    assert abs(offs[0] - 150) <= 80 and abs(offs[-1] - 650) <= 80, segs   # 150 off, 100 on, 650 off
    assert b.state()["starts"] == 1 and b.state()["phase"] == "running"
    assert "Traceback" not in b.console()


def test_maintenance_mode_skips_the_application(fleet, tmp_path):
    from wardcall.demo import firmware_files
    files = firmware_files(None)
    files["maintenance"] = ""
    b = fleet.add_board("maint", flash_dir=tmp_path / "maint", files=files)
    b.wait_console("MAINTENANCE MODE", 10)
    time.sleep(1)
    assert "wardcall: boot:" not in b.console()


def test_host_commands_identify_and_lamp_test(make_terminals):
    rig = make_terminals(1)
    b, dev = rig.board(0), rig.devices[0]
    t0 = time.monotonic()
    rig.api.command(dev, "identify")
    b.wait_console("cmd: identify", 5)
    time.sleep(2)
    for pin in ("lamp_reassure", "lamp_presence", "dome"):
        assert_pattern(segments(b, pin, t0), 150, 150, min_cycles=3)
    rig.api.command(dev, "lamp_test")
    b.wait_console("cmd: lamp test", 5)
    b.wait_output("buzzer", True, 2)
    assert b.output("lamp_reassure") == 1 and b.output("lamp_presence") == 1
    b.wait_output("buzzer", False, 4)


def test_cord_unplugged_raises_a_technical_call_and_fault(make_terminals):
    rig = make_terminals(1)
    b, dev = rig.board(0), rig.devices[0]
    b.cord("unplugged")
    call = rig.wait(lambda: host_calls(rig, dev), 5, "technical call")[0]
    assert call["kind_name"] == "technical"
    rig.wait(lambda: (rig.terminal(dev) or {}).get("cord_fault") is True, 5, "cord fault at the host")
    b.cord("ok")
    rig.wait(lambda: (rig.terminal(dev) or {}).get("cord_fault") is False, 5, "cord fault cleared")
    b.tap("presence", 150)
    rig.wait(lambda: host_calls(rig, dev)[0]["state"] == "cleared" if host_calls(rig, dev) else True,
             5, "technical call cleared")


def test_four_terminals_find_the_host_by_discovery(make_terminals):
    rig = make_terminals(4, discovery=True)
    for b in rig.boards:
        assert "discovery: host at" in b.console()
