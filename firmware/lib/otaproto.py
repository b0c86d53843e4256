# otaproto: the over-the-air update's wire rules, shared by the bed terminals (MicroPython) and
# the host (CPython) like wardproto, in the subset both interpreters run (docs/PROTOCOL.md,
# section 12): the signed statement and its manifest, the arguments of CMD_OTA_BEGIN/FILE/CHUNK,
# the structured RESULT details, the paths an update may write, and the RSA signature check.
#
# Part of the boot chain: an update can never replace this file (it is in PROTECTED), because
# otaboot uses it to re-check a staged update before swapping it in. So it imports nothing an
# update could replace (wardproto only inside chunk_size()). The sentences for people are in
# otatext (also PROTECTED), imported only by parse_result() and describe(): a terminal receiving
# an update does not hold them in its heap.
import hashlib
import json
import struct
from binascii import hexlify, unhexlify

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

FORMAT = "wardcall-ota/1"        # first line of every signed statement
MAX_FILES = const(64)
MAX_TOTAL = const(524288)        # bytes in one update
_MAX_PATH = const(64)
_MAX_VERSION = const(32)
MAX_SERIAL = 1099511627775       # 2**40 - 1 (unix seconds fit until the year 36812)
_MIN_TRIAL_S = const(5)
_MAX_TRIAL_S = const(600)
DEFAULT_TRIAL_S = const(60)
RESERVE = const(32768)           # flash that must stay free beside the staged files
CHUNK_HEADER = const(6)          # u16 file index, u32 offset
_CHUNK_ALIGN = const(64)
MAX_DETAIL = const(255)          # RESULT detail is wardproto text `s`
# RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 8.2); e = 65537; the ward key is RSA-3072
E = const(65537)
KEY_BITS = const(3072)
MIN_KEY_LEN = const(256)         # modulus bytes accepted: RSA-2048 ... RSA-4096
MAX_KEY_LEN = const(512)
_KID_LEN = const(16)              # hex digits of a key id
# DER of DigestInfo{sha256, NULL} before the 32-byte hash (RFC 8017 9.2, note 1)
DIGEST_INFO = unhexlify("3031300d060960864801650304020105000420")

# Module names an update may never ship: the boot chain (which decides on rollback and checks
# signatures) and the board's own pin map.
PROTECTED = ("boot", "main", "maint", "otaboot", "otacheck", "otaproto", "otatext", "board")
KEY_FILE = "otakey.json"         # the ward's public key, written only by `wardcall deploy`

# RESULT detail codes ("c"); a refusal is RESULT ok 0 with one of the codes after R_STATUS
R_AT = "at"                      # d files declared, continue with file f at offset o; sig: checking|ok
R_COMMITTED = "committed"        # v: installed at the next boot
R_ABORTED = "aborted"
R_STATUS = "status"              # CMD_OTA_STATUS: s v from run serial key [why] [rx]
R_BAD_REQUEST = "bad_request"    # m: what is wrong with the argument
R_CHECKING = "checking"          # the signature check is not finished: declare the last file again
R_UNSIGNED = "unsigned"
R_NO_KEY = "no_key"
R_BAD_KEY = "bad_key"
R_WRONG_KEY = "wrong_key"        # kid: the package's key, have: the terminal's
R_BAD_SIGNATURE = "bad_signature"
R_DOWNGRADE = "downgrade"        # serial, installed
R_BUSY_TRIAL = "busy_trial"      # v: the version on trial
R_NO_SPACE = "no_space"          # need, free
R_PATH = "path"                  # path
R_ORDER = "order"                # d, f, o: what the terminal expects next
R_UNDECLARED = "undeclared"      # d of n declared: no chunk before the whole manifest
R_MANIFEST = "manifest_mismatch"
R_HASH = "hash_mismatch"         # path
R_TOO_BIG = "too_big"            # m
R_NOT_STARTED = "not_started"
R_INCOMPLETE = "incomplete"      # f of n files received
R_BUSY_CALLS = "busy_calls"      # n call events not yet delivered
R_FLASH = "flash"                # m
R_UNSUPPORTED = "unsupported"    # cmd
R_NO_MEMORY = "no_memory"        # the terminal ran out of heap: it dropped the update and its receiver
R_TEXT = "text"                  # not a structured detail (older firmware): m


class Refused(Exception):
    """An OTA command refused: code (R_*) and its fields; detail() is the RESULT text."""

    def __init__(self, code, fields=None):
        super().__init__(code)
        self.code = code
        self.fields = fields if fields is not None else {}

    def as_dict(self):
        d = {"c": self.code}
        for k in self.fields:
            d[k] = self.fields[k]
        return d

    def detail(self):
        return result(self.code, self.fields)

    def sentence(self):
        return describe(self.as_dict())


def hexstr(data):
    return hexlify(bytes(data)).decode()


def _is_hex(s, n):
    if not isinstance(s, str) or len(s) != n:
        return False
    for c in s:
        if c not in "0123456789abcdef":
            return False
    return True


def _int(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


# ----- names -----

def valid_path(p):
    """A module under lib/ (x.py or x.mpy), plain ASCII names, never a protected module."""
    if not isinstance(p, str) or not p.startswith("lib/") or len(p) > _MAX_PATH:
        return False
    if ".." in p or "//" in p or p.endswith("/"):
        return False
    for c in p:
        o = ord(c)
        if not (48 <= o <= 57 or 65 <= o <= 90 or 97 <= o <= 122 or c in "_-./"):
            return False
    name = p[p.rfind("/") + 1:]
    if name.endswith(".mpy"):
        stem = name[:-4]
    elif name.endswith(".py"):
        stem = name[:-3]
    else:
        return False
    return bool(stem) and stem not in PROTECTED


def valid_version(v):
    """1-32 characters of letters, digits and . _ + - (it is a line of the signed statement)."""
    if not isinstance(v, str) or not 0 < len(v) <= _MAX_VERSION:
        return False
    for c in v:
        o = ord(c)
        if not (48 <= o <= 57 or 65 <= o <= 90 or 97 <= o <= 122 or c in "._+-"):
            return False
    return True


def twin(path):
    """x.py for x.mpy and the reverse: a board must never hold both (x.py would be imported)."""
    if path.endswith(".mpy"):
        return path[:-4] + ".py"
    if path.endswith(".py"):
        return path[:-3] + ".mpy"
    return None


def chunk_size():
    """Data bytes per CMD_OTA_CHUNK: wardproto.OTA_CHUNK_MAX rounded down to 64 bytes (960)."""
    from wardproto import OTA_CHUNK_MAX
    return OTA_CHUNK_MAX - OTA_CHUNK_MAX % _CHUNK_ALIGN


# ----- the signed statement -----

def entry_line(path, size, sha):
    """One manifest line: path, size and SHA-256 (hex) of a file."""
    return ("%s %d %s\n" % (path, size, sha)).encode()


def manifest_digest(entries):
    """SHA-256 (hex) of the manifest: the entry lines of [path, size, sha] in index order."""
    h = hashlib.sha256()
    for e in entries:
        h.update(entry_line(e[0], e[1], e[2]))
    return hexstr(h.digest())


def statement(version, serial, n, size, digest):
    """The exact bytes the ward key signs."""
    return ("%s\nversion %s\nserial %d\nfiles %d %d\nmanifest %s\n"
            % (FORMAT, version, serial, n, size, digest)).encode()


def package_id(stmt):
    """Names a package (a transfer resumes only for the same one)."""
    return hexstr(hashlib.sha256(stmt).digest())[:32]


# ----- keys and signatures -----

def key_bytes(n):
    """The modulus as big-endian bytes without leading zeros (no int.bit_length here)."""
    h = "%x" % n
    if len(h) % 2:
        h = "0" + h
    return unhexlify(h)


def key_id(n):
    """16 hex digits naming a public key: SHA-256 of its modulus bytes."""
    return hexstr(hashlib.sha256(key_bytes(n)).digest()[:8])


def key_text(n):
    """The key file a terminal holds (KEY_FILE)."""
    return json.dumps({"n": "%x" % n, "e": E})


def parse_key(text):
    """(n, modulus length in bytes) from a key file's text; raises Refused(R_BAD_KEY)."""
    try:
        d = json.loads(text)
        n = int(d["n"], 16)
        e = d.get("e")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise Refused(R_BAD_KEY)
    k = len(key_bytes(n)) if n > 0 else 0
    if e != E or not MIN_KEY_LEN <= k <= MAX_KEY_LEN or n % 2 == 0:
        raise Refused(R_BAD_KEY)
    return n, k


def encoding(k, message):
    """The EMSA-PKCS1-v1_5 encoding of SHA-256(message) for a k-byte modulus, as an integer."""
    t = DIGEST_INFO + hashlib.sha256(message).digest()
    return int.from_bytes(b"\x00\x01" + b"\xff" * (k - 3 - len(t)) + b"\x00" + t, "big")


def verify(n, k, message, sig):
    """RSASSA-PKCS1-v1_5 / SHA-256 verification (RFC 8017 8.2.2): the expected encoding is built
    in full and compared, nothing of the decrypted block is parsed."""
    if len(sig) != k:
        return False
    s = int.from_bytes(bytes(sig), "big")
    if s >= n:
        return False
    return pow(s, E, n) == encoding(k, message)


# ----- command arguments -----

def encode_begin(hdr, sig):
    """CMD_OTA_BEGIN arg: u16 length of the JSON header, the header, then the signature."""
    j = json.dumps(hdr).encode()
    return struct.pack(">H", len(j)) + j + bytes(sig)


def _bad(m):
    return Refused(R_BAD_REQUEST, {"m": m})


def decode_begin(arg):
    """(header dict, signature bytes); the header checked against every limit."""
    arg = bytes(arg)
    if arg[:1] == b"{":
        raise Refused(R_UNSIGNED)          # a bare JSON manifest: an unsigned (older) host's BEGIN
    if len(arg) < 2:
        raise _bad("short BEGIN")
    jl = struct.unpack(">H", arg[:2])[0]
    if 2 + jl > len(arg):
        raise _bad("short BEGIN")
    try:
        hdr = json.loads(arg[2:2 + jl].decode())
    except (ValueError, UnicodeError):
        raise _bad("BEGIN header is not JSON")
    sig = arg[2 + jl:]
    if not isinstance(hdr, dict):
        raise _bad("BEGIN header is not a JSON object")
    if not sig:
        raise Refused(R_UNSIGNED)
    if "trial_s" not in hdr:
        hdr["trial_s"] = DEFAULT_TRIAL_S
    if not valid_version(hdr.get("v")):
        raise _bad("version: 1-32 letters, digits, . _ + -")
    if not _int(hdr.get("serial"), 1, MAX_SERIAL):
        raise _bad("serial: 1-%d" % MAX_SERIAL)
    if not _int(hdr.get("n"), 1, MAX_FILES) or not _int(hdr.get("size"), 0, MAX_TOTAL):
        raise _bad("limits: %d files, %d bytes" % (MAX_FILES, MAX_TOTAL))
    if not _int(hdr.get("trial_s"), _MIN_TRIAL_S, _MAX_TRIAL_S):
        raise _bad("trial_s: %d-%d" % (_MIN_TRIAL_S, _MAX_TRIAL_S))
    if not _is_hex(hdr.get("m"), 64) or not _is_hex(hdr.get("kid"), _KID_LEN):
        raise _bad("manifest digest or key id")
    if not MIN_KEY_LEN <= len(sig) <= MAX_KEY_LEN:
        raise _bad("signature of %d bytes" % len(sig))
    return hdr, sig


def begin_statement(hdr):
    return statement(hdr["v"], hdr["serial"], hdr["n"], hdr["size"], hdr["m"])


def encode_file(i, path, size, sha):
    """CMD_OTA_FILE arg: JSON [index, path, size, sha256 hex]."""
    return json.dumps([i, path, size, sha]).encode()


def decode_file(arg):
    """(index, path, size, sha); a path an update may not write raises R_PATH."""
    try:
        f = json.loads(bytes(arg).decode())
        i, path, size, sha = f
    except (ValueError, TypeError, UnicodeError):
        raise _bad("file declaration")
    if not _int(i, 0, MAX_FILES - 1) or not _int(size, 0, MAX_TOTAL) or not _is_hex(sha, 64) \
            or not isinstance(path, str):
        raise _bad("file declaration")
    if not valid_path(path):
        raise Refused(R_PATH, {"path": path[:_MAX_PATH]})
    return i, path, size, sha


def encode_chunk(i, off, data):
    return struct.pack(">HI", i, off) + bytes(data)


def decode_chunk(arg):
    """(file index, offset, data as a memoryview of arg)."""
    if len(arg) < CHUNK_HEADER:
        raise _bad("short chunk")
    i, off = struct.unpack(">HI", bytes(arg[:CHUNK_HEADER]))
    return i, off, memoryview(arg)[CHUNK_HEADER:]


# ----- RESULT details -----

def result(code, fields=None):
    """RESULT detail text: JSON {"c": code, ...fields}, at most MAX_DETAIL bytes (free text in
    "m" and "why" is shortened to fit)."""
    d = {"c": code}
    if fields:
        for k in fields:
            d[k] = fields[k]
    text = json.dumps(d)
    for k in ("why", "m"):
        if len(text.encode()) > MAX_DETAIL and isinstance(d.get(k), str):
            room = len(d[k]) - (len(text.encode()) - MAX_DETAIL) - 3
            d[k] = d[k][:room if room > 0 else 0] + "..."
            text = json.dumps(d)
    if len(text.encode()) > MAX_DETAIL:
        text = json.dumps({"c": code})
    return text


def parse_result(text):
    """The detail as a dict with at least "c"; text that is not a detail gives R_TEXT."""
    import otatext
    return otatext.parse_result(text)


def describe(d):
    """A sentence for an operator from a parsed detail."""
    import otatext
    return otatext.describe(d)
