"""The ward's live state: calls, terminals, staff presence and alarms, as a pure state machine.

Nothing here does I/O or reads the time by itself: every input is a method call, the clock is
injected, and every method returns Effects (what to record, what to tell terminals, what changed
for the consoles). The hub (hub.py) stores the effects, then sends and publishes them. That keeps
the rules testable with a hand-moved clock and makes "stored before acknowledged" the hub's job.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .clock import Clock
from .config import WardConfig
from .protocol import KIND_NAMES, alarm_priority, wardproto

PLACED = "placed"
ACKNOWLEDGED = "acknowledged"
ATTENDED = "attended"
CLEARED = "cleared"

CANCEL_REASONS = {wardproto.CANCEL_PRESENCE: "presence", wardproto.CANCEL_ORIGIN: "origin"}
FAULT_NAMES = {wardproto.FAULT_CORD: "cord", wardproto.FAULT_DEVICE: "device"}
STATE_CODES = {PLACED: wardproto.ST_PLACED, ACKNOWLEDGED: wardproto.ST_ACKNOWLEDGED,
               ATTENDED: wardproto.ST_ATTENDED, CLEARED: wardproto.ST_CLEARED}


class WardError(Exception):
    """A console command that cannot be carried out (unknown call, already cleared …)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
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

    @property
    def key(self) -> tuple[str, int]:
        return (self.device, self.call_id)

    @property
    def open(self) -> bool:
        return self.state != CLEARED

    def row(self) -> dict[str, Any]:
        """The stored form (storage.py's calls table)."""
        return {name: getattr(self, name) for name in CALL_COLUMNS}


CALL_COLUMNS = ("id", "device", "call_id", "kind", "room", "bed", "state", "placed_at", "received_at",
                "alerted_at", "acknowledged_at", "acknowledged_by", "last_acknowledged_at", "attended_at",
                "attended_by", "cleared_at", "cleared_reason", "escalation", "realerts")


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
    """A frame for a terminal; COMMAND frames get their cmd_id from the hub."""
    device: str
    mtype: int
    fields: dict[str, Any]


@dataclass
class Effects:
    records: list[Record] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    calls: dict[int, Call] = field(default_factory=dict)
    terminals: dict[str, Terminal] = field(default_factory=dict)
    alarms: dict[str, tuple[Alarm, bool]] = field(default_factory=dict)   # id -> (alarm, active)
    rooms: set[str] = field(default_factory=set)        # presence changed
    sound: bool = False                                  # silence or audibility changed

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
        return self


class Ward:
    def __init__(self, config: WardConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.terminals: dict[str, Terminal] = {
            t.device: Terminal(t.device, t.room, t.bed) for t in config.terminals.values()}
        self.calls: dict[tuple[str, int], Call] = {}     # open calls only
        self.alarms: dict[str, Alarm] = {}
        self.present: set[str] = set()                   # devices with presence on
        self.next_call_id = 1
        self.consoles = 0
        self._no_console_since: float | None = None     # mono
        self.silenced_at: float | None = None           # wall
        self.silenced_until: float | None = None        # wall
        self.silenced_by: str | None = None
        self._silence_deadline: float | None = None     # mono

    # ----- helpers -----

    def _record(self, fx: Effects, kind: str, device: str | None = None, call: Call | None = None,
                user: str | None = None, **data: Any) -> None:
        if call is not None:
            data.setdefault("call_id", call.call_id)
            data.setdefault("kind", KIND_NAMES[call.kind])
            data.setdefault("room", call.room)
            data.setdefault("state", call.state)
        fx.records.append(Record(kind, self.clock.wall(), self.clock.mono(), device or (call.device if call else None),
                                 call.id if call else None, user, data))

    def _call_state(self, fx: Effects, call: Call, state: int, by: str) -> None:
        fx.messages.append(Message(call.device, wardproto.CALL_STATE, {"call": call.call_id, "state": state, "by": by[:255]}))

    def _announce(self, fx: Effects, call: Call) -> None:
        """Tell the staff: a chime at terminals in other rooms — where a nurse is present, or at
        every online terminal once the call is escalated (emergencies start escalated)."""
        priority = bytes([alarm_priority(call.kind)])
        # at escalation 0 only terminals with staff present chime: look at those alone
        targets = self.terminals.values() if call.escalation > 0 else [self.terminals[d] for d in sorted(self.present)]
        for terminal in targets:
            if terminal.room == call.room or not terminal.online:
                continue
            if terminal.presence or call.escalation > 0:
                fx.messages.append(Message(terminal.device, wardproto.COMMAND,
                                           {"cmd": wardproto.CMD_CHIME, "arg": priority}))

    def _ack_timeout(self, call: Call) -> float:
        return self.config.escalation.ack_timeout_s[call.kind]

    def _raise_alarm(self, fx: Effects, alarm: Alarm) -> Alarm:
        existing = self.alarms.get(alarm.id)
        if existing is not None:
            existing.count += 1
            existing.last = alarm.last
            existing.expires = alarm.expires
            existing.text = alarm.text
            existing.data.update(alarm.data)
            fx.alarms[existing.id] = (existing, True)
            return existing
        self.alarms[alarm.id] = alarm
        fx.alarms[alarm.id] = (alarm, True)
        self._record(fx, "alarm_raised", alarm.device, alarm=alarm.kind, alarm_id=alarm.id, text=alarm.text)
        return alarm

    def _clear_alarm(self, fx: Effects, alarm_id: str, why: str) -> None:
        alarm = self.alarms.pop(alarm_id, None)
        if alarm is not None:
            fx.alarms[alarm_id] = (alarm, False)
            self._record(fx, "alarm_cleared", alarm.device, alarm=alarm.kind, alarm_id=alarm.id, text=alarm.text,
                         why=why, lasted_s=round(self.clock.wall() - alarm.since, 3))

    def open_calls_of(self, device: str) -> list[Call]:
        return [c for c in self.calls.values() if c.device == device]

    def call_by_id(self, call_id: int) -> Call | None:
        for call in self.calls.values():
            if call.id == call_id:
                return call
        return None

    def room_staff(self, room: str) -> list[str]:
        return sorted(t.device for t in self.terminals.values() if t.room == room and t.presence)

    # ----- terminals -----

    def terminal_connected(self, device: str, firmware: str, board: str, caps: int, address: str) -> Effects:
        fx = Effects()
        terminal = self.terminals[device]
        terminal.seen = True
        terminal.connected = True
        terminal.firmware, terminal.board, terminal.address = firmware, board, address
        self._record(fx, "terminal_connected", device, firmware=firmware, board=board, caps=caps, address=address)
        fx.merge(self.frame_received(device))
        fx.terminals[device] = terminal
        # a terminal that missed CALL_STATEs while away catches up (docs/SESSION.md, Calls)
        for call in self.open_calls_of(device):
            state = wardproto.ST_ESCALATED if call.state == PLACED and (call.escalation or call.realerts) else STATE_CODES[call.state]
            self._call_state(fx, call, state, call.attended_by or call.acknowledged_by or "")
        return fx

    def terminal_disconnected(self, device: str, reason: str) -> Effects:
        fx = Effects()
        terminal = self.terminals.get(device)
        if terminal is None:
            return fx
        terminal.connected = False
        self._record(fx, "terminal_disconnected", device, reason=reason)
        fx.terminals[device] = terminal
        return fx

    def frame_received(self, device: str) -> Effects:
        """Any authenticated frame proves the terminal alive (supervision)."""
        fx = Effects()
        terminal = self.terminals[device]
        terminal.last_frame = self.clock.mono()
        terminal.last_seen = self.clock.wall()
        if not terminal.online:
            terminal.online = True
            fx.terminals[device] = terminal
            self._record(fx, "terminal_online", device)
            self._clear_alarm(fx, f"offline:{device}", "terminal back online")
        return fx

    def heartbeat(self, device: str, status: int, pending: int, uptime: int) -> Effects:
        fx = Effects()
        terminal = self.terminals[device]
        terminal.last_heartbeat = self.clock.wall()
        terminal.pending, terminal.uptime = pending, uptime
        if status != terminal.status_bits:
            terminal.status_bits = status
            fx.terminals[device] = terminal
            self._record(fx, "terminal_status", device, status=status, pending=pending, uptime=uptime)
        present = bool(status & wardproto.HB_PRESENCE)
        if present != terminal.presence:
            # the heartbeat's presence bit is the terminal's truth; it resynchronises us
            fx.merge(self.presence(device, present, "", resync=True))
        return fx

    def auth_refused(self, device: str, address: str, reason: str) -> Effects:
        fx = Effects()
        shown = device[:64] or "?"
        self._record(fx, "auth_refused", None, claimed_device=shown, address=address, reason=reason)
        now = self.clock.wall()
        self._raise_alarm(fx, Alarm(
            id=f"attempt:{shown}@{address.rsplit(':', 1)[0]}", kind="device_trying_to_connect",
            text=f"device trying to connect: {shown} from {address} ({reason})", since=now, last=now,
            expires=self.clock.mono() + self.config.timing.attempt_alarm_s,
            data={"claimed_device": shown, "address": address, "reason": reason}))
        return fx

    def fault(self, device: str, code: int, active: bool, detail: str) -> Effects:
        fx = Effects()
        terminal = self.terminals[device]
        if active:
            terminal.faults.add(code)
        else:
            terminal.faults.discard(code)
        fx.terminals[device] = terminal
        self._record(fx, "fault", device, fault=FAULT_NAMES.get(code, str(code)), active=active, detail=detail)
        return fx

    def protocol_problem(self, device: str | None, address: str, problem: str, closed: bool) -> Effects:
        fx = Effects()
        self._record(fx, "frame_rejected", device, address=address, problem=problem, closed=closed)
        return fx

    def command_result(self, device: str, cmd_id: int, ok: bool, detail: str) -> Effects:
        fx = Effects()
        self._record(fx, "command_result", device, cmd_id=cmd_id, ok=ok, detail=detail)
        return fx

    # ----- presence -----

    def presence(self, device: str, on: bool, staff: str, resync: bool = False) -> Effects:
        fx = Effects()
        terminal = self.terminals[device]
        room_had_staff = any(t.presence for t in self.terminals.values() if t.room == terminal.room)
        terminal.presence = on
        if on:
            self.present.add(device)
        else:
            self.present.discard(device)
        fx.terminals[device] = terminal
        fx.rooms.add(terminal.room)
        self._record(fx, "presence", device, on=on, staff=staff, room=terminal.room, resync=resync)
        who = staff or device
        if on:
            for call in list(self.calls.values()):
                if call.room == terminal.room and call.state in (PLACED, ACKNOWLEDGED):
                    call.state = ATTENDED
                    if call.attended_at is None:
                        call.attended_at = self.clock.wall()
                    call.attended_by = who
                    call.deadline = None
                    fx.calls[call.id] = call
                    self._record(fx, "call_attended", call=call, by=who)
                    self._call_state(fx, call, wardproto.ST_ATTENDED, who)
        elif room_had_staff and not any(t.presence for t in self.terminals.values() if t.room == terminal.room):
            # the last nurse left a room where a call still stands (a bathroom cord not reset,
            # a code blue not cleared): it must not be forgotten, so it comes back as an alert
            for call in list(self.calls.values()):
                if call.room == terminal.room and call.state == ATTENDED:
                    self._realert(fx, call, "staff left the room with the call still standing")
        return fx

    # ----- calls -----

    def is_open(self, device: str, call_id: int) -> bool:
        return (device, call_id) in self.calls

    def place_call(self, device: str, call_id: int, kind: int, age_ms: int) -> tuple[Effects, Call | None]:
        """A CALL from a terminal. A repeat of an open call (same device and call id) changes
        nothing. The hub checks the record for calls already cleared before calling this."""
        fx = Effects()
        existing = self.calls.get((device, call_id))
        if existing is not None:
            self._record(fx, "call_repeated", call=existing, age_ms=age_ms)
            return fx, existing
        terminal = self.terminals[device]
        now = self.clock.wall()
        call = Call(id=self.next_call_id, device=device, call_id=call_id, kind=kind, room=terminal.room,
                    bed=terminal.bed, placed_at=now - min(age_ms, 86_400_000) / 1000.0, received_at=now,
                    alerted_at=now)
        self.next_call_id += 1
        if kind in self.config.escalation.broadcast_kinds:
            call.escalation = 1     # emergencies go everywhere at once
        call.deadline = self.clock.mono() + self._ack_timeout(call)
        self.calls[call.key] = call
        fx.calls[call.id] = call
        self._record(fx, "call_placed", call=call, age_ms=age_ms, bed=call.bed, escalation=call.escalation)
        self._announce(fx, call)
        return fx, call

    def repeated_cleared_call(self, device: str, call_id: int, of: str) -> Effects:
        fx = Effects()
        self._record(fx, "message_repeated", device, call_id=call_id, of=of)
        return fx

    def cancel_call(self, device: str, call_id: int, reason: int, age_ms: int) -> Effects:
        fx = Effects()
        call = self.calls.get((device, call_id))
        if call is None:
            self._record(fx, "cancel_unknown_call", device, call_id=call_id, reason=CANCEL_REASONS.get(reason, str(reason)))
            return fx
        now = self.clock.wall()
        call.state = CLEARED
        call.cleared_at = max(call.placed_at, now - min(age_ms, 86_400_000) / 1000.0)
        call.cleared_reason = CANCEL_REASONS.get(reason, str(reason))
        call.deadline = None
        del self.calls[call.key]
        fx.calls[call.id] = call
        self._record(fx, "call_cleared", call=call, reason=call.cleared_reason, age_ms=age_ms)
        self._call_state(fx, call, wardproto.ST_CLEARED, "")
        fx.sound = True
        return fx

    def acknowledge(self, host_call_id: int, user: str) -> tuple[Effects, Call]:
        call = self.call_by_id(host_call_id)
        if call is None:
            raise WardError(404, f"no open call {host_call_id}")
        fx = Effects()
        if call.state != PLACED:
            # acknowledging twice is harmless; the record says who tried
            self._record(fx, "call_acknowledge_ignored", call=call, user=user, why=f"call is already {call.state}")
            return fx, call
        now = self.clock.wall()
        call.state = ACKNOWLEDGED
        if call.acknowledged_at is None:
            call.acknowledged_at = now
        call.last_acknowledged_at = now
        call.acknowledged_by = user
        call.deadline = self.clock.mono() + self.config.escalation.attend_timeout_s
        fx.calls[call.id] = call
        fx.sound = True
        self._record(fx, "call_acknowledged", call=call, user=user)
        self._call_state(fx, call, wardproto.ST_ACKNOWLEDGED, user)
        return fx, call

    def _escalate(self, fx: Effects, call: Call) -> None:
        call.escalation += 1
        call.alerted_at = self.clock.wall()
        call.deadline = self.clock.mono() + self._ack_timeout(call)
        fx.calls[call.id] = call
        fx.sound = True
        self._record(fx, "call_escalated", call=call, escalation=call.escalation)
        self._call_state(fx, call, wardproto.ST_ESCALATED, "")
        self._announce(fx, call)

    def _realert(self, fx: Effects, call: Call, why: str) -> None:
        """An acknowledged call nobody attended comes back as a new, unacknowledged alert."""
        call.state = PLACED
        call.realerts += 1
        call.alerted_at = self.clock.wall()
        call.deadline = self.clock.mono() + self._ack_timeout(call)
        fx.calls[call.id] = call
        fx.sound = True
        self._record(fx, "call_realerted", call=call, why=why, realerts=call.realerts)
        self._call_state(fx, call, wardproto.ST_ESCALATED, "")
        self._announce(fx, call)

    # ----- consoles and sound -----

    def set_consoles(self, count: int) -> Effects:
        fx = Effects()
        self.consoles = count
        if count > 0:
            self._no_console_since = None
            self._clear_alarm(fx, "no_console", "a console is connected")
        return fx

    def silence(self, seconds: float, user: str) -> Effects:
        fx = Effects()
        now = self.clock.wall()
        self.silenced_at = now
        self.silenced_until = now + seconds
        self.silenced_by = user
        self._silence_deadline = self.clock.mono() + seconds
        fx.sound = True
        self._record(fx, "silence", None, user=user, seconds=seconds)
        return fx

    def audible(self) -> bool:
        """Should the consoles sound? Yes while an alert stands that arrived or came back after
        the last silence (or the silence ran out). Silence never hides anything visually."""
        alerts = [c.alerted_at for c in self.calls.values() if c.state == PLACED]
        alerts += [a.last for a in self.alarms.values() if a.kind in ("terminal_offline", "no_console")]
        if not alerts:
            return False
        if self.silenced_at is None or self._silence_deadline is None:
            return True
        return max(alerts) > self.silenced_at

    # ----- time -----

    def tick(self) -> Effects:
        """Run every timer that is due: escalation, re-alert, supervision, expiries."""
        fx = Effects()
        now = self.clock.mono()
        for call in sorted(self.calls.values(), key=lambda c: c.id):
            if call.deadline is None or call.deadline > now:
                continue
            if call.state == PLACED:
                self._escalate(fx, call)
            elif call.state == ACKNOWLEDGED:
                self._realert(fx, call, "acknowledged but not attended in time")
        offline_after = self.config.offline_after_s
        for terminal in self.terminals.values():
            if not terminal.seen or terminal.last_frame is None or now - terminal.last_frame <= offline_after:
                continue
            if terminal.online:
                terminal.online = False
                fx.terminals[terminal.device] = terminal
                self._record(fx, "terminal_offline", terminal.device, silent_s=round(now - terminal.last_frame, 3))
            alarm_id = f"offline:{terminal.device}"
            if alarm_id not in self.alarms:
                wall = self.clock.wall()
                self._raise_alarm(fx, Alarm(alarm_id, "terminal_offline",
                                            f"terminal offline: {terminal.device} (room {terminal.room}, bed {terminal.bed or '-'})",
                                            since=wall, last=wall, device=terminal.device, room=terminal.room))
                fx.sound = True
        for alarm in list(self.alarms.values()):
            if alarm.expires is not None and alarm.expires <= now:
                self._clear_alarm(fx, alarm.id, "no further attempts")
        if self._silence_deadline is not None and self._silence_deadline <= now:
            self._silence_deadline = None
            self.silenced_at = self.silenced_until = self.silenced_by = None
            fx.sound = True
        self._check_black_hole(fx, now)
        return fx

    def _check_black_hole(self, fx: Effects, now: float) -> None:
        """No black hole: alerts standing with no console connected are an alarm of their own."""
        unseen = [c for c in self.calls.values() if c.state == PLACED] or \
            [a for a in self.alarms.values() if a.kind == "terminal_offline"]
        if self.consoles > 0 or not unseen:
            self._no_console_since = None
            if not unseen:
                self._clear_alarm(fx, "no_console", "no alert stands")
            return
        if self._no_console_since is None:
            self._no_console_since = now
        if "no_console" not in self.alarms and now - self._no_console_since >= self.config.timing.no_console_grace_s:
            wall = self.clock.wall()
            self._raise_alarm(fx, Alarm("no_console", "no_console",
                                        f"no console connected while {len(unseen)} alert(s) stand", since=wall, last=wall))
            fx.sound = True

    # ----- restore after a restart -----

    def restore(self, calls: list[dict[str, Any]], terminals: list[dict[str, Any]], next_call_id: int) -> Effects:
        """Bring back open calls with their state and timers, and which terminals were ever seen
        (those must come back within three heartbeats, or they are offline)."""
        fx = Effects()
        now_wall, now_mono = self.clock.wall(), self.clock.mono()
        self.next_call_id = max(self.next_call_id, next_call_id)
        for row in calls:
            if row["state"] == CLEARED or row["kind"] not in KIND_NAMES:
                continue
            call = Call(**{k: row[k] for k in CALL_COLUMNS})
            if call.state == PLACED:
                due = call.alerted_at + self._ack_timeout(call)
            elif call.state == ACKNOWLEDGED:
                due = (call.last_acknowledged_at or call.alerted_at) + self.config.escalation.attend_timeout_s
            else:
                due = None
            # timers continue from the wall clock; a deadline passed while down fires at once
            call.deadline = None if due is None else now_mono + (due - now_wall)
            self.calls[call.key] = call
            self._record(fx, "call_restored", call=call)
        for row in terminals:
            terminal = self.terminals.get(row["device"])
            if terminal is None or not row["seen"]:
                continue
            terminal.seen = True
            terminal.last_seen = row["last_seen"]
            terminal.firmware, terminal.board = row["firmware"] or "", row["board"] or ""
            terminal.last_frame = now_mono     # three heartbeats' grace to reconnect
        return fx

    def database_alarm(self, text: str) -> Effects:
        fx = Effects()
        wall = self.clock.wall()
        self._raise_alarm(fx, Alarm("database", "database", text, since=wall, last=wall))
        return fx

    # ----- views for the consoles -----

    def call_view(self, call: Call) -> dict[str, Any]:
        terminal = self.terminals.get(call.device)
        return {
            "id": call.id, "device": call.device, "call_id": call.call_id, "kind": call.kind,
            "kind_name": KIND_NAMES[call.kind], "priority": call.kind,
            "alarm_priority": ("low", "medium", "high")[alarm_priority(call.kind) - 1],
            "room": call.room, "bed": call.bed, "state": call.state,
            "placed_at": call.placed_at, "received_at": call.received_at, "alerted_at": call.alerted_at,
            "acknowledged_at": call.acknowledged_at, "acknowledged_by": call.acknowledged_by,
            "attended_at": call.attended_at, "attended_by": call.attended_by,
            "cleared_at": call.cleared_at, "cleared_reason": call.cleared_reason,
            "escalation": call.escalation, "realerts": call.realerts,
            "terminal_status": terminal.status if terminal else "unknown",
        }

    def terminal_view(self, terminal: Terminal) -> dict[str, Any]:
        return {
            "device": terminal.device, "room": terminal.room, "bed": terminal.bed, "status": terminal.status,
            "connected": terminal.connected, "presence": terminal.presence,
            "last_heartbeat": terminal.last_heartbeat, "last_seen": terminal.last_seen,
            "faults": sorted(FAULT_NAMES.get(f, str(f)) for f in terminal.faults),
            "cord_fault": bool(terminal.status_bits & wardproto.HB_CORD_FAULT or wardproto.FAULT_CORD in terminal.faults),
            "pending": terminal.pending, "uptime": terminal.uptime,
            "firmware": terminal.firmware, "board": terminal.board, "address": terminal.address,
        }

    def room_view(self, room_id: str) -> dict[str, Any]:
        room = self.config.rooms[room_id]
        staff = self.room_staff(room_id)
        return {"id": room_id, "name": room.name, "presence": bool(staff), "staff": staff}

    def sound_view(self) -> dict[str, Any]:
        return {"audible": self.audible(), "silenced_until": self.silenced_until, "silenced_by": self.silenced_by}

    def ordered_calls(self) -> list[Call]:
        """Priority first (code blue … technical), then oldest first."""
        return sorted(self.calls.values(), key=lambda c: (c.kind, c.placed_at, c.id))

    def snapshot(self) -> dict[str, Any]:
        return {
            "ward": self.config.ward,
            "time": self.clock.wall(),
            "heartbeat_ms": self.config.timing.heartbeat_ms,
            "calls": [self.call_view(c) for c in self.ordered_calls()],
            "terminals": [self.terminal_view(t) for t in sorted(self.terminals.values(), key=lambda t: (t.room, t.bed, t.device))],
            "rooms": [self.room_view(r) for r in self.config.rooms],
            "alarms": [a.view() for a in sorted(self.alarms.values(), key=lambda a: (a.since, a.id))],
            "sound": self.sound_view(),
            "consoles": self.consoles,
        }
