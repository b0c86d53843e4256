"""The `wardcall` command as an operator runs it: `check` and `serve` refuse a ward whose
terminals have no keys, and `status` says "server running" (exit 0) only when this ward's own
server answers, with a distinct exit status when none does."""
from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wardcall.cli import STATUS_NOT_RUNNING
from wardcall.config import load_config

pytestmark = pytest.mark.timeout(90)


def wardcall(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wardcall.cli", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    assert "Traceback" not in text
    return lines[0]


# ----------------------------------------------------------------------------------------------
# keys


@pytest.mark.parametrize("command", ["check", "serve"])
def test_a_missing_keys_file_with_provisioned_terminals_is_refused(make_ward, command):
    ward = make_ward(terminals=2)
    secrets = load_config(ward.config_path).secrets
    secrets.unlink()
    # serve must refuse before it starts anything: a bounded run, not a server left running
    result = wardcall(command, "--config", str(ward.config_path), timeout=20)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    line = one_line(result.stderr)
    assert line.startswith(f"wardcall {command}: {secrets}: the device keys file is missing"), line
    assert "bed-101-1" in line and "bed-101-2" in line
    assert not ward.database.exists(), "serve opened the record although it was going to refuse every bed"


def test_a_keys_file_of_another_ward_is_refused_by_serve(make_ward, tmp_path):
    ward = make_ward(terminals=1)
    secrets = load_config(ward.config_path).secrets
    secrets.write_text(json.dumps({"devices": {"bed-999-1": "00" * 32}}))
    result = wardcall("serve", "--config", str(ward.config_path), timeout=20)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith(f"wardcall serve: {secrets}: the device keys file has no key for any terminal"), line


def test_check_names_the_terminals_without_a_key_and_serve_still_runs_the_others(make_ward, ward_server_factory):
    ward = make_ward(terminals=2)
    secrets = load_config(ward.config_path).secrets
    keys = json.loads(secrets.read_text())
    del keys["devices"]["bed-101-2"]
    secrets.write_text(json.dumps(keys))
    result = wardcall("check", "--config", str(ward.config_path))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith(f"wardcall check: {secrets}: no key for terminal(s) bed-101-2 "), line
    assert "bed-101-1" not in line
    # the host itself starts: the bed that has its key must not lose its host for the other's sake
    server = ward_server_factory(ward)
    assert "no key for terminal(s) bed-101-2" in server.log_text()


def test_check_says_ok_for_a_good_ward(make_ward):
    ward = make_ward(terminals=2)
    result = wardcall("check", "--config", str(ward.config_path))
    assert result.returncode == 0, result.stderr
    assert "2 terminal(s)" in result.stdout and result.stderr == ""


# ----------------------------------------------------------------------------------------------
# status


class _FakeHealth(BaseHTTPRequestHandler):
    answer: bytes = b'{"ok": true}'

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, *args) -> None:
        pass


def other_program_on(port: int, answer: dict, ward=None) -> ThreadingHTTPServer:
    """Another program answering 200 on the ward's console port (over HTTPS with the ward's
    certificate: what could pass for the console)."""
    handler = type("Handler", (_FakeHealth,), {"answer": json.dumps(answer).encode()})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    if ward is not None and ward.tls != "plain":
        tls = load_config(ward.config_path).tls
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls.cert, tls.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def status(ward) -> subprocess.CompletedProcess:
    return wardcall("status", "--config", str(ward.config_path))


def test_status_running_only_when_this_wards_server_answers(make_ward, ward_server_factory):
    ward = make_ward(terminals=2)
    server = ward_server_factory(ward)
    result = status(ward)
    assert result.returncode == 0, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert f"server running (pid {server.proc.pid})" in first, first
    assert "bed-101-1" in result.stdout

    server.stop()
    result = status(ward)
    assert result.returncode == STATUS_NOT_RUNNING != 0, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert "server NOT RUNNING" in first and "nothing answers" in first, first
    assert "running (pid" not in result.stdout

    # any other program on the port is not the server, whatever it answers
    for answer, why in [({"ok": True}, "not ward Test ward's server"),
                        ({"ok": True, "ward": "Another ward", "run": "x", "pid": 1}, "but ward Another ward's"),
                        ({"ok": True, "ward": "Test ward", "run": "an-old-run", "pid": 1}, "does not write this record")]:
        other = other_program_on(ward.api_port, answer, ward)
        try:
            result = status(ward)
        finally:
            other.shutdown()
            other.server_close()
        assert result.returncode == STATUS_NOT_RUNNING, (answer, result.stdout)
        first = result.stdout.splitlines()[0]
        assert "server NOT RUNNING" in first and why in first, (answer, first)

