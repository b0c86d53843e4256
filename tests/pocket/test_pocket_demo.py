"""`make run`'s demo ward has a shift: three nurses with badges (Carla the charge nurse) assigned
to its beds, the phone address and their logins in the banner, and a prompt command that presents
a nurse's badge at a bed (the emulator's badge reader, real firmware)."""
from __future__ import annotations

import asyncio

import pytest

from tests.fixtures.host import free_port
from wardcall.client import WardApi
from wardcall.demo import DEMO_STAFF, Demo, UsageError, parse_command

pytestmark = pytest.mark.timeout(150)


async def test_the_demo_shift_routes_a_call_to_its_nurse_and_a_badge_places_her(tmp_path):
    demo = Demo(tmp_path / "demo", beds=4, api_port=free_port())
    try:
        await asyncio.to_thread(demo.start)
        banner = demo.banner()
        assert f"https://127.0.0.1:{demo.api_port}/pocket/" in banner
        for login, (name, role, badge) in DEMO_STAFF.items():
            assert f"{login} / {login}" in banner and name in banner and badge in banner
        assert "bed-101-1   Anna Berg, buddy Ben Okafor" in banner and "bed-102-2   Ben Okafor, buddy Anna Berg" in banner
        async with WardApi(f"https://127.0.0.1:{demo.api_port}") as anna:
            await anna.login("anna", "anna")                   # her phone: logged in and open
            await anna.post("/api/pocket/heartbeat", {})
            shift = await anna.get("/api/assignment")
            assert shift["charge"] == "carla" and shift["unassigned"] == []
            assert {(b["room"], b["bed"], b["primary"], b["secondary"]) for b in shift["beds"]} == {
                ("101", "1", "anna", "ben"), ("101", "2", "anna", "ben"), ("102", "1", "ben", "anna"), ("102", "2", "ben", "anna")}
            async with anna.events() as console:
                await console.wait_for(lambda s: all(t["status"] == "online" for t in s["terminals"]), timeout=40)
                # her badge at bed 102-1: she is in room 102
                assert await asyncio.to_thread(demo.command, "badge 3 anna") == "bed-102-1: Anna Berg's badge presented"
                await console.wait_for(lambda s: "anna" in next(r for r in s["rooms"] if r["id"] == "102")["staff"], timeout=10)
                assert next(p for p in (await anna.state())["staff"] if p["user"] == "anna")["room"] == "102"
                # a call on her bed: routed to her first
                await asyncio.to_thread(demo.command, "call 1")
                state = await console.wait_for(lambda s: any(c["device"] == "bed-101-1" for c in s["calls"]), timeout=10)
                call = next(c for c in state["calls"] if c["device"] == "bed-101-1")
                assert call["route"]["steps"][call["route"]["step"]] == "primary" and call["route"]["to"] == ["anna"], call["route"]
                # and room 102's terminal shows it on its dome light (CMD_NOTIFY), though it has no call
                await demo.boards["bed-102-1"].aio.wait_output("dome", 1, timeout=10)
    finally:
        await asyncio.to_thread(demo.stop)


def test_the_badge_command_names_a_bed_and_a_nurse_of_the_shift():
    beds = ["bed-101-1", "bed-101-2"]
    command = parse_command("badge 2 Carla", beds)
    assert (command.verb, command.bed, command.arg) == ("badge", "bed-101-2", "carla")
    for line in ("badge 2", "badge 2 dora", "badge 9 anna"):
        with pytest.raises(UsageError) as exc:
            parse_command(line, beds)
        assert len(str(exc.value).splitlines()) == 1
