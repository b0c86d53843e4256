"""StaffRules: who of the care staff can be reached now, and where each is.

- Reachable: a live console session (the web layer says whose, `sessions_live`) and a pocket
  console heard from within `[routing] phone_silent_s` (`pocket_heartbeat`). Otherwise why not:
  "logged out" or "phone silent". Changes are recorded (`staff_reachability`).
- Where: a badge presented at a terminal (PRESENCE with the badge's UID in its staff field) puts
  its user in that room (`location_registered`, `location_updated` when she moves); presence
  ending at that terminal clears it (`location_cleared`). An unknown badge is recorded
  (`badge_unknown`, one a minute per terminal, then a count) and is plain presence.

Routing (routing.py) follows both through `_reach_changed` and `_location_changed`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..clock import Clock
from ..config import WardConfig
from .assignments import AssignmentRules
from .effects import Effects
from .flood import RecordGate

LOGGED_OUT = "logged out"
PHONE_SILENT = "phone silent"
BADGE_ROWS_PERIOD_S = 60.0      # unknown badges: one record row per terminal and minute, then a count
_HEX = re.compile(r"^[0-9a-f]{1,40}$")


@dataclass
class Location:
    room: str
    device: str          # the terminal the badge was presented at
    since: float         # wall


def shown_badge(text: str) -> str:
    """A staff field as it may be recorded: hex as it is, anything else cut and escaped."""
    return text if _HEX.match(text) else ascii(text[:40])


class StaffRules(AssignmentRules):

    def __init__(self, config: WardConfig, clock: Clock) -> None:
        super().__init__(config, clock)
        self.session_users: set[str] = set()          # users with a live console session
        self.pocket_seen: dict[str, float] = {}       # user -> mono of the latest pocket heartbeat
        self.locations: dict[str, Location] = {}      # user -> where her badge was presented
        self._reach: dict[str, str | None] = {u: LOGGED_OUT for u in self.staff_users()}
        self._by_badge = {u.badge: u.login for u in config.users.values() if u.badge}
        self._badge_rows = RecordGate(BADGE_ROWS_PERIOD_S, burst=1)

    def staff_users(self) -> list[str]:
        """The people the staff list shows: care staff, and anyone else with a badge."""
        return [u.login for u in self.config.users.values() if u.care or u.badge]

    # ----- reachable -----

    def why_unreachable(self, user: str) -> str | None:
        """None if a call routed to her reaches her now, else why not."""
        if user not in self.session_users:
            return LOGGED_OUT
        seen = self.pocket_seen.get(user)
        if seen is None or self.clock.mono() - seen > self.config.routing.phone_silent_s:
            return PHONE_SILENT
        return None

    def reachable(self, user: str) -> bool:
        return self.why_unreachable(user) is None

    def sessions_live(self, users: set[str]) -> Effects:
        """The users with a live console session now (from the web layer: logins, logouts,
        sessions that ran out)."""
        fx = Effects()
        if users != self.session_users:
            self.session_users = set(users)
            self._recheck_reach(fx, self.staff_users())
        return fx

    def pocket_heartbeat(self, user: str) -> Effects:
        """Her pocket console is open (it says so every 15 s)."""
        fx = Effects()
        self.pocket_seen[user] = self.clock.mono()
        self._recheck_reach(fx, [user])
        return fx

    def _recheck_reach(self, fx: Effects, users: list[str]) -> None:
        changed = []
        for user in users:
            if user not in self._reach:
                continue
            why = self.why_unreachable(user)
            if why != self._reach[user]:
                self._reach[user] = why
                changed.append(user)
                fx.staff.add(user)
                self._record(fx, "staff_reachability", user=user, reachable=why is None, why=why)
        if changed:
            self._reach_changed(fx, changed)

    def _reach_changed(self, fx: Effects, users: list[str]) -> None:
        """Some users became reachable or unreachable (routing.py follows it)."""

    def _staff_timers(self, fx: Effects, now: float) -> None:
        """Pocket consoles gone silent; unknown badges held back from the record."""
        self._recheck_reach(fx, self.staff_users())
        for device, held, details in self._badge_rows.due(now):
            self._record(fx, "badge_unknown_summary", str(device), count=held, period_s=BADGE_ROWS_PERIOD_S, **details)

    # ----- where -----

    def _badge_presence(self, fx: Effects, device: str, on: bool, staff: str) -> None:
        """PRESENCE at a terminal (called by calls.py): a known badge places its user there;
        presence ending there clears whoever was placed there."""
        terminal = self.terminals[device]
        if on:
            badge = staff.strip().lower()
            if not badge:
                return          # the presence button: plain presence
            user = self._by_badge.get(badge)
            if user is None:
                held = self._badge_rows.admit(device, self.clock.mono(), {"badge": shown_badge(badge), "room": terminal.room})
                if held is not None:
                    self._record(fx, "badge_unknown", device, badge=shown_badge(badge), room=terminal.room,
                                 unrecorded_before=held)
                return
            before = self.locations.get(user)
            self.locations[user] = Location(terminal.room, device, self.clock.wall())
            fx.staff.add(user)
            fx.rooms.add(terminal.room)
            if before is None:
                self._record(fx, "location_registered", device, user=user, room=terminal.room)
            else:
                fx.rooms.add(before.room)
                self._record(fx, "location_updated", device, user=user, room=terminal.room, from_room=before.room)
            self._location_changed(fx, user, before.room if before else None, terminal.room)
            return
        for user, where in list(self.locations.items()):
            if where.device == device:
                del self.locations[user]
                fx.staff.add(user)
                fx.rooms.add(where.room)
                self._record(fx, "location_cleared", device, user=user, room=where.room, why="presence ended")
                self._location_changed(fx, user, where.room, None)

    def _location_changed(self, fx: Effects, user: str, before: str | None, now: str | None) -> None:
        """A user moved (routing.py follows it)."""

    def room_people(self, room: str) -> list[str]:
        return sorted(u for u, where in self.locations.items() if where.room == room)

    # ----- the consoles' view -----

    def staff_view(self, user: str) -> dict[str, Any]:
        account = self.config.users[user]
        why = self.why_unreachable(user)
        where = self.locations.get(user)
        return {"user": user, "name": account.name, "role": account.role, "on_shift": self.on_shift(user),
                "reachable": why is None, "why_not": why, "room": where.room if where else None,
                "since": where.since if where else None}
