"""Over-the-air updates end to end: emulated boards running the real firmware (the ward's update
key installed), online at a real `wardcall serve`, updated through the server's API with packages
signed by the ward's private key (`wardcall update` signs, then is a client of that API)."""
import json
import os
import subprocess
import sys
import time

import pytest

from tests.fixtures.host import TECH
from wardcall.ota import build_package, run_update
from wardcall import ota as host_ota
from wardcall.ota.cli import sign_for_update

pytestmark = [pytest.mark.slow]


def signed_build(rig, firmware):
    """The package `wardcall update` would send: built (.mpy), signed with the ward's key, a new serial."""
    return sign_for_update(rig.ward_config, build_package(firmware, compile=True))


def update(rig, package, devices=None, **kw):
    import io
    out = io.StringIO()
    job = run_update(rig.ward.api_url, TECH[0], TECH[1], package, devices or rig.devices, out=out,
                     poll_s=0.1, **kw)
    return job, out.getvalue()


def result(job, device):
    return next(d for d in job["devices"] if d["device"] == device)


@pytest.mark.timeout(120)
def test_update_reaches_an_online_terminal(ota_ward, firmware_copy):
    rig = ota_ward(n=1, keygen="cli")       # the ward's key pair made by `wardcall update keygen`
    dev = rig.devices[0]
    board = rig.board(0)
    assert rig.terminal(dev)["firmware"] == "0.1.0"
    # the real command line, as an engineer types it
    env = dict(os.environ, WARDCALL_HOST_PASSWORD=TECH[1])
    proc = subprocess.run([sys.executable, "-m", "wardcall.cli", "update", "--config", str(rig.ward.config_path),
                           "--host-user", TECH[0], "--device", dev, "--firmware", str(firmware_copy("0.2.0-ota")),
                           "--trial-s", "20"], env=env, capture_output=True, text=True, timeout=90)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out + "\n--- console ---\n" + board.console()[-6000:]
    last = out.strip().splitlines()[-1].split()
    assert last[:4] == [dev, "ok", "0.1.0", "0.2.0-ota"], out
    assert rig.terminal(dev)["firmware"] == "0.2.0-ota"
    assert rig.terminal(dev)["connected"]
    console = board.console()
    assert "firmware 0.2.0-ota confirmed" in console
    # shipped as .mpy (`wardcall update`'s default): the version string is in the compiled module
    assert b"0.2.0-ota" in (board.flash_dir / "lib" / "version.mpy").read_bytes()
    assert not (board.flash_dir / "lib" / "version.py").exists()
    assert not (board.flash_dir / ".ota" / "old").exists()
    assert "ok" in out and "0.2.0-ota" in out
    assert "signature verified" in console and "signature and files verified" in console
    # the terminal now holds the package's serial: the one the command line signed with
    serial = int(out.split(" serial ", 1)[1].split()[0])
    assert json.loads((board.flash_dir / ".ota" / "installed.json").read_text())["serial"] == serial
    assert not (rig.ward_config.ota.private_key.stat().st_mode & 0o077)


def event_kinds(rig, kind):
    import sqlite3
    conn = sqlite3.connect(rig.ward.database)
    try:
        return [r for r in conn.execute("SELECT device, data FROM events WHERE kind = ?", (kind,))]
    finally:
        conn.close()


@pytest.mark.timeout(120)
def test_update_that_crashes_at_start_rolls_back(ota_ward, firmware_copy):
    rig = ota_ward(n=1)
    dev = rig.devices[0]
    board = rig.board(0)
    lib_before = {p.name: p.read_bytes() for p in (board.flash_dir / "lib").iterdir() if p.is_file()}
    # a long reason: the status that reports it must still reach the host whole (it is JSON)
    broken = firmware_copy("0.2.0-broken", {"lib/app.py": (
        "import gc\n", "import gc\nraise RuntimeError('broken on purpose: ' + 'x' * 150)\n")})
    job, out = update(rig, signed_build(rig, broken), trial_s=30)
    r = result(job, dev)
    assert r["state"] == "rolled_back", out + board.console()[-4000:]
    assert "crashed at start" in r["detail"] and "broken on purpose" in r["detail"]
    assert r["version"] == "0.1.0"
    assert "ROLLED BACK" in out
    rig.wait_online([dev])
    assert rig.terminal(dev)["firmware"] == "0.1.0"
    # the deployed (.mpy) firmware is back exactly, and none of the update's .py files remain
    assert {p.name: p.read_bytes() for p in (board.flash_dir / "lib").iterdir() if p.is_file()} == lib_before
    console = board.console()
    assert "ROLLED BACK from 0.2.0-broken to 0.1.0" in console
    # the record keeps the outcome for `wardcall log`
    rows = event_kinds(rig, "ota_update")
    assert rows and rows[-1][0] == dev and '"rolled_back"' in rows[-1][1]


@pytest.mark.timeout(120)
def test_update_that_never_comes_online_rolls_back_after_its_trial(ota_ward, firmware_copy):
    rig = ota_ward(n=1)
    dev = rig.devices[0]
    board = rig.board(0)
    # connects to the wrong port: runs, but never reaches the host
    lost = firmware_copy("0.2.0-lost", {"lib/link.py": (
        "established = await self._session(self._host[0], self._host[1], alive)",
        "established = await self._session(self._host[0], self._host[1] + 1, alive)")})
    t0 = time.monotonic()
    job, out = update(rig, signed_build(rig, lost), trial_s=6)
    r = result(job, dev)
    assert r["state"] == "rolled_back", out + board.console()[-4000:]
    assert "not online at the host within 6 s" in r["detail"]
    assert time.monotonic() - t0 >= 6
    assert rig.terminal(dev)["firmware"] == "0.1.0"
    assert "firmware 0.2.0-lost on board" in board.console()


@pytest.mark.timeout(120)
def test_call_pressed_during_a_transfer_is_delivered(ota_ward, firmware_copy):
    rig = ota_ward(n=1)
    dev = rig.devices[0]
    board = rig.board(0)
    board.fault(delay_ms=15)            # a slower radio: the transfer takes a few seconds
    pkg = signed_build(rig, firmware_copy("0.2.0-call"))
    client = host_ota.UpdateClient(rig.ward.api_url, *TECH)
    client.login()
    job = client.start(pkg, [dev], 20, 1, False, False)
    first = rig.wait(lambda: (lambda d: d if d["sent"] > 0 or d["state"] not in ("queued", "sending") else None)(
        client.job(job["job"])["devices"][0]), 20, "the transfer under way")
    assert first["state"] == "sending", first
    t0 = time.monotonic()
    board.tap("call", ms=120)
    calls = rig.wait(lambda: rig.calls(dev), 5, "the call at the host")
    latency = time.monotonic() - t0
    during = client.job(job["job"])["devices"][0]
    board.fault(delay_ms=0)
    assert during["state"] == "sending" and during["sent"] < during["total"], during
    assert latency < 1.5, latency
    assert calls[0]["kind"] == 4      # wardproto.PATIENT: the call button
    final = rig.wait(lambda: (lambda j: j if j["done"] else None)(client.job(job["job"])), 60, "the update done")
    assert final["devices"][0]["state"] == "ok", final
    assert rig.terminal(dev)["firmware"] == "0.2.0-call"
    assert rig.calls(dev), "the open call survived the update's reboot"


@pytest.mark.timeout(120)
def test_transfer_resumes_after_the_session_drops(ota_ward, firmware_copy):
    rig = ota_ward(n=1)
    dev = rig.devices[0]
    board = rig.board(0)
    board.fault(delay_ms=15)
    pkg = signed_build(rig, firmware_copy("0.2.0-resume"))
    client = host_ota.UpdateClient(rig.ward.api_url, *TECH)
    client.login()
    job = client.start(pkg, [dev], 20, 1, False, False)
    rig.wait(lambda: client.job(job["job"])["devices"][0]["sent"] > pkg.size // 4, 20, "a quarter sent")
    board.wifi(False)
    rig.wait_online([dev], online=False)
    board.fault(delay_ms=0)
    board.wifi(True)
    final = rig.wait(lambda: (lambda j: j if j["done"] else None)(client.job(job["job"])), 60, "the update done")
    d = final["devices"][0]
    assert d["state"] == "ok", (final, board.console()[-3000:])
    assert d["resumes"] >= 1
    assert "resuming update 0.2.0-resume at file" in board.console()
    assert rig.terminal(dev)["firmware"] == "0.2.0-resume"
