"""`make run` starts `wardcall demo`: the real host plus emulated beds running the real firmware.
This drives the demo as a user would: the beds come online, a call typed at the demo's prompt
shows on the console's state, and acknowledging it there changes the bed's lamp."""
import asyncio

import pytest

from tests.fixtures.host import free_port
from wardcall.client import WardApi, find_terminal
from wardcall.demo import DEMO_USER, Demo

pytestmark = pytest.mark.timeout(120)


async def test_demo_ward_takes_a_call_end_to_end(tmp_path):
    demo = Demo(tmp_path / "demo", beds=2, api_port=free_port())
    try:
        await asyncio.to_thread(demo.start)
        banner = demo.banner()
        assert f"http://127.0.0.1:{demo.api_port}/" in banner and "bed-101-2" in banner
        async with WardApi(f"http://127.0.0.1:{demo.api_port}") as api:
            await api.login(*DEMO_USER)
            async with api.events() as console:
                state = await console.wait_for(lambda s: all(
                    (find_terminal(s, d) or {}).get("status") == "online" for d in ("bed-101-1", "bed-101-2")), timeout=30)
                assert await asyncio.to_thread(demo.command, "call 2") == "bed-101-2: call pressed"
                state = await console.wait_for(lambda s: any(c["device"] == "bed-101-2" for c in s["calls"]), timeout=10)
                call = next(c for c in state["calls"] if c["device"] == "bed-101-2")
                assert (call["kind_name"], call["room"], call["bed"]) == ("patient", "101", "2")
                # a patient call not yet acknowledged: the reassurance lamp is steady on
                assert "lamp_reassure on" in await asyncio.to_thread(demo.command, "lamps 2")
                before = await asyncio.to_thread(demo.boards["bed-101-2"].history, "lamp_reassure")
                await api.acknowledge(call["id"])
                await console.wait_for(lambda s: next(c for c in s["calls"] if c["id"] == call["id"])["state"] == "acknowledged")
                # acknowledged: the steady lamp starts blinking the "acknowledged" pattern (goes off briefly)
                board = demo.boards["bed-101-2"]
                await board.aio.wait_output("lamp_reassure", 0, timeout=5)
                assert len(await asyncio.to_thread(board.history, "lamp_reassure")) > len(before)
        assert "unknown command" in demo.command("dance 1")
        with pytest.raises(ValueError, match="no bed"):
            demo.command("call bed-999-1")
    finally:
        await asyncio.to_thread(demo.stop)
    assert demo.server is None and demo.fleet is None
