"""Property tests (hypothesis): round trips, whole sessions, and fuzzing every entry point that
takes bytes from the network. The only exception a receiver may see is wardproto.ProtocolError
(and EOFError from read_frame when the stream ends)."""
import asyncio
import hashlib
import hmac
import re
import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from .helpers import KEY_A, KEY_B, VECTORS, hb, pair, raw_frame, run_micropython, summary, wp

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LIMITS = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF}


def short_text(max_bytes=255):
    return st.text(max_size=80).filter(lambda s: len(s.encode()) <= max_bytes)


def field(kind):
    if kind in LIMITS:
        return st.integers(0, LIMITS[kind])
    if kind == "s":
        return short_text()
    if kind == "n":
        return st.binary(min_size=8, max_size=8)
    if kind == "h":
        return st.binary(min_size=1, max_size=wp.HWID_MAX)
    return st.binary(max_size=976)  # "b": the most a COMMAND arg can be


@st.composite
def message(draw, types=tuple(sorted(wp.SCHEMAS))):
    mtype = draw(st.sampled_from(types))
    fields = {name: draw(field(kind)) for name, kind in wp.SCHEMAS[mtype]}
    if mtype == wp.CALL:
        fields["kind"] = fields["priority"] = draw(st.integers(1, 5))
    if mtype == wp.CALL_STATE:
        fields["state"] = draw(st.integers(0, 4))
    return mtype, fields


keys = st.one_of(st.just(KEY_A), st.binary(min_size=32, max_size=32), st.binary(max_size=100))


@FAST
@given(msg=message(), key=keys, seq=st.integers(0, 0xFFFFFFFF), from_host=st.booleans())
def test_frame_round_trip(msg, key, seq, from_host):
    mtype, fields = msg
    mac = wp.Hmac(key)
    try:
        frame = wp.encode_frame(mac, mtype, seq, fields, from_host)
    except wp.ProtocolError as e:
        # only a body over MAX_BODY may be refused
        assert e.code == wp.E_MALFORMED and "too long" in e.message
        return
    assert wp.MIN_FRAME <= len(frame) <= wp.MAX_FRAME
    assert wp.frame_length(frame[:2]) == len(frame) - 2
    assert wp.peek_header(frame) == (mtype, 1 if from_host else 0, seq)
    assert wp.decode_frame(mac, frame, from_host) == dict(fields, type=mtype, seq=seq)
    body = frame[wp.HEADER_LEN:-wp.TAG_LEN]
    assert wp.encode_body(mtype, fields) == body
    assert wp.decode_body(mtype, body) == dict(fields, type=mtype)


@FAST
@given(mtype=st.sampled_from(sorted(wp.SCHEMAS)), data=st.data())
def test_encoder_refuses_out_of_range_values(mtype, data):
    schema = wp.SCHEMAS[mtype]
    name, kind = data.draw(st.sampled_from(schema))
    _, fields = data.draw(message(types=(mtype,)))
    if kind in LIMITS:
        bad = data.draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=LIMITS[kind] + 1),
                                  st.just("1"), st.just(None), st.just(1.0)))
    elif kind == "s":
        bad = data.draw(st.one_of(st.text(min_size=256, max_size=300).filter(lambda s: len(s.encode()) > 255),
                                  st.just(b"\xff"), st.just(b"\xed\xa0\x80"), st.just(7), st.just(None)))
    elif kind == "n":
        bad = data.draw(st.one_of(st.binary(max_size=7), st.binary(min_size=9, max_size=12),
                                  st.just("abcdefgh"), st.just(8), st.just(None)))
    elif kind == "h":
        bad = data.draw(st.one_of(st.just(b""), st.binary(min_size=wp.HWID_MAX + 1, max_size=wp.HWID_MAX + 40),
                                  st.just("246f28a1b2c3"), st.just(6), st.just(None)))
    else:
        bad = data.draw(st.one_of(st.just("text"), st.just(3), st.just(None), st.binary(min_size=984, max_size=990)))
    fields[name] = bad
    with pytest.raises(wp.ProtocolError) as e:
        wp.encode_frame(wp.Hmac(KEY_A), mtype, 1, fields, False)
    assert e.value.code == wp.E_MALFORMED


@FAST
@given(raw=st.binary(max_size=40))
def test_text_fields_are_strict_utf8_like_cpython(raw):
    # ERROR's detail is a text field; wardproto must agree with CPython's strict decoder
    body = b"\x01" + bytes([len(raw)]) + raw
    try:
        expected = raw.decode("utf-8")
    except UnicodeDecodeError:
        expected = None
    if expected is None:
        with pytest.raises(wp.ProtocolError):
            wp.decode_body(wp.ERROR, body)
    else:
        assert wp.decode_body(wp.ERROR, body)["detail"] == expected


@FAST
@given(script=st.lists(st.tuples(st.booleans(), message(types=tuple(t for t in sorted(wp.SCHEMAS)
                                                                    if t not in (wp.HELLO, wp.WELCOME)))),
                       max_size=25),
       key=st.binary(min_size=32, max_size=32), dn=st.binary(min_size=8, max_size=8),
       hn=st.binary(min_size=8, max_size=8))
def test_whole_session_both_directions(script, key, dn, hn):
    dev, host = pair(key, dn, hn)
    sent = {True: 0, False: 0}
    for from_host, (mtype, fields) in script:
        a, b = (host, dev) if from_host else (dev, host)
        try:
            frame = a.encode(mtype, fields)
        except wp.ProtocolError:
            continue  # refused (body too long): no sequence number is spent
        sent[from_host] += 1
        msg = b.decode(frame)
        assert msg == dict(fields, type=mtype, seq=a.tx_seq)
        assert b.rx_seq == a.tx_seq
        # the same frame again is a replay
        with pytest.raises(wp.ProtocolError) as e:
            b.decode(frame)
        assert e.value.code == wp.E_SEQUENCE
        # and sent back to its sender it is a reflection
        with pytest.raises(wp.ProtocolError) as e:
            a.decode(frame)
        assert e.value.code == wp.E_AUTH


# --- fuzzing: anything at all from the network ---

def only_protocol_errors(fn, *args):
    try:
        return fn(*args)
    except wp.ProtocolError as e:
        assert isinstance(e.code, int) and e.code in (wp.E_MALFORMED, wp.E_AUTH, wp.E_SEQUENCE, wp.E_UNSUPPORTED)
        assert isinstance(str(e), str)
        return None


def feed_all(frame, key=KEY_A):
    """Every receiving entry point, each given the same bytes."""
    mac = wp.Hmac(key)
    for from_host in (False, True):
        only_protocol_errors(wp.decode_frame, mac, frame, from_host)
    only_protocol_errors(wp.peek_header, frame)
    only_protocol_errors(wp.peek_device, frame)
    only_protocol_errors(wp.frame_length, frame[:2])
    only_protocol_errors(wp.accept_announce, mac, frame, b"\x01" * 8)
    dev, host = pair(key)
    only_protocol_errors(dev.decode, frame)
    only_protocol_errors(host.decode, frame)
    fresh_dev = wp.Session(key, False)
    only_protocol_errors(fresh_dev.accept_welcome, frame)
    only_protocol_errors(wp.Session(key, True).accept_hello, frame)
    for mtype in wp.SCHEMAS:
        only_protocol_errors(wp.decode_body, mtype, frame[wp.HEADER_LEN:])


def valid_frames():
    return st.builds(lambda m, seq, fh: wp.encode_frame(wp.Hmac(KEY_A), m[0], seq, m[1], fh),
                     message(types=tuple(t for t in sorted(wp.SCHEMAS) if t != wp.COMMAND)),
                     st.integers(0, 5), st.booleans())


@st.composite
def mutated(draw):
    frame = bytearray(draw(valid_frames()))
    how = draw(st.sampled_from(["flip", "truncate", "extend", "set", "insert", "delete", "retag"]))
    if how == "flip":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(frame) - 1))
            frame[i] ^= 1 << draw(st.integers(0, 7))
    elif how == "truncate":
        frame = frame[:draw(st.integers(0, len(frame) - 1))]
    elif how == "extend":
        frame += draw(st.binary(min_size=1, max_size=20))
    elif how == "set":
        i = draw(st.integers(0, len(frame) - 1))
        frame[i] = draw(st.integers(0, 255))
    elif how == "insert":
        i = draw(st.integers(0, len(frame)))
        frame[i:i] = draw(st.binary(min_size=1, max_size=4))
    elif how == "delete":
        i = draw(st.integers(0, len(frame) - 1))
        del frame[i:i + draw(st.integers(1, 4))]
    else:
        # a random body under a correct LEN and a valid tag: reaches the body parser
        body = draw(st.binary(max_size=60)) if draw(st.booleans()) else bytes(
            frame[wp.HEADER_LEN:-wp.TAG_LEN])[:draw(st.integers(0, 40))] + draw(st.binary(max_size=6))
        return raw_frame(KEY_A, frame[3], struct.unpack(">I", frame[5:9])[0], body, flags=frame[4])
    return bytes(frame)


@FUZZ
@given(data=st.binary(max_size=1100))
def test_fuzz_random_bytes(data):
    feed_all(data)


@FUZZ
@given(frame=mutated())
def test_fuzz_mutated_frames(frame):
    feed_all(frame)


@FUZZ
@given(mtype=st.sampled_from(sorted(wp.SCHEMAS)), body=st.binary(max_size=80), seq=st.integers(0, 3),
       flags=st.integers(0, 1))
def test_fuzz_validly_tagged_random_bodies(mtype, body, seq, flags):
    # with the right key every byte of the body reaches decode_body
    frame = raw_frame(KEY_A, mtype, seq, body, flags=flags)
    msg = only_protocol_errors(wp.decode_frame, wp.Hmac(KEY_A), frame, bool(flags))
    if msg is not None:
        # whatever decodes re-encodes to the same bytes (one encoding per message)
        fields = {k: v for k, v in msg.items() if k not in ("type", "seq")}
        assert wp.encode_frame(wp.Hmac(KEY_A), mtype, seq, fields, bool(flags)) == frame
    feed_all(frame)


async def read_all(data, chunks):
    """Frames read from a StreamReader fed data in pieces, until EOF or a ProtocolError."""
    reader = asyncio.StreamReader()
    pos = 0
    for c in chunks:
        reader.feed_data(data[pos:pos + c])
        pos += c
    reader.feed_data(data[pos:])
    reader.feed_eof()
    frames = []
    while True:
        try:
            frames.append(await asyncio.wait_for(wp.read_frame(reader), 2))
        except EOFError:
            return frames, "eof"
        except wp.ProtocolError:
            return frames, "error"


@FUZZ
@given(stream=st.one_of(st.binary(max_size=1200),
                        st.lists(st.one_of(valid_frames(), mutated(), st.binary(max_size=8)), max_size=5)
                        .map(b"".join)),
       chunks=st.lists(st.integers(0, 50), max_size=5))
@pytest.mark.timeout(120)
def test_fuzz_read_frame(stream, chunks):
    frames, end = asyncio.run(read_all(stream, chunks))
    pos = 0
    for f in frames:
        # each frame is exactly LEN + 2 bytes, a prefix of the stream, within the limits
        assert stream[pos:pos + len(f)] == f
        assert wp.MIN_FRAME <= len(f) <= wp.MAX_FRAME == 1024
        assert len(f) == wp.frame_length(f[:2]) + 2
        pos += len(f)
    assert end in ("eof", "error")


@FAST
@given(frames=st.lists(valid_frames(), min_size=1, max_size=6), chunks=st.lists(st.integers(1, 30), max_size=8))
def test_read_frame_splits_a_stream_exactly(frames, chunks):
    got, end = asyncio.run(read_all(b"".join(frames), chunks))
    assert got == frames and end == "eof"


@pytest.mark.timeout(60)
def test_micropython_fuzz():
    p = run_micropython(VECTORS / "fuzz_frames.py", "20240917", "3000")
    assert p.returncode == 0, p.stdout + p.stderr
    line = summary(p.stdout, "fuzz:")
    m = re.match(r"fuzz: (\d+) frames, (\d+) accepted, (\d+) rejected, (\d+) unexpected", line)
    assert m, line
    total, accepted, rejected, unexpected = map(int, m.groups())
    assert total == 3000 and unexpected == 0 and accepted + rejected == total
    assert rejected > 0 and accepted > 0  # the mutations reach both outcomes
