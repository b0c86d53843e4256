"""The hospital's view, built from the hospital stream's events alone (no I/O, testable): every
ward's board (open calls, terminals, technical alarms), the hospital-wide list of emergencies,
and response times per ward and call kind, measured from when each call was placed like
`wardcall report` (to acknowledge, to attend, to clear), each call counted once when it clears."""
from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..protocol import KIND_BY_NAME, KIND_NAMES

EMERGENCY_KINDS = frozenset({KIND_BY_NAME["code_blue"], KIND_BY_NAME["staff_assist"]})
METRICS = (("acknowledge", "acknowledged_at"), ("attend", "attended_at"), ("clear", "cleared_at"))
TIMES_KEPT = 50000          # response times kept per ward and kind (the newest)

Change = tuple[str, dict[str, Any]]


@dataclass
class WardBoard:
    id: str
    name: str
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    terminals: dict[str, dict[str, Any]] = field(default_factory=dict)
    alarms: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_event: float | None = None         # wall time of its latest event
    events: int = 0
    lost: int = 0                           # events the ward's publisher had to drop (ev.gap)

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "calls": sorted(self.calls.values(), key=_order),
                "terminals": sorted(self.terminals.values(), key=lambda t: t["device"]),
                "alarms": list(self.alarms.values()), "last_event": self.last_event, "events": self.events,
                "lost": self.lost}


def _order(call: dict[str, Any]) -> tuple:
    return (call["kind"], call["placed_at"], call["id"])


class HospitalBoard:
    def __init__(self, wards: dict[str, str]) -> None:
        self.wards = {w: WardBoard(w, name) for w, name in wards.items()}
        self.times: dict[tuple[str, int], dict[str, deque[float]]] = {}
        self.unknown_wards: set[str] = set()

    def apply(self, event: dict[str, Any]) -> list[Change]:
        """One event of the hospital stream; the changes for the consoles."""
        ward = self.wards.get(str(event.get("ward")))
        if ward is None:
            self.unknown_wards.add(str(event.get("ward"))[:32])
            return []
        ward.events += 1
        ward.last_event = event.get("wall", ward.last_event)
        kind = event.get("kind")
        if "call" in event:
            call = event["call"]
            if call["state"] == "cleared":
                if ward.calls.pop(call["id"], None) is not None or kind == "call_cleared":
                    self._count(ward.id, call)
            else:
                ward.calls[call["id"]] = call
            return [("call", {"ward": ward.id, "event": kind, "user": event.get("user"), "call": call,
                              "emergency": call["kind"] in EMERGENCY_KINDS})]
        if kind == "terminal":
            terminal = event["terminal"]
            ward.terminals[terminal["device"]] = terminal
            return [("terminal", {"ward": ward.id, "terminal": terminal})]
        if kind == "alarm":
            alarm = event["alarm"]
            if event.get("active"):
                ward.alarms[alarm["id"]] = alarm
            else:
                ward.alarms.pop(alarm["id"], None)
            return [("alarm", {"ward": ward.id, "alarm": alarm, "active": bool(event.get("active"))})]
        if kind == "gap":
            ward.lost += int(event.get("dropped", 0))
            return [("ward", {"ward": ward.id, "lost": ward.lost})]
        return []

    def _count(self, ward: str, call: dict[str, Any]) -> None:
        times = self.times.setdefault((ward, call["kind"]), {name: deque(maxlen=TIMES_KEPT) for name, _ in METRICS})
        for name, key in METRICS:
            if call.get(key) is not None and call.get("placed_at") is not None:
                times[name].append(max(0.0, call[key] - call["placed_at"]))

    def emergencies(self) -> list[dict[str, Any]]:
        """Every open emergency of every ward, code blue first, then the oldest."""
        found = [{"ward": w.id, "ward_name": w.name, **c} for w in self.wards.values()
                 for c in w.calls.values() if c["kind"] in EMERGENCY_KINDS]
        return sorted(found, key=_order)

    def report(self) -> list[dict[str, Any]]:
        """Per ward and call kind, and for the hospital per kind: calls cleared and response times."""
        rows = []
        totals: dict[int, dict[str, list[float]]] = {}
        for (ward, kind), times in sorted(self.times.items()):
            rows.append(_row(ward, self.wards[ward].name, kind, {n: list(v) for n, v in times.items()}))
            total = totals.setdefault(kind, {name: [] for name, _ in METRICS})
            for name, values in times.items():
                total[name].extend(values)
        for kind, total_times in sorted(totals.items()):
            rows.append(_row("", "Hospital", kind, total_times))
        return rows

    def snapshot(self) -> dict[str, Any]:
        return {"wards": [w.view() for w in self.wards.values()], "emergencies": self.emergencies(),
                "report": self.report()}


def _stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "p90": None, "max": None}
    ordered = sorted(values)
    return {"n": len(ordered), "median": statistics.median(ordered),
            "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], "max": ordered[-1]}


def _row(ward: str, name: str, kind: int, times: dict[str, list[float]]) -> dict[str, Any]:
    return {"ward": ward, "ward_name": name, "kind": KIND_NAMES.get(kind, str(kind)),
            "calls": len(times["clear"]), **{metric: _stats(values) for metric, values in times.items()}}
