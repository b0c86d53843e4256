"""Ward.quiet_heartbeat, the terminal session's way for the usual heartbeat (terminal_server.py,
taken as the frame arrives): it must do exactly what frame_received and heartbeat do when those
change nothing to store or show, and nothing at all otherwise. Hand-moved clock, no sockets."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from wardcall.clock import ManualClock
from wardcall.protocol import wardproto as wp
from wardcall.ward import Ward

from tests.host.test_ward import make_config

pytestmark = pytest.mark.timeout(60)

STATUS = st.integers(0, 15)     # presence, cord fault, not configured, device fault


def ward_in(online: bool, status_bits: int, presence: bool) -> tuple[Ward, ManualClock]:
    clock = ManualClock()
    ward = Ward(make_config(), clock)
    ward.terminal_connected("a1", "fw", "sim", 0, "127.0.0.1:1")
    ward.set_consoles(1)
    terminal = ward.terminals["a1"]
    terminal.online, terminal.status_bits = online, status_bits
    if presence:
        ward.presence("a1", True, "")
    clock.advance(7.5)
    return ward, clock


def terminal_state(ward: Ward) -> dict:
    return dataclasses.asdict(ward.terminals["a1"])


@settings(max_examples=200, deadline=None)
@given(online=st.booleans(), status_bits=STATUS, presence=st.booleans(), status=STATUS,
       pending=st.integers(0, 255), uptime=st.integers(0, 2 ** 32 - 1))
def test_a_quiet_heartbeat_is_the_long_way_when_that_changes_nothing(online, status_bits, presence, status, pending, uptime):
    quiet, _ = ward_in(online, status_bits, presence)
    long_way, _ = ward_in(online, status_bits, presence)
    before = terminal_state(quiet)

    fx = long_way.frame_received("a1")
    fx.merge(long_way.heartbeat("a1", status, pending, uptime))
    taken = quiet.quiet_heartbeat("a1", status, pending, uptime)

    # taken exactly when the long way has nothing to store, send or show
    assert taken == (not fx), (taken, fx)
    if taken:
        assert terminal_state(quiet) == terminal_state(long_way)
        assert quiet.terminals["a1"].last_heartbeat is not None
        assert quiet.present == long_way.present
    else:
        assert terminal_state(quiet) == before     # left for the long way: nothing done


def test_a_heartbeat_with_the_presence_bit_is_not_quiet():
    ward, _ = ward_in(True, 0, False)
    assert not ward.quiet_heartbeat("a1", wp.HB_PRESENCE, 0, 1)
    assert not ward.terminals["a1"].presence
