"""End to end: 10 emulated boards (boards/emulator) with blank flash, the real `wardcall serve`
(tests/fixtures/host.py), and `wardcall fleet deploy` running the real mpremote against all of
them at once; then every terminal must be online at the host."""
import os
import subprocess
import sys
import time

import pytest

# the project's own fixtures: an import error here is a failure, never a skip
from tests.fixtures import boards as fixtures_boards
from tests.fixtures import host as fixtures_host
from wardcall.deploy.online import wait_online

N = 10


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_fleet_deploy_ten_boards_then_online(tmp_path, make_ward, ward_server_factory):
    ward = make_ward(terminals=N)
    server = ward_server_factory(ward)
    fleet = fixtures_boards.Fleet.start(tmp_path / "fleet")
    try:
        boards = [fleet.add_board("b%d" % i, flash_dir=tmp_path / "flash" / ("b%d" % i))
                  for i in range(N)]
        plan = tmp_path / "plan.csv"
        lines = ["port,device,board"]
        for b, dev in zip(boards, ward.devices):
            lines.append("%s,%s,emulator" % (b.repl_url, dev["device_id"]))
        plan.write_text("\n".join(lines) + "\n")
        env = dict(os.environ, WARDCALL_HOST_PASSWORD=fixtures_host.NURSE[1])
        argv = [sys.executable, "-m", "wardcall.deploy.cli", "fleet", "deploy",
                "--config", str(ward.config_path), "--plan", str(plan), "--workers", str(N),
                "--wifi-ssid", "ward-test", "--wifi-password", "not-a-secret",
                "--terminal-host", "127.0.0.1", "--host-user", fixtures_host.NURSE[0],
                "--online-timeout", "120", "--timeout", "240"]
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=560, env=env)
        took = time.monotonic() - started
        print(proc.stdout)
        print(proc.stderr[-3000:])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "%d of %d boards deployed, 0 failed" % (N, N) in proc.stdout
        # online now, or again within seconds: with heartbeat_ms=200 a board starved of CPU (2 cores,
        # other suites running) can miss 3 heartbeats and show offline for a moment (seen once)
        for dev in ward.devices:
            assert wait_online(server.api_url, dev["device_id"], timeout=20, interval=0.2,
                               user=fixtures_host.NURSE[0], password=fixtures_host.NURSE[1])
        print("fleet deploy of %d boards: %.1f s" % (N, took))

        # a second fleet deploy copies nothing and all come back online
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=560, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.count("up to date") >= N
    finally:
        fleet.stop()
