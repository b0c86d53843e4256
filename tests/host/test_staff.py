"""Staff, shifts and assignments: the ward TOML's [routing] and badges, shift instances from
local time, and the record's assignment tables and routes (schema 3, migrated in place)."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from wardcall.clock import ManualClock
from wardcall.config import ConfigError, load_config, parse_config
from wardcall.protocol import wardproto as wp
from wardcall.storage import SCHEMA_VERSION, Storage
from wardcall.ward import Ward
from wardcall.ward.shifts import previous_shift, shift_at, shift_by_id

pytestmark = pytest.mark.timeout(30)

HASH = "scrypt$16384$8$1$c2FsdA==$aGFzaA=="
SHIFTS = [("early", 6 * 60), ("late", 14 * 60), ("night", 22 * 60)]


def local(y, mo, d, h, mi=0) -> float:
    return time.mktime((y, mo, d, h, mi, 0, 0, 0, -1))


# ----- the ward TOML -----

def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ward.toml"
    path.write_text('[ward]\nname = "W"\n[rooms.101]\nbeds = ["1"]\n' + text)
    return path


def test_routing_defaults_follow_the_contract(tmp_path):
    config = load_config(write(tmp_path, ""))
    routing = config.routing
    assert routing.phone_silent_s == 45
    assert routing.wait_s == {wp.CODE_BLUE: 0, wp.STAFF_ASSIST: 0, wp.BATHROOM: 30, wp.PATIENT: 60, wp.TECHNICAL: 120}
    assert routing.chain[wp.PATIENT] == ("primary", "secondary", "charge", "all")
    assert routing.chain[wp.TECHNICAL] == ("charge", "all") and routing.chain[wp.CODE_BLUE] == ("all",)


def test_routing_and_badges_are_read(tmp_path):
    config = load_config(write(tmp_path, f"""
[routing]
phone_silent_s = 20
[routing.wait_s]
patient = 2.5
[routing.chain]
bathroom = ["primary", "all"]
[users.anna]
password = "{HASH}"
badge = "04A1B2C3"
"""))
    assert config.routing.phone_silent_s == 20 and config.routing.wait_s[wp.PATIENT] == 2.5
    assert config.routing.chain[wp.BATHROOM] == ("primary", "all")
    assert config.users["anna"].badge == "04a1b2c3" and config.users["anna"].care


@pytest.mark.parametrize("text, place, problem", [
    ("[routing]\nphone_silence = 3\n", "[routing]", "unknown key 'phone_silence'"),
    ("[routing.wait_s]\nurgent = 3\n", "[routing.wait_s]", "unknown key 'urgent'"),
    ("[routing.wait_s]\npatient = -1\n", "[routing.wait_s] patient", "must be 0 or more"),
    ('[routing.chain]\npatient = ["primary", "buddy", "all"]\n', "[routing.chain] patient", "unknown step 'buddy'"),
    ('[routing.chain]\npatient = ["primary", "charge"]\n', "[routing.chain] patient", 'must end with "all"'),
    ('[routing.chain]\npatient = ["all", "all"]\n', "[routing.chain] patient", "only once"),
    ("[routing.chain]\npatient = []\n", "[routing.chain] patient", "no steps"),
    (f'[users.a]\npassword = "{HASH}"\nbadge = "04a1"\n', "[users.a] badge", "4, 7 or 10 bytes"),
    (f'[users.a]\npassword = "{HASH}"\nbadge = "04a1b2c3"\n[users.b]\npassword = "{HASH}"\nbadge = "04A1B2C3"\n',
     "[users.b] badge", "already user a's"),
])
def test_a_bad_routing_or_badge_names_its_place(tmp_path, text, place, problem):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert place in str(err.value) and problem in str(err.value), str(err.value)


# ----- shift instances -----

def test_the_shift_of_a_moment_and_the_night_belongs_to_the_day_it_starts():
    early = shift_at(SHIFTS, local(2026, 12, 1, 7, 30))
    assert (early.id, early.starts, early.ends) == ("2026-12-01/early", local(2026, 12, 1, 6), local(2026, 12, 1, 14))
    night = shift_at(SHIFTS, local(2026, 12, 2, 3))
    assert (night.id, night.starts, night.ends) == ("2026-12-01/night", local(2026, 12, 1, 22), local(2026, 12, 2, 6))
    assert shift_at(SHIFTS, local(2026, 12, 1, 22)).id == "2026-12-01/night"
    assert previous_shift(SHIFTS, early).id == "2026-11-30/night"
    assert previous_shift(SHIFTS, night).id == "2026-12-01/late"
    assert shift_by_id(SHIFTS, "2026-12-01/night") == night


@pytest.mark.parametrize("text, words", [("yesterday", "named like"), ("2026-13-01/early", "no such date"),
                                         ("2026-12-01/brunch", "no shift 'brunch'")])
def test_a_shift_id_that_names_nothing_says_why(text, words):
    with pytest.raises(ValueError) as err:
        shift_by_id(SHIFTS, text)
    assert words in str(err.value)


# ----- the record -----

def ward_config(tmp_path: Path):
    data = {"ward": {"name": "W"}, "rooms": {"101": {"beds": ["1", "2"]}},
            "terminals": {"a1": {"room": "101", "bed": "1"}},
            "users": {u: {"password": HASH, "role": r} for u, r in (("anna", "nurse"), ("carla", "charge_nurse"))}}
    return parse_config(tmp_path / "ward.toml", data)


def test_assignments_and_routes_survive_the_record(tmp_path):
    config = ward_config(tmp_path)
    clock = ManualClock(wall=local(2026, 12, 1, 7))
    ward = Ward(config, clock)
    storage = Storage(config.database)
    try:
        fx, shift = ward.assign("carla", None, "carla", [{"beds": ["101/1"], "primary": "anna"}])
        storage.commit_effects(fx)
        storage.commit_effects(ward.assign("carla", None, changes=[{"beds": ["101/2"], "secondary": "anna"}])[0])
        ward.sessions_live({"anna"})
        ward.pocket_heartbeat("anna")
        ward.terminal_connected("a1", "fw", "sim", 0, "x")
        fx, call = ward.place_call("a1", 1, wp.PATIENT, 0)
        storage.commit_effects(fx)
        assert storage.assignment_rows() == [{"shift": shift.id, "charge": "carla",
                                              "beds": [("101/1", "anna", None), ("101/2", None, "anna")]}]
        again = Ward(config, clock)
        again.restore(storage.open_calls(), storage.terminal_rows(), storage.next_call_id(), storage.assignment_rows())
        assert again.assignment_view(again.shift) == ward.assignment_view(ward.shift)
        assert again.call_view(again.call_by_id(call.id))["route"] == ward.call_view(call)["route"]
        assert again.call_view(again.call_by_id(call.id))["route"]["to"] == ["anna"]
        lines = [r["kind"] for r in storage.conn.execute("SELECT kind FROM events ORDER BY id")]
        assert lines.count("assignment_changed") == 3 and "call_routed" in lines
    finally:
        storage.close()


def test_a_version_2_record_gets_routes_and_assignment_tables_and_keeps_every_call(tmp_path):
    """A record of schema 2 is brought forward in place; its open call is routed when restored."""
    path = tmp_path / "ward.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema', '2');
        CREATE TABLE calls (id INTEGER PRIMARY KEY, device TEXT NOT NULL, call_id INTEGER NOT NULL,
            kind INTEGER NOT NULL, room TEXT NOT NULL, bed TEXT NOT NULL, state TEXT NOT NULL,
            placed_at REAL NOT NULL, received_at REAL NOT NULL, alerted_at REAL NOT NULL,
            acknowledged_at REAL, acknowledged_by TEXT, last_acknowledged_at REAL, attended_at REAL,
            attended_by TEXT, cleared_at REAL, cleared_reason TEXT, escalation INTEGER NOT NULL DEFAULT 0,
            realerts INTEGER NOT NULL DEFAULT 0, hwid TEXT NOT NULL DEFAULT '', UNIQUE (device, hwid, call_id));
        INSERT INTO calls (id, device, call_id, kind, room, bed, state, placed_at, received_at, alerted_at)
            VALUES (1, 'a1', 65537, 4, '101', '1', 'cleared', 1, 1, 1),
                   (2, 'a1', 65538, 4, '101', '1', 'placed', 2, 2, 2);
    """)
    conn.close()
    storage = Storage(path)
    try:
        rows = [dict(r) for r in storage.conn.execute("SELECT id, state, route FROM calls ORDER BY id")]
        assert rows == [{"id": 1, "state": "cleared", "route": None}, {"id": 2, "state": "placed", "route": None}]
        assert storage.conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == str(SCHEMA_VERSION) == "3"
        assert storage.assignment_rows() == []
        config = parse_config(path.with_name("ward.toml"), {
            "ward": {"name": "W"}, "rooms": {"101": {"beds": ["1"]}}, "terminals": {"a1": {"room": "101", "bed": "1"}},
            "users": {"anna": {"password": HASH}}})
        ward = Ward(config, ManualClock(wall=time.time()))
        fx = ward.restore(storage.open_calls(), [], storage.next_call_id(), storage.assignment_rows())
        call = ward.call_by_id(2)
        assert call.route is not None and call.route.steps == ("primary", "secondary", "charge", "all")
        storage.commit_effects(fx)
        assert storage.conn.execute("SELECT route FROM calls WHERE id = 2").fetchone()[0] is not None
    finally:
        storage.close()


def test_a_damaged_route_in_the_record_is_routed_again_not_a_host_that_cannot_start(tmp_path):
    config = ward_config(tmp_path)
    clock = ManualClock(wall=local(2026, 12, 1, 7))
    ward = Ward(config, clock)
    ward.terminal_connected("a1", "fw", "sim", 0, "x")
    _, call = ward.place_call("a1", 1, wp.PATIENT, 0)
    for damaged in ("{not json", '{"steps": [], "started_at": 1}', '{"steps": ["all"], "step": 5, "started_at": 1}', "[1, 2]"):
        row = {**call.row(), "route": damaged}
        again = Ward(config, clock)
        again.restore([row], [], 2, [])
        assert again.call_by_id(call.id).route.steps == ("primary", "secondary", "charge", "all"), damaged
