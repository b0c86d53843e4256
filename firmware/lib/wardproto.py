# wardproto: the wardcall wire protocol, shared by the bed terminals (MicroPython) and the
# nurse-station host (CPython). One source file; both interpreters import it unchanged, so it
# keeps to the subset they share (see docs/PROTOCOL.md for every byte).
#
# A frame:  LEN(u16) VER(u8) TYPE(u8) FLAGS(u8) SEQ(u32) BODY(LEN-39 bytes) TAG(32 bytes)
# LEN counts every byte after itself; TAG = HMAC-SHA256(key, all bytes before the tag).
# Over TCP frames follow each other; over UDP one frame is one datagram.
import hashlib
import struct

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

try:
    from os import urandom as _urandom
except ImportError:  # pragma: no cover - every supported port has os.urandom
    _urandom = None

try:
    # CPython (the host): the C one, constant time too, 0.2 us a tag where the loop below takes 5
    from hmac import compare_digest as _compare_digest
except ImportError:  # MicroPython has no hmac module: equal() below
    _compare_digest = None

VERSION = const(2)         # 2: HELLO carries the board's hardware id (hwid)
HEADER_LEN = const(9)       # LEN + VER + TYPE + FLAGS + SEQ
TAG_LEN = const(32)
MIN_FRAME = const(41)       # header and tag, empty body
MAX_FRAME = const(1024)     # hard limit on a whole frame, LEN field included
MAX_BODY = const(983)       # MAX_FRAME - MIN_FRAME
NONCE_LEN = const(8)
KEY_LEN = const(32)
HWID_MAX = const(32)        # a hardware id (HELLO hwid) is 1 to 32 bytes
FLAG_FROM_HOST = const(1)

# Message types
HELLO = const(1)
WELCOME = const(2)
HEARTBEAT = const(3)
CALL = const(4)
CALL_ACK = const(5)
CALL_STATE = const(6)
PRESENCE = const(7)
CANCEL = const(8)
FAULT = const(9)
COMMAND = const(10)
RESULT = const(11)
ERROR = const(12)
DISCOVER = const(20)
ANNOUNCE = const(21)
REPORT = const(23)          # UDP, terminal -> host: a problem the host must hear of outside a session

# Call kinds, most urgent first; the kind number is also the call's rank (1 = most urgent).
CODE_BLUE = const(1)
STAFF_ASSIST = const(2)
BATHROOM = const(3)
PATIENT = const(4)
TECHNICAL = const(5)

# IEC 60601-1-8 alarm priority of each kind (buzzer bursts: high 10 pulses, medium 3, low 1)
ALARM_HIGH = const(3)
ALARM_MEDIUM = const(2)
ALARM_LOW = const(1)

# Lamp patterns: (on ms, off ms); off 0 = steady
PATTERN_NORMAL = (1000, 0)
PATTERN_HIGH = (1000, 1000)
PATTERN_EMERGENCY = (300, 300)

# kind: (name, alarm priority, lamp pattern)
KINDS = {
    CODE_BLUE: ("code_blue", ALARM_HIGH, PATTERN_EMERGENCY),
    STAFF_ASSIST: ("staff_assist", ALARM_HIGH, PATTERN_HIGH),
    BATHROOM: ("bathroom", ALARM_MEDIUM, PATTERN_HIGH),
    PATIENT: ("patient", ALARM_LOW, PATTERN_NORMAL),
    TECHNICAL: ("technical", ALARM_LOW, PATTERN_NORMAL),
}

# CALL_STATE states
ST_PLACED = const(0)
ST_ACKNOWLEDGED = const(1)
ST_ATTENDED = const(2)
ST_CLEARED = const(3)
ST_ESCALATED = const(4)
STATE_NAMES = ("placed", "acknowledged", "attended", "cleared", "escalated")

# CANCEL reasons
CANCEL_PRESENCE = const(1)   # staff pressed presence at the bedside
CANCEL_ORIGIN = const(2)     # cancelled at the originating terminal (cord reset, code button)

# FAULT codes
FAULT_CORD = const(1)        # bathroom cord unplugged or its loop broken
FAULT_DEVICE = const(2)      # the terminal's own fault (flash, memory, task restart)

# REPORT codes
REPORT_TLS_REFUSED = const(1)   # the terminal refused the host's TLS certificate (detail: why)

# COMMAND codes
CMD_IDENTIFY = const(1)
CMD_LAMP_TEST = const(2)
CMD_REBOOT = const(3)
CMD_CONFIG = const(4)        # arg: JSON object with the config keys to change
CMD_CHIME = const(5)         # arg: one byte, the alarm priority of a call in another room
CMD_SILENCE = const(6)       # stop a chime in progress (and a CMD_NOTIFY's dome pattern)
CMD_NOTIFY = const(7)        # arg: call kind, alarm priority, seconds (u8 each; 0 s = stop): notify_arg()
# Over-the-air update (docs/PROTOCOL.md section 12; arguments and RESULT details: otaproto)
CMD_OTA_BEGIN = const(16)    # arg: u16 length, JSON {"v", "serial", "n", "size", "m", "kid", "trial_s"}, signature
CMD_OTA_FILE = const(17)     # arg: JSON [index, path, size, sha256 hex]; all declared before the first chunk
CMD_OTA_CHUNK = const(18)    # arg: file index (u16) + offset (u32), big-endian, then the data
CMD_OTA_COMMIT = const(19)   # arg: empty; all files received and verified: swap at the next boot
CMD_OTA_ABORT = const(20)    # arg: empty; forget the staged files
CMD_OTA_STATUS = const(21)   # arg: empty; RESULT detail: JSON of the update state
OTA_CHUNK_MAX = const(970)   # data bytes in one CMD_OTA_CHUNK (MAX_BODY - 7 - 6)

# ERROR codes
E_MALFORMED = const(1)
E_AUTH = const(2)
E_UNKNOWN_DEVICE = const(3)
E_SEQUENCE = const(4)
E_UNSUPPORTED = const(5)
E_BUSY = const(6)

# HEARTBEAT status bits
HB_PRESENCE = const(1)       # staff present at this terminal
HB_CORD_FAULT = const(2)     # cord unplugged or broken
HB_NOT_CONFIGURED = const(4)
HB_DEVICE_FAULT = const(8)

# Capability bits (HELLO)
CAP_CORD = const(1)
CAP_DOME = const(2)
CAP_BUZZER = const(4)
CAP_CODE = const(8)
CAP_OTA = const(16)
CAP_HOST_BEAT = const(32)    # follows the host's heartbeat period in WELCOME's flags (below)

# WELCOME flags: the low four bits say the host sends its HEARTBEAT every n x hb_ms (0 or 1:
# every hb_ms), only to a terminal whose HELLO has CAP_HOST_BEAT. Such a terminal counts the link
# dead after 3 host periods of silence, or 3 x hb_ms with a frame of its own unanswered: the host
# answers every frame but a HEARTBEAT at once (docs/SESSION.md).
WF_HOST_BEATS = const(15)

# Field kinds: B u8, H u16, I u32, s text (u8 length + UTF-8), b bytes (u16 length),
# n nonce (NONCE_LEN raw bytes), h hardware id (u8 length 1..HWID_MAX + raw bytes)
MAX_TEXT = const(255)        # bytes of UTF-8 in a text field
SCHEMAS = {
    HELLO: (("device", "s"), ("nonce", "n"), ("firmware", "s"), ("board", "s"), ("caps", "H"),
            ("hwid", "h")),
    WELCOME: (("nonce", "n"), ("echo", "n"), ("time", "I"), ("hb_ms", "H"), ("flags", "B")),
    HEARTBEAT: (("status", "B"), ("pending", "B"), ("uptime", "I")),
    CALL: (("call", "I"), ("kind", "B"), ("priority", "B"), ("age_ms", "I")),
    CALL_ACK: (("call", "I"), ("of", "B")),
    CALL_STATE: (("call", "I"), ("state", "B"), ("by", "s")),
    PRESENCE: (("on", "B"), ("staff", "s")),
    CANCEL: (("call", "I"), ("reason", "B"), ("age_ms", "I")),
    FAULT: (("code", "B"), ("active", "B"), ("detail", "s")),
    COMMAND: (("cmd_id", "I"), ("cmd", "B"), ("arg", "b")),
    RESULT: (("cmd_id", "I"), ("ok", "B"), ("detail", "s")),
    ERROR: (("code", "B"), ("detail", "s")),
    DISCOVER: (("device", "s"), ("nonce", "n")),
    ANNOUNCE: (("echo", "n"), ("host", "s"), ("port", "H")),
    REPORT: (("device", "s"), ("nonce", "n"), ("code", "B"), ("detail", "s")),
}

TYPE_NAMES = {
    HELLO: "HELLO", WELCOME: "WELCOME", HEARTBEAT: "HEARTBEAT", CALL: "CALL",
    CALL_ACK: "CALL_ACK", CALL_STATE: "CALL_STATE", PRESENCE: "PRESENCE", CANCEL: "CANCEL",
    FAULT: "FAULT", COMMAND: "COMMAND", RESULT: "RESULT", ERROR: "ERROR",
    DISCOVER: "DISCOVER", ANNOUNCE: "ANNOUNCE", REPORT: "REPORT",
}

# the key-derivation label kept its version-1 text: every frame's VER byte is under its tag, so
# frames of the two versions cannot be taken for one another anyway
_SESSION_LABEL = b"wardcall/1 session"


class ProtocolError(Exception):
    """Every rejected frame or message raises this, and nothing else."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self):
        return self.message


# --- HMAC-SHA256 (RFC 2104); MicroPython has no hmac module ---

def _xor_pad(key, pad):
    out = bytearray(64)
    for i in range(64):
        out[i] = (key[i] if i < len(key) else 0) ^ pad
    return out


class Hmac:
    """HMAC-SHA256 with the key's pads computed once."""

    def __init__(self, key):
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        self._ipad = bytes(_xor_pad(key, 0x36))
        self._opad = bytes(_xor_pad(key, 0x5C))

    def digest(self, msg):
        inner = hashlib.sha256(self._ipad)
        inner.update(msg)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()


def hmac_sha256(key, msg):
    return Hmac(key).digest(msg)


def equal(a, b):
    """Compare two tags in time that does not depend on where they differ."""
    if _compare_digest is not None:
        return _compare_digest(a, b)
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def new_nonce():
    return _urandom(NONCE_LEN)


def session_key(device_key, device_nonce, host_nonce):
    """The key for one TCP session, bound to both sides' fresh nonces."""
    return hmac_sha256(device_key, _SESSION_LABEL + device_nonce + host_nonce)


def key_from_hex(text):
    """A device key from its 64-hex-digit text form (config.json, secrets file)."""
    try:
        key = bytes.fromhex(text)
    except (ValueError, TypeError):
        raise ProtocolError(E_AUTH, "device key is not hexadecimal")
    if len(key) != KEY_LEN:
        raise ProtocolError(E_AUTH, "device key must be %d bytes, not %d" % (KEY_LEN, len(key)))
    return key


# --- bodies ---

def _utf8_ok(b):
    """Strict UTF-8 (Unicode 3-7 well-formed sequences), as CPython's decoder checks it.
    MicroPython's decode() accepts overlong forms, surrogates and code points above U+10FFFF,
    so both interpreters check here first and agree on every byte string."""
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            need = 1
            lo = 0x80
            hi = 0xBF
        elif 0xE0 <= c <= 0xEF:
            need = 2
            lo = 0xA0 if c == 0xE0 else 0x80
            hi = 0x9F if c == 0xED else 0xBF
        elif 0xF0 <= c <= 0xF4:
            need = 3
            lo = 0x90 if c == 0xF0 else 0x80
            hi = 0x8F if c == 0xF4 else 0xBF
        else:
            return False
        if i + need >= n:
            return False
        c = b[i + 1]
        if c < lo or c > hi:
            return False
        for j in range(i + 2, i + need + 1):
            if b[j] & 0xC0 != 0x80:
                return False
        i += need + 1
    return True


def _uint(value, limit, field):
    # MicroPython's struct.pack silently truncates out-of-range values, and there a bool is not
    # an int: check the range here so both interpreters refuse the same values.
    if value is True or value is False:
        value = int(value)
    if not isinstance(value, int) or value < 0 or value > limit:
        raise ProtocolError(E_MALFORMED, "field %s has a bad value" % field)
    return value


def _raw(value, field):
    # bytearray += str works on MicroPython and bytes(8) is 8 zero bytes: take only bytes-like values.
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ProtocolError(E_MALFORMED, "field %s must be bytes" % field)
    return bytes(value)


def _text(value, field):
    if isinstance(value, str):
        value = value.encode()
    elif not _utf8_ok(value):
        raise ProtocolError(E_MALFORMED, "field %s is not UTF-8" % field)
    if len(value) > MAX_TEXT:
        raise ProtocolError(E_MALFORMED, "field %s longer than 255 bytes" % field)
    return value


def encode_body(mtype, fields):
    schema = SCHEMAS.get(mtype)
    if schema is None:
        raise ProtocolError(E_UNSUPPORTED, "unknown message type %r" % (mtype,))
    out = bytearray()
    for name, kind in schema:
        if name not in fields:
            raise ProtocolError(E_MALFORMED, "%s needs field %s" % (TYPE_NAMES[mtype], name))
        value = fields[name]
        try:
            if kind == "B":
                out += struct.pack(">B", _uint(value, 0xFF, name))
            elif kind == "H":
                out += struct.pack(">H", _uint(value, 0xFFFF, name))
            elif kind == "I":
                out += struct.pack(">I", _uint(value, 0xFFFFFFFF, name))
            elif kind == "s":
                value = _text(value, name)
                out.append(len(value))
                out += value
            elif kind == "b":
                value = _raw(value, name)
                if len(value) > MAX_BODY:
                    raise ProtocolError(E_MALFORMED, "field %s too long" % name)
                out += struct.pack(">H", len(value))
                out += value
            elif kind == "h":
                value = _raw(value, name)
                if not 1 <= len(value) <= HWID_MAX:
                    raise ProtocolError(E_MALFORMED, "field %s must be 1 to %d bytes" % (name, HWID_MAX))
                out.append(len(value))
                out += value
            else:  # "n"
                value = _raw(value, name)
                if len(value) != NONCE_LEN:
                    raise ProtocolError(E_MALFORMED, "field %s must be %d bytes" % (name, NONCE_LEN))
                out += value
        except (OverflowError, ValueError, TypeError, struct.error):
            raise ProtocolError(E_MALFORMED, "field %s has a bad value" % name)
    if len(out) > MAX_BODY:
        raise ProtocolError(E_MALFORMED, "%s body too long" % TYPE_NAMES[mtype])
    return bytes(out)


def decode_body(mtype, body):
    schema = SCHEMAS.get(mtype)
    if schema is None:
        raise ProtocolError(E_UNSUPPORTED, "unknown message type %d" % mtype)
    msg = {"type": mtype}
    pos = 0
    end = len(body)
    for name, kind in schema:
        if kind == "B":
            size = 1
        elif kind == "H":
            size = 2
        elif kind == "I":
            size = 4
        elif kind == "n":
            size = NONCE_LEN
        elif kind == "s" or kind == "h":
            if pos >= end:
                raise ProtocolError(E_MALFORMED, "%s truncated at %s" % (TYPE_NAMES[mtype], name))
            size = body[pos]
            pos += 1
            if kind == "h" and not 1 <= size <= HWID_MAX:
                raise ProtocolError(E_MALFORMED, "field %s must be 1 to %d bytes" % (name, HWID_MAX))
        else:  # "b"
            if pos + 2 > end:
                raise ProtocolError(E_MALFORMED, "%s truncated at %s" % (TYPE_NAMES[mtype], name))
            size = (body[pos] << 8) | body[pos + 1]
            pos += 2
        if pos + size > end:
            raise ProtocolError(E_MALFORMED, "%s truncated at %s" % (TYPE_NAMES[mtype], name))
        raw = body[pos:pos + size]
        pos += size
        if kind == "B":
            value = raw[0]
        elif kind == "H":
            value = (raw[0] << 8) | raw[1]
        elif kind == "I":
            value = struct.unpack(">I", raw)[0]
        elif kind == "s":
            if not _utf8_ok(raw):
                raise ProtocolError(E_MALFORMED, "field %s is not UTF-8" % name)
            try:
                value = bytes(raw).decode()
            except UnicodeError:
                raise ProtocolError(E_MALFORMED, "field %s is not UTF-8" % name)
        else:
            value = bytes(raw)
        msg[name] = value
    if pos != end:
        raise ProtocolError(E_MALFORMED, "%s has %d trailing bytes" % (TYPE_NAMES[mtype], end - pos))
    _check_message(msg)
    return msg


def _check_message(msg):
    mtype = msg["type"]
    if mtype == CALL:
        kind = msg["kind"]
        if kind not in KINDS:
            raise ProtocolError(E_MALFORMED, "unknown call kind %d" % kind)
        if msg["priority"] != kind:
            raise ProtocolError(E_MALFORMED, "call priority %d does not match kind %d" % (msg["priority"], kind))
    elif mtype == CALL_STATE and msg["state"] >= len(STATE_NAMES):
        raise ProtocolError(E_MALFORMED, "unknown call state %d" % msg["state"])


# --- frames ---

def frame_length(prefix):
    """The number of bytes that follow a frame's 2-byte LEN field; rejects impossible lengths.
    A stream reader calls this on the first two bytes before reading the rest."""
    if len(prefix) != 2:
        raise ProtocolError(E_MALFORMED, "frame length field truncated")
    n = (prefix[0] << 8) | prefix[1]
    if n + 2 < MIN_FRAME:
        raise ProtocolError(E_MALFORMED, "frame of %d bytes is shorter than the minimum %d" % (n + 2, MIN_FRAME))
    if n + 2 > MAX_FRAME:
        raise ProtocolError(E_MALFORMED, "frame of %d bytes exceeds the maximum %d" % (n + 2, MAX_FRAME))
    return n


def encode_frame(mac, mtype, seq, fields, from_host):
    """A whole frame; mac is an Hmac (device key or session key)."""
    body = encode_body(mtype, fields)
    n = HEADER_LEN - 2 + len(body) + TAG_LEN
    head = struct.pack(">HBBBI", n, VERSION, mtype, FLAG_FROM_HOST if from_host else 0, seq)
    signed = head + body
    return signed + mac.digest(signed)


def peek_header(frame):
    """(type, flags, seq) of a complete frame, checking only its shape (not its tag).
    Lets a receiver pick the key (HELLO and DISCOVER name their device) before verifying."""
    size = len(frame)
    if size < 2:
        raise ProtocolError(E_MALFORMED, "frame truncated")
    n = frame_length(frame[:2])
    if size != n + 2:
        raise ProtocolError(E_MALFORMED, "frame is %d bytes but its length field says %d" % (size, n + 2))
    if frame[2] != VERSION:
        raise ProtocolError(E_UNSUPPORTED, "protocol version %d is not supported (this side speaks %d)" % (frame[2], VERSION))
    mtype = frame[3]
    if mtype not in SCHEMAS:
        raise ProtocolError(E_UNSUPPORTED, "unknown message type %d" % mtype)
    if frame[4] & ~FLAG_FROM_HOST:
        raise ProtocolError(E_MALFORMED, "reserved flag bits set")
    seq = struct.unpack(">I", frame[5:9])[0]
    return mtype, frame[4], seq


def _verify(mac, frame, from_host):
    # shape, direction and tag of a complete frame: (type, seq, offset of the tag)
    mtype, flags, seq = peek_header(frame)
    if bool(flags & FLAG_FROM_HOST) != bool(from_host):
        raise ProtocolError(E_AUTH, "frame sent in the wrong direction")
    end = len(frame) - TAG_LEN
    if not equal(mac.digest(frame[:end]), frame[end:]):
        raise ProtocolError(E_AUTH, "authentication tag does not match (wrong key or altered frame)")
    return mtype, seq, end


def decode_frame(mac, frame, from_host):
    """Verify and decode a complete frame; returns the message dict with 'type' and 'seq'.
    from_host is the direction the receiver expects."""
    mtype, seq, end = _verify(mac, frame, from_host)
    msg = decode_body(mtype, frame[HEADER_LEN:end])
    msg["seq"] = seq
    return msg


def peek_device(frame):
    """The device id named by a HELLO, DISCOVER or REPORT frame, before its tag is checked."""
    mtype, _, _ = peek_header(frame)
    if mtype != HELLO and mtype != DISCOVER and mtype != REPORT:
        raise ProtocolError(E_MALFORMED, "%s does not name a device" % TYPE_NAMES[mtype])
    end = len(frame) - TAG_LEN
    if HEADER_LEN >= end:
        raise ProtocolError(E_MALFORMED, "frame truncated")
    size = frame[HEADER_LEN]
    if HEADER_LEN + 1 + size > end:
        raise ProtocolError(E_MALFORMED, "device id truncated")
    try:
        return bytes(frame[HEADER_LEN + 1:HEADER_LEN + 1 + size]).decode()
    except UnicodeError:
        raise ProtocolError(E_MALFORMED, "device id is not UTF-8")


class Session:
    """One authenticated TCP session, seen from one side.

    The handshake frames (HELLO from the device, WELCOME from the host) carry sequence number 0
    and the device key; once both nonces are known, every later frame uses the session key and
    sequence numbers 1, 2, 3 ... in each direction. A frame out of order, replayed, from another
    session or another device, or sent the wrong way fails with ProtocolError.
    """

    def __init__(self, device_key, is_host):
        self.is_host = is_host
        self._device_mac = Hmac(device_key)
        self._device_key = device_key
        self._mac = None
        self.tx_seq = 0
        self.rx_seq = 0
        self.nonce = new_nonce()
        self.peer_nonce = None

    @property
    def established(self):
        return self._mac is not None

    def _establish(self, device_nonce, host_nonce):
        self._mac = Hmac(session_key(self._device_key, device_nonce, host_nonce))

    # device side
    def hello(self, device, firmware, board, caps, hwid):
        """hwid: the board's hardware identity (machine.unique_id(), 1 to HWID_MAX bytes), so the
        host can tell two physical boards apart that claim one device id."""
        return encode_frame(self._device_mac, HELLO, 0, {
            "device": device, "nonce": self.nonce, "firmware": firmware, "board": board, "caps": caps,
            "hwid": hwid,
        }, False)

    def accept_welcome(self, frame):
        msg = decode_frame(self._device_mac, frame, True)
        if msg["type"] != WELCOME or msg["seq"] != 0:
            raise ProtocolError(E_SEQUENCE, "expected WELCOME, got %s" % TYPE_NAMES[msg["type"]])
        if not equal(msg["echo"], self.nonce):
            raise ProtocolError(E_AUTH, "WELCOME answers another HELLO (replayed)")
        self.peer_nonce = msg["nonce"]
        self._establish(self.nonce, self.peer_nonce)
        return msg

    # host side
    def accept_hello(self, frame):
        """The HELLO's message dict (device, nonce, firmware, board, caps, hwid as bytes)."""
        msg = decode_frame(self._device_mac, frame, False)
        if msg["type"] != HELLO or msg["seq"] != 0:
            raise ProtocolError(E_SEQUENCE, "expected HELLO, got %s" % TYPE_NAMES[msg["type"]])
        self.peer_nonce = msg["nonce"]
        return msg

    def welcome(self, time_s, hb_ms, flags=0):
        # flags: WF_HOST_BEATS, the host's heartbeat period in multiples of hb_ms
        frame = encode_frame(self._device_mac, WELCOME, 0, {
            "nonce": self.nonce, "echo": self.peer_nonce, "time": time_s, "hb_ms": hb_ms, "flags": flags,
        }, True)
        self._establish(self.peer_nonce, self.nonce)
        return frame

    # both sides, once established
    def encode(self, mtype, fields):
        if self._mac is None:
            raise ProtocolError(E_SEQUENCE, "session not established")
        seq = (self.tx_seq + 1) & 0xFFFFFFFF
        frame = encode_frame(self._mac, mtype, seq, fields, self.is_host)
        self.tx_seq = seq   # only once the frame exists: a refused message spends no number
        return frame

    def decode(self, frame):
        if self._mac is None:
            raise ProtocolError(E_SEQUENCE, "session not established")
        mtype, seq, end = _verify(self._mac, frame, not self.is_host)
        expected = (self.rx_seq + 1) & 0xFFFFFFFF
        if seq != expected:
            raise ProtocolError(E_SEQUENCE, "sequence %d where %d was expected (replayed or reordered)" % (seq, expected))
        # authentic and in order: the sequence moves on even if the body is then refused
        # (E_MALFORMED), so the peer's next frame is still accepted
        self.rx_seq = expected
        msg = decode_body(mtype, frame[HEADER_LEN:end])
        msg["seq"] = seq
        return msg


# --- UDP discovery: DISCOVER from a device, ANNOUNCE from the host, both with the device key ---

def discover(mac, device, nonce):
    return encode_frame(mac, DISCOVER, 0, {"device": device, "nonce": nonce}, False)


def announce(mac, nonce, host, port):
    return encode_frame(mac, ANNOUNCE, 0, {"echo": nonce, "host": host, "port": port}, True)


def report(mac, device, nonce, code, detail):
    return encode_frame(mac, REPORT, 0, {"device": device, "nonce": nonce, "code": code, "detail": detail}, False)


def accept_announce(mac, frame, nonce):
    """The (host, port) in an ANNOUNCE that answers our DISCOVER; spoofed or stale answers fail."""
    msg = decode_frame(mac, frame, True)
    if msg["type"] != ANNOUNCE:
        raise ProtocolError(E_MALFORMED, "expected ANNOUNCE, got %s" % TYPE_NAMES[msg["type"]])
    if not equal(msg["echo"], nonce):
        raise ProtocolError(E_AUTH, "ANNOUNCE answers another DISCOVER")
    return msg["host"], msg["port"]


# --- CMD_NOTIFY's argument: a call routed to staff located in this room ---

def notify_arg(kind, priority, seconds):
    """CMD_NOTIFY's arg: show `kind`'s lamp pattern on the dome for `seconds` (0: stop) and play
    one burst of alarm `priority`. ProtocolError(E_MALFORMED) for values out of range."""
    if not isinstance(kind, int) or kind not in KINDS:
        raise ProtocolError(E_MALFORMED, "notify: unknown call kind %r" % (kind,))
    if not isinstance(priority, int) or not ALARM_LOW <= priority <= ALARM_HIGH:
        raise ProtocolError(E_MALFORMED, "notify: alarm priority must be 1-3, not %r" % (priority,))
    if not isinstance(seconds, int) or not 0 <= seconds <= 255:
        raise ProtocolError(E_MALFORMED, "notify: seconds must be 0-255, not %r" % (seconds,))
    return bytes((kind, priority, seconds))


def parse_notify(arg):
    """(kind, priority, seconds) of a CMD_NOTIFY arg; ProtocolError(E_MALFORMED) if it is not one."""
    if len(arg) != 3:
        raise ProtocolError(E_MALFORMED, "notify needs 3 bytes (kind, priority, seconds), not %d" % len(arg))
    if arg[0] not in KINDS:
        raise ProtocolError(E_MALFORMED, "notify: unknown call kind %d" % arg[0])
    if not ALARM_LOW <= arg[1] <= ALARM_HIGH:
        raise ProtocolError(E_MALFORMED, "notify: alarm priority must be 1-3, not %d" % arg[1])
    return arg[0], arg[1], arg[2]


async def read_frame(reader):
    """Read one whole frame from an asyncio stream. The caller bounds it with a timeout.
    Raises ProtocolError for an impossible length and EOFError when the stream ends."""
    prefix = await reader.readexactly(2)
    if len(prefix) < 2:
        raise EOFError("connection closed")
    rest = await reader.readexactly(frame_length(prefix))
    return prefix + rest
