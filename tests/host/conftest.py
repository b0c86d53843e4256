# Makes the host fixtures (tests/fixtures/host.py) available to these tests even before the
# top-level tests/conftest.py lists the plugin; once it does, this import is harmless.
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.fixtures.host import *  # noqa: E402,F401,F403
