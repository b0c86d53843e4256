"""One source must not drown the ward (pure Ward, hand-moved clock): forged ids aggregated per
source, a terminal's flood of CALLs capped, chimes coalesced, record rows and console updates
rate-limited; and the call-path details around them (the grace before "staff left the room",
CALL_STATE for a new call)."""
from __future__ import annotations

import pytest

from tests.host.test_ward import advance, make_config, messages
from wardcall.clock import ManualClock
from wardcall.protocol import wardproto as wp
from wardcall.ward import Effects, Ward

OPEN_CALLS_PER_KIND = 4     # docs/HOST.md, "Limits"
SOURCE_ALARMS = 5

pytestmark = pytest.mark.timeout(60)


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


def kinds(fx: Effects) -> list[str]:
    return [r.kind for r in fx.records]


def chimes(fx: Effects, device: str | None = None) -> list:
    return [m for m in messages(fx, wp.COMMAND, device) if m.fields["cmd"] == wp.CMD_CHIME]


# ----- D1: the bathroom flow: PRESENCE off arrives just before the CANCEL of the same press -----

def test_presence_off_then_cancel_of_the_same_press_is_no_realert(ward, clock):
    ward.presence("b1", True, "nurse-7")              # a nurse in another room
    _, call = ward.place_call("a1", 1, wp.BATHROOM, 0)
    ward.presence("a1", True, "")                     # the nurse arrives: attended
    clock.advance(30)
    fx = ward.presence("a1", False, "")               # presence pressed: PRESENCE off …
    clock.advance(0.005)
    fx.merge(ward.cancel_call("a1", 1, wp.CANCEL_PRESENCE, 0))   # … and 5 ms later its CANCEL
    for _ in range(20):                               # ticks well past the grace
        advance(ward, clock, 0.25)
        fx.merge(ward.tick())
    assert "call_realerted" not in kinds(fx)
    assert call.realerts == 0 and call.state == "cleared"
    assert chimes(fx, "b1") == [], "a false re-alert chimed the nurse in another room"


def test_the_last_nurse_leaving_brings_the_call_back_after_the_grace(ward, clock):
    ward.presence("b1", True, "nurse-7")
    _, call = ward.place_call("a1", 1, wp.BATHROOM, 0)
    clock.advance(5)                                  # the first chime is long past
    ward.presence("a1", True, "")
    fx = ward.presence("a1", False, "")               # left, cord not reset: no CANCEL comes
    advance(ward, clock, 1.9)
    fx.merge(ward.tick())
    assert call.state == "attended" and "call_realerted" not in kinds(fx)
    advance(ward, clock, 0.2)                         # 2.1 s: the grace (2 s, or two heartbeats) is over
    fx = ward.tick()
    assert call.state == "placed" and call.realerts == 1
    assert [r.data["why"] for r in fx.records if r.kind == "call_realerted"] == ["staff left the room with the call still standing"]
    assert [m.fields["state"] for m in messages(fx, wp.CALL_STATE, "a1")] == [wp.ST_ESCALATED]
    assert len(chimes(fx, "b1")) == 1


def test_a_nurse_back_within_the_grace_keeps_the_call_attended(ward, clock):
    _, call = ward.place_call("a1", 1, wp.BATHROOM, 0)
    ward.presence("a1", True, "")
    ward.presence("a1", False, "")
    advance(ward, clock, 1)
    ward.presence("a2", True, "")                     # another nurse (same room) within the grace
    advance(ward, clock, 5)
    fx = ward.tick()
    assert call.state == "attended" and call.realerts == 0 and "call_realerted" not in kinds(fx)


# ----- D2: the host tells the terminal a new call's real state -----

def test_a_new_call_is_told_placed_and_an_emergency_escalated(ward):
    fx, call = ward.place_call("a1", 0x20001, wp.PATIENT, 0)
    assert [(m.fields["call"], m.fields["state"]) for m in messages(fx, wp.CALL_STATE, "a1")] == [(0x20001, wp.ST_PLACED)]
    fx, _ = ward.place_call("b1", 0x20002, wp.CODE_BLUE, 0)
    assert [(m.fields["call"], m.fields["state"]) for m in messages(fx, wp.CALL_STATE, "b1")] == [(0x20002, wp.ST_ESCALATED)]
    fx, _ = ward.place_call("a1", 0x20001, wp.PATIENT, 0)      # a repeat: nothing new to say
    assert messages(fx, wp.CALL_STATE) == []


# ----- B: one terminal sending thousands of CALLs -----

def test_a_flood_of_calls_is_capped_alarmed_and_loses_nothing(ward, clock):
    ward.presence("b1", True, "nurse-7")
    fx = Effects()
    refused = []
    for n in range(1, 1001):
        step, call = ward.place_call("a1", n, wp.PATIENT, 0)
        fx.merge(step)
        if ward.take_refused_call("a1", n):
            assert call is None
            refused.append(n)
        clock.advance(0.001)
    assert len(ward.open_calls_of("a1")) == OPEN_CALLS_PER_KIND
    assert len(refused) == 1000 - OPEN_CALLS_PER_KIND
    assert not ward.take_refused_call("a1", refused[0]), "a refusal is taken once"
    # the alarm names device, room and how many were refused
    alarm = ward.alarms["misbehaving:a1"]
    assert alarm.kind == "terminal_misbehaving" and alarm.device == "a1" and alarm.room == "101"
    assert alarm.data["refused"] == len(refused) and f"{len(refused)} refused" in alarm.text
    # one record row for the refusals (the first), not one each; console updates coalesced
    assert kinds(fx).count("call_refused") == 1
    assert kinds(fx).count("call_placed") == OPEN_CALLS_PER_KIND
    assert sum(1 for a, _ in fx.alarms.values() if a.id == "misbehaving:a1") <= 2      # 1 s of calls
    # the nurse elsewhere heard one chime, not four (nor a thousand)
    assert len(chimes(fx, "b1")) == 1
    # the count is recorded within the minute, and the final count reaches the consoles
    advance(ward, clock, 61)
    fx = ward.tick()
    summary = [r for r in fx.records if r.kind == "call_refused_summary"]
    assert [(r.device, r.data["count"]) for r in summary] == [("a1", len(refused) - 1)]
    # a call cleared at the terminal: the refused one, sent again, is placed (nothing lost)
    ward.cancel_call("a1", 1, wp.CANCEL_ORIGIN, 0)
    fx, call = ward.place_call("a1", refused[0], wp.PATIENT, 0)
    assert call is not None and not ward.take_refused_call("a1", refused[0])
    assert len(ward.open_calls_of("a1")) == OPEN_CALLS_PER_KIND
    # other kinds of the same terminal are not held back by the patient calls
    _, blue = ward.place_call("a1", 5000, wp.CODE_BLUE, 0)
    assert blue is not None


def test_alarm_updates_reach_the_consoles_at_most_once_a_second_and_the_last_count_always(ward, clock):
    for n in range(1, OPEN_CALLS_PER_KIND + 1):
        ward.place_call("c1", n, wp.TECHNICAL, 0)
    published = []
    for n in range(100, 400):                       # 300 refusals in 0.3 s
        fx, _ = ward.place_call("c1", n, wp.TECHNICAL, 0)
        ward.take_refused_call("c1", n)
        published += [a.count for a, active in fx.alarms.values() if a.id == "misbehaving:c1"]
        clock.advance(0.001)
    assert published == [1], "the alarm's count went to the consoles with every refusal"
    advance(ward, clock, 0.5)
    assert "misbehaving:c1" not in ward.tick().alarms
    advance(ward, clock, 0.6)                        # a second after the last update: the final count
    alarm, active = ward.tick().alarms["misbehaving:c1"]
    assert active and alarm.count == 300
    assert "misbehaving:c1" not in ward.tick().alarms      # and only once


def test_chimes_are_coalesced_per_terminal_except_a_higher_priority(ward, clock):
    ward.presence("b1", True, "nurse-7")
    heard = []
    for n, kind in enumerate([wp.PATIENT, wp.PATIENT, wp.TECHNICAL, wp.BATHROOM, wp.PATIENT], start=1):
        fx, _ = ward.place_call("a1", n, kind, 0)
        heard += [m.fields["arg"][0] for m in chimes(fx, "b1")]
        clock.advance(0.2)
    # one low chime, then the bathroom call's medium chime (higher), nothing else within 3 s
    assert heard == [wp.ALARM_LOW, wp.ALARM_MEDIUM]
    advance(ward, clock, 3)
    fx, _ = ward.place_call("a2", 10, wp.PATIENT, 0)
    assert [m.fields["arg"][0] for m in chimes(fx, "b1")] == [wp.ALARM_LOW]
    # an emergency is never held back by a chime before it
    fx, _ = ward.place_call("a2", 11, wp.CODE_BLUE, 0)
    assert [m.fields["arg"][0] for m in chimes(fx, "b1")] == [wp.ALARM_HIGH]


# ----- A: forged or unknown device ids -----

def test_forged_ids_are_one_alarm_per_source_and_a_handful_of_rows(ward, clock):
    fx = Effects()
    sources = [f"127.0.0.{i}" for i in range(2, 22)]            # 20 sources
    for n in range(5000):
        source = sources[n % len(sources)]
        fx.merge(ward.auth_refused(f"ghost-{n}", f"{source}:{40000 + n % 7}", "unknown device" if n % 2 else "discovery: unknown device"))
        if n % 50 == 0:
            advance(ward, clock, 0.01)
    attempts = [a for a in ward.alarms.values() if a.kind == "device_trying_to_connect"]
    assert len(attempts) == SOURCE_ALARMS + 1
    assert sum(a.count for a in attempts) == 5000
    others = ward.alarms["attempt:others"]
    assert others.data["sources"] == len(sources) - SOURCE_ALARMS
    one = ward.alarms["attempt:127.0.0.2"]
    assert one.count == 250 and one.data["claimed_devices"][-1] == "ghost-4980" and len(one.data["claimed_devices"]) == 5
    assert one.data["reason"] == "discovery: unknown device" and "250 attempts" in one.text
    # the record: the first attempt of each alarm, nothing more within the minute
    assert kinds(fx).count("auth_refused") == SOURCE_ALARMS + 1
    assert kinds(fx).count("alarm_raised") == SOURCE_ALARMS + 1
    # console updates: each alarm raised once and updated at most about once a second
    assert len([1 for a, _ in fx.alarms.values()]) <= (SOURCE_ALARMS + 1)
    advance(ward, clock, 61)
    fx = ward.tick()
    rows = [r for r in fx.records if r.kind == "auth_refused_summary"]
    assert sorted(r.data["count"] for r in rows) == sorted(a.count - 1 for a in attempts)
    assert {a.id: a.count for a, _ in fx.alarms.values()} == {a.id: a.count for a in attempts}
    # quiet for attempt_alarm_s: the alarms go, and a source starts afresh
    advance(ward, clock, 600)
    ward.tick()
    advance(ward, clock, 61)
    ward.tick()
    assert not [a for a in ward.alarms.values() if a.kind == "device_trying_to_connect"]
    fx = ward.auth_refused("intruder", "127.0.0.40:1", "wrong key")
    assert kinds(fx) == ["auth_refused", "alarm_raised"] and "attempt:127.0.0.40" in ward.alarms


def test_rejected_frames_are_recorded_ten_a_minute_per_source(ward, clock):
    fx = Effects()
    for n in range(500):
        fx.merge(ward.protocol_problem(None, f"127.0.0.{2 + n % 100}:{n}", "before HELLO: bad length", closed=True))
        fx.merge(ward.protocol_problem("a1", "127.0.0.1:9", "bad body", closed=False))
    assert kinds(fx).count("frame_rejected") <= 10 + 64 * 10 + 10
    assert sum(1 for r in fx.records if r.device == "a1") == 10
    advance(ward, clock, 61)
    rows = [r for r in ward.tick().records if r.kind == "frame_rejected_summary"]
    assert ("a1", 490) in [(r.device, r.data["count"]) for r in rows]


# ----- the pieces -----

def test_record_gate_burst_then_one_count_a_period():
    from wardcall.ward.flood import RecordGate
    gate = RecordGate(period_s=60, burst=3)
    assert [gate.admit("k", t) for t in (0, 1, 2)] == [0, 0, 0]       # the burst, recorded
    assert [gate.admit("k", t) for t in range(3, 50)] == [None] * 47    # then only counted
    assert gate.due(59) == []
    assert gate.due(60) == [("k", 47, {})]                              # one summary at the period's end
    assert gate.admit("k", 61) is None and gate.due(120) == [("k", 1, {})]
    assert gate.due(181) == [] and "k" not in gate                      # quiet for a period: forgotten
    assert gate.admit("k", 200) == 0


def test_announce_token_bucket_per_source():
    from wardcall.discovery import TokenBuckets
    now = [0.0]
    buckets = TokenBuckets(burst=5, rate=2, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(7)] == [True] * 5 + [False] * 2
    assert buckets.take("b")                      # another source has its own bucket
    now[0] += 1.0                                 # two tokens back a second
    assert [buckets.take("a") for _ in range(3)] == [True, True, False]
