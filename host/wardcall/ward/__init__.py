"""wardcall.ward: the ward's live state — calls, terminals, staff presence and alarms — as a
pure state machine.

Nothing here does I/O or reads the time by itself: every input is a method call, the clock is
injected, and every method returns Effects (what to record, what to tell terminals, what changed
for the consoles). The hub (hub.py) stores the effects, then sends and publishes them. That keeps
the rules testable with a hand-moved clock and makes "stored before acknowledged" the hub's job.

- model:     Call, Terminal, Alarm, the call states, WardError
- effects:   Effects (Record, Message): what every method returns
- state:     WardState: the state itself, recording, alarms, lookups
- calls:     a call's life, presence, escalation and re-alert
- terminals: sessions, heartbeats, faults, refused devices, supervision
- consoles:  connected consoles, silence and sound, the "no console" alarm
- views:     calls, terminals and rooms as the consoles get them
- machine:   Ward = all of the above, plus tick(), restore() and snapshot()
"""
from .effects import Effects, Message, Record
from .machine import Ward
from .model import (ACKNOWLEDGED, ATTENDED, CALL_COLUMNS, CLEARED, PLACED, Alarm, Call, Terminal,
                    WardError)

__all__ = ["ACKNOWLEDGED", "ATTENDED", "CALL_COLUMNS", "CLEARED", "PLACED", "Alarm", "Call", "Effects",
           "Message", "Record", "Terminal", "Ward", "WardError"]
