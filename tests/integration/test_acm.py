"""IHE PCD ACM Alert Reporter (PCD-04) against the `hl7` package's MLLP server as the Alert
Manager, with the real host subprocess and a simulated terminal; every message validated by
hl7apy at v2.6."""
from __future__ import annotations

import json

from tests.fixtures.host import LOOPBACK, free_port
from tests.integration.peers import AlertManager, facets, field, validate
from tests.support.waiting import async_wait_until
from wardcall.protocol import wardproto as wp


def acm_toml(port: int, **extra: object) -> str:
    settings = {"host": f'"{LOOPBACK}"', "port": port, "retry_s": 0.2, "ack_timeout_s": 2, "keepalive_s": 30, **extra}
    return "\n[integrations.acm]\n" + "\n".join(f"{k} = {v}" for k, v in settings.items()) + \
        '\ncallbacks = { "101" = "4101" }\n'


async def test_a_call_life_is_reported_start_update_end(make_ward, ward_server_factory):
    am = await AlertManager().start()
    ward = make_ward(extra_toml=acm_toml(am.port))
    server = ward_server_factory(ward)
    term = ward.terminal(0)
    await term.connect()
    api = await server.login()
    try:
        call_id = await term.place_call(wp.CODE_BLUE)
        await async_wait_until(lambda: len(am.alerts()) >= 1, 10, "the start report")
        state = await api.state()
        call = next(c for c in state["calls"] if c["call_id"] == call_id)
        await api.acknowledge(call["id"])
        await term.cancel(call_id)
        await async_wait_until(lambda: len(am.alerts()) >= 3, 10, "start, update, end")
    finally:
        await api.close()
        await term.close()
        await am.stop()
    start, update, end = am.alerts()[:3]
    for msg in (start, update, end):
        validate(str(msg), patient_known=False)
        assert field(msg, "MSH", 9) == "ORU^R40^ORU_R01"
        assert field(msg, "PV1", 3) == "Test ward^101^1"                 # unit^room^bed
    assert len({str(m["OBR.F3.R1.C1"]) for m in (start, update, end)}) == 1     # one alert, one id
    assert len({str(m["MSH.F10"]) for m in am.messages}) == len(am.messages)   # every message its own id
    f1, f2, f3 = facets(start), facets(update), facets(end)
    assert (f1["phase"], f1["state"], f1["inactivation"], f1["priority"]) == ("start", "active", "enabled", "PH")
    assert f1["source"] == "bed-101-1" and f1["callback"] == "^WPN^PH^^^^4101" and f1["type"] == "SP"
    assert (f2["phase"], f2["inactivation"]) == ("update", "alert-acknowledged")
    assert (f3["phase"], f3["state"]) == ("end", "inactive")
    assert str(start.segments("OBX")[0](3)) == "NC_CODE_BLUE^Code blue call^WARDCALL" and f1["event"] == "Code blue call"
    assert field(end, "OBR", 8)                                        # the end time


async def test_nothing_lost_while_the_alert_manager_is_down_nor_across_a_restart(make_ward, ward_server_factory):
    """Alert Manager down: the alarm stands; calls placed and cleared, the host restarted; the
    Alert Manager back on its port: every message arrives once, in order, and the alarm clears."""
    port = free_port()
    am = AlertManager()
    ward = make_ward(extra_toml=acm_toml(port))
    server = ward_server_factory(ward)
    api = await server.login()
    term = ward.terminal(0)
    await term.connect()
    try:
        def unreachable(state):
            return any(a["kind"] == "integration_unreachable" for a in state["alarms"])
        first = await term.place_call(wp.PATIENT)
        await term.cancel(first)
        second = await term.place_call(wp.BATHROOM)
        assert unreachable(await async_wait_until(lambda: _state_if(api, unreachable), 10, "the integration alarm"))
        await term.close()
        await api.close()
        server.restart()                                  # a restart while the peer is down
        term = ward.terminal(0)
        await term.connect()
        await term.cancel(second)
        await am.start(port)
        await async_wait_until(lambda: len(am.alerts()) >= 4, 15, "the four reports")
        api = await server.login()
        await async_wait_until(lambda: _state_if(api, lambda s: not unreachable(s)), 10, "the alarm cleared")
    finally:
        await api.close()
        await term.close()
        await am.stop()
    reports = [(str(m["OBR.F3.R1.C1"]), facets(m)["phase"]) for m in am.alerts()]
    ids = [str(m["MSH.F10"]) for m in am.messages]
    assert len(ids) == len(set(ids)), ids                                   # none twice
    assert [phase for _, phase in reports] == ["start", "end", "start", "end"]
    assert reports[0][0] == reports[1][0] != reports[2][0] == reports[3][0]
    for msg in am.messages:
        validate(str(msg), patient_known=False)


async def _state_if(api, predicate):
    state = await api.state()
    return state if predicate(state) else None


async def test_a_lost_ack_means_the_same_message_again_and_a_refusal_does_not_hold_up_the_rest(make_ward, ward_server_factory):
    am = await AlertManager().start()
    seen: list[str] = []

    def answer(msg):
        control = str(msg["MSH.F10"])
        seen.append(control)
        if len(seen) == 1:
            return None                         # hang up before the ACK: the reporter must resend it
        return "AE" if len(seen) == 2 else "AA"     # the resend is refused: the next must still go
    am.answer = answer
    ward = make_ward(extra_toml=acm_toml(am.port))
    server = ward_server_factory(ward)
    term = ward.terminal(0)
    await term.connect()
    try:
        first = await term.place_call(wp.PATIENT)
        await term.cancel(first)
        await async_wait_until(lambda: len(seen) >= 3, 10, "three deliveries")
    finally:
        await term.close()
        await am.stop()
    assert seen[0] == seen[1] != seen[2]             # the resend keeps its MSH-10
    assert "refused message" in server.log_text()


async def test_keep_alive_when_idle(make_ward, ward_server_factory):
    am = await AlertManager().start()
    ward = make_ward(extra_toml=acm_toml(am.port, keepalive_s=0.3))
    ward_server_factory(ward)
    try:
        await async_wait_until(lambda: len(am.messages) >= 2, 10, "two keep-alives")
    finally:
        await am.stop()
    assert not am.alerts()
    for msg in am.messages:
        validate(str(msg), patient_known=False)
        assert str(msg["OBR.F4.R1.C1"]) == "KEEPALIVE"


def test_ready_file_names_the_integration_ports(make_ward, ward_server_factory):
    ward = make_ward(extra_toml=acm_toml(free_port()) + '\n[integrations.adt]\nhost = "127.0.0.1"\nport = 0\n')
    server = ward_server_factory(ward)
    ready = json.loads(server.ready_path.read_text())
    assert ready["integrations"]["adt"] > 0


async def test_the_patient_on_the_bed_is_in_the_report(make_ward, ward_server_factory):
    from tests.integration.peers import adt, send_hl7
    am = await AlertManager().start()
    ward = make_ward(extra_toml=acm_toml(am.port) + '\n[integrations.adt]\nhost = "127.0.0.1"\nport = 0\ndisplay = "name"\n')
    server = ward_server_factory(ward)
    adt_port = json.loads(server.ready_path.read_text())["integrations"]["adt"]
    answer = await send_hl7(adt_port, adt("A01", "P100", "Doe", "Jane", "Test ward^101^1"))
    assert field(answer, "MSA", 1) == "AA"
    term = ward.terminal(0)
    await term.connect()
    try:
        await term.place_call(wp.PATIENT)
        await async_wait_until(lambda: am.alerts(), 10, "the report")
    finally:
        await term.close()
        await am.stop()
    report = am.alerts()[0]
    validate(str(report), patient_known=True)
    assert field(report, "PID", 3) == "P100^^^^MR" and field(report, "PID", 5) == "Jane Doe"
    assert facets(report)["priority"] == "PL" and facets(report)["type"] == "SA"


async def test_an_alert_manager_that_never_answers_holds_up_no_call(make_ward, ward_server_factory):
    """The ward never waits on the Alert Manager: with one that takes messages and never ACKs,
    calls are still acknowledged to the terminal (stored) and shown."""
    am = await AlertManager().start()
    am.answer = lambda msg: "HANG"
    ward = make_ward(extra_toml=acm_toml(am.port, ack_timeout_s=30))
    server = ward_server_factory(ward)
    api = await server.login()
    term = ward.terminal(0)
    await term.connect()
    try:
        ids = [await term.place_call(wp.PATIENT, timeout=3) for _ in range(3)]    # each CALL_ACK within 3 s
        await term.cancel(ids[0], timeout=3)
        state = await api.state()
        assert sorted(c["call_id"] for c in state["calls"]) == sorted(ids[1:])
        assert len(am.hung) == 1                        # the first report waits for its ACK; nothing else was sent
    finally:
        await api.close()
        await term.close()
        await am.stop()


async def test_at_start_open_calls_are_checked_against_what_the_alert_manager_was_told(make_ward, ward_server_factory):
    """A call open when the integration is configured is started; a call cleared in the record
    whose end never reached the queue (the host died between the two commits: the queue's file
    put back as it was before the clear) is ended at the next start."""
    ward = make_ward()
    server = ward_server_factory(ward)
    term = ward.terminal(0)
    await term.connect()
    call_id = await term.place_call(wp.PATIENT)
    await term.close()
    server.stop()

    am = await AlertManager().start()
    with ward.config_path.open("a") as toml:
        toml.write(acm_toml(am.port))
    try:
        server.start()
        await async_wait_until(lambda: am.alerts(), 10, "the open call's start")
        assert facets(am.alerts()[0])["phase"] == "start"
        server.stop()
        side = ward.dir / "ward.integrations.db"
        before_clear = side.read_bytes()
        server.start()
        term = ward.terminal(0)
        await term.connect()
        await term.cancel(call_id)
        await async_wait_until(lambda: len(am.alerts()) >= 2, 10, "the end")
        await term.close()
        server.stop()
        for extra in (".integrations.db-wal", ".integrations.db-shm"):
            (ward.dir / f"ward{extra}").unlink(missing_ok=True)
        side.write_bytes(before_clear)                  # as if the end had never been queued
        server.start()
        await async_wait_until(lambda: len(am.alerts()) >= 3, 10, "the end, sent at start")
    finally:
        await am.stop()
    phases = [facets(m)["phase"] for m in am.alerts()]
    assert phases == ["start", "end", "end"]
    assert len({str(m["OBR.F3.R1.C1"]) for m in am.alerts()}) == 1
