"""Effects: what one input to the ward asks of the hub — record, send, publish.

Every method of Ward returns one; hub.py stores it, then sends its messages, then publishes
its changes, which is what makes "stored before acknowledged" hold.

An input that the sender is told about only once it is stored (a terminal's CALL and CANCEL, a
console's acknowledge and silence) also leaves `undo`: how to take its change back out of the live
state. If the record cannot be written the hub runs it, so the ward never claims what is not
stored, and the sender, told nothing, tries again (the terminal resends from its outbox).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .model import Alarm, Call, Terminal


@dataclass
class Record:
    """One line of the permanent record (storage events table)."""
    kind: str
    wall: float
    mono: float
    device: str | None = None
    call: int | None = None
    user: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Message:
    """A frame for a terminal; COMMAND frames get their cmd_id from the hub. `hwid` names the
    physical board it is for by its hardware id (a call's state); None: every live session of the device."""
    device: str
    mtype: int
    fields: dict[str, Any]
    hwid: str | None = None


@dataclass
class Effects:
    records: list[Record] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    calls: dict[int, Call] = field(default_factory=dict)
    terminals: dict[str, Terminal] = field(default_factory=dict)
    alarms: dict[str, tuple[Alarm, bool]] = field(default_factory=dict)   # id -> (alarm, active)
    rooms: set[str] = field(default_factory=set)        # presence changed
    sound: bool = False                                  # silence or audibility changed
    undo: list[Callable[[], None]] = field(default_factory=list)   # run in reverse if not stored

    def __bool__(self) -> bool:
        return bool(self.records or self.messages or self.calls or self.terminals or self.alarms
                    or self.rooms or self.sound)

    def merge(self, other: "Effects") -> "Effects":
        self.records += other.records
        self.messages += other.messages
        self.calls.update(other.calls)
        self.terminals.update(other.terminals)
        self.alarms.update(other.alarms)
        self.rooms |= other.rooms
        self.sound = self.sound or other.sound
        self.undo += other.undo
        return self

    def revert(self) -> None:
        """Take this input's changes back out of the live state (it could not be stored)."""
        for step in reversed(self.undo):
            step()
        self.undo.clear()
