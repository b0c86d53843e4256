"""RoutingRules: a call's route to the people who should come (docs/HOST.md, "Routing").

A placed call starts at step 0 of its kind's chain (`[routing] chain`): `primary` (the bed's
nurse), `secondary` (her buddy), `charge` (the shift's charge nurse), `all` (every care-role
member on shift). A step's people who cannot be reached now (logged out, phone silent) are
skipped; a step that reaches nobody new passes on at once. A step waits `wait_s[kind]` for an
Accept, then passes on; a route only widens (earlier steps' people keep the call), and after the
last step it stays with everyone. A decline by every person of the current step passes it on at
once. Accept (or an acknowledge at a console), presence at the bedside and the call's clearing
end the route; a call that comes back (re-alert) is routed again from where it stood.

While a routed nurse is placed in a room by her badge (staff.py), that room's terminals are told
of the call with CMD_NOTIFY instead of the generic chime. Every step is recorded.
"""
from __future__ import annotations

from typing import Any

from ..clock import Clock
from ..config import WardConfig
from ..protocol import alarm_priority, wardproto
from .effects import Effects, Message
from .model import CMD_NOTIFY, PLACED, ROUTE_ACCEPTED, ROUTE_CLEARED, Call, Route, WardError
from .staff import StaffRules

NOTIFY_SHOW_S = 120           # a terminal's dome light shows a routed call this long (or until told to stop)
NO_ANSWER = "no answer"
DECLINED = "declined"
NOBODY_REACHABLE = "nobody reachable"
NOBODY_NEW = "nobody new"     # the step's people have the call already (a nurse who is also the charge)
NOTIFIES_KEPT = 1024          # CMD_NOTIFYs whose RESULT may still come


def route_view(route: Route) -> dict[str, Any]:
    """The call view's `route`."""
    return {"step": route.step, "steps": list(route.steps), "step_name": route.step_name, "to": list(route.to),
            "declined": list(route.declined), "skipped": [{"user": u, "why": w} for u, w in route.skipped.items()],
            "accepted_by": route.accepted_by if route.ended == ROUTE_ACCEPTED else None,
            "next_at": route.next_at, "ended": route.ended, "unassigned": route.unassigned}


class RoutingRules(StaffRules):

    def __init__(self, config: WardConfig, clock: Clock) -> None:
        super().__init__(config, clock)
        self._notifies: dict[int, tuple[str, bytes]] = {}     # cmd_id -> (device, arg) of a CMD_NOTIFY sent

    # ----- who a step reaches -----

    def _beds_of_call(self, call: Call) -> list[str]:
        bed = f"{call.room}/{call.bed}"
        if call.bed and bed in self.beds:
            return [bed]
        return self.beds_of_room(call.room)     # a room's own terminal (bathroom cord): the room's nurses

    def _resolve(self, call: Call, step: str) -> list[str]:
        """The care staff a step names now (reachable or not), from the current shift."""
        assignment = self.assignment_of(self.shift.id)
        if step == "primary":
            named = [assignment.primary(b) for b in self._beds_of_call(call)]
        elif step == "secondary":
            named = [assignment.secondary(b) for b in self._beds_of_call(call)]
        elif step == "charge":
            named = [assignment.charge]
        else:
            named = [u for u in self.care_staff() if self.on_shift(u)]
        users = self.config.users
        return list(dict.fromkeys(u for u in named if u is not None and u in users and users[u].care))

    @staticmethod
    def _routing(call: Call) -> Route | None:
        """The call's route while it is routing (not accepted, attended or cleared)."""
        route = call.route
        return route if route is not None and route.ended is None else None

    def _routed_calls(self) -> list[Call]:
        return [c for c in sorted(self.calls.values(), key=lambda c: c.id) if self._routing(c) is not None]

    # ----- the route's life -----

    def _start_route(self, fx: Effects, call: Call) -> None:
        if not self.care_staff():
            return          # a ward without care staff in its config: the consoles alone, as ever
        wall = self.clock.wall()
        call.route = Route(steps=tuple(self.config.routing.chain[call.kind]), started_at=wall, step_at=wall,
                           unassigned=not self._resolve(call, "primary"))
        self._enter(fx, call, 0)

    def _enter(self, fx: Effects, call: Call, index: int) -> None:
        """Go to step `index` (and on, while a step reaches nobody new or waits for nobody)."""
        route = call.route
        assert route is not None
        wall, mono = self.clock.wall(), self.clock.mono()
        while True:
            route.step, route.step_at = index, wall
            resolved = self._resolve(call, route.step_name)
            new: list[str] = []
            skipped: list[dict[str, str]] = []
            for user in resolved:
                if user in route.to or user in route.declined:
                    continue
                why = self.why_unreachable(user)
                if why is None:
                    new.append(user)
                else:
                    skipped.append({"user": user, "why": why})
                    route.skipped[user] = why
            self._route_to(route, new, wall)
            route.step_users = [u for u in resolved if u not in route.declined and self.reachable(u)]
            self._record(fx, "call_routed", call=call, step=route.step_name, step_index=index, to=new, skipped=skipped)
            route.next_at = route.deadline = None
            if route.last_step:
                break
            if not new:
                self._passed_on(fx, call, NOBODY_NEW if route.step_users else NOBODY_REACHABLE)
                index += 1
                continue
            wait = self.config.routing.wait_s[call.kind]
            if wait <= 0:
                index += 1          # no waiting (emergencies): every step's people at once
                continue
            route.next_at, route.deadline = wall + wait, mono + wait
            break
        self._sync_notify(fx, call)
        fx.calls[call.id] = call

    @staticmethod
    def _route_to(route: Route, users: list[str], wall: float) -> None:
        for user in users:
            route.to.append(user)
            route.routed_at.setdefault(user, wall)
            route.skipped.pop(user, None)

    def _passed_on(self, fx: Effects, call: Call, why: str) -> None:
        route = call.route
        assert route is not None
        route.passed_on += 1
        self._record(fx, "call_passed_on", call=call, from_step=route.step_name, to_step=route.steps[route.step + 1],
                     why=why)

    def _pass_on(self, fx: Effects, call: Call, why: str) -> None:
        route = call.route
        if route is None or route.last_step:
            return          # with everyone already: it stays there
        self._passed_on(fx, call, why)
        self._enter(fx, call, route.step + 1)

    def _check_step(self, fx: Effects, call: Call) -> None:
        """Nobody of the current step can take the call any more (all declined, or gone
        unreachable while it waited): it passes on at once."""
        route = self._routing(call)
        if route is None or route.last_step:
            return
        resolved = self._resolve(call, route.step_name)
        route.step_users = [u for u in resolved if u not in route.declined and self.reachable(u)]
        if not route.step_users:
            self._pass_on(fx, call, DECLINED if any(u in route.declined for u in resolved) else NOBODY_REACHABLE)

    def _widen(self, fx: Effects, call: Call) -> None:
        """People of the steps reached so far who can take it now (reachable again, newly
        assigned) get it too: a route only widens."""
        route = self._routing(call)
        if route is None:
            return
        new = []
        for step in route.steps[: route.step + 1]:
            for user in self._resolve(call, step):
                if user not in route.to and user not in route.declined and user not in new and self.reachable(user):
                    new.append(user)
        if new:
            self._route_to(route, new, self.clock.wall())
            self._record(fx, "call_routed", call=call, step=route.step_name, step_index=route.step, to=new, skipped=[],
                         widened=True)
            self._sync_notify(fx, call)
            fx.calls[call.id] = call

    def _route_taken(self, fx: Effects, call: Call, user: str) -> None:
        """Accepted, or acknowledged at a console: routing stops."""
        route = self._routing(call)
        if route is None:
            return
        route.accepted_by, route.accepted_at, route.accepted_step = user, self.clock.wall(), route.step
        route.ended = ROUTE_ACCEPTED
        route.next_at = route.deadline = None
        self._sync_notify(fx, call)
        fx.calls[call.id] = call

    def _route_ended(self, fx: Effects, call: Call, why: str) -> None:
        """Staff at the bedside, or the call cleared: the route ends with the call."""
        route = call.route
        if route is None:
            return
        if route.ended is None or why == ROUTE_CLEARED:
            route.ended = why
        route.next_at = route.deadline = None
        self._sync_notify(fx, call)
        fx.calls[call.id] = call

    def _route_resumed(self, fx: Effects, call: Call) -> None:
        """The call came back (acknowledged but nobody came, staff left with it standing): it
        is routed again from the step where it stood, to everyone it reached, waiting anew."""
        route = call.route
        if route is None:
            self._start_route(fx, call)
            return
        route.ended = None
        wall, mono = self.clock.wall(), self.clock.mono()
        route.step_at = wall
        route.next_at = route.deadline = None
        wait = self.config.routing.wait_s[call.kind]
        if not route.last_step and wait > 0:
            route.next_at, route.deadline = wall + wait, mono + wait
        self._record(fx, "call_routed", call=call, step=route.step_name, step_index=route.step,
                     to=[u for u in route.to if u not in route.declined], skipped=[], again=True)
        fx.calls[call.id] = call
        self._widen(fx, call)
        self._check_step(fx, call)
        self._sync_notify(fx, call)

    # ----- from the consoles -----

    def decline(self, host_call_id: int, user: str, reason: str = "") -> tuple[Effects, Call]:
        """She cannot take it ("busy"): once every person of the current step has declined, the
        call passes on at once. Only someone it is routed to now may decline it."""
        call = self.call_by_id(host_call_id)
        if call is None:
            raise WardError(WardError.NOT_FOUND, f"no open call {host_call_id}")
        route = self._routing(call)
        if route is None:
            why = call.route.ended if call.route is not None else "not routed"
            raise WardError(WardError.CONFLICT, f"call {host_call_id} is not being routed any more ({why})")
        if user not in route.to:
            raise WardError(WardError.CONFLICT, f"call {host_call_id} is not routed to {user}")
        fx = Effects()
        if user in route.declined:
            return fx, call         # declined already (a retry)
        before = route.copy()
        fx.undo.append(lambda: setattr(call, "route", before))
        route.declined.append(user)
        self._record(fx, "call_declined", call=call, user=user, reason=reason, step=route.step_name)
        fx.calls[call.id] = call
        self._sync_notify(fx, call)
        self._check_step(fx, call)
        return fx, call

    # ----- what staff.py and assignments.py tell -----

    def _reach_changed(self, fx: Effects, users: list[str]) -> None:
        for call in self._routed_calls():
            self._widen(fx, call)
            self._check_step(fx, call)

    def _staff_on_shift_changed(self, fx: Effects) -> None:
        super()._staff_on_shift_changed(fx)
        for call in self._routed_calls():
            self._widen(fx, call)
            self._check_step(fx, call)

    def _location_changed(self, fx: Effects, user: str, before: str | None, now: str | None) -> None:
        for call in self._routed_calls():
            if user in call.route.to:       # type: ignore[union-attr]
                self._sync_notify(fx, call)

    # ----- the timers -----

    def _run_route_timers(self, fx: Effects, now: float) -> None:
        """A step not answered in time passes the call on."""
        for call in self._routed_calls():
            route = call.route
            if route is not None and route.deadline is not None and route.deadline <= now:
                self._pass_on(fx, call, NO_ANSWER)

    # ----- the terminals of the room where a routed nurse is -----

    def _notify_devices(self, call: Call) -> set[str]:
        """The terminals that should show this call: those of each room where someone it is
        routed to (and who has not declined) is placed by her badge, other than its own room."""
        route = self._routing(call)
        if route is None:
            return set()
        rooms = {self.locations[u].room for u in route.to if u in self.locations and u not in route.declined}
        rooms.discard(call.room)
        # by the rooms' own lists: this runs for every call placed, and a ward may have thousands
        return {t.device for room in rooms for t in self.room_terminals.get(room, ()) if t.connected}

    def _sync_notify(self, fx: Effects, call: Call) -> None:
        route = call.route
        if route is None:
            return
        wanted = self._notify_devices(call)
        shown = set(route.notified)
        if wanted == shown:
            return
        route.notified = sorted(wanted)
        for device in sorted(wanted - shown):
            if self._most_urgent_at(device) is call:
                self._notify(fx, call, device)
        for device in sorted(shown - wanted):
            other = self._most_urgent_at(device)
            if other is not None:
                self._notify(fx, other, device)     # the next call routed there shows again
            else:
                self._notify(fx, call, device, stop=True)
        fx.calls[call.id] = call

    def _most_urgent_at(self, device: str) -> Call | None:
        """The most urgent routed call a terminal is to show (a newer CMD_NOTIFY replaces the
        one shown: a less urgent call does not replace a more urgent one)."""
        shown = [c for c in self._routed_calls() if device in c.route.notified]     # type: ignore[union-attr]
        return min(shown, key=lambda c: (c.kind, c.placed_at, c.id), default=None)

    def _notify(self, fx: Effects, call: Call, device: str, stop: bool = False) -> None:
        terminal = self.terminals[device]
        level = alarm_priority(call.kind)
        if terminal.notify_unsupported:
            if not stop:    # an older terminal: the chime it knows
                fx.messages.append(Message(device, wardproto.COMMAND, {"cmd": wardproto.CMD_CHIME, "arg": bytes([level])}))
            return
        seconds = 0 if stop else NOTIFY_SHOW_S
        fx.messages.append(Message(device, wardproto.COMMAND, {"cmd": CMD_NOTIFY,
                                                               "arg": wardproto.notify_arg(call.kind, level, seconds)}))

    def _renotify(self, fx: Effects, call: Call) -> None:
        """The call escalated: the terminals showing it sound again."""
        route = self._routing(call)
        for device in route.notified if route is not None else []:
            if self._most_urgent_at(device) is call:
                self._notify(fx, call, device)

    def notify_sent(self, cmd_id: int, device: str, arg: bytes) -> None:
        """The hub sent a CMD_NOTIFY with this cmd_id (its RESULT comes to command_result)."""
        self._notifies[cmd_id] = (device, arg)
        while len(self._notifies) > NOTIFIES_KEPT:
            del self._notifies[next(iter(self._notifies))]

    def _notify_answered(self, fx: Effects, device: str, cmd_id: int, ok: bool) -> None:
        sent = self._notifies.pop(cmd_id, None)
        if sent is not None and sent[0] == device and not ok:
            fx.merge(self.notify_refused(device, sent[1]))

    def notify_refused(self, device: str, arg: bytes) -> Effects:
        """A terminal answered CMD_NOTIFY with RESULT ok=0 (firmware without it): it gets the
        chime instead, now and from now on (until it connects again)."""
        fx = Effects()
        terminal = self.terminals.get(device)
        if terminal is None:
            return fx
        if not terminal.notify_unsupported:
            terminal.notify_unsupported = True
            self._record(fx, "notify_unsupported", device, why="the terminal refused CMD_NOTIFY: it gets CMD_CHIME")
        if len(arg) >= 3 and arg[2] != 0:
            fx.messages.append(Message(device, wardproto.COMMAND, {"cmd": wardproto.CMD_CHIME, "arg": bytes([arg[1]])}))
        return fx

    # ----- after a restart -----

    def _restore_route(self, fx: Effects, call: Call, now_wall: float, now_mono: float) -> None:
        """A route resumes where it was; its wait continues from the stored wall time. A call
        stored before routing existed (an older record) and still waiting is routed now."""
        route = call.route
        if route is None:
            if call.state == PLACED:
                self._start_route(fx, call)
            return
        if route.ended is None and route.next_at is not None:
            route.deadline = now_mono + (route.next_at - now_wall)
