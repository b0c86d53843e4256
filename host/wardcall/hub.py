"""The hub joins the ward state machine to the world: it stores every batch of effects, and only
after the commit sends frames to terminals and publishes changes to the consoles.

Terminal sessions (terminal_server.py), the API (api.py) and the timers all go through it.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, Protocol

from .clock import Clock
from .config import WardConfig
from .protocol import wardproto
from .storage import AsyncWriter
from .ward import Effects, Ward

log = logging.getLogger("wardcall.hub")

SUBSCRIBER_QUEUE = 1000     # changes a slow console may fall behind before it is dropped


class TerminalLink(Protocol):
    """What the hub needs of a live terminal session."""

    def send(self, mtype: int, fields: dict[str, Any]) -> None: ...

    def close(self, reason: str) -> None: ...


class Subscriber:
    """One console's event stream (SSE): a queue of (event name, payload)."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.dropped = False


class WardHub:
    def __init__(self, config: WardConfig, keys: dict[str, bytes], writer: AsyncWriter, clock: Clock) -> None:
        self.config = config
        self.keys = keys
        self.writer = writer
        self.clock = clock
        self.ward = Ward(config, clock)
        self.links: dict[str, TerminalLink] = {}
        self.subscribers: set[Subscriber] = set()
        self.seq = 0                                  # console change number
        self._cmd_ids = itertools.count(1)
        # cmd_id -> (device, future of (ok, detail)): RESULTs awaited in code (ota/transfer.py), not recorded
        self.result_waiters: dict[int, tuple[str, asyncio.Future]] = {}

    # ----- effects -----

    async def apply(self, fx: Effects) -> None:
        """Store, then tell terminals, then tell consoles. Raises if the store fails: the caller
        must then not acknowledge anything to the terminal."""
        if not fx:
            return
        await self.writer.commit(fx)
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
                changes.append(("log", {"kind": r.kind, "user": r.user, "wall": r.wall, **r.data}))
        for name, payload in changes:
            self.seq += 1
            payload = {"seq": self.seq, "time": self.clock.wall(), **payload}
            for sub in list(self.subscribers):
                try:
                    sub.queue.put_nowait((name, payload))
                except asyncio.QueueFull:
                    # a console that cannot keep up is cut off; it reconnects to a fresh snapshot
                    sub.dropped = True
                    self.subscribers.discard(sub)

    async def record(self, kind: str, device: str | None = None, user: str | None = None, **data: Any) -> None:
        fx = Effects()
        self.ward._record(fx, kind, device, user=user, **data)
        await self.apply(fx)

    # ----- consoles -----

    async def subscribe(self, user: str) -> tuple[Subscriber, dict[str, Any]]:
        sub = Subscriber(user)
        self.subscribers.add(sub)
        snapshot = {"seq": self.seq, **self.ward.snapshot()}
        await self.apply(self.ward.set_consoles(len(self.subscribers)))
        await self.record("console_connected", user=user, consoles=len(self.subscribers))
        return sub, snapshot

    async def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        await self.apply(self.ward.set_consoles(len(self.subscribers)))
        await self.record("console_disconnected", user=sub.user, consoles=len(self.subscribers))

    async def acknowledge(self, call_id: int, user: str) -> dict[str, Any]:
        fx, call = self.ward.acknowledge(call_id, user)
        await self.apply(fx)
        return self.ward.call_view(call)

    async def silence(self, seconds: float, user: str) -> dict[str, Any]:
        await self.apply(self.ward.silence(seconds, user))
        return self.ward.sound_view()

    async def command(self, device: str, cmd: int, arg: bytes, user: str) -> int:
        link = self.links.get(device)
        if link is None:
            from .ward import WardError
            raise WardError(409, f"terminal {device} is not connected")
        cmd_id = next(self._cmd_ids)
        await self.record("command_sent", device, user=user, cmd_id=cmd_id, cmd=cmd, arg=arg.hex())
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

    async def terminal_call(self, device: str, call_id: int, kind: int, age_ms: int) -> None:
        ward = self.ward
        if not ward.is_open(device, call_id):
            stored = await self.writer.find_call(device, call_id)
            if stored is not None:
                # a retransmission of a call that is already cleared: acknowledged again, no change
                await self.apply(ward.repeated_cleared_call(device, call_id, "CALL"))
                return
        fx, _ = ward.place_call(device, call_id, kind, age_ms)
        await self.apply(fx)

    async def terminal_cancel(self, device: str, call_id: int, reason: int, age_ms: int) -> None:
        ward = self.ward
        if not ward.is_open(device, call_id):
            stored = await self.writer.find_call(device, call_id)
            if stored is not None and stored["state"] == "cleared":
                fx = ward.repeated_cleared_call(device, call_id, "CANCEL")
                ward._call_state(fx, _StoredCall(device, call_id), wardproto.ST_CLEARED, "")
                await self.apply(fx)
                return
        await self.apply(ward.cancel_call(device, call_id, reason, age_ms))

    async def tick(self) -> None:
        await self.apply(self.ward.tick())


class _StoredCall:
    """Just enough of a call to address a CALL_STATE to it."""

    def __init__(self, device: str, call_id: int) -> None:
        self.device = device
        self.call_id = call_id


def end_streams(hub: WardHub) -> None:
    """Tell every console stream to finish (server stopping)."""
    for sub in list(hub.subscribers):
        try:
            sub.queue.put_nowait(None)
        except asyncio.QueueFull:
            sub.dropped = True
