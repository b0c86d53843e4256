"""The links' security as the ward sees it (docs/PROTOCOL.md section 13): a terminal that
refuses the host's certificate (it said so in an authenticated REPORT), plain TCP or HTTP set
for bench work, a host certificate near its end. Each is an alarm naming what to do."""
from __future__ import annotations

from .effects import Effects
from .model import Alarm
from .state import WardState


class LinkRules(WardState):

    def tls_refused(self, device: str, address: str, reason: str) -> Effects:
        """A terminal reports it refused the host's certificate: it cannot connect, and says why.
        One alarm per terminal (sounding when it is raised, recorded once), standing while reports
        come (each is counted on it)."""
        fx = Effects()
        terminal = self.terminals.get(device)
        if terminal is None:
            return fx
        now, wall = self.clock.mono(), self.clock.wall()
        alarm_id = f"tls:{device}"
        new = alarm_id not in self.alarms
        text = (f"{device} (room {terminal.room}, bed {terminal.bed or '-'}) refuses the host's TLS certificate "
                f"and cannot connect: {reason} (reported from {address}; check [tls] and the host certificate: "
                "wardcall ca show)")
        self._raise_alarm(fx, Alarm(alarm_id, "tls_refused", text, since=wall, last=wall, device=device,
                                    room=terminal.room, expires=now + self.config.timing.attempt_alarm_s,
                                    data={"reason": reason, "address": address}))
        if new:
            fx.sound = True
        return fx

    def tls_accepted(self, device: str) -> Effects:
        """The terminal has a session again: its certificate alarm, if any, clears."""
        fx = Effects()
        if f"tls:{device}" in self.alarms:
            self._clear_alarm(fx, f"tls:{device}", "the terminal connected over TLS")
        return fx

    def link_setting_alarm(self, alarm_id: str, text: str) -> Effects:
        """A standing alarm for a setting that sends ward data in clear ([tls] terminals or
        console "plain"/"http") or a host certificate that needs a person."""
        fx = Effects()
        wall = self.clock.wall()
        self._raise_alarm(fx, Alarm(alarm_id, "link_security", text, since=wall, last=wall))
        return fx

    def link_setting_ok(self, alarm_id: str, why: str) -> Effects:
        fx = Effects()
        if alarm_id in self.alarms:
            self._clear_alarm(fx, alarm_id, why)
        return fx
