"""Shared pytest set-up: the fixture plugins every test package can use."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so that tests import boards.emulator and tests.fixtures

pytest_plugins = ["tests.fixtures.host", "tests.fixtures.boards", "tests.fixtures.ward"]
