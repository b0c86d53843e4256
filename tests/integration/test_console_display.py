"""The console in a real headless Chromium: the patient on each bed (ADT) on the map and the
call card, and the Alert Manager's PCD-05 status on the card."""
from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.console.conftest import browser, login, page, sim_terminal  # noqa: F401  (fixtures)
from tests.console.conftest import aloop  # noqa: F401
from tests.fixtures.host import LOOPBACK
from tests.integration.peers import AlertManager, adt, field, send_hl7
from tests.integration.test_acm import acm_toml
from tests.integration.test_pcd05 import ora_r41
from wardcall.protocol import wardproto

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def test_patient_and_paging_status_on_the_console_and_the_pocket(browser, page, ward_server_factory, make_ward, aloop):  # noqa: F811
    am = aloop.run(AlertManager().start())
    ward = make_ward(terminals=2, extra_toml=acm_toml(am.port, status_host=f'"{LOOPBACK}"', status_port=0)
                     + '\n[integrations.adt]\nhost = "127.0.0.1"\nport = 0\ndisplay = "initials"\n')
    server = ward_server_factory(ward)
    ports = json.loads(server.ready_path.read_text())["integrations"]
    try:
        login(page, server.api_url)
        answer = aloop.run(send_hl7(ports["adt"], adt("A01", "P100", "Doe", "Jane", "Test ward^101^1")))
        assert field(answer, "MSA", 1) == "AA"
        bed = page.locator('.room[data-room="101"] .bed[data-bed="1"]')
        expect(bed.locator(".bed-patient")).to_have_text("J.D.")
        expect(page.locator('.room[data-room="101"] .bed[data-bed="2"] .bed-patient')).to_have_count(0)

        term = sim_terminal(aloop, ward, 0)
        aloop.run(term.place_call(wardproto.PATIENT))
        card = page.locator('#calls li.call[data-device="bed-101-1"]')
        expect(card.locator(".where")).to_contain_text("J.D.")
        alert_id = aloop.run(_first_alert_id(am))
        aloop.run(send_hl7(ports["acm_status"], ora_r41(alert_id, "Accepted", "N1^Nurse^Nora")))
        expect(card.locator(".status")).to_contain_text("paging: accepted by Nora Nurse")
        phone = browser.new_page()                  # the pocket console, in the same logged-in session
        phone_errors: list[str] = []
        phone.on("pageerror", lambda exc: phone_errors.append(str(exc)))
        phone.goto(server.api_url + "/pocket/")
        pocket_card = phone.locator('li.call[data-device="bed-101-1"]')
        expect(pocket_card.locator(".where")).to_contain_text("J.D.")
        expect(pocket_card.locator(".status")).to_contain_text("paging: accepted by Nora Nurse")

        aloop.run(send_hl7(ports["adt"], adt("A03", "P100", "Doe", "Jane", "Test ward^101^1", control_id="M2")))
        expect(bed.locator(".bed-patient")).to_have_count(0)
        expect(card.locator(".where")).not_to_contain_text("J.D.")
        expect(pocket_card.locator(".where")).not_to_contain_text("J.D.")
        assert not phone_errors, phone_errors
    finally:
        aloop.run(am.stop())


async def _first_alert_id(am) -> str:
    from tests.support.waiting import async_wait_until
    await async_wait_until(lambda: am.alerts(), 10, "the report")
    return str(am.alerts()[0]["OBR.F3.R1.C1"])
