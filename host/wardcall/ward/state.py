"""WardState: the ward's live state and what every rule needs — recording, telling a terminal
where its call stands, raising and clearing alarms, finding calls and staff.

The rules (calls.py, terminals.py, consoles.py) build on it; machine.py puts them together.
"""
from __future__ import annotations

from typing import Any

from ..clock import Clock
from ..config import WardConfig
from ..protocol import KIND_NAMES, fit_text, wardproto
from .effects import Effects, Message, Record
from .model import Alarm, Call, Terminal


RECORD_ALARM = "database_write"     # alarm id (kind "database") while the record cannot be written
SOUNDING_ALARMS = frozenset({"terminal_offline", "no_console", "database"})   # alarm kinds the consoles sound for


class WardState:
    def __init__(self, config: WardConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.terminals: dict[str, Terminal] = {
            t.device: Terminal(t.device, t.room, t.bed) for t in config.terminals.values()}
        # each room's terminals: a room's presence is looked up per room, never by scanning the
        # ward (a snapshot of 5,000 terminals did that once per room)
        self.room_terminals: dict[str, list[Terminal]] = {}
        for terminal in self.terminals.values():
            self.room_terminals.setdefault(terminal.room, []).append(terminal)
        self.terminal_order = sorted(self.terminals.values(), key=lambda t: (t.room, t.bed, t.device))    # as consoles list them
        self.calls: dict[tuple[str, int], Call] = {}     # open calls only
        self.alarms: dict[str, Alarm] = {}
        # the alarms the consoles sound for, and of them those raised (again) since the last
        # silence: whether the consoles sound is known without a look at every alarm (a ward
        # coming back clears thousands of offline alarms, one sound view each)
        self.sounding: dict[str, Alarm] = {}
        self.sounding_since_silence: set[str] = set()
        self.present: set[str] = set()                   # devices with presence on
        self.next_call_id = 1
        self.consoles = 0
        self._no_console_since: float | None = None     # mono
        self.silenced_at: float | None = None           # wall
        self.silenced_until: float | None = None        # wall
        self.silenced_by: str | None = None
        self._silence_deadline: float | None = None     # mono

    # ----- effects every rule produces -----

    def _record(self, fx: Effects, kind: str, device: str | None = None, call: Call | None = None,
                user: str | None = None, **data: Any) -> None:
        if call is not None:
            data.setdefault("call_id", call.call_id)
            data.setdefault("kind", KIND_NAMES[call.kind])
            data.setdefault("room", call.room)
            data.setdefault("state", call.state)
        fx.records.append(Record(kind, self.clock.wall(), self.clock.mono(), device or (call.device if call else None),
                                 call.id if call else None, user, data))

    def note(self, kind: str, device: str | None = None, user: str | None = None, **data: Any) -> Effects:
        """A line for the record that changes nothing in the ward (server started, a console
        connected, an update's outcome …)."""
        fx = Effects()
        self._record(fx, kind, device, user=user, **data)
        return fx

    def _call_state(self, fx: Effects, call: Call, state: int, by: str) -> None:
        fx.messages.append(Message(call.device, wardproto.CALL_STATE, {"call": call.call_id, "state": state, "by": fit_text(by)},
                                   hwid=call.hwid))

    # ----- alarms -----

    def _raise_alarm(self, fx: Effects, alarm: Alarm) -> Alarm:
        existing = self.alarms.get(alarm.id)
        if existing is not None:
            existing.count += 1
            existing.last = alarm.last
            existing.expires = alarm.expires
            existing.text = alarm.text
            existing.data.update(alarm.data)
            fx.alarms[existing.id] = (existing, True)
            self._index_sounding(existing)
            return existing
        self.alarms[alarm.id] = alarm
        fx.alarms[alarm.id] = (alarm, True)
        self._record(fx, "alarm_raised", alarm.device, alarm=alarm.kind, alarm_id=alarm.id, text=alarm.text)
        self._index_sounding(alarm)
        return alarm

    def _index_sounding(self, alarm: Alarm) -> None:
        """An alarm raised or raised again (its `last` the only place it changes)."""
        if alarm.kind not in SOUNDING_ALARMS:
            return
        self.sounding[alarm.id] = alarm
        if self.silenced_at is not None and alarm.last > self.silenced_at:
            self.sounding_since_silence.add(alarm.id)
        else:
            self.sounding_since_silence.discard(alarm.id)

    def _clear_alarm(self, fx: Effects, alarm_id: str, why: str) -> None:
        alarm = self.alarms.pop(alarm_id, None)
        self.sounding.pop(alarm_id, None)
        self.sounding_since_silence.discard(alarm_id)
        if alarm is not None:
            fx.alarms[alarm_id] = (alarm, False)
            self._record(fx, "alarm_cleared", alarm.device, alarm=alarm.kind, alarm_id=alarm.id, text=alarm.text,
                         why=why, lasted_s=round(self.clock.wall() - alarm.since, 3))

    def _expire_alarms(self, fx: Effects, now: float) -> None:
        for alarm in list(self.alarms.values()):
            if alarm.expires is not None and alarm.expires <= now:
                self._clear_alarm(fx, alarm.id, "no further attempts")

    def database_alarm(self, text: str, alarm_id: str = "database") -> Effects:
        """A problem with the record itself (kind `database`): unreadable at start, missing, its
        files deleted while the host runs. It stays until the host restarts."""
        fx = Effects()
        wall = self.clock.wall()
        self._raise_alarm(fx, Alarm(alarm_id, "database", text, since=wall, last=wall))
        fx.sound = True
        return fx

    def record_unwritable(self, text: str) -> Effects:
        """The record cannot be written (disk full, I/O error) or does not answer: an alarm that
        sounds; its text follows what the record says. The hub publishes it without storing it
        first — it could not."""
        fx = Effects()
        alarm = self.alarms.get(RECORD_ALARM)
        wall = self.clock.wall()
        if alarm is None:
            self._raise_alarm(fx, Alarm(RECORD_ALARM, "database", text, since=wall, last=wall))
            fx.sound = True
        elif alarm.text != text:
            alarm.text = text       # the same trouble, told better: it does not sound again
            fx.alarms[RECORD_ALARM] = (alarm, True)
        return fx

    def record_writable(self) -> Effects:
        """The record is written again: the alarm clears."""
        fx = Effects()
        if RECORD_ALARM in self.alarms:
            self._clear_alarm(fx, RECORD_ALARM, "the record is written again")
            fx.sound = True
        return fx

    def peer_unreachable(self, peer: str, text: str) -> Effects:
        """A hospital system an integration talks to (docs/INTEGRATION.md) cannot be reached: a
        technical alarm until it can; a new text retells it without raising it again."""
        fx = Effects()
        alarm_id = f"integration:{peer}"
        alarm = self.alarms.get(alarm_id)
        if alarm is None:
            wall = self.clock.wall()
            self._raise_alarm(fx, Alarm(alarm_id, "integration_unreachable", text, since=wall, last=wall,
                                        data={"peer": peer}))
            fx.sound = True
        elif alarm.text != text:
            alarm.text = text
            fx.alarms[alarm_id] = (alarm, True)
        return fx

    def peer_reachable(self, peer: str) -> Effects:
        fx = Effects()
        self._clear_alarm(fx, f"integration:{peer}", "reachable again")
        return fx

    # ----- lookups -----

    def open_calls_of(self, device: str) -> list[Call]:
        return [c for c in self.calls.values() if c.device == device]

    def call_by_id(self, call_id: int) -> Call | None:
        for call in self.calls.values():
            if call.id == call_id:
                return call
        return None

    def room_staff(self, room: str) -> list[str]:
        """The terminals of a room with presence on."""
        present = [t.device for t in self.room_terminals.get(room, ()) if t.presence]
        if len(present) > 1:
            present.sort()
        return present

    def room_has_presence(self, room: str) -> bool:
        return any(t.presence for t in self.room_terminals.get(room, ()))
