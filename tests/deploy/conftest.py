"""Fixtures for the deploy tests: a test firmware tree, a device-config provider, a board.

`board` is a board on socket://127.0.0.1:PORT running the MicroPython unix port (minibridge.py);
the fleet test at the end uses the real emulator, firmware and host instead.
"""
import json
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from wardcall.deploy import paths

sys.path.insert(0, str(Path(__file__).parent))
from minibridge import MiniBoard  # noqa: E402

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

BOOT = """\
import os
try:
    os.stat('/maintenance')
    MAINTENANCE = True
    print('wardcall: maintenance mode')
except OSError:
    MAINTENANCE = False
"""

MAIN = """\
import os
try:
    os.stat('/maintenance')
except OSError:
    f = open('/app-started', 'a')
    f.write('x')
    f.close()
"""


@pytest.fixture
def firmware(tmp_path):
    """A firmware tree: the real firmware/lib modules, a small boot.py and main.py."""
    fw = tmp_path / "firmware"
    (fw / "lib").mkdir(parents=True)
    for src in sorted((paths.FIRMWARE / "lib").glob("*.py")):
        shutil.copy(src, fw / "lib" / src.name)
    (fw / "boot.py").write_text(BOOT)
    (fw / "main.py").write_text(MAIN)
    return fw


@pytest.fixture
def configs():
    """device_config(device) for a small ward: bed-1 ... bed-12 are provisioned."""
    def provider(device):
        from wardcall.deploy.errors import DeployError
        if not device.startswith("bed-"):
            raise DeployError("device %s is not provisioned in ward.toml" % device,
                              code="not-provisioned", fix="wardcall provision --device %s" % device)
        return {"device_id": device, "key": KEY, "ward": "W", "room": "101", "bed": "1",
                "wifi": {"ssid": "ward", "password": "x"}, "host": "127.0.0.1", "port": 7300,
                "discovery_port": 7301, "debug": False}
    return provider


@pytest.fixture
def board(tmp_path):
    b = MiniBoard(tmp_path / "board")
    yield b
    b.close()


@pytest.fixture
def fake_host():
    """GET /api/state listing the devices in `online` as online."""
    online = set()

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"terminals": [{"device_id": d, "online": True} for d in sorted(online)]}).encode()
            self.send_response(200 if self.path == "/api/state" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.online = online
    srv.url = "http://127.0.0.1:%d" % srv.server_address[1]
    yield srv
    srv.shutdown()
    srv.server_close()
