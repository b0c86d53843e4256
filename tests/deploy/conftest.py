"""Fixtures for the deploy tests: the real firmware, a device-config provider, emulated boards.

Boards are real emulated ESP32s (boards/emulator, fixtures in tests/fixtures/boards.py) on one
supervisor per module (`module_fleet`); every test gets its own board with its own flash folder,
so nothing a test writes reaches another. A first deploy is costly (mpy-cross, ~25 files), so it
runs once per module (`first_deploy`); tests that start from a deployed board get a new board
whose flash is a copy of that one (`deployed_board`).
"""
import shutil
from itertools import count

import pytest

from wardcall import checkout
from wardcall.deploy import build
from wardcall.deploy.deploy import DeployRequest, deploy

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
READY = "wardcall: boot: ready"          # firmware/lib/app.py, once the app runs
MAINTENANCE = "MAINTENANCE MODE (flag file /maintenance present)"   # firmware/lib/maint.py

_names = count(1)


def copy_firmware(dest):
    """The real firmware (boot.py, main.py with maintenance mode, lib/) as it is now."""
    shutil.copytree(checkout.FIRMWARE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    """The real firmware, copied once per module (so the module sees one consistent tree and
    mpy-cross runs once for it: build.stage caches by source). Tests must not change it."""
    return copy_firmware(tmp_path_factory.mktemp("fw") / "firmware")


@pytest.fixture
def own_firmware(tmp_path):
    """A copy of the real firmware that the test may change."""
    return copy_firmware(tmp_path / "firmware")


@pytest.fixture(scope="module")
def configs():
    """device_config(device) for a small ward: bed-1 ... bed-12 are provisioned (TLS trusting the
    test wards' CA, as provision writes it)."""
    from tests.support.testca import terminal_tls

    def provider(device):
        from wardcall.deploy.errors import DeployError
        if not device.startswith("bed-"):
            raise DeployError("device %s is not provisioned in ward.toml" % device,
                              code="not-provisioned", fix="wardcall provision --device %s" % device)
        return {"device_id": device, "key": KEY, "ward": "W", "room": "101", "bed": "1",
                "wifi": {"ssid": "ward", "password": "x"}, "host": "127.0.0.1", "port": 7300,
                "discovery_port": 7301, "debug": False, "tls": terminal_tls()}
    return provider


def add_board(fleet, flash_dir, template=None):
    """A new board on `fleet`, powered on: blank (MicroPython and the emulator's lib/board.py,
    as `make_flash` makes it) or with a copy of `template` as its flash."""
    b = fleet.add_board("d%d" % next(_names), flash_dir=flash_dir, boot=False)
    if template is not None:
        shutil.rmtree(flash_dir)
        shutil.copytree(template, flash_dir)
    b.power(True)
    return b


@pytest.fixture
def board(module_fleet, tmp_path):
    """A blank board of its own, on the module's fleet."""
    b = add_board(module_fleet, tmp_path / "flash")
    yield b
    module_fleet.remove_board(b.name)


class FirstDeploy:
    """A blank board, deployed once (bed-1, real firmware), and what a user would look at."""

    def __init__(self, board, result, console, staged):
        self.board, self.result, self.console, self.staged = board, result, console, staged


@pytest.fixture(scope="module")
def first_deploy(module_fleet, tmp_path_factory, firmware, configs):
    flash = tmp_path_factory.mktemp("first") / "flash"
    b = add_board(module_fleet, flash)
    mark = b.console_mark()
    r = deploy(DeployRequest(b.repl_url, "bed-1", configs, firmware_dir=firmware, wait=False, board="emulator"))
    # the app starts after the final reset (nothing ran before: a blank board has no main.py)
    console = b.wait_console(READY, timeout=30, since=mark)
    # off, so that its flash is a quiet template for deployed_board (the app writes bootcount)
    b.power(False)
    return FirstDeploy(b, r, console, build.stage("emulator", firmware_dir=firmware))


@pytest.fixture
def deployed_board(module_fleet, first_deploy, tmp_path):
    """A board of its own whose flash is what the first deploy left (bed-1, real firmware)."""
    b = add_board(module_fleet, tmp_path / "flash", template=first_deploy.board.flash_dir)
    yield b
    module_fleet.remove_board(b.name)
