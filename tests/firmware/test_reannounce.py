"""Open calls announced again after every WELCOME (docs/SESSION.md, Calls): a call still open at
the terminal whose CALL the host already acknowledged is sent again with the same id, kind and
a best-effort age, resent until CALL_ACK, and sent before the outbox's stored events (which
keep their order); a cleared call is not. Against the scripted host (fakehost.py)."""
import pytest

from tests.firmware import mprun
from tests.firmware.fakehost import FakeHost, P

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def host():
    h = FakeHost("bed-101-1", mprun.KEY, hb_ms=300).start()
    yield h
    h.stop()


def flash_for(tmp_path, fake):
    mprun.write_config(tmp_path, mprun.config(port=fake.port, discovery_port=fake.udp_port))
    return tmp_path


def session(host, n):
    """The messages the host received in its n-th session (1-based), HELLO excluded."""
    out, k = [], 0
    for m in host.messages():
        if m["type"] == P.HELLO:
            k += 1
        elif k == n:
            out.append(m)
    return out


def events(msgs):
    return [(m["type"], m["call"]) for m in msgs if m["type"] in (P.CALL, P.CANCEL)]


def test_open_acknowledged_calls_are_announced_again_before_the_outbox_after_a_reconnect(tmp_path, host):
    seen = {"bath": 0}

    def on_msg(h, m):
        h.ack = True
        if m["type"] == P.CALL and m["kind"] == P.BATHROOM:
            seen["bath"] += 1
            if seen["bath"] == 1:        # session 1: the console acknowledges it
                h.send(P.CALL_STATE, {"call": m["call"], "state": P.ST_ACKNOWLEDGED, "by": "nurse A"})
            if seen["bath"] == 2:        # its re-announcement: this CALL_ACK is lost
                h.ack = False
    host.on_message = on_msg
    out = mprun.run_scenario(r"""
import network, calls as C
from wardproto import ST_ACKNOWLEDGED
async def scenario(app):
    cs = app.calls
    await until(lambda: app.link.online, 5000, "online")
    await press(board.CALL); await until(lambda: cs.active[C.S_PATIENT], 300, "patient call")
    await press(board.PRESENCE); await until(lambda: cs.active[C.S_PATIENT] is None, 300, "cleared")
    await asyncio.sleep_ms(100)          # released long enough to press again (debounce)
    await press(board.PRESENCE); await until(lambda: not cs.presence, 300, "presence off")
    set_input(board.CORD_PULL, True); await until(lambda: cs.active[C.S_BATH], 300, "bathroom call")
    await press(board.ASSIST); await until(lambda: cs.active[C.S_ASSIST], 300, "assist call")
    await until(lambda: len(app.outbox) == 0, 3000, "all acknowledged")
    await until(lambda: cs.active[C.S_BATH][C.A_STATE] == ST_ACKNOWLEDGED, 2000, "bathroom acknowledged")
    print("IDS", cs.active[C.S_BATH][C.A_CALL], cs.active[C.S_ASSIST][C.A_CALL])
    network.state["up"] = False
    await until(lambda: not app.link.online, 2000, "offline")
    await asyncio.sleep_ms(100)
    await press(board.CALL); await until(lambda: cs.active[C.S_PATIENT], 300, "patient call 2")
    await press(board.PRESENCE); await until(lambda: cs.active[C.S_ASSIST] is None, 300, "assist cleared")
    await asyncio.sleep_ms(100)
    await press(board.CALL); await until(lambda: cs.active[C.S_ASSIST], 300, "assist call 2")
    check(len(app.outbox) == 4, "CALL, CANCEL, CANCEL, CALL wait in the outbox")
    check(cs.active[C.S_BATH] is not None, "the bathroom call is still open (cord pulled)")
    await asyncio.sleep_ms(1000)
    network.state["up"] = True
    await until(lambda: app.link.online, 8000, "back online")
    await until(lambda: len(app.outbox) == 0, 3000, "outbox delivered")
    await until(lambda: len(app.outbox.again) == 0, 5000, "re-announcement resent and acknowledged")
    check(cs.active[C.S_BATH][C.A_STATE] == ST_ACKNOWLEDGED, "its acknowledged state is kept")
    check(open("outbox.json").read() == "[]", "re-announcements are never written to flash")
""", flash_for(tmp_path, host), 40000)
    mprun.assert_passed(out)
    bath, assist = (int(x) for x in out.split("IDS ")[1].split()[:2])
    first, second = session(host, 1), session(host, 2)
    patient1 = events(first)[0][1]
    assert events(first) == [(P.CALL, patient1), (P.CANCEL, patient1), (P.CALL, bath), (P.CALL, assist)], first
    got = events(second)
    # the open, acknowledged bathroom call first (same id), then the outbox in order; the
    # cleared patient call and the assist call cancelled offline are not announced as open
    patient2, assist2 = got[1][1], got[4][1]
    assert got[:5] == [(P.CALL, bath), (P.CALL, patient2), (P.CANCEL, assist), (P.CANCEL, patient2),
                       (P.CALL, assist2)], got
    assert got[5:] == [(P.CALL, bath)], got           # resent once: its first CALL_ACK was lost
    assert len({patient1, bath, assist, patient2, assist2}) == 5
    again = [m for m in second if m["type"] == P.CALL and m["call"] == bath]
    assert all(m["kind"] == P.BATHROOM and m["priority"] == P.BATHROOM for m in again), again
    assert all(m["age_ms"] >= 1000 for m in again), again     # placed well before the reconnect
    assert "bathroom call %d still open: announced again" % bath in out
    assert "resending unacknowledged event %d" % bath in out


def test_an_open_call_is_announced_again_after_a_reboot(tmp_path, host):
    flash = flash_for(tmp_path, host)
    out1 = mprun.run_scenario(r"""
async def scenario(app):
    await until(lambda: app.link.online, 5000, "online")
    cs = app.calls
    await press(board.CALL); await until(lambda: cs.active[3], 300, "patient call")
    await press(board.ASSIST); await until(lambda: cs.active[1], 300, "assist call")
    await until(lambda: len(app.outbox) == 0, 3000, "acknowledged")
    await press(board.PRESENCE); await until(lambda: cs.presence, 300, "presence on (clears both)")
    await asyncio.sleep_ms(100)          # released long enough to press again (debounce)
    await press(board.PRESENCE); await until(lambda: not cs.presence, 300, "presence off")
    check(cs.active[1] is None and cs.active[3] is None, "both cleared")
    await asyncio.sleep_ms(100)
    await press(board.CALL); await until(lambda: cs.active[3], 300, "patient call 2")
    await until(lambda: len(app.outbox) == 0, 3000, "acknowledged")
    await asyncio.sleep_ms(3000)
    # power is cut here
""", flash)
    mprun.assert_passed(out1)
    placed = [m["call"] for m in host.messages(P.CALL)]
    assert len(placed) == 3
    out2 = mprun.run_scenario(r"""
async def scenario(app):
    check(app.calls.active[3] is not None and len(app.outbox) == 0, "open, acknowledged, restored")
    await until(lambda: app.link.online, 5000, "online")
    await until(lambda: len(app.outbox.again) == 0, 3000, "announced again and acknowledged")
""", flash)
    mprun.assert_passed(out2)
    again = [m for m in session(host, 2) if m["type"] in (P.CALL, P.CANCEL)]
    assert [(m["type"], m["call"], m["kind"]) for m in again] == [(P.CALL, placed[2], P.PATIENT)], again
    # age from the host-synced clock (whole seconds) kept in calls.json: placed 3 s before the
    # power cut
    assert again[0]["age_ms"] >= 1000, again
