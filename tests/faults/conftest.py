"""Fault-injection tests: the real host (`wardcall serve`), emulated boards running the real
firmware, simulated terminals, and a fault-injecting TCP relay (faultproxy.py). The host, board
and ward fixtures come from tests/fixtures (registered in tests/conftest.py)."""
import pytest

from tests.faults.faultproxy import FaultProxy


@pytest.fixture
def fault_proxy():
    proxy = FaultProxy()
    try:
        yield proxy
    finally:
        proxy.close()
