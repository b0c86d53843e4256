"""Ward: the rules put together, with what spans them all — the timers (tick), the restart
(restore) and the whole state for a console (snapshot)."""
from __future__ import annotations

from typing import Any

from .consoles import ConsoleRules
from .effects import Effects
from .links import LinkRules
from .terminals import TerminalRules
from .views import WardViews


class Ward(TerminalRules, ConsoleRules, LinkRules, WardViews):

    def tick(self) -> Effects:
        """Run every timer that is due: escalation, re-alert, supervision, expiries."""
        fx = Effects()
        now = self.clock.mono()
        self._check_shift(fx)
        self._staff_timers(fx, now)
        self._run_call_timers(fx, now)
        self._run_route_timers(fx, now)
        self._supervise(fx, now)
        self._expire_alarms(fx, now)
        self._end_silence(fx, now)
        self._check_black_hole(fx, now)
        return fx

    def restore(self, calls: list[dict[str, Any]], terminals: list[dict[str, Any]], next_call_id: int,
                assignments: list[dict[str, Any]] | None = None) -> Effects:
        """Bring back the shifts' assignments, open calls with their state, timers and routes,
        and which terminals were ever seen (those must come back within three heartbeats, or
        they are offline)."""
        fx = Effects()
        now_wall, now_mono = self.clock.wall(), self.clock.mono()
        self.next_call_id = max(self.next_call_id, next_call_id)
        self._restore_assignments(fx, assignments or [])
        # the host's restart is not a phone's silence: pocket consoles get phone_silent_s to be heard again
        self.pocket_seen = {user: now_mono for user in self.staff_users()}
        self._restore_calls(fx, calls, now_wall, now_mono)
        self._restore_terminals(terminals, now_mono)
        return fx

    def snapshot(self, large: bool = True) -> dict[str, Any]:
        """The whole state for a console. large=False leaves the terminals and rooms (the lists
        that grow with the ward) empty, for a caller that builds them in turns (hub.py)."""
        return {
            "ward": self.config.ward,
            "time": self.clock.wall(),
            "heartbeat_ms": self.config.timing.heartbeat_ms,
            "calls": [self.call_view(c) for c in self.ordered_calls()],
            "terminals": [self.terminal_view(t) for t in self.terminal_order] if large else [],
            "rooms": [self.room_view(r) for r in self.config.rooms] if large else [],
            "alarms": [a.view() for a in sorted(self.alarms.values(), key=lambda a: (a.since, a.id))],
            "sound": self.sound_view(),
            "consoles": self.consoles,
            "staff": self.staff_list(),
        }
