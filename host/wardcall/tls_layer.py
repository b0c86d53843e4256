"""TLS on an accepted terminal connection, with the handshake's arithmetic off the event loop.

asyncio's `loop.start_tls` runs the whole handshake on the loop's thread. The host's part of
it, the RSA-3072 signature, is about 9 ms of a core per terminal: in a reconnect storm of a
ward every online terminal's CALL waited behind thousands of them (BENCHMARKS.md, "TLS
handshakes off the loop"). Here the handshake's steps up to the host's answer to the
ClientHello run in a worker thread. OpenSSL releases the GIL while it computes, so the loop goes
on reading frames and acknowledging calls. The steps after it (the terminal's Finished) are
cheap and run on the loop.
Once the handshake is done, records are encrypted and decrypted on the loop in OpenSSL's C
through memory BIOs (`ssl.SSLObject`), as asyncio's own layer does.

Nothing of a connection's TLS state is touched by two threads at once: while a step runs in a
worker, the bytes that arrive are held on the loop and fed to OpenSSL after it.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import ssl
from typing import Any

READ_SIZE = 16 * 1024           # a TLS record's plaintext at most


def handshake_workers() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that run handshakes: all cores but the loop's, at least one."""
    return concurrent.futures.ThreadPoolExecutor(max(1, (os.cpu_count() or 2) - 1),
                                                 thread_name_prefix="tls-handshake")


async def start_tls(plain: asyncio.Transport, app: asyncio.Protocol, context: ssl.SSLContext,
                    timeout: float, workers: concurrent.futures.Executor) -> asyncio.Transport:
    """The server side of a TLS handshake on `plain`, paused and not yet read, whose protocol
    becomes the TLS layer. Returns the TLS transport, whose protocol is `app`; raises what the
    handshake raised (ssl.SSLError, ConnectionError, asyncio.TimeoutError), the plain
    transport then closed."""
    layer = TlsLayer(plain, app, context, workers)
    plain.set_protocol(layer)
    plain.resume_reading()
    try:
        await asyncio.wait_for(layer.handshaken, timeout)
    except BaseException:
        layer.abandon()
        raise
    # The caller takes the transport in this step; what arrived after the Finished reaches
    # `app` in a later one, once it knows the transport it is talking on.
    layer.attached = True
    layer.loop.call_soon(layer.read_records)
    return layer.transport


class TlsLayer(asyncio.Protocol):
    """The plain transport's protocol: TLS records in, the application's bytes out to `app`."""

    def __init__(self, plain: asyncio.Transport, app: asyncio.Protocol, context: ssl.SSLContext,
                 workers: concurrent.futures.Executor) -> None:
        self.plain = plain
        self.app = app
        self.context = context
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.sslobj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.workers = workers
        self.loop = asyncio.get_running_loop()
        self.handshaken: asyncio.Future[None] = self.loop.create_future()
        self.transport = TlsTransport(self)
        self._held = bytearray()                    # arrived while a step runs in a worker
        self._step: asyncio.Future[bool] | None = None
        self._answered = False                      # the host's first flight has gone
        self._open = False                          # the handshake is done
        self._eof = False                           # the application was told of the end of data
        self._ended = False                         # the application was told the connection ended
        self.attached = False                       # start_tls has returned the transport
        self.app_paused = False

    # ----- the handshake -----

    def _next_step(self) -> None:
        if self._step is not None or self.handshaken.done():
            return
        if self._held:
            self.incoming.write(bytes(self._held))
            self._held.clear()
        if self._answered:
            # What is left (the terminal's Finished) is cheap, and it must not queue for a worker
            # behind a storm's ClientHellos, to find its deadline passed.
            try:
                done = self._handshake_step()
            except ssl.SSLError as exc:
                self._after_step(exc)
            else:
                self._after_step(done)
            return
        self._step = self.loop.run_in_executor(self.workers, self._handshake_step)
        self._step.add_done_callback(self._stepped)

    def _handshake_step(self) -> bool:
        """True once the handshake is done, False while it wants more (in a worker thread until
        the host has answered the ClientHello: the answer holds the signature)."""
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def _stepped(self, step: asyncio.Future[bool]) -> None:
        self._step = None
        if not step.cancelled() and not self.handshaken.done():
            exc = step.exception()
            self._after_step(step.result() if exc is None else exc)

    def _after_step(self, outcome: bool | BaseException) -> None:
        if self.outgoing.pending:
            self._answered = True
            self._flush()                           # the handshake's answer, or its alert
        if isinstance(outcome, BaseException):
            self._fail(outcome)
        elif outcome:
            self._open = True
            self.handshaken.set_result(None)
            if self._held:                          # the first records after the Finished
                self.incoming.write(bytes(self._held))
                self._held.clear()
        elif self._held:
            self._next_step()

    def _fail(self, exc: BaseException) -> None:
        if not self.handshaken.done():
            self.handshaken.set_exception(exc)
        self.plain.close()

    def abandon(self) -> None:
        """The handshake was given up (its time ran out, or the session was cancelled)."""
        if self._step is not None:
            self._step.cancel()                     # not run at all if it still waits for a worker
        if not self.handshaken.done():
            self.handshaken.cancel()
        self.plain.abort()

    # ----- records, once open -----

    def read_records(self) -> None:
        """What the records received so far hold, to the application (unless it paused)."""
        while self.attached and not self.app_paused and not self._eof and not self._ended:
            try:
                data = self.sslobj.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):   # its close_notify, or a bare EOF
                self._end_of_data()
                break
            except ssl.SSLError as exc:
                self._end(exc)
                self.plain.abort()
                break
            if not data:
                self._end_of_data()
                break
            self.app.data_received(data)
        self._flush()                               # e.g. an answer to a key update

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[self.sslobj.write(view):]
        self._flush()

    def close(self) -> None:
        if self._open:
            try:
                self.sslobj.unwrap()                # our close_notify; the terminal's is not awaited
            except ssl.SSLError:
                pass
            self._flush()
        self.plain.close()

    def _flush(self) -> None:
        if self.outgoing.pending and not self.plain.is_closing():
            self.plain.write(self.outgoing.read())

    def _end_of_data(self) -> None:
        if not self._eof and not self._ended:
            self._eof = True
            keep_open = self.app.eof_received()
            if not keep_open:
                self.close()

    def _end(self, exc: BaseException | None) -> None:
        if not self._ended:
            self._ended = True
            self.app.connection_lost(exc)

    # ----- asyncio.Protocol, for the plain transport -----

    def data_received(self, data: bytes) -> None:
        if self._open:
            self.incoming.write(data)
            self.read_records()
        elif not self.handshaken.done():
            self._held += data
            self._next_step()

    def eof_received(self) -> bool:
        if not self._open:
            self._fail(ConnectionResetError("closed during the TLS handshake"))
            return False
        self.incoming.write_eof()
        if self.attached:
            self.read_records()                     # what came before it, then the end
            self._end_of_data()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._open:
            self._fail(exc or ConnectionResetError("closed during the TLS handshake"))
        else:
            self._end(exc)

    def pause_writing(self) -> None:
        if self._open:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self._open:
            self.app.resume_writing()


class TlsTransport(asyncio.Transport):
    """The application's side: what it writes is encrypted, and the plain transport carries it."""

    def __init__(self, layer: TlsLayer) -> None:
        super().__init__()
        self._layer = layer
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        layer = self._layer
        if name == "ssl_object":
            return layer.sslobj
        if name == "sslcontext":
            return layer.context
        if name == "peercert":
            return layer.sslobj.getpeercert()
        if name == "cipher":
            return layer.sslobj.cipher()
        return layer.plain.get_extra_info(name, default)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._layer.app

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._layer.app = protocol      # type: ignore[assignment]

    def is_closing(self) -> bool:
        return self._closing or self._layer.plain.is_closing()

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._layer.close()

    def abort(self) -> None:
        self._closing = True
        self._layer.plain.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.is_closing():
            self._layer.write(data)

    def can_write_eof(self) -> bool:
        return False                    # TLS has no half close

    def is_reading(self) -> bool:
        return not self._layer.app_paused

    def pause_reading(self) -> None:
        layer = self._layer
        if not layer.app_paused:
            layer.app_paused = True
            layer.plain.pause_reading()

    def resume_reading(self) -> None:
        layer = self._layer
        if layer.app_paused:
            layer.app_paused = False
            layer.plain.resume_reading()
            layer.loop.call_soon(layer.read_records)     # what was decrypted-able before the pause

    def get_write_buffer_size(self) -> int:
        return self._layer.plain.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._layer.plain.get_write_buffer_limits()   # type: ignore[attr-defined]

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._layer.plain.set_write_buffer_limits(high, low)
