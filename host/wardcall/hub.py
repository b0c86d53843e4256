"""The hub joins the ward state machine to the world: it stores every batch of effects, and only
after the commit sends frames to terminals and publishes changes to the consoles.

When the record cannot be written (disk full, I/O error) the real error is logged and the
`database` alarm goes straight to the consoles (it needs no disk); what a sender is acknowledged
for only once stored (a terminal's CALL or CANCEL, a console's acknowledge or silence) is taken
back out of the live ward and StorageError tells the caller not to acknowledge it. The first
write that succeeds again clears the alarm.

Terminal sessions (terminal_server.py), the web layer (web/) and the timers all go through it;
the consoles hear about changes through its ConsoleBus (bus.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from typing import Any, AsyncIterator, Protocol

from .bus import ConsoleBus, Subscriber
from .clock import Clock
from .config import WardConfig
from .protocol import wardproto
from .storage import AsyncWriter, StorageError
from .ward import CLEARED, Effects, Record, Ward, WardError
from .ward.state import RECORD_ALARM

log = logging.getLogger("wardcall.hub")


class TerminalLink(Protocol):
    """What the hub needs of a live terminal session."""

    def send(self, mtype: int, fields: dict[str, Any]) -> None: ...

    def close(self, reason: str) -> None: ...


class WardHub:
    def __init__(self, config: WardConfig, keys: dict[str, bytes], writer: AsyncWriter, clock: Clock) -> None:
        self.config = config
        self.keys = keys
        self.writer = writer
        self.clock = clock
        self.ward = Ward(config, clock)
        self.links: dict[str, TerminalLink] = {}
        self.bus = ConsoleBus(clock)
        self._cmd_ids = itertools.count(1)
        # cmd_id -> (device, future of (ok, detail)): RESULTs awaited in code (ota/transfer.py), not recorded
        self.result_waiters: dict[int, tuple[str, asyncio.Future]] = {}
        # (device, call id) -> [lock, users]: one CALL/CANCEL of a call at a time (a resend on a
        # new session waits until the first is stored or taken back)
        self._call_locks: dict[tuple[str, int], list[Any]] = {}
        self._unwritten: list[Record] = []     # the record-alarm's own lines, written when it can be
        self._recovering = False
        self._background: set[asyncio.Future] = set()

    # ----- effects -----

    async def apply(self, fx: Effects) -> None:
        """Store, then tell terminals, then tell consoles.

        If the store fails, the error is logged and the `database` alarm published. An input with
        `undo` (a terminal's CALL or CANCEL, a console's acknowledge or silence) is then taken
        back, nothing of it is sent or published, and StorageError is raised: the caller must not
        acknowledge it (the terminal resends it; the console is told). Other changes stand — the
        live ward has moved on (a call escalated, a terminal went offline) — so they are still
        sent and published; only the record misses them."""
        if not fx:
            return
        try:
            await self.writer.commit(fx)
        except Exception as exc:
            problem = str(exc) or type(exc).__name__
            withdrawn = bool(fx.undo)
            if withdrawn:
                fx.revert()
            self._not_stored(fx, problem, withdrawn)
            if withdrawn:
                raise StorageError(f"the record cannot be written: {problem}") from exc
            self._deliver(fx)
            return
        self._deliver(fx)
        if RECORD_ALARM in self.ward.alarms:
            await self._record_writable()

    def _not_stored(self, fx: Effects, problem: str, withdrawn: bool = False) -> None:
        kinds = Counter(r.kind for r in fx.records)
        log.error("the record cannot be written: %s; not stored: %s%s", problem,
                  ", ".join(f"{kind} x{n}" if n > 1 else kind for kind, n in kinds.items()) or "nothing",
                  " (taken back: not acknowledged, so it is sent again)" if withdrawn else "")
        alarm = self.ward.record_unwritable(problem)
        if alarm:
            self._unwritten += alarm.records
            self._deliver(alarm)

    async def _record_writable(self) -> None:
        """A write succeeded while the record alarm stands: write the alarm's lines, clear it."""
        if self._recovering:
            return
        self._recovering = True
        try:
            fx = self.ward.record_writable()
            held, self._unwritten = self._unwritten, []
            try:
                await self.writer.commit(Effects(records=held + fx.records))
            except Exception as exc:
                self._unwritten = held + self._unwritten
                self._not_stored(fx, str(exc) or type(exc).__name__)     # raises it again
                return
            if RECORD_ALARM in self.ward.alarms:
                fx.alarms.pop(RECORD_ALARM, None)   # failed again meanwhile: the consoles keep it
            log.warning("the record is written again")
            self._deliver(fx)
        finally:
            self._recovering = False

    def _deliver(self, fx: Effects) -> None:
        """Send the frames to the terminals, then publish the changes to the consoles."""
        for message in fx.messages:
            link = self.links.get(message.device)
            if link is None:
                continue        # the terminal resynchronises from the open calls when it returns
            fields = message.fields
            if message.mtype == wardproto.COMMAND:
                fields = {"cmd_id": next(self._cmd_ids), **fields}
            try:
                link.send(message.mtype, fields)
            except Exception as exc:   # a broken link must not stop the others hearing
                log.warning("sending %s to %s failed: %s", wardproto.TYPE_NAMES.get(message.mtype), message.device, exc)
        self._publish(fx)

    def _publish(self, fx: Effects) -> None:
        ward = self.ward
        changes: list[tuple[str, dict[str, Any]]] = []
        # terminals and rooms first: the calls that follow refer to them
        for terminal in fx.terminals.values():
            changes.append(("terminal", {"terminal": ward.terminal_view(terminal)}))
        for room in sorted(fx.rooms):
            changes.append(("room", {"room": ward.room_view(room)}))
        for alarm, active in fx.alarms.values():
            changes.append(("alarm", {"alarm": alarm.view(), "active": active}))
        calls = dict(fx.calls)
        for device in fx.terminals:
            # a call shows its terminal's status: it changes with the terminal
            calls.update({c.id: c for c in ward.open_calls_of(device)})
        for call in calls.values():
            changes.append(("call", {"call": ward.call_view(call)}))
        if fx.sound or fx.calls or fx.alarms:
            changes.append(("sound", {"sound": ward.sound_view()}))
        for r in fx.records:
            if r.kind in ("silence", "console_login", "console_logout", "command_sent"):
                changes.append(("log", {"kind": r.kind, "user": r.user, "wall": r.wall, "device": r.device, **r.data}))
        for name, payload in changes:
            self.bus.publish(name, payload)

    async def record(self, kind: str, device: str | None = None, user: str | None = None, **data: Any) -> None:
        await self.apply(self.ward.note(kind, device, user, **data))

    # ----- consoles -----

    def state(self) -> dict[str, Any]:
        """The whole state for a console, numbered like the changes that follow it."""
        return {"seq": self.bus.seq, **self.ward.snapshot()}

    async def subscribe(self, user: str, session: str = "") -> tuple[Subscriber, dict[str, Any]]:
        sub = Subscriber(user, session)
        self.bus.add(sub)
        snapshot = self.state()
        try:
            await self.apply(self.ward.set_consoles(len(self.bus)))
            await self.record("console_connected", user=user, consoles=len(self.bus))
        except BaseException:
            # gone before it was connected (cancelled): not a console — the count must not lie,
            # or the "no console" alarm would stay quiet
            task = asyncio.ensure_future(self.unsubscribe(sub))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            raise
        return sub, snapshot

    async def unsubscribe(self, sub: Subscriber) -> None:
        self.bus.remove(sub)
        await self.apply(self.ward.set_consoles(len(self.bus)))
        await self.record("console_disconnected", user=sub.user, consoles=len(self.bus))

    async def acknowledge(self, call_id: int, user: str) -> dict[str, Any]:
        fx, call = self.ward.acknowledge(call_id, user)
        await self.apply(fx)
        return self.ward.call_view(call)

    async def silence(self, seconds: float, user: str) -> dict[str, Any]:
        await self.apply(self.ward.silence(seconds, user))
        return self.ward.sound_view()

    async def command(self, device: str, cmd: int, arg: bytes, user: str, name: str = "") -> int:
        link = self.links.get(device)
        if link is None:
            raise WardError(WardError.CONFLICT, f"terminal {device} is not connected")
        cmd_id = next(self._cmd_ids)
        await self.record("command_sent", device, user=user, cmd_id=cmd_id, cmd=cmd, command=name, arg=arg.hex())
        link.send(wardproto.COMMAND, {"cmd_id": cmd_id, "cmd": cmd, "arg": arg})
        return cmd_id

    def next_cmd_id(self) -> int:
        return next(self._cmd_ids)

    def take_result(self, device: str, msg: dict[str, Any]) -> bool:
        """Hand a RESULT to the code awaiting it (True), or leave it to be recorded (False)."""
        waiter = self.result_waiters.get(msg["cmd_id"])
        if waiter is None or waiter[0] != device:
            return False
        del self.result_waiters[msg["cmd_id"]]
        if not waiter[1].done():
            waiter[1].set_result((bool(msg["ok"]), msg["detail"]))
        return True

    # ----- terminals -----

    def attach(self, device: str, link: TerminalLink) -> None:
        """A new authenticated session; a second session of the same device replaces the first."""
        old = self.links.get(device)
        self.links[device] = link
        if old is not None and old is not link:
            old.close("replaced by a new session of the same device")

    def detach(self, device: str, link: TerminalLink) -> bool:
        """Forget a session that ended; False if a newer session already replaced it."""
        if self.links.get(device) is link:
            del self.links[device]
            return True
        return False

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, device: str, call_id: int) -> AsyncIterator[None]:
        """A CALL or CANCEL of one call is handled after the one before it is stored or taken
        back (two sessions of a terminal, the old one still waiting for the disk)."""
        key = (device, call_id)
        entry = self._call_locks.setdefault(key, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._call_locks[key]

    async def _stored_call(self, device: str, call_id: int) -> dict[str, Any] | None:
        """A call not open on the board: its row in the record, if any. A row still open there is
        put back on the board first (its CALL was taken back after a failed write while another
        change of it was stored), so the call is neither lost nor left open for ever."""
        stored = await self.writer.find_call(device, call_id)
        if stored is not None and stored["state"] != CLEARED and not self.ward.is_open(device, call_id):
            log.warning("call %s/%d is open in the record but was not on the board: put back", device, call_id)
            await self.apply(self.ward.reinstate_call(stored))
        return stored

    async def terminal_call(self, device: str, call_id: int, kind: int, age_ms: int) -> None:
        """Raises StorageError if the call could not be stored: then it must not be acknowledged."""
        ward = self.ward
        async with self._one_at_a_time(device, call_id):
            if not ward.is_open(device, call_id):
                stored = await self._stored_call(device, call_id)
                if stored is not None and not ward.is_open(device, call_id):
                    # a retransmission of a call that is already cleared: acknowledged again, no change
                    await self.apply(ward.repeated_cleared_call(device, call_id, "CALL"))
                    return
            fx, _ = ward.place_call(device, call_id, kind, age_ms)
            await self.apply(fx)

    async def terminal_cancel(self, device: str, call_id: int, reason: int, age_ms: int) -> None:
        """Raises StorageError if the cancel could not be stored: then it must not be acknowledged."""
        ward = self.ward
        async with self._one_at_a_time(device, call_id):
            if not ward.is_open(device, call_id):
                stored = await self._stored_call(device, call_id)
                if stored is not None and stored["state"] == CLEARED:
                    await self.apply(ward.repeated_cleared_call(device, call_id, "CANCEL"))
                    return
            await self.apply(ward.cancel_call(device, call_id, reason, age_ms))

    async def tick(self) -> None:
        await self.apply(self.ward.tick())
