# Check otaproto against the committed OTA vectors. Runs unchanged on MicroPython and CPython:
#
#   micropython tests/vectors/check_ota_vectors.py [--lib DIR] [FILE.json ...]
#   python3     tests/vectors/check_ota_vectors.py [--lib DIR] [FILE.json ...]
#
# Default file: ota_frames.json next to this script; default lib: firmware/lib (otaproto, and
# wardproto for the chunk size). Prints one line per failing vector and a last line
# "ota vectors: N passed, M failed"; exits 1 on any failure. tests/protocol/test_ota_vectors.py
# runs it on both interpreters. It never writes vectors (make_ota_vectors.py does).
import sys
import json
from binascii import unhexlify


def _dir(path):
    i = path.rfind("/")
    return path[:i] if i > 0 else "."


HERE = _dir(sys.argv[0] if __name__ == "__main__" else __file__)
O = None    # otaproto, imported by run() once the library path is known


class Fail(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Fail(what)


def refused(code, fn, *args):
    """fn(*args) must raise otaproto.Refused with this code."""
    try:
        fn(*args)
    except O.Refused as e:
        if e.code != code:
            raise Fail("refused with %r, expected %r" % (e.code, code))
        return
    except Exception as e:  # anything but Refused is a failure in itself
        raise Fail("raised %s: %s instead of Refused" % (type(e).__name__, e))
    raise Fail("accepted, expected a refusal %r" % code)


def check_path(v):
    expect(O.valid_path(v["value"]) is v["ok"], "valid_path(%r) is not %r" % (v["value"], v["ok"]))


def check_version(v):
    expect(O.valid_version(v["value"]) is v["ok"], "valid_version(%r) is not %r" % (v["value"], v["ok"]))


def check_twin(v):
    expect(O.twin(v["path"]) == v["twin"], "twin(%r)" % v["path"])


def check_chunk_size(v):
    expect(O.chunk_size() == v, "chunk_size() %d, expected %d" % (O.chunk_size(), v))


def check_key(v):
    n, k = O.parse_key(v["text"])
    expect(n == int(v["n"], 16) and k == v["k"], "parse_key")
    expect(O.key_id(n) == v["kid"], "key_id %s" % O.key_id(n))
    expect(O.parse_key(O.key_text(n)) == (n, k), "key_text round trip")


def check_bad_key(v):
    refused(O.R_BAD_KEY, O.parse_key, v["text"])


def check_statement(v):
    got = O.statement(v["version"], v["serial"], len(v["entries"]), v["size"], O.manifest_digest(v["entries"]))
    expect(O.manifest_digest(v["entries"]) == v["digest"], "manifest digest")
    expect(got == unhexlify(v["statement"]), "statement bytes")
    expect(O.package_id(got) == v["id"], "package id")


KEYS = {}


def check_signature(v):
    n, k = KEYS[v["key"]]
    got = O.verify(n, k, unhexlify(v["message"]), unhexlify(v["sig"]))
    expect(got is v["ok"], "verify gave %r" % got)


def check_begin(v):
    hdr, sig = O.decode_begin(unhexlify(v["arg"]))
    expect(hdr == v["hdr"], "header %r" % hdr)
    expect(sig == unhexlify(v["sig"]), "signature")
    hdr2, sig2 = O.decode_begin(O.encode_begin(v["hdr"], unhexlify(v["sig"])))
    expect(hdr2 == v["hdr"] and sig2 == sig, "encode_begin round trip")


def check_bad_begin(v):
    refused(v["code"], O.decode_begin, unhexlify(v["arg"]))


def check_file(v):
    got = O.decode_file(unhexlify(v["arg"]))
    expect(list(got) == [v["i"], v["path"], v["size"], v["sha"]], "decoded %r" % (got,))
    expect(list(O.decode_file(O.encode_file(v["i"], v["path"], v["size"], v["sha"]))) == list(got), "round trip")


def check_bad_file(v):
    refused(v["code"], O.decode_file, unhexlify(v["arg"]))


def check_chunk(v):
    arg = unhexlify(v["arg"])
    i, off, data = O.decode_chunk(arg)
    expect(i == v["i"] and off == v["off"] and bytes(data) == unhexlify(v["data"]), "decoded")
    expect(O.encode_chunk(v["i"], v["off"], unhexlify(v["data"])) == arg, "encoded")


def check_bad_chunk(v):
    refused(v["code"], O.decode_chunk, unhexlify(v["arg"]))


def check_result(v):
    text = O.result(v["code"], v["fields"])
    expect(len(text.encode()) <= O.MAX_DETAIL, "detail of %d bytes" % len(text.encode()))
    d = O.parse_result(text)
    expect(d.get("c") == v["code"], "code %r" % d.get("c"))
    if v["sentence"] is None:          # free text shortened to fit
        expect(d.get("m", "").endswith("..."), "shortened text")
        return
    want = {"c": v["code"]}
    for k in v["fields"]:
        want[k] = v["fields"][k]
    expect(d == want, "parsed %r" % d)
    expect(O.describe(d) == v["sentence"], "sentence %r" % O.describe(d))
    r = O.Refused(v["code"], v["fields"])
    expect(O.parse_result(r.detail()) == want and r.sentence() == v["sentence"], "Refused")


def check_text(v):
    d = O.parse_result(v["text"])
    expect(d == v["parsed"], "parsed %r" % d)
    expect(O.describe(d) == v["sentence"], "sentence %r" % O.describe(d))


CHECKS = (("paths", check_path), ("versions", check_version), ("twins", check_twin),
          ("keys", check_key), ("bad_keys", check_bad_key), ("statements", check_statement),
          ("signatures", check_signature), ("begins", check_begin), ("bad_begins", check_bad_begin),
          ("files", check_file), ("bad_files", check_bad_file), ("chunks", check_chunk),
          ("bad_chunks", check_bad_chunk), ("results", check_result), ("texts", check_text))


def load(path):
    f = open(path)
    try:
        return json.loads(f.read())
    finally:
        f.close()


def count(data):
    n = 1   # chunk_size
    for section, _ in CHECKS:
        n += len(data.get(section, ()))
    return n


def run(paths, lib=None, out=print):
    """Check every vector in the files; returns (passed, failed)."""
    global O
    if lib is not None and lib not in sys.path:
        sys.path.insert(0, lib)
    import otaproto
    O = otaproto
    passed = 0
    failed = 0
    for path in paths:
        data = load(path)
        for v in data.get("keys", ()):
            KEYS[v["name"]] = (int(v["n"], 16), v["k"])
        sections = [("chunk_size", check_chunk_size)] + list(CHECKS)
        for section, check in sections:
            items = data.get(section, ())
            if section == "chunk_size":
                items = [items]
            for v in items:
                try:
                    check(v)
                    passed += 1
                except Exception as e:
                    failed += 1
                    name = v.get("name", v.get("value", section)) if isinstance(v, dict) else section
                    out("FAIL %s: %s: %s: %s: %s" % (path.split("/")[-1], section, name, type(e).__name__, e))
    out("ota vectors: %d passed, %d failed" % (passed, failed))
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
        paths = [HERE + "/ota_frames.json"]
    passed, failed = run(paths, lib)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
