"""What crosses the air between an emulated board and the host, read at the emulator's radio
proxy: over TLS nothing but TLS records, and none of the ward's data in them (the device id,
the call, the nurse who took it, the badge id); the same scenario on a plain ward shows all of it,
so the check can see what it looks for."""
from __future__ import annotations

import pytest

from tests.tls.helpers import tls_records
from wardcall.protocol import wardproto as wp

pytestmark = [pytest.mark.timeout(120)]

BADGE = "04a1b2c3"                  # the test nurse's badge (tests/fixtures/host.py BADGES)
NURSE = b"nurse"                    # who acknowledged it: the CALL_STATE's "by"


def scenario(rig) -> tuple[list[dict[str, bytes]], int]:
    """A call, acknowledged at the console, attended by the nurse's badge (which cancels it);
    the bytes of it."""
    board = rig.board(0)
    device = rig.devices[0]
    board.capture(True)
    board.reset()                   # a fresh connection, captured from its first byte
    rig.wait(lambda: (rig.terminal(device) or {}).get("connected") and board.captured(), 20, "reconnected")
    board.tap("call", ms=150)
    call = rig.wait(lambda: next(iter(rig.calls(device)), None), 10, "the call at the host")
    rig.api.acknowledge(call["id"])
    mark = board.console_mark()
    board.present_badge(BADGE)      # the nurse is in the room: the call is attended, then cancelled
    board.wait_console("host stored CANCEL", 10, since=mark)
    rig.wait(lambda: not rig.calls(device), 10, "the call cleared at the host")
    board.remove_badge()
    captured = board.captured()
    board.capture(False)
    return captured, call["call_id"]


def plaintext_of(captured: list[dict[str, bytes]], device: str, call_id: int) -> dict[str, bool]:
    air = b"".join(c["b2r"] + c["r2b"] for c in captured)
    return {
        "device id": device.encode() in air,
        "badge id (hex)": BADGE.encode() in air,
        "badge id (bytes)": bytes.fromhex(BADGE) in air,
        "the nurse": NURSE in air,
        "call id": call_id.to_bytes(4, "big") + bytes([wp.PATIENT, wp.PATIENT]) in air,
        "a HELLO frame": bytes([wp.VERSION, wp.HELLO, 0, 0, 0, 0, 0]) in air,
    }


def test_over_tls_the_air_carries_only_tls_records_and_no_ward_data(make_terminals):
    rig = make_terminals(1)
    captured, call_id = scenario(rig)
    assert captured, "nothing captured"
    found = plaintext_of(captured, rig.devices[0], call_id)
    assert not any(found.values()), f"in clear on the air: {[k for k, v in found.items() if v]}"
    for conn in captured:
        up, down = tls_records(conn["b2r"]), tls_records(conn["r2b"])
        assert up and up[0][0] == 22, "the board's first bytes are not a TLS handshake"
        assert down and down[0][0] == 22, "the host's first bytes are not a TLS handshake"
        # after ChangeCipherSpec and its (encrypted) Finished the board sends application data
        # records only (and perhaps a closing alert)
        done = [t for t, _ in up].index(20) + 2
        assert done <= 4 and {t for t, _ in up[done:]} <= {23, 21}, up
        assert any(t == 23 for t, _ in up) and any(t == 23 for t, _ in down)


def test_on_a_plain_ward_the_same_bytes_show_everything(make_terminals):
    """The control: the check above finds the data when it is there."""
    rig = make_terminals(1, tls="plain")
    captured, call_id = scenario(rig)
    found = plaintext_of(captured, rig.devices[0], call_id)
    assert all(found[k] for k in ("device id", "badge id (hex)", "the nurse", "call id", "a HELLO frame")), found
    alarms = [a["text"] for a in rig.api.state()["alarms"] if a["kind"] == "link_security"]
    assert any("plain TCP" in t for t in alarms) and any("plain HTTP" in t for t in alarms), alarms
