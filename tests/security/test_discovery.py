"""Spoofed UDP discovery: answers from an impostor to a real terminal (emulated board, real
firmware), and a flood of forged DISCOVERs at the real host."""
from __future__ import annotations

import asyncio
import os
import socket
import threading

import pytest

from tests.faults.helpers import press, wait_all_delivered
from tests.faults.ledger import Ledger, db_rows
from tests.security.flooders import discover_retrying
from wardcall.client import alarms_of
from wardcall.protocol import wardproto as wp


class Impostor:
    """Listens where the terminals broadcast DISCOVER. For each one it first sends forged
    ANNOUNCEs pointing at its own TCP trap (wrong key; stale nonce replayed from an earlier
    genuine answer; the genuine answer with the address altered), then relays the DISCOVER to
    the real host and the real answer back, so an honest answer does arrive last."""

    def __init__(self, host_discovery_port: int) -> None:
        self.real = host_discovery_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.trap = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.trap.bind(("127.0.0.1", 0))
        self.trap.listen(64)
        self.trap.settimeout(0.2)
        self.trap_port = self.trap.getsockname()[1]
        self.trapped = 0
        self.forged = 0
        self.genuine: list[bytes] = []
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self._udp, daemon=True), threading.Thread(target=self._tcp, daemon=True)]
        for t in self.threads:
            t.start()

    def _udp(self) -> None:
        relay = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        relay.settimeout(1.0)
        while not self.stop_flag.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            try:
                nonce = bytes(data[wp.HEADER_LEN + 1 + data[wp.HEADER_LEN]:][:wp.NONCE_LEN])
            except IndexError:
                continue
            forged = [wp.announce(wp.Hmac(os.urandom(32)), nonce, "127.0.0.1", self.trap_port)]
            if self.genuine:
                forged.append(self.genuine[-1])                          # stale nonce
                altered = bytearray(self.genuine[-1])
                altered[-40] ^= 0x01                                     # port changed, tag kept
                forged.append(bytes(altered))
            for f in forged:
                self.sock.sendto(f, addr)
                self.forged += 1
            if self.real is None:
                continue
            relay.sendto(data, ("127.0.0.1", self.real))
            try:
                answer, _ = relay.recvfrom(2048)
            except socket.timeout:
                continue
            self.genuine.append(answer)
            self.sock.sendto(answer, addr)

    def _tcp(self) -> None:
        while not self.stop_flag.is_set():
            try:
                conn, _ = self.trap.accept()
            except socket.timeout:
                continue
            self.trapped += 1
            conn.close()

    def close(self) -> None:
        self.stop_flag.set()
        for t in self.threads:
            t.join(2)
        self.sock.close()
        self.trap.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_spoofed_announces_are_ignored_by_real_terminals(make_terminals):
    imp = Impostor(None)
    try:
        # the boards broadcast to the impostor's port (as if it were the ward's)
        rig = make_terminals(3, discovery=True, wait=False, heartbeat_ms=1000, cfg_extra={"discovery_port": imp.port})
        imp.real = rig.ward.discovery_port
        rig.wait_online(timeout=60)
        for b in rig.boards:
            text = b.wait_console("link: online", 5)
            # the forged answers came first and were refused; the genuine one was taken
            assert text.index("ignored an ANNOUNCE") < text.index("link: online"), text[-2000:]
        ledger = Ledger()
        for i in range(3):
            press(rig, ledger, i, "call")
        placed = wait_all_delivered(rig, ledger, 20)
        ledger.check(rig.ward.database, placed)
        assert imp.forged >= 3 and imp.trapped == 0, (imp.forged, imp.trapped)
    finally:
        imp.close()


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_forged_discovers_get_no_answer(make_ward, ward_server_factory):
    ward = make_ward(terminals=2)
    server = ward_server_factory(ward)
    dev = ward.device(0)
    loop = asyncio.get_running_loop()
    answers: list[bytes] = []

    class P(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            answers.append(data)

    transport, _ = await loop.create_datagram_endpoint(P, remote_addr=("127.0.0.1", ward.discovery_port))
    try:
        for i in range(1000):
            kind = i % 4
            if kind == 0:      # a real device name with the wrong key
                data = wp.discover(wp.Hmac(os.urandom(32)), dev["device_id"], os.urandom(8))
            elif kind == 1:    # unknown devices
                data = wp.discover(wp.Hmac(os.urandom(32)), f"ghost-{i}", os.urandom(8))
            elif kind == 2:    # noise
                data = os.urandom(1 + i % 1200)
            else:              # a genuine DISCOVER with one bit flipped
                good = bytearray(wp.discover(wp.Hmac(wp.key_from_hex(dev["key"])), dev["device_id"], os.urandom(8)))
                good[i % len(good)] ^= 1 << (i % 8)
                data = bytes(good)
            transport.sendto(data)
            if i % 100 == 0:
                await asyncio.sleep(0.01)
        # the real terminal still gets its answer (retrying, as a terminal does: its DISCOVER
        # may be dropped while the host's receive buffer is full of the flood)
        host, port = await discover_retrying(dev["device_id"], dev["key"], ward.discovery_port)
        assert port == ward.terminal_port
    finally:
        transport.close()
    assert answers == [], f"{len(answers)} answers to forged DISCOVERs"
    async with await server.login() as api:
        state = await api.state()
    assert server.proc.poll() is None
    # one source, one alarm (with the count and the latest ids), not one per forged name
    attempts = alarms_of(state, "device_trying_to_connect")
    assert [a["id"] for a in state["alarms"]] == ["attempt:127.0.0.1"], [a["id"] for a in state["alarms"]]
    assert attempts[0]["count"] >= 250 and len(attempts[0]["claimed_devices"]) <= 5
    # and the record holds the first attempt, not hundreds (a count a minute follows)
    rows = db_rows(ward.database, "SELECT * FROM events WHERE kind LIKE 'auth_refused%'")
    assert len(rows) == 1, f"{len(rows)} refusal rows"
    assert len([line for line in server.log_text().splitlines() if "refused" in line]) <= 6
