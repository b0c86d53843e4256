"""Shared bits of the protocol tests (paths, the MicroPython runner, small frame builders)."""
import hashlib
import hmac
import json
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "firmware" / "lib"
VECTORS = ROOT / "tests" / "vectors"
# the venv's micropython sits next to its python
MICROPYTHON = Path(sys.executable).with_name("micropython")

if str(LIB) not in sys.path:
    sys.path.insert(0, str(LIB))
import wardproto as wp  # noqa: E402

KEY_A = bytes(range(32))
KEY_B = hashlib.sha256(b"wardcall test device bed-102-1").digest()


def run_micropython(*args, timeout=50):
    """Run a script under the MicroPython unix port; returns the CompletedProcess."""
    assert MICROPYTHON.exists(), "no micropython next to %s" % sys.executable
    return subprocess.run([str(MICROPYTHON), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT))


def summary(stdout, prefix):
    """The last line starting with prefix, e.g. 'vectors: 138 passed, 0 failed'."""
    lines = [l for l in stdout.splitlines() if l.startswith(prefix)]
    assert lines, "no %r summary in output:\n%s" % (prefix, stdout)
    return lines[-1]


def vector_count():
    """How many vectors the committed files hold, counted here independently of the checker."""
    frames = json.loads((VECTORS / "frames.json").read_text(encoding="utf-8"))
    hmacs = json.loads((VECTORS / "hmac.json").read_text(encoding="utf-8"))
    return sum(len(frames[s]) for s in ("valid", "rejected", "handshakes", "discovery")) + len(hmacs["cases"])


def raw_frame(key, mtype, seq, body, flags=0, version=None, length=None):
    """A frame built by hand (struct + CPython hmac), e.g. with a body wardproto would not encode."""
    if version is None:
        version = wp.VERSION
    if length is None:
        length = 7 + len(body) + 32
    signed = struct.pack(">HBBBI", length, version, mtype, flags, seq) + body
    return signed + hmac.new(key, signed, hashlib.sha256).digest()


HWID = bytes.fromhex("246f28a1b2c3")      # a 6-byte ESP32 machine.unique_id()


def pair(key=KEY_A, dn=b"\x11" * 8, hn=b"\x22" * 8, device="bed-101-1"):
    """A device Session and a host Session after a completed handshake."""
    dev = wp.Session(key, False)
    dev.nonce = dn
    host = wp.Session(key, True)
    host.nonce = hn
    host.accept_hello(dev.hello(device, "0.1.0", "esp32", 31, HWID))
    dev.accept_welcome(host.welcome(1767225600, 1000))
    return dev, host


def hb(uptime=1):
    return {"status": 0, "pending": 0, "uptime": uptime}
