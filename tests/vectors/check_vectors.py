# Check wardproto against the committed vectors. Runs unchanged on MicroPython and CPython:
#
#   micropython tests/vectors/check_vectors.py [--lib DIR] [FILE.json ...]
#   python3     tests/vectors/check_vectors.py [--lib DIR] [FILE.json ...]
#
# Default files: frames.json and hmac.json next to this script; default lib: firmware/lib.
# Prints one line per failing vector and a last line "vectors: N passed, M failed"; exits 1 on any
# failure. tests/protocol/test_vectors.py runs it on both interpreters. It never writes vectors.
import sys
import json
from binascii import hexlify, unhexlify


def _dir(path):
    i = path.rfind("/")
    return path[:i] if i > 0 else "."


HERE = _dir(sys.argv[0] if __name__ == "__main__" else __file__)
FILES = ("frames.json", "hmac.json")

wp = None   # wardproto, imported by main()/run() once the library path is known


class Fail(Exception):
    pass


def h(text):
    return unhexlify(text)


def hx(data):
    return hexlify(bytes(data)).decode()


def expect(cond, what):
    if not cond:
        raise Fail(what)


def raises(code, fn, *args):
    """fn(*args) must raise ProtocolError with this code (None: must not raise)."""
    try:
        fn(*args)
    except wp.ProtocolError as e:
        if e.code != code:
            raise Fail("expected error %r, got %d (%s)" % (code, e.code, e.message))
        return
    except Exception as e:  # anything but ProtocolError is a failure in itself
        raise Fail("raised %s: %s instead of ProtocolError" % (type(e).__name__, e))
    if code is not None:
        raise Fail("accepted, expected ProtocolError %d" % code)


def fields_in(mtype, jf):
    """JSON fields to wardproto values: nonce, bytes and hardware id kinds from hex."""
    out = {}
    for name, kind in wp.SCHEMAS[mtype]:
        v = jf[name]
        out[name] = h(v) if kind == "n" or kind == "b" or kind == "h" else v
    return out


def same_msg(msg, mtype, seq, fields):
    want = {"type": mtype, "seq": seq}
    for k in fields:
        want[k] = fields[k]
    if msg != want:
        raise Fail("decoded %r, expected %r" % (msg, want))


def check_valid(v):
    key = h(v["key"])
    frame = h(v["frame"])
    mtype = v["type"]
    fields = fields_in(mtype, v["fields"])
    mac = wp.Hmac(key)
    msg = wp.decode_frame(mac, frame, v["from_host"])
    same_msg(msg, mtype, v["seq"], fields)
    again = wp.encode_frame(mac, mtype, v["seq"], fields, v["from_host"])
    expect(again == frame, "re-encoded to %s" % hx(again))
    head = wp.peek_header(frame)
    expect(head == (mtype, 1 if v["from_host"] else 0, v["seq"]), "peek_header gave %r" % (head,))
    expect(wp.frame_length(frame[:2]) == len(frame) - 2, "frame_length disagrees")
    if mtype == wp.HELLO or mtype == wp.DISCOVER:
        expect(wp.peek_device(frame) == fields["device"], "peek_device disagrees")
    # the frame from a memoryview and a bytearray decodes the same
    same_msg(wp.decode_frame(mac, memoryview(frame), v["from_host"]), mtype, v["seq"], fields)
    same_msg(wp.decode_frame(mac, bytearray(frame), v["from_host"]), mtype, v["seq"], fields)


def check_rejected(v):
    frame = h(v["frame"])
    raises(v["error"], wp.decode_frame, wp.Hmac(h(v["key"])), frame, v["from_host"])
    raises(v["peek_error"], wp.peek_header, frame)
    if len(frame) >= 2:
        # a stream reader sees only LEN first: an impossible LEN must be refused from it alone
        n = (frame[0] << 8) | frame[1]
        code = wp.E_MALFORMED if n + 2 < wp.MIN_FRAME or n + 2 > wp.MAX_FRAME else None
        raises(code, wp.frame_length, frame[:2])


def check_handshake(v):
    key = h(v["key"])
    dn = h(v["device_nonce"])
    hn = h(v["host_nonce"])
    dev = wp.Session(key, False)
    dev.nonce = dn
    host = wp.Session(key, True)
    host.nonce = hn
    hi = v["hello"]
    hwid = h(hi["hwid"])
    hello = dev.hello(hi["device"], hi["firmware"], hi["board"], hi["caps"], hwid)
    expect(hello == h(v["hello_frame"]), "HELLO encoded to %s" % hx(hello))
    expect(wp.peek_device(hello) == hi["device"], "peek_device of HELLO")
    msg = host.accept_hello(hello)
    same_msg(msg, wp.HELLO, 0, {"device": hi["device"], "nonce": dn, "firmware": hi["firmware"],
                               "board": hi["board"], "caps": hi["caps"], "hwid": hwid})
    expect(not host.established, "host established before WELCOME")
    we = v["welcome"]
    welcome = host.welcome(we["time"], we["hb_ms"], we["flags"])
    expect(welcome == h(v["welcome_frame"]), "WELCOME encoded to %s" % hx(welcome))
    expect(host.established, "host not established after WELCOME")
    # a device must refuse every wrong WELCOME before it gets the right one
    for r in v["welcome_rejects"]:
        try:
            raises(r["error"], dev.accept_welcome, h(r["frame"]))
        except Fail as e:
            raise Fail("welcome reject (%s): %s" % (r["why"], e))
        expect(not dev.established, "device established by a refused WELCOME (%s)" % r["why"])
    msg = dev.accept_welcome(welcome)
    same_msg(msg, wp.WELCOME, 0, {"nonce": hn, "echo": dn, "time": we["time"], "hb_ms": we["hb_ms"],
                                 "flags": we["flags"]})
    expect(dev.established, "device not established")
    skey = wp.session_key(key, dn, hn)
    expect(skey == h(v["session_key"]), "session key %s" % hx(skey))
    sides = {"device": dev, "host": host}
    for i, st in enumerate(v["steps"]):
        sender = sides[st["from"]]
        receiver = sides["host" if st["from"] == "device" else "device"]
        fields = fields_in(st["type"], st["fields"])
        f = sender.encode(st["type"], fields)
        expect(f == h(st["frame"]), "step %d encoded to %s" % (i, hx(f)))
        expect(sender.tx_seq == st["seq"], "step %d: tx_seq %d" % (i, sender.tx_seq))
        if st["error"] is None:
            same_msg(receiver.decode(f), st["type"], st["seq"], fields)
        else:
            try:
                raises(st["error"], receiver.decode, f)
            except Fail as e:
                raise Fail("step %d: %s" % (i, e))
        expect(receiver.rx_seq == st["seq"], "step %d: rx_seq %d" % (i, receiver.rx_seq))
    for r in v["rejects"]:
        side = sides[r["to"]]
        before = side.rx_seq
        try:
            raises(r["error"], side.decode, h(r["frame"]))
        except Fail as e:
            raise Fail("reject (%s): %s" % (r["why"], e))
        expect(side.rx_seq == before, "a refused frame moved rx_seq (%s)" % r["why"])
    # still usable in both directions after all those refusals
    for a, b in (("device", "host"), ("host", "device")):
        f = sides[a].encode(wp.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 1})
        sides[b].decode(f)


def check_discovery(v):
    key = h(v["key"])
    mac = wp.Hmac(key)
    nonce = h(v["nonce"])
    d = wp.discover(mac, v["device"], nonce)
    expect(d == h(v["discover_frame"]), "DISCOVER encoded to %s" % hx(d))
    expect(wp.peek_device(d) == v["device"], "peek_device of DISCOVER")
    same_msg(wp.decode_frame(mac, d, False), wp.DISCOVER, 0, {"device": v["device"], "nonce": nonce})
    a = wp.announce(mac, nonce, v["host"], v["port"])
    expect(a == h(v["announce_frame"]), "ANNOUNCE encoded to %s" % hx(a))
    got = wp.accept_announce(mac, a, nonce)
    expect(tuple(got) == (v["host"], v["port"]), "accept_announce gave %r" % (got,))
    for r in v["announce_rejects"]:
        try:
            raises(r["error"], wp.accept_announce, mac, h(r["frame"]), nonce)
        except Fail as e:
            raise Fail("announce reject (%s): %s" % (r["why"], e))


def check_hmac(v):
    key = h(v["key"])
    msg = h(v["msg"])
    tag = h(v["tag"])
    got = wp.hmac_sha256(key, msg)
    expect(len(got) == 32 and got[:len(tag)] == tag, "tag %s" % hx(got))
    expect(wp.Hmac(key).digest(msg) == got, "Hmac object disagrees with hmac_sha256")


CHECKS = (("valid", check_valid), ("rejected", check_rejected), ("handshakes", check_handshake),
          ("discovery", check_discovery), ("cases", check_hmac))


def load(path):
    f = open(path)
    try:
        return json.loads(f.read())
    finally:
        f.close()


def count(data):
    n = 0
    for section, _ in CHECKS:
        n += len(data.get(section, ()))
    return n


def run(paths, lib=None, out=print):
    """Check every vector in the files; returns (passed, failed)."""
    global wp
    if lib is not None and lib not in sys.path:
        sys.path.insert(0, lib)
    import wardproto
    wp = wardproto
    passed = 0
    failed = 0
    for path in paths:
        data = load(path)
        for section, check in CHECKS:
            for v in data.get(section, ()):
                try:
                    check(v)
                    passed += 1
                except Exception as e:
                    failed += 1
                    out("FAIL %s: %s: %s: %s" % (path.split("/")[-1], v.get("name", section), type(e).__name__, e))
    out("vectors: %d passed, %d failed" % (passed, failed))
    return passed, failed


def main(argv):
    lib = HERE + "/../../firmware/lib"
    paths = []
    i = 0
    while i < len(argv):
        if argv[i] == "--lib":
            lib = argv[i + 1]
            i += 2
        else:
            paths.append(argv[i])
            i += 1
    if not paths:
        paths = [HERE + "/" + f for f in FILES]
    passed, failed = run(paths, lib)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
