"""TerminalRules: what the bed terminals tell the ward — sessions, heartbeats, faults, refused
devices, protocol problems — and supervision: a terminal silent too long is offline.

Built on CallRules: a heartbeat carries the presence bit, and a terminal that reconnects
catches up on the state of its open calls.
"""
from __future__ import annotations

from typing import Any

from ..clock import Clock
from ..config import WardConfig
from ..protocol import wardproto
from .calls import FLOOD_RECORD_PERIOD_S, CallRules
from .effects import Effects
from .flood import RecordGate
from .model import FAULT_NAMES, PLACED, STATE_CODES, Alarm

# Refused devices (forged or unknown ids, wrong keys) are grouped by source address: one alarm per
# source, at most SOURCE_ALARMS of them; attempts from further sources share one more alarm.
SOURCE_ALARMS = 5
OTHER_SOURCES = "attempt:others"
RECENT_IDS = 5                  # device ids an attempt alarm lists (the latest)
SOURCES_COUNTED = 4096          # distinct sources the shared alarm counts exactly
FRAME_ROWS_PER_MINUTE = 10      # rejected frames recorded one by one per device (or source) and minute
FRAME_SOURCES = 64              # sources without a session whose rejected frames are counted apart


def source_of(address: str) -> str:
    """The host part of "host:port" (IPv6 addresses keep their colons)."""
    return address.rsplit(":", 1)[0] if ":" in address else address


class TerminalRules(CallRules):

    def __init__(self, config: WardConfig, clock: Clock) -> None:
        super().__init__(config, clock)
        self._refusal_rows = RecordGate(FLOOD_RECORD_PERIOD_S, burst=1)        # by alarm id
        self._frame_rows = RecordGate(FLOOD_RECORD_PERIOD_S, burst=FRAME_ROWS_PER_MINUTE)
        self._other_sources: set[str] = set()

    # ----- sessions -----

    def terminal_connected(self, device: str, firmware: str, board: str, caps: int, address: str,
                           hwid: str = "") -> Effects:
        fx = Effects()
        terminal = self.terminals[device]
        terminal.seen = True
        terminal.connected = True
        terminal.firmware, terminal.board, terminal.address = firmware, board, address
        terminal.notify_unsupported = False     # new firmware may know CMD_NOTIFY now
        self._record(fx, "terminal_connected", device, firmware=firmware, board=board, caps=caps, address=address,
                     hwid=hwid)
        fx.merge(self.frame_received(device))
        fx.terminals[device] = terminal
        # the board that missed CALL_STATEs while away catches up on its own calls (SESSION.md, Calls)
        for call in self.open_calls_of(device):
            if call.hwid != hwid:
                continue
            state = wardproto.ST_ESCALATED if call.state == PLACED and (call.escalation or call.realerts) else STATE_CODES[call.state]
            self._call_state(fx, call, state, call.attended_by or call.acknowledged_by or "")
        return fx

    def boards_claim(self, device: str, sessions: list[tuple[str, str]], why: str, standing: bool) -> Effects:
        """Two physical boards claim one device id (a replacement plugged in beside the old one,
        a cloned board or key): an alarm naming both. `sessions` are (hwid, address) pairs.
        While both are connected (`standing`) it stays; otherwise it expires like an attempt."""
        fx = Effects()
        terminal = self.terminals[device]
        now, wall = self.clock.mono(), self.clock.wall()
        listed = " and ".join(f"{address} (board {hwid[:12] or '?'})" for hwid, address in sessions)
        text = f"two boards claim {device} (room {terminal.room}, bed {terminal.bed or '-'}): {listed}; {why}"
        self._raise_alarm(fx, Alarm(f"boards:{device}", "duplicate_device", text, since=wall, last=wall, device=device,
                                    room=terminal.room, expires=None if standing else now + self.config.timing.attempt_alarm_s,
                                    data={"sessions": [{"hwid": h, "address": a} for h, a in sessions]}))
        self._record(fx, "boards_claim_device", device, sessions=[list(p) for p in sessions], why=why)
        fx.sound = True
        return fx

    def boards_claim_ended(self, device: str) -> Effects:
        """Only one board of the device is connected again: the alarm stays a while (the
        technician sees it), then expires."""
        fx = Effects()
        alarm = self.alarms.get(f"boards:{device}")
        if alarm is not None and alarm.expires is None:
            alarm.expires = self.clock.mono() + self.config.timing.attempt_alarm_s
            fx.alarms[alarm.id] = (alarm, True)
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
        """A HELLO or DISCOVER refused (unknown device, wrong key). Thousands of forged ids must
        not bury a call: attempts are one alarm per source address with a count (the first
        SOURCE_ALARMS sources, the rest share one), a changed count reaches the consoles at most
        once a second, and the record gets the first attempt, then one count a minute."""
        fx = Effects()
        shown = device[:64] or "?"
        source = source_of(address)
        now, wall = self.clock.mono(), self.clock.wall()
        alarm_id = f"attempt:{source}"
        if alarm_id not in self.alarms and alarm_id not in self._refusal_rows:
            standing = sum(1 for a in self.alarms.values() if a.kind == "device_trying_to_connect" and a.id != OTHER_SOURCES)
            if standing >= SOURCE_ALARMS:
                alarm_id = OTHER_SOURCES
        if alarm_id == OTHER_SOURCES and len(self._other_sources) < SOURCES_COUNTED:
            self._other_sources.add(source)
        held = self._refusal_rows.admit(alarm_id, now, {"address": address, "claimed_device": shown, "reason": reason})
        if held is not None:
            self._record(fx, "auth_refused", None, claimed_device=shown, address=address, reason=reason,
                         unrecorded_before=held)
        alarm = self.alarms.get(alarm_id)
        expires = now + self.config.timing.attempt_alarm_s
        if alarm is None:
            alarm = Alarm(id=alarm_id, kind="device_trying_to_connect", text="", since=wall, last=wall, expires=expires,
                          data={"claimed_devices": []})
            self._attempt(alarm, shown, address, reason)
            self._raise_alarm(fx, alarm)
            self._alarm_updates.published(alarm_id, now)
        else:
            alarm.count += 1
            alarm.last, alarm.expires = wall, expires
            self._attempt(alarm, shown, address, reason)
            self._alarm_update(fx, alarm, now)
        return fx

    def _attempt(self, alarm: Alarm, shown: str, address: str, reason: str) -> None:
        """One more refused attempt on its alarm: the latest ids, address and reason."""
        recent = [d for d in alarm.data["claimed_devices"] if d != shown][-(RECENT_IDS - 1):] + [shown]
        alarm.data.update(claimed_device=shown, claimed_devices=recent, address=address, reason=reason)
        attempts = f"{alarm.count} attempt{'s' if alarm.count > 1 else ''}"
        if alarm.id == OTHER_SOURCES:
            sources = len(self._other_sources)
            alarm.data["sources"] = sources
            where = f"{sources}{'+' if sources >= SOURCES_COUNTED else ''} more addresses (latest {address})"
        else:
            where = source_of(address)
        alarm.text = f"device trying to connect from {where}: {attempts}, latest {', '.join(recent)} ({reason})"

    def _flush_refusals(self, fx: Effects, now: float) -> None:
        """From the timer tick: the attempts held back from the record, as one row per source."""
        for alarm_id, held, details in self._refusal_rows.due(now):
            alarm = self.alarms.get(alarm_id)
            recent = alarm.data["claimed_devices"] if alarm is not None else [details.get("claimed_device")]
            self._record(fx, "auth_refused_summary", None, count=held, period_s=FLOOD_RECORD_PERIOD_S,
                         claimed_devices=recent, **details)
        if OTHER_SOURCES not in self.alarms and OTHER_SOURCES not in self._refusal_rows:
            self._other_sources.clear()
        for key, held, details in self._frame_rows.due(now):
            details = dict(details)
            self._record(fx, "frame_rejected_summary", details.pop("device", None), count=held,
                         period_s=FLOOD_RECORD_PERIOD_S, **details)

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

    def quiet_heartbeat(self, device: str, status: int, pending: int, uptime: int) -> bool:
        """frame_received and heartbeat together for a heartbeat that changes nothing to store
        or show (the terminal online, its status bits and presence as they were): done here,
        True. Otherwise False and nothing is done: the caller goes through those two and
        applies their effects. Lets a session take the usual heartbeat without a task's turn."""
        terminal = self.terminals[device]
        if (not terminal.online or status != terminal.status_bits
                or bool(status & wardproto.HB_PRESENCE) != terminal.presence):
            return False
        terminal.last_frame = self.clock.mono()
        terminal.last_seen = terminal.last_heartbeat = self.clock.wall()
        terminal.pending, terminal.uptime = pending, uptime
        return True

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
        """A rejected frame: recorded one by one up to FRAME_ROWS_PER_MINUTE per device (or per
        source address before a session), then counted."""
        fx = Effects()
        key: str = device or source_of(address)
        if device is None and key not in self._frame_rows and len(self._frame_rows) >= FRAME_SOURCES:
            key = "others"
        held = self._frame_rows.admit(key, self.clock.mono(), {"device": device, "address": address, "problem": problem})
        if held is not None:
            self._record(fx, "frame_rejected", device, address=address, problem=problem, closed=closed,
                         unrecorded_before=held)
        return fx

    def command_result(self, device: str, cmd_id: int, ok: bool, detail: str) -> Effects:
        fx = Effects()
        self._record(fx, "command_result", device, cmd_id=cmd_id, ok=ok, detail=detail)
        self._notify_answered(fx, device, cmd_id, ok)       # a CMD_NOTIFY refused: the chime instead
        return fx

    # ----- supervision -----

    def _supervise(self, fx: Effects, now: float) -> None:
        """Terminals silent for more than three heartbeats go offline, with an alarm."""
        self._flush_floods(fx, now)
        self._flush_refusals(fx, now)
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
