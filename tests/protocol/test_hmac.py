"""wardproto's own HMAC-SHA256 (MicroPython has no hmac module) against CPython's hmac."""
import hashlib
import hmac
import json
import random

import pytest
from hypothesis import given, settings, strategies as st

from .helpers import VECTORS, run_micropython, summary, wp


def ref(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


@settings(max_examples=300, deadline=None)
@given(key=st.binary(max_size=200), msg=st.binary(max_size=1500))
def test_matches_cpython_hmac(key, msg):
    assert wp.hmac_sha256(key, msg) == ref(key, msg)


@settings(max_examples=100, deadline=None)
@given(key=st.binary(min_size=60, max_size=70), msgs=st.lists(st.binary(max_size=300), max_size=5))
def test_hmac_object_is_reusable_around_the_block_size(key, msgs):
    # the pads are computed once; each digest() starts afresh
    mac = wp.Hmac(key)
    for msg in msgs:
        assert mac.digest(msg) == ref(key, msg)


@pytest.mark.parametrize("klen", [0, 1, 32, 63, 64, 65, 128, 1000])
def test_key_lengths(klen):
    key = bytes((i * 7 + 3) & 0xFF for i in range(klen))
    for msg in (b"", b"x", bytes(64), bytes(range(256)) * 4):
        assert wp.hmac_sha256(key, msg) == ref(key, msg)


def test_accepts_bytes_like():
    key = bytes(range(40))
    msg = b"wardcall" * 9
    assert wp.hmac_sha256(bytearray(key), memoryview(msg)) == ref(key, msg)


@settings(max_examples=200, deadline=None)
@given(a=st.binary(max_size=40), b=st.binary(max_size=40))
def test_equal(a, b):
    assert wp.equal(a, b) == (a == b)


def test_session_key_is_hmac_of_label_and_nonces():
    key, dn, hn = bytes(range(32)), b"D" * 8, b"H" * 8
    assert wp.session_key(key, dn, hn) == ref(key, b"wardcall/1 session" + dn + hn)
    assert wp.session_key(key, dn, hn) != wp.session_key(key, hn, dn)


def test_rfc4231_vectors_on_cpython():
    cases = json.loads((VECTORS / "hmac.json").read_text())["cases"]
    rfc = [c for c in cases if c["source"] == "RFC 4231"]
    assert len(rfc) == 7
    for c in cases:
        got = wp.hmac_sha256(bytes.fromhex(c["key"]), bytes.fromhex(c["msg"]))
        assert got.hex().startswith(c["tag"]), c["name"]


@pytest.mark.timeout(60)
def test_committed_hmac_vectors_on_micropython():
    p = run_micropython(VECTORS / "check_vectors.py", VECTORS / "hmac.json")
    n = len(json.loads((VECTORS / "hmac.json").read_text())["cases"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert summary(p.stdout, "vectors:") == "vectors: %d passed, 0 failed" % n


@pytest.mark.timeout(60)
def test_fresh_random_hmac_cases_on_micropython(tmp_path):
    # new cases every run (seed printed on failure), computed by CPython's hmac, checked on MicroPython
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    cases = []
    for i in range(150):
        key = rnd.randbytes(rnd.choice([0, 1, 32, 63, 64, 65, 100, 129, 300]) if i % 3 else rnd.randrange(300))
        msg = rnd.randbytes(rnd.randrange(1200))
        cases.append({"name": "random %d (seed %d)" % (i, seed), "key": key.hex(), "msg": msg.hex(),
                      "tag": ref(key, msg).hex(), "source": "CPython hmac"})
    path = tmp_path / "hmac_random.json"
    path.write_text(json.dumps({"cases": cases}))
    p = run_micropython(VECTORS / "check_vectors.py", path)
    assert p.returncode == 0, "seed %d\n%s%s" % (seed, p.stdout, p.stderr)
    assert summary(p.stdout, "vectors:") == "vectors: 150 passed, 0 failed"
