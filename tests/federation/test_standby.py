"""A standby ward host against a real primary (`wardcall serve`, killed with SIGKILL) over real
nats-server processes: it follows the primary's open calls, takes over once the primary is
silent (its host and its leaf node killed, as when its PC dies), holds the open calls as they were (acknowledged by whom, placed when), and the terminals'
re-announcement after WELCOME doubles none of them; a call placed during the outage arrives
once; the standby's events reach the hospital stream. The failover time is measured."""
from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import nats

from wardcall.client import WardApi, find_terminal
from wardcall.demo import firmware_files
from wardcall.config import load_config
from wardcall.federation.hubstream import ensure_hospital_stream
from wardcall.protocol import wardproto
from tests.faults.faultproxy import FaultProxy
from tests.faults.helpers import human_press
from tests.federation.conftest import hospital_events
from tests.fixtures.ward import SyncApi
from tests.fixtures.host import LOOPBACK, NURSE, free_port
from tests.support.simterm import SimTerminal
from tests.support.testca import copy_shared
from tests.support.waiting import async_wait_until, wait_until

TAKEOVER_AFTER_S = 1.0


def standby_toml(primary_text: str, primary_leaf: str, standby_leaf: str, ports: tuple[int, int, int]) -> str:
    text = primary_text.replace('database = "ward.db"', 'database = "standby.db"')
    for key, port in zip(("terminal_port", "discovery_port", "api_port"), ports):
        text = re.sub(rf"^{key} = \d+$", f"{key} = {port}", text, flags=re.M)
    text = text.replace(f'leaf_url = "{primary_leaf}"', f'leaf_url = "{standby_leaf}"\nstandby_of = "{primary_leaf}"\n'
                        f"takeover_after_s = {TAKEOVER_AFTER_S}")
    return text


class StandbyRig:
    """A federated ward's primary host (`wardcall serve`) and its standby (`wardcall standby` on
    its own ports, record and leaf node), both running."""

    def __init__(self, ward, primary, primary_leaf, standby: subprocess.Popen, ports: tuple[int, int, int]) -> None:
        self.ward, self.primary, self.primary_leaf, self.standby = ward, primary, primary_leaf, standby
        self.terminal_port = ports[0]                  # the standby's, for the terminals
        self.status_path, self.log_path = ward.dir / "standby-ready.json", ward.dir / "standby.log"

    def status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def open_calls(self) -> list[list] | None:
        """What the standby follows of the primary's open calls (its ready file)."""
        try:
            return sorted(json.loads(self.status_path.read_text())["open_calls"])
        except (OSError, ValueError, KeyError):
            return None

    def kill_primary(self) -> float:
        """The primary PC dies: its host and its leaf node with it. Returns the time."""
        killed = time.monotonic()
        self.primary.kill()
        self.primary_leaf.kill()
        return killed

    def wait_serving(self, timeout: float = 20) -> dict:
        def serving() -> dict | None:
            if self.standby.poll() is not None:
                raise AssertionError(f"the standby exited with {self.standby.returncode}:\n{self.log_path.read_text()}")
            try:
                ready = json.loads(self.status_path.read_text())
                with urllib.request.urlopen(f"https://{LOOPBACK}:{ready['api_port']}/api/health", timeout=1):
                    return ready
            except (OSError, ValueError, KeyError):
                return None
        return wait_until(serving, timeout, "the standby serving")

    def close(self) -> None:
        if self.standby.poll() is None:
            self.standby.terminate()
            self.standby.wait(10)
        print(f"--- {self.log_path} ---\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:]))


async def start_standby(hospital, ward, wid: str, ward_server_factory, standby_of: str | None = None,
                        primary_knows_standby: bool = False, hub_user=None, hub_login: dict | None = None) -> StandbyRig:
    """`standby_of`: where the standby reaches the primary's leaf node (a relay, to cut the link
    between the two PCs), the leaf node itself by default. `primary_knows_standby`: the
    primary's TOML gets standby_terminal, the standby's terminal address. `hub_user`: the
    standby's leaf node's login on the hub; `hub_login`: nats.connect's arguments for the hub
    (a secured hub), its client port in clear by default."""
    primary_leaf, standby_leaf = hospital.leaves[wid], hospital.leaf(wid, standby=True, hub_user=hub_user)
    nc = await nats.connect(**(hub_login or {"servers": [hospital.hub_url]}))
    await ensure_hospital_stream(nc.jetstream(), [wid], standby=[wid])
    await nc.close()
    ports = (free_port(), free_port(socket.SOCK_DGRAM), free_port())
    standby_path = ward.dir / "standby.toml"
    text = standby_toml(ward.config_path.read_text(), primary_leaf.url, standby_leaf.url, ports)
    if standby_of is not None:
        text = text.replace(f'standby_of = "{primary_leaf.url}"', f'standby_of = "{standby_of}"')
    standby_path.write_text(text)
    # the standby PC holds the ward CA and a host certificate from it, as the primary does:
    # the terminals verify whichever host answers against the CA they pin
    copy_shared(load_config(standby_path).tls)
    if primary_knows_standby:
        ward.config_path.write_text(ward.config_path.read_text().replace(
            "host_beat_s = 0.2\n", f'host_beat_s = 0.2\nstandby_terminal = "{LOOPBACK}:{ports[0]}"\n', 1))
    primary = ward_server_factory(ward)
    status_path, log_path = ward.dir / "standby-ready.json", ward.dir / "standby.log"
    with open(log_path, "w") as log:
        standby = subprocess.Popen([sys.executable, "-m", "wardcall.cli", "standby", "--config", str(standby_path),
                                    "--ready-file", str(status_path), "--log-level", "debug"],
                                   stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    return StandbyRig(ward, primary, primary_leaf, standby, ports)


async def test_the_standby_takes_over_with_every_open_call_once(nats_hospital, fed_ward, ward_server_factory):
    hospital = nats_hospital
    hospital.hub()
    ward = fed_ward(hospital, "a", terminals=2)
    rig = await start_standby(hospital, ward, "a", ward_server_factory)
    primary = rig.primary
    beds = [ward.terminal(0), ward.terminal(1)]
    try:
        for bed in beds:
            await bed.connect()
        patient = await beds[0].place_call(wardproto.PATIENT)
        code = await beds[1].place_call(wardproto.CODE_BLUE)
        bathroom = await beds[0].place_call(wardproto.BATHROOM)
        api = await primary.login()
        state = await api.state()
        host_id = {(c["device"], c["call_id"]): c["id"] for c in state["calls"]}
        await api.acknowledge(host_id[("bed-101-1", patient)])
        await api.close()
        placed_at = {(c["device"], c["call_id"]): c["placed_at"] for c in state["calls"]}

        want = sorted([["bed-101-1", patient, "acknowledged"], ["bed-101-2", code, "placed"], ["bed-101-1", bathroom, "placed"]])
        wait_until(lambda: rig.open_calls() == want, 15, "the standby following the primary's three open calls, one acknowledged")

        killed = rig.kill_primary()
        for bed in beds:
            await bed.close()
        ready = rig.wait_serving()
        failover_s = time.monotonic() - killed
        print(f"failover: primary killed -> standby serving in {failover_s:.2f} s (takeover_after_s {TAKEOVER_AFTER_S})")
        assert failover_s < TAKEOVER_AFTER_S + 8

        # the terminals know both hosts: they connect to the standby and, after WELCOME,
        # announce again every call still lit; one placed during the outage comes too
        beds = [SimTerminal.from_config(ward.device(i), host=LOOPBACK, port=ready["terminal_port"]) for i in range(2)]
        for bed in beds:
            await bed.connect()
        outage = bathroom + 1
        await beds[0].place_call(wardproto.PATIENT, call_id=patient)
        await beds[1].place_call(wardproto.CODE_BLUE, call_id=code)
        await beds[0].place_call(wardproto.BATHROOM, call_id=bathroom)
        await beds[0].place_call(wardproto.PATIENT, call_id=outage)
        # the terminal of the acknowledged call hears it is acknowledged
        await beds[0].wait_call_state(patient, wardproto.ST_ACKNOWLEDGED, timeout=5)

        api = WardApi(f"https://{LOOPBACK}:{ready['api_port']}")
        await api.login(*NURSE)
        calls = (await api.state())["calls"]
        await api.close()
        seen = sorted((c["device"], c["call_id"]) for c in calls)
        assert seen == sorted([("bed-101-1", patient), ("bed-101-2", code), ("bed-101-1", bathroom), ("bed-101-1", outage)]), \
            "every open call once, and the one placed during the outage"
        by_key = {(c["device"], c["call_id"]): c for c in calls}
        first, blue = by_key[("bed-101-1", patient)], by_key[("bed-101-2", code)]
        assert first["state"] == "acknowledged" and first["acknowledged_by"] == NURSE[0]
        assert blue["state"] == "placed" and blue["placed_at"] == placed_at[("bed-101-2", code)]
        assert first["id"] == host_id[("bed-101-1", patient)], "the call keeps its number across the failover"

        # the standby publishes from its own leaf node; the hospital stream has it too
        events = await hospital_events(hospital.hub_url, 1)

        async def outage_call_on_hub() -> bool:
            events = await hospital_events(hospital.hub_url, 1, timeout=1)
            return any(e.get("kind") == "call_placed" and (e["call"]["device"], e["call"]["call_id"]) == ("bed-101-1", outage)
                       for e in events)
        await async_wait_until(outage_call_on_hub, 15, "the standby's call on the hub's hospital stream")
        assert events
    finally:
        for bed in beds:
            await bed.close()
        rig.close()


async def test_a_terminal_that_knows_both_hosts_moves_to_the_standby_with_its_calls(
        nats_hospital, fed_ward, ward_server_factory, fleet, tmp_path):
    # the real firmware on an emulated board, provisioned with the standby's address
    # (config.json standby_host): the primary's PC dies with a call open at the bed; the board
    # finds the standby by itself, and its open call and one pressed during the outage are
    # each on the standby's board once
    hospital = nats_hospital
    hospital.hub()
    ward = fed_ward(hospital, "a", terminals=1, heartbeat_ms=300)
    rig = await start_standby(hospital, ward, "a", ward_server_factory)
    dev = ward.device(0)
    cfg = dict(dev, host=LOOPBACK, standby_host=LOOPBACK, standby_port=rig.terminal_port)
    board = fleet.add_board(dev["device_id"], flash_dir=tmp_path / "flash", files=firmware_files(cfg))
    primary_api = SyncApi(ward.api_url)
    standby_api = None
    try:
        online = lambda api: (find_terminal(api.state(), dev["device_id"]) or {}).get("connected")
        wait_until(lambda: online(primary_api), 30, "the board online at the primary")
        human_press(board, "call", "patient call")
        placed = wait_until(lambda: [c for c in primary_api.state()["calls"] if c["device"] == dev["device_id"]],
                            10, "the call on the primary's board")
        wait_until(lambda: rig.open_calls() == [[dev["device_id"], placed[0]["call_id"], "placed"]], 15,
                   "the standby following the open call")

        rig.kill_primary()
        ready = rig.wait_serving()
        human_press(board, "code", "code_blue call")      # pressed while the board looks for a host
        standby_api = SyncApi(f"https://{LOOPBACK}:{ready['api_port']}")
        wait_until(lambda: online(standby_api), 30, "the board online at the standby")

        def both_calls():
            calls = [c for c in standby_api.state()["calls"] if c["device"] == dev["device_id"]]
            return calls if len(calls) >= 2 else None
        calls = wait_until(both_calls, 15, "the open call and the outage's call on the standby's board")
        kinds = sorted((c["kind"], c["call_id"]) for c in calls)
        assert len(calls) == 2 and sorted(k for k, _ in kinds) == sorted([wardproto.CODE_BLUE, wardproto.PATIENT]), calls
        assert (wardproto.PATIENT, placed[0]["call_id"]) in kinds, "the open call keeps its id: not placed twice"
        assert "trying the standby host 127.0.0.1" in board.console()

        # the primary's PC comes back while the standby serves: told where the standby listens,
        # the primary does not serve too (the board would split the ward's calls between them)
        text = ward.config_path.read_text()
        ward.config_path.write_text(text.replace("host_beat_s = 0.2\n", "host_beat_s = 0.2\n"
                                                 f'standby_terminal = "{LOOPBACK}:{rig.terminal_port}"\n', 1))
        back = subprocess.run([sys.executable, "-m", "wardcall.cli", "serve", "--config", str(ward.config_path)],
                              capture_output=True, text=True, timeout=60)
        assert back.returncode == 2, (back.returncode, back.stderr[-2000:])
        assert "the standby host serves ward a" in back.stderr and "must not serve too" in back.stderr, back.stderr
        assert online(standby_api), "the board stays with the standby"
    finally:
        primary_api.close()
        if standby_api is not None:
            standby_api.close()
        rig.close()


async def test_a_cut_link_between_the_two_pcs_alone_is_no_takeover(nats_hospital, fed_ward, ward_server_factory):
    # the standby reaches the primary's leaf node through a relay; cutting it is the cable
    # between the two PCs pulled while both stay on the hospital network. The standby still
    # hears the primary's beat through the hub, so it must not take over (two hosts serving
    # would split the ward's calls); once the primary's PC really dies, it does
    hospital = nats_hospital
    hospital.hub()
    ward = fed_ward(hospital, "a", terminals=1)
    relay = FaultProxy(hospital.leaves["a"].node.client_port)
    rig = await start_standby(hospital, ward, "a", ward_server_factory, standby_of=f"nats://{LOOPBACK}:{relay.port}")
    bed = ward.terminal(0)
    try:
        await bed.connect()
        call = await bed.place_call(wardproto.PATIENT)
        beats = lambda path: rig.status().get("beats", {}).get(path, 0)
        await async_wait_until(lambda: beats("direct") > 0 and beats("hub") > 0 and rig.open_calls() == [["bed-101-1", call, "placed"]],
                   15, "the standby following the primary on both paths")

        relay.cut("reset")
        cut_at = beats("hub")
        # takeover_after_s is 1 s and the primary beats every 0.2 s: 20 beats through the hub
        # after the cut are 4 s with the direct path silent, four times the takeover delay
        await async_wait_until(lambda: beats("hub") >= cut_at + 20, 20, "the primary's beat through the hub after the cut")
        direct_after_cut = beats("direct")
        status = rig.status()
        assert rig.standby.poll() is None and status.get("state") == "following", (status, rig.log_path.read_text()[-3000:])
        assert "taking over" not in rig.log_path.read_text()
        # a call placed after the cut reaches the standby too, through the hub
        second = await bed.place_call(wardproto.BATHROOM)
        await async_wait_until(lambda: rig.open_calls() == sorted([["bed-101-1", call, "placed"], ["bed-101-1", second, "placed"]]),
                   15, "the call placed after the cut followed through the hub")
        assert beats("direct") == direct_after_cut, "the direct path was cut"

        rig.kill_primary()
        await bed.close()
        ready = rig.wait_serving()
        api = WardApi(f"https://{LOOPBACK}:{ready['api_port']}")
        await api.login(*NURSE)
        calls = (await api.state())["calls"]
        await api.close()
        assert sorted((c["device"], c["call_id"]) for c in calls) == [("bed-101-1", call), ("bed-101-1", second)]
    finally:
        await bed.close()
        relay.close()
        rig.close()


async def test_a_primary_that_finds_its_standby_serving_stops_serving(nats_hospital, fed_ward, ward_server_factory):
    # the worst partition: the link between the two PCs and the hub both gone, so the standby
    # hears no beat and takes over while the primary still serves. As soon as the primary
    # reaches the standby's terminal port it stops serving (exit 2, as it would at its start):
    # its terminal moves to the standby and announces its call there, and the ward is whole
    hospital = nats_hospital
    hospital.hub()
    ward = fed_ward(hospital, "a", terminals=1)
    relay = FaultProxy(hospital.leaves["a"].node.client_port)
    rig = await start_standby(hospital, ward, "a", ward_server_factory, standby_of=f"nats://{LOOPBACK}:{relay.port}",
                              primary_knows_standby=True)
    bed = ward.terminal(0)
    moved = None
    try:
        await bed.connect()
        call = await bed.place_call(wardproto.PATIENT)
        beats = lambda path: rig.status().get("beats", {}).get(path, 0)
        await async_wait_until(lambda: beats("direct") > 0 and beats("hub") > 0, 15, "the standby following on both paths")

        relay.cut("reset")
        hospital.hub_server.stop()
        ready = await asyncio.to_thread(rig.wait_serving)
        await async_wait_until(lambda: rig.primary.proc.poll() is not None, 15, "the primary to stop serving")
        log = rig.primary.log_text()
        assert rig.primary.proc.returncode == 2, log[-3000:]
        assert "the standby host at" in log and "serves ward a" in log and "must not serve too" in log, log[-3000:]
        await asyncio.wait_for(bed.closed.wait(), 5)

        # the terminal knows both hosts: it connects to the standby and announces its call again
        moved = SimTerminal.from_config(ward.device(0), host=LOOPBACK, port=ready["terminal_port"])
        await moved.connect()
        await moved.place_call(wardproto.PATIENT, call_id=call)
        api = WardApi(f"https://{LOOPBACK}:{ready['api_port']}")
        await api.login(*NURSE)
        calls = (await api.state())["calls"]
        await api.close()
        assert [(c["device"], c["call_id"]) for c in calls] == [("bed-101-1", call)], "the call once, on the serving host"
    finally:
        await bed.close()
        if moved is not None:
            await moved.close()
        relay.close()
        rig.close()
