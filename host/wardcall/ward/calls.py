"""CallRules: a call's life — placed, acknowledged, attended (staff presence), cleared — and
what keeps it from being forgotten: escalation and re-alert (docs/HOST.md, Behaviour).
"""
from __future__ import annotations

from typing import Any

from ..clock import Clock
from ..config import WardConfig
from ..protocol import KIND_NAMES, alarm_priority, wardproto
from .effects import Effects, Message
from .flood import AlarmCoalescer, RecordGate
from .model import (ACKNOWLEDGED, ATTENDED, CANCEL_REASONS, CLEARED, PLACED, ROUTE_ATTENDED, ROUTE_CLEARED, Alarm, Call,
                    WardError)
from .routing import RoutingRules


LEFT_ROOM_GRACE_S = 2.0     # see CallRules._left_room_grace
# A terminal holds at most one call per slot (technical: two). Four open calls of one kind leave
# room for a replaced board's old call beside the new board's; a fifth is a broken terminal.
OPEN_CALLS_PER_KIND = 4
CHIME_PERIOD_S = 3.0        # at most one chime per terminal this often, unless of a higher priority
FLOOD_RECORD_PERIOD_S = 60.0   # refused input: one record row per source and minute at most
ALARM_UPDATE_PERIOD_S = 1.0    # a standing alarm's count goes to the consoles at most once a second
_ACK_FIELDS = ("state", "acknowledged_at", "last_acknowledged_at", "acknowledged_by", "deadline")


class CallRules(RoutingRules):

    def __init__(self, config: WardConfig, clock: Clock) -> None:
        super().__init__(config, clock)
        self.refused_calls: set[tuple[str, int]] = set()    # (device, call id): CALLs over the cap, for the session
        self._call_refusal_rows = RecordGate(FLOOD_RECORD_PERIOD_S, burst=1)
        self._alarm_updates = AlarmCoalescer(ALARM_UPDATE_PERIOD_S)
        self._chimed: dict[str, tuple[float, int]] = {}     # device -> (mono, priority) of its last chime

    # ----- from the terminals -----

    def is_open(self, device: str, call_id: int, hwid: str = "") -> bool:
        return (device, hwid, call_id) in self.calls

    def place_call(self, device: str, call_id: int, kind: int, age_ms: int, hwid: str = "") -> tuple[Effects, Call | None]:
        """A CALL from a terminal's board. A repeat of an open call (same device, board and call
        id) changes nothing. The hub checks the record for calls already cleared before this."""
        fx = Effects()
        existing = self.calls.get((device, hwid, call_id))
        if existing is not None:
            self._record(fx, "call_repeated", call=existing, age_ms=age_ms)
            return fx, existing
        if sum(1 for c in self.calls.values() if c.device == device and c.kind == kind) >= OPEN_CALLS_PER_KIND:
            return self._refuse_call(device, call_id, kind, hwid), None
        terminal = self.terminals[device]
        now = self.clock.wall()
        call = Call(id=self.next_call_id, device=device, call_id=call_id, kind=kind, room=terminal.room,
                    bed=terminal.bed, placed_at=now - min(age_ms, 86_400_000) / 1000.0, received_at=now,
                    alerted_at=now, hwid=hwid)
        self.next_call_id += 1
        if kind in self.config.escalation.broadcast_kinds:
            call.escalation = 1     # emergencies go everywhere at once
        call.deadline = self.clock.mono() + self._ack_timeout(call)
        # no undo: a call goes on the board even if the record cannot be written (it is shown as
        # not recorded, and the hub does not acknowledge it to the terminal until it is stored)
        self.calls[call.key] = call
        fx.calls[call.id] = call
        self._record(fx, "call_placed", call=call, age_ms=age_ms, bed=call.bed, escalation=call.escalation)
        # the terminal shows the call's real state: a call announced again to a host that lost
        # its record may still show "acknowledged" at the bedside from before
        self._call_state(fx, call, wardproto.ST_ESCALATED if call.escalation else wardproto.ST_PLACED, "")
        # routed to its people (their phones, CMD_NOTIFY where they are), then the chime elsewhere;
        # both go with the call even if the record cannot take it (the call is shown too)
        self._start_route(fx, call)
        self._announce(fx, call)
        return fx, call

    def _refuse_call(self, device: str, call_id: int, kind: int, hwid: str) -> Effects:
        """A CALL beyond OPEN_CALLS_PER_KIND: not taken. The session answers ERROR E_BUSY instead
        of CALL_ACK, so the terminal keeps it and sends it again (delayed, never lost); an alarm
        names the terminal, and the record gets the first refusal and then a count a minute."""
        fx = Effects()
        self.refused_calls.add((device, hwid, call_id))
        terminal = self.terminals[device]
        now, wall = self.clock.mono(), self.clock.wall()
        held = self._call_refusal_rows.admit(device, now, {"call_kind": KIND_NAMES.get(kind, str(kind))})
        if held is not None:
            self._record(fx, "call_refused", device, call_id=call_id, call_kind=KIND_NAMES.get(kind, str(kind)),
                         room=terminal.room, open=OPEN_CALLS_PER_KIND, unrecorded_before=held)
        alarm_id = f"misbehaving:{device}"
        alarm = self.alarms.get(alarm_id)
        refused = alarm.data["refused"] + 1 if alarm is not None else 1
        text = (f"terminal misbehaving: {device} (room {terminal.room}, bed {terminal.bed or '-'}) sends more calls "
                f"than a terminal holds: {refused} refused (at most {OPEN_CALLS_PER_KIND} open per kind)")
        if alarm is None:
            self._raise_alarm(fx, Alarm(alarm_id, "terminal_misbehaving", text, since=wall, last=wall, device=device,
                                        room=terminal.room, expires=now + self.config.timing.attempt_alarm_s,
                                        data={"refused": refused}))
            self._alarm_updates.published(alarm_id, now)
        else:
            alarm.count, alarm.last, alarm.text = refused, wall, text
            alarm.expires = now + self.config.timing.attempt_alarm_s
            alarm.data["refused"] = refused
            self._alarm_update(fx, alarm, now)
        return fx

    def take_refused_call(self, device: str, call_id: int, hwid: str = "") -> bool:
        """Was this CALL refused (over the cap)? Asked once by the session that got it."""
        try:
            self.refused_calls.remove((device, hwid, call_id))
            return True
        except KeyError:
            return False

    def _alarm_update(self, fx: Effects, alarm: Alarm, now: float) -> None:
        """A standing alarm changed (one more attempt): to the consoles now, or within a second."""
        if self._alarm_updates.changed(alarm.id, now):
            fx.alarms[alarm.id] = (alarm, True)

    def _flush_floods(self, fx: Effects, now: float) -> None:
        """From the timer tick: the held-back alarm updates and record counts of a flood."""
        for alarm_id in self._alarm_updates.due(now):
            alarm = self.alarms.get(alarm_id)
            if alarm is not None:
                fx.alarms[alarm_id] = (alarm, True)
            else:
                self._alarm_updates.forget(alarm_id)
        if len(self._alarm_updates) > 256:
            self._alarm_updates.keep_only(self.alarms)
        for device, held, details in self._call_refusal_rows.due(now):
            self._record(fx, "call_refused_summary", device, count=held, period_s=FLOOD_RECORD_PERIOD_S, **details)

    def reinstate_call(self, row: dict[str, Any]) -> Effects:
        """A call open in the record but not on the board (its CALL was taken back after a write
        failed while another change of it was stored): it comes back, as after a restart."""
        fx = Effects()
        self._restore_calls(fx, [row], self.clock.wall(), self.clock.mono())
        call = self.calls.get((row["device"], row.get("hwid") or "", row["call_id"]))
        if call is not None:
            fx.calls[call.id] = call
            self.next_call_id = max(self.next_call_id, call.id + 1)
        return fx

    def repeated_cleared_call(self, device: str, call_id: int, of: str, hwid: str = "") -> Effects:
        """A CALL or CANCEL of a call the record holds as cleared: nothing changes. A repeated
        CANCEL is told CLEARED again (its terminal may have missed the first CALL_STATE)."""
        fx = Effects()
        self._record(fx, "message_repeated", device, call_id=call_id, of=of, hwid=hwid)
        if of == "CANCEL":
            fx.messages.append(Message(device, wardproto.CALL_STATE, {"call": call_id, "state": wardproto.ST_CLEARED, "by": ""},
                                       hwid=hwid))
        return fx

    def cancel_call(self, device: str, call_id: int, reason: int, age_ms: int, hwid: str = "") -> Effects:
        fx = Effects()
        call = self.calls.get((device, hwid, call_id))
        if call is None:
            self._record(fx, "cancel_unknown_call", device, call_id=call_id, reason=CANCEL_REASONS.get(reason, str(reason)),
                         hwid=hwid)
            return fx
        fx.undo.append(lambda before=(call.state, call.cleared_at, call.cleared_reason, call.deadline,
                                      call.route.copy() if call.route else None):
                       self._reopen_call(call, *before))
        now = self.clock.wall()
        call.state = CLEARED
        call.cleared_at = max(call.placed_at, now - min(age_ms, 86_400_000) / 1000.0)
        call.cleared_reason = CANCEL_REASONS.get(reason, str(reason))
        call.deadline = None
        del self.calls[call.key]
        fx.calls[call.id] = call
        self._record(fx, "call_cleared", call=call, reason=call.cleared_reason, age_ms=age_ms)
        self._route_ended(fx, call, ROUTE_CLEARED)
        self._call_state(fx, call, wardproto.ST_CLEARED, "")
        fx.sound = True
        return fx

    def _reopen_call(self, call: Call, state: str, cleared_at: float | None, cleared_reason: str | None,
                     deadline: float | None, route: Any) -> None:
        """Undo cancel_call: its CANCEL could not be stored, so the call stands (the terminal
        sends the CANCEL again)."""
        call.state, call.cleared_at, call.cleared_reason, call.deadline = state, cleared_at, cleared_reason, deadline
        call.route = route
        self.calls.setdefault(call.key, call)

    def presence(self, device: str, on: bool, staff: str, resync: bool = False) -> Effects:
        """A nurse in a room (PRESENCE, or the heartbeat's presence bit) attends its calls."""
        fx = Effects()
        terminal = self.terminals[device]
        room_had_staff = self.room_has_presence(terminal.room)
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
                if call.room == terminal.room and call.state == ATTENDED:
                    call.deadline = None    # a nurse is back in the room before the grace ran out
                elif call.room == terminal.room and call.state in (PLACED, ACKNOWLEDGED):
                    call.state = ATTENDED
                    if call.attended_at is None:
                        call.attended_at = self.clock.wall()
                    call.attended_by = who
                    call.deadline = None
                    fx.calls[call.id] = call
                    self._record(fx, "call_attended", call=call, by=who)
                    self._call_state(fx, call, wardproto.ST_ATTENDED, who)
                    self._route_ended(fx, call, ROUTE_ATTENDED)
        elif room_had_staff and not self.room_has_presence(terminal.room):
            # the last nurse left a room where a call still stands (a bathroom cord not reset,
            # a code blue not cleared): it must not be forgotten, so it comes back as an alert —
            # after a short grace, because pressing presence to clear a call sends PRESENCE off
            # just before the CANCEL of that same press (the timer in _run_call_timers)
            for call in list(self.calls.values()):
                if call.room == terminal.room and call.state == ATTENDED:
                    call.deadline = self.clock.mono() + self._left_room_grace()
        # a badge says who: she is in this room now (or, presence ended, no longer)
        self._badge_presence(fx, device, on, staff)
        return fx

    def _left_room_grace(self) -> float:
        """How long a call attended in a room the last nurse left waits for its CANCEL before it
        comes back: two heartbeats, at least LEFT_ROOM_GRACE_S."""
        return max(LEFT_ROOM_GRACE_S, 2 * self.config.heartbeat_s)

    # ----- from the consoles -----

    def acknowledge(self, host_call_id: int, user: str) -> tuple[Effects, Call]:
        call = self.call_by_id(host_call_id)
        if call is None:
            raise WardError(WardError.NOT_FOUND, f"no open call {host_call_id}")
        fx = Effects()
        if call.state != PLACED:
            # acknowledging twice is harmless; the record says who tried
            self._record(fx, "call_acknowledge_ignored", call=call, user=user, why=f"call is already {call.state}")
            return fx, call
        fx.undo.append(lambda before={**{k: getattr(call, k) for k in _ACK_FIELDS},
                                      "route": call.route.copy() if call.route else None}: call.__dict__.update(before))
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
        self._route_taken(fx, call, user)
        return fx, call

    def accept(self, host_call_id: int, user: str) -> tuple[Effects, Call]:
        """"Coming": a nurse takes a call routed to her (her pocket console's Accept). The same
        as acknowledging it, recorded with her name; routing stops."""
        call = self.call_by_id(host_call_id)
        if call is None:
            raise WardError(WardError.NOT_FOUND, f"no open call {host_call_id}")
        step = call.route.step_name if call.route is not None else None
        fx, call = self.acknowledge(host_call_id, user)
        if fx.undo:     # acknowledged now (not a call acknowledged already)
            self._record(fx, "call_accepted", call=call, user=user, step=step, coming=True)
        return fx, call

    # ----- alerting the staff -----

    def _announce(self, fx: Effects, call: Call) -> None:
        """Tell the staff: a chime at terminals in other rooms — where a nurse is present, or at
        every online terminal once the call is escalated (emergencies start escalated).
        A terminal that chimed less than CHIME_PERIOD_S ago is not chimed again unless this
        call's priority is higher: a burst of calls is one chime, not a drum roll."""
        level = alarm_priority(call.kind)
        priority = bytes([level])
        now = self.clock.mono()
        # terminals where a nurse it is routed to stands were told with CMD_NOTIFY (routing.py)
        notified = set(call.route.notified) if call.route is not None and call.route.ended is None else set()
        # at escalation 0 only terminals with staff present chime: look at those alone
        targets = self.terminals.values() if call.escalation > 0 else [self.terminals[d] for d in sorted(self.present)]
        for terminal in targets:
            if terminal.room == call.room or not terminal.online or terminal.device in notified:
                continue
            if terminal.presence or call.escalation > 0:
                last = self._chimed.get(terminal.device)
                if last is not None and now - last[0] < CHIME_PERIOD_S and level <= last[1]:
                    continue
                self._chimed[terminal.device] = (now, level)
                fx.messages.append(Message(terminal.device, wardproto.COMMAND,
                                           {"cmd": wardproto.CMD_CHIME, "arg": priority}))

    def _ack_timeout(self, call: Call) -> float:
        return self.config.escalation.ack_timeout_s[call.kind]

    def _escalate(self, fx: Effects, call: Call) -> None:
        call.escalation += 1
        call.alerted_at = self.clock.wall()
        call.deadline = self.clock.mono() + self._ack_timeout(call)
        fx.calls[call.id] = call
        fx.sound = True
        self._record(fx, "call_escalated", call=call, escalation=call.escalation)
        self._call_state(fx, call, wardproto.ST_ESCALATED, "")
        self._renotify(fx, call)
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
        self._route_resumed(fx, call)
        self._announce(fx, call)

    def _run_call_timers(self, fx: Effects, now: float) -> None:
        """Escalate unacknowledged calls and re-alert unattended ones whose deadline passed."""
        for call in sorted(self.calls.values(), key=lambda c: c.id):
            if call.deadline is None or call.deadline > now:
                continue
            if call.state == PLACED:
                self._escalate(fx, call)
            elif call.state == ACKNOWLEDGED:
                self._realert(fx, call, "acknowledged but not attended in time")
            elif call.state == ATTENDED:    # its room emptied and no CANCEL came within the grace
                self._realert(fx, call, "staff left the room with the call still standing")

    # ----- after a restart -----

    def _restore_calls(self, fx: Effects, rows: list[dict[str, Any]], now_wall: float, now_mono: float) -> None:
        for row in rows:
            if row["state"] == CLEARED or row["kind"] not in KIND_NAMES:
                continue
            call = Call.from_row(row)
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
            self._restore_route(fx, call, now_wall, now_mono)
