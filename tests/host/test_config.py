"""Configuration, keys, provisioning and passwords, through the `wardcall` command as a user runs it."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from wardcall.config import ConfigError, load_config
from wardcall.passwords import hash_password, verify_password

pytestmark = pytest.mark.timeout(60)

BASE = """\
# Ward 7: cardiology (a comment that must survive provisioning)
[ward]
name = "Ward 7"

[rooms.101]
beds = ["1", "2"]   # two beds

[rooms.102]
name = "Single room"
beds = ["1"]
"""


def wardcall(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wardcall.cli", *args], capture_output=True, text=True,
                          input=stdin, timeout=30)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "ward.toml"
    path.write_text(BASE)
    return path


def test_provision_adds_the_terminal_keeps_comments_and_writes_the_board_config(config_path, tmp_path):
    result = wardcall("provision", "--config", str(config_path), "--device", "bed-101-2", "--room", "101", "--bed", "2",
                      "--wifi-ssid", "WardNet", "--wifi-password", "s3cret", "--out", str(tmp_path / "board"))
    assert result.returncode == 0, result.stderr
    text = config_path.read_text()
    assert text.startswith(BASE) and "# two beds" in text
    config = load_config(config_path)
    assert config.terminals["bed-101-2"].room == "101" and config.terminals["bed-101-2"].bed == "2"

    board = json.loads((tmp_path / "board" / "config.json").read_text())
    assert set(board) == {"device_id", "key", "ward", "room", "bed", "wifi", "host", "port", "discovery_port", "tls"}
    assert board["tls"]["name"] == "wardcall.internal" and board["tls"]["ca"]     # the ward CA, made at the first provisioning
    assert (board["device_id"], board["ward"], board["room"], board["bed"]) == ("bed-101-2", "Ward 7", "101", "2")
    assert board["wifi"] == {"ssid": "WardNet", "password": "s3cret"}
    assert board["host"] is None and board["port"] == 7300 and board["discovery_port"] == 7301
    assert len(board["key"]) == 64 and int(board["key"], 16) >= 0

    secrets = config.secrets
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert json.loads(secrets.read_text())["devices"]["bed-101-2"] == board["key"]
    assert stat.S_IMODE((tmp_path / "board" / "config.json").stat().st_mode) == 0o600

    again = wardcall("provision", "--config", str(config_path), "--device", "bed-101-2", "--room", "101", "--bed", "2",
                     "--out", str(tmp_path / "board2"))
    assert again.returncode == 2 and "already provisioned" in again.stderr
    rekey = wardcall("provision", "--config", str(config_path), "--device", "bed-101-2", "--room", "101", "--bed", "2",
                     "--rekey", "--out", str(tmp_path / "board3"))
    assert rekey.returncode == 0, rekey.stderr
    assert json.loads((tmp_path / "board3" / "config.json").read_text())["key"] != board["key"]
    assert config_path.read_text().count("[terminals.bed-101-2]") == 1


def test_provision_names_the_standby_host_the_terminal_tries_next(config_path, tmp_path):
    def provision(device, *extra):
        return wardcall("provision", "--config", str(config_path), "--device", device, "--room", "101",
                        "--bed", "2", "--out", str(tmp_path / device), *extra)
    result = provision("x1", "--host", "10.0.0.5", "--standby-host", "10.0.0.6")
    assert result.returncode == 0, result.stderr
    board = json.loads((tmp_path / "x1" / "config.json").read_text())
    assert (board["host"], board["port"], board["standby_host"], board["standby_port"]) == ("10.0.0.5", 7300, "10.0.0.6", 7300)
    result = provision("x1", "--host", "10.0.0.5", "--standby-host", "standby.ward:7400", "--rekey")
    assert result.returncode == 0, result.stderr
    board = json.loads((tmp_path / "x1" / "config.json").read_text())
    assert (board["standby_host"], board["standby_port"]) == ("standby.ward", 7400)
    # mistakes are refused before anything is written
    for extra, why in ((("--standby-host", "10.0.0.6"), "needs the primary's address too (--host)"),
                       (("--host", "10.0.0.5", "--standby-host", "10.0.0.6:99999"), "is not a port number")):
        result = provision("x3", *extra)
        assert result.returncode == 2 and why in result.stderr, result.stderr
        assert not (tmp_path / "x3").exists()
    assert "x3" not in load_config(config_path).terminals


def test_provision_refuses_an_unknown_room_or_bed(config_path, tmp_path):
    result = wardcall("provision", "--config", str(config_path), "--device", "x1", "--room", "999", "--out", str(tmp_path / "b"))
    assert result.returncode == 2 and "room '999' is not defined" in result.stderr
    result = wardcall("provision", "--config", str(config_path), "--device", "x1", "--room", "102", "--bed", "7", "--out", str(tmp_path / "b"))
    assert result.returncode == 2 and "bed '7'" in result.stderr
    assert config_path.read_text() == BASE


def test_provision_without_a_bed_in_a_room_with_beds_is_refused(config_path, tmp_path):
    result = wardcall("provision", "--config", str(config_path), "--device", "bed-101-x", "--room", "101",
                      "--out", str(tmp_path / "b"))
    assert result.returncode == 2, result.stdout
    assert result.stderr.strip() == f"wardcall provision: {config_path}: room 101 has beds 1, 2: say which one this terminal is with --bed"
    assert config_path.read_text() == BASE and not (tmp_path / "b").exists()
    assert not load_config(config_path).secrets.exists(), "no key is made for a terminal that was refused"


def test_two_terminals_on_one_bed_are_refused_by_provision_and_check(config_path, tmp_path):
    assert wardcall("provision", "--config", str(config_path), "--device", "bed-a", "--room", "101", "--bed", "1",
                    "--out", str(tmp_path / "a")).returncode == 0
    result = wardcall("provision", "--config", str(config_path), "--device", "bed-b", "--room", "101", "--bed", "1",
                      "--out", str(tmp_path / "b"))
    assert result.returncode == 2 and "room 101 bed 1 already has terminal bed-a" in result.stderr, result.stderr
    # written by hand: `wardcall check` (and so `serve`) refuses it, naming both terminals
    secrets = load_config(config_path).secrets
    key = json.loads(secrets.read_text())["devices"]["bed-a"]
    config_path.write_text(config_path.read_text() + '\n[terminals.bed-b]\nroom = "101"\nbed = "1"\n')
    secrets.write_text(json.dumps({"devices": {"bed-a": key, "bed-b": key}}))
    result = wardcall("check", "--config", str(config_path))
    assert result.returncode == 2, result.stdout
    line = result.stderr.strip()
    assert line.startswith(f"wardcall check: {config_path}: [terminals.bed-b] bed:") and "bed-a" in line, line
    with pytest.raises(ConfigError, match="bed-a and bed-b cannot both be that bed"):
        load_config(config_path)


def test_several_terminals_of_a_room_itself_are_allowed(tmp_path):
    path = tmp_path / "ward.toml"
    path.write_text('[ward]\nname = "W"\n[rooms.101]\n[terminals.cord-101]\nroom = "101"\n[terminals.door-101]\nroom = "101"\n')
    assert set(load_config(path).terminals) == {"cord-101", "door-101"}


@pytest.mark.parametrize("text, place, problem", [
    ('[ward]\nname = "W"\n[timing]\nheartbeat_ms = "fast"\n', "[timing] heartbeat_ms", "must be a number"),
    ('[ward]\nname = "W"\n[rooms.101]\n[terminals.t1]\nroom = "102"\n', "[terminals.t1] room", "room '102' is not defined"),
    ('[ward]\nname = "W"\n[network]\napi_port = 70000\n', "[network] api_port", "outside 0-65535"),
    ('[ward]\nname = "W"\n[timing]\nheartbeat = 100\n', "[timing]", "unknown key 'heartbeat'"),
    ('[ward]\nname = "W"\n[timing]\nhost_heartbeat_every = 16\n', "[timing] host_heartbeat_every",
     "must be between 1 and 15, not 16"),
    ('[ward]\nname = "W"\n[users.alice]\npassword = "hunter2"\n', "[users.alice] password", "never the password itself"),
    ('[ward]\nname = "W"\nbroken = \n[rooms]\n', "line 3, column 10", "not valid TOML"),
    ('[rooms.101]\n', "", "needs a [ward] table"),
])
def test_a_bad_config_names_file_place_and_problem(tmp_path, text, place, problem):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(str(path)) and place in message and problem in message
    # and the server refuses to start with the same message, without a traceback
    result = wardcall("serve", "--config", str(path))
    assert result.returncode == 2 and str(path) in result.stderr and problem in result.stderr
    assert "Traceback" not in result.stderr


def test_keys_readable_by_others_are_refused(config_path, tmp_path):
    assert wardcall("provision", "--config", str(config_path), "--device", "t1", "--room", "101", "--bed", "1",
                    "--out", str(tmp_path / "b")).returncode == 0
    secrets = load_config(config_path).secrets
    os.chmod(secrets, 0o644)
    result = wardcall("check", "--config", str(config_path))
    assert result.returncode == 2 and "0600" in result.stderr and str(secrets) in result.stderr


def test_passwd_makes_a_salted_hash_that_verifies():
    result = wardcall("passwd", "--stdin", stdin="correct horse battery\n")
    assert result.returncode == 0, result.stderr
    hashed = result.stdout.strip()
    assert hashed.startswith("scrypt$") and verify_password("correct horse battery", hashed)
    assert not verify_password("wrong", hashed)
    assert hash_password("same password") != hash_password("same password")     # salted
    assert wardcall("passwd", "--stdin", stdin="short\n").returncode == 2
