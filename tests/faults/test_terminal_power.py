"""A terminal loses power before the host's acknowledgement reaches it, at three points of a
call's life. (tests/firmware/test_e2e.py has the single-board case through the emulator's radio;
here three boards at once, through the fault proxy, including the CANCEL.)"""
import pytest

from tests.faults.helpers import acknowledged_by_host, clear_calls, press, rig_behind_proxy, wait_all_delivered
from tests.faults.ledger import Ledger, db_rows, recorded_calls
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def call_rows(rig):
    return {(r["device"], r["call_id"]): r for r in db_rows(rig.ward.database, "SELECT * FROM calls")}


def test_power_cut_before_the_acknowledgement(make_terminals, fault_proxy):
    rig = rig_behind_proxy(make_terminals, fault_proxy, 3, heartbeat_ms=1000)
    a, b, c = rig.boards
    da, db, dc = rig.devices
    ledger = Ledger()

    # c: a call stored and acknowledged, to be cancelled later
    press(rig, ledger, 2, "call")
    wait_all_delivered(rig, ledger, 15)

    # every chunk now takes 600 ms (within the 3 s dead-link limit), so acknowledgements lag
    fault_proxy.set(delay_ms=600)
    # a: the call reaches the host; the power fails before its CALL_ACK is back
    press(rig, ledger, 0, "call")
    wait_until(lambda: recorded_calls(rig.ward.database).get(da), 10, "a's call stored", interval=0.01)
    assert not acknowledged_by_host(rig, 0)
    a.power_cycle()
    # c: the nurse's presence cancels the call; the host stores the CANCEL, the power fails
    # before the CANCEL's acknowledgement arrives
    clear_calls(rig, 2)
    wait_until(lambda: call_rows(rig).get((dc, list(acknowledged_by_host(rig, 2))[0]), {}).get("state") == "cleared",
               10, "c's cancel stored", interval=0.01)
    c.power_cycle()
    fault_proxy.set(delay_ms=0)

    # b: the link is stalled, the call is only on the board's flash when the power fails
    fault_proxy.cut("stall")
    press(rig, ledger, 1, "call")
    b.wait_console("patient call", 5)
    b.power_cycle()
    b.wait_console("undelivered event(s) from before the restart", 10)
    fault_proxy.restore()

    placed = wait_all_delivered(rig, ledger, timeout=40)
    ledger.check(rig.ward.database, placed)
    rows = call_rows(rig)
    assert rows[(da, placed[da][0])]["state"] != "cleared"
    assert rows[(db, placed[db][0])]["state"] != "cleared"
    assert rows[(dc, placed[dc][0])]["state"] == "cleared"
    # a and b show their call again after the restart; c's stays cleared (its lamp is off)
    a.wait_output("lamp_reassure", 1, 5)
    b.wait_output("lamp_reassure", 1, 5)
    rig.wait_online(timeout=20)
    wait_until(lambda: not c.output("lamp_reassure"), 5, "c's reassurance lamp off")
    open_calls = {(x["device"], x["call_id"]) for x in rig.api.state()["calls"]}
    assert open_calls == {(da, placed[da][0]), (db, placed[db][0])}
