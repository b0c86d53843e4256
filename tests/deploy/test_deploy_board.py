"""`deploy` against a board with the real mpremote: what lands on flash, change detection,
maintenance mode, and each failure with its message."""
import json
import os
import socket
import subprocess
import sys

import pytest

from wardcall.deploy import build
from wardcall.deploy.deploy import deploy
from wardcall.deploy.errors import DeployError

pytestmark = pytest.mark.timeout(120)


def run(board, firmware, configs, device="bed-1", **kw):
    kw.setdefault("wait", False)
    kw.setdefault("board", "emulator")
    return deploy(board.port, device, configs, firmware_dir=firmware, **kw)


def listing(board):
    out = {}
    for root, dirs, files in os.walk(board.flash):
        for f in files:
            p = os.path.join(root, f)
            out["/" + os.path.relpath(p, board.flash)] = p
    return out


def test_first_deploy_puts_mpy_and_py_where_they_belong(board, firmware, configs):
    r = run(board, firmware, configs)
    assert r.ok and r.version.startswith("1.")
    files = listing(board)
    libs = sorted(p for p in files if p.startswith("/lib/"))
    expected = sorted("/lib/%s.mpy" % p.stem for p in (firmware / "lib").glob("*.py")) + ["/lib/board.mpy"]
    assert libs == sorted(expected)
    assert "/boot.py" in files and "/main.py" in files
    assert not any(p.endswith(".py") for p in libs)
    cfg = json.loads(open(files["/config.json"]).read())
    assert cfg["device_id"] == "bed-1" and len(cfg["key"]) == 64
    # maintenance flag gone, and the app ran after the final reset
    assert "/maintenance" not in files
    assert "/app-started" in files
    # the .mpy files are the ones mpy-cross makes, byte for byte
    staged = build.stage("emulator", firmware_dir=firmware)
    for remote, local in staged.items():
        assert build.sha256_file(files[remote]) == build.sha256_file(local), remote
    assert set(r.copied) == set(staged) | {"/config.json"}


def test_second_deploy_copies_nothing(board, firmware, configs):
    run(board, firmware, configs)
    before = {p: os.stat(f).st_mtime_ns for p, f in listing(board).items() if p != "/app-started"}
    r = run(board, firmware, configs)
    assert r.ok and r.copied == [] and r.removed == [] and r.reason == "up to date"
    assert r.unchanged == len(before)
    after = {p: os.stat(f).st_mtime_ns for p, f in listing(board).items() if p != "/app-started"}
    assert after == before
    # no fs cp in any mpremote run of the second deploy, no maintenance flag either
    assert not any(s.startswith("copying") for s in r.steps)


def test_one_changed_module_copies_one_file(board, firmware, configs):
    run(board, firmware, configs)
    (firmware / "lib" / "version.py").write_text('VERSION = "9.9.9"\n')
    r = run(board, firmware, configs)
    assert r.copied == ["/lib/version.mpy"]
    r = run(board, firmware, configs, device="bed-2")
    assert r.copied == ["/config.json"]


def test_never_both_py_and_mpy(board, firmware, configs):
    run(board, firmware, configs, compile=False)
    files = listing(board)
    assert "/lib/version.py" in files and "/lib/version.mpy" not in files
    r = run(board, firmware, configs)
    files = listing(board)
    assert "/lib/version.mpy" in files and "/lib/version.py" not in files
    assert "/lib/version.py" in r.removed
    # a stray boot.mpy would be imported instead of nothing; it goes too
    (board.flash / "boot.mpy").write_bytes(b"M\x06")
    r = run(board, firmware, configs)
    assert r.removed == ["/boot.mpy"] and not (board.flash / "boot.mpy").exists()


def test_mpremote_fs_cp_skips_identical_files(board, tmp_path):
    """Measured with mpremote 1.29: `fs cp` and `fs cp -r` both skip a file whose sha256 on the
    board matches ("Up to date: ..."); --force copies anyway. Deploy compares hashes itself (one
    probe for all files, exact counts, space check, twins) and fs cp's check is a second guard."""
    mp = [sys.executable, "-m", "mpremote", "connect", board.port]
    src = tmp_path / "lib"
    src.mkdir()
    (src / "a.py").write_text("A = 1\n")
    first = subprocess.run(mp + ["fs", "cp", "-r", str(src), ":"], capture_output=True, text=True, timeout=30)
    second = subprocess.run(mp + ["fs", "cp", "-r", str(src), ":"], capture_output=True, text=True, timeout=30)
    plain = subprocess.run(mp + ["fs", "cp", str(src / "a.py"), ":lib/a.py"], capture_output=True, text=True, timeout=30)
    assert first.returncode == second.returncode == plain.returncode == 0
    forced = subprocess.run(mp + ["fs", "cp", "--force", str(src / "a.py"), ":lib/a.py"], capture_output=True, text=True, timeout=30)
    assert "Up to date" not in first.stdout
    assert "Up to date: ./lib/a.py" in second.stdout
    assert "Up to date: lib/a.py" in plain.stdout
    assert forced.returncode == 0 and "Up to date" not in forced.stdout


def test_no_board_on_a_closed_port(firmware, configs):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = "socket://127.0.0.1:%d" % s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(DeployError) as e:
        deploy(port, "bed-1", configs, firmware_dir=firmware, wait=False, timeout=20)
    assert e.value.code == "no-board"
    assert port in str(e.value) and "fix:" in str(e.value)


def test_no_board_on_a_missing_serial_device(firmware, configs, tmp_path):
    port = str(tmp_path / "ttyUSB9")
    with pytest.raises(DeployError) as e:
        deploy(port, "bed-1", configs, firmware_dir=firmware, wait=False, timeout=20)
    assert e.value.code == "no-board" and "does not exist" in str(e.value)


def test_board_busy_while_another_program_holds_it(board, firmware, configs):
    holder = socket.create_connection(("127.0.0.1", int(board.port.rsplit(":", 1)[1])))
    try:
        import time
        time.sleep(0.3)
        with pytest.raises(DeployError) as e:
            deploy(board.port, "bed-1", configs, firmware_dir=firmware, wait=False, timeout=20)
    finally:
        holder.close()
    assert e.value.code in ("busy", "no-repl")
    assert board.port in str(e.value)


def test_device_not_provisioned_touches_nothing(board, firmware, configs):
    with pytest.raises(DeployError) as e:
        run(board, firmware, configs, device="nurse-station-7")
    assert e.value.code == "not-provisioned" and "nurse-station-7" in str(e.value)
    assert listing(board) == {}


def test_wrong_mpy_version(board, firmware, configs):
    with pytest.raises(DeployError) as e:
        run(board, firmware, configs, expect_mpy=5)
    assert e.value.code == "wrong-version"
    assert "v6" in str(e.value) and "v5" in str(e.value) and board.port in str(e.value)
    assert listing(board) == {}


def test_too_old_micropython(board, firmware, configs):
    with pytest.raises(DeployError) as e:
        run(board, firmware, configs, min_version=(9, 0, 0))
    assert e.value.code == "wrong-version" and "9.0.0 or newer" in str(e.value)


def test_not_enough_flash(board, firmware, configs):
    with pytest.raises(DeployError) as e:
        run(board, firmware, configs, min_free=1 << 62)
    assert e.value.code == "no-space" and "bytes free" in str(e.value)
    assert listing(board) == {}


def test_waits_for_online_at_the_host(board, firmware, configs, fake_host):
    fake_host.online.add("bed-1")
    r = run(board, firmware, configs, wait=True, host_url=fake_host.url, online_timeout=5)
    assert r.online


def test_online_timeout_message(board, firmware, configs, fake_host):
    with pytest.raises(DeployError) as e:
        run(board, firmware, configs, wait=True, host_url=fake_host.url, online_timeout=1.5)
    assert e.value.code == "not-online"
    assert "did not come online" in str(e.value) and "does not know bed-1" in str(e.value)
