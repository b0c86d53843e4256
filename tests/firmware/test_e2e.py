"""End to end: the real firmware on emulated ESP32 boards (boards/emulator) against the real host
(`wardcall serve`), observed through the emulator's control channel, the host's API and the
host's record (SQLite).

Lamp patterns are checked by what they are, robustly on a busy machine: the measured on/off
durations must fit the expected pattern better than any other pattern the firmware can show
(steady, 1 s/1 s, 0.3 s/0.3 s ... are far apart; the pattern's phases laid over the measured
segments, the worst two left out, so one late edge on a loaded two-core machine does not decide), and no segment may last far longer than the
pattern says (a stuck lamp, a missed edge). The exact timing of each pattern is checked on an
injected clock in test_units.py."""
import asyncio
import json
import math
import re
import statistics
import threading
import time

import pytest

from tests.faults.ledger import db_rows
from tests.fixtures.host import TECH
from tests.firmware.fakehost import stop_loop
from tests.support.waiting import wait_until
from wardcall.client import WardApi

pytestmark = pytest.mark.timeout(120)

# every lamp pattern the firmware shows (docs/FIRMWARE.md), as (on ms, off ms, ...)
PATTERNS = {
    "emergency": (300, 300), "high": (1000, 1000), "acknowledged": (1800, 200),
    "offline": (100, 2900), "not_configured": (100, 150, 100, 650), "identify": (150, 150),
}
RELEASE_S = 0.1     # a button released for less than the firmware's 30 ms debounce is a glitch


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


def _aligned(segs, pattern):
    """The pattern's duration for each segment, the pattern's phases laid over the segments at
    the offset that fits best (segments alternate, so the offset follows the first level)."""
    best = None
    for k in range(0 if segs[0][0] else 1, len(pattern), 2):
        want = [pattern[(k + i) % len(pattern)] for i in range(len(segs))]
        c = _cost(segs, want)
        if best is None or c < best[0]:
            best = (c, want)
    return best


def _cost(segs, want):
    # mean misfit (log ratio) leaving out the worst two: one late edge makes one segment
    # longer and the next shorter
    misfits = sorted(abs(math.log(max(ms, 1) / d)) for (_, ms), d in zip(segs, want))
    return statistics.mean(misfits[:-2] if len(misfits) > 4 else misfits)


def closest_pattern(segs):
    """The pattern whose phases the segments fit best."""
    return min(PATTERNS, key=lambda name: _aligned(segs, PATTERNS[name])[0])


def assert_pattern(segs, name):
    """The complete segments (the first, maybe cut, skipped: pass 12 or more for a fast pattern,
    5 for a slow one) are pattern `name` and no other, and
    none lasts far longer than its phase in the pattern (a lamp stuck, edges missed): one may be
    twice as long (a late edge), none three times."""
    segs = segs[1:]
    assert len(segs) >= 4, segs
    assert closest_pattern(segs) == name, (name, closest_pattern(segs), segs)
    long = [ms for (_, ms), d in zip(segs, _aligned(segs, PATTERNS[name])[1]) if ms > max(2 * d, d + 500)]
    stuck = [ms for (_, ms), d in zip(segs, _aligned(segs, PATTERNS[name])[1]) if ms > max(3 * d, d + 1000)]
    assert len(long) <= 1 and not stuck, (name, "segments far too long", segs)


def wait_segments(rig, board, pin, since, n):
    """Wait until `n` complete segments of an output after `since` are recorded; returns them."""
    return wait_until(lambda: len(segments(board, pin, since)) >= n and segments(board, pin, since),
                    15, f"{n} segments of {pin}\n" + board.console()[-600:])


def call_id_from(console, kind):
    m = re.findall(r"%s call (\d+) placed" % kind, console)
    assert m, console
    return int(m[-1])


def host_calls(rig, device, call_id=None):
    """The open calls the console shows (/api/state lists only open calls)."""
    return [c for c in rig.calls(device) if call_id is None or c["call_id"] == call_id]


def recorded_calls(rig, device):
    """Every call in the host's record (the calls table) for a device, in arrival order."""
    return db_rows(rig.ward.database, "SELECT call_id, kind, state, cleared_reason FROM calls"
                   " WHERE device = ? ORDER BY id", device)


def wait_cleared(rig, device, call_id, reason):
    """Wait until the host's record has the call cleared for this reason (the console no longer
    showing it proves nothing: the state lists open calls only)."""
    def cleared():
        rows = [r for r in recorded_calls(rig, device) if r["call_id"] == call_id]
        return rows if rows and rows[0]["state"] == "cleared" else None
    rows = wait_until(cleared, 10, f"call {call_id} cleared in the record")
    assert len(rows) == 1 and rows[0]["cleared_reason"] == reason, rows


def test_patient_call_lamp_acknowledge_presence_and_cancel(make_terminals):
    rig = make_terminals(2)
    b, dev = rig.board(0), rig.devices[0]
    t0 = time.monotonic()
    b.tap("call", 150)
    b.wait_output("lamp_reassure", 1, 2)
    call = wait_until(lambda: host_calls(rig, dev), 5, "call at the host")[0]
    assert call["kind_name"] == "patient" and call["call_id"] == call_id_from(b.console(), "patient")
    # the lamp lit before the host stored the call (the firmware logs in that order)
    con = b.wait_console("host stored CALL", 5)
    assert con.index("patient call") < con.index("host stored CALL")
    time.sleep(1.2)             # watching the lamp: a blinking pattern would show an edge in 1.2 s
    assert segments(b, "lamp_reassure", t0) == [], "normal call: steady, no edge after lighting"
    assert b.output("lamp_reassure") == 1
    rig.api.acknowledge(call["id"])
    b.wait_console("acknowledged", 5)
    t1 = time.monotonic()
    assert_pattern(wait_segments(rig, b, "lamp_reassure", t1, 6), "acknowledged")
    # presence at the bedside: reported to the host, clears the normal call
    b.tap("presence", 150)
    b.wait_output("lamp_presence", 1, 2)
    wait_until(lambda: (rig.terminal(dev) or {}).get("presence") is True, 5, "presence at the host")
    wait_cleared(rig, dev, call["call_id"], "presence")
    b.wait_output("lamp_reassure", 0, 2)
    time.sleep(RELEASE_S)
    b.tap("presence", 150)
    b.wait_console("presence off", 3)
    wait_until(lambda: (rig.terminal(dev) or {}).get("presence") is False, 5,
             "presence off at the host\n" + b.console()[-800:])
    assert b.output("lamp_presence") == 0
    assert rig.board(1).output("lamp_reassure") == 0       # the other terminal saw nothing
    assert recorded_calls(rig, rig.devices[1]) == []
    assert "Traceback" not in b.console()


def test_priority_patterns_code_blue_and_bathroom(make_terminals):
    rig = make_terminals(1)
    b, dev = rig.board(0), rig.devices[0]
    b.tap("code", 150)
    b.wait_output("lamp_reassure", 1, 2)
    t0 = time.monotonic()
    code = call_id_from(b.console(), "code_blue")
    wait_until(lambda: host_calls(rig, dev), 5, "code blue at the host")
    assert_pattern(wait_segments(rig, b, "lamp_reassure", t0, 13), "emergency")
    assert_pattern(wait_segments(rig, b, "dome", t0, 13), "emergency")
    # the cord is pulled meanwhile: code blue keeps the lamps (highest priority)
    b.cord("pulled")
    wait_until(lambda: len(host_calls(rig, dev)) == 2, 5, "bathroom call at the host")
    bath = call_id_from(b.console(), "bathroom")
    t1 = time.monotonic()
    assert_pattern(wait_segments(rig, b, "lamp_reassure", t1, 13), "emergency")
    # code blue clears only by holding the code button 2 s at this terminal
    mark = b.console_mark()
    b.tap("code", 2500)
    b.wait_console("code_blue call %d cancelled" % code, 5, since=mark)
    t2 = time.monotonic()
    wait_cleared(rig, dev, code, "origin")
    assert_pattern(wait_segments(rig, b, "lamp_reassure", t2, 6), "high")        # bathroom: high
    # bathroom clears when the cord is back at rest and presence is pressed there
    mark = b.console_mark()
    b.cord("ok")
    b.wait_console("cord back at rest", 3, since=mark)
    b.tap("presence", 150)
    b.wait_output("lamp_reassure", 0, 3)
    assert "bathroom call %d cancelled (reason 2)" % bath in b.wait_console("bathroom call", 1, since=mark)
    wait_cleared(rig, dev, bath, "origin")


def test_call_survives_a_power_cut_before_its_acknowledgement(make_terminals):
    rig = make_terminals(1, heartbeat_ms=1000)
    b, dev = rig.board(0), rig.devices[0]
    # the acknowledgement is held back by the network (1.5 s per chunk, within 3 heartbeats) ...
    b.fault(delay_ms=1500)
    b.tap("assist", 150)
    b.wait_output("lamp_reassure", 1, 2)
    cid = call_id_from(b.console(), "staff_assist")
    wait_until(lambda: host_calls(rig, dev, cid), 10, "call stored at the host")
    # ... and the power fails before it arrives
    assert "host stored CALL" not in b.console()
    b.power_cycle()
    b.fault(delay_ms=0)
    b.wait_console("restored open staff_assist call %d" % cid, 10)
    b.wait_output("lamp_reassure", 1, 3)          # shown again at once after the restart
    b.wait_console("host stored CALL %d" % cid, 15)
    assert [r["call_id"] for r in recorded_calls(rig, dev)] == [cid]


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
    wait_until(lambda: host_calls(rig, dev, cid), 20, "call delivered after the reboot")
    b.wait_console("host stored CALL %d" % cid, 10)             # acknowledged: nothing left to resend
    assert [(r["call_id"], r["state"]) for r in recorded_calls(rig, dev)] == [(cid, "placed")]


def test_call_while_wifi_is_down_arrives_once_after_reconnection(make_terminals):
    rig = make_terminals(2)
    b, dev = rig.board(0), rig.devices[0]
    b.wifi(False)
    b.wait_console("Wi-Fi lost", 5)
    t0 = time.monotonic()
    rig.wait_online([dev], online=False, timeout=10)
    assert_pattern(wait_segments(rig, b, "lamp_reassure", t0, 5), "offline")
    t1 = time.monotonic()
    b.tap("call", 150)
    b.cord("pulled")
    b.wait_output("lamp_reassure", 1, 2)
    # offline for more than 3 s with a call waiting: the buzzer sounds in the room
    wait_until(lambda: any(v for _, v in b.history("buzzer", since=t1)), 10,
             "the buzzer while the host is unreachable")
    con = b.wait_console("bathroom call", 3)
    patient, bath = call_id_from(con, "patient"), call_id_from(con, "bathroom")
    assert host_calls(rig, dev) == []
    b.wifi(True)
    b.wait_console("host stored CALL %d" % patient, 20)
    b.wait_console("host stored CALL %d" % bath, 10)
    # in order, once each (the host acknowledged both: the terminal resends nothing more)
    rows = recorded_calls(rig, dev)
    assert [(r["call_id"], r["kind"]) for r in rows] == [(patient, 4), (bath, 3)], rows
    assert recorded_calls(rig, rig.devices[1]) == []


def test_runs_across_the_ticks_ms_wrap(make_terminals):
    # ticks_ms() starts 4 s before its 2**30 wrap on this board
    rig = make_terminals(1, board_kw={"wrap_s": 4})
    b, dev = rig.board(0), rig.devices[0]
    b.tap("code", 150)
    t0 = time.monotonic()
    # 0.3 s / 0.3 s for 5 s: the wrap happens in there
    assert_pattern(wait_segments(rig, b, "lamp_reassure", t0, 17), "emergency")
    # heartbeats kept flowing across the wrap: the host sees new ones
    rig.wait_online([dev])
    seen = rig.terminal(dev)["last_heartbeat"]
    wait_until(lambda: rig.terminal(dev)["last_heartbeat"] > seen, 5, "a heartbeat after the wrap")
    b.tap("call", 150)
    wait_until(lambda: len(host_calls(rig, dev)) == 2, 5, "a call after the wrap")
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
        cfg = json.loads(cfg_path.read_text())
        cfg["port"] = proxy.port
        cfg_path.write_text(json.dumps(cfg))
        mark = b.console_mark()
        b.power_cycle()
        b.wait_console("link: online", 15, since=mark)
        mark = b.console_mark()
        proxy.inject(garbage)
        # garbage on the wire, outside the host's TLS records: the record layer refuses it, the
        # session ends and the terminal connects again (garbage inside the session, as frames:
        # test_link.py's scripted host)
        text = b.wait_console("connection lost", 5, since=mark)
        assert "MBEDTLS_ERR_SSL" in text, text
        assert "reconnecting" in b.wait_console("online", 10, since=mark)
        rig.wait_online([dev])
        b.tap("call", 150)
        wait_until(lambda: host_calls(rig, dev), 5, "a call after the garbage")
        assert b.state()["starts"] == 1 + 1 and "Traceback" not in b.console()
    finally:
        proxy.stop()


def test_not_configured_shows_its_pattern_without_a_crash_loop(fleet, tmp_path):
    from wardcall.demo import firmware_files
    b = fleet.add_board("blank", flash_dir=tmp_path / "blank", files=firmware_files(None))
    b.wait_console("NOT CONFIGURED", 10)
    t0 = time.monotonic()
    for _ in range(14):        # edges of the double blink, each waited for at the emulator
        b.wait_output("lamp_reassure", 1 - b.output("lamp_reassure"), 2)
    assert_pattern(segments(b, "lamp_reassure", t0), "not_configured")
    assert b.state()["starts"] == 1 and b.state()["phase"] == "running"
    assert "Traceback" not in b.console()


def test_maintenance_mode_skips_the_application(fleet, tmp_path):
    from wardcall.demo import firmware_files
    files = firmware_files(None)
    files["maintenance"] = ""
    b = fleet.add_board("maint", flash_dir=tmp_path / "maint", files=files)
    b.wait_console("MAINTENANCE MODE", 10)
    b.wait_state("repl", 10)                 # main.py returned: the interpreter's REPL
    assert "wardcall: boot:" not in b.console()
    assert b.state()["wdt_ms"] == 0


def tech_command(rig, device, command):
    """A terminal command from the console, as a technician (a nurse may not send one)."""
    async def send():
        api = WardApi(rig.ward.api_url)
        try:
            await api.login(*TECH)
            return await api.command(device, command)
        finally:
            await api.close()
    return rig.api.run(send())


def test_host_commands_identify_and_lamp_test(make_terminals):
    rig = make_terminals(1)
    b, dev = rig.board(0), rig.devices[0]
    t0 = time.monotonic()
    tech_command(rig, dev, "identify")
    b.wait_console("cmd: identify", 5)
    for pin in ("lamp_reassure", "lamp_presence", "dome"):
        assert_pattern(wait_segments(rig, b, pin, t0, 13), "identify")
    tech_command(rig, dev, "lamp_test")
    b.wait_console("cmd: lamp test", 5)
    b.wait_output("buzzer", True, 2)
    assert b.output("lamp_reassure") == 1 and b.output("lamp_presence") == 1
    b.wait_output("buzzer", False, 4)


def test_cord_unplugged_raises_a_technical_call_and_fault(make_terminals):
    rig = make_terminals(1)
    b, dev = rig.board(0), rig.devices[0]
    b.cord("unplugged")
    call = wait_until(lambda: host_calls(rig, dev), 5, "technical call")[0]
    assert call["kind_name"] == "technical"
    wait_until(lambda: (rig.terminal(dev) or {}).get("cord_fault") is True, 5, "cord fault at the host")
    b.cord("ok")
    wait_until(lambda: (rig.terminal(dev) or {}).get("cord_fault") is False, 5, "cord fault cleared")
    b.wait_console("cord plugged in again", 3)
    b.tap("presence", 150)
    wait_cleared(rig, dev, call["call_id"], "origin")
    faults = [json.loads(r["data"]) for r in db_rows(rig.ward.database,
              "SELECT data FROM events WHERE kind = 'fault' AND device = ? ORDER BY id", dev)]
    assert [(f["fault"], f["active"]) for f in faults] == [("cord", True), ("cord", False)], faults


def test_four_terminals_find_the_host_by_discovery(make_terminals):
    rig = make_terminals(4, discovery=True)
    for b in rig.boards:
        assert "discovery: host at" in b.console()
