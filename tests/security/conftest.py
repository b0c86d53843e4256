"""Hostile-input tests: the real host (`wardcall serve`), simulated terminals speaking the real
protocol, emulated boards running the real firmware, and raw sockets.

The fixtures come from tests/fixtures (until tests/conftest.py lists the plugin, they are imported
here, as tests/deploy/conftest.py does)."""
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import pytest  # noqa: E402

from tests.fixtures.boards import fleet  # noqa: E402,F401
from tests.fixtures.host import make_ward, ward_server, ward_server_factory  # noqa: E402,F401
from tests.fixtures.ward import make_terminals  # noqa: E402,F401
from tests.faults.faultproxy import FaultProxy  # noqa: E402


@pytest.fixture
def fault_proxy():
    proxy = FaultProxy()
    try:
        yield proxy
    finally:
        proxy.close()
