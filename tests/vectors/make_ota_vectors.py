"""Generate the over-the-air update test vectors (ota_frames.json) for otaproto. CPython only.

Like make_vectors.py, this script is for ADDING vectors: its output is committed, and the tests
only check otaproto against it (check_ota_vectors.py, on CPython and on MicroPython). A vector
that changes on regeneration means the OTA wire format changed.

    .venv/bin/python tests/vectors/make_ota_vectors.py          # writes ota_frames.json
    .venv/bin/python tests/vectors/make_ota_vectors.py --check  # fails if the file would change

Independence: statements and manifest digests are written out here from docs/PROTOCOL.md section
12 and compared with otaproto's; every signature is made, and every verdict decided, by the
`cryptography` package (RSASSA-PKCS1-v1_5, SHA-256) with the committed test keys
ota_test_key_a.pem / ota_test_key_b.pem (test keys only: never a ward's); crafted encodings (wrong
padding, other digests, trailing bytes) are raw RSA with the test key's private exponent, and
cryptography must refuse each of them too.

Sections (bytes as lowercase hex, integers as numbers):
  paths, versions, twins: {value, ok} / {path, twin} for valid_path, valid_version, twin
  chunk_size: the data bytes per chunk (derived from wardproto.OTA_CHUNK_MAX)
  keys:       {name, n, kid, text}: parse_key(text) == (n, len), key_id(n) == kid
  bad_keys:   {name, text}: parse_key refuses (R_BAD_KEY)
  statements: {name, version, serial, entries, size, digest, statement, id}
  signatures: {name, key, message, sig, ok}: verify(n, k, message, sig) == ok
  begins:     {name, hdr, sig, arg}: decode_begin(arg) == (hdr with trial_s, sig)
  bad_begins: {name, arg, code}
  files / bad_files, chunks / bad_chunks: decoders (chunks: encode too)
  results:    {code, fields, sentence}: parse(result(code, fields)) == {c: code, **fields},
              describe() == sentence
  texts:      {text, parsed, sentence}: parse_result of details that are not otaproto's
"""
import hashlib
import json
import struct
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

HERE = Path(__file__).resolve().parent
LIB = HERE.parent.parent / "firmware" / "lib"
sys.path.insert(0, str(LIB))
import otaproto as O  # noqa: E402

OUT = HERE / "ota_frames.json"
SHA256_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
SHA1_INFO = bytes.fromhex("3021300906052b0e03021a05000414")
SHA256_INFO_NO_NULL = bytes.fromhex("302f300b0609608648016503040201" "0420")


def key(name):
    return serialization.load_pem_private_key((HERE / f"ota_test_key_{name}.pem").read_bytes(), None)


KEYS = {"a": key("a"), "b": key("b")}


def n_of(name):
    return KEYS[name].public_key().public_numbers().n


def k_of(name):
    return (KEYS[name].key_size + 7) // 8


def statement(version, serial, entries):
    """docs/PROTOCOL.md 12.1, written out independently of otaproto."""
    lines = "".join(f"{p} {s} {h}\n" for p, s, h in entries)
    digest = hashlib.sha256(lines.encode()).hexdigest()
    size = sum(s for _, s, _ in entries)
    text = (f"wardcall-ota/1\nversion {version}\nserial {serial}\nfiles {len(entries)} {size}\n"
            f"manifest {digest}\n")
    return text.encode(), digest, size


def sign(name, message):
    return KEYS[name].sign(message, padding.PKCS1v15(), hashes.SHA256())


def raw_sign(name, em):
    numbers = KEYS[name].private_numbers()
    m = int.from_bytes(em, "big")
    return pow(m, numbers.d, numbers.public_numbers.n).to_bytes(k_of(name), "big")


def cryptography_accepts(name, message, sig):
    try:
        KEYS[name].public_key().verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, ValueError):
        return False


def entries_of(files):
    return [[p, len(d), hashlib.sha256(d).hexdigest()] for p, d in files]


def build():
    v = {}
    v["paths"] = [{"value": p, "ok": ok} for p, ok in [
        ("lib/app.py", True), ("lib/sub/x.mpy", True), ("lib/a-b_c.d.py", True), ("lib/" + "a" * 57 + ".py", True),
        ("lib/" + "a" * 58 + ".py", False), ("lib/otaboot.py", False), ("lib/otacheck.mpy", False),
        ("lib/otaproto.py", False), ("lib/maint.py", False), ("lib/main.py", False), ("lib/board.mpy", False), ("lib/sub/boot.py", False),
        ("boot.py", False), ("main.py", False), ("config.json", False), ("otakey.json", False), ("/lib/x.py", False),
        ("lib/../x.py", False), ("lib//x.py", False), ("lib/x.txt", False), ("lib/.py", False), ("lib/ä.py", False),
        ("lib/x y.py", False), ("lib/", False), ("lib/x/", False), (".ota/state.json", False), ("lib/otatext.mpy", False)]]
    v["versions"] = [{"value": s, "ok": ok} for s, ok in [
        ("0.1.0", True), ("2.0-rc1+b7", True), ("a" * 32, True), ("a" * 33, False), ("", False), ("1 0", False),
        ("1\nserial 9", False), ("1.0é", False), ("v/1", False)]]
    v["twins"] = [{"path": "lib/a.py", "twin": "lib/a.mpy"}, {"path": "lib/a.mpy", "twin": "lib/a.py"},
                  {"path": "config.json", "twin": None}]
    v["chunk_size"] = 960

    v["keys"] = []
    for name in ("a", "b"):
        n = n_of(name)
        nb = n.to_bytes(k_of(name), "big")
        v["keys"].append({"name": name, "n": "%x" % n, "k": k_of(name),
                          "kid": hashlib.sha256(nb).hexdigest()[:16],
                          "text": json.dumps({"n": "%x" % n, "e": 65537})})
    na = "%x" % n_of("a")
    v["bad_keys"] = [{"name": name, "text": text} for name, text in [
        ("not JSON", "{"), ("no modulus", '{"e": 65537}'), ("e = 3", json.dumps({"n": na, "e": 3})),
        ("no e", json.dumps({"n": na})), ("modulus not hex", '{"n": "xyz", "e": 65537}'),
        ("even modulus", json.dumps({"n": "%x" % (n_of("a") - 1), "e": 65537})),
        ("RSA-1024", json.dumps({"n": "%x" % (2 ** 1023 + 1), "e": 65537})),
        ("over RSA-4096", json.dumps({"n": "%x" % (2 ** 4100 + 1), "e": 65537})),
        ("a list", "[1, 2]")]]

    pkg_files = [("lib/app.py", b"print('new')\n" * 40), ("lib/empty.py", b""), ("lib/version.py", b'VERSION = "2.0"\n')]
    stmts = [("three files", "2.0", 1767225600, entries_of(pkg_files)),
             ("one file, big serial", "0.1.0-x", O.MAX_SERIAL, entries_of([("lib/a.mpy", bytes(range(256)))]))]
    v["statements"] = []
    for name, version, serial, entries in stmts:
        text, digest, size = statement(version, serial, entries)
        assert O.statement(version, serial, len(entries), size, O.manifest_digest(entries)) == text
        v["statements"].append({"name": name, "version": version, "serial": serial, "entries": entries,
                                "size": size, "digest": digest, "statement": text.hex(),
                                "id": hashlib.sha256(text).hexdigest()[:32]})

    msg, _, _ = statement("2.0", 1767225600, entries_of(pkg_files))
    other, _, _ = statement("2.0", 1767225601, entries_of(pkg_files))
    k = k_of("a")
    h = hashlib.sha256(msg).digest()

    def em(info, digest, ps=None, block=b"\x00\x01", tail=b""):
        t = info + digest
        ps = ps if ps is not None else k - 3 - len(t) - len(tail)
        return block + b"\xff" * ps + b"\x00" + t + tail

    good = sign("a", msg)
    flipped = bytearray(good)
    flipped[100] ^= 1
    sigs = [("valid", "a", msg, good), ("valid, key b", "b", msg, sign("b", msg)),
            ("another statement's signature", "a", other, good), ("one bit flipped", "a", msg, bytes(flipped)),
            ("signed with key b, checked with a", "a", msg, sign("b", msg)),
            ("one byte short", "a", msg, good[1:]), ("one byte long", "a", msg, b"\x00" + good),
            ("s = n", "a", msg, n_of("a").to_bytes(k, "big")), ("s = 0", "a", msg, bytes(k)),
            ("s = 1", "a", msg, (1).to_bytes(k, "big")),
            ("raw: the correct encoding", "a", msg, raw_sign("a", em(SHA256_INFO, h))),
            ("raw: block type 2", "a", msg, raw_sign("a", em(SHA256_INFO, h, block=b"\x00\x02"))),
            ("raw: SHA-1 DigestInfo", "a", msg, raw_sign("a", em(SHA1_INFO, hashlib.sha1(msg).digest()))),
            ("raw: DigestInfo without NULL", "a", msg, raw_sign("a", em(SHA256_INFO_NO_NULL, h))),
            ("raw: bytes after the hash", "a", msg, raw_sign("a", em(SHA256_INFO, h, tail=b"\x00" * 8))),
            ("raw: no 0 separator", "a", msg, raw_sign("a", b"\x00\x01" + b"\xff" * (k - 2 - 51) + SHA256_INFO + h)),
            ("raw: hash of nothing", "a", msg, raw_sign("a", em(SHA256_INFO, hashlib.sha256(b"").digest())))]
    v["signatures"] = []
    for name, kname, message, sig in sigs:
        ok = cryptography_accepts(kname, message, sig)
        assert ok == (name.startswith("valid") or name == "raw: the correct encoding"), name
        v["signatures"].append({"name": name, "key": kname, "message": message.hex(), "sig": sig.hex(), "ok": ok})

    ent = entries_of(pkg_files)
    hdr = {"v": "2.0", "serial": 1767225600, "n": 3, "size": sum(e[1] for e in ent), "m": O.manifest_digest(ent),
           "kid": v["keys"][0]["kid"], "trial_s": 30}

    def begin(h, sig):
        j = json.dumps(h).encode()
        return struct.pack(">H", len(j)) + j + sig

    no_trial = {key_: val for key_, val in hdr.items() if key_ != "trial_s"}
    v["begins"] = [{"name": "signed", "hdr": hdr, "sig": good.hex(), "arg": begin(hdr, good).hex()},
                   {"name": "trial_s defaults to 60", "hdr": dict(no_trial, trial_s=60), "sig": good.hex(),
                    "arg": begin(no_trial, good).hex()}]
    bad = []
    for name, h_, sig in [("no signature", hdr, b""), ("version with a newline", dict(hdr, v="2\nserial 9"), good),
                          ("serial 0", dict(hdr, serial=0), good), ("serial true", dict(hdr, serial=True), good),
                          ("serial beyond 2**40", dict(hdr, serial=2 ** 40), good), ("65 files", dict(hdr, n=65), good),
                          ("0 files", dict(hdr, n=0), good), ("over 512 KiB", dict(hdr, size=524289), good),
                          ("trial 4 s", dict(hdr, trial_s=4), good), ("trial 601 s", dict(hdr, trial_s=601), good),
                          ("digest upper case", dict(hdr, m=hdr["m"].upper()), good),
                          ("key id short", dict(hdr, kid="abc"), good), ("signature of 100 bytes", hdr, good[:100])]:
        code = O.R_UNSIGNED if not sig else O.R_BAD_REQUEST
        bad.append({"name": name, "arg": begin(h_, sig).hex(), "code": code})
    bad += [{"name": "an unsigned host's bare JSON", "arg": json.dumps({"v": "1", "n": 1, "size": 3, "id": "x"}).encode().hex(),
             "code": O.R_UNSIGNED},
            {"name": "empty", "arg": "", "code": O.R_BAD_REQUEST},
            {"name": "length past the end", "arg": (struct.pack(">H", 900) + b"{}").hex(), "code": O.R_BAD_REQUEST},
            {"name": "header not JSON", "arg": (struct.pack(">H", 3) + b"\xff\xfe{" + good).hex(), "code": O.R_BAD_REQUEST},
            {"name": "header a list", "arg": begin([1], good).hex(), "code": O.R_BAD_REQUEST}]
    v["bad_begins"] = bad

    v["files"] = [{"arg": json.dumps([i, *e]).encode().hex(), "i": i, "path": e[0], "size": e[1], "sha": e[2]}
                  for i, e in enumerate(ent)]
    sha = ent[0][2]
    v["bad_files"] = [{"name": name, "arg": arg.hex(), "code": code} for name, arg, code in [
        ("protected path", json.dumps([0, "lib/otaboot.py", 3, sha]).encode(), O.R_PATH),
        ("config.json", json.dumps([0, "config.json", 3, sha]).encode(), O.R_PATH),
        ("index 64", json.dumps([64, "lib/a.py", 3, sha]).encode(), O.R_BAD_REQUEST),
        ("negative size", json.dumps([0, "lib/a.py", -1, sha]).encode(), O.R_BAD_REQUEST),
        ("sha upper case", json.dumps([0, "lib/a.py", 3, sha.upper()]).encode(), O.R_BAD_REQUEST),
        ("three fields", json.dumps([0, "lib/a.py", 3]).encode(), O.R_BAD_REQUEST),
        ("not JSON", b"[0, ", O.R_BAD_REQUEST), ("an object", b'{"i": 0}', O.R_BAD_REQUEST),
        ("path a number", json.dumps([0, 5, 3, sha]).encode(), O.R_BAD_REQUEST)]]
    v["chunks"] = [{"arg": (struct.pack(">HI", i, off) + data).hex(), "i": i, "off": off, "data": data.hex()}
                   for i, off, data in [(0, 0, b"abc"), (2, 960, bytes(range(200))), (65535, 2 ** 32 - 1, b""),
                                        (1, 5, b"")]]
    v["bad_chunks"] = [{"name": "5 bytes", "arg": "0000000000", "code": O.R_BAD_REQUEST},
                       {"name": "empty", "arg": "", "code": O.R_BAD_REQUEST}]

    results = [
        (O.R_AT, {"d": 3, "f": 1, "o": 960, "sig": "ok"}, "continue at file 1 offset 960 (3 file(s) declared)"),
        (O.R_CHECKING, {}, "the signature is still being checked: declare the last file again"),
        (O.R_COMMITTED, {"v": "2.0"}, "committed 2.0: rebooting"),
        (O.R_ABORTED, {}, "aborted"),
        (O.R_STATUS, {"s": "trial", "v": "2.0", "from": "0.1.0", "run": "2.0", "serial": 7, "key": "0" * 16},
         "update state trial"),
        (O.R_UNSIGNED, {}, "the update is not signed: only updates signed with the ward key are installed"),
        (O.R_NO_KEY, {}, "no update key installed: deploy it"),
        (O.R_BAD_KEY, {}, "the installed update key is unreadable: deploy it again"),
        (O.R_WRONG_KEY, {"kid": "1" * 16, "have": "2" * 16},
         "signed with another key (%s); this terminal trusts key %s" % ("1" * 16, "2" * 16)),
        (O.R_BAD_SIGNATURE, {}, "the signature does not verify: changed after signing or not signed with the ward key"),
        (O.R_DOWNGRADE, {"serial": 5, "installed": 9},
         "downgrade refused: serial 5 is not newer than the installed serial 9"),
        (O.R_BUSY_TRIAL, {"v": "2.0"}, "busy: firmware 2.0 is still on trial"),
        (O.R_NO_SPACE, {"need": 42768, "free": 40000}, "not enough flash: 42768 bytes needed, 40000 free"),
        (O.R_PATH, {"path": "lib/otaboot.py"}, "path lib/otaboot.py may not be updated over the air"),
        (O.R_ORDER, {"d": 3, "f": 0, "o": 500}, "expected file 0 offset 500 (3 file(s) declared)"),
        (O.R_UNDECLARED, {"d": 1, "n": 2}, "every file must be declared before the first chunk (1 of 2 declared)"),
        (O.R_MANIFEST, {}, "the declared files do not match the signed manifest"),
        (O.R_HASH, {"path": "lib/app.py"}, "hash mismatch: lib/app.py"),
        (O.R_TOO_BIG, {"m": "files exceed the declared size"}, "too big: files exceed the declared size"),
        (O.R_NOT_STARTED, {}, "no update in progress"),
        (O.R_INCOMPLETE, {"f": 1, "n": 3}, "incomplete: 1 of 3 file(s)"),
        (O.R_BUSY_CALLS, {"n": 2}, "busy: 2 call event(s) not yet delivered"),
        (O.R_FLASH, {"m": "OSError(28,)"}, "flash error: OSError(28,)"),
        (O.R_UNSUPPORTED, {"cmd": 22}, "unsupported command 22"),
        (O.R_NO_MEMORY, {}, "the terminal ran out of memory: it dropped the update to keep its calls going"),
        (O.R_BAD_REQUEST, {"m": "x" * 300}, None),       # shortened to fit a RESULT
    ]
    v["results"] = [{"code": c, "fields": f, "sentence": s} for c, f, s in results]
    v["texts"] = [{"text": t, "parsed": p, "sentence": s} for t, p, s in [
        ("unsupported command 16", {"c": "text", "m": "unsupported command 16"}, "unsupported command 16"),
        ("[1, 2]", {"c": "text", "m": "[1, 2]"}, "[1, 2]"),
        ('{"c": "downgrade"}', {"c": "downgrade"}, "downgrade refused: serial ? is not newer than the installed serial ?"),
        ('{"c": "what"}', {"c": "what"}, 'unknown answer {"c": "what"}')]]
    assert set(c for c, _, _ in results) | {O.R_TEXT} >= {getattr(O, n) for n in dir(O) if n.startswith("R_")}
    return v


def dump(v):
    return json.dumps(v, indent=1, ensure_ascii=False) + "\n"


def main(argv):
    text = dump(build())
    if "--check" in argv:
        if OUT.read_text(encoding="utf-8") != text:
            print("ota_frames.json differs from what make_ota_vectors.py builds")
            return 1
        print("ota_frames.json is what make_ota_vectors.py builds")
        return 0
    OUT.write_text(text, encoding="utf-8")
    print("wrote", OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
