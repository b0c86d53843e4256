"""The hub joins the ward state machine to the world: it stores every batch of effects, and only
after the commit sends frames to terminals and publishes changes to the consoles.

When the record cannot be written (disk full, I/O error) or does not answer within RECORD_PATIENCE_S
(a dying disk, NFS), the change is shown all the same: the live ward goes on, a call goes on
every console at once (marked not recorded) and the `database` alarm sounds. What could not be
written is held by the writer (storage.py) and goes with the next write that succeeds, or with a
retry from the timers. What a sender is acknowledged for only once stored is not acknowledged
until then: a terminal's CALL or CANCEL gets no CALL_ACK (the terminal resends it every 3 s), a
console's acknowledge is taken back and answered 503 (a silence is kept: it hides nothing). The timers never wait for the
record longer than that patience, so supervision and escalation go on.

Terminal sessions (terminal_server.py), the web layer (web/) and the timers all go through it;
the consoles hear about changes through its ConsoleBus (bus.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol

from .bus import ConsoleBus, Event, Subscriber, subscriber_queue
from .clock import Clock
from .config import WardConfig
from .looplag import LoopProbe
from .protocol import wardproto
from .ratelog import RateLimitedLog
from .storage import WRITTEN, AsyncWriter, Batch, StorageError
from .ward import CLEARED, CMD_NOTIFY, Call, Effects, Ward, WardError
from .ward.assignments import UNSET
from .ward.state import RECORD_ALARM

log = logging.getLogger("wardcall.hub")

RECORD_PATIENCE_S = 2.0     # a write not answered by then: the record "does not answer" (alarm, shown anyway)
RECORD_RETRY_S = 1.0        # what is held is tried again this often while nothing else writes
STATE_CHUNK = 500           # terminals (or rooms) of a console's snapshot built per turn of the loop
LAST_SEEN_WRITE_S = 10.0    # online terminals' last_seen written to the record …
LAST_SEEN_SLICE = 500       # … this many a transaction
FILE_CHECK_S = 1.0          # the record's files compared with the open record
CHECKPOINT_S = 30.0         # WAL checkpoint: the database file holds what the WAL does
PRUNE_S = 60.0              # lines beyond their budget deleted (storage.prune_step)
PRUNE_STEPS_MAX = 200       # steps per run (200 × storage.PRUNE_CHUNK rows); the rest the next minute
FILES_ALARM = "database_files"
DISPLACED_WINDOW_S = 60.0   # a board's live session replaced this often within the window ...
DISPLACED_ALARM = 4         # ... means two boards with one identity (a cloned board or key)


class TerminalLink(Protocol):
    """What the hub needs of a live terminal session."""

    address: str

    def send(self, mtype: int, fields: dict[str, Any]) -> None: ...

    def close(self, reason: str) -> None: ...


class EffectsObserver(Protocol):
    """Told every published change (integrations/service.py), synchronously: it must not wait."""

    def observe(self, fx: Effects) -> None: ...

    def state(self) -> dict[str, Any]: ...


class WardHub:
    def __init__(self, config: WardConfig, keys: dict[str, bytes], writer: AsyncWriter, clock: Clock,
                 patience_s: float = RECORD_PATIENCE_S) -> None:
        self.config = config
        self.keys = keys
        self.writer = writer
        writer.listener = self
        self.clock = clock
        self.patience_s = patience_s
        self.ward = Ward(config, clock)
        self.links: dict[str, TerminalLink] = {}              # device -> its newest session
        self.boards: dict[str, dict[str, TerminalLink]] = {}  # device -> hwid -> session, every live board
        self._displaced: dict[str, list[float]] = {}          # device -> when a live session was replaced
        self.bus = ConsoleBus(clock, queue=subscriber_queue(len(config.terminals)))
        self.loop_probe: LoopProbe | None = None             # the benchmarks' loop lag probe (looplag.py)
        self._cmd_ids = itertools.count(1)
        # cmd_id -> (device, future of (ok, detail)): RESULTs awaited in code (ota/transfer.py), not recorded
        self.result_waiters: dict[int, tuple[str, asyncio.Future]] = {}
        # (device, hwid, call id) -> [lock, users]: one CALL/CANCEL of a call at a time (a resend
        # on a new session waits until the first is stored or taken back)
        self._call_locks: dict[tuple[str, str, int], list[Any]] = {}
        # calls cleared on the board whose clearing is not in the record yet (its write did not
        # answer and could not be taken back): a resent CANCEL is acknowledged once it is
        self._unrecorded_clears: dict[tuple[str, str, int], Call] = {}
        self._background: set[asyncio.Future] = set()
        self._hung_job: float | None = None             # the writer's job a wait gave up on
        self._upkeep_origin = clock.mono()
        self._upkeep_due: dict[str, float] = {}
        self._upkeep_tasks: dict[str, asyncio.Task] = {}
        self._last_seen_written: dict[str, float | None] = {}
        self._ratelog = RateLimitedLog(log)
        self._session_users: Callable[[], set[str]] = set     # who has a live console session (web/)
        self.observers: list[EffectsObserver] = []            # hospital integrations (integrations/)

    # ----- effects -----

    async def apply(self, fx: Effects) -> bool:
        """Store, then tell terminals, then tell consoles; True if it is stored.

        If it cannot be stored in time (the write failed, or the record did not answer within
        the patience) it is delivered all the same and held for the next write — except an input
        with `undo` (a console's acknowledge, a terminal's CANCEL) whose write can still
        be taken back: that is taken back, nothing of it is sent or published, and StorageError
        tells the caller not to acknowledge it."""
        if not fx:
            return True
        batch = await self._store(fx)
        return batch.state == WRITTEN

    async def _store(self, fx: Effects) -> Batch:
        if fx.undo and self._stalled():
            # nothing that is answered only once stored is queued behind a write that hangs
            fx.revert()
            raise StorageError(f"{self._not_answering_text()}: not done, try again")
        batch = self.writer.submit(fx)
        problem = await self._outcome(batch)
        if problem is None:
            self._deliver(fx)
            return batch
        if fx.undo and self.writer.withdraw(batch):
            fx.revert()
            self._log_not_stored(fx, problem, "taken back: not acknowledged, so it is sent again")
            raise StorageError(problem)
        # held for the next write (or in a write that has not answered, which cannot be taken
        # back): the live ward has moved on, so it is shown
        self._log_not_stored(fx, problem, "shown; written when the record can be")
        self._deliver(fx)
        return batch

    async def _outcome(self, batch: Batch) -> str | None:
        """None once the batch is stored; else what stands in the way (within the patience)."""
        if not batch.future.done() and not self._stalled():
            await self.writer.wait(batch, self.patience_s)
        if batch.future.done():
            exc = batch.future.exception()
            return None if exc is None else self._unwritable_text(str(exc) or type(exc).__name__)
        self._not_answering()
        return self._not_answering_text()

    def _record_problem(self) -> str:
        alarm = self.ward.alarms.get(RECORD_ALARM)
        return alarm.text if alarm is not None else "the record is being written"

    def _stalled(self) -> bool:
        """The record does not answer: its current job has run past the patience, or is the one a
        wait already gave up on."""
        job = self.writer.current_job()
        return job is not None and (job == self._hung_job or self.writer.busy_for() > self.patience_s)

    @staticmethod
    def _unwritable_text(problem: str) -> str:
        return f"the record cannot be written: {problem}"

    def _not_answering_text(self) -> str:
        waited = self.writer.busy_for()
        shown = self.patience_s if waited < 10 else waited // 10 * 10
        return f"the record has not answered for {shown:g} s (a write waits for the disk)"

    def _log_not_stored(self, fx: Effects, problem: str, what: str) -> None:
        kinds = Counter(r.kind for r in fx.records)
        self._ratelog.log(logging.ERROR, ("not stored", what), "%s; not stored: %s (%s)", problem,
                          ", ".join(f"{kind} x{n}" if n > 1 else kind for kind, n in kinds.items()) or "nothing", what)

    # ----- what the writer tells (storage.WriterListener) -----

    def record_written(self, calls: list[tuple[Call, str]]) -> None:
        """A transaction is in the record: calls in it are recorded now (the consoles are told),
        and if nothing is held any more the alarm clears."""
        shown: dict[int, Call] = {}
        for call, state in calls:
            if not call.recorded:
                call.recorded = True
                if self.ward.calls.get(call.key) is call:
                    shown[call.id] = call
            if state == CLEARED and self._unrecorded_clears.get(call.key) is call:
                del self._unrecorded_clears[call.key]
        if shown:
            self._publish(Effects(calls=shown))
        if RECORD_ALARM in self.ward.alarms and not self.writer.held and not self._stalled():
            fx = self.ward.record_writable()
            if self.writer.dropped:
                fx.merge(self.ward.note("records_dropped", dropped=dict(self.writer.dropped),
                                        why="held while the record could not be written"))
                self.writer.dropped.clear()
            log.warning("the record is written again")
            self.writer.submit(fx)
            self._deliver(fx)

    def record_failed(self, problem: str) -> None:
        self._record_trouble(self._unwritable_text(problem))

    def record_files_changed(self, reports: list[str]) -> None:
        for text in reports:
            standing = self.ward.alarms.get(FILES_ALARM)
            if standing is not None and standing.text == text:
                continue        # told already (a write-back that keeps failing)
            fx = self.ward.database_alarm(text, FILES_ALARM)
            self.writer.submit(fx)
            self._deliver(fx)

    def _not_answering(self) -> None:
        self._hung_job = self.writer.current_job()
        self._record_trouble(self._not_answering_text())

    def _record_trouble(self, text: str) -> None:
        """Raise (or retell) the record alarm: straight to the consoles, it needs no disk; its own
        line goes to the record with the next write."""
        fx = self.ward.record_unwritable(text)
        if not fx:
            return
        if fx.records:
            log.error("%s", text)
            self.writer.hold(Effects(records=fx.records))
        self._deliver(fx)

    def _deliver(self, fx: Effects) -> None:
        """Send the frames to the terminals, then publish the changes to the consoles."""
        for message in fx.messages:
            live = self.boards.get(message.device, {})
            # a call's state goes to the board that placed it; anything else to every board
            links = [live[message.hwid]] if message.hwid in live else [] if message.hwid is not None else list(live.values())
            for link in links:   # none: the terminal resynchronises from the open calls when it returns
                fields = message.fields
                if message.mtype == wardproto.COMMAND:
                    fields = {"cmd_id": next(self._cmd_ids), **fields}
                    if fields["cmd"] == CMD_NOTIFY:
                        # its RESULT ok=0 (older firmware) gets the chime instead (ward/routing.py)
                        self.ward.notify_sent(fields["cmd_id"], message.device, fields["arg"])
                try:
                    link.send(message.mtype, fields)
                except Exception as exc:   # a broken link must not stop the others hearing
                    log.warning("sending %s to %s failed: %s", wardproto.TYPE_NAMES.get(message.mtype), message.device, exc)
        self._publish(fx)

    def _publish(self, fx: Effects) -> None:
        ward = self.ward
        for observer in self.observers:
            try:
                observer.observe(fx)
            except Exception as exc:   # an integration's fault never keeps a change from the consoles
                self._ratelog.log(logging.ERROR, ("observer", type(observer).__name__), "%s failed: %r",
                                  type(observer).__name__, exc)
        changes: list[tuple[str, dict[str, Any]]] = []
        # terminals and rooms first: the calls that follow refer to them
        for terminal in fx.terminals.values():
            changes.append(("terminal", {"terminal": ward.terminal_view(terminal)}))
        for room in sorted(fx.rooms):
            changes.append(("room", {"room": ward.room_view(room)}))
        for shift in sorted(fx.assignments):
            changes.append(("assignment", {"assignment": ward.assignment_view(ward.shift_named(shift))}))
        for user in sorted(fx.staff):
            if user in ward.config.users:
                changes.append(("staff", {"staff": ward.staff_view(user)}))
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
        return {"seq": self.bus.seq, **self.ward.snapshot(), **self._observers_state()}

    def _observers_state(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for observer in self.observers:
            extra.update(observer.state())
        return extra

    async def state_in_turns(self) -> dict[str, Any]:
        """state(), its terminals and rooms built STATE_CHUNK at a time, one chunk per turn of the
        loop: at 5,000 terminals in one go it held the loop for 20-40 ms. Still a true state for
        a console subscribed before it began: whatever changes meanwhile is published with a
        later number than `seq`, as a whole view of the terminal, room or call, and the console
        applies it after the snapshot — whether the snapshot already had the change or not."""
        ward = self.ward
        state = {"seq": self.bus.seq, **ward.snapshot(large=False), **self._observers_state()}
        terminals: list[dict[str, Any]] = []
        for start in range(0, len(ward.terminal_order), STATE_CHUNK):
            terminals += [ward.terminal_view(t) for t in ward.terminal_order[start:start + STATE_CHUNK]]
            await asyncio.sleep(0)
        rooms: list[dict[str, Any]] = []
        room_ids = list(ward.config.rooms)
        for start in range(0, len(room_ids), STATE_CHUNK):
            rooms += [ward.room_view(r) for r in room_ids[start:start + STATE_CHUNK]]
            await asyncio.sleep(0)
        state["terminals"], state["rooms"] = terminals, rooms
        return state

    async def subscribe(self, user: str, session: str = "") -> tuple[Subscriber, dict[str, Any]]:
        sub, snapshot, _ = await self.subscribe_from(user, session, None)
        assert snapshot is not None
        return sub, snapshot

    async def subscribe_from(self, user: str, session: str, last_event_id: str | None
                             ) -> tuple[Subscriber, dict[str, Any] | None, list[Event] | None]:
        """A console's event stream: (subscriber, snapshot, None), or — when it names the last
        change it has and every change since is still kept — (subscriber, None, the changes
        it missed). Taken with the subscription in one step: nothing is missed. A change made while
        the snapshot is built (in turns) may be in it and also follow it: a whole view, the same twice."""
        sub = self.bus.subscriber(user, session)
        missed = self.bus.since(last_event_id) if last_event_id else None
        self.bus.add(sub)
        snapshot = None
        try:
            if missed is None:
                snapshot = await self.state_in_turns()      # subscribed first: nothing after it is missed
            await self.apply(self.ward.set_consoles(len(self.bus)))
            await self.record("console_connected", user=user, consoles=len(self.bus))
        except BaseException:
            # gone before it was connected (cancelled): not a console — the count must not lie,
            # or the "no console" alarm would stay quiet
            task = asyncio.ensure_future(self.unsubscribe(sub))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            raise
        return sub, snapshot, missed

    async def unsubscribe(self, sub: Subscriber) -> None:
        self.bus.remove(sub)
        await self.apply(self.ward.set_consoles(len(self.bus)))
        await self.record("console_disconnected", user=sub.user, consoles=len(self.bus))

    async def acknowledge(self, call_id: int, user: str) -> dict[str, Any]:
        fx, call = self.ward.acknowledge(call_id, user)
        await self._answer_once_stored(fx)
        return self.ward.call_view(call)

    async def accept(self, call_id: int, user: str) -> dict[str, Any]:
        fx, call = self.ward.accept(call_id, user)
        await self._answer_once_stored(fx)
        return self.ward.call_view(call)

    async def decline(self, call_id: int, user: str, reason: str) -> dict[str, Any]:
        fx, call = self.ward.decline(call_id, user, reason)
        await self._answer_once_stored(fx)
        return self.ward.call_view(call)

    def assignment(self, shift: str | None) -> dict[str, Any]:
        return self.ward.assignment_view(self.ward.shift_named(shift))

    async def assign(self, user: str, shift: str | None, charge: Any = UNSET,
                     changes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        fx, instance = self.ward.assign(user, shift, charge, changes)
        await self._answer_once_stored(fx)
        return self.ward.assignment_view(instance)

    async def copy_assignment(self, user: str, source: str | None, target: str | None) -> dict[str, Any]:
        fx, instance = self.ward.copy_assignment(user, source, target)
        await self._answer_once_stored(fx)
        return self.ward.assignment_view(instance)

    async def pocket_heartbeat(self, user: str) -> None:
        await self.apply(self.ward.pocket_heartbeat(user))

    def use_sessions(self, live_users: Callable[[], set[str]]) -> None:
        """Where the hub learns who has a live console session (web/auth.py's sessions)."""
        self._session_users = live_users

    async def sessions_changed(self) -> None:
        """A login, a logout, sessions ended: routing knows at once (the timers catch expiries)."""
        await self.apply(self.ward.sessions_live(self._session_users()))

    async def silence(self, seconds: float, user: str) -> dict[str, Any]:
        await self._answer_once_stored(self.ward.silence(seconds, user))
        return self.ward.sound_view()

    async def _answer_once_stored(self, fx: Effects) -> None:
        """A console action is answered once it is stored. Its write failed, or is queued behind
        one that does not answer: taken back, StorageError (503). Its write is the one that does
        not answer: it cannot be taken back, so it stands (shown), and the answer waits for the
        record."""
        changes = bool(fx.undo)
        batch = await self._store(fx)
        if not changes or batch.state == WRITTEN:
            return
        try:
            await asyncio.shield(batch.future)
        except StorageError as exc:
            raise StorageError(f"{self._unwritable_text(str(exc))}; the change stands and is recorded "
                               "when the record can be written") from None

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

    def attach(self, device: str, link: TerminalLink, hwid: str = "") -> Effects:
        """A new authenticated session of one board of the device. It replaces that board's older
        session. Another board of the same device id stays connected — the calls of both are
        delivered — and an alarm says two boards claim it; so does a board whose live session
        keeps being replaced (two boards with one hardware id too: a cloned board or key)."""
        fx = Effects()
        live = self.boards.setdefault(device, {})
        old = live.get(hwid)
        if old is not None and old is not link:
            old.close("replaced by a new session of the same board")
            now = self.clock.mono()
            recent = [t for t in self._displaced.get(device, []) if now - t < DISPLACED_WINDOW_S] + [now]
            self._displaced[device] = recent
            if len(recent) >= DISPLACED_ALARM:
                fx.merge(self.ward.boards_claim(
                    device, [(hwid, old.address), (hwid, link.address)],
                    f"its sessions replaced each other {len(recent)} times within {DISPLACED_WINDOW_S:g} s "
                    "(two boards with one identity: a cloned board or key?)", standing=False))
        live[hwid] = link
        self.links[device] = link
        if len(live) > 1:
            fx.merge(self.ward.boards_claim(device, [(h, s.address) for h, s in sorted(live.items())],
                                            "both are connected and the calls of both are delivered", standing=True))
        return fx

    async def detach(self, device: str, link: TerminalLink, hwid: str = "") -> bool:
        """Forget a session that ended; True if the device has no session left (False if a newer
        session of the board replaced it, or another board of the device is still connected)."""
        live = self.boards.get(device, {})
        if live.get(hwid) is not link:
            return False
        del live[hwid]
        if self.links.get(device) is link:
            if live:
                self.links[device] = next(iter(live.values()))
            else:
                del self.links[device]
        if len(live) == 1:
            await self.apply(self.ward.boards_claim_ended(device))
        if not live:
            self.boards.pop(device, None)
            return True
        return False

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, key: tuple[str, str, int]) -> AsyncIterator[None]:
        """A CALL or CANCEL of one call is handled after the one before it is stored or taken
        back (two sessions of a terminal, the old one still waiting for the disk)."""
        entry = self._call_locks.setdefault(key, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._call_locks[key]

    async def _stored_call(self, device: str, call_id: int, hwid: str) -> dict[str, Any] | None:
        """A call not open on the board: its row in the record, if any (StorageError if it cannot
        be read in time). A row still open there is put back on the board first, so the call is
        neither lost nor left open for ever. While the writer hangs, the row is read beside it:
        a call is not kept off the board by a write that waits for the disk."""
        if self.writer.holds_no_call(device, call_id, hwid):
            return None         # a new call: nothing to read (and no wait behind the writer)
        stored = await self._look_up(device, call_id, hwid)
        if stored is not None and stored["state"] != CLEARED and not self.ward.is_open(device, call_id, hwid):
            log.warning("call %s/%d is open in the record but was not on the board: put back", device, call_id)
            await self.apply(self.ward.reinstate_call(stored))
        return stored

    async def _look_up(self, device: str, call_id: int, hwid: str) -> dict[str, Any] | None:
        if not self._stalled():
            try:
                return await asyncio.wait_for(self.writer.find_call(device, call_id, hwid), self.patience_s)
            except asyncio.TimeoutError:
                self._not_answering()
        try:
            return await asyncio.wait_for(self.writer.find_call_beside(device, call_id, hwid), self.patience_s)
        except asyncio.TimeoutError:
            raise StorageError(f"{self._not_answering_text()}; call {device}/{call_id} could not be looked up") from None

    async def terminal_call(self, device: str, call_id: int, kind: int, age_ms: int, hwid: str = "") -> None:
        """A CALL from the board `hwid` of the device. Raises StorageError if the call is not in
        the record (yet): then it must not be acknowledged. It is on the board all the same,
        marked not recorded."""
        ward = self.ward
        key = (device, hwid, call_id)
        async with self._one_at_a_time(key):
            if not ward.is_open(device, call_id, hwid):
                cleared = self._unrecorded_clears.get(key)
                if cleared is not None:
                    # its clearing waits for the record; the call itself may be there already
                    await self.apply(ward.repeated_cleared_call(device, call_id, "CALL", hwid))
                    if not cleared.recorded:
                        raise StorageError(f"call {device}/{call_id} is not recorded yet: {self._record_problem()}")
                    return
                stored = await self._stored_call(device, call_id, hwid)
                if stored is not None and not ward.is_open(device, call_id, hwid):
                    # a retransmission of a call that is already cleared: acknowledged again, no change
                    await self.apply(ward.repeated_cleared_call(device, call_id, "CALL", hwid))
                    return
            fx, call = ward.place_call(device, call_id, kind, age_ms, hwid)
            await self.apply(fx)
            if call is not None and not call.recorded:
                raise StorageError(f"call {device}/{call_id} is shown but not recorded yet: {self._record_problem()}")

    async def terminal_cancel(self, device: str, call_id: int, reason: int, age_ms: int, hwid: str = "") -> None:
        """Raises StorageError if the cancel is not in the record (yet): then it must not be
        acknowledged. A cancel whose write failed is taken back (the call stays on the board);
        one whose write does not answer stands, and is acknowledged once it is written."""
        ward = self.ward
        key = (device, hwid, call_id)
        async with self._one_at_a_time(key):
            if not ward.is_open(device, call_id, hwid):
                if key in self._unrecorded_clears:
                    await self.apply(ward.repeated_cleared_call(device, call_id, "CANCEL", hwid))
                    if key in self._unrecorded_clears:
                        raise StorageError(f"the clearing of call {device}/{call_id} is not recorded yet: {self._record_problem()}")
                    return
                stored = await self._stored_call(device, call_id, hwid)
                if stored is not None and stored["state"] == CLEARED:
                    await self.apply(ward.repeated_cleared_call(device, call_id, "CANCEL", hwid))
                    return
            call = ward.calls.get(key)
            if not await self.apply(ward.cancel_call(device, call_id, reason, age_ms, hwid)) and call is not None:
                self._unrecorded_clears[key] = call
                raise StorageError(f"the clearing of call {device}/{call_id} is not recorded yet: {self._record_problem()}")

    # ----- timers -----

    async def tick(self) -> None:
        # sessions run out by themselves: who is logged in is looked at with every tick
        fx = self.ward.sessions_live(self._session_users())
        await self.apply(fx.merge(self.ward.tick()))
        self._upkeep()

    def _upkeep(self) -> None:
        """The record's upkeep, from the timers: retry what is held, write last_seen, watch the
        files, checkpoint, prune. None of it waits; nothing is queued behind a write that hangs."""
        now = self.clock.mono()
        if self._stalled():
            self._not_answering()
            return
        if self.writer.held and self._due("retry", now, RECORD_RETRY_S):
            self.writer.flush()
        if self._due("last_seen", now, LAST_SEEN_WRITE_S):
            self._start_upkeep("last_seen", self._write_last_seen)
        storage = self.writer.storage
        if self._due("files", now, FILE_CHECK_S):
            self._start_upkeep("files", self.writer.check_files)
        if self._due("checkpoint", now, CHECKPOINT_S):
            self._start_upkeep("checkpoint", lambda: self.writer.run(storage.checkpoint))
        if self._due("prune", now, PRUNE_S):
            self._start_upkeep("prune", self._prune)

    async def upkeep_done(self) -> None:
        """Wait for the upkeep jobs under way (tests; a clean stop)."""
        running = [t for t in self._upkeep_tasks.values() if not t.done()]
        if running:
            await asyncio.wait(running)

    def _due(self, name: str, now: float, period: float) -> bool:
        due = self._upkeep_due.setdefault(name, self._upkeep_origin + period)
        if now < due:
            return False
        self._upkeep_due[name] = now + period
        return True

    def _start_upkeep(self, name: str, job: Callable[[], Awaitable[Any]]) -> None:
        running = self._upkeep_tasks.get(name)
        if running is not None and not running.done():
            return
        task = asyncio.ensure_future(job())
        self._upkeep_tasks[name] = task
        task.add_done_callback(lambda t, name=name: self._upkeep_done(name, t))

    def _upkeep_done(self, name: str, task: asyncio.Future) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._ratelog.warning(("upkeep", name), "record upkeep %s failed: %s", name, task.exception())

    async def _write_last_seen(self) -> None:
        """Online terminals' last_seen (a heartbeat is not recorded one by one), that column only,
        LAST_SEEN_SLICE terminals a transaction: a call's commit waits behind one slice at most,
        and the loop builds one slice per turn (5,000 whole rows in one went to 8 ms of the loop
        and held calls back behind them)."""
        terminals = list(self.ward.terminals.values())
        for start in range(0, len(terminals), LAST_SEEN_SLICE):
            changed = [(t.last_seen, t.device) for t in terminals[start:start + LAST_SEEN_SLICE]
                       if t.online and t.last_seen is not None and self._last_seen_written.get(t.device) != t.last_seen]
            if changed:
                await self.writer.run(self.writer.storage.write_last_seen, changed)
                self._last_seen_written.update((device, seen) for seen, device in changed)

    async def _prune(self) -> None:
        """Prune step by step: what the ward writes meanwhile goes between the steps."""
        deleted: Counter = Counter()
        for _ in range(PRUNE_STEPS_MAX):
            step = await self.writer.run(self.writer.storage.prune_step, self.clock.wall())
            if not step:
                break
            deleted.update(step)
        if deleted:
            log.info("record: pruned %s", ", ".join(f"{kind} x{n}" for kind, n in sorted(deleted.items())))
            await self.record("record_pruned", deleted=dict(deleted))
