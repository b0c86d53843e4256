"""HL7 ADT in, against the real host subprocess: messages built with hl7apy, sent over MLLP."""
from __future__ import annotations

import json

import aiohttp

from tests.integration.peers import adt, field, send_hl7
from tests.support.waiting import async_wait_until

ADT_TOML = '\n[integrations.adt]\nhost = "127.0.0.1"\nport = 0\ndisplay = "{display}"\n'


def adt_port(server) -> int:
    return json.loads(server.ready_path.read_text())["integrations"]["adt"]


async def test_admit_transfer_discharge_and_a_restart_keeps_the_patient(make_ward, ward_server_factory):
    ward = make_ward(extra_toml=ADT_TOML.format(display="initials"))
    server = ward_server_factory(ward)
    port = adt_port(server)
    api = await server.login()
    try:
        async with api.events() as console:
            answer = await send_hl7(port, adt("A01", "P100", "Doe", "Jane", "Test ward^101^1"))
            assert field(answer, "MSA", 1) == "AA" and field(answer, "MSA", 2) == "MSG1"
            state = await console.wait_for(lambda s: "101/1" in s.get("patients", {}), 5)
            assert state["patients"]["101/1"]["shown"] == "J.D."             # initials, as configured
            assert state["patients"]["101/1"]["id"] == "P100"
            await console.wait_event(lambda name, p: name == "patient" and p["room"] == "101" and p["patient"], 5)

            answer = await send_hl7(port, adt("A02", "P100", "Doe", "Jane", "Test ward^102^2", "Test ward^101^1", "MSG2"))
            assert field(answer, "MSA", 1) == "AA"
        state = await api.state()
        assert set(state["patients"]) == {"102/2"}                           # off the old bed, on the new

        await api.close()
        server.restart()
        api = await server.login()
        assert set((await api.state())["patients"]) == {"102/2"}             # kept across a restart
        answer = await send_hl7(adt_port(server), adt("A03", "P100", "Doe", "Jane", "Test ward^102^2", control_id="MSG3"))
        assert field(answer, "MSA", 1) == "AA"
        await async_wait_until(lambda: _no_patients(api), 5, "the bed empty after discharge")
    finally:
        await api.close()
    async with aiohttp.ClientSession() as anonymous:                          # not logged in: nothing shown
        async with anonymous.get(ward.api_url + "/api/state") as reply:
            assert reply.status == 401
            assert "P100" not in await reply.text()


async def _no_patients(api) -> bool:
    return (await api.state())["patients"] == {}


async def test_unknown_location_is_logged_and_refused_never_guessed(make_ward, ward_server_factory):
    ward = make_ward(extra_toml=ADT_TOML.format(display="name"))
    server = ward_server_factory(ward)
    port = adt_port(server)
    answer = await send_hl7(port, adt("A01", "P7", "Roe", "Rick", "Test ward^109^1"))
    assert field(answer, "MSA", 1) == "AE" and "109" in str(answer.segment("ERR")(8))
    answer = await send_hl7(port, adt("A01", "P8", "Roe", "Rita", "Test ward^101^9"))     # a bed the room lacks
    assert field(answer, "MSA", 1) == "AE"
    answer = await send_hl7(port, adt("A01", "P9", "Other", "Unit", "ICU^1^1"))          # another unit: not ours
    assert field(answer, "MSA", 1) == "AA"
    api = await server.login()
    try:
        assert (await api.state())["patients"] == {}
        answer = await send_hl7(port, adt("A08", "P10", "Poe", "Ann", "Test ward^101^2"))
        assert field(answer, "MSA", 1) == "AA"
        assert (await api.state())["patients"]["101/2"]["shown"] == "Ann Poe"          # the name, as configured
    finally:
        await api.close()
    assert "is not a bed of this ward" in server.log_text()


async def test_bad_messages_get_a_negative_ack_and_the_listener_goes_on(make_ward, ward_server_factory):
    ward = make_ward(extra_toml=ADT_TOML.format(display="id"))
    server = ward_server_factory(ward)
    port = adt_port(server)
    answer = await send_hl7(port, "this is not HL7 at all")
    assert field(answer, "MSA", 1) == "AR"
    no_pid = adt("A01", "P1", "Doe", "Jo", "Test ward^101^1").replace("PID|||P1^^^HOSP^MR|", "PID||||")
    assert field(await send_hl7(port, no_pid), "MSA", 1) == "AE"
    orm = adt("A01", "P1", "Doe", "Jo", "Test ward^101^1").replace("ADT^A01^ADT_A01", "ORM^O01^ORM_O01")
    assert field(await send_hl7(port, orm), "MSA", 1) == "AR"
    answer = await send_hl7(port, adt("A01", "P1", "Doe", "Jo", "Test ward^101^1"))
    assert field(answer, "MSA", 1) == "AA"                                   # still listening, still right
    api = await server.login()
    try:
        assert (await api.state())["patients"]["101/1"]["shown"] == "P1"
    finally:
        await api.close()
    assert server.proc.poll() is None
