"""Generate the wardcall protocol test vectors (frames.json, hmac.json). CPython only.

This script is for ADDING vectors. It was run once and its output is committed; the tests never
regenerate the vectors, they only check wardproto against them (tests/vectors/check_vectors.py on
CPython and on MicroPython). Regenerating must not change an existing vector: if it does, the wire
format changed, which needs a new protocol VERSION, not new vectors. (Version 2 added the HELLO's
hwid field; VER is under every tag, so every frame vector was made anew then, and the version-1
HELLO is kept as a vector that version 2 refuses.)

    .venv/bin/python tests/vectors/make_vectors.py          # writes the JSON files
    .venv/bin/python tests/vectors/make_vectors.py --check  # fails if the files would change

Every frame here is built twice: by wardproto and by the small independent encoder below
(struct + CPython's own hmac module, body layouts written out from docs/PROTOCOL.md). The script
refuses to write anything unless both agree byte for byte. The HMAC vectors come from RFC 4231
(checked against CPython's hmac) and from CPython's hmac on seeded random keys and messages.

The JSON is written as raw UTF-8 (ensure_ascii=False): MicroPython's json module decodes a
surrogate-pair escape such as \ud83d\udc69 into garbage, so astral characters must not be escaped.

Vector file format (all bytes as lowercase hex; text fields as JSON strings; nonce ("n") and
bytes ("b") and hardware id ("h") fields as hex; integers as numbers):
  frames.json
    valid:      {name, key, from_host, frame, type, seq, fields}: decodes to exactly that and
                encode_frame(key, type, seq, fields, from_host) gives exactly frame.
    rejected:   {name, key, from_host, frame, error, peek_error, why}: decode_frame raises
                ProtocolError with code `error`; peek_header raises `peek_error` (null: it passes).
    handshakes: a HELLO/WELCOME exchange with fixed nonces, the derived session key, then session
                frames (steps) in both directions and frames each side must reject afterwards.
    discovery:  DISCOVER/ANNOUNCE with a fixed nonce, plus stale and spoofed ANNOUNCEs.
  hmac.json
    cases:      {name, key, msg, tag, source}: hmac_sha256(key, msg) starts with tag
                (RFC 4231 case 5 is truncated to 128 bits).
"""
import hashlib
import hmac
import json
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "firmware", "lib"))
import wardproto as wp  # noqa: E402

E_MALFORMED, E_AUTH, E_SEQUENCE, E_UNSUPPORTED = 1, 2, 4, 5
VERSION = 2

KEY_A = bytes(range(32))                                   # device bed-101-1
KEY_B = hashlib.sha256(b"wardcall test device bed-102-1").digest()

# --- an independent encoder, written from docs/PROTOCOL.md ---

LAYOUT = {  # type: [(field, kind)], kind as in PROTOCOL.md
    1: [("device", "s"), ("nonce", "n"), ("firmware", "s"), ("board", "s"), ("caps", "H"), ("hwid", "h")],
    2: [("nonce", "n"), ("echo", "n"), ("time", "I"), ("hb_ms", "H"), ("flags", "B")],
    3: [("status", "B"), ("pending", "B"), ("uptime", "I")],
    4: [("call", "I"), ("kind", "B"), ("priority", "B"), ("age_ms", "I")],
    5: [("call", "I"), ("of", "B")],
    6: [("call", "I"), ("state", "B"), ("by", "s")],
    7: [("on", "B"), ("staff", "s")],
    8: [("call", "I"), ("reason", "B"), ("age_ms", "I")],
    9: [("code", "B"), ("active", "B"), ("detail", "s")],
    10: [("cmd_id", "I"), ("cmd", "B"), ("arg", "b")],
    11: [("cmd_id", "I"), ("ok", "B"), ("detail", "s")],
    12: [("code", "B"), ("detail", "s")],
    20: [("device", "s"), ("nonce", "n")],
    21: [("echo", "n"), ("host", "s"), ("port", "H")],
    23: [("device", "s"), ("nonce", "n"), ("code", "B"), ("detail", "s")],
}


def body(mtype, fields):
    out = b""
    for name, kind in LAYOUT[mtype]:
        v = fields[name]
        if kind in "BHI":
            out += struct.pack(">" + kind, v)
        elif kind == "s":
            v = v.encode() if isinstance(v, str) else v
            out += bytes([len(v)]) + v
        elif kind == "b":
            out += struct.pack(">H", len(v)) + v
        elif kind == "h":
            assert 1 <= len(v) <= 32
            out += bytes([len(v)]) + v
        else:
            assert len(v) == 8
            out += v
    return out


def frame(key, mtype, seq, raw_body, from_host, version=VERSION, flags=None, length=None):
    if flags is None:
        flags = 1 if from_host else 0
    if length is None:
        length = 7 + len(raw_body) + 32
    signed = struct.pack(">HBBBI", length, version, mtype, flags, seq) + raw_body
    return signed + hmac.new(key, signed, hashlib.sha256).digest()


def jfields(mtype, fields):
    """Fields as JSON: bytes kinds as hex."""
    out = {}
    for name, kind in LAYOUT[mtype]:
        v = fields[name]
        out[name] = v.hex() if kind in "nbh" else v
    return out


def built(key, mtype, seq, fields, from_host):
    """The frame from both encoders, which must agree."""
    mine = frame(key, mtype, seq, body(mtype, fields), from_host)
    theirs = wp.encode_frame(wp.Hmac(key), mtype, seq, fields, from_host)
    assert mine == theirs, (mtype, fields, mine.hex(), theirs.hex())
    return mine


def valid(name, key, mtype, seq, fields, from_host):
    f = built(key, mtype, seq, fields, from_host)
    msg = wp.decode_frame(wp.Hmac(key), f, from_host)
    assert msg == dict(fields, type=mtype, seq=seq), msg
    return {"name": name, "key": key.hex(), "from_host": from_host, "frame": f.hex(),
            "type": mtype, "seq": seq, "fields": jfields(mtype, fields)}


def rejected(name, key, f, from_host, error, peek_error, why):
    for fn, want in ((lambda: wp.decode_frame(wp.Hmac(key), f, from_host), error),
                     (lambda: wp.peek_header(f), peek_error)):
        try:
            fn()
            got = None
        except wp.ProtocolError as e:
            got = e.code
        assert got == want, (name, got, want)
    return {"name": name, "key": key.hex(), "from_host": from_host, "frame": f.hex(),
            "error": error, "peek_error": peek_error, "why": why}


N1 = bytes.fromhex("d1d2d3d4d5d6d7d8")
N2 = bytes.fromhex("a1a2a3a4a5a6a7a8")
HWID_A = bytes.fromhex("246f28a1b2c3")       # a 6-byte ESP32 machine.unique_id() (its base MAC)
HWID_B = bytes.fromhex("7cdfa1e0f1a2")

VALID_MESSAGES = [
    ("HELLO", KEY_A, wp.HELLO, 0, {"device": "bed-101-1", "nonce": N1, "firmware": "0.1.0",
                                   "board": "esp32", "caps": 31, "hwid": HWID_A}, False),
    ("HELLO, 1-byte hwid", KEY_A, wp.HELLO, 0, {"device": "bed-101-1", "nonce": N1, "firmware": "",
                                                "board": "", "caps": 0, "hwid": b"\x00"}, False),
    ("HELLO, 32-byte hwid", KEY_A, wp.HELLO, 0, {"device": "bed-101-1", "nonce": N1, "firmware": "0.1.0",
                                                 "board": "esp32s3", "caps": 31, "hwid": bytes(range(0xE0, 0x100))},
     False),
    ("WELCOME", KEY_A, wp.WELCOME, 0, {"nonce": N2, "echo": N1, "time": 1767225600,
                                       "hb_ms": 1000, "flags": 0}, True),
    ("HEARTBEAT from device", KEY_A, wp.HEARTBEAT, 7, {"status": 3, "pending": 2, "uptime": 86400}, False),
    ("HEARTBEAT from host", KEY_A, wp.HEARTBEAT, 7, {"status": 0, "pending": 0, "uptime": 0}, True),
    ("CALL code blue", KEY_A, wp.CALL, 1, {"call": 0x00030001, "kind": 1, "priority": 1, "age_ms": 0}, False),
    ("CALL technical, max ints", KEY_A, wp.CALL, 0xFFFFFFFF,
     {"call": 0xFFFFFFFF, "kind": 5, "priority": 5, "age_ms": 0xFFFFFFFF}, False),
    ("CALL_ACK", KEY_A, wp.CALL_ACK, 2, {"call": 0x00030001, "of": wp.CALL}, True),
    ("CALL_STATE acknowledged", KEY_A, wp.CALL_STATE, 3, {"call": 0x00030001, "state": 1, "by": "Nurse Zoë"}, True),
    ("CALL_STATE escalated, empty by", KEY_A, wp.CALL_STATE, 4, {"call": 9, "state": 4, "by": ""}, True),
    ("PRESENCE on", KEY_A, wp.PRESENCE, 5, {"on": 1, "staff": ""}, False),
    ("PRESENCE 4-byte UTF-8", KEY_A, wp.PRESENCE, 6, {"on": 0, "staff": "\U0001F469\u200D\u2695\uFE0F Ana"}, False),
    ("CANCEL", KEY_A, wp.CANCEL, 8, {"call": 0x00030001, "reason": wp.CANCEL_PRESENCE, "age_ms": 1500}, False),
    ("FAULT cord", KEY_A, wp.FAULT, 9, {"code": wp.FAULT_CORD, "active": 1, "detail": "cord unplugged"}, False),
    ("COMMAND config", KEY_A, wp.COMMAND, 10, {"cmd_id": 42, "cmd": wp.CMD_CONFIG,
                                               "arg": b'{"hb_ms": 500}'}, True),
    ("COMMAND chime", KEY_A, wp.COMMAND, 11, {"cmd_id": 43, "cmd": wp.CMD_CHIME, "arg": b"\x03"}, True),
    ("COMMAND largest frame (1024 bytes)", KEY_A, wp.COMMAND, 12,
     {"cmd_id": 44, "cmd": wp.CMD_CONFIG, "arg": bytes(range(256)) * 3 + bytes(208)}, True),
    ("RESULT", KEY_A, wp.RESULT, 12, {"cmd_id": 42, "ok": 1, "detail": "ok"}, False),
    ("ERROR", KEY_A, wp.ERROR, 13, {"code": wp.E_MALFORMED, "detail": "call priority 2 does not match kind 1"}, True),
    ("DISCOVER", KEY_A, wp.DISCOVER, 0, {"device": "bed-101-1", "nonce": N1}, False),
    ("ANNOUNCE", KEY_A, wp.ANNOUNCE, 0, {"echo": N1, "host": "127.0.0.1", "port": 7300}, True),
    ("REPORT (the host's TLS certificate refused)", KEY_A, wp.REPORT, 0,
     {"device": "bed-101-1", "nonce": N1, "code": wp.REPORT_TLS_REFUSED,
      "detail": "The certificate is not correctly signed by the trusted CA"}, False),
    ("HEARTBEAT, device B key", KEY_B, wp.HEARTBEAT, 1, {"status": 0, "pending": 0, "uptime": 1}, False),
]


def make_rejected():
    hb = {"status": 0, "pending": 0, "uptime": 5}
    good = built(KEY_A, wp.HEARTBEAT, 5, hb, False)          # 47 bytes
    hb_body = body(wp.HEARTBEAT, hb)
    out = []
    R = out.append
    for ver in (1, 3, 0, 255):
        R(rejected("wrong version %d" % ver, KEY_A, frame(KEY_A, 3, 5, hb_body, False, version=ver), False,
                   E_UNSUPPORTED, E_UNSUPPORTED, "VER must be 2"))
    v1_hello = {"device": "bed-101-1", "nonce": N1, "firmware": "0.1.0", "board": "esp32", "caps": 31}
    v1_body = body(wp.HELLO, dict(v1_hello, hwid=b"\x01"))[:-2]      # version 1 had no hwid
    R(rejected("wrong version 1: a version-1 HELLO", KEY_A, frame(KEY_A, wp.HELLO, 0, v1_body, False, version=1),
               False, E_UNSUPPORTED, E_UNSUPPORTED, "a version-1 terminal gets a clean version error"))
    R(rejected("HELLO without hwid (validly tagged)", KEY_A, frame(KEY_A, wp.HELLO, 0, v1_body, False), False,
               E_MALFORMED, None, "the body ends before its hwid field"))
    for label, raw in (("empty hwid", b"\x00"), ("33-byte hwid", b"\x21" + bytes(33)),
                       ("hwid length past the body", b"\x06\x01\x02")):
        R(rejected("HELLO %s (validly tagged)" % label, KEY_A, frame(KEY_A, wp.HELLO, 0, v1_body + raw, False),
                   False, E_MALFORMED, None, "hwid is 1 to 32 bytes, all present"))
    for t in (0, 13, 19, 22, 255):
        R(rejected("unknown type %d" % t, KEY_A, frame(KEY_A, t, 5, hb_body, False), False,
                   E_UNSUPPORTED, E_UNSUPPORTED, "TYPE not in the message table"))
    big = frame(KEY_A, wp.COMMAND, 1, body(wp.COMMAND, {"cmd_id": 1, "cmd": 4, "arg": bytes(977)}), True)
    assert len(big) == 1025
    R(rejected("oversized: 1025-byte frame", KEY_A, big, True, E_MALFORMED, E_MALFORMED,
               "a whole frame is at most MAX_FRAME = 1024 bytes"))
    R(rejected("oversized: LEN 0xFFFF, body absent", KEY_A, b"\xff\xff" + good[2:], False,
               E_MALFORMED, E_MALFORMED, "LEN above 1022 is refused from the LEN field alone"))
    R(rejected("undersized: LEN 38", KEY_A, frame(KEY_A, 3, 5, b"", False, length=38)[:40], False,
               E_MALFORMED, E_MALFORMED, "LEN below 39 cannot hold header and tag"))
    R(rejected("truncated: last byte missing", KEY_A, good[:-1], False, E_MALFORMED, E_MALFORMED,
               "frame shorter than LEN + 2"))
    R(rejected("truncated: 1 byte", KEY_A, good[:1], False, E_MALFORMED, E_MALFORMED, "no LEN field"))
    R(rejected("truncated: empty", KEY_A, b"", False, E_MALFORMED, E_MALFORMED, "no LEN field"))
    R(rejected("extra byte after the frame", KEY_A, good + b"\x00", False, E_MALFORMED, E_MALFORMED,
               "frame longer than LEN + 2"))
    R(rejected("bad tag: last bit flipped", KEY_A, good[:-1] + bytes([good[-1] ^ 1]), False,
               E_AUTH, None, "tag does not verify"))
    R(rejected("bad tag: body altered", KEY_A, good[:12] + bytes([good[12] ^ 0x80]) + good[13:], False,
               E_AUTH, None, "tag does not verify"))
    R(rejected("bad tag: seq altered", KEY_A, good[:8] + b"\x06" + good[9:], False,
               E_AUTH, None, "SEQ is covered by the tag"))
    R(rejected("bad tag: other device's key", KEY_B, good, False, E_AUTH, None, "wrong key"))
    R(rejected("wrong direction: device frame where a host frame is expected", KEY_A, good, True,
               E_AUTH, None, "FLAGS bit 0 says device to host"))
    R(rejected("wrong direction: host frame where a device frame is expected", KEY_A,
               built(KEY_A, wp.HEARTBEAT, 5, hb, True), False, E_AUTH, None, "FLAGS bit 0 says host to device"))
    R(rejected("reserved flag bit set (validly tagged)", KEY_A,
               frame(KEY_A, 3, 5, hb_body, False, flags=2), False, E_MALFORMED, E_MALFORMED,
               "FLAGS bits 1-7 must be 0"))
    R(rejected("trailing byte in body (validly tagged)", KEY_A, frame(KEY_A, 3, 5, hb_body + b"\x00", False),
               False, E_MALFORMED, None, "the body must end where its last field ends"))
    R(rejected("truncated body (validly tagged)", KEY_A, frame(KEY_A, 3, 5, hb_body[:-1], False),
               False, E_MALFORMED, None, "body shorter than its fields"))
    R(rejected("text length past the body (validly tagged)", KEY_A,
               frame(KEY_A, wp.ERROR, 5, b"\x01\x05abc", True), True, E_MALFORMED, None,
               "u8 length says 5, 3 bytes follow"))
    R(rejected("bytes length past the body (validly tagged)", KEY_A,
               frame(KEY_A, wp.COMMAND, 5, b"\x00\x00\x00\x01\x04\x00\x10{}", True), True, E_MALFORMED, None,
               "u16 length says 16, 2 bytes follow"))
    for label, raw in (("0xff", b"\xff"), ("lone continuation byte", b"a\x80"),
                       ("overlong NUL c0 80", b"\xc0\x80"), ("overlong e0 80 af", b"\xe0\x80\xaf"),
                       ("surrogate ed a0 80", b"\xed\xa0\x80"), ("above U+10FFFF f4 90 80 80", b"\xf4\x90\x80\x80"),
                       ("f5 lead byte", b"\xf5\x80\x80\x80"), ("cut sequence e2 82", b"x\xe2\x82")):
        R(rejected("bad UTF-8: " + label, KEY_A,
                   frame(KEY_A, wp.FAULT, 5, b"\x01\x01" + bytes([len(raw)]) + raw, False), False,
                   E_MALFORMED, None, "text fields are strict UTF-8"))
    R(rejected("bad UTF-8 in HELLO device id", KEY_A,
               frame(KEY_A, wp.HELLO, 0, b"\x02\xc3\x28" + N1 + b"\x00\x00\x00\x00\x01\x01", False), False,
               E_MALFORMED, None, "text fields are strict UTF-8"))
    for k, p in ((1, 3), (4, 1), (3, 2)):
        R(rejected("CALL priority %d with kind %d" % (p, k), KEY_A,
                   frame(KEY_A, wp.CALL, 5, struct.pack(">IBBI", 7, k, p, 0), False), False,
                   E_MALFORMED, None, "priority must equal the kind number"))
    for k in (0, 6):
        R(rejected("CALL unknown kind %d" % k, KEY_A,
                   frame(KEY_A, wp.CALL, 5, struct.pack(">IBBI", 7, k, k, 0), False), False,
                   E_MALFORMED, None, "kinds are 1..5"))
    R(rejected("CALL_STATE unknown state 5", KEY_A,
               frame(KEY_A, wp.CALL_STATE, 5, struct.pack(">IB", 7, 5) + b"\x00", True), True,
               E_MALFORMED, None, "states are 0..4"))
    return out


def make_handshake(name, key, device, dn, hn, hwid, steps_spec, extra_rejects=()):
    dev = wp.Session(key, is_host=False)
    dev.nonce = dn
    host = wp.Session(key, is_host=True)
    host.nonce = hn
    hello = {"device": device, "firmware": "0.1.0", "board": "esp32", "caps": 31, "hwid": hwid}
    hello_frame = dev.hello(**hello)
    assert hello_frame == built(key, wp.HELLO, 0, dict(hello, nonce=dn), False)
    assert host.accept_hello(hello_frame)["hwid"] == hwid
    welcome = {"time": 1767225600, "hb_ms": 1000, "flags": 0}
    welcome_frame = host.welcome(welcome["time"], welcome["hb_ms"], welcome["flags"])
    assert welcome_frame == built(key, wp.WELCOME, 0, dict(welcome, nonce=hn, echo=dn), True)
    dev.accept_welcome(welcome_frame)
    skey = hmac.new(key, b"wardcall/1 session" + dn + hn, hashlib.sha256).digest()
    assert skey == wp.session_key(key, dn, hn)
    sides = {"device": dev, "host": host}
    steps = []
    for sender, mtype, fields, error in steps_spec:
        s = sides[sender]
        seq = s.tx_seq + 1
        f = s.encode(mtype, fields)
        assert f == frame(skey, mtype, seq, body(mtype, fields), sender == "host")
        r = sides["host" if sender == "device" else "device"]
        try:
            r.decode(f)
            got = None
        except wp.ProtocolError as e:
            got = e.code
        assert got == error
        steps.append({"from": sender, "type": mtype, "seq": seq, "fields": jfields(mtype, fields),
                      "frame": f.hex(), "error": error})
    return {"name": name, "key": key.hex(), "device_nonce": dn.hex(), "host_nonce": hn.hex(),
            "hello": dict(hello, hwid=hwid.hex()), "hello_frame": hello_frame.hex(),
            "welcome": welcome, "welcome_frame": welcome_frame.hex(),
            "session_key": skey.hex(), "steps": steps, "rejects": list(extra_rejects),
            "welcome_rejects": []}


def make_handshakes():
    a_steps = [
        ("device", wp.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 12}, None),
        ("host", wp.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 0}, None),
        ("device", wp.CALL, {"call": 0x00030001, "kind": 3, "priority": 3, "age_ms": 0}, None),
        ("host", wp.CALL_ACK, {"call": 0x00030001, "of": wp.CALL}, None),
        ("host", wp.CALL_STATE, {"call": 0x00030001, "state": wp.ST_ACKNOWLEDGED, "by": "console"}, None),
        ("device", wp.PRESENCE, {"on": 1, "staff": ""}, None),
        ("host", wp.CALL_STATE, {"call": 0x00030001, "state": wp.ST_ATTENDED, "by": ""}, None),
        ("device", wp.FAULT, {"code": wp.FAULT_CORD, "active": 1, "detail": "cord loop open"}, None),
        # authentic, in order, but refused: the sequence still moves on (next step is accepted)
        ("device", wp.CALL, {"call": 0x00030002, "kind": 1, "priority": 2, "age_ms": 0}, E_MALFORMED),
        ("host", wp.ERROR, {"code": wp.E_MALFORMED, "detail": "call priority 2 does not match kind 1"}, None),
        ("device", wp.CANCEL, {"call": 0x00030001, "reason": wp.CANCEL_PRESENCE, "age_ms": 250}, None),
        ("host", wp.CALL_ACK, {"call": 0x00030001, "of": wp.CANCEL}, None),
        ("host", wp.COMMAND, {"cmd_id": 7, "cmd": wp.CMD_IDENTIFY, "arg": b""}, None),
        ("device", wp.RESULT, {"cmd_id": 7, "ok": 1, "detail": ""}, None),
    ]
    b = make_handshake("handshake, device B", KEY_B, "bed-102-1", bytes.fromhex("b0b1b2b3b4b5b6b7"),
                       bytes.fromhex("c0c1c2c3c4c5c6c7"), HWID_B,
                       [("device", wp.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 3}, None),
                        ("host", wp.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 0}, None)])
    a = make_handshake("handshake, device A", KEY_A, "bed-101-1", N1, N2, HWID_A, a_steps)
    # a second handshake of device A (other nonces): its WELCOME is stale for the first
    a2 = make_handshake("handshake, device A again", KEY_A, "bed-101-1", bytes.fromhex("e0e1e2e3e4e5e6e7"),
                        bytes.fromhex("f0f1f2f3f4f5f6f7"), HWID_A,
                        [("device", wp.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 1}, None)])
    st = a["steps"]
    ask = bytes.fromhex(a["session_key"])
    a["rejects"] = [
        {"to": "host", "frame": st[0]["frame"], "error": E_SEQUENCE, "why": "replayed device frame (seq 1)"},
        {"to": "host", "frame": st[-1]["frame"], "error": E_SEQUENCE, "why": "replayed last device frame"},
        {"to": "device", "frame": st[1]["frame"], "error": E_SEQUENCE, "why": "replayed host frame"},
        {"to": "host", "frame": frame(ask, wp.HEARTBEAT, 9, body(wp.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 1}),
                                      False).hex(), "error": E_SEQUENCE, "why": "reordered: seq 9 where 8 is next"},
        {"to": "host", "frame": st[1]["frame"], "error": E_AUTH, "why": "reflected: host frame fed back to the host"},
        {"to": "device", "frame": st[0]["frame"], "error": E_AUTH, "why": "reflected: device frame fed back to the device"},
        {"to": "host", "frame": b["steps"][0]["frame"], "error": E_AUTH, "why": "cross-device: device B's session frame"},
        {"to": "host", "frame": a2["steps"][0]["frame"], "error": E_AUTH, "why": "same device, another session"},
        {"to": "host", "frame": a["hello_frame"], "error": E_AUTH, "why": "HELLO (device key) inside the session"},
        {"to": "device", "frame": a["welcome_frame"], "error": E_AUTH, "why": "WELCOME (device key) inside the session"},
    ]
    a["welcome_rejects"] = [
        {"frame": a2["welcome_frame"], "error": E_AUTH, "why": "stale WELCOME answering another HELLO"},
        {"frame": b["welcome_frame"], "error": E_AUTH, "why": "WELCOME tagged with device B's key"},
        {"frame": st[1]["frame"], "error": E_AUTH, "why": "session frame instead of WELCOME"},
        {"frame": built(KEY_A, wp.ANNOUNCE, 0, {"echo": N1, "host": "10.0.0.1", "port": 7300}, True).hex(),
         "error": E_SEQUENCE, "why": "ANNOUNCE instead of WELCOME"},
        {"frame": a["hello_frame"], "error": E_AUTH, "why": "HELLO reflected back to the device"},
    ]
    # the rejections above must hold in this wardproto too
    return [a, b, a2]


def make_discovery():
    key = KEY_A
    nonce = bytes.fromhex("0102030405060708")
    disc = wp.discover(wp.Hmac(key), "bed-101-1", nonce)
    assert disc == built(key, wp.DISCOVER, 0, {"device": "bed-101-1", "nonce": nonce}, False)
    ann = wp.announce(wp.Hmac(key), nonce, "192.168.10.5", 7300)
    assert ann == built(key, wp.ANNOUNCE, 0, {"echo": nonce, "host": "192.168.10.5", "port": 7300}, True)
    stale = built(key, wp.ANNOUNCE, 0, {"echo": bytes(8), "host": "192.168.10.5", "port": 7300}, True)
    spoof = built(KEY_B, wp.ANNOUNCE, 0, {"echo": nonce, "host": "10.6.6.6", "port": 7300}, True)
    return [{"name": "DISCOVER/ANNOUNCE bed-101-1", "key": key.hex(), "device": "bed-101-1",
             "nonce": nonce.hex(), "discover_frame": disc.hex(), "host": "192.168.10.5", "port": 7300,
             "announce_frame": ann.hex(),
             "announce_rejects": [
                 {"frame": stale.hex(), "error": E_AUTH, "why": "stale: echoes another nonce"},
                 {"frame": spoof.hex(), "error": E_AUTH, "why": "spoofed: tagged with another key"},
                 {"frame": disc.hex(), "error": E_AUTH, "why": "our own DISCOVER reflected (wrong direction)"},
                 {"frame": built(key, wp.WELCOME, 0, {"nonce": N2, "echo": nonce, "time": 0, "hb_ms": 1000,
                                                       "flags": 0}, True).hex(),
                  "error": E_MALFORMED, "why": "WELCOME is not an ANNOUNCE"},
             ]}]


RFC4231 = [  # (case, key, data, HMAC-SHA256 from RFC 4231 section 4)
    (1, b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (2, b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (3, b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (4, bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (5, b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (6, b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (7, b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than block-size data."
     b" The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]


def make_hmac():
    cases = []
    for n, key, data, tag in RFC4231:
        assert hmac.new(key, data, hashlib.sha256).hexdigest().startswith(tag), n
        cases.append({"name": "RFC 4231 test case %d" % n, "key": key.hex(), "msg": data.hex(), "tag": tag,
                      "source": "RFC 4231"})
    rnd = random.Random(4231)
    for klen in (0, 1, 31, 32, 63, 64, 65, 127, 128, 129, 200):
        for mlen in (0, 1, 55, 56, 64, 1000):
            key = rnd.randbytes(klen)
            msg = rnd.randbytes(mlen)
            cases.append({"name": "CPython hmac, %d-byte key, %d-byte message" % (klen, mlen),
                          "key": key.hex(), "msg": msg.hex(),
                          "tag": hmac.new(key, msg, hashlib.sha256).hexdigest(), "source": "CPython hmac"})
    return cases


def main():
    frames = {
        "comment": "wardcall protocol vectors; generated once by make_vectors.py, never by the tests",
        "keys": {"device A (bed-101-1)": KEY_A.hex(), "device B (bed-102-1)": KEY_B.hex()},
        "valid": [valid(*m) for m in VALID_MESSAGES],
        "rejected": make_rejected(),
        "handshakes": make_handshakes(),
        "discovery": make_discovery(),
    }
    hmacs = {"comment": "HMAC-SHA256 vectors: RFC 4231 and CPython's hmac module", "cases": make_hmac()}
    outputs = {"frames.json": frames, "hmac.json": hmacs}
    check = "--check" in sys.argv
    changed = []
    for fname, data in outputs.items():
        text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
        path = os.path.join(HERE, fname)
        old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if old != text:
            changed.append(fname)
            if not check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
    if check and changed:
        sys.exit("vectors would change: %s" % ", ".join(changed))
    print("vectors: %s" % ("unchanged" if not changed else ("wrote " + ", ".join(changed))))


if __name__ == "__main__":
    main()
