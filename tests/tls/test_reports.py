"""The REPORT a terminal sends to the discovery port when it refuses the host's certificate: an
authentic one raises an alarm naming the terminal (sounding once) and a session over TLS clears
it; a forged one (wrong key, unknown device) raises none; a replayed one counts nothing; a flood
from one source is cut to a few."""
from __future__ import annotations

import asyncio
import os
import socket

import pytest

from tests.support.waiting import wait_until
from wardcall.client import alarms_of
from wardcall.protocol import wardproto as wp

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


def send(port: int, frame: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(frame, ("127.0.0.1", port))


def report(key: bytes, device: str, detail: str = "The certificate validity has expired", nonce: bytes | None = None) -> bytes:
    return wp.report(wp.Hmac(key), device, nonce or os.urandom(8), wp.REPORT_TLS_REFUSED, detail)


async def tls_alarms(api) -> list[dict]:
    return alarms_of(await api.state(), "tls_refused")


async def test_an_authentic_report_raises_an_alarm_naming_the_terminal_until_it_connects(ward_server, ward_api):
    ward = ward_server.ward
    dev = ward.device(0)
    key = wp.key_from_hex(dev["key"])
    send(ward.discovery_port, report(key, dev["device_id"]))
    for _ in range(100):
        found = await tls_alarms(ward_api)
        if found:
            break
        await asyncio.sleep(0.05)
    assert [a["device"] for a in found] == [dev["device_id"]], found
    assert "validity has expired" in found[0]["text"] and "room 101" in found[0]["text"]
    t = ward.terminal(0)
    await t.connect()
    await t.place_call(wp.PATIENT)          # an authentic session over TLS: the alarm clears
    for _ in range(100):
        if not await tls_alarms(ward_api):
            break
        await asyncio.sleep(0.05)
    assert not await tls_alarms(ward_api)
    await t.close()


async def test_forged_replayed_and_flooded_reports(ward_server, ward_api):
    ward = ward_server.ward
    a, b = ward.device(0), ward.device(1)
    key_a = wp.key_from_hex(a["key"])
    # forged: b's id with a's key, an unknown device: no alarm (the refusals are counted as attempts)
    send(ward.discovery_port, report(key_a, b["device_id"]))
    send(ward.discovery_port, report(key_a, "bed-999-9"))
    # one authentic report, then the same datagram again and again (replayed)
    frame = report(key_a, a["device_id"])
    for _ in range(5):
        send(ward.discovery_port, frame)
    await asyncio.sleep(0.5)
    alarms = await tls_alarms(ward_api)
    assert [x["device"] for x in alarms] == [a["device_id"]] and alarms[0]["count"] == 1, alarms
    # a flood of fresh authentic reports from one source: a burst of 10 at most is counted
    for _ in range(200):
        send(ward.discovery_port, report(key_a, a["device_id"]))
    await asyncio.sleep(1.0)
    alarms = await tls_alarms(ward_api)
    assert 2 <= alarms[0]["count"] <= 1 + 10 + 2, alarms          # the bucket refills at 0.5/s
    log = ward_server.log_text()
    assert "seen before (replayed)" in log and "reports too often" in log
    attempts = alarms_of(await ward_api.state(), "device_trying_to_connect")
    assert {r["reason"] for r in attempts} <= {"discovery: wrong key", "discovery: unknown device"}
