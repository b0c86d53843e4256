"""tls_layer (host/wardcall/tls_layer.py): TLS on an accepted connection, its handshake in a
worker thread. Against a real TLS client on loopback, with the ward's real host certificate:
bytes both ways whole and in order across many records, reading paused and resumed, the
terminal's close, a peer that is not TLS, and a peer that never finishes its handshake."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import ssl
from typing import Any

import pytest

from wardcall import tls_layer
from wardcall.terminal_server import tls_failure

from tests.support.simterm import open_terminal_connection
from tests.support.testca import host_context
from tests.support.waiting import async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


class Recorder(asyncio.Protocol):
    """The application: what it was given, and when it was told the connection ended."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.events: list[str] = []
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data

    def eof_received(self) -> bool:
        self.events.append("eof")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")


class Server:
    """A listening socket whose connections are handed to tls_layer.start_tls, paused first as
    the terminal server does."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.workers = tls_layer.handshake_workers()
        self.done: asyncio.Queue[tuple[Recorder, Any]] = asyncio.Queue()
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self.server = await asyncio.get_running_loop().create_server(self._accepted, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def _accepted(self) -> Recorder:
        app = Recorder()
        original = app.connection_made

        def made(plain: asyncio.BaseTransport) -> None:
            original(plain)
            plain.pause_reading()       # type: ignore[attr-defined]
            asyncio.get_running_loop().create_task(self._upgrade(app, plain))
        app.connection_made = made      # type: ignore[method-assign]
        return app

    async def _upgrade(self, app: Recorder, plain: Any) -> None:
        try:
            tls = await tls_layer.start_tls(plain, app, host_context(), self.timeout, self.workers)
        except (ssl.SSLError, ConnectionError, asyncio.TimeoutError) as exc:
            await self.done.put((app, exc))
            return
        app.transport = tls
        await self.done.put((app, tls))

    async def next(self) -> tuple[Recorder, Any]:
        return await asyncio.wait_for(self.done.get(), 10)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.workers.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
async def server():
    s = Server()
    yield s
    s.close()


async def test_a_megabyte_each_way_arrives_whole_and_in_order(server):
    port = await server.start()
    reader, writer = await open_terminal_connection("127.0.0.1", port)
    app, tls = await server.next()
    assert isinstance(tls, asyncio.Transport), tls
    assert tls.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
    assert tls.get_extra_info("peername") == writer.get_extra_info("sockname")
    up, down = os.urandom(1 << 20), os.urandom(1 << 20)
    for i in range(0, len(up), 1000):               # many small writes, as frames go
        writer.write(up[i:i + 1000])
    tls.write(down)                                 # one large one: many records
    assert await asyncio.wait_for(reader.readexactly(len(down)), 10) == down
    await async_wait_until(lambda: len(app.received) >= len(up), 10, "the megabyte at the host")
    assert bytes(app.received) == up
    writer.close()


async def test_nothing_more_reaches_an_application_that_paused_and_all_of_it_after_resuming(server):
    """The stream pauses the transport in the middle of a delivery (its queue full): the records
    already read from the socket wait too."""
    port = await server.start()
    reader, writer = await open_terminal_connection("127.0.0.1", port)
    app, tls = await server.next()
    app.data_received = lambda data: (app.received.extend(data), tls.pause_reading())  # type: ignore[method-assign]
    sent = os.urandom(400_000)
    writer.write(sent)                  # one write: many records in each read of the socket
    await writer.drain()
    tls.write(b"ping")                  # the connection still works both ways meanwhile
    assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
    await async_wait_until(lambda: app.received, 10, "the first record")
    held = len(app.received)
    assert not tls.is_reading()
    tls.write(b"pong")                  # a round trip more: time for more to arrive, had it been let
    assert await asyncio.wait_for(reader.readexactly(4), 10) == b"pong"
    assert len(app.received) == held
    assert held <= tls_layer.READ_SIZE  # one record, where the socket's read held many
    app.data_received = app.received.extend         # type: ignore[method-assign]
    tls.resume_reading()
    await async_wait_until(lambda: len(app.received) >= len(sent), 10, "everything after resuming")
    assert bytes(app.received) == sent
    writer.close()


async def test_the_terminals_close_ends_the_connection_once_after_its_last_bytes(server):
    port = await server.start()
    _, writer = await open_terminal_connection("127.0.0.1", port)
    app, tls = await server.next()
    writer.write(b"last words")
    writer.close()                      # TLS close_notify, then TCP FIN
    await async_wait_until(lambda: "lost" in app.events, 10, "the connection's end at the host")
    assert app.received == b"last words"
    assert app.events == ["eof", "lost"]
    assert tls.is_closing()


async def test_a_peer_that_does_not_speak_tls_is_refused_in_words_an_operator_can_act_on(server):
    port = await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: ward\r\n\r\n")
    app, failure = await server.next()
    assert isinstance(failure, ssl.SSLError), failure
    assert "does not speak TLS" in tls_failure(failure)
    assert app.received == b""              # nothing of it reached the application
    await asyncio.wait_for(reader.read(), 10)   # and the host closed the connection
    writer.close()


async def test_a_handshake_never_finished_is_given_up_at_its_deadline_and_closed():
    server = Server(timeout=0.5)
    try:
        port = await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01\x02\x00")     # a handshake record's header, and nothing more
        app, failure = await server.next()
        assert isinstance(failure, asyncio.TimeoutError), failure
        assert tls_failure(failure) == "no TLS handshake in time"
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
    finally:
        server.close()


class CountingPool(concurrent.futures.ThreadPoolExecutor):
    """One worker; counts the jobs it ran."""

    def __init__(self) -> None:
        super().__init__(1)
        self.ran = 0

    def submit(self, fn, /, *args, **kwargs):       # type: ignore[override]
        def counted():
            self.ran += 1
            return fn(*args, **kwargs)
        return super().submit(counted)


async def test_a_handshake_that_waited_for_a_busy_worker_past_its_deadline_is_never_run():
    """In a storm the handshakes queue for the worker: one given up meanwhile costs it nothing."""
    server = Server(timeout=0.5)
    server.workers.shutdown()
    server.workers = pool = CountingPool()
    release: concurrent.futures.Future[None] = concurrent.futures.Future()
    busy = pool.submit(release.result, 30)          # the only worker, busy
    try:
        port = await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="wardcall")
        with pytest.raises(ssl.SSLWantReadError):
            client.do_handshake()
        writer.write(outgoing.read())       # a whole ClientHello: a step queued behind the busy job
        app, failure = await server.next()
        assert isinstance(failure, asyncio.TimeoutError), failure
        release.set_result(None)
        busy.result(10)
        pool.submit(lambda: None).result(10)     # whatever was queued before this has been taken
        assert pool.ran == 2, f"{pool.ran - 2} handshake steps ran after their deadline"
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
    finally:
        server.close()
