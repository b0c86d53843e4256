# TLS for the link to the host (docs/PROTOCOL.md section 13): the connection is TLS 1.2 (mbedTLS)
# with the host's certificate verified against the ward's CA, pinned in config.json, and the
# name in it checked; the wardproto session runs inside, unchanged. There is no fallback: a
# refused certificate ends the attempt, is shown as a device fault, and is reported to the host
# in one HMAC-tagged UDP datagram (REPORT) so that its alarm can name this terminal. Plain TCP
# only when config.json says "tls": "plain" (bench work; the host alarms it).
#
# The clock: mbedTLS checks the certificate's dates against the board's RTC, which an ESP32
# starts at 2000-01-01. Before every handshake the RTC is set to the best lower bound of the
# time this board has: the time synced from the last WELCOME (kept on flash, at most once an
# hour, plus the uptime since), else the provisioning time (tls.time_floor). The ward CA issues
# every host certificate valid from the CA's own creation, which precedes every provisioning,
# so "not yet valid" cannot lock a ward out; an expired certificate is refused by mbedTLS once
# that lower bound has passed its end, and in any case right after WELCOME, whose time is
# authenticated by the device key (the session then ends).
from micropython import const
import time
import binascii
import machine
import wardproto as P

from flash import read_json, write_json
from log import log

PLAIN = "plain"
CLOCK_PATH = "clock.json"
_SAVE_EVERY_S = const(3600)       # the synced time goes to flash at most this often
_REPORT_GAP_MS = const(30000)     # one REPORT per this long while refusals go on


def problem(t):
    """None if config.json's "tls" entry is usable, else the problem as a sentence."""
    if t == PLAIN:
        return None
    if not isinstance(t, dict):
        return 'tls must be an object {"name", "ca"} or "plain" (no TLS: bench work only)'
    name = t.get("name")
    if not isinstance(name, str) or not name or len(name) > 253:
        return "tls.name must be the host's name in its certificate"
    ca = t.get("ca")
    if not isinstance(ca, str) or not ca:
        return "tls.ca must be the ward CA certificate (base64 DER)"
    try:
        binascii.a2b_base64(ca)
    except ValueError:
        return "tls.ca is not base64"
    floor = t.get("time_floor", 0)
    if not isinstance(floor, int) or isinstance(floor, bool) or floor < 0:
        return "tls.time_floor must be a unix time in seconds"
    return None


def _unix(y, mo, d, h, mi, s):
    # days from 1970-01-01 (proleptic Gregorian), whatever epoch the port's time module uses
    if mo <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return ((days * 24 + h) * 60 + mi) * 60 + s


def _civil(t):
    days, rest = divmod(t, 86400)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    mo = mp + (3 if mp < 10 else -9)
    y = yoe + era * 400 + (1 if mo <= 2 else 0)
    return (y, mo, d, rest // 3600, rest // 60 % 60, rest % 60, (days + 3) % 7)


def _tlv(b, i):
    """(tag, start of value, end of value) of the DER element at b[i]."""
    tag = b[i]
    n = b[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = 0
        for _ in range(k):
            n = (n << 8) | b[i]
            i += 1
    return tag, i, i + n


def not_after(der):
    """The end of a certificate's validity (unix s) from its DER, or None."""
    _, i, _ = _tlv(der, 0)              # Certificate
    _, i, _ = _tlv(der, i)              # tbsCertificate
    tag, _, end = _tlv(der, i)
    if tag == 0xA0:                     # [0] version
        i = end
    for _ in range(3):                  # serial, signature algorithm, issuer
        _, _, i = _tlv(der, i)
    _, i, _ = _tlv(der, i)              # validity
    _, _, i = _tlv(der, i)              # notBefore
    tag, s, e = _tlv(der, i)            # notAfter
    text = bytes(der[s:e]).decode()
    if tag == 0x17:                     # UTCTime YYMMDDHHMMSSZ
        y = int(text[0:2])
        y += 2000 if y < 50 else 1900
        text = text[2:]
    elif tag == 0x18:                   # GeneralizedTime YYYYMMDDHHMMSSZ
        y = int(text[0:4])
        text = text[4:]
    else:
        return None
    return _unix(y, int(text[0:2]), int(text[2:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]))


def refusal(e):
    """The reason if an exception from a TLS read or write is a refused certificate, else None.
    mbedTLS raises ValueError with its verification text only for that."""
    if isinstance(e, ValueError):
        text = " ".join([w for w in str(e).split("\n") if w])
        return text or "certificate not verified"
    return None


class Tls:
    def __init__(self, cfg, clock):
        t = cfg.get("tls")
        self.plain = t == PLAIN
        self.clock = clock
        self.name = None if self.plain else t["name"]
        self._ca = None if self.plain else t["ca"]
        self._t = t
        self._floor = 0 if self.plain else t.get("time_floor", 0)
        self._saved = read_json(CLOCK_PATH, {}).get("t", 0)
        if not isinstance(self._saved, int):
            self._saved = 0
        self._ctx = None
        self.peer_not_after = None      # of the certificate the current session runs on
        self.refused = None             # the reason of the last refusal, until a session works
        self._reported = None

    def context(self):
        # built once: the CA is parsed into mbedTLS's heap once per boot, not per connection
        if self._ctx is None:
            import tls
            ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = tls.CERT_REQUIRED
            ctx.load_verify_locations(binascii.a2b_base64(self._ca))
            ctx.verify_callback = self._verified
            # mbedTLS holds the parsed CA now: its ~1.8 KB of text would only take heap
            self._ca = None
            self._t.pop("ca", None)
            self._ctx = ctx
        return self._ctx

    def _verified(self, cert, depth):
        # called by mbedTLS for each certificate of the chain; it must never raise
        if depth == 0:
            try:
                self.peer_not_after = not_after(cert)
            except Exception as e:  # noqa: BLE001 - a parse failure must not unwind through mbedTLS
                log("tls", "cannot read the host certificate's end date: %r" % (e,))
                self.peer_not_after = None
        return 0

    def best_time(self):
        """The latest time this board can vouch for (a lower bound of the real time)."""
        t = self._floor if self._floor > self._saved else self._saved
        if self.clock.synced():
            u = self.clock.unix()
            if u > t:
                t = u
        return t

    def set_rtc(self):
        """Before a handshake: the RTC no earlier than best_time(), for mbedTLS's date checks."""
        t = self.best_time()
        if t and time.time() < t:
            c = _civil(t)
            machine.RTC().datetime((c[0], c[1], c[2], c[6], c[3], c[4], c[5], 0))

    def synced(self, unix_s):
        """WELCOME's time (authenticated by the device key): the RTC follows it, flash keeps it
        now and then; None, or the reason to end the session if the host certificate expired."""
        c = _civil(unix_s)
        machine.RTC().datetime((c[0], c[1], c[2], c[6], c[3], c[4], c[5], 0))
        if unix_s - self._saved >= _SAVE_EVERY_S or unix_s < self._saved:
            try:
                write_json(CLOCK_PATH, {"t": unix_s})
                self._saved = unix_s
            except OSError as e:
                log("tls", "synced time not saved: %r" % (e,))
        end = self.peer_not_after
        if not self.plain and end is not None and unix_s > end:
            return "the host certificate expired %d s ago (by the host's authenticated time)" % (unix_s - end)
        return None

    def report(self, mac, device, port, host, detail):
        """A REPORT to the host's discovery port naming this terminal: at most one every 30 s."""
        now = time.ticks_ms()
        if self._reported is not None and time.ticks_diff(now, self._reported) < _REPORT_GAP_MS:
            return
        self._reported = now
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            frame = P.report(mac, device, P.new_nonce(), P.REPORT_TLS_REFUSED, detail[:200])
            s.sendto(frame, socket.getaddrinfo(host, port)[0][-1])
        except (OSError, P.ProtocolError) as e:
            log("tls", "report not sent: %r" % (e,))
        finally:
            s.close()
