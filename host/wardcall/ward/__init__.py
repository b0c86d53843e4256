"""wardcall.ward: the ward's live state — calls, terminals, staff presence and alarms — as a
pure state machine.

Nothing here does I/O or reads the time by itself: every input is a method call, the clock is
injected, and every method returns Effects (what to record, what to tell terminals, what changed
for the consoles). The hub (hub.py) stores the effects, then sends and publishes them. That keeps
the rules testable with a hand-moved clock and makes "stored before acknowledged" the hub's job.

- model:     Call, Terminal, Alarm, Route, Assignment, the call states, WardError
- effects:   Effects (Record, Message): what every method returns
- state:     WardState: the state itself, recording, alarms, lookups
- shifts:    shift instances ("2026-12-01/early") from [shifts] and a wall time
- assignments: each shift's charge nurse and bed nurses, the "unassigned beds" alarm
- staff:     who is reachable (console session, pocket heartbeat) and where (badge at a terminal)
- routing:   a call's route through its chain of steps: accept, decline, pass on, CMD_NOTIFY
- calls:     a call's life, presence, escalation and re-alert
- terminals: sessions, heartbeats, faults, refused devices, supervision
- consoles:  connected consoles, silence and sound, the "no console" alarm
- views:     calls, terminals and rooms as the consoles get them
- machine:   Ward = all of the above, plus tick(), restore() and snapshot()
"""
from .effects import Effects, Message, Record
from .machine import Ward
from .model import (ACKNOWLEDGED, ATTENDED, CALL_COLUMNS, CLEARED, CMD_NOTIFY, PLACED, Alarm, Assignment, Call,
                    Route, Terminal, WardError)

__all__ = ["ACKNOWLEDGED", "ATTENDED", "CALL_COLUMNS", "CLEARED", "CMD_NOTIFY", "PLACED", "Alarm", "Assignment",
           "Call", "Effects", "Message", "Record", "Route", "Terminal", "Ward", "WardError"]
