"""WardViews: calls, terminals, rooms and staff in the JSON form the consoles get (docs/HOST.md, State)."""
from __future__ import annotations

from typing import Any

from ..protocol import KIND_NAMES, alarm_priority, wardproto
from .model import FAULT_NAMES, Call, Terminal
from .routing import route_view
from .staff import StaffRules


class WardViews(StaffRules):

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
            "escalation": call.escalation, "realerts": call.realerts, "hwid": call.hwid,
            "terminal_status": terminal.status if terminal else "unknown",
            # false while the record could not be written: shown and sounded all the same, and
            # not acknowledged to its terminal until it is stored
            "recorded": call.recorded,
            "route": route_view(call.route) if call.route is not None else None,
        }

    def terminal_view(self, terminal: Terminal) -> dict[str, Any]:
        # a snapshot builds this 5,000 times in one go: the common case (no faults) costs nothing extra
        faults = terminal.faults
        bits = terminal.status_bits
        return {
            "device": terminal.device, "room": terminal.room, "bed": terminal.bed, "status": terminal.status,
            "connected": terminal.connected, "presence": terminal.presence,
            "last_heartbeat": terminal.last_heartbeat, "last_seen": terminal.last_seen,
            "faults": sorted(FAULT_NAMES.get(f, str(f)) for f in faults) if faults else [],
            "cord_fault": bool(bits & wardproto.HB_CORD_FAULT) or wardproto.FAULT_CORD in faults,
            "pending": terminal.pending, "uptime": terminal.uptime,
            "firmware": terminal.firmware, "board": terminal.board, "address": terminal.address,
        }

    def room_view(self, room_id: str) -> dict[str, Any]:
        room = self.config.rooms[room_id]
        staff = self.room_staff(room_id)
        # the terminals with presence on, then who is there by badge (staff.py)
        people = self.room_people(room_id) if self.locations else []
        return {"id": room_id, "name": room.name, "presence": bool(staff), "staff": staff + people}

    def ordered_calls(self) -> list[Call]:
        """Priority first (code blue … technical), then oldest first."""
        return sorted(self.calls.values(), key=lambda c: (c.kind, c.placed_at, c.id))

    def staff_list(self) -> list[dict[str, Any]]:
        return [self.staff_view(u) for u in self.staff_users()]
