"""ConsoleRules: the consoles' side of the ward — how many are connected, silence and whether
they should sound, and the "no black hole" alarm when alerts stand with nobody watching.
"""
from __future__ import annotations

from typing import Any

from ..protocol import alarm_priority, wardproto
from .effects import Effects
from .model import PLACED, Alarm
from .state import WardState


class ConsoleRules(WardState):

    def set_consoles(self, count: int) -> Effects:
        fx = Effects()
        self.consoles = count
        if count > 0:
            self._no_console_since = None
            self._clear_alarm(fx, "no_console", "a console is connected")
        return fx

    def login_failed(self, user: str, address: str, failures: int, alarm_at: int) -> Effects:
        """A failed console login (the name already cut short and escaped). Past `alarm_at`
        failures of one name within the guard's window, a console alarm says someone is guessing."""
        fx = Effects()
        self._record(fx, "console_login_failed", None, user=user, address=address, failures=failures)
        if failures >= alarm_at:
            now = self.clock.wall()
            self._raise_alarm(fx, Alarm(
                id=f"login:{user}", kind="login_attempts",
                text=f"{failures} failed console logins for user {user!r} in 15 min (latest from {address})",
                since=now, last=now, expires=self.clock.mono() + self.config.timing.attempt_alarm_s,
                data={"user": user, "address": address, "failures": failures}))
        return fx

    # ----- sound -----

    def silence(self, seconds: float, user: str) -> Effects:
        """Silence every console. It is never taken back when the record cannot be written: the
        record alarm itself must be silenceable, and silence hides nothing (the line is held and
        written when the record can be)."""
        fx = Effects()
        now = self.clock.wall()
        self.silenced_at = now
        self.sounding_since_silence = {a.id for a in self.sounding.values() if a.last > now}
        self.silenced_until = now + seconds
        self.silenced_by = user
        self._silence_deadline = self.clock.mono() + seconds
        fx.sound = True
        self._record(fx, "silence", None, user=user, seconds=seconds)
        return fx

    def audible(self) -> bool:
        """Should the consoles sound? Yes while an alert stands that arrived or came back after
        the last silence (or the silence ran out), and always while an emergency (a high-priority
        call: code blue, staff assist) waits for acknowledgement — it overrides silence.
        Silence never hides anything visually."""
        waiting = [c for c in self.calls.values() if c.state == PLACED]
        if any(alarm_priority(c.kind) == wardproto.ALARM_HIGH for c in waiting):
            return True
        if not waiting and not self.sounding:
            return False
        if self.silenced_at is None or self._silence_deadline is None:
            return True
        # an alert that arrived or came back after the silence (the alarms' kept by _index_sounding)
        return bool(self.sounding_since_silence) or any(c.alerted_at > self.silenced_at for c in waiting)

    def sound_view(self) -> dict[str, Any]:
        return {"audible": self.audible(), "silenced_until": self.silenced_until, "silenced_by": self.silenced_by}

    def _end_silence(self, fx: Effects, now: float) -> None:
        if self._silence_deadline is not None and self._silence_deadline <= now:
            self._silence_deadline = None
            self.silenced_at = self.silenced_until = self.silenced_by = None
            fx.sound = True

    # ----- no black hole -----

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
