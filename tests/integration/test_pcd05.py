"""PCD-05 (ORA^R41) from the Alert Manager back to the reporter: the status (delivered, read,
accepted by a named person) shows on the console and is in the record."""
from __future__ import annotations

import json
import sqlite3

from tests.fixtures.host import LOOPBACK
from tests.integration.peers import AlertManager, field, send_hl7
from tests.integration.test_acm import acm_toml
from tests.support.waiting import async_wait_until
from wardcall.protocol import wardproto as wp


def ora_r41(alert_id: str, status: str, person: str = "", control_id: str = "AM-S1") -> str:
    return "\r".join([
        "MSH|^~\\&|AM|HOSPITAL|WARDCALL|WARD|20261202010000+0000||ORA^R41^ORA_R41|" + control_id + "|P|2.6",
        f"OBR|1||{alert_id}^WARDCALL|196616^MDC_EVT_ALARM^MDC",
        f"OBX|1|ST|ALERT_STATUS^Alert status^WARDCALL|1|{status}||||||F|||20261202010000+0000||{person}",
    ])


async def test_alert_status_shows_on_the_console_and_is_recorded(make_ward, ward_server_factory):
    am = await AlertManager().start()
    ward = make_ward(extra_toml=acm_toml(am.port, status_host=f'"{LOOPBACK}"', status_port=0))
    server = ward_server_factory(ward)
    status_port = json.loads(server.ready_path.read_text())["integrations"]["acm_status"]
    api = await server.login()
    term = ward.terminal(0)
    await term.connect()
    try:
        call_id = await term.place_call(wp.PATIENT)
        await async_wait_until(lambda: am.alerts(), 10, "the report")
        alert_id = str(am.alerts()[0]["OBR.F3.R1.C1"])
        async with api.events() as console:
            call = next(c for c in console.state["calls"] if c["call_id"] == call_id)
            answer = await send_hl7(status_port, ora_r41(alert_id, "Delivered"))
            assert field(answer, "MSA", 1) == "AA" and field(answer, "MSA", 2) == "AM-S1"
            answer = await send_hl7(status_port, ora_r41(alert_id, "Accepted", "N123^Nurse^Nora", "AM-S2"))
            assert field(answer, "MSA", 1) == "AA"
            state = await console.wait_for(lambda s: s.get("alert_status", {}).get(str(call["id"]), {}).get("status") == "accepted")
            assert state["alert_status"][str(call["id"])]["by"] == "Nora Nurse"
        assert (await api.state())["alert_status"][str(call["id"])]["status"] == "accepted"

        assert field(await send_hl7(status_port, ora_r41("someone-else-1", "read")), "MSA", 1) == "AE"
        assert field(await send_hl7(status_port, ora_r41(alert_id, "exploded")), "MSA", 1) == "AE"
        assert field(await send_hl7(status_port, "garbage"), "MSA", 1) == "AR"
    finally:
        await api.close()
        await term.close()
        await am.stop()
    db = sqlite3.connect(f"file:{ward.database}?mode=ro", uri=True)
    try:
        rows = [json.loads(d) for (d,) in db.execute("SELECT data FROM events WHERE kind = 'alert_status' ORDER BY id")]
    finally:
        db.close()
    assert [(r["status"], r["by"]) for r in rows] == [("delivered", ""), ("accepted", "Nora Nurse")]
    assert server.proc.poll() is None
