"""What the ward is made of: calls, terminals and alarms, and the words for their states.

Plain records: the rules that change them are in calls.py, terminals.py and consoles.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..protocol import wardproto

# a call's life: placed → acknowledged (console) → attended (presence) → cleared (CANCEL)
PLACED = "placed"
ACKNOWLEDGED = "acknowledged"
ATTENDED = "attended"
CLEARED = "cleared"

CANCEL_REASONS = {wardproto.CANCEL_PRESENCE: "presence", wardproto.CANCEL_ORIGIN: "origin"}
FAULT_NAMES = {wardproto.FAULT_CORD: "cord", wardproto.FAULT_DEVICE: "device"}
STATE_CODES = {PLACED: wardproto.ST_PLACED, ACKNOWLEDGED: wardproto.ST_ACKNOWLEDGED,
               ATTENDED: wardproto.ST_ATTENDED, CLEARED: wardproto.ST_CLEARED}


class WardError(Exception):
    """A command that cannot be carried out. `kind` says why, in the domain's words; the web
    layer turns it into an HTTP status."""

    NOT_FOUND = "not_found"        # no such call, terminal, job …
    CONFLICT = "conflict"          # not possible in the current state (terminal not connected …)
    INVALID = "invalid"            # the request itself is wrong

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass
class Call:
    id: int                      # the host's id for the call (API, record)
    device: str
    call_id: int                 # the terminal's id for it (u32, unique per device)
    kind: int
    room: str
    bed: str
    placed_at: float             # wall: when it happened at the terminal (arrival - age_ms)
    received_at: float           # wall: when the host got it
    alerted_at: float            # wall: last (re-)announcement
    state: str = PLACED
    acknowledged_at: float | None = None       # first acknowledgement (for response times)
    acknowledged_by: str | None = None
    last_acknowledged_at: float | None = None  # latest, which the attend timer runs from
    attended_at: float | None = None
    attended_by: str | None = None
    cleared_at: float | None = None
    cleared_reason: str | None = None
    escalation: int = 0
    realerts: int = 0
    deadline: float | None = None              # mono: next escalation or re-alert; not stored
    hwid: str = ""                             # the calling board's hardware id (hex, HELLO hwid)
    recorded: bool = False                     # its row is in the record (the hub sets it); not stored

    @property
    def key(self) -> tuple[str, str, int]:
        """A call's identity: the terminal's call ids are unique per physical board only (a
        replacement board, or a second board wrongly given the same device id, counts anew)."""
        return (self.device, self.hwid, self.call_id)

    def row(self) -> dict[str, Any]:
        """The stored form (storage.py's calls table)."""
        return {name: getattr(self, name) for name in CALL_COLUMNS}


CALL_COLUMNS = ("id", "device", "call_id", "kind", "room", "bed", "state", "placed_at", "received_at",
                "alerted_at", "acknowledged_at", "acknowledged_by", "last_acknowledged_at", "attended_at",
                "attended_by", "cleared_at", "cleared_reason", "escalation", "realerts", "hwid")


@dataclass
class Terminal:
    device: str
    room: str
    bed: str
    seen: bool = False                 # has ever completed a handshake (kept in the record)
    connected: bool = False            # a session is open now
    online: bool = False               # frames arrive in time
    last_frame: float | None = None    # mono
    last_seen: float | None = None     # wall of the last frame
    last_heartbeat: float | None = None  # wall
    presence: bool = False
    status_bits: int = 0
    faults: set[int] = field(default_factory=set)
    firmware: str = ""
    board: str = ""
    address: str = ""
    pending: int = 0
    uptime: int = 0

    @property
    def status(self) -> str:
        if self.online:
            faulty = self.faults or self.status_bits & (wardproto.HB_CORD_FAULT | wardproto.HB_DEVICE_FAULT)
            return "fault" if faulty else "online"
        return "offline" if self.seen else "unknown"

    def row(self) -> dict[str, Any]:
        return {"device": self.device, "room": self.room, "bed": self.bed, "status": self.status,
                "seen": int(self.seen), "last_seen": self.last_seen, "presence": int(self.presence),
                "firmware": self.firmware, "board": self.board, "address": self.address}


@dataclass
class Alarm:
    id: str
    kind: str                  # terminal_offline | device_trying_to_connect | no_console | database
    text: str
    since: float               # wall
    last: float                # wall of the latest occurrence
    device: str | None = None
    room: str | None = None
    count: int = 1
    expires: float | None = None   # mono; None = stays until its cause ends
    data: dict[str, Any] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "text": self.text, "since": self.since, "last": self.last,
                "device": self.device, "room": self.room, "count": self.count, "priority": "technical",
                **self.data}
