"""A ward reconnecting over TLS must not hold up the call of a terminal that stayed online.

The host's part of a handshake is an RSA-3072 signature, milliseconds of a core each: with a
hundred terminals handshaking at once, a CALL that waited for them all on the event loop would
be acknowledged a second late, and in a storm of a whole ward tens of seconds late. The host
runs its handshakes in a worker thread, so the CALL is acknowledged while most of them are
still unanswered; and every one of them completes."""
from __future__ import annotations

import select
import socket
import ssl

import pytest

from tests.support.simterm import SHARED, tls_context
from wardcall.protocol import wardproto as wp

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

HANDSHAKES = 100


class RawHandshake:
    """A terminal's side of a TLS handshake, driven by hand so that the test knows when the
    ClientHello has left and when the host's answer has come."""

    def __init__(self, port: int) -> None:
        ctx, name = tls_context(SHARED)
        assert ctx is not None
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=name)
        self.step(send=False)           # the ClientHello, made but held

    def send_hello(self) -> None:
        self.sock.sendall(self.outgoing.read())

    def step(self, send: bool = True) -> bool:
        try:
            self.tls.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        if send and self.outgoing.pending:
            self.sock.sendall(self.outgoing.read())
        return done

    def answered(self) -> bool:
        """The host has sent its first flight (ServerHello ... Finished)."""
        return bool(select.select([self.sock], [], [], 0)[0])

    def finish(self) -> None:
        while True:
            data = self.sock.recv(65536)
            assert data, "the host closed the connection during the handshake"
            self.incoming.write(data)
            if self.step():
                return


async def test_a_call_is_acknowledged_while_a_hundred_terminals_handshake(make_ward, ward_server_factory):
    ward = make_ward(terminals=2, heartbeat_ms=500)
    server = ward_server_factory(ward)
    online = ward.terminal(0)
    await online.connect()
    handshakes: list[RawHandshake] = []
    try:
        handshakes = [RawHandshake(server.terminal_port) for _ in range(HANDSHAKES)]
        for h in handshakes:
            h.send_hello()
        # every ClientHello has left before the CALL: the host has most of them still to answer
        before = sum(h.answered() for h in handshakes)
        await online.place_call(wp.PATIENT, timeout=30)
        answered = sum(h.answered() for h in handshakes) - before
        waiting = HANDSHAKES - before
        assert waiting >= HANDSHAKES // 2, f"the host answered {before} handshakes before the CALL: no storm to try"
        assert answered < waiting // 2, (
            f"{answered} of the {waiting} handshakes waiting were answered before the CALL_ACK: the call waited for them")
        for h in handshakes:
            h.finish()
        assert all(h.tls.version() in ("TLSv1.2", "TLSv1.3") for h in handshakes)
    finally:
        for h in handshakes:
            h.sock.close()
        await online.close()
