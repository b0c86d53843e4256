"""The badge reader end to end: the real firmware on emulated boards (a card presented to the
board's virtual MFRC522 through the emulator's control channel) against the real host
(`wardcall serve`), checked in the host's record (SQLite) and API: PRESENCE with the card's UID,
the room's call attended and cleared as with the presence button, a card held not toggling
again, presence by badge surviving a power cut with the card still on the reader, and a reader
that stops answering reported as a device fault."""
import json
import time

import pytest

from tests.faults.ledger import db_rows
from tests.firmware.test_e2e import call_id_from, host_calls, wait_cleared
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

AWAY_S = 1.3        # the card taken off for longer than the firmware's 1 s debounce
HELD_S = 1.5        # watching a card held on the reader (10+ polls): nothing may change
NURSE_BADGE = "04a1b2c3"
BADGE_7 = "04112233445566"


def recorded(rig, device, kind):
    """The data of the host's record lines of one kind for a device, oldest first."""
    return [json.loads(r["data"]) for r in db_rows(rig.ward.database, "SELECT data FROM events WHERE kind = ? AND device = ?"
                                                   " ORDER BY id", kind, device)]


def presences(rig, device):
    return [(p["on"], p["staff"]) for p in recorded(rig, device, "presence") if not p.get("resync")]


def test_a_badge_attends_the_rooms_call_names_the_nurse_and_clears_it_again(make_terminals):
    rig = make_terminals(2)
    b, dev = rig.board(0), rig.devices[0]
    b.cord("pulled")
    call = wait_until(lambda: host_calls(rig, dev), 5, "bathroom call at the host")[0]
    assert call["kind_name"] == "bathroom" and call["state"] == "placed"
    b.present_badge(NURSE_BADGE)
    b.wait_output("lamp_presence", 1, 3)
    wait_until(lambda: presences(rig, dev), 5, "PRESENCE in the record")
    assert presences(rig, dev) == [(True, NURSE_BADGE)]
    wait_until(lambda: host_calls(rig, dev)[0]["state"] == "attended", 5, "the call attended")
    assert db_rows(rig.ward.database, "SELECT state FROM calls WHERE device = ?", dev) == [{"state": "attended"}]
    b.wait_console("attended", 3)
    time.sleep(HELD_S)                                  # the card held on the reader
    assert presences(rig, dev) == [(True, NURSE_BADGE)] and b.output("lamp_presence") == 1
    # off again: the card away for a moment, the cord at rest, the card presented once more
    b.remove_badge()
    time.sleep(AWAY_S)
    m = b.console_mark()
    b.cord("ok")
    b.wait_console("cord back at rest", 3, since=m)
    b.present_badge(NURSE_BADGE)
    b.wait_output("lamp_presence", 0, 3)
    wait_until(lambda: len(presences(rig, dev)) == 2, 5, "PRESENCE off in the record")
    assert presences(rig, dev) == [(True, NURSE_BADGE), (False, NURSE_BADGE)]
    wait_cleared(rig, dev, call["call_id"], "origin")
    wait_until(lambda: (rig.terminal(dev) or {}).get("presence") is False, 5, "presence off at the host")
    assert presences(rig, rig.devices[1]) == [] and rig.board(1).output("lamp_presence") == 0
    assert "Traceback" not in b.console()


def test_presence_by_badge_survives_a_power_cut_and_a_dead_reader_is_a_device_fault(make_terminals):
    rig = make_terminals(1)
    b, dev = rig.board(0), rig.devices[0]
    b.present_badge(BADGE_7)
    b.wait_output("lamp_presence", 1, 3)
    wait_until(lambda: presences(rig, dev) == [(True, BADGE_7)], 5, "PRESENCE with the 7-byte UID")
    m = b.console_mark()
    b.power_cycle()                                     # the card stays lying on the reader
    b.wait_console("presence restored on (badge %s)" % BADGE_7, 10, since=m)
    b.wait_console("card %s on the reader at start: taken as held" % BADGE_7, 10, since=m)
    rig.wait_online([dev])
    b.wait_output("lamp_presence", 1, 3)
    time.sleep(HELD_S)
    assert presences(rig, dev) == [(True, BADGE_7)]     # not toggled by the reboot
    assert all(p["on"] for p in recorded(rig, dev, "presence")), recorded(rig, dev, "presence")
    assert (rig.terminal(dev) or {}).get("presence") is True
    # the reader stops answering: a FAULT in the record and a technical call, once
    b.badge_reader("dead")
    faults = wait_until(lambda: recorded(rig, dev, "fault"), 10, "FAULT in the record\n" + b.console()[-800:])
    assert [(f["fault"], f["active"], f["detail"]) for f in faults] == [("device", True, "badge reader not answering")]
    tech = wait_until(lambda: host_calls(rig, dev), 5, "technical call at the host")
    assert [c["kind_name"] for c in tech] == ["technical"]
    b.badge_reader("ok")
    b.wait_console("reader ready (MFRC522 version 0x92) again", 10, since=m)
    # the button still works beside the reader: presence off names no badge, and clears the
    # technical call
    b.remove_badge()
    b.tap("presence", 150)
    b.wait_output("lamp_presence", 0, 3)
    wait_until(lambda: len(presences(rig, dev)) == 2, 5, "PRESENCE off")
    assert presences(rig, dev) == [(True, BADGE_7), (False, "")]
    wait_cleared(rig, dev, call_id_from(b.console(), "device_fault"), "presence")
    assert len(recorded(rig, dev, "fault")) == 2        # the fault, and cleared at the terminal
    assert "Traceback" not in b.console()
