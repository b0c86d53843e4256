"""Routing with a hand-moved clock: a call's chain of steps (primary, secondary, charge, all),
skipped and declining nurses, accept, and the record's lines. No sockets, no sleeps."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from wardcall.clock import ManualClock
from wardcall.config import parse_config
from wardcall.protocol import wardproto as wp
from wardcall.ward import Ward, WardError

pytestmark = pytest.mark.timeout(30)

HASH = "scrypt$16384$8$1$c2FsdA==$aGFzaA=="     # never checked here
SEVEN_AM = time.mktime((2026, 12, 1, 7, 0, 0, 0, 0, -1))      # local time: the early shift


def make_config(routing: dict | None = None, users: dict | None = None):
    people = users if users is not None else {
        "anna": {"role": "nurse", "badge": "04a1b2c3"},
        "ben": {"role": "nurse", "badge": "04b2c3d4"},
        "carla": {"role": "charge_nurse"},
        "dora": {"role": "aide"},
        "tom": {"role": "technician", "badge": "04c3d4e5"},
    }
    data = {
        "ward": {"name": "W"},
        "timing": {"heartbeat_ms": 1000, "no_console_grace_s": 5},
        "escalation": {"attend_timeout_s": 180, "ack_timeout_s": {"patient": 600, "bathroom": 600}},
        "rooms": {"101": {"beds": ["1", "2"]}, "102": {"beds": ["1", "2"]}, "103": {"beds": ["1"]}},
        "terminals": {"a1": {"room": "101", "bed": "1"}, "a2": {"room": "101", "bed": "2"},
                      "b1": {"room": "102", "bed": "1"}, "b2": {"room": "102", "bed": "2"},
                      "c1": {"room": "103", "bed": "1"}},
        "users": {login: {"name": login.title(), "password": HASH, **spec} for login, spec in people.items()},
        "routing": routing or {},
    }
    return parse_config(Path("/tmp/test-ward.toml"), data)


@pytest.fixture
def clock():
    return ManualClock(wall=SEVEN_AM)


def new_ward(clock, **kw) -> Ward:
    w = Ward(make_config(**kw), clock)
    for device in w.terminals:
        w.terminal_connected(device, "fw", "sim", 0, "127.0.0.1:1")
    w.set_consoles(1)
    return w


@pytest.fixture
def ward(clock):
    w = new_ward(clock)
    assign_ward(w)
    reachable(w, "anna", "ben", "carla", "dora")
    return w


def assign_ward(w: Ward) -> None:
    """Charge nurse carla; rooms 101 anna (buddy ben), 102 ben (buddy anna), 103 dora."""
    w.assign("carla", None, "carla", [{"rooms": ["101"], "primary": "anna", "secondary": "ben"},
                                      {"rooms": ["102"], "primary": "ben", "secondary": "anna"},
                                      {"beds": ["103/1"], "primary": "dora"}])


def reachable(w: Ward, *users: str) -> None:
    w.sessions_live(set(users) | w.session_users)
    for user in users:
        w.pocket_heartbeat(user)


def advance(w: Ward, clock: ManualClock, seconds: float):
    """Time goes on with every terminal and every open pocket console alive; returns the tick."""
    clock.advance(seconds)
    for device in w.terminals:
        w.frame_received(device)
    for user in w.session_users:
        if user in w.pocket_seen:
            w.pocket_heartbeat(user)
    return w.tick()


def has(data: dict, **expected) -> bool:
    return all(data.get(k) == v for k, v in expected.items())


def route(w: Ward, call) -> dict:
    return w.call_view(call)["route"]


def lines(fx, *kinds):
    return [(r.kind, r.data) for r in fx.records if r.kind in kinds]


def commands(fx, cmd, device=None):
    return [m for m in fx.messages if m.mtype == wp.COMMAND and m.fields["cmd"] == cmd
            and (device is None or m.device == device)]


# ----- the chain -----

def test_a_call_goes_to_the_beds_primary_nurse_first(ward, clock):
    fx, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    r = route(ward, call)
    assert (r["step"], r["step_name"], r["to"], r["skipped"], r["accepted_by"]) == (0, "primary", ["anna"], [], None)
    assert r["steps"] == ["primary", "secondary", "charge", "all"] and r["next_at"] == pytest.approx(clock.wall() + 60)
    assert lines(fx, "call_routed")[0][1]["to"] == ["anna"] and fx.records[-1].call == call.id
    # the station console has it all the same
    assert [c["id"] for c in ward.snapshot()["calls"]] == [call.id]


def test_no_answer_passes_it_on_step_by_step_and_it_stays_with_everyone(ward, clock):
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    assert not lines(advance(ward, clock, 59.9), "call_passed_on")
    fx = advance(ward, clock, 0.2)
    assert has(lines(fx, "call_passed_on")[0][1], from_step="primary", to_step="secondary", why="no answer")
    assert route(ward, call)["to"] == ["anna", "ben"] and fx.calls[call.id] is call     # a route only widens
    advance(ward, clock, 60)
    assert route(ward, call)["to"] == ["anna", "ben", "carla"] and route(ward, call)["step_name"] == "charge"
    fx = advance(ward, clock, 60)
    r = route(ward, call)
    assert r["step_name"] == "all" and r["to"] == ["anna", "ben", "carla", "dora"] and r["next_at"] is None
    assert lines(fx, "call_routed")[0][1]["to"] == ["dora"]
    assert not lines(advance(ward, clock, 600), "call_passed_on")           # after the last step it stays


def test_decline_passes_it_to_the_buddy_at_once(ward, clock):
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    fx, _ = ward.decline(call.id, "anna", "busy")
    assert lines(fx, "call_declined")[0][1]["reason"] == "busy" and fx.records[0].user == "anna"
    assert lines(fx, "call_passed_on")[0][1]["why"] == "declined"
    r = route(ward, call)
    assert (r["step_name"], r["to"], r["declined"]) == ("secondary", ["anna", "ben"], ["anna"])
    assert r["next_at"] == pytest.approx(clock.wall() + 60)      # the buddy gets the whole wait


def test_only_someone_the_call_is_routed_to_may_decline_it_and_twice_is_once(ward, clock):
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    with pytest.raises(WardError) as err:
        ward.decline(call.id, "ben", "")
    assert err.value.kind == WardError.CONFLICT and "not routed to ben" in err.value.message
    with pytest.raises(WardError) as err:
        ward.decline(999, "anna", "")
    assert err.value.kind == WardError.NOT_FOUND
    ward.decline(call.id, "anna", "")
    fx, _ = ward.decline(call.id, "anna", "")
    assert not fx and route(ward, call)["step_name"] == "secondary"


def test_a_decline_by_one_of_several_waits_for_the_others(ward, clock):
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    advance(ward, clock, 60.1)                     # to ben
    fx, _ = ward.decline(call.id, "anna", "")      # anna had it from step 0: ben still may take it
    assert not lines(fx, "call_passed_on") and route(ward, call)["step_name"] == "secondary"
    fx, _ = ward.decline(call.id, "ben", "")
    assert lines(fx, "call_passed_on")[0][1]["why"] == "declined" and route(ward, call)["step_name"] == "charge"


def test_a_logged_out_primary_is_skipped_and_the_call_says_so(ward, clock):
    ward.sessions_live({"ben", "carla", "dora"})
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    r = route(ward, call)
    assert r["skipped"] == [{"user": "anna", "why": "logged out"}]
    assert (r["step_name"], r["to"]) == ("secondary", ["ben"])
    kinds = [(r.kind, r.data.get("why")) for r in ward.place_call("a2", 2, wp.PATIENT, 0)[0].records
             if r.kind in ("call_routed", "call_passed_on")]
    assert kinds == [("call_routed", None), ("call_passed_on", "nobody reachable"), ("call_routed", None)]


def test_a_silent_phone_is_skipped(ward, clock):
    clock.advance(45.5)
    for user in ("ben", "carla", "dora"):
        ward.pocket_heartbeat(user)
    ward.tick()
    assert has(next(s for s in ward.snapshot()["staff"] if s["user"] == "anna"),
               reachable=False, why_not="phone silent", on_shift=True)
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    assert route(ward, call)["skipped"] == [{"user": "anna", "why": "phone silent"}] and route(ward, call)["to"] == ["ben"]


def test_a_nurse_whose_phone_goes_silent_while_the_call_waits_passes_it_on_at_once(ward, clock):
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    clock.advance(46)                              # only anna's phone is silent now
    for user in ("ben", "carla", "dora"):
        ward.pocket_heartbeat(user)
    fx = ward.tick()
    assert lines(fx, "staff_reachability")[0][1] == {"reachable": False, "why": "phone silent"}
    assert lines(fx, "call_passed_on")[0][1]["why"] == "nobody reachable"
    assert route(ward, call)["step_name"] == "secondary" and "anna" in fx.staff


def test_a_nurse_reachable_again_gets_the_calls_of_her_steps(ward, clock):
    ward.sessions_live({"ben", "carla", "dora"})
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    assert route(ward, call)["to"] == ["ben"]
    reachable(ward, "anna")
    r = route(ward, call)
    assert r["to"] == ["ben", "anna"] and r["skipped"] == [] and r["step_name"] == "secondary"


def test_a_step_that_reaches_nobody_new_passes_on_at_once(clock):
    w = new_ward(clock)
    w.assign("carla", None, "anna", [{"rooms": ["101"], "primary": "anna", "secondary": "anna"}])
    reachable(w, "anna", "ben")
    _, call = w.place_call("a1", 1, wp.PATIENT, 0)
    assert route(w, call)["step_name"] == "primary"
    fx = advance(w, clock, 60.1)
    r = route(w, call)
    assert r["step_name"] == "all" and r["to"] == ["anna"]       # ben is not on this shift: not in "all"
    assert [d["why"] for _, d in lines(fx, "call_passed_on")] == ["no answer", "nobody new", "nobody new"]


def test_emergencies_go_to_everyone_on_shift_at_once(ward, clock):
    _, call = ward.place_call("a1", 1, wp.CODE_BLUE, 0)
    r = route(ward, call)
    assert (r["steps"], r["to"], r["next_at"]) == (["all"], ["anna", "ben", "carla", "dora"], None)


def test_no_waiting_reaches_every_steps_people_at_once_without_passing_on(clock):
    w = new_ward(clock, routing={"wait_s": {"bathroom": 0}})
    assign_ward(w)
    reachable(w, "anna", "ben", "carla", "dora")
    fx, call = w.place_call("a1", 1, wp.BATHROOM, 0)
    r = route(w, call)
    assert r["step_name"] == "all" and r["to"] == ["anna", "ben", "carla", "dora"] and r["next_at"] is None
    assert [d["step"] for _, d in lines(fx, "call_routed")] == ["primary", "secondary", "charge", "all"]
    assert not lines(fx, "call_passed_on") and call.route.passed_on == 0


# ----- accept and acknowledge -----

def test_accept_is_acknowledge_with_her_name_and_routing_stops(ward, clock):
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    fx, _ = ward.accept(call.id, "anna")
    assert call.state == "acknowledged" and call.acknowledged_by == "anna"
    assert [k for k, _ in lines(fx, "call_acknowledged", "call_accepted")] == ["call_acknowledged", "call_accepted"]
    assert lines(fx, "call_accepted")[0][1]["step"] == "primary"
    assert [(m.fields["state"], m.fields["by"]) for m in fx.messages if m.mtype == wp.CALL_STATE] == [(wp.ST_ACKNOWLEDGED, "anna")]
    r = route(ward, call)
    assert (r["accepted_by"], r["ended"], r["next_at"]) == ("anna", "accepted", None)
    assert not lines(advance(ward, clock, 170), "call_passed_on", "call_routed")


def test_an_acknowledge_at_the_console_stops_routing_too(ward, clock):
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    ward.acknowledge(call.id, "carla")
    assert route(ward, call)["accepted_by"] == "carla"
    assert not lines(advance(ward, clock, 120), "call_passed_on")
    with pytest.raises(WardError) as err:
        ward.decline(call.id, "anna", "")
    assert err.value.kind == WardError.CONFLICT


def test_a_call_that_comes_back_is_routed_again_where_it_stood(ward, clock):
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    advance(ward, clock, 60.1)
    ward.accept(call.id, "ben")
    fx = advance(ward, clock, 180.1)                     # acknowledged, nobody came: re-alert
    assert call.realerts == 1 and call.state == "placed"
    r = route(ward, call)
    assert (r["step_name"], r["ended"], r["accepted_by"]) == ("secondary", None, None)
    assert has(lines(fx, "call_routed")[0][1], again=True, to=["anna", "ben"])
    assert lines(advance(ward, clock, 60.1), "call_passed_on")[0][1]["to_step"] == "charge"


def test_presence_at_the_bedside_ends_the_route(ward, clock):
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    ward.presence("a1", True, "")
    assert route(ward, call)["ended"] == "attended"
    assert not lines(advance(ward, clock, 120), "call_passed_on")


# ----- assignments -----

def test_an_unassigned_bed_is_a_standing_alarm_until_every_bed_has_a_nurse(clock):
    w = new_ward(clock)
    fx = w.tick()
    alarm = fx.alarms["unassigned_beds"][0]
    assert alarm.kind == "unassigned_beds" and alarm.text == (
        "no nurse assigned: Room 101 bed 1, Room 101 bed 2, Room 102 bed 1, Room 102 bed 2, Room 103 bed 1")
    fx, _ = w.assign("carla", None, None, [{"rooms": ["101", "102"], "primary": "anna"}])
    assert w.alarms["unassigned_beds"].text == "no nurse assigned: Room 103 bed 1"
    assert w.alarms["unassigned_beds"].data["beds"] == ["103/1"]
    # a call from the bed nobody looks after: counted, and it goes on to the others
    reachable(w, "anna", "carla")
    _, call = w.place_call("c1", 1, wp.PATIENT, 0)
    assert route(w, call)["unassigned"] is True and route(w, call)["to"] == ["anna"]      # "all": anna, on shift
    fx, _ = w.assign("carla", None, None, [{"beds": ["103/1"], "primary": "dora"}])
    assert fx.alarms["unassigned_beds"][1] is False and "unassigned_beds" not in w.alarms
    assert [k for k, _ in lines(fx, "alarm_cleared")] == ["alarm_cleared"]


def test_a_ward_without_care_staff_has_no_assignment_alarm_and_no_routes(clock):
    w = new_ward(clock, users={"tom": {"role": "technician"}})
    assert "unassigned_beds" not in w.tick().alarms
    _, call = w.place_call("a1", 1, wp.PATIENT, 0)
    assert route(w, call) is None


def test_every_change_of_an_assignment_is_recorded(ward, clock):
    fx, shift = ward.assign("carla", None, "ben", [{"beds": ["101/2"], "primary": "dora", "secondary": None}])
    changes = [(d["bed"], d["field"], d["before"], d["after"]) for _, d in lines(fx, "assignment_changed")]
    assert changes == [(None, "charge", "carla", "ben"), ("101/2", "primary", "anna", "dora"), ("101/2", "secondary", "ben", None)]
    assert all(r.user == "carla" and r.data["shift"] == shift.id for r in fx.records if r.kind == "assignment_changed")
    assert list(fx.assignments) == [shift.id]
    view = ward.assignment_view(shift)
    assert view["charge"] == "ben" and {"room": "101", "bed": "2", "primary": "dora", "secondary": None} in view["beds"]
    assert view["unassigned"] == [] and [s["user"] for s in view["staff"]] == ["anna", "ben", "carla", "dora"]


@pytest.mark.parametrize("change, words", [
    ({"beds": ["101/9"], "primary": "anna"}, "unknown bed '101/9'"),
    ({"rooms": ["999"], "primary": "anna"}, "unknown room '999'"),
    ({"beds": ["101/1"], "primary": "zoe"}, "unknown user 'zoe'"),
    ({"beds": ["101/1"], "primary": "tom"}, "tom is a technician, not care staff"),
    ({"beds": ["101/1"], "rooms": ["101"], "primary": "anna"}, 'either "beds" or "rooms"'),
    ({"beds": ["101/1"], "nurse": "anna"}, "unknown key 'nurse'"),
])
def test_an_assignment_naming_what_does_not_exist_changes_nothing(ward, change, words):
    before = ward.assignment_view(ward.shift)
    with pytest.raises(WardError) as err:
        ward.assign("carla", None, "anna", [{"beds": ["101/2"], "primary": "dora"}, change])
    assert err.value.kind == WardError.INVALID and words in err.value.message, err.value.message
    assert ward.assignment_view(ward.shift) == before


def test_a_new_shift_starts_unassigned_and_copy_brings_the_last_one_over(ward, clock):
    advance(ward, clock, 7 * 3600 + 1)                      # 14:00: the late shift
    assert ward.shift.name == "late"
    assert "unassigned_beds" in ward.alarms
    assert ward.assignment_view(ward.shift_named("previous"))["charge"] == "carla"
    fx, target = ward.copy_assignment("carla", "previous", None)
    assert target.id == ward.shift.id and "unassigned_beds" not in ward.alarms
    assert lines(fx, "assignment_copied")[0][1]["from_shift"].endswith("/early")
    assert ward.assignment_view(ward.shift)["charge"] == "carla"


def test_shift_started_goes_to_the_record_and_the_consoles(ward, clock):
    fx = advance(ward, clock, 7 * 3600 + 1)
    assert lines(fx, "shift_started")[0][1]["shift"].endswith("/late")
    assert list(fx.assignments) == [ward.shift.id] and {"anna", "ben", "carla", "dora"} <= fx.staff


def test_an_assignment_made_while_a_call_waits_widens_its_route(clock):
    w = new_ward(clock)
    reachable(w, "anna", "ben")
    w.assign("carla", None, None, [{"rooms": ["102"], "primary": "ben"}])
    _, call = w.place_call("a1", 1, wp.PATIENT, 0)           # 101/1: nobody assigned
    assert route(w, call)["step_name"] == "all" and route(w, call)["to"] == ["ben"]
    fx, _ = w.assign("carla", None, None, [{"beds": ["101/1"], "primary": "anna"}])
    assert route(w, call)["to"] == ["ben", "anna"] and lines(fx, "call_routed")[0][1]["widened"] is True


# ----- where the nurse is -----

def test_a_badge_places_the_nurse_and_a_call_routed_to_her_is_notified_there(ward, clock):
    fx = ward.presence("b1", True, "04A1B2C3")                  # anna badges in at room 102
    assert lines(fx, "location_registered")[0][1]["room"] == "102" and fx.records[-1].user == "anna"
    view = next(s for s in ward.snapshot()["staff"] if s["user"] == "anna")
    assert (view["room"], view["since"]) == ("102", clock.wall())
    assert ward.room_view("102")["staff"] == ["b1", "anna"]
    fx, call = ward.place_call("a1", 1, wp.PATIENT, 0)           # room 101's call, routed to anna
    notes = commands(fx, 7)
    assert sorted(m.device for m in notes) == ["b1", "b2"]
    assert notes[0].fields["arg"] == bytes([wp.PATIENT, wp.ALARM_LOW, 120])
    assert not commands(fx, wp.CMD_CHIME, "b1")                  # instead of the chime
    # she badges in at room 103: the call moves with her
    fx = ward.presence("c1", True, "04a1b2c3")
    assert lines(fx, "location_updated")[0][1] == {"room": "103", "from_room": "102"}
    assert sorted((m.device, m.fields["arg"][2]) for m in commands(fx, 7)) == [("b1", 0), ("b2", 0), ("c1", 120)]
    # presence ends there: she is nowhere known, the terminal stops showing it
    fx = ward.presence("c1", False, "04a1b2c3")
    assert lines(fx, "location_cleared")[0][1]["room"] == "103"
    assert [(m.device, m.fields["arg"][2]) for m in commands(fx, 7)] == [("c1", 0)]
    assert next(s for s in ward.snapshot()["staff"] if s["user"] == "anna")["room"] is None


def test_plain_presence_keeps_the_chime_and_a_call_not_routed_to_her_chimes(ward, clock):
    ward.presence("c1", True, "")                                 # the presence button at room 103
    ward.presence("b1", True, "04b2c3d4")                          # ben at room 102
    fx, _ = ward.place_call("a1", 1, wp.PATIENT, 0)               # routed to anna only
    assert [m.device for m in commands(fx, wp.CMD_CHIME)] == ["b1", "c1"] and not commands(fx, 7)


def test_accepting_stops_the_notify(ward, clock):
    ward.presence("b1", True, "04a1b2c3")
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    fx, _ = ward.accept(call.id, "anna")
    assert sorted((m.device, m.fields["arg"][2]) for m in commands(fx, 7)) == [("b1", 0), ("b2", 0)]


def test_a_more_urgent_call_stays_shown_when_a_lesser_one_comes(ward, clock):
    ward.presence("b1", True, "04a1b2c3")
    _, blue = ward.place_call("a1", 1, wp.CODE_BLUE, 0)
    fx, patient = ward.place_call("a2", 2, wp.PATIENT, 0)
    assert not commands(fx, 7)
    fx, _ = ward.accept(blue.id, "anna")             # the code blue taken: the patient call shows now
    assert sorted((m.device, m.fields["arg"][0], m.fields["arg"][2]) for m in commands(fx, 7)) == \
        [("b1", wp.PATIENT, 120), ("b2", wp.PATIENT, 120)]


def test_a_terminal_that_refuses_notify_gets_the_chime(ward, clock):
    ward.presence("b1", True, "04a1b2c3")
    fx, _ = ward.place_call("a1", 1, wp.PATIENT, 0)
    for cmd_id, m in enumerate(commands(fx, 7), start=40):      # as the hub numbers and sends them
        ward.notify_sent(cmd_id, m.device, m.fields["arg"])
    assert not commands(ward.command_result("b2", 41, True, "ok"), wp.CMD_CHIME)     # b2 knows it
    fx = ward.command_result("b1", 40, False, "unknown command")
    assert [m.fields["arg"] for m in commands(fx, wp.CMD_CHIME, "b1")] == [bytes([wp.ALARM_LOW])]
    assert lines(fx, "notify_unsupported") and lines(fx, "command_result")
    fx, _ = ward.place_call("a2", 2, wp.BATHROOM, 0)             # more urgent: shown at once
    assert commands(fx, wp.CMD_CHIME, "b1") and not commands(fx, 7, "b1") and commands(fx, 7, "b2")


def test_an_unknown_badge_is_plain_presence_and_recorded_once_a_minute(ward, clock):
    _, call = ward.place_call("b1", 1, wp.PATIENT, 0)
    fx = ward.presence("b1", True, "deadbeef")
    assert call.state == "attended" and lines(fx, "badge_unknown")[0][1]["badge"] == "deadbeef"
    assert ward.locations == {}
    for _ in range(5):
        ward.presence("b1", False, "deadbeef")
        assert not lines(ward.presence("b1", True, "deadbeef"), "badge_unknown")
    fx = advance(ward, clock, 61)
    assert lines(fx, "badge_unknown_summary")[0][1]["count"] == 5


# ----- after a restart -----

def test_a_restart_resumes_the_route_where_it_was(ward, clock):
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    advance(ward, clock, 60.1)
    ward.decline(call.id, "ben", "busy")                 # now with carla, 60 s from here
    clock.advance(20)
    row = call.row()
    assignments = [a.row() for a in ward.assignments.values()]
    again = Ward(make_config(), clock)
    fx = again.restore([row], [], 2, assignments)
    restored = again.call_by_id(call.id)
    r = route(again, restored)
    assert (r["step_name"], r["to"], r["declined"]) == ("charge", ["anna", "ben", "carla"], ["ben"])
    assert "call_routed" not in [k.kind for k in fx.records]
    clock.advance(39.8)
    assert not lines(again.tick(), "call_passed_on")
    clock.advance(0.3)
    assert lines(again.tick(), "call_passed_on")[0][1]["to_step"] == "all"


def test_after_a_restart_logged_in_staff_are_reachable_until_their_phones_are_due(clock):
    w = Ward(make_config(), clock)
    w.restore([], [], 1, [])
    w.sessions_live({"anna"})
    assert w.reachable("anna") and not w.reachable("ben")
    clock.advance(45.1)
    w.tick()
    assert w.why_unreachable("anna") == "phone silent"
