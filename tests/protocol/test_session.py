"""Session and discovery attacks: replay, reorder, cross-device, reflection, stale WELCOME,
spoofed ANNOUNCE, and an oversized frame refused before its body is read."""
import asyncio

import pytest

from .helpers import HWID, KEY_A, KEY_B, hb, pair, raw_frame, wp


def code_of(fn, *args):
    with pytest.raises(wp.ProtocolError) as e:
        fn(*args)
    return e.value.code


def test_replay_is_refused_and_changes_nothing():
    dev, host = pair()
    f1 = dev.encode(wp.HEARTBEAT, hb(1))
    f2 = dev.encode(wp.CALL, {"call": 1, "kind": 4, "priority": 4, "age_ms": 0})
    assert host.decode(f1)["seq"] == 1
    assert host.decode(f2)["seq"] == 2
    for old in (f1, f2):
        assert code_of(host.decode, old) == wp.E_SEQUENCE
    assert host.rx_seq == 2
    assert host.decode(dev.encode(wp.HEARTBEAT, hb(2)))["seq"] == 3


def test_reorder_is_refused():
    dev, host = pair()
    f1 = dev.encode(wp.HEARTBEAT, hb(1))
    f2 = dev.encode(wp.HEARTBEAT, hb(2))
    assert code_of(host.decode, f2) == wp.E_SEQUENCE   # skipped one
    host.decode(f1)
    host.decode(f2)
    dev.encode(wp.HEARTBEAT, hb(3))                     # lost on the way
    assert code_of(host.decode, dev.encode(wp.HEARTBEAT, hb(4))) == wp.E_SEQUENCE


def test_cross_device_frames_are_refused():
    dev_a, host_a = pair(KEY_A, device="bed-101-1")
    dev_b, host_b = pair(KEY_B, device="bed-102-1")
    fa = dev_a.encode(wp.HEARTBEAT, hb())
    fb = dev_b.encode(wp.HEARTBEAT, hb())
    assert code_of(host_b.decode, fa) == wp.E_AUTH
    assert code_of(host_a.decode, fb) == wp.E_AUTH
    assert code_of(dev_b.decode, host_a.encode(wp.HEARTBEAT, hb())) == wp.E_AUTH
    # the same key, but two sessions (other nonces): session keys differ
    dev_a2, host_a2 = pair(KEY_A, b"\x33" * 8, b"\x44" * 8)
    assert code_of(host_a2.decode, dev_a.encode(wp.HEARTBEAT, hb())) == wp.E_AUTH
    # the real frames still work afterwards
    assert host_a.decode(fa)["seq"] == 1 and host_b.decode(fb)["seq"] == 1


def test_reflected_frames_are_refused():
    dev, host = pair()
    fh = host.encode(wp.CALL_STATE, {"call": 1, "state": wp.ST_ACKNOWLEDGED, "by": "console"})
    assert code_of(host.decode, fh) == wp.E_AUTH          # host frame fed back to the host
    fd = dev.encode(wp.HEARTBEAT, hb())
    assert code_of(dev.decode, fd) == wp.E_AUTH           # device frame fed back to the device
    # the direction bit is covered by the tag: flipping it breaks the tag
    flipped = fh[:4] + bytes([fh[4] ^ wp.FLAG_FROM_HOST]) + fh[5:]
    assert code_of(host.decode, flipped) == wp.E_AUTH
    assert dev.decode(fh)["seq"] == 1 and host.decode(fd)["seq"] == 1


def test_reflected_handshake_frames():
    dev = wp.Session(KEY_A, False)
    hello = dev.hello("bed-101-1", "0.1.0", "esp32", 31, HWID)
    assert code_of(dev.accept_welcome, hello) == wp.E_AUTH     # own HELLO reflected
    host = wp.Session(KEY_A, True)
    host.accept_hello(hello)
    welcome = host.welcome(0, 1000)
    assert code_of(wp.Session(KEY_A, True).accept_hello, welcome) == wp.E_AUTH


def test_stale_welcome_is_refused():
    old_dev = wp.Session(KEY_A, False)
    host = wp.Session(KEY_A, True)
    host.accept_hello(old_dev.hello("bed-101-1", "0.1.0", "esp32", 31, HWID))
    stale = host.welcome(1000, 1000)
    # the terminal reconnects: a new Session, a new nonce
    dev = wp.Session(KEY_A, False)
    assert dev.nonce != old_dev.nonce
    dev.hello("bed-101-1", "0.1.0", "esp32", 31, HWID)
    assert code_of(dev.accept_welcome, stale) == wp.E_AUTH
    assert not dev.established
    # a WELCOME with another key, or a non-WELCOME, is refused too
    other = wp.Session(KEY_B, True)
    other.accept_hello(wp.Session(KEY_B, False).hello("bed-102-1", "0.1.0", "esp32", 31, HWID))
    assert code_of(dev.accept_welcome, other.welcome(0, 1000)) == wp.E_AUTH
    ann = wp.announce(wp.Hmac(KEY_A), dev.nonce, "10.0.0.1", 7300)
    assert code_of(dev.accept_welcome, ann) == wp.E_SEQUENCE
    assert not dev.established


def test_hello_must_be_a_hello_with_seq_0():
    mac = wp.Hmac(KEY_A)
    disc = wp.discover(mac, "bed-101-1", b"\x01" * 8)
    assert code_of(wp.Session(KEY_A, True).accept_hello, disc) == wp.E_SEQUENCE
    hello1 = wp.encode_frame(mac, wp.HELLO, 1, {"device": "d", "nonce": b"\x01" * 8, "firmware": "",
                                                "board": "", "caps": 0, "hwid": HWID}, False)
    assert code_of(wp.Session(KEY_A, True).accept_hello, hello1) == wp.E_SEQUENCE


def test_hello_carries_the_boards_hardware_id():
    # the host tells two physical boards claiming one device id apart by it (SESSION.md, Identity)
    for hwid in (HWID, b"\x00", bytes(range(wp.HWID_MAX)), bytearray(b"\x01\x02")):
        dev = wp.Session(KEY_A, False)
        msg = wp.Session(KEY_A, True).accept_hello(dev.hello("bed-101-1", "0.1.0", "esp32", 31, hwid))
        assert msg["hwid"] == bytes(hwid) and type(msg["hwid"]) is bytes
        assert msg["device"] == "bed-101-1" and msg["nonce"] == dev.nonce
    # two boards, one device id and key: the same HELLO but for the hwid
    a = wp.Session(KEY_A, False)
    b = wp.Session(KEY_A, False)
    b.nonce = a.nonce
    ha = a.hello("bed-101-1", "0.1.0", "esp32", 31, b"\x24\x6f\x28\x00\x00\x01")
    hb_ = b.hello("bed-101-1", "0.1.0", "esp32", 31, b"\x24\x6f\x28\x00\x00\x02")
    assert ha != hb_ and wp.peek_device(ha) == wp.peek_device(hb_) == "bed-101-1"


@pytest.mark.parametrize("hwid", [b"", bytes(wp.HWID_MAX + 1), "246f28a1b2c3", None, 6])
def test_hello_refuses_a_missing_or_oversized_hardware_id(hwid):
    assert code_of(wp.Session(KEY_A, False).hello, "bed-101-1", "0.1.0", "esp32", 31, hwid) == wp.E_MALFORMED


def test_a_version_1_hello_gets_a_clean_version_error():
    # a terminal still on protocol version 1 (no hwid): refused for its version, not its body
    v1 = raw_frame(KEY_A, wp.HELLO, 0, b"\x09bed-101-1" + b"\x01" * 8 + b"\x050.1.0\x05esp32\x00\x1f", version=1)
    for fn in (wp.peek_header, wp.peek_device, wp.Session(KEY_A, True).accept_hello):
        with pytest.raises(wp.ProtocolError) as e:
            fn(v1)
        assert e.value.code == wp.E_UNSUPPORTED
        assert str(e.value) == "protocol version 1 is not supported (this side speaks 2)"
    # and its body under a version-2 header lacks the hwid
    body_only = raw_frame(KEY_A, wp.HELLO, 0, v1[wp.HEADER_LEN:-wp.TAG_LEN])
    with pytest.raises(wp.ProtocolError) as e:
        wp.Session(KEY_A, True).accept_hello(body_only)
    assert e.value.code == wp.E_MALFORMED and "truncated at hwid" in str(e.value)


def test_replayed_hello_gives_the_replayer_nothing():
    # The host cannot tell a replayed HELLO from a fresh one (see PROTOCOL.md, weaknesses), but the
    # session key depends on its own fresh nonce, so the replayer can neither read nor forge frames.
    dev, host = pair()
    hello = dev.hello("bed-101-1", "0.1.0", "esp32", 31, HWID)
    host2 = wp.Session(KEY_A, True)
    host2.accept_hello(hello)
    host2.welcome(0, 1000)
    recorded = dev.encode(wp.HEARTBEAT, hb())
    assert code_of(host2.decode, recorded) == wp.E_AUTH


def test_not_established():
    s = wp.Session(KEY_A, False)
    assert code_of(s.encode, wp.HEARTBEAT, hb()) == wp.E_SEQUENCE
    assert code_of(s.decode, b"") == wp.E_SEQUENCE
    assert code_of(wp.Session(KEY_A, True).welcome, 0, 1000) == wp.E_MALFORMED  # no HELLO yet


def test_authentic_but_malformed_frame_keeps_the_session_in_step():
    # SESSION.md: the host answers a kind/priority mismatch with ERROR and carries on
    dev, host = pair()
    bad = dev.encode(wp.CALL, {"call": 5, "kind": wp.CODE_BLUE, "priority": 2, "age_ms": 0})
    assert code_of(host.decode, bad) == wp.E_MALFORMED
    assert host.rx_seq == 1
    assert code_of(host.decode, bad) == wp.E_SEQUENCE   # and it cannot be replayed
    assert host.decode(dev.encode(wp.HEARTBEAT, hb()))["seq"] == 2


def test_refused_encode_spends_no_sequence_number():
    dev, host = pair()
    with pytest.raises(wp.ProtocolError):
        dev.encode(wp.FAULT, {"code": 1, "active": 1, "detail": "x" * 300})
    assert dev.tx_seq == 0
    assert host.decode(dev.encode(wp.HEARTBEAT, hb()))["seq"] == 1


def test_sequence_wraps_in_step():
    dev, host = pair()
    dev.tx_seq = host.rx_seq = 0xFFFFFFFE
    assert host.decode(dev.encode(wp.HEARTBEAT, hb()))["seq"] == 0xFFFFFFFF
    assert host.decode(dev.encode(wp.HEARTBEAT, hb()))["seq"] == 0


# --- discovery ---

def test_announce_answers_only_our_discover():
    mac = wp.Hmac(KEY_A)
    nonce = wp.new_nonce()
    disc = wp.discover(mac, "bed-101-1", nonce)
    assert wp.peek_device(disc) == "bed-101-1"
    msg = wp.decode_frame(mac, disc, False)
    good = wp.announce(mac, msg["nonce"], "127.0.0.1", 7300)
    assert wp.accept_announce(mac, good, nonce) == ("127.0.0.1", 7300)
    # stale: answers an earlier DISCOVER
    assert code_of(wp.accept_announce, mac, good, wp.new_nonce()) == wp.E_AUTH


def test_spoofed_announce_is_refused():
    nonce = wp.new_nonce()
    mac = wp.Hmac(KEY_A)
    # an attacker that saw the DISCOVER knows the nonce but not the key
    spoof = wp.announce(wp.Hmac(KEY_B), nonce, "10.6.6.6", 7300)
    assert code_of(wp.accept_announce, mac, spoof, nonce) == wp.E_AUTH
    # altering a real ANNOUNCE's address breaks its tag
    real = wp.announce(mac, nonce, "10.0.0.1", 7300)
    altered = real.replace(b"10.0.0.1", b"10.6.6.6")
    assert code_of(wp.accept_announce, mac, altered, nonce) == wp.E_AUTH
    # a DISCOVER reflected back, and a WELCOME, are not ANNOUNCEs
    assert code_of(wp.accept_announce, mac, wp.discover(mac, "bed-101-1", nonce), nonce) == wp.E_AUTH
    host = wp.Session(KEY_A, True)
    dev = wp.Session(KEY_A, False)
    dev.nonce = nonce
    host.accept_hello(dev.hello("bed-101-1", "", "", 0, HWID))
    assert code_of(wp.accept_announce, mac, host.welcome(0, 1000), nonce) == wp.E_MALFORMED


# --- an oversized frame is refused from its LEN field, before its body is read ---

@pytest.mark.parametrize("prefix", [b"\x03\xff", b"\x04\x00", b"\xff\xff", b"\x00\x26", b"\x00\x00"])
@pytest.mark.timeout(30)
def test_read_frame_refuses_impossible_length_without_reading_the_body(prefix):
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(prefix + b"\xaa" * 100)   # no EOF: reading the body would wait for ever
        with pytest.raises(wp.ProtocolError) as e:
            await asyncio.wait_for(wp.read_frame(reader), 2)
        assert e.value.code == wp.E_MALFORMED
        # only the 2 LEN bytes were consumed
        assert await reader.readexactly(100) == b"\xaa" * 100
    asyncio.run(go())


@pytest.mark.timeout(30)
def test_read_frame_largest_allowed_frame():
    frame = wp.encode_frame(wp.Hmac(KEY_A), wp.COMMAND, 1, {"cmd_id": 1, "cmd": 4, "arg": bytes(976)}, True)
    assert len(frame) == wp.MAX_FRAME

    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(frame)
        reader.feed_eof()
        assert await wp.read_frame(reader) == frame
        with pytest.raises(EOFError):
            await wp.read_frame(reader)
    asyncio.run(go())


@pytest.mark.timeout(30)
def test_read_frame_truncated_stream_is_eof():
    frame = wp.encode_frame(wp.Hmac(KEY_A), wp.HEARTBEAT, 1, hb(), False)

    async def go():
        for cut in (0, 1, 2, 20, len(frame) - 1):
            reader = asyncio.StreamReader()
            reader.feed_data(frame[:cut])
            reader.feed_eof()
            with pytest.raises(EOFError):
                await wp.read_frame(reader)
    asyncio.run(go())


@pytest.mark.timeout(30)
def test_oversized_frame_over_tcp_is_refused_at_once():
    # a peer announces a 64 KiB frame and then sends nothing: the receiver refuses it right away
    async def go():
        result = asyncio.get_running_loop().create_future()

        async def serve(reader, writer):
            try:
                await asyncio.wait_for(wp.read_frame(reader), 5)
                result.set_result("read")
            except wp.ProtocolError as e:
                result.set_result(e.code)
            except Exception as e:  # pragma: no cover - reported below
                result.set_result(repr(e))
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\xff\xff" + b"\x01\x03\x00")
        await writer.drain()
        got = await asyncio.wait_for(result, 3)
        writer.close()
        server.close()
        await server.wait_closed()
        return got
    assert asyncio.run(go()) == wp.E_MALFORMED


def test_frame_length_limits():
    assert wp.frame_length(b"\x00\x27") == 39        # empty body: the smallest frame, 41 bytes
    assert wp.frame_length(b"\x03\xfe") == 1022      # the largest frame, 1024 bytes
    for bad in (b"\x00\x26", b"\x03\xff", b"", b"\x00", b"\x00\x27\x00"):
        assert code_of(wp.frame_length, bad) == wp.E_MALFORMED
