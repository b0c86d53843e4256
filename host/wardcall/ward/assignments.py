"""AssignmentRules: who looks after which bed in each shift — the shift's charge nurse and each
bed's primary and secondary (buddy) nurse — and the standing alarm while a bed has no primary
nurse (docs/HOST.md, "Assignments"). Every change is a line in the record; the assignment itself
goes to the record's assignment tables (Effects.assignments).
"""
from __future__ import annotations

from typing import Any

from ..clock import Clock
from ..config import WardConfig
from .effects import Effects
from .model import Alarm, Assignment, WardError
from .shifts import ShiftInstance, previous_shift, shift_at, shift_by_id
from .state import WardState

UNASSIGNED_ALARM = "unassigned_beds"
UNASSIGNED_LISTED = 12          # beds named in the alarm's text; the rest are counted
UNSET: Any = object()           # "not given": the charge nurse stays as she is


class AssignmentRules(WardState):

    def __init__(self, config: WardConfig, clock: Clock) -> None:
        super().__init__(config, clock)
        self.assignments: dict[str, Assignment] = {}
        self.shift: ShiftInstance = shift_at(config.shifts, clock.wall())
        self.beds: list[str] = self._ward_beds()
        self._unassigned_checked = False

    def _ward_beds(self) -> list[str]:
        """Every bed of the ward as "<room>/<bed>": a room's listed beds, or the beds its
        terminals name when it lists none."""
        beds = []
        for room_id, room in self.config.rooms.items():
            names = list(room.beds) or sorted({t.bed for t in self.room_terminals.get(room_id, ()) if t.bed})
            beds += [f"{room_id}/{bed}" for bed in names]
        return beds

    def bed_name(self, bed: str) -> str:
        room_id, _, name = bed.partition("/")
        room = self.config.rooms.get(room_id)
        return f"{room.name if room else 'Room ' + room_id} bed {name}"

    def beds_of_room(self, room: str) -> list[str]:
        return [b for b in self.beds if b.partition("/")[0] == room]

    def care_staff(self) -> list[str]:
        return [u.login for u in self.config.users.values() if u.care]

    # ----- which shift -----

    def shift_named(self, spec: str | None) -> ShiftInstance:
        """"current" (or None), "previous", or an id like 2026-12-01/early."""
        if spec in (None, "", "current"):
            return self.shift
        if spec == "previous":
            return previous_shift(self.config.shifts, self.shift)
        try:
            return shift_by_id(self.config.shifts, spec)
        except ValueError as exc:
            raise WardError(WardError.INVALID, str(exc)) from None

    def assignment_of(self, shift_id: str) -> Assignment:
        """The shift's assignment (an empty one if nobody was assigned yet; not kept until changed)."""
        return self.assignments.get(shift_id) or Assignment(shift_id)

    def on_shift(self, user: str) -> bool:
        """Named in the current shift's assignment; while the shift names nobody at all, every
        care-role user counts (a ward that does not assign still routes calls to everyone)."""
        account = self.config.users.get(user)
        if account is None or not account.care:
            return False
        people = self.assignment_of(self.shift.id).people()
        return user in people if people else True

    def assignment_view(self, shift: ShiftInstance) -> dict[str, Any]:
        assignment = self.assignment_of(shift.id)
        beds = []
        for bed in self.beds:
            room, _, name = bed.partition("/")
            beds.append({"room": room, "bed": name, "primary": assignment.primary(bed), "secondary": assignment.secondary(bed)})
        staff = [{"user": u.login, "name": u.name, "role": u.role} for u in self.config.users.values() if u.care]
        return {**shift.view(), "charge": assignment.charge, "beds": beds, "staff": staff,
                "unassigned": [b for b in self.beds if assignment.primary(b) is None]}

    # ----- changes from the consoles -----

    def assign(self, user: str, shift_spec: str | None, charge: Any = UNSET,
               changes: list[dict[str, Any]] | None = None) -> tuple[Effects, ShiftInstance]:
        """Set the charge nurse and beds' nurses of a shift. `changes`: [{"beds": [...]} or
        {"rooms": [...]}, "primary": user|None (optional), "secondary": user|None (optional)}].
        Unknown beds, rooms or users, or users who are not care staff: WardError naming them."""
        shift = self.shift_named(shift_spec)
        plan = self._plan(charge, changes or [])
        assignment = self.assignments.setdefault(shift.id, Assignment(shift.id))
        # not taken back if the record cannot be written (like a silence): it is shown, and its
        # lines are held and written when the record can be
        fx = Effects()
        if charge is not UNSET and charge != assignment.charge:
            self._record(fx, "assignment_changed", user=user, shift=shift.id, bed=None, field="charge",
                         before=assignment.charge, after=charge)
            assignment.charge = charge
        for bed, field_name, who in plan:
            primary, secondary = assignment.beds.get(bed, (None, None))
            old = primary if field_name == "primary" else secondary
            if old == who:
                continue
            assignment.beds[bed] = (who, secondary) if field_name == "primary" else (primary, who)
            self._record(fx, "assignment_changed", user=user, shift=shift.id, bed=bed, field=field_name,
                         before=old, after=who)
        self._assignment_changed(fx, assignment)
        return fx, shift

    def _plan(self, charge: Any, changes: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
        """(bed, "primary"|"secondary", user or None) for every change asked, checked first: a
        request with anything unknown changes nothing."""
        problems: list[str] = []
        users = self.config.users

        def check_user(who: Any, what: str) -> None:
            if who is None:
                return
            if not isinstance(who, str):
                problems.append(f"{what} must be a user name or null")
            elif who not in users:
                problems.append(f"unknown user {who[:64]!r}")
            elif not users[who].care:
                problems.append(f"{who} is a {users[who].role.replace('_', ' ')}, not care staff (nurse, aide, charge nurse)")

        if charge is not UNSET:
            check_user(charge, "charge")
        plan: list[tuple[str, str, str | None]] = []
        for i, change in enumerate(changes):
            if not isinstance(change, dict):
                problems.append(f"set[{i}] must be an object")
                continue
            extra = sorted(set(change) - {"beds", "rooms", "primary", "secondary"})
            if extra:
                problems.append(f"set[{i}]: unknown key {extra[0][:40]!r} (keys: beds or rooms, primary, secondary)")
            beds = self._beds_named(i, change, problems)
            for field_name in ("primary", "secondary"):
                if field_name in change:
                    check_user(change[field_name], f"set[{i}] {field_name}")
                    plan += [(bed, field_name, change[field_name]) for bed in beds]
        if problems:
            raise WardError(WardError.INVALID, "; ".join(dict.fromkeys(problems)))
        return plan

    def _beds_named(self, i: int, change: dict[str, Any], problems: list[str]) -> list[str]:
        if ("beds" in change) == ("rooms" in change):
            problems.append(f"set[{i}] needs either \"beds\" or \"rooms\"")
            return []
        names = change.get("beds", change.get("rooms"))
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            problems.append(f"set[{i}]: beds or rooms must be a list of names")
            return []
        if "rooms" in change:
            unknown = [r for r in names if r not in self.config.rooms]
            if unknown:
                problems.append("unknown room" + ("s " if len(unknown) > 1 else " ") + ", ".join(repr(r[:40]) for r in unknown[:10]))
            return [b for r in names for b in self.beds_of_room(r)]
        unknown = [b for b in names if b not in self.beds]
        if unknown:
            problems.append("unknown bed" + ("s " if len(unknown) > 1 else " ") + ", ".join(repr(b[:40]) for b in unknown[:10])
                            + " (beds are named \"<room>/<bed>\")")
        return [b for b in names if b in self.beds]

    def copy_assignment(self, user: str, from_spec: str | None, to_spec: str | None) -> tuple[Effects, ShiftInstance]:
        """The whole assignment of one shift (the previous, usually) becomes another's."""
        source = self.shift_named(from_spec or "previous")
        target = self.shift_named(to_spec)
        if source.id == target.id:
            raise WardError(WardError.INVALID, f"copying shift {source.id} onto itself changes nothing")
        copied = self.assignment_of(source.id)
        assignment = self.assignments.setdefault(target.id, Assignment(target.id))
        fx = Effects()
        before_charge, before_beds = assignment.charge, dict(assignment.beds)
        # users no longer care staff (or no longer in the ward) are not copied
        keep = {u for u in copied.people() if u in self.config.users and self.config.users[u].care}
        assignment.charge = copied.charge if copied.charge in keep else None
        assignment.beds = {bed: (p if p in keep else None, s if s in keep else None)
                           for bed, (p, s) in copied.beds.items() if bed in self.beds}
        self._record(fx, "assignment_copied", user=user, shift=target.id, from_shift=source.id,
                     charge=assignment.charge, beds={b: list(pair) for b, pair in sorted(assignment.beds.items())},
                     before_charge=before_charge, before_beds={b: list(pair) for b, pair in sorted(before_beds.items())})
        self._assignment_changed(fx, assignment)
        return fx, target

    def _assignment_changed(self, fx: Effects, assignment: Assignment) -> None:
        fx.assignments[assignment.shift] = assignment
        if assignment.shift == self.shift.id:
            self._check_unassigned(fx)
            self._staff_on_shift_changed(fx)

    def _staff_on_shift_changed(self, fx: Effects) -> None:
        """Who is on shift may have changed (staff.py and routing.py follow it)."""
        fx.staff.update(self.care_staff())

    # ----- the timers -----

    def check_assignments(self) -> Effects:
        """The unassigned alarm as the current shift stands (at start, after server_started;
        otherwise the first tick does it)."""
        fx = Effects()
        self._check_unassigned(fx)
        return fx

    def _check_shift(self, fx: Effects) -> None:
        """A new shift begins: its assignment goes to the consoles, the alarm follows it."""
        now = shift_at(self.config.shifts, self.clock.wall())
        if now.id == self.shift.id:
            if not self._unassigned_checked:
                self._check_unassigned(fx)      # the first tick (without a restore: tests, tools)
            return
        before = self.shift
        self.shift = now
        assignment = self.assignments.setdefault(now.id, Assignment(now.id))
        self._record(fx, "shift_started", shift=now.id, previous=before.id,
                     assigned=sum(1 for b in self.beds if assignment.primary(b)), beds=len(self.beds))
        self._assignment_changed(fx, assignment)

    def _check_unassigned(self, fx: Effects) -> None:
        """A bed without a primary nurse during a shift: one standing alarm for the ward (none in
        a ward without care staff to assign)."""
        self._unassigned_checked = True
        assignment = self.assignment_of(self.shift.id)
        missing = [b for b in self.beds if assignment.primary(b) is None] if self.care_staff() else []
        alarm = self.alarms.get(UNASSIGNED_ALARM)
        if not missing:
            if alarm is not None:
                self._clear_alarm(fx, UNASSIGNED_ALARM, "every bed has a nurse")
            return
        names = ", ".join(self.bed_name(b) for b in missing[:UNASSIGNED_LISTED])
        more = len(missing) - UNASSIGNED_LISTED
        text = f"no nurse assigned: {names}" + (f" and {more} more" if more > 0 else "")
        data = {"beds": missing, "shift": self.shift.id}
        if alarm is None:
            wall = self.clock.wall()
            self._raise_alarm(fx, Alarm(UNASSIGNED_ALARM, UNASSIGNED_ALARM, text, since=wall, last=wall, data=data))
        elif alarm.text != text or alarm.data != data:
            alarm.text, alarm.data, alarm.last = text, data, self.clock.wall()
            fx.alarms[UNASSIGNED_ALARM] = (alarm, True)

    # ----- after a restart -----

    def _restore_assignments(self, fx: Effects, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.assignments[row["shift"]] = Assignment(row["shift"], row["charge"],
                                                        {bed: (p, s) for bed, p, s in row["beds"]})
        self.shift = shift_at(self.config.shifts, self.clock.wall())
        # the unassigned alarm follows after the record's server_started (check_assignments)
