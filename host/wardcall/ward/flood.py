"""What keeps one source from drowning the ward: record rows and console updates that a flood of
input cannot multiply. Pure (the time is passed in), like the rest of the ward.

- RecordGate:     at most `burst` rows per key and period; what is held back is counted and
                  recorded as one summary row when the period is over
- AlarmCoalescer: at most one console update per alarm and period; the latest state is
                  published when the period is over (from the timer tick)
"""
from __future__ import annotations

from typing import Any, Hashable


class RecordGate:
    """Which events of a flood get a record row of their own.

    The first `burst` events of a key in a period are recorded as they come; later ones are only
    counted. The count is recorded as one summary row once the period is over: with the next
    event of that key (`admit` returns how many were held back before it) or from the timer tick
    (`due`). A key quiet for a whole period is forgotten."""

    def __init__(self, period_s: float = 60.0, burst: int = 1) -> None:
        self.period_s = period_s
        self.burst = burst
        # key -> [start of its period (mono), rows in it, events held back, details of the latest]
        self._keys: dict[Hashable, list[Any]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    def admit(self, key: Hashable, now: float, details: dict[str, Any] | None = None) -> int | None:
        """None: count this event, record nothing. Otherwise record it, saying that this many
        events before it were not recorded one by one (0 for none)."""
        entry = self._keys.get(key)
        if entry is None or now - entry[0] >= self.period_s:
            held = entry[2] if entry is not None else 0
            self._keys[key] = [now, 1, 0, details or {}]
            return held
        entry[3] = details or {}
        if entry[1] < self.burst:
            entry[1] += 1
            return 0
        entry[2] += 1
        return None

    def due(self, now: float) -> list[tuple[Hashable, int, dict[str, Any]]]:
        """(key, events held back, details of the latest) for every key whose period is over with
        events held back; those count as that key's row for a new period."""
        out = []
        for key, entry in list(self._keys.items()):
            if now - entry[0] < self.period_s:
                continue
            if entry[2]:
                out.append((key, entry[2], entry[3]))
                self._keys[key] = [now, self.burst, 0, entry[3]]
            else:
                del self._keys[key]
        return out


class AlarmCoalescer:
    """At most one console update per alarm and period. An alarm raised or cleared is always
    published at once (by the caller); a change to a standing alarm (one more attempt) goes out
    only if the last update is a period old, else it waits for `due`, so the consoles always get
    the final count within a period."""

    def __init__(self, period_s: float = 1.0) -> None:
        self.period_s = period_s
        self._last: dict[str, float] = {}     # alarm id -> when its latest update went out (mono)
        self._waiting: set[str] = set()

    def published(self, alarm_id: str, now: float) -> None:
        self._last[alarm_id] = now
        self._waiting.discard(alarm_id)

    def changed(self, alarm_id: str, now: float) -> bool:
        """True: publish this change now. False: it is held and comes out of `due`."""
        last = self._last.get(alarm_id)
        if last is None or now - last >= self.period_s:
            self.published(alarm_id, now)
            return True
        self._waiting.add(alarm_id)
        return False

    def due(self, now: float) -> list[str]:
        out = [a for a in self._waiting if now - self._last.get(a, 0.0) >= self.period_s]
        for alarm_id in out:
            self.published(alarm_id, now)
        return out

    def forget(self, alarm_id: str) -> None:
        self._last.pop(alarm_id, None)
        self._waiting.discard(alarm_id)

    def keep_only(self, standing: set[str] | dict[str, Any]) -> None:
        """Forget alarms that no longer stand (so months of sources do not pile up)."""
        for alarm_id in [a for a in self._last if a not in standing]:
            self.forget(alarm_id)

    def __len__(self) -> int:
        return len(self._last)
