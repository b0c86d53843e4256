"""The ward state machine with a hand-moved clock: no sockets, no sleeps."""
from __future__ import annotations

from pathlib import Path

import pytest

from wardcall.clock import ManualClock
from wardcall.config import parse_config
from wardcall.protocol import wardproto as wp
from wardcall.ward import Ward, WardError

pytestmark = pytest.mark.timeout(30)


def make_config(**escalation):
    data = {
        "ward": {"name": "W"},
        "timing": {"heartbeat_ms": 1000, "no_console_grace_s": 5},
        "escalation": {"attend_timeout_s": 180, **escalation},
        "rooms": {"101": {"beds": ["1", "2"]}, "102": {"beds": ["1", "2"]}, "103": {"beds": ["1"]}},
        "terminals": {"a1": {"room": "101", "bed": "1"}, "a2": {"room": "101", "bed": "2"},
                      "b1": {"room": "102", "bed": "1"}, "c1": {"room": "103", "bed": "1"}},
    }
    return parse_config(Path("/tmp/test-ward.toml"), data)


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def ward(clock):
    w = Ward(make_config(), clock)
    for device in w.terminals:
        w.terminal_connected(device, "fw", "sim", 0, "127.0.0.1:1")
    w.set_consoles(1)
    return w


def advance(ward, clock, seconds):
    """Move time on with every terminal still sending heartbeats."""
    clock.advance(seconds)
    for device in ward.terminals:
        ward.frame_received(device)


def messages(fx, mtype, device=None):
    return [m for m in fx.messages if m.mtype == mtype and (device is None or m.device == device)]


def test_lifecycle_timestamps_and_terminal_states(ward, clock):
    fx, call = ward.place_call("a1", 0x10001, wp.PATIENT, age_ms=0)
    assert call.state == "placed" and call.placed_at == clock.wall()
    assert [r.kind for r in fx.records] == ["call_placed"]

    clock.advance(20)
    fx, call = ward.acknowledge(call.id, "alice")
    assert call.state == "acknowledged" and call.acknowledged_at - call.placed_at == 20 and call.acknowledged_by == "alice"
    assert [(m.fields["state"], m.fields["by"]) for m in messages(fx, wp.CALL_STATE, "a1")] == [(wp.ST_ACKNOWLEDGED, "alice")]

    clock.advance(40)
    fx = ward.presence("a1", True, "")
    assert call.state == "attended" and call.attended_at - call.placed_at == 60
    assert [m.fields["state"] for m in messages(fx, wp.CALL_STATE, "a1")] == [wp.ST_ATTENDED]
    assert ward.room_view("101")["presence"] is True

    clock.advance(30)
    fx = ward.cancel_call("a1", 0x10001, wp.CANCEL_PRESENCE, age_ms=0)
    assert call.state == "cleared" and call.cleared_at - call.placed_at == 90 and call.cleared_reason == "presence"
    assert [m.fields["state"] for m in messages(fx, wp.CALL_STATE, "a1")] == [wp.ST_CLEARED]
    assert ward.snapshot()["calls"] == []


def test_age_ms_dates_the_call_back(ward, clock):
    _, call = ward.place_call("a1", 7, wp.PATIENT, age_ms=4000)
    assert call.placed_at == pytest.approx(clock.wall() - 4)


def test_priority_order_then_oldest_first(ward, clock):
    placed = []
    for device, kind in [("a1", wp.PATIENT), ("a2", wp.TECHNICAL), ("b1", wp.BATHROOM), ("c1", wp.PATIENT),
                         ("a1", wp.CODE_BLUE), ("b1", wp.STAFF_ASSIST)]:
        clock.advance(1)
        placed.append(ward.place_call(device, len(placed) + 1, kind, 0)[1])
    order = [(c["kind_name"], c["device"]) for c in ward.snapshot()["calls"]]
    assert order == [("code_blue", "a1"), ("staff_assist", "b1"), ("bathroom", "b1"),
                     ("patient", "a1"), ("patient", "c1"), ("technical", "a2")]


def test_repeated_call_is_one_call(ward):
    fx1, first = ward.place_call("a1", 42, wp.PATIENT, 0)
    fx2, again = ward.place_call("a1", 42, wp.PATIENT, 3000)
    assert again is first
    assert len(ward.snapshot()["calls"]) == 1
    assert [r.kind for r in fx2.records] == ["call_repeated"] and not fx2.calls
    # the same call id from another terminal is another call
    ward.place_call("b1", 42, wp.PATIENT, 0)
    assert len(ward.snapshot()["calls"]) == 2


def test_unacknowledged_call_escalates_on_time_and_again(ward, clock):
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)       # patient: 60 s by default
    advance(ward, clock, 59.9)
    assert not ward.tick().calls and call.escalation == 0
    advance(ward, clock, 0.2)
    fx = ward.tick()
    assert call.escalation == 1 and fx.calls[call.id] is call
    assert [m.fields["state"] for m in messages(fx, wp.CALL_STATE, "a1")] == [wp.ST_ESCALATED]
    # escalated: every online terminal in the other rooms chimes
    assert sorted(m.device for m in messages(fx, wp.COMMAND)) == ["b1", "c1"]
    advance(ward, clock, 60.1)
    ward.tick()
    assert call.escalation == 2


def test_emergency_goes_everywhere_at_once(ward, clock):
    fx, call = ward.place_call("a1", 1, wp.CODE_BLUE, 0)
    assert call.escalation == 1
    chimes = messages(fx, wp.COMMAND)
    assert sorted(m.device for m in chimes) == ["b1", "c1"]
    assert all(m.fields == {"cmd": wp.CMD_CHIME, "arg": bytes([wp.ALARM_HIGH])} for m in chimes)
    clock.advance(10.1)       # code blue: 10 s
    assert ward.tick().calls and call.escalation == 2


def test_acknowledged_but_not_attended_comes_back(ward, clock):
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    clock.advance(10)
    ward.acknowledge(call.id, "alice")
    clock.advance(179.9)
    assert not ward.tick().calls
    clock.advance(0.2)
    fx = ward.tick()
    assert call.state == "placed" and call.realerts == 1
    assert call.acknowledged_at is not None          # the first answer stays for the report
    assert [r.kind for r in fx.records] == ["call_realerted"]
    assert [m.fields["state"] for m in messages(fx, wp.CALL_STATE, "a1")] == [wp.ST_ESCALATED]
    assert ward.audible()


def test_acknowledging_twice_changes_nothing_and_unknown_call_is_an_error(ward):
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    ward.acknowledge(call.id, "alice")
    fx, same = ward.acknowledge(call.id, "bob")
    assert same.acknowledged_by == "alice" and not fx.calls
    with pytest.raises(WardError) as err:
        ward.acknowledge(999, "alice")
    assert err.value.kind == WardError.NOT_FOUND


def test_a_long_name_outside_ascii_still_tells_the_terminal_who_acknowledged(ward):
    """A hospital team member's name reaches a ward as "user (team)", each up to 64 characters
    of any script: over 255 bytes of UTF-8. The terminal must still be told its call was
    acknowledged (a CALL_STATE that does not encode is never sent), with as much of the name
    as the field holds, cut between characters."""
    name = "Ärztin " + "\u0416" * 57 + " (\u7d27\u6025\u5bfe\u5fdc " + "\u30c1\u30fc\u30e0" * 19 + ")"
    assert len(name) <= 2 * 64 + 3 and len(name.encode()) > wp.MAX_TEXT
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    fx, _ = ward.acknowledge(call.id, name)
    [state] = messages(fx, wp.CALL_STATE, "a1")
    body = wp.encode_body(wp.CALL_STATE, state.fields)      # raises if the field does not fit
    by = state.fields["by"].encode()
    assert len(by) <= wp.MAX_TEXT and name.encode().startswith(by) and len(by) > wp.MAX_TEXT - 4
    assert body and state.fields["state"] == wp.ST_ACKNOWLEDGED


def test_presence_forwards_calls_from_other_rooms(ward):
    ward.presence("b1", True, "nurse-7")
    fx, call = ward.place_call("a1", 1, wp.BATHROOM, 0)
    chimes = messages(fx, wp.COMMAND)
    assert [(m.device, m.fields["arg"]) for m in chimes] == [("b1", bytes([wp.ALARM_MEDIUM]))]
    # a call in the nurse's own room is not chimed there
    fx, _ = ward.place_call("b1", 2, wp.PATIENT, 0)
    assert messages(fx, wp.COMMAND) == []


def test_staff_leaving_a_room_with_a_standing_bathroom_call_brings_it_back(ward, clock):
    _, call = ward.place_call("a1", 1, wp.BATHROOM, 0)
    ward.presence("a1", True, "")
    assert call.state == "attended"
    ward.presence("a1", False, "")
    advance(ward, clock, 2.1)            # after the grace for a CANCEL that follows (test_ward_floods.py)
    ward.tick()
    assert call.state == "placed" and call.realerts == 1


def test_heartbeat_presence_bit_resynchronises(ward):
    _, call = ward.place_call("a2", 1, wp.PATIENT, 0)
    ward.heartbeat("a1", wp.HB_PRESENCE, 0, 5)
    assert ward.terminals["a1"].presence and call.state == "attended"


def test_supervision_offline_after_three_heartbeats_and_back(ward, clock):
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    for device in ("a2", "b1", "c1"):
        ward.frame_received(device)
    clock.advance(2.9)
    for device in ("a2", "b1", "c1"):
        ward.frame_received(device)
    assert not ward.tick().alarms
    clock.advance(0.2)                       # a1 silent 3.1 s > 3 × 1 s
    fx = ward.tick()
    assert list(fx.alarms) == ["offline:a1"]
    snap = ward.snapshot()
    assert [a["kind"] for a in snap["alarms"]] == ["terminal_offline"]
    assert next(t for t in snap["terminals"] if t["device"] == "a1")["status"] == "offline"
    # its call stays on the board
    assert [c["device"] for c in snap["calls"]] == ["a1"] and snap["calls"][0]["terminal_status"] == "offline"
    fx = ward.frame_received("a1")
    assert fx.alarms["offline:a1"][1] is False
    assert ward.snapshot()["alarms"] == []


def test_no_console_is_an_alarm(clock):
    w = Ward(make_config(), clock)
    w.terminal_connected("a1", "fw", "sim", 0, "x")
    w.place_call("a1", 1, wp.PATIENT, 0)
    w.tick()
    clock.advance(4.9)
    assert "no_console" not in w.tick().alarms
    clock.advance(0.2)
    assert w.tick().alarms["no_console"][1] is True
    assert w.set_consoles(1).alarms["no_console"][1] is False


def test_silence_keeps_the_alert_visible_and_a_new_call_sounds_again(ward, clock):
    ward.place_call("a1", 1, wp.PATIENT, 0)
    assert ward.audible()
    ward.silence(60, "alice")
    assert not ward.audible() and len(ward.snapshot()["calls"]) == 1
    clock.advance(1)
    ward.place_call("b1", 2, wp.PATIENT, 0)
    assert ward.audible()


def test_an_emergency_overrides_silence_until_acknowledged(ward, clock):
    _, blue = ward.place_call("a1", 1, wp.CODE_BLUE, 0)
    ward.place_call("b1", 2, wp.PATIENT, 0)
    ward.silence(60, "alice")
    assert ward.audible()                    # silenced, but a code blue waits
    ward.acknowledge(blue.id, "alice")
    assert not ward.audible()                # the silence holds for the patient call
    assert len(ward.snapshot()["calls"]) == 2


def test_refused_device_is_shown_as_trying_to_connect(ward, clock):
    ward.auth_refused("intruder", "10.0.0.9:5555", "unknown device")
    ward.auth_refused("intruder", "10.0.0.9:5556", "unknown device")
    alarms = ward.snapshot()["alarms"]
    assert [(a["kind"], a["claimed_device"], a["count"]) for a in alarms] == [("device_trying_to_connect", "intruder", 2)]
    advance(ward, clock, 601)
    assert ward.tick().alarms and ward.snapshot()["alarms"] == []


def test_restore_keeps_state_and_timers(clock):
    w = Ward(make_config(), clock)
    _, placed = w.place_call("a1", 1, wp.PATIENT, 0)
    _, acked = w.place_call("b1", 2, wp.PATIENT, 0)
    w.acknowledge(acked.id, "alice")
    rows = [placed.row(), acked.row()]
    clock.advance(50)                        # the host was down for 50 s

    w2 = Ward(make_config(), clock)
    w2.restore(rows, [{"device": "a1", "seen": 1, "last_seen": 1.0, "firmware": "fw", "board": "b"}], next_call_id=3)
    assert {c.id: c.state for c in w2.calls.values()} == {placed.id: "placed", acked.id: "acknowledged"}
    clock.advance(9.9)
    assert not w2.tick().calls
    clock.advance(0.2)                       # 60 s after it was placed, not 60 s after the restart
    assert set(w2.tick().calls) == {placed.id}
    assert w2.call_by_id(placed.id).escalation == 1
    _, new = w2.place_call("c1", 9, wp.PATIENT, 0)
    assert new.id == 3
