"""otaproto (the over-the-air update's wire rules) holds the committed vectors on both interpreters:
CPython (the host) and MicroPython (the terminals); its RSA check agrees with `cryptography`."""
import json
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import given, settings, strategies as st

from .helpers import LIB, MICROPYTHON, ROOT, VECTORS, run_micropython, summary

import check_ota_vectors  # tests/vectors, put on sys.path by conftest
import otaproto  # firmware/lib, put on sys.path by conftest

FRAMES = VECTORS / "ota_frames.json"


def vector_count():
    """How many vectors the committed file holds, counted here independently of the checker."""
    data = json.loads(FRAMES.read_text(encoding="utf-8"))
    return 1 + sum(len(v) for k, v in data.items() if isinstance(v, list))


def test_cpython_in_process():
    lines = []
    passed, failed = check_ota_vectors.run([str(FRAMES)], lib=str(LIB), out=lines.append)
    assert failed == 0, "\n".join(lines)
    assert passed == vector_count()
    assert lines[-1] == "ota vectors: %d passed, 0 failed" % vector_count()


@pytest.mark.timeout(60)
def test_cpython_subprocess():
    p = subprocess.run([sys.executable, str(VECTORS / "check_ota_vectors.py")], capture_output=True, text=True,
                       timeout=50, cwd=str(ROOT))
    assert p.returncode == 0, p.stdout + p.stderr
    assert summary(p.stdout, "ota vectors:") == "ota vectors: %d passed, 0 failed" % vector_count()


@pytest.mark.timeout(60)
def test_micropython():
    p = run_micropython(VECTORS / "check_ota_vectors.py")
    assert p.returncode == 0, p.stdout + p.stderr
    assert summary(p.stdout, "ota vectors:") == "ota vectors: %d passed, 0 failed" % vector_count()
    assert "FAIL" not in p.stdout


@pytest.mark.timeout(60)
def test_micropython_from_another_directory(tmp_path):
    p = subprocess.run([str(MICROPYTHON), str(VECTORS / "check_ota_vectors.py")],
                       capture_output=True, text=True, timeout=50, cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.timeout(60)
def test_checker_reports_failures(tmp_path):
    # corrupted vectors are reported as FAIL lines and a non-zero exit, on MicroPython too
    data = json.loads(FRAMES.read_text(encoding="utf-8"))
    data["signatures"][0]["ok"] = False               # a valid signature said to be refused
    data["signatures"][3]["ok"] = True                # a flipped bit said to be accepted
    data["paths"][5]["ok"] = True                     # lib/otaboot.py said to be writable
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    p = run_micropython(VECTORS / "check_ota_vectors.py", bad)
    assert p.returncode == 1
    fails = [l for l in p.stdout.splitlines() if l.startswith("FAIL")]
    assert len(fails) == 3, p.stdout
    assert summary(p.stdout, "ota vectors:") == "ota vectors: %d passed, 3 failed" % (vector_count() - 3)


def test_vectors_cover_the_rules():
    data = json.loads(FRAMES.read_text(encoding="utf-8"))
    names = " ".join(v["name"] for v in data["signatures"])
    for what in ("valid", "bit flipped", "signed with key b", "short", "s = n", "block type 2", "SHA-1",
                 "without NULL", "bytes after the hash", "another statement"):
        assert what in names, what
    assert {v["code"] for v in data["results"]} | {otaproto.R_TEXT} == \
        {getattr(otaproto, n) for n in dir(otaproto) if n.startswith("R_")}
    refused_paths = {v["value"] for v in data["paths"] if not v["ok"]}
    for stem in otaproto.PROTECTED:
        assert any("/%s." % stem in p for p in refused_paths), stem
    assert otaproto.KEY_FILE in refused_paths
    assert data["chunk_size"] == otaproto.chunk_size()


@pytest.mark.timeout(60)
def test_generator_agrees_with_committed_vectors():
    p = subprocess.run([sys.executable, str(VECTORS / "make_ota_vectors.py"), "--check"], capture_output=True,
                       text=True, timeout=50, cwd=str(ROOT))
    assert p.returncode == 0, p.stdout + p.stderr


KEY = serialization.load_pem_private_key((VECTORS / "ota_test_key_a.pem").read_bytes(), None)
N = KEY.public_key().public_numbers().n


@settings(max_examples=40, deadline=None)
@given(message=st.binary(max_size=300), flip=st.integers(min_value=0, max_value=383 * 8 + 7))
def test_verify_agrees_with_cryptography(message, flip):
    sig = KEY.sign(message, padding.PKCS1v15(), hashes.SHA256())
    assert otaproto.verify(N, 384, message, sig) is True
    bad = bytearray(sig)
    bad[flip // 8] ^= 1 << (flip % 8)
    assert otaproto.verify(N, 384, message, bytes(bad)) is False
    assert otaproto.verify(N, 384, message + b"x", sig) is False
