"""A host certificate the terminal must refuse (from another CA, expired, for another name):
the real firmware on an emulated board refuses it before HELLO, shows a device fault, reports
it to the host in an authenticated REPORT (the host's alarm names the terminal), and never
falls back to plaintext (the host sees no HELLO: nothing but TLS records left the board)."""
from __future__ import annotations

import pytest

from tests.support.waiting import wait_until
from tests.tls.helpers import (add_board, expired_host_certificate, host_certificate_for_another_name,
                               host_certificate_from_another_ca, tls_records)
from wardcall.client import alarms_of, find_terminal
from tests.fixtures.ward import SyncApi

pytestmark = [pytest.mark.timeout(120)]

CASES = {
    "another CA": (host_certificate_from_another_ca, "not correctly signed by the trusted CA"),
    "expired": (lambda ward, folder: expired_host_certificate(ward), "validity has expired"),
    "another name": (lambda ward, folder: host_certificate_for_another_name(ward), "does not match"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_wrong_host_certificate_is_refused_with_a_fault_and_an_alarm_naming_the_terminal(
        case, make_ward, ward_server_factory, fleet, tmp_path):
    spoil, reason = CASES[case]
    ward = make_ward(terminals=2)
    spoil(ward, tmp_path)
    ward.unverified = True          # the console has the spoiled certificate too: read it anyway
    server = ward_server_factory(ward)
    api = SyncApi(ward.api_url, ward.client_ssl())
    try:
        device = ward.device(0)["device_id"]
        board = add_board(fleet, tmp_path, ward, 0)
        board.capture(True)
        board.wait_console("host certificate REFUSED", timeout=20)
        text = board.console()
        assert reason in text, text[-2000:]
        # a fault at the terminal: the device fault, shown as a technical call on its lamp
        board.wait_console("device fault: host certificate refused", timeout=5)
        assert board.wait_output("lamp_reassure", 1, timeout=5)

        # the host's alarm names the terminal and the reason (from the terminal's REPORT)
        def alarm():
            found = [a for a in alarms_of(api.state(), "tls_refused") if a["device"] == device]
            return found[0] if found else None
        raised = wait_until(alarm, 15, f"the host's alarm for {device}")
        assert device in raised["text"] and reason.split()[0] in raised["text"], raised
        # no plaintext fallback: the host never saw a HELLO, the board never a session
        state = api.state()
        assert not (find_terminal(state, device) or {}).get("connected")
        log = server.log_text()
        assert f"terminal {device} connected" not in log and "link: online" not in board.console()
        # and what left the board were TLS records only, on every try
        captured = board.captured()
        assert captured
        for conn in captured:
            records = tls_records(conn["b2r"])
            assert records and records[0][0] == 22
            assert all(t in (21, 22) for t, _ in records), records      # handshake, alert: no data
            assert device.encode() not in conn["b2r"]
        # the refusal goes on (with its backoff), the fault stays
        mark = board.console_mark()
        board.wait_console("host certificate REFUSED", timeout=20, since=mark)
        assert "link: online" not in board.console(since=mark)
    finally:
        api.close()
