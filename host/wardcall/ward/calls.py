"""CallRules: a call's life — placed, acknowledged, attended (staff presence), cleared — and
what keeps it from being forgotten: escalation and re-alert (docs/HOST.md, Behaviour).
"""
from __future__ import annotations

from typing import Any

from ..protocol import KIND_NAMES, alarm_priority, wardproto
from .effects import Effects, Message
from .model import ACKNOWLEDGED, ATTENDED, CALL_COLUMNS, CANCEL_REASONS, CLEARED, PLACED, Call, WardError
from .state import WardState


_ACK_FIELDS = ("state", "acknowledged_at", "last_acknowledged_at", "acknowledged_by", "deadline")


class CallRules(WardState):

    # ----- from the terminals -----

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
        # no undo: a call goes on the board even if the record cannot be written (it is shown as
        # not recorded, and the hub does not acknowledge it to the terminal until it is stored)
        self.calls[call.key] = call
        fx.calls[call.id] = call
        self._record(fx, "call_placed", call=call, age_ms=age_ms, bed=call.bed, escalation=call.escalation)
        self._announce(fx, call)
        return fx, call

    def reinstate_call(self, row: dict[str, Any]) -> Effects:
        """A call open in the record but not on the board (its CALL was taken back after a write
        failed while another change of it was stored): it comes back, as after a restart."""
        fx = Effects()
        self._restore_calls(fx, [row], self.clock.wall(), self.clock.mono())
        call = self.calls.get((row["device"], row["call_id"]))
        if call is not None:
            fx.calls[call.id] = call
            self.next_call_id = max(self.next_call_id, call.id + 1)
        return fx

    def repeated_cleared_call(self, device: str, call_id: int, of: str) -> Effects:
        """A CALL or CANCEL of a call the record holds as cleared: nothing changes. A repeated
        CANCEL is told CLEARED again (its terminal may have missed the first CALL_STATE)."""
        fx = Effects()
        self._record(fx, "message_repeated", device, call_id=call_id, of=of)
        if of == "CANCEL":
            fx.messages.append(Message(device, wardproto.CALL_STATE, {"call": call_id, "state": wardproto.ST_CLEARED, "by": ""}))
        return fx

    def cancel_call(self, device: str, call_id: int, reason: int, age_ms: int) -> Effects:
        fx = Effects()
        call = self.calls.get((device, call_id))
        if call is None:
            self._record(fx, "cancel_unknown_call", device, call_id=call_id, reason=CANCEL_REASONS.get(reason, str(reason)))
            return fx
        fx.undo.append(lambda before=(call.state, call.cleared_at, call.cleared_reason, call.deadline):
                       self._reopen_call(call, *before))
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

    def _reopen_call(self, call: Call, state: str, cleared_at: float | None, cleared_reason: str | None,
                     deadline: float | None) -> None:
        """Undo cancel_call: its CANCEL could not be stored, so the call stands (the terminal
        sends the CANCEL again)."""
        call.state, call.cleared_at, call.cleared_reason, call.deadline = state, cleared_at, cleared_reason, deadline
        self.calls.setdefault(call.key, call)

    def presence(self, device: str, on: bool, staff: str, resync: bool = False) -> Effects:
        """A nurse in a room (PRESENCE, or the heartbeat's presence bit) attends its calls."""
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
        fx.undo.append(lambda before={k: getattr(call, k) for k in _ACK_FIELDS}: call.__dict__.update(before))
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

    # ----- alerting the staff -----

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

    def _run_call_timers(self, fx: Effects, now: float) -> None:
        """Escalate unacknowledged calls and re-alert unattended ones whose deadline passed."""
        for call in sorted(self.calls.values(), key=lambda c: c.id):
            if call.deadline is None or call.deadline > now:
                continue
            if call.state == PLACED:
                self._escalate(fx, call)
            elif call.state == ACKNOWLEDGED:
                self._realert(fx, call, "acknowledged but not attended in time")

    # ----- after a restart -----

    def _restore_calls(self, fx: Effects, rows: list[dict[str, Any]], now_wall: float, now_mono: float) -> None:
        for row in rows:
            if row["state"] == CLEARED or row["kind"] not in KIND_NAMES:
                continue
            call = Call(**{k: row[k] for k in CALL_COLUMNS}, recorded=True)
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
