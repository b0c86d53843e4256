"""Helpers for the firmware's own tests: run firmware code under the real MicroPython unix port
(.venv/bin/micropython) with the test doubles in shims/, in a fresh flash directory."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "firmware" / "lib"
SHIMS = Path(__file__).resolve().parent / "shims"
BOARD = ROOT / "boards" / "emulator"       # its board.py: the same pin map as on the emulator
EMU_SHIMS = BOARD / "shims"                 # the virtual MFRC522 the test double's SPI carries
DRIVE = Path(__file__).resolve().parent / "mp_drive.py"
MICROPYTHON = Path(sys.executable).parent / "micropython"
if not MICROPYTHON.exists():
    MICROPYTHON = ROOT / ".venv" / "bin" / "micropython"

KEY = "5a" * 32


def env():
    return dict(os.environ, MICROPYPATH=".frozen:%s:%s:%s" % (SHIMS, LIB, BOARD), WC_EMU_SHIMS=str(EMU_SHIMS))


def config(port=7300, discovery_port=7301, host="127.0.0.1", device_id="bed-101-1", **extra):
    """A terminal's config.json; TLS trusting the test CA, as FakeHost serves it."""
    from tests.support.testca import terminal_tls
    cfg = {"device_id": device_id, "key": KEY, "ward": "W1", "room": "101", "bed": "1",
           "wifi": {"ssid": "ward", "password": "secret"}, "host": host, "port": port,
           "discovery_port": discovery_port, "tls": terminal_tls()}
    cfg.update(extra)
    return cfg


def write_config(flash, cfg):
    (Path(flash) / "config.json").write_text(json.dumps(cfg))


def run_code(code, flash, timeout=30, heap=None):
    """Run MicroPython source in flash (the working directory); returns (rc, stdout+stderr)."""
    args = [str(MICROPYTHON)]
    if heap:
        args += ["-X", "heapsize=%s" % heap]
    p = subprocess.run(args + ["-c", code], cwd=flash, env=env(), capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def run_scenario(scenario, flash, timeout_ms=20000, heap=None):
    """Run the application with a scenario (MicroPython source defining async scenario(app))."""
    path = Path(flash) / "_scenario.py"
    path.write_text(scenario)
    args = [str(MICROPYTHON)]
    if heap:
        args += ["-X", "heapsize=%s" % heap]
    p = subprocess.run(args + [str(DRIVE), str(path), str(timeout_ms)], cwd=flash, env=env(),
                       capture_output=True, text=True, timeout=timeout_ms / 1000 + 20)
    out = p.stdout + p.stderr
    return out


def start_scenario(scenario, flash, timeout_ms=20000):
    """Like run_scenario, but returns the running process (finish it with finish())."""
    path = Path(flash) / "_scenario.py"
    path.write_text(scenario)
    return subprocess.Popen([str(MICROPYTHON), str(DRIVE), str(path), str(timeout_ms)], cwd=flash,
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, timeout=60):
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def assert_passed(out):
    assert "SCENARIO PASSED" in out, out
    assert "Traceback" not in out, out
