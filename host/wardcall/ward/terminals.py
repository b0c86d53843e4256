"""TerminalRules: what the bed terminals tell the ward — sessions, heartbeats, faults, refused
devices, protocol problems — and supervision: a terminal silent too long is offline.

Built on CallRules: a heartbeat carries the presence bit, and a terminal that reconnects
catches up on the state of its open calls.
"""
from __future__ import annotations

from typing import Any

from ..protocol import wardproto
from .calls import CallRules
from .effects import Effects
from .model import FAULT_NAMES, PLACED, STATE_CODES, Alarm


class TerminalRules(CallRules):

    # ----- sessions -----

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

    # ----- what arrives on a session -----

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

    # ----- supervision -----

    def _supervise(self, fx: Effects, now: float) -> None:
        """Terminals silent for more than three heartbeats go offline, with an alarm."""
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

    # ----- after a restart -----

    def _restore_terminals(self, rows: list[dict[str, Any]], now_mono: float) -> None:
        """Terminals seen before must come back within three heartbeats, or they are offline."""
        for row in rows:
            terminal = self.terminals.get(row["device"])
            if terminal is None or not row["seen"]:
                continue
            terminal.seen = True
            terminal.last_seen = row["last_seen"]
            terminal.firmware, terminal.board = row["firmware"] or "", row["board"] or ""
            terminal.last_frame = now_mono     # three heartbeats' grace to reconnect
