# The link to the host: Wi-Fi, then the host (config or UDP discovery), then one TCP session
# (wardproto.Session): HELLO/WELCOME, heartbeats both ways, the outbox sent in order after every
# WELCOME and resent until CALL_ACK (preceded by the calls still open here, announced again the
# same way, so a host that lost its record learns them again), a dead link detected after 3 of
# the host's heartbeat periods of silence (WELCOME may make the host's longer than ours) or 3 of
# ours with a frame we sent unanswered (the host answers each at once), and reconnection with exponential backoff plus jitter (0.5 s doubling to
# 30 s, + up to half), cut to 1-2 s while an event (a call, a cancel) waits to be delivered: a
# long outage's backoff never holds a new call back (only the terminals with something to say
# retry that often, so a reconnect storm stays spread out). The host's name is looked up once,
# and again only after repeated failures (a lookup blocks the board while DNS answers); with a
# standby_host in config.json, those failures switch to the other host (docs/FEDERATION.md,
# the standby). Messages that are not calls (PRESENCE, FAULT,
# RESULT) come from the Outgoing shared with the call state machine; FAULTs raised while the link
# was down go first after WELCOME. The connection is TLS with the host's certificate verified
# (tlslink.py); a refused certificate is a device fault here and a REPORT to the host, never a
# reason to talk in clear.
from micropython import const
import time
import asyncio
import machine
from binascii import hexlify
import board
import wardproto as P

from backoff import Backoff, jitter, sleep_alive
from discovery import find_host, resolve
from log import log, exc
import tlslink
from outbox import F_TYPE, F_CALL, F_ARG, F_SENT
from version import VERSION
from wifi import Wifi

_CONNECT_MS = const(5000)
_HANDSHAKE_MS = const(5000)
_IO_MS = const(5000)
_RESEND_MS = const(3000)
_DEFAULT_HB_MS = const(1000)
_MIN_HB_MS = const(100)
_LOOKUP_AFTER = const(3)      # failed sessions before the host is looked up (or discovered) again
_URGENT_MS = const(1000)      # with an event to deliver, the next try within 1-2 s
_PAUSE_STEP_MS = const(250)


def hardware_id():
    """This board's hardware identity for HELLO: machine.unique_id() (6 bytes on an ESP32, its
    base MAC), hashed down if a port gives more than the protocol's HWID_MAX bytes."""
    uid = bytes(machine.unique_id())
    if 1 <= len(uid) <= P.HWID_MAX:
        return uid
    log("link", "unique_id() gave %d bytes: sending its SHA-256" % len(uid))
    import hashlib
    return hashlib.sha256(uid).digest()[:P.HWID_MAX]


def clip(text, limit=P.MAX_TEXT):
    """text cut to at most limit bytes of UTF-8 (what a protocol text field holds: a RESULT
    detail up to that length, such as an update status, must arrive whole to stay JSON)."""
    b = text.encode()
    if len(b) <= limit:
        return text
    return "".join([c for c in text[:limit] if ord(c) < 128])


class Link:
    def __init__(self, cfg, calls, outbox, clock, out, commands):
        self.cfg = cfg
        # every frame from the host is read into this one buffer: a fresh ~1 KB object per frame
        # (an update chunk) fragments the heap until a 1 KB block cannot be found, TLS or not
        self._rx = memoryview(bytearray(P.MAX_FRAME))
        self.calls = calls
        self.outbox = outbox
        self.clock = clock
        self.out = out                  # outgoing.Outgoing, shared with calls
        self.commands = commands
        self.key = P.key_from_hex(cfg["key"])
        self.mac = P.Hmac(self.key)
        self.wifi = Wifi(cfg["wifi"]["ssid"], cfg["wifi"].get("password", ""))
        self.hwid = hardware_id()
        log("link", "hardware id %s" % hexlify(self.hwid).decode())
        self.caps = P.CAP_CORD | P.CAP_BUZZER | P.CAP_CODE | P.CAP_OTA | P.CAP_HOST_BEAT | (P.CAP_DOME if board.DOME >= 0 else 0)
        self.online = False
        self.hb_ms = _DEFAULT_HB_MS
        self.host_hb_ms = _DEFAULT_HB_MS    # the host's heartbeat period
        self.sessions = 0
        self._up = False
        self._last_rx = 0
        self._asked = None              # ticks of our first frame (not a heartbeat) the host has not answered
        self._after = None
        self._host = None               # (address, port) of the host, looked up once
        self._on_standby = False        # connecting to config.json's standby_host, not host
        self._backoff = Backoff(500, 30000)
        self._tls_problem = tlslink.problem(cfg.get("tls"))
        self.tls = None if self._tls_problem else tlslink.Tls(cfg, clock)

    def _reconfigure(self):
        # CMD_CONFIG wrote a new config.json: take it up (host, port, Wi-Fi ...)
        import config              # loaded for this (the application unloads it after boot)
        cfg, err = config.load()
        if err:
            log("link", "new config not taken up: %s" % err)
            return
        t = cfg.get("tls")
        if isinstance(t, dict):
            t.pop("ca", None)   # TLS settings are taken up at the next boot: the CA is in the context
        self.cfg = cfg
        self._host = None
        self.wifi.configure(cfg["wifi"]["ssid"], cfg["wifi"].get("password", ""))

    def _set_online(self, on):
        self.online = on
        self.calls.set_online(on)

    # --- the task ---
    async def _find_host(self, alive):
        """(address, port) from config.json or UDP discovery, the name looked up; or None."""
        cfg = self.cfg
        if cfg["host"]:
            if self._on_standby and cfg["standby_host"]:
                found = (cfg["standby_host"], cfg["standby_port"] or cfg["port"])
            else:
                found = (cfg["host"], cfg["port"])
        else:
            found = await find_host(self.wifi, self.cfg["device_id"], self.mac,
                                    self.cfg["discovery_port"], alive)
            if found is None:
                return None
        return resolve(found[0], found[1])

    async def _no_tls_settings(self, alive):
        # config.json says neither how to verify the host nor "plain": never connect in clear
        log("link", "NOT CONNECTING: %s (deploy config.json again: wardcall provision)" % self._tls_problem)
        self.calls.device_problem("no usable TLS settings: %s" % self._tls_problem)
        while True:
            await sleep_alive(10000, alive)

    def _refused(self, why):
        """The host's certificate was refused: a device fault once per episode, a REPORT to the
        host (rate-limited), and the usual backoff before the next try."""
        log("link", "host certificate REFUSED: %s (no plaintext fallback)" % why)
        if self.tls.refused is None:
            self.calls.device_problem("host certificate refused: %s" % why)
        self.tls.refused = why
        if self._host is not None:
            self.tls.report(self.mac, self.cfg["device_id"], self.cfg["discovery_port"], self._host[0], why)

    async def run(self, alive):
        if self._tls_problem:
            await self._no_tls_settings(alive)
        failures = 0
        while True:
            alive()
            await self.wifi.connect(alive)
            if self._host is None or failures >= _LOOKUP_AFTER:
                if failures >= _LOOKUP_AFTER and self.cfg["host"] and self.cfg["standby_host"]:
                    self._on_standby = not self._on_standby
                    log("link", "%d sessions failed: trying the %s host %s" % (
                        failures, "standby" if self._on_standby else "primary",
                        self.cfg["standby_host"] if self._on_standby else self.cfg["host"]))
                self._host = await self._find_host(alive)
                failures = 0
                if self._host is None:
                    if self.wifi.connected():       # the name did not resolve: try again later
                        await self._pause(alive)
                    continue
            established = await self._session(self._host[0], self._host[1], alive)
            if established:
                self._backoff.reset()
                failures = 0
            else:
                failures += 1
            if self._after == "reboot":
                log("link", "rebooting as the host asked")
                await asyncio.sleep_ms(200)
                machine.reset()
            if self._after == "reconnect":
                self._after = None
                self._reconfigure()
                continue
            await self._pause(alive)

    async def _pause(self, alive):
        """The backoff's wait before the next try, ended after 1-2 s once an event waits in the
        outbox (one there before, or a call placed during a long wait)."""
        wait = self._backoff.next()
        urgent = _URGENT_MS + jitter(_URGENT_MS)
        waiting = len(self.outbox) > 0
        if waiting and wait > urgent:
            log("link", "reconnecting in %d ms (an event to deliver; the backoff was %d ms)" % (urgent, wait))
        else:
            log("link", "reconnecting in %d ms" % wait)
        cut = await sleep_alive(wait, alive, _PAUSE_STEP_MS, lambda slept: slept >= urgent and len(self.outbox))
        if cut and not waiting:
            log("link", "an event to deliver: reconnecting now")

    async def _session(self, host, port, alive):
        tls = self.tls
        try:
            if tls.plain:
                log("link", "connecting to %s:%d WITHOUT TLS (config.json: tls plain)" % (host, port))
                opening = asyncio.open_connection(host, port)
            else:
                log("link", "connecting to %s:%d (TLS, host certificate for %s)" % (host, port, tls.name))
                tls.set_rtc()
                tls.peer_not_after = None
                opening = asyncio.open_connection(host, port, ssl=tls.context(), server_hostname=tls.name)
            reader, writer = await asyncio.wait_for_ms(opening, _CONNECT_MS)
        except (OSError, asyncio.TimeoutError) as e:
            log("link", "cannot connect: %r" % (e,))
            return False
        except ValueError as e:     # the CA in config.json does not parse
            log("link", "TLS not set up: %r" % (e,))
            self.calls.device_problem("the ward CA in config.json is unusable: %s" % e)
            return False
        try:
            return await self._run_session(reader, writer, alive)
        finally:
            self._up = False
            self.out.stop()
            self._set_online(False)
            try:
                writer.close()
                await asyncio.wait_for_ms(writer.wait_closed(), 1000)
            except (OSError, asyncio.TimeoutError):
                pass

    async def _write(self, writer, frame):
        writer.write(frame)
        await asyncio.wait_for_ms(writer.drain(), _IO_MS)

    async def _ask(self, writer, frame):
        # a frame the host answers at once (anything but a heartbeat): its silence is then a
        # dead link after 3 of our heartbeats, however long the host's period
        if self._asked is None:
            self._asked = time.ticks_ms()
        await self._write(writer, frame)

    async def _run_session(self, reader, writer, alive):
        sess = P.Session(self.key, False)
        cfg = self.cfg
        try:
            # over TLS this first write runs the handshake: mbedTLS sends HELLO only once the
            # host's certificate has verified, and raises ValueError if it does not
            await self._write(writer, sess.hello(cfg["device_id"], VERSION, board.NAME, self.caps, self.hwid))
            frame = await asyncio.wait_for_ms(self._read_frame(reader), _HANDSHAKE_MS)
            msg = sess.accept_welcome(frame)
        except ValueError as e:
            why = tlslink.refusal(e)
            if why is None:
                raise
            self._refused(why)
            return False
        except (OSError, EOFError, asyncio.TimeoutError) as e:
            log("link", "no WELCOME from the host: %r" % (e,))
            return False
        except P.ProtocolError as e:
            log("link", "bad WELCOME dropped: %s" % e)
            return False
        hb = msg["hb_ms"]
        self.hb_ms = hb if hb >= _MIN_HB_MS else _DEFAULT_HB_MS
        self.host_hb_ms = self.hb_ms * ((msg["flags"] & P.WF_HOST_BEATS) or 1)
        self.clock.sync(msg["time"])
        expired = self.tls.synced(msg["time"])
        if expired:
            self._refused(expired)
            return False
        if self.tls.refused is not None:
            log("link", "host certificate accepted again")
            self.tls.refused = None
        self.sessions += 1
        self._up = True
        self._last_rx = time.ticks_ms()
        self._asked = None
        faults = self.out.start()
        self.outbox.unsend(self.calls.reannounce())
        self._set_online(True)
        log("link", "online (heartbeat %d ms, the host's %d ms, %d fault(s) raised offline, %d event(s) to "
            "send, %d open call(s) to announce again)" % (self.hb_ms, self.host_hb_ms, faults, len(self.outbox),
                                                         len(self.outbox.again)))
        task = asyncio.create_task(self._reader(reader, sess))
        try:
            await self._sender(writer, sess, alive)
        finally:
            task.cancel()
        return True

    # --- receiving ---
    async def _read_frame(self, reader):
        """The next frame, as a view of the receive buffer (valid until the next read: decoding
        copies every field out of it). The caller bounds it with a timeout."""
        buf = self._rx
        await _fill(reader, buf[:2])
        n = P.frame_length(buf[:2]) + 2
        await _fill(reader, buf[2:n])
        return buf[:n]

    async def _reader(self, reader, sess):
        dead_ms = 3 * self.host_hb_ms
        try:
            while self._up:
                try:
                    frame = await asyncio.wait_for_ms(self._read_frame(reader), dead_ms)
                except asyncio.TimeoutError:
                    log("link", "no frame from the host for %d ms: link dead" % dead_ms)
                    break
                except P.ProtocolError as e:
                    log("link", "garbage from the host (%s): closing" % e)
                    break
                except (OSError, EOFError, ValueError) as e:
                    log("link", "connection lost: %r" % (e,))
                    break
                self._last_rx = time.ticks_ms()
                self._asked = None
                try:
                    msg = sess.decode(frame)
                except P.ProtocolError as e:
                    if e.code == P.E_AUTH or e.code == P.E_SEQUENCE:
                        log("link", "frame from the host refused (%s): closing" % e)
                        break
                    log("link", "malformed frame from the host dropped: %s" % e)
                    continue
                try:
                    self._dispatch(msg)
                except Exception as e:  # noqa: BLE001 - one bad message must not end the session
                    exc("link", "handling %s failed" % P.TYPE_NAMES.get(msg["type"], "?"), e)
        finally:
            self._up = False
            self.out.wake()

    def _dispatch(self, msg):
        t = msg["type"]
        if t == P.HEARTBEAT:
            return
        if t == P.CALL_ACK:
            if self.outbox.ack(msg["call"], msg["of"]):
                log("link", "host stored %s %d" % (P.TYPE_NAMES.get(msg["of"], "?"), msg["call"]))
            self.out.wake()
        elif t == P.CALL_STATE:
            self.calls.on_state(msg["call"], msg["state"], msg["by"])
        elif t == P.COMMAND:
            ok, detail, after = self.commands.handle(msg["cmd"], msg["arg"])
            self.out.send(P.RESULT, {"cmd_id": msg["cmd_id"], "ok": ok, "detail": clip(detail)})
            if after:
                self._after = after
        elif t == P.ERROR:
            log("link", "host reports error %d: %s" % (msg["code"], msg["detail"]))
        else:
            log("link", "unexpected %s from the host dropped" % P.TYPE_NAMES.get(t, "?"))

    # --- sending ---
    def _heartbeat(self, sess):
        presence, cord, device = self.calls.status()
        status = (P.HB_PRESENCE if presence else 0) | (P.HB_CORD_FAULT if cord else 0) \
            | (P.HB_DEVICE_FAULT if device else 0)
        n = len(self.outbox)
        return sess.encode(P.HEARTBEAT, {"status": status, "pending": n if n < 255 else 255,
                                         "uptime": self.clock.uptime_ms() // 1000})

    def _event(self, sess, ev):
        age = self.outbox.age_ms(ev, self.clock)
        if ev[F_TYPE] == P.CALL:
            return sess.encode(P.CALL, {"call": ev[F_CALL], "kind": ev[F_ARG], "priority": ev[F_ARG],
                                        "age_ms": age})
        return sess.encode(P.CANCEL, {"call": ev[F_CALL], "reason": ev[F_ARG], "age_ms": age})

    async def _due(self, writer, sess, events, now, wait):
        """Send every event not sent yet this session or unacknowledged for _RESEND_MS; returns
        min(wait, ms until the next resend is due)."""
        if not events:
            return wait
        for ev in list(events):     # a copy: CALL_ACK may remove events while we write
            sent = ev[F_SENT]
            if sent is None or time.ticks_diff(now, sent) >= _RESEND_MS:
                if sent is not None:
                    log("link", "resending unacknowledged event %d" % ev[F_CALL])
                ev[F_SENT] = now
                await self._ask(writer, self._event(sess, ev))
                sent = now
            left = _RESEND_MS - time.ticks_diff(now, sent)
            if left < wait:
                wait = left
        return wait

    async def _send_queued(self, writer, sess):
        # the Outgoing's messages in order; one is forgotten only once written (a FAULT the
        # session ended on is sent again in the next), or if it cannot be encoded at all
        out = self.out
        while True:
            m = out.first()
            if m is None:
                return
            try:
                frame = sess.encode(m[0], m[1])
            except P.ProtocolError as e:
                log("link", "cannot encode %s: %s (dropped)" % (P.TYPE_NAMES.get(m[0], "?"), e))
                out.done()
                continue
            await self._ask(writer, frame)
            out.done()

    async def _sender(self, writer, sess, alive):
        hb = self.hb_ms
        next_hb = time.ticks_ms()
        out = self.out
        try:
            while self._up:
                out.clear_wake()
                now = time.ticks_ms()
                if time.ticks_diff(now, self._last_rx) >= 3 * self.host_hb_ms:
                    log("link", "no frame from the host for %d ms: link dead" % (3 * self.host_hb_ms))
                    break
                asked = self._asked
                if asked is not None and time.ticks_diff(now, asked) >= 3 * hb:
                    log("link", "no answer from the host for %d ms: link dead" % (3 * hb))
                    break
                if not self.wifi.connected():
                    log("link", "Wi-Fi lost")
                    break
                await self._send_queued(writer, sess)
                # the open calls announced again first, then the stored events in order: a
                # CANCEL is stored after its CALL, so it never goes before it
                wait = await self._due(writer, sess, self.outbox.again, now, hb)
                wait = await self._due(writer, sess, self.outbox.items, now, wait)
                if self._after is not None and not len(out):
                    break
                if time.ticks_diff(now, next_hb) >= 0:
                    await self._write(writer, self._heartbeat(sess))
                    next_hb = time.ticks_add(now, hb)
                alive()
                left = time.ticks_diff(next_hb, time.ticks_ms())
                if left < wait:
                    wait = left
                if wait > 0:
                    await out.wait_wake(wait)
        except (OSError, asyncio.TimeoutError) as e:
            log("link", "send failed: %r" % (e,))
        except P.ProtocolError as e:
            log("link", "cannot encode a message: %s" % e)
        finally:
            self._up = False


async def _fill(reader, view):
    # readinto until the view is full (None: nothing yet, as a TLS record still incomplete);
    # EOFError if the stream ends first
    got = 0
    size = len(view)
    while got < size:
        k = await reader.readinto(view[got:])
        if k is None:
            continue
        if not k:
            raise EOFError("connection closed")
        got += k
