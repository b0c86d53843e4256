"""Routing through the real `wardcall serve`: simulated terminals, three or four logged-in staff
with their pocket consoles' heartbeats, short configured waits (never sleeps standing in for
synchronisation: every wait is for a state, bounded)."""
from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time

import pytest

from wardcall.client import ApiError, WardApi, alarms_of, find_call
from wardcall.protocol import wardproto as wp
from tests.fixtures.host import BADGES, NURSE

pytestmark = pytest.mark.timeout(90)

WAIT_S = 2.0                 # each step waits this long for an Accept
PHONE_SILENT_S = 3.0
ROUTING = f"""
[routing]
phone_silent_s = {PHONE_SILENT_S}
[routing.wait_s]
patient = {WAIT_S}
bathroom = {WAIT_S}
"""
CMD_NOTIFY = 7


def db_rows(ward, query, *args):
    conn = sqlite3.connect(f"file:{ward.database}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(query, args)]
    finally:
        conn.close()


class Pocket:
    """A logged-in user whose pocket console is open: a heartbeat every half second (the page
    sends one every 15 s; the test ward's phones go silent after 3 s)."""

    def __init__(self, api: WardApi) -> None:
        self.api = api
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        async def beat() -> None:
            while True:
                await self.api.pocket_heartbeat()
                await asyncio.sleep(0.5)
        self.task = asyncio.create_task(beat())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


@contextlib.asynccontextmanager
async def staff(server, *users: str):
    """The users logged in with their pockets open; yields {user: Pocket}."""
    pockets = {u: Pocket(await server.login(u, NURSE[1])) for u in users}
    for pocket in pockets.values():
        pocket.start()
    try:
        yield pockets
    finally:
        for pocket in pockets.values():
            await pocket.stop()
            await pocket.api.close()


async def assign_ward(api: WardApi) -> dict:
    """Charge nurse "charge"; room 101 nurse (buddy nurse2); 102 bed 1 nurse2 (buddy nurse), bed 2 aide;
    the other rooms to the charge nurse."""
    layout = await api.get("/api/assignment")
    others = sorted({b["room"] for b in layout["beds"]} - {"101", "102"})
    changes = [{"rooms": ["101"], "primary": "nurse", "secondary": "nurse2"},
               {"beds": ["102/1"], "primary": "nurse2", "secondary": "nurse"},
               {"beds": ["102/2"], "primary": "aide"}]
    if others:
        changes.append({"rooms": others, "primary": "charge"})
    return await api.post("/api/assignment", {"charge": "charge", "set": changes})


@pytest.fixture
def routed_server(make_ward, ward_server_factory):
    return ward_server_factory(make_ward(terminals=6, extra_toml=ROUTING))


async def routed(stream, device: str, call_id: int, test, timeout: float = 10.0) -> dict:
    """The call as the stream has it once `test(route)` holds."""
    state = await stream.wait_for(lambda s: (c := find_call(s, device, call_id)) is not None and c["route"] is not None
                                  and test(c["route"]), timeout=timeout)
    return find_call(state, device, call_id)


async def test_assignments_api_bulk_copy_rights_and_the_unassigned_warning(routed_server):
    ward = routed_server.ward
    async with staff(routed_server, "charge", "nurse") as people:
        charge, nurse = people["charge"].api, people["nurse"].api
        current = await nurse.get("/api/assignment")                  # any logged-in user may look
        assert current["shift"].endswith("/" + current["name"]) and current["starts"] <= time.time() < current["ends"]
        assert current["unassigned"] == [f"{b['room']}/{b['bed']}" for b in current["beds"]] and len(current["beds"]) == 6
        assert [s["user"] for s in current["staff"]] == ["nurse", "charge", "nurse2", "aide"]
        alarm = alarms_of(await nurse.state(), "unassigned_beds")
        assert len(alarm) == 1 and alarm[0]["text"].startswith("no nurse assigned: Room 101 bed 1, Room 101 bed 2")

        with pytest.raises(ApiError) as err:
            await nurse.post("/api/assignment", {"set": [{"rooms": ["101"], "primary": "nurse"}]})
        assert err.value.status == 403
        with pytest.raises(ApiError) as err:
            await charge.post("/api/assignment", {"set": [{"beds": ["101/7"], "primary": "zoe"}]})
        assert err.value.status == 400 and "'101/7'" in err.value.message and "'zoe'" in err.value.message
        with pytest.raises(ApiError) as err:
            await charge.post("/api/assignment", {"set": [{"rooms": ["101"], "primary": "tech"}]})
        assert err.value.status == 400 and "not care staff" in err.value.message

        async with nurse.events() as console:
            # "rooms 101-103 to nurse": one request
            view = await charge.post("/api/assignment", {"charge": "charge",
                                                         "set": [{"rooms": ["101", "102", "103"], "primary": "nurse"}]})
            assert view["unassigned"] == [] and view["charge"] == "charge"
            event = await console.wait_event(lambda n, p: n == "assignment" and p["assignment"]["unassigned"] == [])
            assert event["assignment"]["shift"] == current["shift"]
            await console.wait_for(lambda s: not alarms_of(s, "unassigned_beds"))
            await console.wait_event(lambda n, p: n == "staff" and p["staff"]["user"] == "nurse"
                                     and p["staff"]["on_shift"] is True)

        previous = await nurse.get("/api/assignment?shift=previous")
        assert previous["ends"] == current["starts"] and previous["charge"] is None
        with pytest.raises(ApiError) as err:
            await nurse.get("/api/assignment?shift=someday")
        assert err.value.status == 400
        # the previous shift planned, then copied onto the current one
        await charge.post("/api/assignment", {"shift": previous["shift"], "set": [{"rooms": ["101"], "primary": "nurse2"}]})
        copied = await charge.post("/api/assignment/copy", {"from": "previous"})
        assert copied["shift"] == current["shift"] and copied["charge"] is None
        assert [b["primary"] for b in copied["beds"]] == ["nurse2", "nurse2", None, None, None, None]
        assert len(alarms_of(await nurse.state(), "unassigned_beds")) == 1
    changes = db_rows(ward, "SELECT user, data FROM events WHERE kind = 'assignment_changed'")
    assert len(changes) == 1 + 6 + 2 and {c["user"] for c in changes} == {"charge"}
    assert db_rows(ward, "SELECT count(*) AS n FROM events WHERE kind = 'assignment_copied'")[0]["n"] == 1


async def test_a_call_reaches_the_assigned_nurse_first_and_decline_moves_it_to_the_buddy(routed_server):
    ward = routed_server.ward
    term = ward.terminal("bed-101-1")
    await term.connect()
    async with staff(routed_server, "charge", "nurse", "nurse2") as people:
        await assign_ward(people["charge"].api)
        nurse, buddy = people["nurse"].api, people["nurse2"].api
        async with nurse.events() as mine, buddy.events() as theirs:
            call_id = await term.place_call(wp.PATIENT)
            call = await routed(mine, term.device, call_id, lambda r: r["to"] == ["nurse"])
            assert call["route"]["step_name"] == "primary" and call["route"]["next_at"] > time.time()
            # the buddy's console has the call too (the ward's), but it is not routed to her yet
            assert find_call(theirs.state, term.device, call_id) is not None or \
                await theirs.wait_for(lambda s: find_call(s, term.device, call_id) is not None)

            declined = await nurse.decline(call["id"], "busy")
            assert declined["route"]["to"] == ["nurse", "nurse2"] and declined["route"]["declined"] == ["nurse"]
            assert declined["route"]["step_name"] == "secondary"
            await routed(theirs, term.device, call_id, lambda r: "nurse2" in r["to"])
            with pytest.raises(ApiError) as err:
                await people["charge"].api.decline(call["id"])         # not routed to the charge nurse (yet)
            assert err.value.status == 409

            accepted = await buddy.accept(call["id"])
            assert accepted["state"] == "acknowledged" and accepted["acknowledged_by"] == "nurse2"
            assert accepted["route"]["accepted_by"] == "nurse2" and accepted["route"]["next_at"] is None
            msg = await term.wait_call_state(call_id, wp.ST_ACKNOWLEDGED)
            assert msg["by"] == "nurse2"
        # the report (the console's history) says who took it, at which step, and that it was passed on
        summary = (await people["charge"].api.get("/api/report?since=1h"))["summary"]
        rows = {(r["group_by"], r["group"]): r for r in summary}
        assert rows[("nurse", "nurse2")]["calls"] == 1 and rows[("nurse", "nurse2")]["times"]["accept"]["n"] == 1
        assert rows[("step", "secondary")]["calls"] == 1
        assert rows[("routing", "passed on at least once")]["calls"] == 1
    lines = [(e["kind"], e["user"]) for e in db_rows(ward, "SELECT * FROM events WHERE call = ? ORDER BY id", call["id"])]
    assert lines[:7] == [("call_placed", None), ("call_routed", None), ("call_declined", "nurse"),
                         ("call_passed_on", None), ("call_routed", None), ("call_acknowledged", "nurse2"),
                         ("call_accepted", "nurse2")]
    await term.close()


async def test_no_answer_passes_it_to_the_charge_nurse_and_then_to_everyone(routed_server):
    ward = routed_server.ward
    term = ward.terminal("bed-101-1")
    await term.connect()
    async with staff(routed_server, "charge", "nurse", "nurse2", "aide") as people:
        await assign_ward(people["charge"].api)
        async with people["charge"].api.events() as console:
            call_id = await term.place_call(wp.PATIENT)
            call = await routed(console, term.device, call_id, lambda r: r["step_name"] == "charge")
            assert call["route"]["to"] == ["nurse", "nurse2", "charge"]
            call = await routed(console, term.device, call_id, lambda r: r["step_name"] == "all")
            assert call["route"]["to"] == ["nurse", "nurse2", "charge", "aide"] and call["route"]["next_at"] is None
    passed = db_rows(ward, "SELECT wall, data FROM events WHERE call = ? AND kind = 'call_passed_on' ORDER BY id", call["id"])
    placed = db_rows(ward, "SELECT wall FROM events WHERE call = ? AND kind = 'call_placed'", call["id"])[0]["wall"]
    assert ['"why":"no answer"' in p["data"] for p in passed] == [True, True, True]
    # never early: each step had its whole wait
    for i, p in enumerate(passed):
        assert p["wall"] - placed >= (i + 1) * WAIT_S - 0.01, (i, p["wall"] - placed)
    await term.close()


async def test_a_logged_out_or_silent_nurse_is_skipped_and_the_call_says_so(routed_server):
    ward = routed_server.ward
    term, other = ward.terminal("bed-101-1"), ward.terminal("bed-102-1")
    await term.connect()
    await other.connect()
    async with staff(routed_server, "charge", "nurse", "nurse2") as people:
        await assign_ward(people["charge"].api)
        console = people["charge"].api
        # nurse logs out: a call of her bed goes to her buddy, and says why
        await people["nurse"].stop()
        await people["nurse"].api.post("/api/logout")
        async with console.events() as stream:
            await stream.wait_for(lambda s: any(p["user"] == "nurse" and p["why_not"] == "logged out" for p in s["staff"]))
            call_id = await term.place_call(wp.PATIENT)
            call = await routed(stream, term.device, call_id, lambda r: True)
            assert call["route"]["skipped"] == [{"user": "nurse", "why": "logged out"}]
            assert call["route"]["to"] == ["nurse2"] and call["route"]["step_name"] == "secondary"
            # nurse2's phone goes quiet (logged in, no heartbeat): her bed's call goes on
            await people["nurse2"].stop()
            state = await stream.wait_for(lambda s: any(p["user"] == "nurse2" and p["why_not"] == "phone silent"
                                                        for p in s["staff"]), timeout=PHONE_SILENT_S + 5)
            assert next(p for p in state["staff"] if p["user"] == "nurse2")["reachable"] is False
            # and the waiting call, whose only nurse went silent, passed on at once
            await routed(stream, term.device, call_id, lambda r: r["step_name"] == "charge")
            second = await other.place_call(wp.PATIENT)
            call = await routed(stream, other.device, second, lambda r: True)
            assert call["route"]["skipped"] == [{"user": "nurse2", "why": "phone silent"}, {"user": "nurse", "why": "logged out"}]
            assert call["route"]["to"] == ["charge"] and call["route"]["step_name"] == "charge"
    whys = [r["data"] for r in db_rows(ward, "SELECT data FROM events WHERE kind = 'staff_reachability' AND user = 'nurse2'")]
    assert any('"why":"phone silent"' in w for w in whys)
    await term.close()
    await other.close()


async def test_a_badge_in_moves_notify_to_the_room_the_nurse_is_in(routed_server):
    ward = routed_server.ward
    caller = ward.terminal("bed-101-1")
    room_102 = [ward.terminal("bed-102-1"), ward.terminal("bed-102-2")]
    room_103 = [ward.terminal("bed-103-1"), ward.terminal("bed-103-2")]
    for t in (caller, *room_102, *room_103):
        await t.connect()

    def notified(t, seconds=None, start=0):
        return [m for m in t.inbox[start:] if m["type"] == wp.COMMAND and m["cmd"] == CMD_NOTIFY
                and (seconds is None or m["arg"][2] == seconds)]

    def chimes(t):
        return [m for m in t.inbox if m["type"] == wp.COMMAND and m["cmd"] == wp.CMD_CHIME]

    async with staff(routed_server, "charge", "nurse") as people:
        await assign_ward(people["charge"].api)
        async with people["charge"].api.events() as console:
            room_102[0].presence(True, BADGES["nurse"])        # the nurse badges in at room 102
            await console.wait_for(lambda s: any(p["user"] == "nurse" and p["room"] == "102" for p in s["staff"]))
            room_103[1].presence(True, "")                    # and someone presses plain presence in room 103
            await console.wait_for(lambda s: next(r for r in s["rooms"] if r["id"] == "103")["presence"])
            call_id = await caller.place_call(wp.PATIENT)     # room 101's call, routed to the nurse
            for t in room_102:
                msg = await t.wait_for(lambda m: m["type"] == wp.COMMAND and m["cmd"] == CMD_NOTIFY)
                assert msg["arg"] == bytes([wp.PATIENT, wp.ALARM_LOW, 120])
            await room_103[1].wait_for(lambda m: m["type"] == wp.COMMAND and m["cmd"] == wp.CMD_CHIME)
            assert not chimes(room_102[0])                    # NOTIFY instead of the chime
            assert not notified(room_103[1])                  # plain presence: today's chime

            marks = [len(t.inbox) for t in room_102 + room_103]
            room_103[0].presence(True, BADGES["nurse"])       # she badges in at room 103: it moves with her
            await console.wait_for(lambda s: any(p["user"] == "nurse" and p["room"] == "103" for p in s["staff"]))
            for t, mark in zip(room_102, marks[:2]):
                await t.wait_for(lambda m: m["type"] == wp.COMMAND and m["cmd"] == CMD_NOTIFY and m["arg"][2] == 0,
                                 start=mark)
            for t, mark in zip(room_103, marks[2:]):
                await t.wait_for(lambda m: m["type"] == wp.COMMAND and m["cmd"] == CMD_NOTIFY and m["arg"][2] == 120,
                                 start=mark)
            room = next(r for r in (await people["charge"].api.state())["rooms"] if r["id"] == "103")
            assert "nurse" in room["staff"]
    kinds = [r["kind"] for r in db_rows(ward, "SELECT kind FROM events WHERE user = 'nurse' AND kind LIKE 'location_%' ORDER BY id")]
    assert kinds == ["location_registered", "location_updated"]
    for t in (caller, *room_102, *room_103):
        await t.close()


async def test_a_terminal_that_does_not_know_notify_chimes_instead(routed_server):
    ward = routed_server.ward
    caller = ward.terminal("bed-101-1")
    old = ward.terminal("bed-102-1", auto_result=False)        # answers every command itself, below
    for t in (caller, old):
        await t.connect()
    async with staff(routed_server, "charge", "nurse") as people:
        await assign_ward(people["charge"].api)
        async with people["charge"].api.events() as console:
            old.presence(True, BADGES["nurse"])
            await console.wait_for(lambda s: any(p["user"] == "nurse" and p["room"] == "102" for p in s["staff"]))
            await caller.place_call(wp.PATIENT)
            msg = await old.wait_for(lambda m: m["type"] == wp.COMMAND and m["cmd"] == CMD_NOTIFY)
            old.send(wp.RESULT, {"cmd_id": msg["cmd_id"], "ok": 0, "detail": "unknown command"})
            chime = await old.wait_for(lambda m: m["type"] == wp.COMMAND and m["cmd"] == wp.CMD_CHIME)
            assert chime["arg"] == bytes([wp.ALARM_LOW])
    for t in (caller, old):
        await t.close()


async def test_last_event_id_resumes_without_a_snapshot(routed_server):
    ward = routed_server.ward
    term = ward.terminal("bed-101-1")
    await term.connect()
    async with staff(routed_server, "charge") as people:
        api = people["charge"].api
        async with api.events() as first:
            assert first.events[0][0] == "snapshot"
            last = first.last_id
        call_id = await term.place_call(wp.BATHROOM)                  # missed while away
        async with api.events(last_event_id=last) as again:
            assert again.events[0][0] == "resumed" and again.events[0][1]["from"] == int(last.rpartition("-")[2])
            await again.wait_event(lambda n, p: n == "call" and p["call"]["call_id"] == call_id)
            assert "snapshot" not in [n for n, _ in again.events]
            seqs = [p["seq"] for _, p in again.events[1:]]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[0] == again.events[0][1]["from"] + 1
        for stale in (last.split("-")[0] + "-999999999", "0123abcd-1", "garbage"):
            async with api.events(last_event_id=stale) as fresh:   # not kept, another run, nonsense: a snapshot
                assert fresh.events[0][0] == "snapshot"
                assert find_call(fresh.state, term.device, call_id) is not None
    await term.close()


async def test_a_host_restart_resumes_the_route_where_it_was(make_ward, ward_server_factory):
    ward = make_ward(terminals=4, extra_toml=ROUTING.replace(f"patient = {WAIT_S}", "patient = 30"))
    server = ward_server_factory(ward)
    term = ward.terminal("bed-101-1")
    await term.connect()
    async with staff(server, "charge", "nurse", "nurse2") as people:
        await assign_ward(people["charge"].api)
        call_id = await term.place_call(wp.PATIENT)
        call = find_call(await people["nurse"].api.state(), term.device, call_id)
        before = await people["nurse"].api.decline(call["id"])
        assert before["route"]["step_name"] == "secondary"
    await term.close()
    server.restart()
    async with await server.login("charge", NURSE[1]) as api:
        after = find_call(await api.state(), term.device, call_id)["route"]
    assert (after["step_name"], after["to"], after["declined"]) == ("secondary", ["nurse", "nurse2"], ["nurse"])
    assert after["next_at"] == pytest.approx(before["route"]["next_at"])


async def test_the_pocket_heartbeat_answers_how_long_a_phone_may_be_silent(routed_server):
    async with await routed_server.login("nurse", NURSE[1]) as api:
        assert await api.pocket_heartbeat() == {"ok": True, "phone_silent_s": PHONE_SILENT_S}
    async with routed_server.api() as anonymous:
        with pytest.raises(ApiError) as err:
            await anonymous.post("/api/pocket/heartbeat", {})
        assert err.value.status == 401
