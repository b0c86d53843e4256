"""A scripted stand-in for the host, in CPython, for the firmware's own tests (tests that need
the real host use tests/fixtures/host.py). It speaks wardproto through the shared module,
records every message, acknowledges CALL and CANCEL (unless told not to), answers DISCOVER,
and lets a test push CALL_STATE, COMMAND or raw bytes to the connected terminal."""
import asyncio
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "firmware" / "lib"))
import wardproto as P  # noqa: E402
from tests.support.testca import host_context  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402


def stop_loop(loop):
    """Stop an event loop running in another thread, closing every connection it serves first
    (cancelled while the loop still runs), so nothing is left for the garbage collector."""
    async def shutdown():
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    try:
        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
    finally:
        loop.call_soon_threadsafe(loop.stop)


class FakeHost:
    def __init__(self, device_id, key, hb_ms=300, ack=True, host_beats=1):
        self.device_id = device_id
        self.key = key
        self.hb_ms = hb_ms
        # its own heartbeat every host_beats x hb_ms to a terminal with CAP_HOST_BEAT (WELCOME
        # flags), each other frame of it answered at once, as the real host (SESSION.md)
        self.host_beats = host_beats
        self.period_ms = hb_ms
        self.ack = ack
        self.received = []          # (monotonic time, msg dict) in arrival order
        self.hellos = 0
        self.discovers = 0
        self.port = None
        self.udp_port = None
        self.silent = False         # stop sending heartbeats (simulate a dead host)
        self.refuse = 0             # close this many new connections at once, unanswered
        self._loop = None
        self._writer = None
        self._session = None
        self._thread = None
        self._ready = threading.Event()
        self._server = None
        self._lock = threading.Lock()
        self.on_message = None      # on_message(host, msg), in the host's thread, after recording
        self._cmd_id = 0

    # --- lifecycle ---
    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def stop(self):
        if self._loop:
            stop_loop(self._loop)
        if self._thread:
            self._thread.join(5)

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self):
        # TLS with the test CA's host certificate, as the real host (mprun.config trusts it)
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0, ssl=host_context())
        self.port = self._server.sockets[0].getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp.bind(("0.0.0.0", 0))
        self.udp_port = udp.getsockname()[1]
        await self._loop.create_datagram_endpoint(lambda: _Discovery(self), sock=udp)

    # --- the session ---
    async def _client(self, reader, writer):
        if self.refuse:
            self.refuse -= 1
            writer.close()
            return
        sess = P.Session(bytes.fromhex(self.key), True)
        try:
            frame = await asyncio.wait_for(P.read_frame(reader), 5)
            msg = sess.accept_hello(frame)
            self._record(msg)
            self.hellos += 1
            beats = self.host_beats if msg["caps"] & P.CAP_HOST_BEAT else 1
            self.period_ms = self.hb_ms * beats
            writer.write(sess.welcome(int(time.time()), self.hb_ms, beats if beats > 1 else 0))
            await writer.drain()
        except (P.ProtocolError, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            writer.close()
            return
        if self._writer is not None:
            self._writer.close()
        self._writer, self._session = writer, sess
        hb = asyncio.ensure_future(self._heartbeats(writer, sess))
        try:
            while True:
                frame = await asyncio.wait_for(P.read_frame(reader), 3 * self.hb_ms / 1000)
                msg = sess.decode(frame)
                self._record(msg)
                if self.on_message is not None:
                    self.on_message(self, msg)
                if self.period_ms > self.hb_ms and msg["type"] != P.HEARTBEAT and not self.silent:
                    self._send(P.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 0}, writer, sess)
                if msg["type"] in (P.CALL, P.CANCEL) and self.ack:
                    self._send(P.CALL_ACK, {"call": msg["call"], "of": msg["type"]}, writer, sess)
        except (P.ProtocolError, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, EOFError):
            pass
        finally:
            hb.cancel()
            writer.close()
            if self._writer is writer:
                self._writer = None

    async def _heartbeats(self, writer, sess):
        while True:
            if not self.silent:
                self._send(P.HEARTBEAT, {"status": 0, "pending": 0, "uptime": 0}, writer, sess)
            await asyncio.sleep(self.period_ms / 1000)

    def _send(self, mtype, fields, writer, sess):
        writer.write(sess.encode(mtype, fields))

    def _record(self, msg):
        with self._lock:
            self.received.append((time.monotonic(), msg))

    # --- for tests ---
    def messages(self, mtype=None):
        with self._lock:
            return [m for _, m in self.received if mtype is None or m["type"] == mtype]

    def connected(self):
        return self._writer is not None

    def send(self, mtype, fields):
        def go():
            if self._writer is not None:
                self._send(mtype, fields, self._writer, self._session)
        self._loop.call_soon_threadsafe(go)

    def send_raw(self, data):
        def go():
            if self._writer is not None:
                self._writer.write(data)
        self._loop.call_soon_threadsafe(go)

    def send_malformed_state(self):
        """An authentic, in-sequence CALL_STATE whose body is invalid (state 9)."""
        def go():
            if self._writer is None:
                return
            sess = self._session
            sess.tx_seq += 1
            body = bytes([0, 0, 0, 1, 9, 0])
            head = P.struct.pack(">HBBBI", 7 + len(body) + P.TAG_LEN, P.VERSION, P.CALL_STATE,
                                 P.FLAG_FROM_HOST, sess.tx_seq)
            self._writer.write(head + body + sess._mac.digest(head + body))
        self._loop.call_soon_threadsafe(go)

    def drop(self):
        """Close the current connection (as a host restart would)."""
        def go():
            if self._writer is not None:
                self._writer.close()
        self._loop.call_soon_threadsafe(go)

    def wait_for(self, pred, timeout=10.0, what="condition"):
        return wait_until(pred, timeout, what)

    def command(self, cmd, arg=b"", timeout=10.0):
        """Send a COMMAND to the board; (ok, detail) of the RESULT that answers it."""
        self._cmd_id += 1
        n = self._cmd_id
        self.send(P.COMMAND, {"cmd_id": n, "cmd": cmd, "arg": arg})
        r = self.wait_for(lambda: next((m for m in self.messages(P.RESULT) if m["cmd_id"] == n), None),
                          timeout, "RESULT %d" % n)
        return r["ok"], r["detail"]


class _Discovery(asyncio.DatagramProtocol):
    def __init__(self, host):
        self.host = host

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        mac = P.Hmac(bytes.fromhex(self.host.key))
        try:
            msg = P.decode_frame(mac, data, False)
        except P.ProtocolError:
            return
        if msg["type"] == P.DISCOVER and msg["device"] == self.host.device_id:
            self.host.discovers += 1
            self.transport.sendto(P.announce(mac, msg["nonce"], "127.0.0.1", self.host.port), addr)
