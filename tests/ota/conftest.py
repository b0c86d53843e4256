"""Helpers for the over-the-air update tests: firmware copies with a changed version or a bug, and
a ward whose terminals hold the ward's update key (as `wardcall deploy` installs it)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.ward import Rig, SyncApi
from wardcall.config import load_config
from wardcall.demo import firmware_files
from wardcall.protocol import otaproto

from . import signed

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"


@pytest.fixture
def firmware_copy(tmp_path):
    """firmware_copy(version, patches={lib path: (old, new) | text}) -> folder: a copy of firmware/
    with lib/version.py saying `version` and the given changes."""
    n = [0]

    def make(version, patches=None):
        n[0] += 1
        dst = tmp_path / ("fw%d" % n[0])
        shutil.copytree(FIRMWARE, dst, ignore=shutil.ignore_patterns("__pycache__"))
        (dst / "lib" / "version.py").write_text('VERSION = "%s"\n' % version)
        for rel, change in (patches or {}).items():
            p = dst / rel
            if isinstance(change, tuple):
                text = p.read_text()
                assert text.count(change[0]) == 1, (rel, change[0])
                p.write_text(text.replace(change[0], change[1]))
            else:
                p.write_text(change)
        return dst

    return make


@pytest.fixture
def ota_ward(make_ward, ward_server_factory, fleet, tmp_path):
    """ota_ward(n=1, keygen="test"|"cli", board_key=True) -> Rig: a started `wardcall serve` whose
    ward has an update key pair ([ota] defaults beside ward.toml: the test key, or one made by the
    real `wardcall update keygen`), and n emulated boards running the real firmware with the
    ward's public key installed (board_key=False: without it), all online, each with the emulator's
    default heap unless heapsize says otherwise (e.g. "100wK"). rig.ward_config is the loaded ward
    configuration."""
    rigs = []

    def make(n=1, keygen="test", board_key=True, heartbeat_ms=200, heapsize=None):
        ward = make_ward(terminals=n, heartbeat_ms=heartbeat_ms)
        config = load_config(ward.config_path)
        if keygen == "cli":
            proc = subprocess.run([sys.executable, "-m", "wardcall.cli", "update", "keygen", "--config",
                                   str(ward.config_path)], capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        else:
            signed.write_key_files(config.ota.private_key, config.ota.public_key)
        from wardcall.ota import signing
        key_text = signing.board_key_text(signing.load_public_key(config.ota.public_key))
        server = ward_server_factory(ward)
        boards = []
        for dev in ward.devices:
            cfg = dict(dev, host="127.0.0.1")
            files = firmware_files(cfg)
            if board_key:
                files[otaproto.KEY_FILE] = key_text
            boards.append(fleet.add_board(dev["device_id"], flash_dir=tmp_path / "flash" / dev["device_id"],
                                          files=files, heapsize=heapsize))
        rig = Rig(ward, server, fleet, boards, SyncApi(ward.api_url))
        rigs.append(rig)
        rig.ward_config = config
        rig.wait_online(timeout=20.0 + n / 10)
        return rig

    yield make
    for rig in rigs:
        rig.api.close()
