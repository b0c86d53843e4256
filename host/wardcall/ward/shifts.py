"""Shift instances: which shift a moment belongs to, from `[shifts]` (start times, local time).

A shift instance is named `<date>/<shift name>` (`2026-12-01/early`); a shift that runs past
midnight (a night shift from 22:00) belongs to the date it starts on. Pure: the wall time is
given, local time is the host's (`time.localtime`, as the report's shifts).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import date, timedelta

SHIFT_ID_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})/(.+)$")


@dataclass(frozen=True)
class ShiftInstance:
    id: str          # "2026-12-01/early"
    name: str
    day: date        # the date it starts on
    starts: float    # unix seconds
    ends: float      # the next shift's start

    def view(self) -> dict[str, object]:
        return {"shift": self.id, "name": self.name, "starts": self.starts, "ends": self.ends}


def _local(day: date, minute: int) -> float:
    return time.mktime((day.year, day.month, day.day, minute // 60, minute % 60, 0, 0, 0, -1))


def _instance(shifts: list[tuple[str, int]], day: date, index: int) -> ShiftInstance:
    name, start = shifts[index]
    if index + 1 < len(shifts):
        ends = _local(day, shifts[index + 1][1])
    else:
        ends = _local(day + timedelta(days=1), shifts[0][1])
    return ShiftInstance(f"{day.isoformat()}/{name}", name, day, _local(day, start), ends)


def shift_at(shifts: list[tuple[str, int]], wall: float) -> ShiftInstance:
    """The shift instance running at `wall`. `shifts` are (name, start minute), sorted."""
    local = time.localtime(wall)
    minute = local.tm_hour * 60 + local.tm_min
    day = date(local.tm_year, local.tm_mon, local.tm_mday)
    started = [i for i, (_, start) in enumerate(shifts) if start <= minute]
    if not started:
        # before the day's first start: the last shift of the day before runs on
        return _instance(shifts, day - timedelta(days=1), len(shifts) - 1)
    return _instance(shifts, day, started[-1])


def shift_by_id(shifts: list[tuple[str, int]], shift_id: str) -> ShiftInstance:
    """The instance a `<date>/<name>` id names; ValueError saying what is wrong."""
    match = SHIFT_ID_RE.match(shift_id)
    names = [name for name, _ in shifts]
    if match is None:
        raise ValueError(f"a shift is named like 2026-12-01/{names[0]}, not {shift_id[:40]!r}")
    try:
        day = date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise ValueError(f"{shift_id[:40]!r}: no such date") from None
    if match[4] not in names:
        raise ValueError(f"no shift {match[4][:40]!r} (shifts: {', '.join(names)})")
    return _instance(shifts, day, names.index(match[4]))


def previous_shift(shifts: list[tuple[str, int]], shift: ShiftInstance) -> ShiftInstance:
    index = [name for name, _ in shifts].index(shift.name)
    if index > 0:
        return _instance(shifts, shift.day, index - 1)
    return _instance(shifts, shift.day - timedelta(days=1), len(shifts) - 1)
