"""A record that cannot be written at start (a read-only file, a read-only folder): the real
`wardcall serve` stops with one line and exit status 2 — a host that cannot write cannot
acknowledge any call (the terminals keep their lamps and buzzer working locally)."""
from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)


def serve_once(config: Path) -> subprocess.CompletedProcess:
    """`wardcall serve` as the service would start it; it must stop by itself here."""
    return subprocess.run([sys.executable, "-m", "wardcall.cli", "serve", "--config", str(config)],
                          capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONUNBUFFERED="1"))


@contextlib.contextmanager
def read_only(path: Path):
    """Make a file or folder really read-only: a read-only bind mount as root (root writes through
    permission bits), the permission bits otherwise."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    bound = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"root, but cannot bind-mount to make {path.name} read-only: {bound.stderr.strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True, text=True)
        if ro.returncode != 0:
            pytest.skip(f"cannot remount {path.name} read-only: {ro.stderr.strip()}")
        yield
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)


def a_stopped_ward(make_ward, ward_server_factory, folder: str):
    """A ward whose record (in `folder`, with data) was written by a host that has stopped."""
    ward = make_ward(terminals=1)
    database = ward.dir / folder / "ward.db"
    text = ward.config_path.read_text()
    ward.config_path.write_text(text.replace('database = "ward.db"', f'database = "{folder}/ward.db"'))
    ward_server_factory(ward).stop()
    assert database.exists()
    return ward, database


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_read_only_record_file_stops_the_host_with_one_line(make_ward, ward_server_factory):
    ward, database = a_stopped_ward(make_ward, ward_server_factory, "record")
    for side in ("-wal", "-shm"):
        Path(str(database) + side).unlink(missing_ok=True)
    before = snapshot(database.parent)
    with read_only(database):
        done = serve_once(ward.config_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [lines[-1]] and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"wardcall serve: {database}: the record cannot be written: "), lines
    assert "read-only" in lines[0] or "readonly" in lines[0], lines
    after = snapshot(database.parent)
    assert after.get("ward.db") == before["ward.db"]


def test_a_read_only_record_folder_stops_the_host_with_one_line(make_ward, ward_server_factory):
    ward, database = a_stopped_ward(make_ward, ward_server_factory, "record")
    before = snapshot(database.parent)
    with read_only(database.parent):
        done = serve_once(ward.config_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"wardcall serve: {database}: the record cannot be written: "), lines
    assert f"its folder {database.parent} is read-only" in lines[0], lines
    assert snapshot(database.parent) == before
