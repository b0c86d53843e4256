"""What the ward is made of: calls, terminals and alarms, and the words for their states.

Plain records: the rules that change them are in calls.py, terminals.py and consoles.py.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
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
# a call routed to a nurse, told to the terminals of the room she is in (PROTOCOL.md)
CMD_NOTIFY: int = wardproto.CMD_NOTIFY


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
    route: "Route | None" = None               # who it is routed to (routing.py); stored as JSON
    recorded: bool = False                     # its row is in the record (the hub sets it); not stored

    @property
    def key(self) -> tuple[str, str, int]:
        """A call's identity: the terminal's call ids are unique per physical board only (a
        replacement board, or a second board wrongly given the same device id, counts anew)."""
        return (self.device, self.hwid, self.call_id)

    def row(self) -> dict[str, Any]:
        """The stored form (storage.py's calls table)."""
        row = {name: getattr(self, name) for name in CALL_COLUMNS}
        row["route"] = self.route.stored() if self.route is not None else None
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Call":
        """A call from its stored row (a restart): recorded, its route as it was."""
        values = {k: row[k] for k in CALL_COLUMNS if k != "route"}
        return cls(**values, route=Route.from_stored(row.get("route")), recorded=True)


CALL_COLUMNS = ("id", "device", "call_id", "kind", "room", "bed", "state", "placed_at", "received_at",
                "alerted_at", "acknowledged_at", "acknowledged_by", "last_acknowledged_at", "attended_at",
                "attended_by", "cleared_at", "cleared_reason", "escalation", "realerts", "hwid", "route")


# why a route stopped
ROUTE_ACCEPTED = "accepted"      # Accept, or acknowledged at a console
ROUTE_ATTENDED = "attended"      # staff at the bedside
ROUTE_CLEARED = "cleared"


@dataclass
class Route:
    """Where a call is in its kind's chain of steps (routing.py has the rules). Only widens:
    `to` holds everyone it has been routed to so far."""
    steps: tuple[str, ...]
    started_at: float                       # wall
    step: int = 0                           # the current step (index into steps)
    step_at: float = 0.0                    # wall: when the current step began
    next_at: float | None = None            # wall: when it passes on without an answer
    to: list[str] = field(default_factory=list)
    step_users: list[str] = field(default_factory=list)    # the current step's reachable people
    declined: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # user -> why ("logged out" | "phone silent")
    routed_at: dict[str, float] = field(default_factory=dict)   # user -> wall when it reached her
    accepted_by: str | None = None
    accepted_at: float | None = None
    accepted_step: int | None = None
    ended: str | None = None                # ROUTE_ACCEPTED | ROUTE_ATTENDED | ROUTE_CLEARED; None: routing
    passed_on: int = 0                      # times it passed on because nobody took it
    unassigned: bool = False                # placed on a bed with no primary nurse
    notified: list[str] = field(default_factory=list)      # devices told with CMD_NOTIFY (room of a routed nurse)
    deadline: float | None = None           # mono, of next_at; not stored

    @property
    def step_name(self) -> str:
        return self.steps[self.step]

    @property
    def last_step(self) -> bool:
        return self.step >= len(self.steps) - 1

    def stored(self) -> str:
        data = asdict(self)
        del data["deadline"]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_stored(cls, text: str | None) -> "Route | None":
        """The stored route; None if there is none or it cannot be read (the call is routed
        again from the start: a damaged row must not keep the host from starting)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            known = {f.name for f in fields(cls)} - {"deadline"}
            route = cls(**{k: v for k, v in data.items() if k in known})
            route.steps = tuple(route.steps)
            if not route.steps or not 0 <= route.step < len(route.steps):
                return None
        except (ValueError, TypeError, AttributeError):
            return None
        return route

    def copy(self) -> "Route":
        return copy.deepcopy(self)


@dataclass
class Assignment:
    """One shift instance's assignment: the charge nurse and each bed's primary and secondary
    nurse (staff.py has the rules). Changed in place, so the record writes its latest state."""
    shift: str
    charge: str | None = None
    beds: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)   # "room/bed" -> (primary, secondary)

    def primary(self, bed: str) -> str | None:
        return self.beds.get(bed, (None, None))[0]

    def secondary(self, bed: str) -> str | None:
        return self.beds.get(bed, (None, None))[1]

    def people(self) -> set[str]:
        named = {u for pair in self.beds.values() for u in pair if u is not None}
        return named | ({self.charge} if self.charge else set())

    def row(self) -> dict[str, Any]:
        """The stored form (storage.py's shift_assignments and bed_assignments)."""
        return {"shift": self.shift, "charge": self.charge,
                "beds": [(bed, p, s) for bed, (p, s) in sorted(self.beds.items()) if p or s]}


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
    notify_unsupported: bool = False   # answered CMD_NOTIFY with ok=0 (older firmware): chimes instead

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
