"""TCP sessions with the bed terminals (docs/SESSION.md): handshake, heartbeats, calls.

One TerminalSession per connection. Bad input never escapes a session: it is logged (rate-
limited), recorded (the ward rate-limits that), answered with ERROR where the session can go on,
and otherwise the connection is closed.

Connections that have not yet sent an authentic frame are capped per source address and in
total (PendingConnections): past a cap the oldest is dropped, so idle or replayed connections
cannot keep a real terminal out or use up the process's file descriptors.

With TLS ([tls] terminals = "tls", the default) each connection is upgraded (tls_layer.start_tls,
the host's signature in a worker thread) after it is counted, so connections still in their TLS
handshake are capped too, and the handshake is bounded by `handshake_timeout_s`; a failed
handshake is logged and recorded by source address (the terminal cannot be named before HELLO:
it names itself in a REPORT, discovery.py).
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import errno
import heapq
import logging
import resource
import ssl
import time
import weakref
from collections import OrderedDict
from typing import Any

from .by_source import BySource
from .config import Network
from .frame_stream import FrameStream
from .hub import WardHub
from .protocol import ProtocolError, fit_text, wardproto
from .ratelog import BurstLog, RateLimitedLog
from . import tls_layer
from .storage import StorageError
from .turns import TurnGate
from .ward.terminals import source_of

log = logging.getLogger("wardcall.terminals")
flood_log = RateLimitedLog(log)     # every line a peer can cause goes through this

MAX_WRITE_BUFFER = 256 * 1024     # a peer that stops reading is cut off rather than buffered forever
LISTEN_BACKLOG = 4096            # the kernel's queue: a whole ward reconnects at once after an outage
ACCEPT_BATCH = 64                # the console API's listener accepts this many per wake-up
PENDING_SHARE = 4                 # by default a quarter of the descriptor limit for pending connections
PENDING_MIN = 64
STOP_GRACE_S = 1.0               # at a stop: for the terminals to close, then for their sessions to end
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def descriptor_limit() -> int:
    """The process's soft limit on open files (sockets count)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY and soft > 0 else 1 << 20


def pending_limits(network: Network) -> tuple[int, int]:
    """(in total, per source address) for terminal connections before their first authentic frame.
    Per address defaults to the total: emulated boards and the load generator all connect from
    127.0.0.1; dropping from the busiest address first keeps a flood from hurting the others."""
    total = network.pending_connections_max or max(PENDING_MIN, descriptor_limit() // PENDING_SHARE)
    per_address = min(network.pending_connections_per_address or total, total)
    return total, per_address


def accept_batch() -> int:
    """How many connections asyncio accepts per wake-up (its `backlog` argument): enough to
    keep up with a ward reconnecting at once, few enough that the descriptors they take before
    the caps see them cannot run out (a sixteenth of the limit, 64 … 1024)."""
    return min(1024, max(ACCEPT_BATCH, descriptor_limit() // 16))


def install_loop_error_handler(loop: asyncio.AbstractEventLoop) -> None:
    """Out of descriptors, asyncio stops accepting for a second and reports it, with a
    traceback, to the loop's exception handler, every time: one rate-limited line instead.
    Everything else goes to the default handler, rate-limited by its message."""
    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in OUT_OF_RESOURCES:
            flood_log.warning(("loop", exc.errno), "out of resources (%s; open files limit %d): accepting new "
                              "connections paused for 1 s", exc.strerror or exc, descriptor_limit())
            return
        if flood_log.log(logging.ERROR, ("loop", str(context.get("message"))), "event loop: %s", context.get("message")):
            loop.default_exception_handler(context)
    loop.set_exception_handler(handler)


class SessionTimers:
    """Every session's heartbeats and dead-link deadline on one loop timer, instead
    of a task sleeping per session and an `asyncio.wait_for` per frame read and per drain: at
    5,000 terminals those were over half of the loop's time, and their coroutines, futures and
    timer handles most of what the garbage collector kept walking.

    Heartbeats are due on an absolute grid (start + k x interval): a late turn of the loop does
    not push the later ones back. A dead-link deadline is checked when it falls due: a frame
    that came in since moves it on (one entry per session, not one per frame). Whatever is
    due within GRANULARITY_S is done in one wake-up, so the loop wakes at most 1/GRANULARITY_S
    times a second for all of them."""

    GRANULARITY_S = 0.01
    TURN_MAX = 32           # entries done in one turn of the loop; the rest in the next (reads between)
    STALL_S = 0.25          # a deadline checked this late: the loop was stalled, look again …
    RECHECK_S = 0.05        # … this much later, once what arrived meanwhile has been read
    _HEARTBEAT, _DEADLINE = 0, 1

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # entries by the granule they fall due in (int(when / GRANULARITY_S)), and a heap of
        # those granules: a beat costs an append, not a push and a pop on a heap of every session
        self._granules: dict[int, list[tuple[float, int, TerminalSession]]] = {}
        self._keys: list[int] = []
        self._ready: collections.deque[tuple[float, int, TerminalSession]] = collections.deque()
        self._handle: asyncio.Handle | None = None
        self._armed_for = float("inf")

    def start(self, session: "TerminalSession", dead_after: float) -> None:
        """A session after its handshake: a heartbeat now (the session says when the next is
        due), closed when nothing has come in for `dead_after`."""
        now = self.loop.time()
        self._push(now, self._HEARTBEAT, session)
        self._push(now + dead_after, self._DEADLINE, session)

    def _push(self, when: float, what: int, session: "TerminalSession") -> None:
        key = int(when // self.GRANULARITY_S)
        granule = self._granules.get(key)
        if granule is None:
            granule = self._granules[key] = []
            heapq.heappush(self._keys, key)
        granule.append((when, what, session))
        if when < self._armed_for - self.GRANULARITY_S:
            self._arm(self.loop.call_at(when, self._fire), when)

    def _arm(self, handle: asyncio.Handle, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._armed_for = handle, when

    def _fire(self) -> None:
        # what is pushed while this runs arms nothing: the end of this turn arms for the earliest
        self._handle, self._armed_for = None, float("-inf")
        now = self.loop.time()
        keys, ready = self._keys, self._ready
        horizon = now + self.GRANULARITY_S
        last = int(horizon // self.GRANULARITY_S)
        while keys and keys[0] < last:
            ready.extend(self._granules.pop(heapq.heappop(keys)))
        if keys and keys[0] == last:    # the granule the horizon falls in: what is due by then
            granule = self._granules[last]
            ready.extend(entry for entry in granule if entry[0] <= horizon)
            granule[:] = [entry for entry in granule if entry[0] > horizon]
            if not granule:
                del self._granules[heapq.heappop(keys)]
        for _ in range(min(self.TURN_MAX, len(ready))):
            when, what, session = ready.popleft()
            if session.closed_because is not None:
                continue            # ended: its entries go
            if what == self._DEADLINE and now - when > self.STALL_S:
                # the loop itself was held up: what the terminal sent meanwhile may be waiting
                # unread. It gets read first; the host's lateness is not the terminal's silence.
                self._push(now + self.RECHECK_S, what, session)
                continue
            try:
                nxt = session.heartbeat_due(when, now) if what == self._HEARTBEAT else session.deadline_due(now)
            except Exception:       # a bug in one session must not stop every heartbeat
                log.exception("session timer of %s failed", session.device or session.address)
                session.drop("internal error")
                continue
            if nxt is not None:
                self._push(nxt, what, session)
        self._armed_for = float("inf")
        if ready:
            # more due than a turn takes: the rest in the next turn, after what has arrived
            self._arm(self.loop.call_soon(self._fire), now)
        elif keys:
            when = min(entry[0] for entry in self._granules[keys[0]])
            self._arm(self.loop.call_at(when, self._fire), when)


def next_beat(due: float, now: float, interval: float) -> float:
    """The next heartbeat after the one due at `due`, sent at `now`: on the same grid, the beats
    a stalled loop missed skipped (one late beat, not a burst)."""
    nxt = due + interval
    if nxt <= now:
        nxt += interval * ((now - nxt) // interval + 1)
    return nxt


_per_hub: "weakref.WeakKeyDictionary[WardHub, dict[type, Any]]" = weakref.WeakKeyDictionary()


def _hub_own(hub: WardHub, kind: type) -> Any:
    """The hub's one `kind(loop)` on the running event loop (a new one on a new loop)."""
    loop = asyncio.get_running_loop()
    held = _per_hub.setdefault(hub, {})
    thing = held.get(kind)
    if thing is None or thing.loop is not loop:
        thing = held[kind] = kind(loop)
    return thing


def session_timers(hub: WardHub) -> SessionTimers:
    """The timers of a hub's terminal sessions (one set per hub and event loop)."""
    return _hub_own(hub, SessionTimers)


def turn_gate(hub: WardHub) -> TurnGate:
    """The gate a hub's sessions pass before a handshake and before their end is recorded."""
    return _hub_own(hub, TurnGate)


class SessionLines:
    """The log's lines of terminals connecting and leaving: one by one, but not 5,000 of each
    in a storm (ratelog.BurstLog)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.connected = BurstLog(log, "terminals connected", loop)
        self.disconnected = BurstLog(log, "terminals disconnected", loop)


def session_lines(hub: WardHub) -> SessionLines:
    return _hub_own(hub, SessionLines)


def _address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


class Decoded:
    """A frame FrameStream's take_now decoded on arrival but did not finish (a HEARTBEAT that
    changes something, or one refused), for the session's task to go on with."""
    __slots__ = ("msg", "error", "moved")

    def __init__(self, msg: dict[str, Any] | None, error: ProtocolError | None = None, moved: bool = False) -> None:
        self.msg, self.error, self.moved = msg, error, moved


class TerminalSession:
    def __init__(self, hub: WardHub, stream: FrameStream, pending: "PendingConnections | None" = None) -> None:
        self.hub = hub
        self.stream = stream
        assert stream.transport is not None
        self.transport: asyncio.Transport = stream.transport
        self.address = _address(self.transport)
        self.source = source_of(self.address)
        self._pending = pending             # until the first authentic frame
        self.device: str | None = None
        self.hwid = ""                    # the board's hardware id (hex), from its HELLO
        self.session: Any = None
        self.closed_because: str | None = None
        self._heartbeats_started = 0.0     # mono: the uptime the host reports in its heartbeats
        # loop time the read now waiting began (the dead-link deadline runs from it, as a timeout
        # on each read would); None while the session works on a frame (a commit may take a while)
        self._read_since: float | None = None
        self._unread_since: float | None = None    # loop time the write buffer was first seen over its limit
        self._hello: dict[str, Any] | None = None    # until the first authentic session frame
        self.beat_every = 1                 # the host's heartbeat every this many heartbeat_ms (WELCOME)
        self.secured = False                # the session runs inside TLS
        self._loop = asyncio.get_running_loop()

    # ----- TerminalLink -----

    def send(self, mtype: int, fields: dict[str, Any]) -> None:
        transport = self.transport
        if self.closed_because is not None or transport.is_closing():
            return
        transport.write(self.session.encode(mtype, fields))
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.close("terminal does not read what it is sent")

    def close(self, reason: str) -> None:
        if self.closed_because is None:
            self.closed_because = reason
        if not self.transport.is_closing():
            self.transport.close()

    def drop(self, reason: str) -> None:
        """Close at once, nothing flushed (a pending connection over the cap)."""
        self.close(reason)
        self.transport.abort()

    def _trusted(self) -> None:
        if self._pending is not None:
            self._pending.remove(self)
            self._pending = None

    # ----- the session -----

    async def run(self) -> None:
        try:
            if await self._handshake():
                await self._serve()
        except (ConnectionError, EOFError, asyncio.IncompleteReadError):
            self.closed_because = self.closed_because or "connection closed by the terminal"
        except asyncio.CancelledError:
            self.closed_because = self.closed_because or "server stopping"
            raise
        except Exception as exc:  # a bug in one session must not take the server down
            if flood_log.log(logging.ERROR, ("failed", type(exc).__name__), "session with %s (%s) failed: %r",
                             self.device or "?", self.address, exc):
                log.error("the traceback of that failure", exc_info=True)
            self.closed_because = self.closed_because or "internal error"
        finally:
            self._trusted()
            self.close(self.closed_because or "session ended")
            if self.device is not None:
                await self._record_end(self.device)

    async def _record_end(self, device: str) -> None:
        try:
            if self.closed_because != "server stopping":
                await turn_gate(self.hub).take()     # a storm of ends recorded a few per turn
        finally:                                    # (cancelled while it waits: recorded all the same)
            if await self.hub.detach(device, self, self.hwid):
                why = self.closed_because or "session ended"
                if why != "server stopping" and session_lines(self.hub).disconnected.admit(why):
                    # the connected line's twin: a technician reading the log sees why a bed went
                    flood_log.info(("disconnected", device), "terminal %s (%s) disconnected: %s",
                                   device, self.address, why)
                try:
                    await self.hub.apply(self.hub.ward.terminal_disconnected(device, self.closed_because or ""))
                except Exception:
                    log.exception("recording the disconnection of %s failed", device)

    async def start_tls(self, context: ssl.SSLContext, workers: concurrent.futures.Executor) -> bool:
        """The TLS handshake; False (logged, recorded, closed) if it fails. The session's
        transport is then the TLS one. The plain socket has not been read (TerminalServer
        pauses it as it is accepted), so no byte of the TLS handshake can reach the frames."""
        try:
            transport = await tls_layer.start_tls(self.transport, self.stream, context,
                                                  self.hub.config.timing.handshake_timeout_s, workers)
        except asyncio.CancelledError:
            raise
        except (ssl.SSLError, ConnectionError, OSError, asyncio.TimeoutError, EOFError, RuntimeError) as exc:
            self._trusted()                 # no longer pending: it ends here
            problem = tls_failure(exc)
            flood_log.warning(("tls", problem), "terminal connection from %s: TLS handshake failed: %s", self.address, problem)
            await self.hub.apply(self.hub.ward.protocol_problem(None, self.address, f"TLS handshake failed: {problem}", closed=True))
            self.close(f"TLS handshake failed: {problem}")
            return False
        self.transport = transport      # type: ignore[assignment]
        self.stream.upgraded(transport)
        return True

    async def _reject(self, device: str | None, problem: str) -> None:
        flood_log.warning(("reject", device), "terminal %s (%s): %s", device or "?", self.address, problem)
        await self.hub.apply(self.hub.ward.protocol_problem(device, self.address, problem, closed=True))
        self.close(problem)

    async def _handshake(self) -> bool:
        hub = self.hub
        try:
            frame = await asyncio.wait_for(self.stream.next(), hub.config.timing.handshake_timeout_s)
        except asyncio.TimeoutError:
            self.close("no HELLO in time")
            return False
        except ProtocolError as exc:
            await self._reject(None, f"before HELLO: {exc.message}")
            return False
        await turn_gate(hub).take()     # a storm of HELLOs answered a few per turn
        try:
            device = wardproto.peek_device(frame)
        except ProtocolError as exc:
            await self._reject(None, f"first frame is not a valid HELLO: {exc.message}")
            return False
        key = hub.keys.get(device)
        if device not in hub.config.terminals or key is None:
            reason = "unknown device" if device not in hub.config.terminals else "device has no key on this host"
            flood_log.warning(("refused", reason), "refused %r from %s: %s", device[:64], self.address, reason)
            await hub.apply(hub.ward.auth_refused(device, self.address, reason))
            self.close(reason)
            return False
        session = wardproto.Session(key, True)
        try:
            hello = session.accept_hello(frame)
        except ProtocolError as exc:
            reason = "wrong key" if exc.code == wardproto.E_AUTH else exc.message
            flood_log.warning(("refused", reason if reason == "wrong key" else "other"), "refused %r from %s: %s (%s)", device, self.address, reason, exc.message)
            await hub.apply(hub.ward.auth_refused(device, self.address, reason))
            self.close(reason)
            return False
        self.session = session
        self.device = device
        self.hwid = hello["hwid"].hex()     # which physical board: call ids are unique per board
        self._hello = hello
        timing = hub.config.timing
        if hello["caps"] & wardproto.CAP_HOST_BEAT:
            self.beat_every = timing.host_heartbeat_every
        self.transport.write(session.welcome(int(hub.clock.wall()), timing.heartbeat_ms,
                                             self.beat_every if self.beat_every > 1 else 0))
        self.secured = self.transport.get_extra_info("ssl_object") is not None
        # A HELLO proves nothing by itself: anyone can replay one. The session takes the
        # terminal's place (and displaces an older one) only once it sends an authentic frame
        # under the new session key (_adopt); until then it is just a connection.
        self._heartbeats_started = time.monotonic()
        self._read_since = asyncio.get_running_loop().time()
        session_timers(hub).start(self, hub.config.offline_after_s)
        self.stream.take_now = self._take_now
        return True

    async def _adopt(self, device: str) -> None:
        """The first authentic session frame arrived: this is the terminal now."""
        hello, self._hello = self._hello, None
        assert hello is not None
        self._trusted()
        claims = self.hub.attach(device, self, self.hwid)
        if session_lines(self.hub).connected.admit():
            log.info("terminal %s connected from %s (firmware %s, board %s, hardware id %s)", device, self.address,
                     hello["firmware"], hello["board"], self.hwid)
        fx = claims.merge(self.hub.ward.terminal_connected(
            device, hello["firmware"], hello["board"], hello["caps"], self.address, self.hwid))
        if self.secured:
            fx.merge(self.hub.ward.tls_accepted(device))
        await self.hub.apply(fx)

    def heartbeat_due(self, due: float, now: float) -> float | None:
        """From SessionTimers: send the host's heartbeat; returns when the next is due, on the
        grid `due` is on (beats a stalled loop missed are skipped, not sent in a burst).
        A terminal whose socket has not taken what it was sent for `offline_after_s` (its
        write buffer above the high-water mark all that time) is cut off: it stopped reading."""
        config = self.hub.config
        transport = self.transport
        if not self._heartbeat():
            return None
        if transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]:
            if self._unread_since is None:
                self._unread_since = now
            elif now - self._unread_since >= config.offline_after_s:
                self.drop("terminal stopped reading")
                return None
        else:
            self._unread_since = None
        return next_beat(due, now, config.heartbeat_s * self.beat_every)

    def _heartbeat(self) -> bool:
        """Send the host's HEARTBEAT; False if the session has ended."""
        try:
            self.send(wardproto.HEARTBEAT, {"status": 0, "pending": 0,
                                            "uptime": int(time.monotonic() - self._heartbeats_started)})
        except (ConnectionError, RuntimeError):
            self.close("connection lost while sending")
        return self.closed_because is None

    def deadline_due(self, now: float) -> float | None:
        """From SessionTimers: the dead-link deadline (`offline_after_s` into a read that has not
        brought a whole frame) has come; returns the new one if a frame came in since, or while
        the session is busy with one, else the session ends."""
        dead_after = self.hub.config.offline_after_s
        deadline = now + dead_after if self._read_since is None else self._read_since + dead_after
        if deadline > now:
            return deadline
        # abort, not close: nothing is owed to a dead link, and the read waiting on it must end now
        self.drop(f"nothing received for {dead_after:g} s (dead link)")
        return None

    def _take_now(self, frame: bytes) -> Any:
        """From FrameStream, as a frame arrives while the task waits with nothing queued: a
        HEARTBEAT of an adopted session is decoded here and, if it changes nothing (the usual
        one), done without waking the task. What is left goes to the task (_serve) instead."""
        if frame[3] != wardproto.HEARTBEAT or self._hello is not None or self.closed_because is not None:
            return frame
        session = self.session
        seq_before = session.rx_seq
        try:
            msg = session.decode(frame)
        except ProtocolError as exc:
            return Decoded(None, exc, session.rx_seq != seq_before)
        try:
            if self.hub.ward.quiet_heartbeat(self.device, msg["status"], msg["pending"], msg["uptime"]):
                self._read_since = self._loop.time()    # the read the task waits in starts again
                return None
        except Exception:       # a bug in one session must not reach the transport's reading
            log.exception("heartbeat of %s failed", self.device)
            self.drop("internal error")
            return None
        return Decoded(msg)

    async def _serve(self) -> None:
        hub = self.hub
        device = self.device
        assert device is not None
        loop = self._loop
        while self.closed_because is None:
            # no timeout here: SessionTimers ends a read that brings nothing for offline_after_s
            self._read_since = loop.time()
            try:
                item = await self.stream.next()
            except ProtocolError as exc:
                await self._reject(device, exc.message)
                return
            self._read_since = None
            if isinstance(item, Decoded):
                msg, error, moved = item.msg, item.error, item.moved
            else:
                seq_before = self.session.rx_seq
                try:
                    msg, error, moved = self.session.decode(item), None, False
                except ProtocolError as exc:
                    msg, error, moved = None, exc, self.session.rx_seq != seq_before
            if error is not None:
                # wardproto moves the sequence on only for an authentic frame in order whose body
                # it then refused: that session can go on, any other failure cannot
                if error.code == wardproto.E_MALFORMED and moved:
                    # authentic but its content is wrong: say so and carry on
                    if self._hello is not None:
                        await self._adopt(device)
                    flood_log.warning(("frame", device), "terminal %s: rejected a frame: %s", device, error.message)
                    await hub.apply(hub.ward.protocol_problem(device, self.address, error.message, closed=False))
                    self.send(wardproto.ERROR, {"code": error.code, "detail": fit_text(error.message)})
                    continue
                await self._reject(device, error.message)
                return
            assert msg is not None
            if self.beat_every > 1 and msg["type"] != wardproto.HEARTBEAT:
                # answered at once, before the CALL_ACK that waits for the commit: a terminal
                # following our longer period counts a frame unanswered for 3 x hb_ms a dead link
                self._heartbeat()
            if self._hello is not None:
                await self._adopt(device)
            await hub.apply(hub.ward.frame_received(device))
            await self._dispatch(device, msg)

    async def _dispatch(self, device: str, msg: dict[str, Any]) -> None:
        hub = self.hub
        ward = hub.ward
        mtype = msg["type"]
        if mtype == wardproto.HEARTBEAT:
            await hub.apply(ward.heartbeat(device, msg["status"], msg["pending"], msg["uptime"]))
        elif mtype == wardproto.CALL:
            try:
                await hub.terminal_call(device, msg["call"], msg["kind"], msg["age_ms"], self.hwid)
            except StorageError:
                return      # not stored (logged, alarmed): no CALL_ACK, the terminal keeps it and resends
            if ward.take_refused_call(device, msg["call"], self.hwid):
                # over the cap of open calls (alarmed): not acknowledged, so the terminal keeps
                # it and sends it again — delayed, never lost
                flood_log.warning(("busy", device), "terminal %s: call %d refused: too many open calls of its kind",
                                  device, msg["call"])
                self.send(wardproto.ERROR, {"code": wardproto.E_BUSY, "detail": "too many open calls of this kind"})
                return
            # only now, with the call committed, may the terminal drop it from its outbox
            self.send(wardproto.CALL_ACK, {"call": msg["call"], "of": wardproto.CALL})
        elif mtype == wardproto.CANCEL:
            try:
                await hub.terminal_cancel(device, msg["call"], msg["reason"], msg["age_ms"], self.hwid)
            except StorageError:
                return      # as for a CALL: the terminal resends the CANCEL
            self.send(wardproto.CALL_ACK, {"call": msg["call"], "of": wardproto.CANCEL})
        elif mtype == wardproto.PRESENCE:
            await hub.apply(ward.presence(device, bool(msg["on"]), msg["staff"]))
        elif mtype == wardproto.FAULT:
            await hub.apply(ward.fault(device, msg["code"], bool(msg["active"]), msg["detail"]))
        elif mtype == wardproto.RESULT:
            if hub.take_result(device, msg):
                return          # awaited by an update in progress (ota/transfer.py): not recorded one by one
            await hub.apply(ward.command_result(device, msg["cmd_id"], bool(msg["ok"]), msg["detail"]))
        elif mtype == wardproto.ERROR:
            flood_log.warning(("error", device), "terminal %s reports error %d: %s", device, msg["code"], msg["detail"])
            await hub.apply(ward.protocol_problem(device, self.address, f"terminal reports error {msg['code']}: {msg['detail']}", closed=False))
        else:
            name = wardproto.TYPE_NAMES.get(mtype, str(mtype))
            await hub.apply(ward.protocol_problem(device, self.address, f"unexpected {name} in a session", closed=False))
            self.send(wardproto.ERROR, {"code": wardproto.E_UNSUPPORTED, "detail": f"{name} is not expected here"})


def tls_failure(exc: BaseException) -> str:
    """A failed TLS handshake in words an operator can act on."""
    reason = getattr(exc, "reason", None) or ""
    if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNSUPPORTED_PROTOCOL", "PACKET_LENGTH_TOO_LONG",
                  "RECORD_LAYER_FAILURE"):
        return "the peer does not speak TLS (a terminal set to plain TCP, or not a terminal)"
    if reason.startswith("TLSV1_ALERT_") or reason.startswith("SSLV3_ALERT_"):
        alert = reason.split("ALERT_", 1)[1].lower().replace("_", " ")
        return f"the peer refused the host's certificate (TLS alert: {alert})"
    if isinstance(exc, asyncio.TimeoutError) or "taking longer" in str(exc):
        return "no TLS handshake in time"
    if isinstance(exc, (ConnectionError, EOFError)) or not reason:
        return f"connection closed during the TLS handshake ({type(exc).__name__})"
    return reason.lower().replace("_", " ")


class PendingConnections:
    """Connections that have not sent an authentic frame yet, by source address, oldest first.
    Past the cap of an address its oldest goes; past the total cap the oldest of the address
    holding the most goes — so a flood from some addresses drops its own connections first."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self._sessions: BySource[TerminalSession] = BySource()
        self.dropped = 0

    @property
    def count(self) -> int:
        return self._sessions.count

    def add(self, session: TerminalSession) -> None:
        mine = self._sessions.add(session.source, session)
        if len(mine) > self.per_address:
            self._drop(mine, f"more than {self.per_address} connections from {session.source} before a handshake")
        elif self.count > self.total:
            busiest = max(self._sessions.groups(), key=len)
            self._drop(busiest, f"more than {self.total} connections before a handshake")

    def _drop(self, sessions: OrderedDict[TerminalSession, None], why: str) -> None:
        oldest = next(iter(sessions))
        self.remove(oldest)
        self.dropped += 1
        flood_log.warning(("pending", why.split(" from ")[0]), "%s: dropped the oldest (from %s; %d dropped so far)",
                          why, oldest.address, self.dropped)
        oldest.drop(why)

    def remove(self, session: TerminalSession) -> None:
        self._sessions.remove(session.source, session)


class TerminalServer:
    def __init__(self, hub: WardHub, tls: ssl.SSLContext | None = None) -> None:
        self.hub = hub
        self.tls = tls                  # None: plain TCP ([tls] terminals = "plain", alarmed)
        self.server: asyncio.Server | None = None
        self.sessions: set[TerminalSession] = set()
        self._tasks: set[asyncio.Task] = set()
        self.pending = PendingConnections(*pending_limits(hub.config.network))
        self.handshake_workers = tls_layer.handshake_workers() if tls is not None else None

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        if loop.get_exception_handler() is None:
            install_loop_error_handler(loop)
        self.server = await loop.create_server(lambda: FrameStream(self._connected), host, port,
                                               backlog=accept_batch())
        # debug: a start that fails on a later port says only that (serve's own line names the limit)
        log.debug("terminal connections before a handshake: at most %d, %d per address (open files limit %d)",
                 self.pending.total, self.pending.per_address, descriptor_limit())
        for sock in self.server.sockets:
            with sock.dup() as listening:       # the same socket: a deep queue in the kernel
                listening.listen(LISTEN_BACKLOG)
        return self.server.sockets[0].getsockname()[1]

    def _connected(self, stream: FrameStream, transport: asyncio.BaseTransport) -> None:
        """A connection accepted (FrameStream.connection_made): counted, and its session's task."""
        if self.tls is not None:
            transport.pause_reading()       # type: ignore[attr-defined]  # not a byte before start_tls
        session = TerminalSession(self.hub, stream, self.pending)
        self.pending.add(session)
        self.sessions.add(session)
        task = asyncio.get_running_loop().create_task(self._serve(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, session: TerminalSession) -> None:
        try:
            if self.tls is None or await session.start_tls(self.tls, self.handshake_workers):
                await session.run()
        finally:
            session.close(session.closed_because or "session ended")
            self.sessions.discard(session)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for session in list(self.sessions):
            session.close("server stopping")
        if self._tasks:
            _, left = await asyncio.wait(list(self._tasks), timeout=STOP_GRACE_S)
            if left:
                # a close waits for what is still to be written: a terminal that does not read it
                # is cut off, so that its session still ends (and is recorded) before the record closes
                for session in list(self.sessions):
                    session.drop("server stopping")
                await asyncio.wait(left, timeout=STOP_GRACE_S)
        if self.server is not None:
            try:
                await asyncio.wait_for(self.server.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass
        if self.handshake_workers is not None:
            self.handshake_workers.shutdown(wait=False, cancel_futures=True)
