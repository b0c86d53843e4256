"""A technician deploys a replacement board with the id of a board that is still plugged in: two
emulated boards running the real firmware, with the same config.json (device id and key) and
fresh boot counters, so their first calls have the same call id. Both calls reach the console,
each board's lamp follows its own call, and the console says two boards claim the bed."""
from __future__ import annotations

import pytest

from tests.support.waiting import wait_until
from wardcall.demo import firmware_files

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_a_replacement_beside_the_old_board_loses_no_call_and_is_an_alarm(make_terminals, tmp_path):
    rig = make_terminals(1)
    dev = rig.devices[0]
    old = rig.board(0)
    cfg = dict(rig.ward.device(0), host="127.0.0.1")
    new = rig.fleet.add_board(dev + "-replacement", flash_dir=tmp_path / "flash-replacement", files=firmware_files(cfg))
    assert new.hwid != old.hwid
    # the replacement comes up beside it: the console says so, naming both boards
    state = wait_until(lambda: (lambda s: s if any(a["kind"] == "duplicate_device" for a in s["alarms"]) else None)(
        rig.api.state()), 20, "the two-boards alarm")
    alarm = next(a for a in state["alarms"] if a["kind"] == "duplicate_device")
    assert alarm["text"].startswith(f"two boards claim {dev}")
    assert {s["hwid"] for s in alarm["sessions"]} == {old.hwid.hex(), new.hwid.hex()}
    # a call on each: the same call id (both boards booted once), two calls at the host
    old.tap("call", 150)
    new.tap("call", 150)
    calls = wait_until(lambda: (lambda c: c if len(c) == 2 else None)(rig.calls(dev)), 10, "both calls at the host")
    assert len({c["call_id"] for c in calls}) == 1, "the test wants two boards whose first calls share an id"
    assert len({c["id"] for c in calls}) == 2
    # each board was acknowledged (stored) and keeps nothing in its outbox
    for b in (old, new):
        b.wait_console("host stored CALL", 10)
    # the console acknowledges the replacement's call: only its lamp changes
    newer = max(calls, key=lambda c: c["id"])
    owner, other = (new, old) if newer["hwid"] == new.hwid.hex() else (old, new)
    rig.api.acknowledge(newer["id"])
    owner.wait_console("acknowledged", 10)
    assert "acknowledged" not in other.console().split("host stored CALL")[-1]
