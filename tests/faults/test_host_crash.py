"""The host killed with SIGKILL in the middle of calls, then restarted on the same record."""
import pytest

from tests.faults.helpers import acknowledged_by_host, press, relogin, rig_behind_proxy, wait_all_delivered
from tests.faults.ledger import Ledger, db_rows, recorded_calls
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def test_sigkill_mid_call_then_restart_loses_and_doubles_nothing(make_terminals, fault_proxy):
    rig = rig_behind_proxy(make_terminals, fault_proxy, 4, heartbeat_ms=500)
    ledger = Ledger()
    # calls in flight: every chunk takes 250 ms through the link, so when the host dies some
    # calls are stored but not yet acknowledged to their board, others not yet received
    fault_proxy.set(delay_ms=250)
    for i in range(4):
        press(rig, ledger, i, "call")

    def stored_but_unacked() -> set[tuple[str, int]]:
        """Calls the host has stored whose CALL_ACK has not reached the board (the ACK spends
        250 ms in the link, so each stored call is in this state for at least that long)."""
        stored = recorded_calls(rig.ward.database)
        return {(d, cid) for i, d in enumerate(rig.devices) for cid in stored.get(d, [])
                if cid not in acknowledged_by_host(rig, i)}
    # kill inside that window, observed, not guessed: presses take longer on a busy machine
    wait_until(stored_but_unacked, 10, "a call stored whose CALL_ACK is still on the wire", interval=0.005)
    rig.server.kill()                    # SIGKILL: nothing flushed, nothing closed by the host
    fault_proxy.reset_all()              # and whatever was still on the wire is gone
    # stored by the host, but its CALL_ACK never reached the board: the board must resend it
    unacked = stored_but_unacked()
    assert unacked, "the crash should fall between storing a call and its CALL_ACK reaching the board"

    # calls pressed while the host is down wait in the boards' outboxes
    for i in range(4):
        press(rig, ledger, i, "assist")
    fault_proxy.set(delay_ms=0)
    rig.server.start()
    relogin(rig)                          # console sessions live in the server's memory

    placed = wait_all_delivered(rig, ledger, timeout=40)
    ledger.check(rig.ward.database, placed)
    # the resent calls were recognised as repeats (device, call id), not counted again
    repeated = {(r["device"], r["call"]) for r in db_rows(rig.ward.database,
                "SELECT e.device, c.call_id AS call FROM events e JOIN calls c ON c.id = e.call WHERE e.kind = 'call_repeated'")}
    assert unacked <= repeated, (unacked, repeated)
    rig.wait_online(timeout=20)
    state = rig.api.state()
    assert sorted((c["device"], c["call_id"]) for c in state["calls"]) == sorted(
        (d, cid) for d, ids in placed.items() for cid in ids), "every open call is on the console"
