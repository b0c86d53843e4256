"""Hostile input on the terminal port (TCP) against the real host: wrong keys, replays, one device
claiming to be another, oversized and truncated frames, random authentic frames, and hundreds of
half-open and slow connections. The wire parser itself is fuzzed in tests/protocol
(test_properties.py: hypothesis on CPython; test_micropython_fuzz: random frames on MicroPython);
these tests are about what the host does with such input in a live session."""
from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import struct

import pytest

from tests.faults.ledger import db_rows
from wardcall.client import alarms_of, find_call, find_terminal
from wardcall.protocol import wardproto as wp
from tests.support.simterm import Refused, SimTerminal, open_terminal_connection

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]


class RawTerminal:
    """A terminal that writes exactly the bytes it is told to, keeping every byte it sent."""

    def __init__(self, device: str, key: bytes, port: int) -> None:
        self.device, self.key, self.port = device, key, port
        self.sent: list[bytes] = []

    async def open(self):
        self.reader, self.writer = await open_terminal_connection("127.0.0.1", self.port)

    def write(self, data: bytes) -> None:
        self.sent.append(data)
        self.writer.write(data)

    async def handshake(self) -> dict:
        await self.open()
        self.session = wp.Session(self.key, False)
        self.write(self.session.hello(self.device, "raw-1", "raw", 0, b"raw-1"))
        return self.session.accept_welcome(await asyncio.wait_for(wp.read_frame(self.reader), 5))

    async def closed_by_host(self, timeout: float = 5.0) -> bool:
        """True when the host closes the connection (reads until EOF, frames ignored)."""
        try:
            async def drain():
                while await self.reader.read(4096):
                    pass
            await asyncio.wait_for(drain(), timeout)
            return True
        except (ConnectionError, OSError):
            return True
        except (asyncio.TimeoutError, TimeoutError):
            return False

    def close(self) -> None:
        self.writer.close()


def key_of(ward, i: int) -> bytes:
    return wp.key_from_hex(ward.device(i)["key"])


def rows(ward, query, *args):
    return db_rows(ward.database, query, *args)


async def test_replayed_frames_are_refused_and_count_nothing(make_ward, ward_server_factory):
    ward = make_ward(terminals=2, heartbeat_ms=500)
    server = ward_server_factory(ward)
    dev = ward.device(0)["device_id"]
    # a genuine session: HELLO, then one CALL, all bytes kept by the "eavesdropper"
    victim = RawTerminal(dev, key_of(ward, 0), ward.terminal_port)
    await victim.handshake()
    call = victim.session.encode(wp.CALL, {"call": 7, "kind": wp.PATIENT, "priority": wp.PATIENT, "age_ms": 0})
    victim.write(call)
    ack = victim.session.decode(await asyncio.wait_for(wp.read_frame(victim.reader), 5))
    while ack["type"] != wp.CALL_ACK:
        ack = victim.session.decode(await asyncio.wait_for(wp.read_frame(victim.reader), 5))
    # the same frame again in the same session (a duplicate on the wire): the stream is not
    # trusted any more, the host closes it
    victim.write(call)
    assert await victim.closed_by_host()
    # the whole recorded conversation replayed on a new connection: the replayed HELLO may get
    # a WELCOME, but the replayed CALL is tagged with the old session's key
    attacker = RawTerminal(dev, b"", ward.terminal_port)
    await attacker.open()
    for frame in victim.sent:
        attacker.write(frame)
    assert await attacker.closed_by_host()
    assert [(r["device"], r["call_id"]) for r in rows(ward, "SELECT * FROM calls")] == [(dev, 7)]
    assert len(rows(ward, "SELECT * FROM events WHERE kind = 'call_placed'")) == 1
    assert rows(ward, "SELECT * FROM events WHERE kind = 'frame_rejected'")


async def test_a_replayed_hello_does_not_cut_off_the_real_terminal(make_ward, ward_server_factory):
    """A captured HELLO verifies (it is genuine), but whoever replays it cannot go on: the real
    terminal's session must not be the price of it."""
    ward = make_ward(terminals=2, heartbeat_ms=500)
    server = ward_server_factory(ward)
    dev = ward.device(0)["device_id"]
    spy = RawTerminal(dev, key_of(ward, 0), ward.terminal_port)
    await spy.handshake()
    hello = spy.sent[0]
    spy.close()
    real = ward.terminal(0)
    await real.connect()
    replays = []
    for _ in range(3):
        r = RawTerminal(dev, b"", ward.terminal_port)
        await r.open()
        r.write(hello)
        replays.append(r)
    await asyncio.sleep(0)          # let the host take the replays
    for r in replays:
        await r.closed_by_host(0.5 * 3 + 1)
    cut_off = real.closed.is_set()
    if not cut_off:
        await real.place_call(wp.PATIENT)
    await real.close()
    assert not cut_off, ("a replayed HELLO replaced the real terminal's session (hub.attach on a "
                         "verified HELLO closes the old one before the newcomer proved it has the key)")


async def test_device_a_claiming_to_be_b(make_ward, ward_server_factory):
    ward = make_ward(terminals=2, heartbeat_ms=500)
    server = ward_server_factory(ward)
    a_dev, b_dev = ward.device(0)["device_id"], ward.device(1)["device_id"]
    b = ward.terminal(1)
    await b.connect()
    # A's key, B's name: refused before anything is accepted; B's own session untouched
    impostor = SimTerminal(b_dev, key_of(ward, 0), "127.0.0.1", ward.terminal_port)
    with pytest.raises(Refused):
        await impostor.connect()
    # A in its own session sends a frame lifted from B's session: refused, A's session ends
    # (B's next frame, built without spending B's own sequence number)
    lifted = wp.encode_frame(b._session._mac, wp.CALL, b._session.tx_seq + 1,
                             {"call": 99, "kind": wp.CODE_BLUE, "priority": wp.CODE_BLUE, "age_ms": 0}, False)
    a = RawTerminal(a_dev, key_of(ward, 0), ward.terminal_port)
    await a.handshake()
    a.write(lifted)
    assert await a.closed_by_host()
    assert not b.closed.is_set()
    await b.place_call(wp.PATIENT)          # B carries on
    async with await server.login() as api:
        state = await api.state()
    assert [(c["device"], c["kind_name"]) for c in state["calls"]] == [(b_dev, "patient")]
    refused = [json.loads(r["data"]) for r in rows(ward, "SELECT * FROM events WHERE kind = 'auth_refused'")]
    assert [(r.get("claimed_device", b_dev), r["reason"]) for r in refused] == [(b_dev, "wrong key")]
    assert find_terminal(state, b_dev)["connected"]
    await b.close()


async def test_oversized_and_truncated_frames_in_a_session(make_ward, ward_server_factory):
    ward = make_ward(terminals=3, heartbeat_ms=500)
    server = ward_server_factory(ward)
    bystander = ward.terminal(2)
    await bystander.connect()

    def frame(t: RawTerminal, body_len: int) -> bytes:
        f = t.session.encode(wp.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 1})
        return struct.pack(">H", body_len) + f[2:]

    cases = {
        "length beyond MAX_FRAME": lambda t: struct.pack(">H", wp.MAX_FRAME) + os.urandom(64),
        "length 0xffff": lambda t: b"\xff\xff" + os.urandom(2000),
        "length below the minimum": lambda t: b"\x00\x05" + os.urandom(5),
        "length says more than follows, then EOF": lambda t: frame(t, 200)[:60],
        "half a frame, then silence": lambda t: t.session.encode(wp.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 1})[:20],
        "a valid frame with 1000 bytes of trailing junk": lambda t: t.session.encode(wp.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 1}) + os.urandom(1000),
    }
    for i, (name, make) in enumerate(cases.items()):
        t = RawTerminal(ward.device(i % 2)["device_id"], key_of(ward, i % 2), ward.terminal_port)
        await t.handshake()
        data = make(t)
        t.write(data)
        if "EOF" in name:       # TLS has no half-close: the TCP stream ends under it (a vanished peer)
            t.writer.get_extra_info("socket").shutdown(socket.SHUT_WR)
        # closed at once, or (silence) after the dead-link time of 3 heartbeats
        assert await t.closed_by_host(5), name
        t.close()
    assert not bystander.closed.is_set()
    await bystander.place_call(wp.PATIENT)
    rejected = rows(ward, "SELECT * FROM events WHERE kind = 'frame_rejected'")
    assert len(rejected) >= 4, rejected
    assert "Traceback" not in server.log_text()
    await bystander.close()


async def test_random_authentic_frames_never_hurt_the_host(make_ward, ward_server_factory):
    """Frames with a valid tag and sequence but random type, flags and body (what a buggy or
    compromised terminal with its own key could send): ERROR or a closed session, never a crash,
    a stray call or a traceback."""
    ward = make_ward(terminals=2, heartbeat_ms=1000)
    server = ward_server_factory(ward)
    rng = random.Random(20251125)
    dev = ward.device(0)["device_id"]
    t = None
    errors = closes = 0
    for n in range(300):
        if t is None:
            t = RawTerminal(dev, key_of(ward, 0), ward.terminal_port)
            await t.handshake()
        mtype = rng.choice([wp.HELLO, wp.WELCOME, wp.HEARTBEAT, wp.CALL, wp.CALL_ACK, wp.CALL_STATE, wp.PRESENCE,
                            wp.CANCEL, wp.FAULT, wp.COMMAND, wp.RESULT, wp.ERROR, wp.DISCOVER, wp.ANNOUNCE,
                            rng.randrange(256)])
        body = os.urandom(rng.choice([0, 1, 5, 6, 9, 10, 23, rng.randrange(0, 300)]))
        if mtype == wp.CALL:
            # well-formed calls with bad kinds, priorities or ages (kinds 1..5 would be real calls)
            body = struct.pack(">IBBI", rng.randrange(1 << 32), rng.choice([0, 6, 7, 255]), rng.randrange(256), rng.randrange(1 << 32))
        flags = rng.choice([0, 0, 0, 1, 2, 0x80])
        seq = (t.session.tx_seq + 1) & 0xFFFFFFFF
        raw = struct.pack(">HBBBI", 7 + len(body) + 32, 1, mtype & 0xFF, flags, seq) + body
        t.write(raw + t.session._mac.digest(raw))       # a valid tag with the session key
        t.session.tx_seq = seq
        # the host answers ERROR and goes on, or closes
        try:
            await asyncio.wait_for(wp.read_frame(t.reader), 0.3)
            errors += 1
        except (asyncio.TimeoutError, TimeoutError):
            continue
        except (EOFError, asyncio.IncompleteReadError, ConnectionError, wp.ProtocolError):
            closes += 1
            t.close()
            t = None
    if t is not None:
        t.close()
    async with await server.login() as api:
        state = await api.state()
    assert state["calls"] == [], "no random frame became a call"
    log = server.log_text()
    assert "Traceback" not in log and "failed" not in log.replace("login_failed", ""), log[-3000:]
    good = ward.terminal(1)
    await good.connect()
    await good.place_call(wp.PATIENT)
    await good.close()
    assert errors + closes > 0


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_hundreds_of_half_open_and_slow_connections_do_not_starve_terminals(make_ward, ward_server_factory):
    ward = make_ward(terminals=4, heartbeat_ms=500)
    server = ward_server_factory(ward)
    early = ward.terminal(0)
    await early.connect()
    hostile: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    # 300 connections that never say anything (half-open: the peer is gone, nothing arrives)
    for _ in range(300):
        hostile.append(await asyncio.open_connection("127.0.0.1", ward.terminal_port))
    # 100 slow-loris HELLOs: a plausible length, then one byte at a time
    slow = []
    for _ in range(100):
        r, w = await asyncio.open_connection("127.0.0.1", ward.terminal_port)
        w.write(b"\x00\x80")
        slow.append(w)
        hostile.append((r, w))

    async def trickle():
        for _ in range(40):
            for w in slow:
                if not w.is_closing():
                    w.write(b"\x01")
            await asyncio.sleep(0.25)
    trickler = asyncio.ensure_future(trickle())
    terms = []
    try:
        # real terminals still connect and their calls reach the console within the standard's 4 s
        async with await server.login() as api, api.events() as console:
            terms = [ward.terminal(i) for i in (1, 2, 3)]
            for t in terms:
                await asyncio.wait_for(t.connect(), 4)
            for t in [early, *terms]:
                cid = await t.place_call(wp.PATIENT, timeout=4)
                await console.wait_for(lambda s: find_call(s, t.device, cid), timeout=4)
            assert not early.closed.is_set(), "the terminal connected before the flood kept its session"
            assert not alarms_of(console.state, "terminal_offline")
        # the host ends what never became a session (handshake timeout, 5 s by default)
        async def ended(reader):
            try:
                while await reader.read(4096):
                    pass
            except (ConnectionError, OSError):
                pass
        waits = [asyncio.ensure_future(ended(r)) for r, _ in hostile]
        done, pending = await asyncio.wait(waits, timeout=15)
        lingering = len(pending)
        for p in pending:
            p.cancel()
    finally:
        trickler.cancel()
        for _, w in hostile:
            w.close()
        for t in [early, *terms]:
            await t.close()
    assert lingering == 0, f"{lingering} of {len(hostile)} hostile connections still open 15 s later"


async def test_a_session_silent_in_the_middle_of_a_frame_is_dropped_and_others_keep_their_heartbeats(
        make_ward, ward_server_factory):
    """The read loop has no per-frame timeout (SessionTimers keeps one deadline per session):
    a terminal that sends half a frame and nothing more is still dropped within three
    heartbeats, and is recorded as a dead link, while a terminal beside it keeps getting the
    host's heartbeats on time."""
    ward = make_ward(terminals=2, heartbeat_ms=200)
    server = ward_server_factory(ward)
    stalled = RawTerminal(ward.device(0)["device_id"], key_of(ward, 0), ward.terminal_port)
    await stalled.handshake()
    stalled.write(stalled.session.encode(wp.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 1}))
    beside = RawTerminal(ward.device(1)["device_id"], key_of(ward, 1), ward.terminal_port)
    await beside.handshake()

    async def heartbeats_heard(seconds: float) -> int:
        heard, end = 0, asyncio.get_running_loop().time() + seconds
        while (left := end - asyncio.get_running_loop().time()) > 0:
            try:
                frame = await asyncio.wait_for(wp.read_frame(beside.reader), left)
            except (asyncio.TimeoutError, TimeoutError):
                break
            heard += beside.session.decode(frame)["type"] == wp.HEARTBEAT
            beside.write(beside.session.encode(wp.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 1}))
        return heard
    listening = asyncio.ensure_future(heartbeats_heard(3.0))
    half = stalled.session.encode(wp.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 2})
    stalled.write(half[:len(half) // 2])
    started = asyncio.get_running_loop().time()
    assert await stalled.closed_by_host(timeout=5.0), "a session silent mid-frame was never dropped"
    dropped_after = asyncio.get_running_loop().time() - started
    # three heartbeats of 200 ms after its last whole frame, never sooner (bounds for a busy machine)
    assert 0.4 <= dropped_after <= 3.5, dropped_after
    # 3 s at a heartbeat each 200 ms: ~15; a host whose heartbeats waited on the stalled link would send far fewer
    assert await listening >= 8
    reasons = [json.loads(r["data"]).get("reason") for r in
               rows(ward, "SELECT * FROM events WHERE kind = 'terminal_disconnected' AND device = ?", ward.device(0)["device_id"])]
    assert any("dead link" in (r or "") for r in reasons), reasons
    stalled.close()
    beside.close()
