# Over-the-air update: is this update the ward's? The ward's public key (otaproto.KEY_FILE,
# written only by `wardcall deploy`), the serial of the installed firmware, the signature check,
# and the check of a staged update before otaboot swaps it in. Part of the boot chain: never
# replaced by an update (otaproto.PROTECTED). Imported only when an update is received or checked.
from micropython import const
import os
import json
import gc
import hashlib
from binascii import unhexlify

import otaproto as O
from otaboot import NEW, INSTALLED

_BUF = const(512)
_HEX_CHUNK = const(32)
_HEXDIGITS = b"0123456789abcdefABCDEF"
_SHORT_MAX = const(8)      # steps in a row without a block for their product: then the update is given up


def _read_json(path):
    try:
        with open(path) as f:
            d = json.load(f)
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def load_key():
    """(n, k) of the installed public key, None if there is none; raises otaproto.Refused
    (R_BAD_KEY) if the file is unreadable. Read from the file 32 digits at a time: the whole
    text, its JSON string and O.parse_key's hex take ~770-byte blocks that a heap split by the
    session's objects may not have (what O.parse_key accepts, this accepts)."""
    try:
        f = open(O.KEY_FILE, "rb")
    except OSError:
        return None
    with f:
        span = _modulus_span(f)
        if span is None:
            raise O.Refused(O.R_BAD_KEY)
        start, digits = span
        # around the modulus only its exponent, in either order (CPython's json and
        # MicroPython's write the keys differently)
        f.seek(0)
        around = f.read(start) if start <= 64 else b""
        f.seek(start + digits)
        around = around.rstrip(b"0") + b"N" + f.read(64).rstrip()
        around = around.replace(b" ", b"")
        if around not in (b'{"n":"N","e":%d}' % O.E, b'{"e":%d,"n":"N"}' % O.E):
            raise O.Refused(O.R_BAD_KEY)
        n = 0
        for chunk in _hex_chunks(f, start, digits):
            if chunk is None:
                raise O.Refused(O.R_BAD_KEY)
            n = (n << (4 * len(chunk))) | int(bytes(chunk), 16)
    k = (digits + 1) // 2
    if not O.MIN_KEY_LEN <= k <= O.MAX_KEY_LEN or n % 2 == 0:
        raise O.Refused(O.R_BAD_KEY)
    return n, k


def key_state():
    """The installed key's id, "" without a key, "unreadable" for a broken key file. Asked by
    every STATUS (twice a second in a trial): the modulus is hashed as it is read, 32 digits at
    a time, where parsing the key whole takes five blocks of ~770 bytes, which a heap split by
    the session's objects may not have. The key itself is checked in full by an update's BEGIN."""
    try:
        f = open(O.KEY_FILE, "rb")
    except OSError:
        return ""
    with f:
        span = _modulus_span(f)
        if span is None:
            return "unreadable"
        h = hashlib.sha256()
        for chunk in _hex_chunks(f, *span):
            if chunk is None:
                return "unreadable"
            # O.key_bytes: an odd count of digits gets a leading 0 (only the first chunk is odd)
            h.update(unhexlify(b"0" + bytes(chunk) if len(chunk) % 2 else chunk))
        return O.hexstr(h.digest()[:8])


def _hex_chunks(f, start, digits):
    """The modulus's hex digits from the file, a view of up to _HEX_CHUNK at a time (the first
    one holds the odd remainder, so the others are whole bytes); None for a file cut short."""
    f.seek(start)
    buf = bytearray(_HEX_CHUNK)
    size = digits % _HEX_CHUNK or _HEX_CHUNK
    while digits:
        n = f.readinto(memoryview(buf)[:size])
        if n != size:
            yield None
            return
        yield memoryview(buf)[:n]
        digits -= n
        size = _HEX_CHUNK


def _modulus_span(f):
    """(offset, count) of the hex digits of "n" in O.key_text's layout, without leading zeros;
    None if the file is not laid out so."""
    buf = bytearray(_HEX_CHUNK)
    tail = b""
    pos = 0
    start = -1
    digits = 0
    while True:
        n = f.readinto(buf)
        if not n:
            return None
        for i in range(n):
            c = buf[i]
            if start < 0:
                tail = (tail + bytes([c]))[-6:]
                if tail == b'"n": "':
                    start = pos + i + 1
            elif c == 0x22:          # the closing quote
                return (start, digits) if digits else None
            elif c in _HEXDIGITS:
                if digits or c != 0x30:
                    digits += 1
                else:
                    start += 1      # a leading zero: not part of the modulus's bytes
            else:
                return None
        pos += n


def installed_serial():
    s = _read_json(INSTALLED).get("serial", 0)
    return s if isinstance(s, int) and not isinstance(s, bool) and s > 0 else 0


def _ward_key(kid):
    key = load_key()
    if key is None:
        raise O.Refused(O.R_NO_KEY)
    have = O.key_id(key[0])
    if kid != have:
        raise O.Refused(O.R_WRONG_KEY, {"kid": kid, "have": have})
    return key


def check_signature(kid, stmt, sig):
    """stmt if sig is the ward key's signature of it; else raises otaproto.Refused. In one go (at
    boot, before the application runs)."""
    key = _ward_key(kid)
    if not O.verify(key[0], key[1], stmt, sig):
        raise O.Refused(O.R_BAD_SIGNATURE)
    return stmt


class SignatureCheck:
    """otaproto.verify in slices, for a running terminal: s^65537 mod n is 16 squarings and one
    multiplication, one per step(), so that the event loop (the inputs above all) runs between
    them instead of waiting for the whole verify. ok: None while running, then True or False.
    Raises otaproto.Refused at once without a key, or for another key."""

    def __init__(self, kid, stmt, sig):
        n, k = _ward_key(kid)
        self.n = n
        self.ok = None
        self.short = 0                  # steps in a row that found no block for their product
        self._left = 16                 # squarings: 65537 = 2**16 + 1
        s = int.from_bytes(bytes(sig), "big") if len(sig) == k else n
        if s >= n:
            self.ok = False
            return
        self._s = self._x = s
        self._want = O.encoding(k, stmt)

    def step(self):
        if self.ok is not None:
            return
        # a product of 3072-bit numbers needs one ~770-byte block: collected first, the last
        # step's numbers leave theirs free for it (17 steps an update)
        gc.collect()
        try:
            if self._left:
                self._x = self._x * self._x % self.n
                self._left -= 1
            else:
                self.ok = self._x * self._s % self.n == self._want
                self._x = self._s = self._want = None
        except MemoryError:
            # no such block this time (the heap is split by the session's small objects): the
            # same step again with the next command, after the blocks of this one are free;
            # only a heap that stays split gives the update up
            self.short += 1
            if self.short > _SHORT_MAX:
                raise
            return
        self.short = 0


def _file_sha(path, buf):
    h = hashlib.sha256()
    mv = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(mv[:n])
    return h.digest()


def check_staged(st):
    """None if the staged update is signed by the ward key, newer than the installed one and
    every staged file is the signed one; else why not. Repeats what ota.py checked, because
    ota.py may itself have been replaced by an update."""
    try:
        files = st["files"]
        if not isinstance(files, list) or len(files) != st["n"] or not files:
            return "the staged file list is not the signed one"
        total = 0
        seen = []
        for e in files:
            path, size = e[0], e[1]
            if not O.valid_path(path) or path in seen or O.twin(path) in seen:
                return "%s may not be installed" % path
            seen.append(path)
            total += size
        if total != st["size"] or O.manifest_digest(files) != st["m"]:
            return "the staged files are not the signed manifest"
        stmt = O.statement(st["v"], st["serial"], st["n"], st["size"], st["m"])
        check_signature(st["kid"], stmt, unhexlify(st["sig"]))
        if st["serial"] <= installed_serial():
            return "serial %d is not newer than the installed serial %d" % (st["serial"], installed_serial())
        buf = bytearray(_BUF)
        for e in files:
            if os.stat(NEW + e[0])[6] != e[1] or O.hexstr(_file_sha(NEW + e[0], buf)) != e[2]:
                return "staged %s is not the signed file" % e[0]
    except O.Refused as r:
        return r.sentence()
    except (OSError, KeyError, IndexError, TypeError, ValueError) as e:
        return "cannot check the staged update: %r" % (e,)
    return None
