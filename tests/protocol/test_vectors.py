"""The committed vectors hold on both interpreters: CPython (the host) and MicroPython (the terminals)."""
import json
import subprocess
import sys

import pytest

from .helpers import LIB, MICROPYTHON, ROOT, VECTORS, run_micropython, summary, vector_count, wp

import check_vectors  # tests/vectors, put on sys.path by conftest


def test_cpython_in_process():
    lines = []
    passed, failed = check_vectors.run([str(VECTORS / "frames.json"), str(VECTORS / "hmac.json")],
                                       lib=str(LIB), out=lines.append)
    assert failed == 0, "\n".join(lines)
    assert passed == vector_count()
    assert lines[-1] == "vectors: %d passed, 0 failed" % vector_count()


@pytest.mark.timeout(60)
def test_cpython_subprocess():
    p = subprocess.run([sys.executable, str(VECTORS / "check_vectors.py")], capture_output=True, text=True,
                       timeout=50, cwd=str(ROOT))
    assert p.returncode == 0, p.stdout + p.stderr
    assert summary(p.stdout, "vectors:") == "vectors: %d passed, 0 failed" % vector_count()


@pytest.mark.timeout(60)
def test_micropython():
    p = run_micropython(VECTORS / "check_vectors.py")
    assert p.returncode == 0, p.stdout + p.stderr
    assert summary(p.stdout, "vectors:") == "vectors: %d passed, 0 failed" % vector_count()
    assert "FAIL" not in p.stdout


@pytest.mark.timeout(60)
def test_micropython_from_another_directory(tmp_path):
    # the checker finds its files and the library from its own path, not the working directory
    p = subprocess.run([str(MICROPYTHON), str(VECTORS / "check_vectors.py")],
                       capture_output=True, text=True, timeout=50, cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.timeout(60)
def test_checker_reports_failures(tmp_path):
    # a corrupted vector is reported as one FAIL line and a non-zero exit, on MicroPython too
    frames = json.loads((VECTORS / "frames.json").read_text(encoding="utf-8"))
    frames["valid"][0]["seq"] += 1
    frames["rejected"][0]["error"] = 99
    bad = tmp_path / "bad.json"
    # raw UTF-8, as make_vectors writes: MicroPython's json mangles \ud83d\udc69-style surrogate pairs
    bad.write_text(json.dumps(frames, ensure_ascii=False), encoding="utf-8")
    p = run_micropython(VECTORS / "check_vectors.py", bad)
    assert p.returncode == 1
    fails = [l for l in p.stdout.splitlines() if l.startswith("FAIL")]
    assert len(fails) == 2, p.stdout
    n = sum(len(frames[s]) for s in ("valid", "rejected", "handshakes", "discovery"))
    assert summary(p.stdout, "vectors:") == "vectors: %d passed, 2 failed" % (n - 2)


def test_vectors_cover_the_protocol():
    frames = json.loads((VECTORS / "frames.json").read_text(encoding="utf-8"))
    assert {v["type"] for v in frames["valid"]} == set(wp.SCHEMAS)
    names = " ".join(v["name"] for v in frames["rejected"])
    for what in ("wrong version", "unknown type", "oversized", "truncated", "bad tag", "wrong direction",
                 "trailing byte", "bad UTF-8", "priority"):
        assert what in names, what
    whys = " ".join(r["why"] for h in frames["handshakes"] for r in h["rejects"] + h["welcome_rejects"])
    for what in ("replayed", "reordered", "reflected", "cross-device", "stale WELCOME"):
        assert what in whys, what
    assert any(v["source"] == "RFC 4231" for v in json.loads((VECTORS / "hmac.json").read_text())["cases"])
    # every ProtocolError code the vectors expect is one wardproto defines
    codes = {v["error"] for v in frames["rejected"]}
    assert codes <= {wp.E_MALFORMED, wp.E_AUTH, wp.E_SEQUENCE, wp.E_UNSUPPORTED}


@pytest.mark.timeout(60)
def test_generator_agrees_with_committed_vectors():
    # make_vectors.py --check builds everything in memory and compares; it never writes
    p = subprocess.run([sys.executable, str(VECTORS / "make_vectors.py"), "--check"], capture_output=True,
                       text=True, timeout=50, cwd=str(ROOT))
    assert p.returncode == 0, p.stdout + p.stderr
