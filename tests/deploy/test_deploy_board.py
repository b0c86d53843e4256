"""`deploy` against emulated ESP32 boards (boards/emulator) with the real mpremote and the real
firmware: what lands on flash, change detection, maintenance mode, and each failure with its
message; the wait for the terminal online at the real `wardcall serve` (tests/fixtures/host.py).
Fixtures in conftest.py (one fleet per module, one board per test)."""
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from wardcall.deploy import build
from wardcall.deploy.board import port_state
from wardcall.deploy.deploy import DeployRequest, deploy
from tests.support.waiting import wait_until
from wardcall.deploy.errors import DeployError
from wardcall.deploy.ward_bridge import device_config, load_ward
from wardcall.host_api import HostApi
from tests.fixtures.host import LOOPBACK, NURSE

from .conftest import MAINTENANCE, READY

MPREMOTE = [sys.executable, "-m", "mpremote"]


def run(board, firmware, configs, device="bed-1", **kw):
    kw.setdefault("wait", False)
    kw.setdefault("board", "emulator")
    return deploy(DeployRequest(board.repl_url, device, configs, firmware_dir=firmware, **kw))


def listing(board):
    out = {}
    for root, dirs, files in os.walk(board.flash_dir):
        for f in files:
            p = os.path.join(root, f)
            out["/" + os.path.relpath(p, board.flash_dir)] = p
    return out


def snapshot(board):
    """{board path: sha256} of everything on the flash."""
    return {p: hashlib.sha256(open(f, "rb").read()).hexdigest() for p, f in listing(board).items()}


@pytest.mark.timeout(120)
def test_first_deploy_puts_mpy_and_py_where_they_belong(first_deploy, firmware):
    b, r = first_deploy.board, first_deploy.result
    assert r.ok and r.version.startswith("1.")
    files = listing(b)
    libs = sorted(p for p in files if p.startswith("/lib/"))
    expected = sorted("/lib/%s.mpy" % p.stem for p in (firmware / "lib").glob("*.py")) + ["/lib/board.mpy"]
    assert libs == sorted(expected)
    assert "/boot.py" in files and "/main.py" in files
    assert not any(p.endswith(".py") for p in libs)
    # the emulator's blank board has the pin map as lib/board.py: its twin board.mpy replaces it
    assert r.removed == ["/lib/board.py"]
    cfg = json.loads(open(files["/config.json"]).read())
    assert cfg["device_id"] == "bed-1" and len(cfg["key"]) == 64
    # the firmware booted into maintenance mode for the copy; the flag is gone, and after the
    # final reset the app ran with this config (its console, as `wardcall monitor` shows it)
    assert "/maintenance" not in files
    assert MAINTENANCE in first_deploy.console
    after_reset = first_deploy.console.rsplit("rst:", 1)[-1]
    assert READY in after_reset and "MAINTENANCE MODE" not in after_reset
    assert "NOT CONFIGURED" not in after_reset
    # the .mpy files are the ones mpy-cross makes, byte for byte
    staged = first_deploy.staged
    for remote, local in staged.items():
        assert build.sha256_file(files[remote]) == build.sha256_file(local), remote
    assert set(r.copied) == set(staged) | {"/config.json"}


@pytest.mark.timeout(120)
def test_second_deploy_copies_nothing(deployed_board, firmware, configs, first_deploy):
    b = deployed_board
    deployed = set(first_deploy.result.copied)
    before = {p: os.stat(f).st_mtime_ns for p, f in listing(b).items() if p in deployed}
    assert len(before) == len(deployed)
    r = run(b, firmware, configs)
    assert r.ok and r.copied == [] and r.removed == [] and r.reason == "up to date"
    assert r.unchanged == len(before)
    after = {p: os.stat(f).st_mtime_ns for p, f in listing(b).items() if p in deployed}
    assert after == before
    # nothing copied in any mpremote run of the second deploy, no maintenance flag left
    assert not any(s.startswith("copying") for s in r.steps)
    assert "/maintenance" not in listing(b)


@pytest.mark.timeout(120)
def test_one_changed_module_copies_one_file(deployed_board, own_firmware, configs):
    b = deployed_board
    version = own_firmware / "lib" / "version.py"
    version.write_text(re.sub(r'VERSION = "[^"]*"', 'VERSION = "9.9.9"', version.read_text()))
    mark = b.console_mark()
    r = run(b, own_firmware, configs)
    assert r.copied == ["/lib/version.mpy"] and r.removed == []
    assert "9.9.9" in b.wait_console(READY, timeout=30, since=mark)   # the app's banner
    r = run(b, own_firmware, configs, device="bed-2")
    assert r.copied == ["/config.json"]
    assert json.loads((b.flash_dir / "config.json").read_text())["device_id"] == "bed-2"


@pytest.mark.timeout(120)
def test_never_both_py_and_mpy(board, firmware, configs):
    run(board, firmware, configs, compile=False)
    files = listing(board)
    assert "/lib/version.py" in files and "/lib/version.mpy" not in files
    r = run(board, firmware, configs)
    files = listing(board)
    assert "/lib/version.mpy" in files and "/lib/version.py" not in files
    assert "/lib/version.py" in r.removed
    assert not any(p[:-3] + ".mpy" in files for p in files if p.endswith(".py"))
    # a stray boot.mpy would be imported instead of nothing; it goes too (a removal-only deploy)
    (board.flash_dir / "boot.mpy").write_bytes(b"M\x06")
    r = run(board, firmware, configs)
    assert r.copied == [] and r.removed == ["/boot.mpy"]
    assert not (board.flash_dir / "boot.mpy").exists()


@pytest.mark.timeout(60)
def test_mpremote_fs_cp_skips_identical_files(board, tmp_path):
    """Measured with mpremote 1.29: `fs cp` and `fs cp -r` both skip a file whose sha256 on the
    board matches ("Up to date: ..."); --force copies anyway. Deploy does not use fs cp (it sends
    256 bytes per round trip; deploy writes base64 pieces itself and compares hashes before and
    after), but a hand recovery with `mpremote fs cp` relies on this."""
    mp = MPREMOTE + ["connect", board.repl_url]
    src = tmp_path / "lib"
    src.mkdir()
    (src / "a.py").write_text("A = 1\n")
    first = subprocess.run(mp + ["fs", "cp", "-r", str(src), ":"], capture_output=True, text=True, timeout=30)
    second = subprocess.run(mp + ["fs", "cp", "-r", str(src), ":"], capture_output=True, text=True, timeout=30)
    plain = subprocess.run(mp + ["fs", "cp", str(src / "a.py"), ":lib/a.py"], capture_output=True, text=True, timeout=30)
    assert first.returncode == second.returncode == plain.returncode == 0, (first, second, plain)
    forced = subprocess.run(mp + ["fs", "cp", "--force", str(src / "a.py"), ":lib/a.py"], capture_output=True, text=True, timeout=30)
    assert "Up to date" not in first.stdout
    assert "Up to date: ./lib/a.py" in second.stdout
    assert "Up to date: lib/a.py" in plain.stdout
    assert forced.returncode == 0 and "Up to date" not in forced.stdout
    assert (board.flash_dir / "lib" / "a.py").read_text() == "A = 1\n"


@pytest.mark.timeout(60)
def test_no_board_on_a_closed_port(firmware, configs):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = "socket://127.0.0.1:%d" % s.getsockname()[1]
    s.close()  # nothing listens there now
    started = time.monotonic()
    with pytest.raises(DeployError) as e:
        deploy(DeployRequest(port, "bed-1", configs, firmware_dir=firmware, wait=False, timeout=20))
    assert e.value.code == "no-board"
    assert port in str(e.value) and "fix:" in str(e.value)
    assert time.monotonic() - started < 10   # no retries: nothing will appear there


@pytest.mark.timeout(60)
def test_no_board_on_a_missing_serial_device(firmware, configs, tmp_path):
    port = str(tmp_path / "ttyUSB9")
    with pytest.raises(DeployError) as e:
        deploy(DeployRequest(port, "bed-1", configs, firmware_dir=firmware, wait=False, timeout=20))
    assert e.value.code == "no-board" and "does not exist" in str(e.value)
    assert port in str(e.value)


@pytest.mark.timeout(90)
def test_board_busy_while_another_mpremote_holds_it(deployed_board, firmware, configs):
    """Busy = another program has the board's serial port open. mpremote (and `wardcall
    monitor`) lock a serial device exclusively, so a second one cannot open it. The emulated
    board's pty behaves as a USB serial port here; its socket:// REPL port instead hands the
    board to the newest connection (the older one is dropped), so busy is tested on the pty."""
    b = deployed_board
    pty = b.pty
    assert pty and port_state(pty) is None
    holder = subprocess.Popen(
        MPREMOTE + ["connect", pty, "exec", "import time\nwhile True:\n time.sleep_ms(50)"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def busy():
            assert holder.poll() is None, holder.stderr.read()
            return port_state(pty) == "busy"
        wait_until(busy, 20, "the holder opening %s" % pty)
        before = snapshot(b)
        with pytest.raises(DeployError) as e:
            deploy(DeployRequest(pty, "bed-1", configs, firmware_dir=firmware, wait=False, timeout=20))
    finally:
        holder.kill()
        holder.wait(10)
        holder.stderr.close()
    assert e.value.code == "busy"
    assert pty in str(e.value) and "another program holds the port" in str(e.value)
    assert "close other programs" in str(e.value)
    assert snapshot(b) == before
    # the holder gone, the same deploy on the same port goes through
    r = deploy(DeployRequest(pty, "bed-1", configs, firmware_dir=firmware, wait=False, board="emulator",
                             timeout=30))
    assert r.ok and r.reason == "up to date"


@pytest.mark.timeout(60)
def test_device_not_provisioned_touches_nothing(board, firmware, configs):
    before = snapshot(board)
    with pytest.raises(DeployError) as e:
        run(board, firmware, configs, device="nurse-station-7")
    assert e.value.code == "not-provisioned" and "nurse-station-7" in str(e.value)
    assert snapshot(board) == before


@pytest.mark.timeout(60)
def test_wrong_mpy_version(board, firmware, configs):
    before = snapshot(board)
    with pytest.raises(DeployError) as e:
        run(board, firmware, configs, expect_mpy=5)
    assert e.value.code == "wrong-version"
    assert "v6" in str(e.value) and "v5" in str(e.value) and board.repl_url in str(e.value)
    assert snapshot(board) == before   # the maintenance flag came and went


@pytest.mark.timeout(60)
def test_too_old_micropython(board, firmware, configs):
    before = snapshot(board)
    with pytest.raises(DeployError) as e:
        run(board, firmware, configs, min_version=(9, 0, 0))
    assert e.value.code == "wrong-version" and "9.0.0 or newer" in str(e.value)
    assert snapshot(board) == before


@pytest.mark.timeout(60)
def test_not_enough_flash(board, firmware, configs):
    before = snapshot(board)
    with pytest.raises(DeployError) as e:
        run(board, firmware, configs, min_free=1 << 62)
    assert e.value.code == "no-space" and "bytes free" in str(e.value)
    assert snapshot(board) == before


def state(server):
    """The host's state, read once, as a console (the nurse)."""
    api = HostApi(server.api_url, *NURSE)
    api.login()
    return api.get("/api/state")


def host_view(server, device):
    return next((t for t in state(server)["terminals"] if t["device"] == device), None)


@pytest.mark.timeout(150)
def test_waits_for_online_at_the_host(deployed_board, firmware, make_ward, ward_server_factory):
    """The real `wardcall serve`, a really provisioned device: the board gets that device's config
    (its key, the host on loopback, the ward's terminal port) and comes online. The host starts
    only once deploy is waiting for it, so deploy can only say "online" after the host saw it."""
    ward = make_ward(terminals=1, heartbeat_ms=1000)
    device = ward.devices[0]["device_id"]
    config = load_ward(ward.config_path)

    def provider(d):
        return device_config(config, d, wifi_ssid="ward-test", wifi_password="not-a-secret", host=LOOPBACK)

    waiting = threading.Event()
    returned = []

    def log(line):
        if "waiting for %s online" % device in line:
            waiting.set()

    def job():
        r = deploy(DeployRequest(deployed_board.repl_url, device, provider, firmware_dir=firmware, board="emulator",
                                 host_url=ward.api_url, host_user=NURSE[0], host_password=NURSE[1],
                                 online_timeout=90), log=log)
        returned.append(time.monotonic())
        return r

    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(job)
        assert waiting.wait(60) or done.result(0), "deploy never got to waiting for the host"
        host_starting = time.monotonic()
        server = ward_server_factory(ward)
        r = done.result(120)
    assert r.ok and r.online and r.steps[-1] == "online"
    assert r.copied == ["/config.json"]
    assert returned[0] > host_starting       # deploy waited for the host (unreachable at first)
    # at the moment deploy returned (no waiting here) the console shows the terminal online
    seen = host_view(server, device)
    assert seen["status"] in ("online", "fault") and seen["connected"], seen
    assert seen["board"] == "emulator"


@pytest.mark.timeout(90)
def test_online_timeout_message(deployed_board, firmware, configs, make_ward, ward_server_factory):
    """A device the host does not know: the board really tries (the host's port, the host on
    loopback) and is refused; deploy stops after --online-timeout, naming the device and the port."""
    ward = make_ward(terminals=1, heartbeat_ms=1000)
    server = ward_server_factory(ward)

    def provider(d):
        return dict(configs(d), host=LOOPBACK, port=ward.terminal_port, discovery_port=ward.discovery_port)

    started = time.monotonic()
    with pytest.raises(DeployError) as e:
        run(deployed_board, firmware, provider, wait=True, host_url=server.api_url, host_user=NURSE[0],
            host_password=NURSE[1], online_timeout=1.5)
    assert e.value.code == "not-online"
    assert "did not come online" in str(e.value) and "does not know bed-1" in str(e.value)
    assert "within 2 s" in str(e.value) and deployed_board.repl_url in str(e.value)
    assert time.monotonic() - started < 60
    # the board did reach the host, which refused it: the console shows the attempt
    def refused():
        return [a for a in state(server)["alarms"]
                if a["kind"] == "device_trying_to_connect" and a.get("claimed_device") == "bed-1"]
    alarm = wait_until(refused, 30, "the host refusing bed-1")[0]
    assert alarm["reason"] == "unknown device"
    assert host_view(server, "bed-1") is None
