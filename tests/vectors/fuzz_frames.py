# Mutated-frame fuzz of wardproto, in the MicroPython/CPython common subset:
#
#   micropython tests/vectors/fuzz_frames.py [SEED [N]]
#
# Builds valid frames of every type, mutates them N times with a fixed seed (bit flips, truncation,
# extension, byte changes, insertion, deletion, and random bodies re-tagged with the right key so
# the body parser is reached), and feeds each to every receiving entry point: decode_frame (both
# directions), peek_header, peek_device, frame_length, decode_body, Session.decode on both sides,
# accept_welcome, accept_hello, accept_announce and read_frame (over a stream stub). Anything but
# ProtocolError (EOFError from read_frame at the end of the stream) is "unexpected" and printed.
# Last line: "fuzz: N frames, A accepted, R rejected, U unexpected" (accepted: decode_frame took it).
import sys
import random
import asyncio

HERE = sys.argv[0][:sys.argv[0].rfind("/")] if "/" in sys.argv[0] else "."
sys.path.insert(0, HERE + "/../../firmware/lib")
import wardproto as wp

KEY = bytes(range(32))
MAC = wp.Hmac(KEY)

SAMPLES = (
    (wp.HELLO, {"device": "bed-101-1", "nonce": b"\x01" * 8, "firmware": "0.1.0", "board": "esp32", "caps": 31,
                "hwid": b"\x24\x6f\x28\xa1\xb2\xc3"}),
    (wp.WELCOME, {"nonce": b"\x02" * 8, "echo": b"\x01" * 8, "time": 1767225600, "hb_ms": 1000, "flags": 0}),
    (wp.HEARTBEAT, {"status": 3, "pending": 1, "uptime": 99}),
    (wp.CALL, {"call": 0x10001, "kind": 2, "priority": 2, "age_ms": 5}),
    (wp.CALL_ACK, {"call": 0x10001, "of": wp.CALL}),
    (wp.CALL_STATE, {"call": 0x10001, "state": 1, "by": "Zoë"}),
    (wp.PRESENCE, {"on": 1, "staff": ""}),
    (wp.CANCEL, {"call": 0x10001, "reason": 1, "age_ms": 0}),
    (wp.FAULT, {"code": 1, "active": 1, "detail": "cord"}),
    (wp.COMMAND, {"cmd_id": 4, "cmd": 4, "arg": b'{"hb_ms": 500}'}),
    (wp.RESULT, {"cmd_id": 4, "ok": 1, "detail": "ok"}),
    (wp.ERROR, {"code": 1, "detail": "bad"}),
    (wp.DISCOVER, {"device": "bed-101-1", "nonce": b"\x01" * 8}),
    (wp.ANNOUNCE, {"echo": b"\x01" * 8, "host": "10.0.0.1", "port": 7300}),
)


class Stream:
    """Just enough of an asyncio StreamReader for read_frame."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    async def readexactly(self, n):
        if self.pos + n > len(self.data):
            self.pos = len(self.data)
            raise EOFError("end of stream")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def rbytes(n):
    return bytes([random.getrandbits(8) for _ in range(n)])


def retag(frame, body):
    head = bytearray(frame[:wp.HEADER_LEN])
    n = wp.HEADER_LEN - 2 + len(body) + wp.TAG_LEN
    head[0] = n >> 8
    head[1] = n & 0xFF
    signed = bytes(head) + body
    return signed + MAC.digest(signed)


def mutate(frame):
    f = bytearray(frame)
    how = random.randint(0, 6)
    if how == 0:
        for _ in range(random.randint(1, 4)):
            f[random.randint(0, len(f) - 1)] ^= 1 << random.randint(0, 7)
    elif how == 1:
        f = f[:random.randint(0, len(f) - 1)]
    elif how == 2:
        f = f + rbytes(random.randint(1, 20))
    elif how == 3:
        f[random.randint(0, len(f) - 1)] = random.getrandbits(8)
    elif how == 4:
        i = random.randint(0, len(f))
        f = f[:i] + rbytes(random.randint(1, 4)) + f[i:]
    elif how == 5:
        i = random.randint(0, len(f) - 1)
        f = f[:i] + f[i + random.randint(1, 4):]
    else:
        body = bytes(f[wp.HEADER_LEN:len(f) - wp.TAG_LEN])
        if random.getrandbits(1):
            body = rbytes(random.randint(0, 60))
        else:
            # keep a prefix, change a byte, maybe append: reaches every field parser
            body = bytearray(body[:random.randint(0, len(body))])
            if body:
                body[random.randint(0, len(body) - 1)] = random.getrandbits(8)
            body = bytes(body) + rbytes(random.randint(0, 3))
        return retag(f, body)
    return bytes(f)


def pair():
    dev = wp.Session(KEY, False)
    dev.nonce = b"\x11" * 8
    host = wp.Session(KEY, True)
    host.nonce = b"\x22" * 8
    host.accept_hello(dev.hello("bed-101-1", "0.1.0", "esp32", 31, b"\x24\x6f\x28\xa1\xb2\xc3"))
    dev.accept_welcome(host.welcome(0, 1000))
    return dev, host


def read_all(data):
    s = Stream(data)
    n = 0
    while True:
        try:
            f = asyncio.run(wp.read_frame(s))
        except EOFError:
            return n
        except wp.ProtocolError:
            return n
        if len(f) < wp.MIN_FRAME or len(f) > wp.MAX_FRAME:
            raise AssertionError("read_frame returned %d bytes" % len(f))
        n += 1


def main(argv):
    seed = int(argv[0]) if argv else 1
    n = int(argv[1]) if len(argv) > 1 else 2000
    random.seed(seed)
    frames = []
    for mtype, fields in SAMPLES:
        for from_host in (False, True):
            frames.append(wp.encode_frame(MAC, mtype, random.randint(0, 3), fields, from_host))
    accepted = rejected = unexpected = 0
    for i in range(n):
        f = mutate(frames[random.randint(0, len(frames) - 1)])
        step = "decode_frame"
        try:
            try:
                wp.decode_frame(MAC, f, f[4] & 1 if len(f) > 4 else False)
                accepted += 1
            except wp.ProtocolError:
                rejected += 1
            calls = (
                ("decode_frame(other direction)", lambda: wp.decode_frame(MAC, f, not (len(f) > 4 and f[4] & 1))),
                ("peek_header", lambda: wp.peek_header(f)),
                ("peek_device", lambda: wp.peek_device(f)),
                ("frame_length", lambda: wp.frame_length(f[:2])),
                ("accept_announce", lambda: wp.accept_announce(MAC, f, b"\x01" * 8)),
                ("accept_welcome", lambda: wp.Session(KEY, False).accept_welcome(f)),
                ("accept_hello", lambda: wp.Session(KEY, True).accept_hello(f)),
                ("Session.decode (device)", lambda: pair()[0].decode(f)),
                ("Session.decode (host)", lambda: pair()[1].decode(f)),
                ("decode_body", lambda: wp.decode_body(f[3] if len(f) > 3 else 0, f[wp.HEADER_LEN:])),
            )
            for step, call in calls:
                try:
                    call()
                except wp.ProtocolError:
                    pass
            step = "read_frame"
            read_all(f + frames[i % len(frames)] + f[:5])
        except Exception as e:
            unexpected += 1
            print("UNEXPECTED %s in %s for frame %s" % (type(e).__name__, step, bytes(f).hex()), e)
    print("fuzz: %d frames, %d accepted, %d rejected, %d unexpected (seed %d)" % (n, accepted, rejected, unexpected, seed))
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
