"""One host per record, with the real `wardcall serve`: a second host on the same record stops
with one line naming the running one and writes nothing; a port in use is one line naming the
port and the key to change; the open-file limit is raised to the hard limit at start."""
from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.host import LOOPBACK, free_port

pytestmark = pytest.mark.timeout(60)


def serve_once(config: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wardcall.cli", "serve", "--config", str(config)],
                          capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONUNBUFFERED="1"), **kw)


def record_state(database: Path) -> tuple[dict[str, str], list[tuple]]:
    """The record's files byte for byte (not -shm: an index in shared memory that every reader,
    this one too, writes its read marks into), and its rows."""
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(database.parent.glob(database.name + "*")) if not p.name.endswith((".lock", "-shm"))}
    assert set(files) == {database.name, database.name + "-wal"}, files
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT count(*), max(id) FROM events").fetchall() + conn.execute("SELECT count(*) FROM calls").fetchall()
    finally:
        conn.close()
    return files, rows


def one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_a_second_host_on_the_same_record_stops_and_writes_nothing(make_ward, ward_server_factory):
    ward = make_ward(terminals=2)
    server = ward_server_factory(ward)
    # the same TOML, and another TOML on the same record with ports of its own (without the lock
    # that one would start, and write into the live record)
    other = ward.dir / "other.toml"
    text = ward.config_path.read_text()
    for key, port in (("terminal_port", ward.terminal_port), ("discovery_port", ward.discovery_port), ("api_port", ward.api_port)):
        text = text.replace(f"{key} = {port}", f"{key} = {free_port(socket.SOCK_DGRAM if key == 'discovery_port' else socket.SOCK_STREAM)}")
    other.write_text(text)
    before = record_state(ward.database)
    for config in (ward.config_path, other):
        line = one_line(serve_once(config))
        assert line == (f"wardcall serve: {ward.database}: the record is in use by another wardcall serve "
                        f"(pid {server.proc.pid}): one host per record"), line
    assert record_state(ward.database) == before
    assert server.proc.poll() is None            # the first host goes on
    assert not (ward.dir / "other.record.json").exists()


@pytest.mark.parametrize("key", ["terminal_port", "discovery_port", "api_port"])
def test_a_port_in_use_is_one_line_naming_it_and_its_key(make_ward, key):
    ward = make_ward(terminals=1)
    port = {"terminal_port": ward.terminal_port, "discovery_port": ward.discovery_port, "api_port": ward.api_port}[key]
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if key == "discovery_port" else socket.SOCK_STREAM)
    try:
        holder.bind((LOOPBACK, port))
        if key != "discovery_port":
            holder.listen()
        line = one_line(serve_once(ward.config_path))
    finally:
        holder.close()
    assert line.startswith(f"wardcall serve: {ward.config_path}: [network] {key}: {LOOPBACK}:{port} is in use"), line
    assert line.endswith(f"change [network] {key}"), line


def test_the_open_file_limit_is_raised_to_the_hard_limit(make_ward):
    ward = make_ward(terminals=1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)
    ready = ward.dir / "ready.json"
    log = ward.dir / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "wardcall.cli", "serve", "--config", str(ward.config_path),
                                 "--ready-file", str(ready)], stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard)))
    try:
        deadline = time.monotonic() + 15
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert json.loads(ready.read_text())["pid"] == proc.pid
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        line = next(l for l in limits.splitlines() if l.startswith("Max open files"))
        assert line.split()[3:5] == [str(hard), str(hard)], line
        assert f"open-file limit {hard}" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
