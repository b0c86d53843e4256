"""Shared pytest set-up: the fixture plugins every test package can use."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so that tests import boards.emulator and tests.fixtures

# the test wards' CA, trusted by this process before anything imports aiohttp (tests/support/testca.py)
from tests.support.testca import shared_ca  # noqa: E402

shared_ca()

pytest_plugins = ["tests.fixtures.host", "tests.fixtures.boards", "tests.fixtures.ward"]
