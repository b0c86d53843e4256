"""`wardcall report` on a scripted scenario: the state machine driven by a hand-moved clock,
its effects stored by the real storage code, the report read by the real command."""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from calendar import timegm
from pathlib import Path

import pytest

from wardcall.clock import ManualClock
from wardcall.config import load_config
from wardcall.protocol import wardproto as wp
from wardcall.storage import Storage
from wardcall.ward import Ward

pytestmark = pytest.mark.timeout(60)

CONFIG = """\
[ward]
name = "Report ward"
[shifts]
early = "06:00"
late = "14:00"
night = "22:00"
[rooms.101]
beds = ["1", "2"]
[rooms.102]
beds = ["1"]
[terminals.a1]
room = "101"
bed = "1"
[terminals.a2]
room = "101"
bed = "2"
[terminals.b1]
room = "102"
bed = "1"
"""


def utc(hour: int, minute: int = 0) -> float:
    return float(timegm((2025, 3, 10, hour, minute, 0, 0, 0, 0)))


def run_scenario(config_path: Path) -> None:
    """Four calls; every figure below follows from these steps."""
    config = load_config(config_path)
    clock = ManualClock(wall=utc(7, 0))
    ward = Ward(config, clock)
    storage = Storage(config.database)
    ward.set_consoles(1)

    def at(wall: float) -> None:
        clock.advance(wall - clock.wall())
        for device in ward.terminals:               # keep every terminal alive
            storage.commit_effects(ward.frame_received(device))

    def place(device: str, call_id: int, kind: int):
        fx, call = ward.place_call(device, call_id, kind, 0)
        storage.commit_effects(fx)
        return call

    def ack(call) -> None:
        storage.commit_effects(ward.acknowledge(call.id, "alice")[0])

    for device in ward.terminals:
        storage.commit_effects(ward.terminal_connected(device, "fw", "sim", 0, "x"))

    # early shift, room 101: a patient call acknowledged after 30 s, attended at 90 s, cleared at 120 s
    at(utc(7, 0))
    c1 = place("a1", 1, wp.PATIENT)
    at(utc(7, 0) + 30); ack(c1)
    at(utc(7, 0) + 90); storage.commit_effects(ward.presence("a1", True, ""))
    at(utc(7, 0) + 120); storage.commit_effects(ward.cancel_call("a1", 1, wp.CANCEL_PRESENCE, 0))
    storage.commit_effects(ward.presence("a1", False, ""))

    # early shift, room 102: a patient call acknowledged after 50 s, attended at 150 s, cleared at 200 s
    at(utc(8, 0))
    c2 = place("b1", 2, wp.PATIENT)
    at(utc(8, 0) + 50); ack(c2)
    at(utc(8, 0) + 150); storage.commit_effects(ward.presence("b1", True, ""))
    at(utc(8, 0) + 200); storage.commit_effects(ward.cancel_call("b1", 2, wp.CANCEL_PRESENCE, 0))
    storage.commit_effects(ward.presence("b1", False, ""))

    # night shift, room 101: a bathroom call attended after 20 s without acknowledgement, cleared at 80 s
    at(utc(23, 0))
    place("a2", 3, wp.BATHROOM)
    at(utc(23, 0) + 20); storage.commit_effects(ward.presence("a2", True, ""))
    at(utc(23, 0) + 80); storage.commit_effects(ward.cancel_call("a2", 3, wp.CANCEL_ORIGIN, 0))

    # night shift, room 102: a code blue acknowledged after 5 s and still open
    at(utc(23, 30))
    c4 = place("b1", 4, wp.CODE_BLUE)
    at(utc(23, 30) + 5); ack(c4)
    storage.close()


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "ward.toml"
    path.write_text(CONFIG)
    run_scenario(path)
    return path


def report(config_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TZ="UTC")       # shifts are local time: make local time UTC
    return subprocess.run([sys.executable, "-m", "wardcall.cli", "report", "--config", str(config_path), *args],
                          capture_output=True, text=True, timeout=30, env=env)


def test_report_figures_for_a_scripted_scenario(scenario):
    result = report(scenario, "--csv")
    assert result.returncode == 0, result.stderr
    rows = {(r["group_by"], r["group"]): r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert list(rows) == [("kind", "code_blue"), ("kind", "bathroom"), ("kind", "patient"),
                          ("room", "101"), ("room", "102"), ("shift", "early"), ("shift", "night")]

    def figures(key, metric):
        r = rows[key]
        return (int(r[f"{metric}_n"]), r[f"{metric}_mean_s"], r[f"{metric}_median_s"], r[f"{metric}_max_s"])

    patient = ("kind", "patient")
    assert rows[patient]["calls"] == "2"
    assert figures(patient, "acknowledge") == (2, "40.000", "40.000", "50.000")
    assert figures(patient, "attend") == (2, "120.000", "120.000", "150.000")
    assert figures(patient, "clear") == (2, "160.000", "160.000", "200.000")
    assert figures(("kind", "bathroom"), "acknowledge") == (0, "", "", "")
    assert figures(("kind", "bathroom"), "attend") == (1, "20.000", "20.000", "20.000")
    assert figures(("kind", "code_blue"), "acknowledge") == (1, "5.000", "5.000", "5.000")
    assert figures(("kind", "code_blue"), "clear") == (0, "", "", "")         # still open

    assert figures(("room", "101"), "attend") == (2, "55.000", "55.000", "90.000")
    assert figures(("room", "102"), "acknowledge") == (2, "27.500", "27.500", "50.000")
    assert rows[("shift", "early")]["calls"] == "2" and rows[("shift", "night")]["calls"] == "2"
    assert figures(("shift", "night"), "clear") == (1, "80.000", "80.000", "80.000")


def test_report_table_and_since(scenario):
    table = report(scenario)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    patient = next(l for l in lines if l.startswith("patient"))
    assert patient.split() == ["patient", "2", "2", "40.0", "40.0", "50.0", "2", "120.0", "120.0", "150.0", "2", "160.0", "160.0", "200.0"]
    late = report(scenario, "--csv", "--since", "2025-03-10T22:00")
    groups = [r["group"] for r in csv.DictReader(io.StringIO(late.stdout))]
    assert groups == ["code_blue", "bathroom", "101", "102", "night"]
    bad = report(scenario, "--since", "yesterday-ish")
    assert bad.returncode == 2 and "--since" in bad.stderr


ROUTED_CONFIG = CONFIG + """
[users.anna]
password = "scrypt$16384$8$1$c2FsdA==$aGFzaA=="
[users.ben]
password = "scrypt$16384$8$1$c2FsdA==$aGFzaA=="
[users.carla]
password = "scrypt$16384$8$1$c2FsdA==$aGFzaA=="
role = "charge_nurse"
"""


def local(hour: int, minute: int = 0) -> float:
    return time.mktime((2025, 3, 10, hour, minute, 0, 0, 0, -1))


@pytest.fixture
def routed_scenario(tmp_path: Path) -> Path:
    """Three routed calls; the routing rows below follow from these steps (in the early shift of
    this machine's local time, as the ward sees it)."""
    path = tmp_path / "ward.toml"
    path.write_text(ROUTED_CONFIG)
    config = load_config(path)
    clock = ManualClock(wall=local(7, 0))
    ward = Ward(config, clock)
    storage = Storage(config.database)
    commit = storage.commit_effects

    def at(wall: float) -> None:
        clock.advance(wall - clock.wall())
        for user in ("anna", "ben", "carla"):
            commit(ward.pocket_heartbeat(user))
        commit(ward.tick())

    commit(ward.sessions_live({"anna", "ben", "carla"}))
    # room 101: anna, buddy ben; room 102 (bed 1) has no nurse
    commit(ward.assign("carla", None, "carla", [{"rooms": ["101"], "primary": "anna", "secondary": "ben"}])[0])
    at(local(7, 0))
    # accepted by its primary nurse after 20 s
    fx, c1 = ward.place_call("a1", 1, wp.PATIENT, 0); commit(fx)
    at(local(7, 0) + 20); commit(ward.accept(c1.id, "anna")[0])
    commit(ward.cancel_call("a1", 1, wp.CANCEL_ORIGIN, 0))
    # from the unassigned bed: passed on to the charge nurse at once, accepted after 30 s
    at(local(8, 0))
    fx, c2 = ward.place_call("b1", 2, wp.PATIENT, 0); commit(fx)
    at(local(8, 0) + 30); commit(ward.accept(c2.id, "carla")[0])
    commit(ward.cancel_call("b1", 2, wp.CANCEL_ORIGIN, 0))
    # declined by anna after 5 s, accepted by ben 10 s after it reached him
    at(local(9, 0))
    fx, c3 = ward.place_call("a2", 3, wp.PATIENT, 0); commit(fx)
    at(local(9, 0) + 5); commit(ward.decline(c3.id, "anna", "busy")[0])
    at(local(9, 0) + 15); commit(ward.accept(c3.id, "ben")[0])
    commit(ward.cancel_call("a2", 3, wp.CANCEL_ORIGIN, 0))
    storage.close()
    return path


def test_report_rows_by_nurse_by_step_and_calls_passed_on(routed_scenario):
    result = report(routed_scenario, "--csv")
    assert result.returncode == 0, result.stderr
    rows = {(r["group_by"], r["group"]): r for r in csv.DictReader(io.StringIO(result.stdout))}
    routing = [k for k in rows if k[0] in ("nurse", "step", "routing")]
    assert routing == [("nurse", "anna"), ("nurse", "ben"), ("nurse", "carla"),
                       ("step", "primary"), ("step", "secondary"), ("step", "charge"),
                       ("routing", "routed"), ("routing", "passed on at least once"),
                       ("routing", "placed on an unassigned bed")]

    def accept(key):
        r = rows[key]
        return (r["calls"], r["accept_n"], r["accept_mean_s"], r["accept_max_s"])

    assert accept(("nurse", "anna")) == ("1", "1", "20.000", "20.000")
    assert accept(("nurse", "ben")) == ("1", "1", "10.000", "10.000")       # from when it reached him
    assert accept(("nurse", "carla")) == ("1", "1", "30.000", "30.000")
    assert accept(("step", "secondary")) == ("1", "1", "15.000", "15.000")  # from when it was placed
    assert [rows[("routing", g)]["calls"] for g in ("routed", "passed on at least once", "placed on an unassigned bed")] \
        == ["3", "2", "1"]
    assert rows[("kind", "patient")]["accept_n"] == ""                     # not measured per kind
    table = report(routed_scenario).stdout
    assert "by nurse" in table and "by step" in table
    assert next(l for l in table.splitlines() if l.startswith("passed on at least once")).split()[-1] == "2"
