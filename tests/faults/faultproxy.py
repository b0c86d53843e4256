"""A fault-injecting TCP relay for the link between terminals and the host.

Runs its own asyncio loop in a thread, so synchronous tests (the emulated fleet) and async tests
(simulated terminals) can both use it. Point terminals at `proxy.port`; the relay forwards to
`proxy.dest` (may be set after the proxy starts: connections wait for it).

Faults (all can change at any time, from any thread):
  cut("stall")   the cable is pulled: nothing is forwarded either way, nothing is closed; new
                 connections are accepted and held (as a dead link looks to both ends). Held bytes
                 are delivered on restore() if both ends still have the connection open.
  cut("reset")   every relayed connection is reset (RST) now, and new ones are reset at once.
  restore()      back to normal.
  delay_ms       added one-way delay for every chunk, each direction.
  loss           probability that a chunk is "lost". TCP over loopback never loses a segment, and
                 TCP hides a loss from the application anyway: the segment is retransmitted after
                 the retransmission timeout and everything behind it waits (head-of-line
                 blocking). That is what this emulates: a lost chunk is delivered `rto_ms` later
                 (doubling while it keeps being "lost"), and later chunks wait behind it.
  drop_conn      probability that a chunk instead breaks the connection (RST both ways): a link
                 whose losses end in a reset.
Counters: `accepted`, `resets`, `lost_chunks`, `chunks`.

UdpFaultProxy does the same for UDP discovery: a relay that drops datagrams, and counts them.
"""
from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
import time


class FaultProxy:
    def __init__(self, dest: int | None = None, *, host: str = "127.0.0.1", seed: int = 0) -> None:
        self.dest = dest
        self.host = host
        self.delay_ms = 0.0
        self.loss = 0.0
        self.drop_conn = 0.0
        self.rto_ms = 200.0
        self.mode = "ok"                 # ok | stall | reset
        self.rng = random.Random(seed)
        self.accepted = 0
        self.resets = 0
        self.lost_chunks = 0
        self.chunks = 0
        self._pipes: set["_Pipe"] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self.port = 0
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True, name="faultproxy")
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("fault proxy did not start")

    # ----- control (any thread) -----

    def _call(self, fn, *args):
        fut = asyncio.run_coroutine_threadsafe(self._async(fn, *args), self._loop)
        return fut.result(10)

    @staticmethod
    async def _async(fn, *args):
        return fn(*args)

    def cut(self, mode: str = "stall") -> None:
        assert mode in ("stall", "reset")
        self._call(self._cut, mode)

    def restore(self) -> None:
        self._call(self._restore)

    def set(self, *, delay_ms: float | None = None, loss: float | None = None, drop_conn: float | None = None,
            rto_ms: float | None = None) -> None:
        def apply():
            if delay_ms is not None:
                self.delay_ms = float(delay_ms)
            if loss is not None:
                self.loss = float(loss)
            if drop_conn is not None:
                self.drop_conn = float(drop_conn)
            if rto_ms is not None:
                self.rto_ms = float(rto_ms)
        self._call(apply)

    def connections(self) -> int:
        return self._call(lambda: len(self._pipes))

    def reset_all(self) -> int:
        """Reset every relayed connection now (the link stays up for new ones)."""
        return self._call(self._reset_all)

    def close(self) -> None:
        if not self._loop.is_running():
            return
        try:
            self._call(self._close)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    # ----- inside the loop -----

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def start():
            self._server = await asyncio.start_server(self._accept, self.host, 0, backlog=1024)
            self.port = self._server.sockets[0].getsockname()[1]
        self._loop.run_until_complete(start())
        ready.set()
        self._loop.run_forever()

    def _cut(self, mode: str) -> None:
        self.mode = mode
        if mode == "reset":
            self._reset_all()

    def _restore(self) -> None:
        self.mode = "ok"
        for pipe in list(self._pipes):
            pipe.resume()

    def _reset_all(self) -> int:
        n = 0
        for pipe in list(self._pipes):
            pipe.reset()
            n += 1
        return n

    def _close(self) -> None:
        self._reset_all()
        if self._server is not None:
            self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "reset":
            _rst(writer.transport)
            self.resets += 1
            return
        deadline = time.monotonic() + 10
        while self.dest is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.dest is None:
            _rst(writer.transport)
            return
        pipe = _Pipe(self, reader, writer)
        self._pipes.add(pipe)
        try:
            await pipe.run()
        finally:
            self._pipes.discard(pipe)


def _rst(transport) -> None:
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (OSError, AttributeError):
        pass
    transport.abort()


class _Pipe:
    """One relayed connection: two directions, each an ordered queue of (release time, bytes)."""

    def __init__(self, proxy: FaultProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.a_reader, self.a_writer = reader, writer
        self.b_reader: asyncio.StreamReader | None = None
        self.b_writer: asyncio.StreamWriter | None = None
        self.done = asyncio.Event()
        self.resumed = asyncio.Event()

    def resume(self) -> None:
        self.resumed.set()
        self.resumed = asyncio.Event()

    def reset(self) -> None:
        self.proxy.resets += 1
        _rst(self.a_writer.transport)
        if self.b_writer is not None:
            _rst(self.b_writer.transport)
        self.done.set()

    async def _held(self) -> None:
        """Wait while the link is stalled."""
        while self.proxy.mode == "stall" and not self.done.is_set():
            waiter = self.resumed
            try:
                await asyncio.wait_for(waiter.wait(), 0.5)
            except asyncio.TimeoutError:
                pass

    async def run(self) -> None:
        await self._held()
        if self.done.is_set():
            return
        try:
            self.b_reader, self.b_writer = await asyncio.open_connection(self.proxy.host, self.proxy.dest)
        except OSError:
            _rst(self.a_writer.transport)
            return
        tasks = [asyncio.ensure_future(self._direction(self.a_reader, self.b_writer)),
                 asyncio.ensure_future(self._direction(self.b_reader, self.a_writer))]
        await self.done.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in (self.a_writer, self.b_writer):
            if not w.transport.is_closing():
                w.close()

    async def _direction(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        proxy = self.proxy
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        last_release = 0.0

        async def sender():
            while True:
                release, data = await queue.get()
                wait = release - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._held()
                if data is None:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        send_task = asyncio.ensure_future(sender())
        try:
            while True:
                await self._held()
                data = await reader.read(65536)
                if not data:
                    queue.put_nowait((last_release, None))
                    await send_task
                    return
                proxy.chunks += 1
                if proxy.drop_conn and proxy.rng.random() < proxy.drop_conn:
                    self.reset()
                    return
                extra = proxy.delay_ms / 1000.0
                rto = proxy.rto_ms / 1000.0
                while proxy.loss and proxy.rng.random() < proxy.loss:
                    proxy.lost_chunks += 1
                    extra += rto
                    rto *= 2
                last_release = max(last_release, loop.time() + extra)
                queue.put_nowait((last_release, data))
        except (ConnectionError, OSError):
            self.reset()
        finally:
            if not send_task.done():
                # let queued chunks go out unless the pipe is being torn down
                if self.done.is_set():
                    send_task.cancel()
            try:
                await send_task
            except (asyncio.CancelledError, ConnectionError, OSError):
                pass
            if not self.done.is_set() and (reader is self.a_reader or reader is self.b_reader):
                # one direction ended (EOF or error): end the other when it has drained
                self.done.set()


class UdpFaultProxy:
    """A lossy UDP relay for discovery: terminals send their DISCOVER (a broadcast) to `port`,
    the relay forwards each datagram to the host's discovery port `dest` and the answers back,
    dropping a share of them each way. One upstream socket per terminal (source address), so
    the host's ANNOUNCE finds its way back.

    loss        probability that a datagram is dropped (each direction, seeded: reproducible)
    drop_first  the first N datagrams from each terminal (once `dest` is known) are dropped
                whatever the luck, so every terminal has to retry its DISCOVER
    Counters: `sent` (datagrams from terminals), `answers` (from the host), `dropped` (by the
    fault, both ways), `unrouted` (arrived before `dest` was set: gone too, not counted as
    dropped), and per terminal address `sent_from[source]`, `dropped_from[source]`."""

    def __init__(self, dest: int | None = None, *, loss: float = 0.0, drop_first: int = 0, seed: int = 0) -> None:
        self.dest = dest
        self.loss = loss
        self.drop_first = drop_first
        self.rng = random.Random(seed)
        self.sent = 0
        self.answers = 0
        self.dropped = 0
        self.unrouted = 0
        self.sent_from: dict[tuple, int] = {}
        self.dropped_from: dict[tuple, int] = {}
        self._routed_from: dict[tuple, int] = {}
        self._upstream: dict[tuple, asyncio.DatagramTransport] = {}
        self._pending: dict[tuple, list[bytes]] = {}        # upstream socket being opened
        self._loop = asyncio.new_event_loop()
        self._front: asyncio.DatagramTransport | None = None
        self.port = 0
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True, name="udpfaultproxy")
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("UDP fault proxy did not start")

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        proxy = self

        class Front(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple) -> None:
                proxy._from_terminal(data, addr)

        async def start():
            # 0.0.0.0: a socket bound to 127.0.0.1 does not receive broadcasts to 127.255.255.255
            self._front, _ = await self._loop.create_datagram_endpoint(Front, local_addr=("0.0.0.0", 0),
                                                                       allow_broadcast=True)
            self.port = self._front.get_extra_info("sockname")[1]
        self._loop.run_until_complete(start())
        ready.set()
        self._loop.run_forever()

    def _drop(self, source: tuple) -> bool:
        self._routed_from[source] = self._routed_from.get(source, 0) + 1
        first = self._routed_from[source] <= self.drop_first
        if first or (self.loss and self.rng.random() < self.loss):
            self.dropped += 1
            self.dropped_from[source] = self.dropped_from.get(source, 0) + 1
            return True
        return False

    def _from_terminal(self, data: bytes, source: tuple) -> None:
        self.sent += 1
        self.sent_from[source] = self.sent_from.get(source, 0) + 1
        if self.dest is None:
            self.unrouted += 1
            return
        if self._drop(source):
            return
        if source in self._upstream:
            self._upstream[source].sendto(data)
        elif source in self._pending:
            self._pending[source].append(data)
        else:
            self._pending[source] = [data]
            self._loop.create_task(self._open_upstream(source))

    async def _open_upstream(self, source: tuple) -> None:
        proxy = self

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple) -> None:
                proxy.answers += 1
                if proxy.loss and proxy.rng.random() < proxy.loss:
                    proxy.dropped += 1
                    proxy.dropped_from[source] = proxy.dropped_from.get(source, 0) + 1
                    return
                if proxy._front is not None:
                    proxy._front.sendto(data, source)

        transport, _ = await self._loop.create_datagram_endpoint(Back, remote_addr=("127.0.0.1", self.dest))
        self._upstream[source] = transport
        for data in self._pending.pop(source):
            transport.sendto(data)

    def set(self, *, loss: float | None = None, drop_first: int | None = None) -> None:
        def apply():
            if loss is not None:
                self.loss = float(loss)
            if drop_first is not None:
                self.drop_first = int(drop_first)
        self._loop.call_soon_threadsafe(apply)

    def close(self) -> None:
        if not self._loop.is_running():
            return

        def stop():
            for transport in [self._front, *self._upstream.values()]:
                if transport is not None:
                    transport.close()
            self._loop.stop()
        self._loop.call_soon_threadsafe(stop)
        self._thread.join(5)
