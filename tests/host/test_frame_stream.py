"""FrameStream (host/wardcall/frame_stream.py): a terminal connection's bytes as whole frames,
some handled as they arrive (take_now), the rest read by the session's task, in the order they
came. On a real loopback connection; the split-up arrivals are fed the way asyncio feeds them."""
from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given, settings, strategies as st

from wardcall import tls_layer
from wardcall.frame_stream import QUEUE_BYTES, FrameStream
from wardcall.protocol import ProtocolError, wardproto as wp

from tests.support.simterm import open_terminal_connection
from tests.support.testca import host_context
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.timeout(60)

TAKEN, REPLACED, LEFT = wp.HEARTBEAT, wp.CALL, wp.PRESENCE     # what take_now does with each type


def frame(mtype: int, serial: int, size: int = wp.MIN_FRAME) -> bytes:
    """Frame-shaped bytes (a LEN prefix, the type at its place, a serial number to tell them apart)."""
    body = bytes([wp.VERSION, mtype, 0]) + struct.pack(">I", serial)
    return struct.pack(">H", size - 2) + body + bytes(size - 2 - len(body))


async def connected_pair() -> tuple[FrameStream, asyncio.StreamWriter, asyncio.AbstractServer]:
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[FrameStream] = loop.create_future()
    server = await loop.create_server(lambda: FrameStream(lambda stream, _: accepted.set_result(stream)), "127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    return await asyncio.wait_for(accepted, 5), writer, server


async def close(writer: asyncio.StreamWriter, server: asyncio.AbstractServer) -> None:
    writer.close()
    server.close()
    await server.wait_closed()


async def read_all(stream: FrameStream, into: list) -> BaseException:
    while True:
        try:
            into.append(await stream.next())
        except (EOFError, ConnectionError, ProtocolError) as exc:
            return exc


frames_st = st.lists(st.tuples(st.sampled_from([TAKEN, REPLACED, LEFT]), st.integers(wp.MIN_FRAME, 300)),
                     min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(kinds=frames_st, cuts=st.lists(st.integers(1, 400), min_size=1, max_size=60),
       yields=st.lists(st.booleans(), min_size=1, max_size=60))
def test_frames_come_out_whole_once_each_and_in_the_order_they_came(kinds, cuts, yields):
    sent = [frame(mtype, i, size) for i, (mtype, size) in enumerate(kinds)]

    async def main() -> None:
        stream, writer, server = await connected_pair()
        read: list = []
        taken: list[tuple[bytes, int]] = []     # each with how many items the task had read by then

        def take_now(f: bytes):
            if f[3] == TAKEN:
                taken.append((f, len(read)))
                return None
            return ("replaced", f) if f[3] == REPLACED else f
        stream.take_now = take_now
        reader = asyncio.ensure_future(read_all(stream, read))
        data, at, k = b"".join(sent), 0, 0
        while at < len(data):               # the bytes in pieces of any size, frames split anywhere
            piece = cuts[k % len(cuts)]
            stream.data_received(data[at:at + piece])
            at += piece
            if yields[k % len(yields)]:
                await asyncio.sleep(0)      # the task's turn: it reads what is queued, then waits
            k += 1
        stream.eof_received()
        assert isinstance(await asyncio.wait_for(reader, 5), EOFError)
        await close(writer, server)

        got = [item[1] if isinstance(item, tuple) else item for item in read]
        taken_frames = {f for f, _ in taken}
        assert got == [f for f in sent if f not in taken_frames]        # whole, in order, once
        assert all(f[3] == TAKEN for f in taken_frames)
        for f, read_by_then in taken:
            # offered only once everything before it had been read: handled in order either way
            assert read_by_then == sum(1 for g in sent[:sent.index(f)] if g not in taken_frames)
        # what take_now made of a frame is what the task gets in its place
        assert all(item[1][3] == REPLACED for item in read if isinstance(item, tuple))
    asyncio.run(main())


async def test_a_frame_is_offered_only_while_the_task_waits_with_nothing_queued():
    stream, writer, server = await connected_pair()
    offered: list[bytes] = []
    stream.take_now = lambda f: offered.append(f)       # takes everything it is offered
    stream.data_received(frame(TAKEN, 1) + frame(TAKEN, 2))
    assert offered == []            # no task waiting: both queued for it
    assert [await stream.next(), await stream.next()] == [frame(TAKEN, 1), frame(TAKEN, 2)]
    waiting = asyncio.ensure_future(stream.next())
    await asyncio.sleep(0)          # the task now waits
    stream.data_received(frame(TAKEN, 3))
    assert offered == [frame(TAKEN, 3)] and not waiting.done()
    waiting.cancel()
    await close(writer, server)


async def test_an_impossible_length_ends_the_stream_after_the_frames_before_it():
    stream, writer, server = await connected_pair()
    good = [frame(LEFT, i) for i in range(3)]
    stream.data_received(b"".join(good) + struct.pack(">H", wp.MAX_FRAME) + frame(LEFT, 9))
    assert [await stream.next() for _ in good] == good
    for _ in range(2):          # and stays ended: nothing after the bad length is framed
        with pytest.raises(ProtocolError) as exc:
            await stream.next()
        assert exc.value.code == wp.E_MALFORMED
    await close(writer, server)


async def test_what_came_before_the_peer_closed_is_read_then_the_end():
    stream, writer, server = await connected_pair()
    sent = [frame(LEFT, i, 100 + i) for i in range(5)]
    writer.write(b"".join(sent))
    await writer.drain()
    writer.close()
    read: list = []
    end = await asyncio.wait_for(read_all(stream, read), 5)
    assert read == sent and isinstance(end, EOFError)
    server.close()
    await server.wait_closed()


async def test_a_flood_the_task_does_not_read_stops_the_reading_then_all_of_it_arrives():
    stream, writer, server = await connected_pair()
    transport = stream.transport
    sent = [frame(LEFT, i, wp.MAX_FRAME) for i in range(400)]      # 400 KiB, far over QUEUE_BYTES
    writer.write(b"".join(sent))
    # the host holds a bounded amount it has not read, the rest stays with TCP and the peer
    await async_wait_until(lambda: not transport.is_reading(), 10, "the socket no longer read")
    assert len(sent) * wp.MAX_FRAME > 4 * QUEUE_BYTES
    read = [await asyncio.wait_for(stream.next(), 10) for _ in sent]
    assert read == sent
    assert transport.is_reading()
    await close(writer, server)


async def test_over_tls_a_flood_the_task_does_not_read_is_held_within_the_streams_bound():
    """As a terminal's session runs over TLS (terminal_server: the socket paused until
    tls_layer.start_tls, then the stream told the TLS transport): the stream pauses the TLS
    transport, which stops reading the socket and delivers no more of what it has read, and then
    every frame arrives, once, in order."""
    loop = asyncio.get_running_loop()
    upgraded: asyncio.Future[tuple[FrameStream, asyncio.Transport]] = loop.create_future()
    workers = tls_layer.handshake_workers()

    async def upgrade(stream: FrameStream, plain: asyncio.Transport) -> None:
        tls = await tls_layer.start_tls(plain, stream, host_context(), 10, workers)
        stream.upgraded(tls)
        upgraded.set_result((stream, tls))

    def accepted(stream: FrameStream, plain: asyncio.BaseTransport) -> None:
        plain.pause_reading()       # type: ignore[attr-defined]
        loop.create_task(upgrade(stream, plain))        # type: ignore[arg-type]

    server = await loop.create_server(lambda: FrameStream(accepted), "127.0.0.1", 0)
    _, writer = await open_terminal_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    stream, tls = await asyncio.wait_for(upgraded, 10)
    sent = [frame(LEFT, i, wp.MAX_FRAME) for i in range(400)]      # 400 KiB
    writer.write(b"".join(sent))
    await async_wait_until(lambda: not tls.is_reading(), 10, "the stream no longer reading")
    read = [await asyncio.wait_for(stream.next(), 10) for _ in sent]
    assert read == sent
    workers.shutdown()
    await close(writer, server)
