# The board fixtures for these tests even before tests/conftest.py lists the plugin
# ("tests.fixtures.boards"); once it does, this import is harmless.
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.fixtures.boards import fleet, make_board, module_fleet  # noqa: E402,F401
